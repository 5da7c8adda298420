"""Does an integration schedule dense near α = 0 let IG converge in fewer steps?

IG's path from the all-zero baseline is flat and then turns sharply near α = 0
(``figures/03_ig_path.pdf``), so the default profile needs 128 Gauss-Legendre steps for a
~1% median completeness error (``bench/ig_steps.csv``). This probe substitutes α = t**p
(Gauss-Legendre nodes in t, weights times dα/dt), which puts more nodes near 0 for p > 1,
and measures the relative completeness error |Σ attributions − (f(x) − f(0))| / |f(x) − f(0)|
on the first ``N`` default evaluation examples of each dataset (whole-label target). p = 1
is the package's IG (it reproduces ``bench/ig_steps.csv`` at 16 and 32 steps).

Uses Captum's ``IntegratedGradients._attribute`` (private: it accepts custom step sizes and
alphas). Run with ``.venv/bin/python bench/ig_schedule.py`` (≈ 9 min on 2 cores); writes
``bench/ig_schedule.csv`` (per example) and prints the median and 90th percentile.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from captum.attr import IntegratedGradients

from xalign_utils import config, data, models
from xalign_utils.forward import forward_args, input_embeddings, make_forward
from xalign_utils.next_token import prepare_batch

N = int(os.environ.get("N", "4"))
SETTINGS = ((16, 1), (32, 1), (16, 2), (32, 2), (16, 3), (32, 3), (64, 3))  # (steps, power)
CHUNK = 8  # alphas per backward pass


def schedule(n: int, power: float) -> tuple[list[float], list[float]]:
    """Step sizes and alphas of n-point Gauss-Legendre in t on [0, 1] with α = t**power."""
    t, w = np.polynomial.legendre.leggauss(n)
    t, w = (t + 1) / 2, w / 2
    return list(w * power * t ** (power - 1)), list(t**power)


def main() -> None:
    cfg = config.load_config("default")
    model, tok = models.load_model(cfg.model, for_gradients=True, device="cpu")
    rows = []
    for name in cfg.datasets:
        batch = prepare_batch(
            model, tok, data.load_processed(cfg.processed_dir, name, "eval")[:N], target="pred"
        )
        full, inp = (t.detach() for t in input_embeddings(model, batch))
        forward, args = make_forward(model, batch), forward_args(batch, full)
        with torch.no_grad():
            total = (forward(inp, *args) - forward(torch.zeros_like(inp), *args)).numpy()
        ig = IntegratedGradients(forward)
        for steps, power in SETTINGS:
            start = time.time()
            sizes, alphas = schedule(steps, power)
            attr = sum(
                ig._attribute(
                    (inp,),
                    (torch.zeros_like(inp),),
                    additional_forward_args=args,
                    n_steps=len(sizes[i : i + CHUNK]),
                    step_sizes_and_alphas=(sizes[i : i + CHUNK], alphas[i : i + CHUNK]),
                )[0]
                for i in range(0, steps, CHUNK)
            )
            summed = (attr * batch.in_valid.unsqueeze(-1)).sum((1, 2)).detach().numpy()
            err = np.abs(summed - total) / np.abs(total)
            rows += [{"dataset": name, "steps": steps, "power": power, "rel_error": e} for e in err]
            print(
                name, steps, power, f"median {np.median(err):.4f}", f"{time.time() - start:.0f} s"
            )
    table = pd.DataFrame(rows)
    out = Path(__file__).with_name("ig_schedule.csv")
    table.to_csv(out, index=False)
    print(summary(table))
    print("wrote", out)


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Median and 90th percentile of the relative error per steps × power."""
    grouped = table.groupby(["steps", "power"])["rel_error"]
    return pd.DataFrame({"n": grouped.size(), "median": grouped.median(),
                         "p90": grouped.quantile(0.9)})  # fmt: skip


if __name__ == "__main__":
    main()
