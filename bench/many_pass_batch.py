"""The many-pass methods with several examples per batch against one example at a time.

Runs notebook 03's many-pass group (integrated gradients, gradient SHAP, occlusion, LIME,
KernelSHAP) on the first ``N_PER_DATASET`` default evaluation examples of each dataset,
once with all of them in one padded batch (``many_pass_batch_size=16``, the setting
before) and once one example per batch (the default), with the default profile's method
options except ``IG_STEPS`` (32 here, to keep the run short; every step costs the same
either way). Reports seconds per method and the largest score difference of the
deterministic methods (the stochastic ones draw other samples when the batch changes).
Run with ``.venv/bin/python bench/many_pass_batch.py`` (≈ 6 min on 2 cores, nothing else
running); writes ``bench/many_pass_batch.csv``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from xalign_utils import attribution, config, data, models
from xalign_utils.runner import method_options

N_PER_DATASET = int(os.environ.get("N_PER_DATASET", "6"))
IG_STEPS = int(os.environ.get("IG_STEPS", "32"))
METHODS = ["integrated_gradients", "gradient_shap", "occlusion", "lime", "kernel_shap"]
BATCH_SIZES = (16, 1)


def main() -> None:
    cfg = config.load_config("default")
    model, tok = models.load_model(cfg.model, for_gradients=True, device="cpu")
    options = method_options(cfg) | {"ig_steps": IG_STEPS}
    rows = []
    for name in cfg.datasets:
        examples = data.load_processed(cfg.processed_dir, name, "eval")[:N_PER_DATASET]
        tables = {}
        for size in BATCH_SIZES:
            start = time.perf_counter()
            tables[size] = attribution.attribute(
                model, tok, examples, METHODS, many_pass_batch_size=size, **options
            )
            wall = time.perf_counter() - start
            per_method = tables[size].groupby("method")["seconds"].sum()
            rows += [
                {"dataset": name, "many_pass_batch_size": size, "method": m, "seconds": s}
                for m, s in per_method.items()
            ]
            rows.append(
                {"dataset": name, "many_pass_batch_size": size, "method": "all", "seconds": wall}
            )
        first, last = (tables[s] for s in BATCH_SIZES)
        for method in ("integrated_gradients", "occlusion"):
            diff = max(
                float(np.abs(np.asarray(a) - np.asarray(b)).max())
                for a, b in zip(
                    first.loc[first["method"] == method, "signed"],
                    last.loc[last["method"] == method, "signed"],
                    strict=True,
                )
            )
            rows.append({"dataset": name, "method": method, "max_abs_diff": diff})
    out = pd.DataFrame(rows).assign(examples=N_PER_DATASET, ig_steps=IG_STEPS)
    out.to_csv(Path(__file__).with_name("many_pass_batch.csv"), index=False)
    wide = out.dropna(subset=["seconds"]).pivot_table(
        index=["dataset", "method"], columns="many_pass_batch_size", values="seconds"
    )
    print(wide.assign(time_saved=1 - wide[1] / wide[16]).round(3).to_string())


if __name__ == "__main__":
    main()
