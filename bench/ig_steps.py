"""IG step count against completeness error on the default profile's IG examples.

For each step count, the median (and 90th percentile) of IG's relative completeness error
|Σ attributions − (f(x) − f(0))| / |f(x) − f(0)| over the first ``N_PER_DATASET`` default
evaluation examples of each dataset, with the whole-label target. Run with
``.venv/bin/python bench/ig_steps.py``; writes ``bench/ig_steps.csv``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from xalign_utils import attribution, config, data, models

N_PER_DATASET = int(os.environ.get("N_PER_DATASET", "4"))
STEPS = tuple(int(s) for s in os.environ.get("STEPS", "16,32,64,128").split(","))


def main() -> None:
    cfg = config.load_config("default")
    model, tok = models.load_model(cfg.model, for_gradients=True, device="cpu")
    examples = [
        ex
        for name in cfg.datasets
        for ex in data.load_processed(cfg.processed_dir, name, "eval")[:N_PER_DATASET]
    ]
    path = attribution.path_values(model, tok, examples, alphas=[0.0, 1.0])
    rows = []
    for steps in STEPS:
        ig = attribution.attribute(model, tok, examples, "integrated_gradients", ig_steps=steps)
        err = attribution.completeness_errors(ig, path)["relative_error"]
        rows.append(
            {
                "ig_steps": steps,
                "n": int(err.notna().sum()),
                "median": err.median(),
                "p90": err.quantile(0.9),
            }
        )
        print(rows[-1], flush=True)
    out = Path(__file__).with_name("ig_steps.csv")
    pd.DataFrame(rows).to_csv(out, index=False)
    print("wrote", out)


if __name__ == "__main__":
    main()
