"""Notebook 05's runs: fine-tune into competence, evaluate every checkpoint, publish the
adapter (DESIGN.md §9).

As in :mod:`xalign_utils.metric_tables`, ``*_table`` functions compute on what they are
given and ``run_*`` functions run them for a config and store the per-example tables
under :data:`STAGE` (``runs/<profile>/05_training/``), keyed by the config hash with the
training fields (:meth:`~xalign_utils.config.RunConfig.hash` ``training=True``).

Every checkpoint is scored on the same evaluation examples as 02-04 (the first
``n_train_eval`` of each dataset fine-tuned on) with what Fayyaz et al. (2024) track over
their fine-tuning epochs: accuracy, Top-Var alignment F1 of input×gradient with the human
rationale (Table 3's "Input×Grad"), of the prompted Top-Var list (Table 3's "Prompting"),
and the flip rate when the input×gradient Top-Var words are masked (Table 5).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
from peft import PeftModel, set_peft_model_state_dict
from safetensors.torch import load_file
from scipy.stats import pearsonr

from . import training
from .attribution import attribute
from .config import ADAPTERS_DIR, REFERENCE_DIR, RunConfig
from .data import LABELS, assert_no_leakage, load_processed
from .explanations import elicit, parse_outputs, rationale_k
from .faithfulness import flip_table
from .models import load_model, model_fingerprint
from .plausibility import topvar_f1
from .schema import Example
from .scoring import predict
from .stats import bootstrap_ci, macro_f1_fn, token_f1, top_k
from .store import cached

STAGE = "05_training"
#: Accuracy targets of the default profile (issue 12): the fine-tuned model must clear
#: them and its zero-rate baseline, and predict no label for more than 60% of examples.
TARGETS = {"sst2": 0.85, "esnli": 0.55, "hatexplain": 0.55}
MAX_LABEL_SHARE = 0.60
#: Per-example columns of :func:`checkpoint_table` that :func:`checkpoint_summary` averages.
METRICS = ("correct", "align_ixg", "align_prompted", "flipped")
#: Fayyaz et al.'s selection/method names for the side-by-side.
PAPER_METHODS = {"align_ixg": "Input×Grad", "align_prompted": "Prompting"}


def splits(cfg: RunConfig) -> tuple[list[Example], dict[str, list[Example]]]:
    """Training examples (the first ``n_train`` of each training split of
    ``cfg.train_datasets``) and evaluation examples per dataset (the first
    ``n_train_eval`` of 02-04's evaluation split), checked for leakage.

    Raises:
        ValueError: an evaluation example (id or identical text) is in training.
    """
    train, evaluation = [], {}
    for name in cfg.train_datasets:
        train += load_processed(cfg.processed_dir, name, "train")[: cfg.n_train]
        evaluation[name] = load_processed(cfg.processed_dir, name, "eval")[: cfg.n_train_eval]
    assert_no_leakage(train, [ex for exs in evaluation.values() for ex in exs])
    return train, evaluation


def plain_name(cfg: RunConfig) -> str:
    """The plain fine-tuning run's name, ``plain-s<seed>``."""
    return f"plain-s{cfg.seed}"


def adapter_name(cfg: RunConfig, run: str) -> str:
    """The published name of run ``run``'s adapter, ``<profile>-<run>`` (what
    ``ADAPTER=`` takes)."""
    return f"{cfg.profile}-{run}"


def run_folder(cfg: RunConfig, name: str) -> Path:
    """``runs/<profile>/05_training/<name>/``: a run's checkpoints, adapter and curve."""
    return cfg.run_dir / STAGE / name


def fine_tune(
    cfg: RunConfig,
    name: str,
    examples: Sequence[Example],
    rationales: Sequence[Sequence[int]] | None = None,
    *,
    start_from: Path | None = None,
    progress: bool = True,
    **overrides,
) -> pd.DataFrame:
    """Train run ``name`` (resuming from its last checkpoint), or read its loss curve
    when it finished with the same configuration and examples.

    Checkpoints are written ``cfg.train_checkpoints`` times, evenly over the steps.

    Args:
        start_from: an adapter folder to continue training (the regularised runs start
            from the plain fine-tuned adapter); ``None``: fresh LoRA weights.
        overrides: :class:`~xalign_utils.training.TrainConfig` fields (``regulariser``,
            ``lam``, ``seed``...).
    """
    out = run_folder(cfg, name)
    tc = training.train_config(cfg, checkpoint_every="none", **overrides)
    examples = list(examples)[: tc.max_examples]
    total = -(-len(examples) // tc.batch_size) * tc.epochs
    tc = training.TrainConfig(
        **(asdict(tc) | {"checkpoint_steps": max(1, total // max(cfg.train_checkpoints, 1))})
    )
    manifest = out / "manifest.json"
    if manifest.is_file() and _finished_with(manifest, tc, examples):
        return pd.read_parquet(out / "loss_curve.parquet")
    model, tokenizer = load_model(cfg.model, for_gradients=True)
    if start_from is not None:
        model = PeftModel.from_pretrained(model, start_from, is_trainable=True)
    return training.train(model, tokenizer, examples, rationales, tc, out, progress=progress)


def _finished_with(manifest: Path, tc: training.TrainConfig, examples) -> bool:
    done = json.loads(manifest.read_text())
    same = done.get("config") == json.loads(json.dumps(asdict(tc)))
    return same and done.get("examples_sha256") == training.examples_digest(examples)


def load_run_model(cfg: RunConfig, name: str, for_gradients: bool = True):
    """``(model, tokenizer)``: the base model with run ``name``'s final adapter merged."""
    model, tokenizer = load_model(cfg.model, for_gradients=for_gradients)
    merged = PeftModel.from_pretrained(model, run_folder(cfg, name) / "adapter").merge_and_unload()
    return merged.eval(), tokenizer


def evaluation_points(out: Path) -> list[tuple[int, Path | None]]:
    """``[(step, adapter folder)]`` of a finished run: the untrained model (step 0,
    ``None``), every checkpoint, and the final adapter when its step has none."""
    points: list[tuple[int, Path | None]] = [(0, None)]
    for ckpt in training.checkpoints(out):
        points.append(
            (int(json.loads((ckpt / "state.json").read_text())["step"]), ckpt / "adapter")
        )
    steps = json.loads((out / "manifest.json").read_text())["steps"]
    if points[-1][0] != steps:
        points.append((steps, out / "adapter"))
    return points


def checkpoint_table(
    model,
    tokenizer,
    examples: Sequence[Example],
    cfg: RunConfig,
    *,
    prompted: bool = True,
) -> pd.DataFrame:
    """Per example: prediction, correctness, input×gradient and prompted Top-Var alignment
    F1 with the human rationale (NaN without one), and whether masking the input×gradient
    Top-Var words flips the prediction (k: :func:`~xalign_utils.explanations.rationale_k`).

    ``model`` is the model as evaluated (an adapter merged or active)."""
    preds = predict(model, tokenizer, examples, cfg.batch_size, greedy=False)
    ixg = attribute(
        model, tokenizer, examples, ["input_x_gradient"], batch_size=cfg.batch_size, target="pred"
    ).set_index("id")
    by_id = {ex.id: ex for ex in examples}
    selection = {}
    rows = []
    for ex in examples:
        scores = np.asarray(ixg.at[ex.id, "magnitude"], dtype=float)
        k = rationale_k(ex, cfg.topk_fixed)
        selection[ex.id] = top_k(scores, k) if ixg.at[ex.id, "status"] == "ok" else []
        rows.append({"id": ex.id, "align_ixg": topvar_f1(scores, ex.flat_rationale()), "k": k})
    out = preds[["id", "dataset", "label", "pred"]].merge(pd.DataFrame(rows), on="id")
    out["correct"] = (out["label"] == out["pred"]).astype(float)
    flips = flip_table(
        model,
        tokenizer,
        examples,
        {"Input×Grad": selection},
        strategy="mask",
        mask_text=cfg.mask_text,
        batch_size=cfg.batch_size,
    )
    out = out.merge(flips[["id", "flipped"]], on="id", how="left")
    out["align_prompted"] = np.nan
    annotated = [ex for ex in examples if ex.rationale_positions()]
    if prompted and annotated:
        raw = elicit(
            model,
            tokenizer,
            annotated,
            "rationale_topk",
            fixed_k=cfg.topk_fixed,
            max_new_tokens=cfg.max_new_tokens,
            batch_size=cfg.gen_batch_size,
        )
        parsed = parse_outputs(raw, by_id).set_index("id")
        f1 = {
            i: token_f1(list(r.positions), by_id[i].flat_rationale()) for i, r in parsed.iterrows()
        }
        out["align_prompted"] = out["id"].map(f1)
    return out


def run_checkpoints(
    cfg: RunConfig, name: str, evaluation: Mapping[str, Sequence[Example]]
) -> pd.DataFrame:
    """:func:`checkpoint_table` at every :func:`evaluation_points` of run ``name``,
    stored as ``checkpoints_<name>`` and reused; column ``step`` says which point."""
    examples = [ex for exs in evaluation.values() for ex in exs]

    def compute() -> pd.DataFrame:
        base, tokenizer = load_model(cfg.model, for_gradients=True)
        frames = []
        model = None
        for step, adapter in evaluation_points(run_folder(cfg, name)):
            if adapter is None:
                frames.append(checkpoint_table(base, tokenizer, examples, cfg).assign(step=step))
                continue
            if model is None:
                model = PeftModel.from_pretrained(base, adapter)
            else:
                set_peft_model_state_dict(model, load_file(adapter / "adapter_model.safetensors"))
            model.eval()
            inner = model.get_base_model()  # LoRA layers active inside the plain model
            frames.append(checkpoint_table(inner, tokenizer, examples, cfg).assign(step=step))
        return pd.concat(frames, ignore_index=True).assign(run=name)

    return cached(cfg, STAGE, f"checkpoints_{name}", compute, training=True)


def checkpoint_summary(per_example: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Per run × step × dataset: accuracy, alignment F1s and flip rate (mean with a
    percentile bootstrap CI over examples), macro-F1, the most predicted label's share
    and the zero-rate baseline, n."""
    rows = []
    keys = ["run", "step", "dataset"]
    for (run, step, dataset), part in per_example.groupby(keys, sort=False):
        labels = LABELS[dataset]
        row = {"run": run, "step": step, "dataset": dataset, "n": len(part)}
        for metric in METRICS:
            values = part[metric].dropna().to_numpy(float)
            ci = bootstrap_ci(values, seed=seed)
            row |= {
                metric: ci["value"],
                f"{metric}_lo": ci["ci_low"],
                f"{metric}_hi": ci["ci_high"],
                f"{metric}_n": ci["n"],
            }
        row["macro_f1"] = macro_f1_fn(labels)(part["label"], part["pred"])
        row["top_label_share"] = part["pred"].value_counts(normalize=True).iloc[0]
        row["zero_rate"] = part["label"].value_counts(normalize=True).iloc[0]
        rows.append(row)
    return pd.DataFrame(rows)


def targets_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The final checkpoint of each run against :data:`TARGETS`: accuracy (CI) above the
    target and above the zero-rate baseline, most predicted label ≤ 60%."""
    last = summary[summary["step"] == summary.groupby("run")["step"].transform("max")]
    out = last[["run", "dataset", "step", "correct", "correct_lo", "correct_hi", "zero_rate"]]
    out = out.rename(columns={"correct": "accuracy", "correct_lo": "lo", "correct_hi": "hi"})
    out = out.assign(
        target=out["dataset"].map(TARGETS),
        top_label_share=last["top_label_share"].to_numpy(),
    )
    out["meets_target"] = out["accuracy"] >= out["target"]
    out["ci_above_zero_rate"] = out["lo"] > out["zero_rate"]
    out["label_share_ok"] = out["top_label_share"] <= MAX_LABEL_SHARE
    return out.reset_index(drop=True)


def _point_means(per_example: pd.DataFrame, metric: str, ids: np.ndarray) -> np.ndarray:
    """Mean of ``metric`` and of ``correct`` per step over the examples ``ids`` (with
    repeats, for a bootstrap draw): ``[2, n_steps]``."""
    wide = per_example.pivot_table(index="id", columns="step", values=[metric, "correct"])
    sub = wide.loc[ids]
    return np.vstack([sub[metric].mean().to_numpy(), sub["correct"].mean().to_numpy()])


def correlations(per_example: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Pearson r over checkpoints between each metric's mean and accuracy, per run ×
    dataset (Fayyaz et al. Tables 3 and 5), with the p-value over checkpoints they report
    and a bootstrap CI that resamples examples (the same examples are scored at every
    checkpoint, so a draw keeps them paired across checkpoints)."""
    rng = np.random.default_rng(seed)
    rows = []
    for (run, dataset), part in per_example.groupby(["run", "dataset"], sort=False):
        for metric in ("align_ixg", "align_prompted", "flipped"):
            usable = part.dropna(subset=[metric])
            ids = usable["id"].unique()
            steps = usable["step"].nunique()
            if len(ids) < 2 or steps < 3:
                continue
            means = _point_means(usable, metric, ids)
            if np.ptp(means[0]) == 0 or np.ptp(means[1]) == 0:
                r, p = np.nan, np.nan
            else:
                r, p = pearsonr(means[0], means[1])
            draws = []
            for _ in range(n_boot):
                m = _point_means(usable, metric, rng.choice(ids, len(ids)))
                if np.ptp(m[0]) > 0 and np.ptp(m[1]) > 0:
                    draws.append(np.corrcoef(m[0], m[1])[0, 1])
            lo, hi = np.percentile(draws, [2.5, 97.5]) if draws else (np.nan, np.nan)
            rows.append(
                {
                    "run": run,
                    "dataset": dataset,
                    "metric": metric,
                    "r": r,
                    "p": p,
                    "lo": lo,
                    "hi": hi,
                    "checkpoints": steps,
                    "n_examples": len(ids),
                }
            )
    return pd.DataFrame(rows)


def paper_side_by_side(corr: pd.DataFrame, reference: Path | None = None) -> pd.DataFrame:
    """Our correlations beside Fayyaz et al.'s Tables 3 (alignment ↔ accuracy) and 5
    (flip rate ↔ accuracy) for the datasets both have, one row per paper model."""
    ref = pd.read_csv(reference or REFERENCE_DIR / "fayyaz2024_tables.csv")
    paper = ref[ref["table"].isin(["3_corr_alignment_accuracy", "5_corr_faithfulness_accuracy"])]
    method = paper["method"].fillna("")
    metric = np.where(
        paper["table"].str.startswith("5"),
        "flipped",
        np.where(method == PAPER_METHODS["align_ixg"], "align_ixg", "align_prompted"),
    )
    paper = paper.assign(metric=metric)[["dataset", "metric", "model", "value", "p_value"]]
    paper = paper.rename(columns={"value": "paper_r", "p_value": "paper_p"})
    return corr.merge(paper, on=["dataset", "metric"], how="inner")


def publish_adapter(cfg: RunConfig, name: str, adapter_name: str, metrics: pd.DataFrame) -> Path:
    """Copy run ``name``'s final adapter to ``data/models/adapters/<adapter_name>/`` with a
    manifest (base model and its fingerprint, datasets, regulariser, λ, seed, steps, the
    final checkpoint's accuracy per dataset) that ``load_model(..., adapter=)`` checks."""
    src = run_folder(cfg, name)
    run = json.loads((src / "manifest.json").read_text())
    dest = ADAPTERS_DIR / adapter_name
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src / "adapter", tmp)
    base, _ = load_model(cfg.model)
    last = metrics[metrics["step"] == metrics["step"].max()]
    manifest = {
        "name": adapter_name,
        "base_model": cfg.model_name,
        "base_fingerprint": model_fingerprint(base),
        "datasets": list(cfg.train_datasets),
        "regulariser": run["config"]["regulariser"],
        "lambda": run["config"]["lam"],
        "seed": run["seed"],
        "steps": run["steps"],
        "n_examples": run["n_examples"],
        "config": run["config"],
        "profile": cfg.profile,
        "accuracy": dict(zip(last["dataset"], last["correct"].round(4), strict=True)),
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.replace(dest)
    return dest
