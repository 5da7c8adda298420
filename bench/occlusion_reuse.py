"""Occlusion with and without serving each call's unperturbed prefix from the clean cache.

Runs word-level occlusion on the first ``N_PER_DATASET`` default evaluation examples of
each dataset (as notebook 03 batches them, one dataset per batch of 16), once as the
package runs it (``perturbation.clean_prefix_forward``: each call starts at its first
ablated word) at each ``PER_EVAL`` words per call, and once with the plain forward over
the whole prompt after the shared chat-template prefix (16 words per call, the setting
before the reuse). Reports seconds, the largest score difference from the plain run and
whether every example keeps its top-3 words. Run with
``.venv/bin/python bench/occlusion_reuse.py`` (≈ 5 min on 2 cores, nothing else running);
writes ``bench/occlusion_reuse.csv``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from xalign_utils import attribution, config, data, models
from xalign_utils.attribution import perturbation
from xalign_utils.forward import make_forward

N_PER_DATASET = int(os.environ.get("N_PER_DATASET", "6"))
PER_EVAL = tuple(int(s) for s in os.environ.get("PER_EVAL", "16,8").split(","))


def timed(model, tok, examples, per_eval: int) -> tuple[float, pd.DataFrame]:
    start = time.perf_counter()
    table = attribution.attribute(
        model, tok, examples, "occlusion", target="pred", perturbations_per_eval=per_eval
    )
    return time.perf_counter() - start, table


def main() -> None:
    cfg = config.load_config("default")
    model, tok = models.load_model(cfg.model, for_gradients=True, device="cpu")
    examples = [
        ex
        for name in cfg.datasets
        for ex in data.load_processed(cfg.processed_dir, name, "eval")[:N_PER_DATASET]
    ]
    reuse = perturbation.clean_prefix_forward
    perturbation.clean_prefix_forward = lambda model, batch, full, inp: make_forward(model, batch)
    try:
        plain_s, plain = timed(model, tok, examples, 16)
    finally:
        perturbation.clean_prefix_forward = reuse
    rows = [{"path": "whole prompt after the shared prefix", "per_eval": 16, "seconds": plain_s}]
    for per_eval in PER_EVAL:
        seconds, table = timed(model, tok, examples, per_eval)
        diff = max(
            float(np.abs(np.asarray(a) - np.asarray(b)).max())
            for a, b in zip(table["signed"], plain["signed"], strict=True)
        )
        same_top3 = sum(
            list(np.argsort(-np.asarray(a))[:3]) == list(np.argsort(-np.asarray(b))[:3])
            for a, b in zip(table["magnitude"], plain["magnitude"], strict=True)
        )
        rows.append(
            {
                "path": "from each call's first ablated word",
                "per_eval": per_eval,
                "seconds": seconds,
                "max_abs_diff": diff,
                "same_top3": f"{same_top3}/{len(table)}",
            }
        )
    out = pd.DataFrame(rows).assign(
        examples=len(examples), time_saved=lambda d: 1 - d["seconds"] / plain_s
    )
    out.to_csv(Path(__file__).with_name("occlusion_reuse.csv"), index=False)
    print(out.to_string(index=False))


if __name__ == "__main__":
    main()
