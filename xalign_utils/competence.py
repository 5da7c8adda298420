"""Why a competence target is out of reach: accuracy against training size.

Notebook 05's checkpoints show accuracy up to the default profile's training budget only.
The learning-rate sweep and the data-size probes of ``bench/lr_sweep.py`` trained the same
LoRA shape on more examples (held-out slices of the same training splits, never the
evaluation sets); set beside the checkpoints with the CPU minutes each took, they show
whether a target is a matter of more steps (within reach of a longer run) or not reached
even at several times the budget. Each probe's command is in ``bench/lr_sweep.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from statsmodels.stats.proportion import proportion_confint

from .config import BENCH_DIR, PROFILES

#: The bench tables read, each with what it trained (one epoch each, default LoRA shape).
PROBES = {
    "lr_sweep.csv": "lr sweep, 160 per dataset",
    "probe_mixed_800.csv": "probe, 800 per dataset",
    "probe_sst2_800.csv": "probe, SST-2 alone, 800",
    "probe_sst2_800_mixed.csv": "probe, SST-2 800 + 100 each",
}
COLUMNS = ("lr", "dataset", "steps", "n_held_out", "accuracy", "top_label_share")


def probe_table(bench_dir: Path = BENCH_DIR, batch_size: int | None = None) -> pd.DataFrame:
    """One row per probe × learning rate × dataset: training examples of that dataset,
    held-out accuracy with its Wilson 95% CI, the most predicted label's share, and the
    CPU minutes of the whole run (steps × ``batch_size`` examples at its measured rate).

    Args:
        batch_size: the probes' training batch size (``None``: the default profile's,
            which ``bench/lr_sweep.py`` trains with).

    Raises:
        FileNotFoundError: a bench table is missing; the message names the command.
    """
    batch_size = batch_size or PROFILES["default"].train_batch_size
    frames = []
    for name, source in PROBES.items():
        path = Path(bench_dir) / name
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: `.venv/bin/python bench/lr_sweep.py` writes it "
                "(the probes' settings are in that script's docstring)"
            )
        table = pd.read_csv(path)
        missing = [c for c in (*COLUMNS, "train_examples_per_s") if c not in table]
        if missing:
            raise ValueError(f"{path}: no column(s) {missing}")
        per_lr = table.groupby("lr")["dataset"].transform("nunique")
        examples = table["steps"] * batch_size
        frames.append(
            table[list(COLUMNS)].assign(
                source=source,
                examples_per_dataset=table["n_train"]
                if "n_train" in table  # probes with per-dataset sizes record them
                else (examples / per_lr).round().astype(int),
                minutes=examples / table["train_examples_per_s"] / 60,
            )
        )
    out = pd.concat(frames, ignore_index=True)
    correct = (out["accuracy"] * out["n_held_out"]).round().astype(int)
    out["ci_low"], out["ci_high"] = proportion_confint(correct, out["n_held_out"], method="wilson")
    first = ["source", "dataset", "lr", "examples_per_dataset", "accuracy", "ci_low", "ci_high"]
    return out[first + ["n_held_out", "top_label_share", "steps", "minutes"]]


def checkpoint_examples(
    summary: pd.DataFrame, batch_size: int, sizes: Mapping[str, int]
) -> pd.Series:
    """Training examples of its dataset each row of notebook 05's summary had seen (the
    epoch is one shuffled mix, so dataset ``d`` gives ``sizes[d] / sum(sizes)`` of every
    batch on average; ``sizes``: training examples per dataset)."""
    share = summary["dataset"].map(sizes) / sum(sizes.values())
    seen = (summary["step"] * batch_size * share).round().astype(int)
    return seen.clip(upper=summary["dataset"].map(sizes))
