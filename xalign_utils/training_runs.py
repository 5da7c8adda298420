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
and the flip rate when the input×gradient Top-Var words are masked (Table 5). Whether
the final adapter meets the accuracy targets is judged on the whole evaluation split
(:mod:`xalign_utils.training_targets`).
"""

from __future__ import annotations

import functools
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
from .data import LABELS, assert_no_leakage, load_processed, save_examples
from .explanations import elicit, parse_outputs, rationale_k
from .faithfulness import flip_table
from .models import load_model, model_fingerprint, resolve_model_path, sha256_file
from .plausibility import topvar_f1
from .schema import Example
from .scoring import predict
from .stats import bootstrap_ci, macro_f1_fn, token_f1, top_k
from .store import cached

STAGE = "05_training"
#: Per-example columns of :func:`checkpoint_table` that :func:`checkpoint_summary` averages.
METRICS = ("correct", "align_ixg", "align_prompted", "flipped")
#: Columns of :func:`correlations` (also when no correlation can be computed).
CORRELATION_COLUMNS = (
    "run", "dataset", "metric", "r", "p", "lo", "hi", "checkpoints", "n_examples", "n_defined",
)  # fmt: skip
#: Fayyaz et al.'s selection/method names for the side-by-side.
PAPER_METHODS = {"align_ixg": "Input×Grad", "align_prompted": "Prompting"}


def train_sizes(cfg: RunConfig, datasets: Sequence[str] | None = None) -> dict[str, int]:
    """Training examples notebook 05 takes from each of ``datasets`` (default: the
    ``train_datasets``): its ``TRAIN_SIZES`` entry (``sst2:800``), else ``TRAIN_PER_DATASET``.

    Raises:
        ValueError: an entry of ``TRAIN_SIZES`` is not ``name:count``.
    """
    exceptions = {}
    for entry in cfg.train_sizes:
        name, _, count = entry.partition(":")
        if not count.strip().isdigit():
            raise ValueError(f"TRAIN_SIZES entry {entry!r} is not name:count (e.g. sst2:800)")
        exceptions[name.strip()] = int(count)
    names = cfg.train_datasets if datasets is None else datasets
    return {name: exceptions.get(name, cfg.train_per_dataset) for name in names}


def splits(cfg: RunConfig) -> tuple[list[Example], dict[str, list[Example]]]:
    """Training examples (the first :func:`train_sizes` of each training split of
    ``cfg.train_datasets``) and evaluation examples per dataset (the first
    ``n_train_eval`` of 02-04's evaluation split), checked for leakage against every
    evaluation example of every dataset 02-04 evaluate.

    Raises:
        ValueError: an evaluation example (id or identical text) is in training.
    """
    train, evaluation, every_eval = [], {}, []
    for name, size in train_sizes(cfg).items():
        split = load_processed(cfg.processed_dir, name, "train")
        if len(split) < size:
            raise ValueError(
                f"{name}: notebook 01 wrote {len(split)} training examples "
                f"({cfg.processed_dir / f'{name}_train.jsonl'}), fewer than the {size} "
                "TRAIN_PER_DATASET/TRAIN_SIZES ask for; re-run `make 01 N_TRAIN=...`"
            )
        train += split[:size]
    for name in dict.fromkeys([*cfg.train_datasets, *cfg.datasets]):
        full = load_processed(cfg.processed_dir, name, "eval")
        every_eval += full  # 02-04 run the published adapter on all of them
        if name in cfg.train_datasets:
            evaluation[name] = full[: cfg.n_train_eval]
    assert_no_leakage(train, every_eval)
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
    when it finished with the same configuration and examples. A folder started with
    anything else (learning rate, examples, checkpoints, start adapter) is renamed
    ``<name>.old-<n>`` and the run starts afresh.

    Checkpoints are written ``cfg.train_checkpoints`` times, evenly over the steps. With
    ``cfg.num_processes > 1`` a fresh plain run trains data-parallel under ``accelerate
    launch`` (:func:`~xalign_utils.training.launch_training`: the steps of one process).

    Args:
        start_from: an adapter folder to continue training (the regularised runs start
            from the plain fine-tuned adapter); ``None``: fresh LoRA weights.
        overrides: :class:`~xalign_utils.training.TrainConfig` fields (``regulariser``,
            ``lam``, ``seed``...).
    """
    out = run_folder(cfg, name)
    start = None if start_from is None else sha256_file(start_from / "adapter_model.safetensors")
    tc = training.train_config(cfg, checkpoint_every="none", start_sha256=start, **overrides)
    examples = list(examples)[: tc.max_examples]
    total = -(-len(examples) // tc.batch_size) * tc.epochs
    every = -(-total // max(cfg.train_checkpoints, 1))  # the last point is the final step
    tc = training.TrainConfig(**(asdict(tc) | {"checkpoint_steps": every}))
    wanted = {"config": json.loads(json.dumps(asdict(tc))), "examples_sha256": None}
    wanted["examples_sha256"] = training.examples_digest(examples)
    if _written_with(out) == wanted:
        if (out / "manifest.json").is_file():
            return pd.read_parquet(out / "loss_curve.parquet")
    else:
        if out.exists():  # started with another configuration: kept aside, not overwritten
            out.rename(_aside(out))
        out.mkdir(parents=True)
        (out / "run.json").write_text(json.dumps(wanted, indent=1))
    if cfg.num_processes > 1 and start_from is None and rationales is None:  # data-parallel
        folder = save_examples(examples, out / "examples.jsonl")
        model_dir = resolve_model_path(cfg.model)
        return training.launch_training(model_dir, folder, out, tc, num_processes=cfg.num_processes)
    eager = training.needs_eager_attention(tc.regulariser)
    model, tokenizer = load_model(cfg.model, for_gradients=eager)
    if start_from is not None:
        model = PeftModel.from_pretrained(model, start_from, is_trainable=True)
    return training.train(model, tokenizer, examples, rationales, tc, out, progress=progress)


def _written_with(out: Path) -> dict | None:
    """What a run folder was started with (``run.json``: the training config and the
    examples' digest), ``None`` when it has no record."""
    path = out / "run.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _aside(out: Path) -> Path:
    n = 1
    while (old := out.with_name(f"{out.name}.old-{n}")).exists():
        n += 1
    return old


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

    return cached(cfg, STAGE, f"checkpoints_{name}", compute, training=True, code=__name__)


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


def _row_corr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each row of ``x`` with the same row of ``y`` (NaN for a constant row)."""
    xc, yc = x - x.mean(-1, keepdims=True), y - y.mean(-1, keepdims=True)
    den = np.sqrt((xc**2).sum(-1) * (yc**2).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (xc * yc).sum(-1) / den, np.nan)


def correlations(per_example: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Pearson r over the trained checkpoints (step 0, the untrained model, left out as in
    the paper's epochs 1-10) between each metric's mean and accuracy, per run × dataset
    (Fayyaz et al. Tables 3 and 5).

    Accuracy is over every evaluation example of the dataset, the metric over those where
    it is defined (an example without a human rationale has no alignment F1), the same
    examples at every checkpoint. ``p`` is Pearson's over checkpoints, as the paper
    reports it: descriptive, since checkpoints of one run are not independent. The CI
    resamples examples (kept paired across checkpoints), so it reflects which examples
    were evaluated, not training noise.
    """
    rng = np.random.default_rng(seed)
    rows = []
    trained = per_example[per_example["step"] > 0]
    for (run, dataset), part in trained.groupby(["run", "dataset"], sort=False):
        correct = part.pivot(index="id", columns="step", values="correct")
        ids = correct.index
        draws = rng.integers(0, len(ids), size=(n_boot, len(ids)))
        acc_boot = correct.to_numpy(float)[draws].mean(1)
        for metric in ("align_ixg", "align_prompted", "flipped"):
            values = part.pivot(index="id", columns="step", values=metric).reindex(ids)
            defined = int(values.notna().all(axis=1).sum())
            if defined < 2 or values.shape[1] < 3:
                continue
            r = _row_corr(values.mean().to_numpy(float), correct.mean().to_numpy(float))
            with np.errstate(invalid="ignore"):
                p = np.nan if np.isnan(r) else pearsonr(values.mean(), correct.mean())[1]
                boot = _row_corr(np.nanmean(values.to_numpy(float)[draws], axis=1), acc_boot)
            boot = boot[~np.isnan(boot)]
            lo, hi = np.percentile(boot, [2.5, 97.5]) if len(boot) else (np.nan, np.nan)
            rows.append(
                {
                    "run": run,
                    "dataset": dataset,
                    "metric": metric,
                    "r": float(r),
                    "p": p,
                    "lo": lo,
                    "hi": hi,
                    "checkpoints": values.shape[1],
                    "n_examples": len(ids),
                    "n_defined": defined,
                }
            )
    return pd.DataFrame(rows, columns=list(CORRELATION_COLUMNS))


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


@functools.lru_cache(maxsize=4)
def base_fingerprint(model: str | None) -> str:
    """:func:`~xalign_utils.models.model_fingerprint` of a base model (computed once)."""
    return model_fingerprint(load_model(model, device="cpu")[0])


def publish_adapter(cfg: RunConfig, name: str, adapter_name: str, metrics: pd.DataFrame) -> Path:
    """Copy run ``name``'s final adapter to ``data/models/adapters/<adapter_name>/`` with a
    manifest (base model and its fingerprint, datasets, regulariser, λ, seed, steps, the
    accuracy per dataset: ``metrics``' column ``correct`` at its last ``step``) that
    ``load_model(..., adapter=)`` checks."""
    src = run_folder(cfg, name)
    run = json.loads((src / "manifest.json").read_text())
    dest = ADAPTERS_DIR / adapter_name
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src / "adapter", tmp)
    last = metrics[metrics["step"] == metrics["step"].max()]
    manifest = {
        "name": adapter_name,
        "base_model": cfg.model_name,
        "base_fingerprint": base_fingerprint(cfg.model),
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
