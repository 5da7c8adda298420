"""Learning-rate sweep for the default profile's LoRA fine-tuning (notebook 05).

Trains one adapter per learning rate for one epoch on the first ``N_TRAIN`` examples of
each training split of ``DATASETS`` (default: e-SNLI dev, SST-2 train, HateXplain val,
one multi-task adapter as notebook 05 trains), with the default profile's LoRA shape and
batch size, and scores a held-out slice of the same training splits (the last
``N_HELD_OUT`` per dataset; never the evaluation sets, so the choice does not peek at
what notebooks 02-05 report). Run with ``.venv/bin/python bench/lr_sweep.py``; writes
``OUT`` (default ``bench/lr_sweep.csv``; one row per learning rate × dataset: accuracy,
macro-F1, most-predicted label's share, final loss, training examples per second).

The one-task data-size probe the README quotes (4 min)::

    DATASETS=sst2 N_TRAIN=800 LRS=5e-4 OUT=bench/probe_sst2_800.csv .venv/bin/python bench/lr_sweep.py

and the mix the default profile trains on (800 SST-2, 100 of each other dataset; 8 min)::

    TRAIN_SIZES=sst2:800 N_TRAIN=100 LRS=5e-4 OUT=bench/probe_sst2_800_mixed.csv \
        .venv/bin/python bench/lr_sweep.py
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pandas as pd

from xalign_utils import config, data, models, scoring, stats, training, training_runs

LRS = tuple(float(x) for x in os.environ.get("LRS", "5e-5,2e-4,8e-4").split(","))
N_TRAIN = int(os.environ.get("N_TRAIN", "160"))
TRAIN_SIZES = os.environ.get("TRAIN_SIZES", "")  # per-dataset exceptions, ``sst2:800,...``
N_HELD_OUT = int(os.environ.get("N_HELD_OUT", "100"))
DATASETS = os.environ.get("DATASETS", "")  # comma-separated; empty: the profile's
OUT = Path(os.environ.get("OUT", Path(__file__).with_name("lr_sweep.csv")))


def main() -> None:
    cfg = config.load_config("default", train_per_dataset=N_TRAIN, train_sizes=TRAIN_SIZES)
    train, held_out = [], []
    sizes = training_runs.train_sizes(cfg, DATASETS.split(",") if DATASETS else None)
    for name, size in sizes.items():
        split = data.load_processed(cfg.processed_dir, name, "train")
        if len(split) < size + N_HELD_OUT:
            raise ValueError(f"{name}: {len(split)} training examples < {size + N_HELD_OUT}")
        train += split[:size]
        held_out += split[-N_HELD_OUT:]
    data.assert_no_leakage(train, held_out)
    rows = []
    for lr in LRS:
        model, tok = models.load_model(cfg.model, device="cpu")  # fused attention, as 05
        tc = training.train_config(cfg, lr=lr, checkpoint_every="none")
        n = len(train)  # one epoch over every dataset's examples, shuffled by the seed
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as out:
            curve = training.train(model, tok, train[:n], None, tc, Path(out), device="cpu")
        train_seconds = time.perf_counter() - start
        model.eval()
        preds = scoring.predict(model, tok, held_out, cfg.batch_size)
        for name, part in preds.groupby("dataset", sort=False):
            labels = data.LABELS[name]
            rows.append(
                {
                    "lr": lr,
                    "dataset": name,
                    "steps": len(curve),
                    "n_train": sizes[name],
                    "n_held_out": len(part),
                    "accuracy": stats.accuracy(part["label"], part["pred"]),
                    "macro_f1": stats.macro_f1_fn(labels)(part["label"], part["pred"]),
                    "top_label_share": part["pred"].value_counts(normalize=True).iloc[0],
                    "final_loss": curve["label_loss"].tail(10).mean(),
                    "train_examples_per_s": n / train_seconds,
                }
            )
        print(pd.DataFrame(rows).round(3).to_string(), flush=True)
    pd.DataFrame(rows).to_csv(OUT, index=False, float_format="%.4g")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
