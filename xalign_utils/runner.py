"""Attribution runs sharded across processes with ``accelerate`` (one per GPU, or CPU cores).

:func:`run_attribution` works in-process (one process) and under ``accelerate launch``:
each process takes a contiguous shard of the examples
(``PartialState.split_between_processes``), writes its rows to ``<out>.shard-<rank>``,
and after a barrier the main process gathers the shards in the original example order
into ``<out>``. Shards go through files rather than collectives so that the arrays of
variable length need no padding, and a crashed process leaves the others' work on disk.

Command line (what notebook 03 launches when ``NUM_PROCESSES > 1``)::

    accelerate launch --multi_gpu --num_processes 2 -m xalign_utils.runner --device cpu \\
        --examples data/processed/default/esnli_eval.jsonl --methods saliency,attention \\
        --out runs/default/03_attribution/attributions.parquet
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from accelerate import PartialState

from .attribution import attribute
from .attribution.nulls import word_counts
from .attribution.registry import COST_TIERS, METHODS, available_methods
from .data import load_examples, save_examples
from .models import load_model
from .schema import Example
from .store import code_hash


def _has_gpu() -> bool:
    return torch.cuda.is_available()


def _shard_path(out: Path, rank: int) -> Path:
    return out.with_name(f"{out.name}.shard-{rank}")


def run_attribution(
    examples: Sequence[Example],
    methods: Sequence[str],
    out: Path,
    *,
    model_name: str | None = None,
    adapter: str | None = None,
    device: str | None = None,
    batch_size: int = 8,
    progress: bool = False,
    **options,
) -> pd.DataFrame:
    """Attribute ``examples`` with ``methods`` in this process's shard; gather into ``out``.

    Args:
        examples: all examples (every process passes the same list).
        methods: names from :func:`xalign_utils.attribution.available_methods`.
        out: parquet file the gathered table is written to (atomically, by the main
            process).
        model_name: model to load (``None``: the offline default).
        adapter: published LoRA adapter merged into it (``load_model(adapter=)``).
        device: torch device; by default ``accelerate`` picks this process's GPU, or
            the CPU.
        **options: passed to :func:`xalign_utils.attribution.attribute`. The rarity
            null's ``word_counts`` default to counts over all of ``examples`` (every
            process the same, whatever its shard).

    Returns:
        The gathered table (every process returns it after the barrier), rows in the
        order of ``examples`` (then of ``methods``), with an ``example_index`` column.
    """
    state = PartialState(cpu=device == "cpu")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    indexed = list(enumerate(examples))
    if "word_rarity" in methods and options.get("word_counts") is None:
        options["word_counts"] = word_counts(examples)
    with state.split_between_processes(indexed) as shard:
        model, tokenizer = load_model(
            model_name, for_gradients=True, device=device or str(state.device), adapter=adapter
        )
        rows = attribute(
            model,
            tokenizer,
            [ex for _, ex in shard],
            list(methods),
            batch_size=batch_size,
            progress=progress and state.is_main_process,
            **options,
        )
        position = {ex.id: i for i, ex in shard}
        rows.insert(0, "example_index", rows["id"].map(position).astype("int64"))
        rows["process"] = state.process_index
        tmp = _shard_path(out, state.process_index)
        rows.to_parquet(tmp.with_suffix(".tmp"), index=False)
        os.replace(tmp.with_suffix(".tmp"), tmp)
    state.wait_for_everyone()
    if state.is_main_process:
        shards = [_shard_path(out, r) for r in range(state.num_processes)]
        table = pd.concat([pd.read_parquet(p) for p in shards], ignore_index=True)
        rank = {m: i for i, m in enumerate(methods)}
        table = table.sort_values(
            ["example_index", "method"], key=lambda c: c.map(rank) if c.name == "method" else c
        ).reset_index(drop=True)
        table.to_parquet(out.with_suffix(".tmp"), index=False)
        os.replace(out.with_suffix(".tmp"), out)
        for p in shards:
            p.unlink()
    state.wait_for_everyone()
    return pd.read_parquet(out)


def launch(
    examples_file: Path,
    methods: Sequence[str],
    out: Path,
    *,
    num_processes: int,
    cpu: bool = True,
    options: dict | None = None,
    model_name: str | None = None,
    adapter: str | None = None,
    batch_size: int = 8,
) -> pd.DataFrame:
    """Run :func:`run_attribution` under ``accelerate launch`` with ``num_processes``.

    Raises:
        RuntimeError: a process failed; the message carries its stderr tail.
    """
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        str(num_processes),
    ]
    cmd += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    if num_processes > 1:  # torchrun; on CPU accelerate's state then uses the gloo backend
        cmd.append("--multi_gpu")
    elif cpu:
        cmd.append("--cpu")
    cmd += ["-m", "xalign_utils.runner", "--examples", str(examples_file), "--out", str(out)]
    cmd += ["--methods", ",".join(methods), "--batch-size", str(batch_size)]
    cmd += ["--options", json.dumps(options or {})]
    if model_name:
        cmd += ["--model", model_name]
    if adapter:
        cmd += ["--adapter", adapter]
    if cpu:
        cmd += ["--device", "cpu"]
    env = dict(os.environ)
    if cpu:  # share the cores instead of oversubscribing them
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // num_processes))
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"accelerate launch failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return pd.read_parquet(out)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point for ``accelerate launch -m xalign_utils.runner``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=Path, required=True, help="JSONL from notebook 01")
    parser.add_argument("--methods", required=True, help="comma-separated method names")
    parser.add_argument("--out", type=Path, required=True, help="gathered parquet file")
    parser.add_argument("--model", default=None)
    parser.add_argument("--adapter", default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--options", default="{}", help="JSON of method options")
    args = parser.parse_args(argv)
    run_attribution(
        load_examples(args.examples),
        args.methods.split(","),
        args.out,
        model_name=args.model,
        adapter=args.adapter,
        device=args.device,
        batch_size=args.batch_size,
        **json.loads(args.options),
    )


if __name__ == "__main__":
    main()


def attributions_name(cfg) -> str:
    """Stored-table name of notebook 03's attributions for a config (03 writes it, 04 and
    later read it): ``attributions_<target>`` plus the method list when it is not all."""
    return f"attributions_{cfg.target}" + (f"_{'_'.join(cfg.methods)}" if cfg.methods else "")


def method_options(cfg) -> dict:
    """Method options of a :class:`~xalign_utils.config.RunConfig` (seeded by its seed)."""
    return {
        "ig_steps": cfg.ig_steps,
        "n_samples": cfg.n_samples,
        "gradient_shap_samples": max(2, cfg.n_samples // 4),
        "noise_samples": cfg.noise_samples,
        "bisection_steps": cfg.bisection_steps,
        "seed": cfg.seed,
    }


def attribution_plan(
    cfg, examples: dict[str, list[Example]], methods: Sequence[str] | None = None
) -> list[tuple[list[str], list[Example]]]:
    """Which methods run on which examples: ``[(methods, examples), ...]``.

    Every method sees the *first* examples of each dataset (``n_attr`` for one-pass
    methods, ``n_attr_costly`` and ``n_attr_noiser`` for the others), so the smaller
    sets are subsets of the larger and methods are compared on shared examples.
    """
    chosen = list(methods) if methods else available_methods()
    unknown = [m for m in chosen if m not in METHODS]
    if unknown:
        raise KeyError(f"unknown attribution method(s) {unknown}; available: {available_methods()}")
    sizes = {"one_pass": cfg.n_attr, "many_pass": cfg.n_attr_costly, "costliest": cfg.n_attr_noiser}
    plan = []
    for tier in COST_TIERS:
        ms = [m for m in chosen if METHODS[m].cost == tier]
        subset = [ex for exs in examples.values() for ex in exs[: sizes[tier]]]
        if ms and subset:
            plan.append((ms, subset))
    return plan


def group_key(
    methods: Sequence[str],
    examples: Sequence[Example],
    options: dict,
    model_name: str | None,
    batch_size: int,
    adapter: str | None = None,
) -> str:
    """Hash of everything a group's attribution table depends on: its methods, examples
    (full content), options, model, batch size and the source of the runner and of the
    methods' modules (with what they import).

    :func:`attribute_profile` reuses a finished group file with the same key, so a
    re-run after a change to one method, or to one tier's example count, recomputes
    only the groups that change changes.
    """
    modules = ["runner", *sorted({METHODS[m].function.__module__ for m in methods})]
    blob = json.dumps(
        {
            "methods": list(methods),
            "examples": [ex.to_dict() for ex in examples],
            "options": options,
            "model": model_name,
            **({"adapter": adapter} if adapter else {}),
            "batch_size": batch_size,
            "code": code_hash(modules),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def attribute_profile(
    cfg,
    examples: dict[str, list[Example]],
    work_dir: Path,
    *,
    methods: Sequence[str] | None = None,
    num_processes: int = 1,
    device: str | None = None,
    target: str = "pred",
    progress: bool = False,
) -> pd.DataFrame:
    """Run :func:`attribution_plan` in this process or sharded over ``num_processes``.

    Each group's table is written to ``work_dir/group-<g>-<key>.parquet`` (see
    :func:`group_key`) and read back instead of recomputed when that file exists.

    Returns:
        The attribution table of every (methods, examples) group, concatenated.
    """
    work_dir = Path(work_dir)
    options = dict(method_options(cfg), target=target)
    parts = []
    for g, (ms, subset) in enumerate(attribution_plan(cfg, examples, methods)):
        key = group_key(ms, subset, options, cfg.model, cfg.batch_size, cfg.adapter)
        out = work_dir / f"group-{g}-{key}.parquet"
        if out.is_file():  # finished by an earlier run with the same inputs and code
            parts.append(pd.read_parquet(out).drop(columns=["example_index"]))
            continue
        if num_processes > 1:
            save_examples(subset, work_dir / f"group-{g}.jsonl")
            part = launch(
                work_dir / f"group-{g}.jsonl",
                ms,
                out,
                num_processes=num_processes,
                cpu=device == "cpu" or (device is None and not _has_gpu()),
                options=options,
                model_name=cfg.model,
                adapter=cfg.adapter,
                batch_size=cfg.batch_size,
            )
        else:
            part = run_attribution(
                subset,
                ms,
                out,
                model_name=cfg.model,
                adapter=cfg.adapter,
                batch_size=cfg.batch_size,
                device=device,
                progress=progress,
                **options,
            )
        parts.append(part.drop(columns=["example_index"]))
    return pd.concat(parts, ignore_index=True)
