"""LoRA fine-tuning on the classification prompt, optionally explanation-regularised
(DESIGN.md §9, notebook 05).

The loss uses the batches, whole-string label scores and input-word embeddings of
attribution (:mod:`xalign_utils.forward`). Regularisers act on the gradient of the gold
label's log-probability w.r.t. the input-word embeddings, taken with ``create_graph=True``
so the penalty is trained too (double backward: eager attention, ``load_model(...,
for_gradients=True)``): ``rrr``, Ross et al.'s (2017) squared input gradients outside the
rationale, or ``align``, KL from the rationale to the input×gradient word distribution.
:func:`train` runs on ``accelerate`` (data-parallel under ``accelerate launch``,
:func:`launch_training`), seeded, resumable from its checkpoints, and saves a PEFT
adapter with a manifest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from .data import load_examples
from .forward import Batch, input_embeddings, label_logprobs_at, prepare
from .models import load_model
from .schema import Example

#: Regulariser names: none, Ross et al.'s input-gradient penalty, attribution alignment.
REGULARISERS = ("none", "rrr", "align")
#: Columns of the loss curve :func:`train` returns.
COLUMNS = ("step", "epoch", "loss", "label_loss", "reg", "lr")
#: Config fields that change no result (left out of the resume check).
_BOOKKEEPING = ("checkpoint_every", "checkpoint_steps")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one fine-tuning run (defaults: a small CPU run).

    Attributes:
        target_modules: module names LoRA adapts (Llama-style attention projections).
        max_examples: keep the first ``max_examples`` training examples (``None``: all).
        regulariser: one of :data:`REGULARISERS`; ``lam`` (λ) weighs it.
        renormalise: label loss as cross-entropy over the label set (see :func:`label_loss`).
        checkpoint_every, checkpoint_steps: ``epoch`` (at every epoch's end) or ``none``;
            also every this many optimiser steps.
        start_sha256: sha256 of the adapter weights a continued run starts from (``None``:
            fresh LoRA weights); part of what a resumed or finished run must match.
    """

    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    lr: float = 1e-4
    warmup_steps: int = 10
    epochs: int = 1
    batch_size: int = 8
    max_examples: int | None = None
    seed: int = 0
    regulariser: str = "none"
    lam: float = 0.0
    renormalise: bool = True
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    checkpoint_every: str = "epoch"
    checkpoint_steps: int | None = None
    start_sha256: str | None = None


#: Fayyaz et al. (2024), Table A.2: LoRA r=32, α=16, dropout 0.05, batch 64, 10 epochs,
#: 5,000 training examples per dataset, learning rate 7e-6, 10 warm-up steps.
_PAPER_LORA = {"lora_r": 32, "lora_alpha": 16, "lora_dropout": 0.05}
PAPER = TrainConfig(**_PAPER_LORA, batch_size=64, epochs=10, max_examples=5000, lr=7e-6)


def needs_eager_attention(regulariser: str) -> bool:
    """Whether training with ``regulariser`` needs eager attention (its double backward
    does not run through the fused kernel); plain runs take the faster fused one."""
    return regulariser != "none"


def train_config(run, **overrides) -> TrainConfig:
    """The :class:`TrainConfig` of a :class:`~xalign_utils.config.RunConfig`'s training
    fields (learning rate, epochs, batch, LoRA shape, warm-up, seed), with ``overrides``."""
    fields = {
        "lr": run.train_lr,
        "epochs": run.train_epochs,
        "batch_size": run.train_batch_size,
        "lora_r": run.lora_r,
        "lora_alpha": run.lora_alpha,
        "lora_dropout": run.lora_dropout,
        "warmup_steps": run.train_warmup_steps,
        "seed": run.seed,
    }
    return TrainConfig(**(fields | overrides))


def add_lora(model, cfg: TrainConfig) -> PeftModel:
    """Wrap ``model`` (in place) with fresh LoRA adapters, initialised from ``cfg.seed``."""
    torch.manual_seed(cfg.seed)
    sizes = {"r": cfg.lora_r, "lora_alpha": cfg.lora_alpha, "lora_dropout": cfg.lora_dropout}
    modules = list(cfg.target_modules)
    return get_peft_model(model, LoraConfig(**sizes, target_modules=modules, task_type="CAUSAL_LM"))


def with_live_prefix(model, batch: Batch) -> Batch:
    """``batch`` with its shared-prefix keys/values recomputed with gradient tracking.

    ``prepare`` computes them under ``no_grad``, but they depend on the LoRA weights too.
    One batch-1 pass, expanded to every row, keeps loss and gradient equal to a plain
    full-sequence forward's (LoRA dropout on the prefix is drawn once for all rows)."""
    if not batch.prefix_len:
        return batch
    cache = model(input_ids=batch.ids[:1, : batch.prefix_len], use_cache=True).past_key_values
    return replace(batch, prefix_kv=[(layer.keys, layer.values) for layer in cache.layers])


def _word_masks(batch: Batch, rationales: Sequence[Sequence[int]]) -> torch.Tensor:
    """``[B, P]`` bool: input token ``j`` of example ``b`` belongs to a rationale word."""
    inside = torch.zeros_like(batch.in_valid)
    for b, words in enumerate(rationales):
        keep = torch.tensor(list(words), dtype=torch.long, device=inside.device)
        inside[b] = torch.isin(batch.tok_word[b], keep) & batch.in_valid[b]
    return inside


def _word_shares(batch: Batch, grad: torch.Tensor, inp: torch.Tensor) -> torch.Tensor:
    """``[B, W]`` input×gradient magnitude per word (L2 norm over dimensions, summed over
    the word's tokens, as :func:`xalign_utils.attribution.gradient.input_x_gradient`),
    normalised over the example's words; differentiable (a tiny ε keeps the norm smooth)."""
    prod = grad * inp
    mag = torch.sqrt(prod.pow(2).sum(-1) + 1e-12) * batch.in_valid
    n_words = max(len(rp.word_tokens) for rp in batch.rendered) + 1  # last: no word
    slot = torch.where(batch.tok_word >= 0, batch.tok_word, n_words - 1)
    words = mag.new_zeros(mag.shape[0], n_words).scatter_add(1, slot, mag)[:, :-1]
    return words / words.sum(-1, keepdim=True).clamp(min=1e-30)


def _scored(model, batch: Batch, track: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input-token embeddings [B, P, D], label log-probabilities [B, L])`` from one
    forward with a live prefix; the embeddings are a leaf tracking gradients if ``track``."""
    batch = with_live_prefix(model, batch)
    full, _ = input_embeddings(model, batch)
    idx = batch.in_pos.unsqueeze(-1).expand(-1, -1, full.shape[-1])
    current = full.gather(1, idx)
    inp = current.detach().requires_grad_(track)
    emb = full.scatter(1, idx, torch.where(batch.in_valid.unsqueeze(-1), inp, current))
    args = (batch.mask, batch.positions, batch.forms, batch.form_label, batch.n_labels)
    return inp, label_logprobs_at(model, emb, *args, batch)


def _check(regulariser: str, rationales, n: int) -> None:
    if regulariser not in REGULARISERS:
        raise ValueError(f"unknown regulariser {regulariser!r}; valid: {list(REGULARISERS)}")
    if regulariser != "none" and (rationales is None or len(rationales) != n):
        raise ValueError(f"regulariser {regulariser!r} needs one rationale per example")


def batch_terms(
    model,
    batch: Batch,
    rationales: Sequence[Sequence[int]] | None = None,
    regulariser: str = "none",
    *,
    renormalise: bool = True,
    create_graph: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example label loss and regulariser ``([B], [B])`` from one forward pass over a
    ``prepare(..., target="gold")`` batch. The regulariser is 0 for ``none`` and for an
    empty rationale; ``create_graph=False`` gives its value without a graph (λ = 0)."""
    _check(regulariser, rationales, batch.size)
    inp, logp = _scored(model, batch, regulariser != "none")
    target = batch.target.unsqueeze(1)
    gold = logp.gather(1, target).squeeze(1)
    lab = -(torch.log_softmax(logp, -1) if renormalise else logp).gather(1, target).squeeze(1)
    if regulariser == "none":
        return lab, lab.new_zeros(batch.size)
    (grad,) = torch.autograd.grad(gold.sum(), inp, create_graph=create_graph, retain_graph=True)
    if regulariser == "rrr":
        outside = batch.in_valid & ~_word_masks(batch, rationales)
        has = torch.tensor([bool(r) for r in rationales], device=grad.device)
        reg = (grad.pow(2).sum(-1) * outside).sum(-1) * has
    else:
        share = _word_shares(batch, grad, inp.detach())
        terms = []
        for b, words in enumerate(rationales):
            spans = batch.rendered[b].word_tokens
            words = sorted({w for w in words if spans[w]})  # words with tokens of their own
            got = share[b, torch.tensor(words, dtype=torch.long, device=share.device)]
            n = max(len(words), 1)
            terms.append(((-math.log(n) - torch.log(got + 1e-12)) / n).sum())
        reg = torch.stack(terms)
    return lab, reg if create_graph else reg.detach()


def label_loss(model, batch: Batch, renormalise: bool = True) -> torch.Tensor:
    """Mean over examples of ``-log p(gold label | prompt)``, ``p(label)`` the summed
    teacher-forced probabilities of the label's surface forms (whole strings). With
    ``renormalise`` (default) it is renormalised over the label set: a cross-entropy over
    labels, which trains exactly what predictions are the argmax of. Without it the loss
    also pushes up the label strings' total mass (plain fine-tuning on the answer)."""
    return batch_terms(model, batch, renormalise=renormalise)[0].mean()


def rrr_penalty(model, batch: Batch, rationales: Sequence[Sequence[int]]) -> torch.Tensor:
    """Mean over examples of the squared gradient of ``log p(gold)`` (not renormalised, as
    attribution explains it; Ross et al. 2017 sum over classes) w.r.t. the embeddings of
    the input words outside the rationale; 0 when the gradient lies inside it."""
    return batch_terms(model, batch, rationales, "rrr")[1].mean()


def alignment_loss(model, batch: Batch, rationales: Sequence[Sequence[int]]) -> torch.Tensor:
    """Mean over examples of KL(rationale ‖ attribution): the rationale uniform over its
    words, the attribution :func:`word_attribution`'s input×gradient word shares."""
    return batch_terms(model, batch, rationales, "align")[1].mean()


def word_attribution(model, batch: Batch) -> torch.Tensor:
    """``[B, W]`` share of each input word in the input×gradient magnitude of
    ``log p(target label)`` (padded with 0 beyond an example's words)."""
    inp, logp = _scored(model, batch, True)
    (grad,) = torch.autograd.grad(logp.gather(1, batch.target.unsqueeze(1)).sum(), inp)
    return _word_shares(batch, grad, inp.detach()).detach()


def checkpoints(out_dir: Path) -> list[Path]:
    """Checkpoint folders of a run, oldest first (each holds a loadable ``adapter``)."""
    return sorted(Path(out_dir).glob("checkpoints/step-*[0-9]"))  # not step-*.tmp


def examples_digest(examples: Sequence[Example]) -> str:
    """sha256 of the examples' dataset/id sequence (what a run trained on, in order)."""
    return hashlib.sha256("\n".join(f"{e.dataset}/{e.id}" for e in examples).encode()).hexdigest()


def _result_fields(cfg: TrainConfig, examples: Sequence[Example]) -> dict:
    """What a checkpoint must share with the run resuming from it."""
    fields = {k: v for k, v in asdict(cfg).items() if k not in _BOOKKEEPING}
    return json.loads(json.dumps(fields | {"examples_sha256": examples_digest(examples)}))


def _save_checkpoint(acc, model, opt, sched, fields, out_dir, step, rows) -> None:
    """Adapter, optimiser, schedule, every process's RNG and the curve so far (atomic)."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    rngs = gather_object([(torch.get_rng_state(), cuda)])  # one per process, in rank order
    if acc.is_main_process:
        final = Path(out_dir) / "checkpoints" / f"step-{step:07d}"
        tmp = final.with_name(final.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp / "adapter")
        saved = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": rngs}
        torch.save(saved, tmp / "state.pt")
        state = {"step": step, "config": fields, "rows": rows}
        (tmp / "state.json").write_text(json.dumps(state, indent=1))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    acc.wait_for_everyone()


def _load_checkpoint(acc, model, opt, sched, fields, path: Path) -> tuple[int, list[dict]]:
    state = json.loads((path / "state.json").read_text())
    if diff := sorted(k for k in fields if state["config"].get(k) != fields[k]):
        raise ValueError(f"{path}: written with other {diff}, cannot resume; use a new out_dir")
    set_peft_model_state_dict(model, load_file(path / "adapter" / "adapter_model.safetensors"))
    saved = torch.load(path / "state.pt")
    opt.load_state_dict(saved["optimizer"])
    sched.load_state_dict(saved["scheduler"])
    cpu, cuda = saved["rng"][acc.process_index]
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)
    return int(state["step"]), list(state["rows"])


def _step_sums(model, tokenizer, examples, rationales, cfg) -> torch.Tensor:
    """``[label loss, regulariser]`` summed over examples (one batch per dataset)."""
    sums = torch.zeros(2, device=next(model.parameters()).device)
    for dataset in dict.fromkeys(ex.dataset for ex in examples):
        members = [i for i, ex in enumerate(examples) if ex.dataset == dataset]
        model.eval()  # the prediction pass inside prepare: no dropout, no RNG drawn
        batch = prepare(model, tokenizer, [examples[i] for i in members], target="gold")
        model.train()
        rats = None if rationales is None else [rationales[i] for i in members]
        opts = {"renormalise": cfg.renormalise, "create_graph": cfg.lam != 0}
        sums = sums + torch.stack(
            [t.sum() for t in batch_terms(model, batch, rats, cfg.regulariser, **opts)]
        )
    return sums


def train(
    model,
    tokenizer,
    examples: Sequence[Example],
    rationales: Sequence[Sequence[int]] | None,
    cfg: TrainConfig,
    out_dir: Path,
    *,
    device: str | None = None,
    progress: bool = True,
    stop_after_steps: int | None = None,
) -> pd.DataFrame:
    """Fine-tune ``model`` with LoRA on ``examples``, resuming from ``out_dir``'s latest
    checkpoint if any (same config and examples required).

    Each ``accelerate`` process takes every N-th example of a batch and gradients are
    summed across processes, so N processes take the steps of one (up to rounding). Epoch
    ``e``'s data order is seeded by ``(cfg.seed, e)``; dropout draws from ``torch``'s RNG
    (seeded, checkpointed): a resumed run ends with an uninterrupted run's weights.

    Args:
        model: a causal LM with eager attention (LoRA is added unless it is a PeftModel).
        rationales: per example, flat word positions (:meth:`Example.rationale_positions`);
            needed unless ``cfg.regulariser == "none"``.
        out_dir: receives ``checkpoints/step-*``, the final ``adapter`` (safetensors),
            ``manifest.json`` and ``loss_curve.parquet``.
        stop_after_steps: stop (as if interrupted) after this many steps in all.

    Returns:
        The loss curve: one row per step (``step``, ``epoch``, ``loss``, ``label_loss``,
        ``reg``, ``lr``); ``loss = label_loss + λ·reg``, each a mean over the batch.
    """
    examples = list(examples)[: cfg.max_examples]
    rationales = None if rationales is None else [list(r) for r in rationales][: len(examples)]
    _check(cfg.regulariser, rationales, len(examples))
    acc = Accelerator(cpu=device == "cpu")
    out_dir = Path(out_dir)
    if not isinstance(model, PeftModel):
        model = add_lora(model, cfg)
    model.to(acc.device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    per_epoch = math.ceil(len(examples) / cfg.batch_size)
    total = per_epoch * cfg.epochs
    sched = get_linear_schedule_with_warmup(opt, cfg.warmup_steps, total)
    torch.manual_seed(cfg.seed + acc.process_index)
    step, rows, fields = 0, [], _result_fields(cfg, examples)
    if found := checkpoints(out_dir):
        step, rows = _load_checkpoint(acc, model, opt, sched, fields, found[-1])
    bar = tqdm(total=total, initial=step, disable=not (progress and acc.is_main_process))
    model.train()
    while step < total and (stop_after_steps is None or step < stop_after_steps):
        epoch, k = divmod(step, per_epoch)
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
        order = torch.randperm(len(examples), generator=gen).tolist()
        chosen = order[k * cfg.batch_size : (k + 1) * cfg.batch_size]
        mine = chosen[acc.process_index :: acc.num_processes]
        rats = None if rationales is None else [rationales[i] for i in mine]
        sums = _step_sums(model, tokenizer, [examples[i] for i in mine], rats, cfg)
        opt.zero_grad(set_to_none=True)
        if mine:
            ((sums[0] + cfg.lam * sums[1]) / len(chosen)).backward()
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.flatten() for g in grads] + [sums.detach()])
        if acc.num_processes > 1:
            flat = acc.reduce(flat, reduction="sum")
        for p, g in zip(params, flat[:-2].split([p.numel() for p in params]), strict=True):
            p.grad = g.view_as(p).clone()
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        lr = sched.get_last_lr()[0]
        opt.step()
        sched.step()
        step += 1
        lab_mean, reg_mean = (flat[-2:] / len(chosen)).tolist()
        values = (step, epoch, lab_mean + cfg.lam * reg_mean, lab_mean, reg_mean, lr)
        rows.append(dict(zip(COLUMNS, values, strict=True)))
        bar.update(1)
        bar.set_postfix(loss=f"{sum(r['loss'] for r in rows[-20:]) / len(rows[-20:]):.4f}")
        at_epoch_end = step % per_epoch == 0 and cfg.checkpoint_every == "epoch"
        if at_epoch_end or (cfg.checkpoint_steps and step % cfg.checkpoint_steps == 0):
            _save_checkpoint(acc, model, opt, sched, fields, out_dir, step, rows)
    bar.close()
    curve = pd.DataFrame(rows, columns=list(COLUMNS))
    if step < total:
        return curve
    if acc.is_main_process:
        model.save_pretrained(out_dir / "adapter")
        curve.to_parquet(out_dir / "loss_curve.parquet", index=False)
        manifest = {"base_model": getattr(model.config, "_name_or_path", None) or None}
        manifest |= {"config": asdict(cfg), "seed": cfg.seed, "steps": step}
        manifest |= {"final_loss": rows[-1]["loss"] if rows else None, "n_examples": len(examples)}
        manifest |= {
            "examples_sha256": examples_digest(examples),
            "num_processes": acc.num_processes,
        }
        (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    acc.wait_for_everyone()
    return curve


def launch_training(
    model_dir: Path, examples_file: Path, out_dir: Path, cfg: TrainConfig, *, num_processes: int
) -> pd.DataFrame:
    """Run :func:`train` under ``accelerate launch`` with ``num_processes`` on the CPU
    (rationales: the examples' own, :meth:`Example.rationale_positions`); returns the loss curve.

    Raises:
        RuntimeError: a process failed; the message carries its stderr tail.
    """
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes"]
    cmd += [str(num_processes), "--num_machines", "1", "--mixed_precision", "no"]
    cmd += ["--dynamo_backend", "no", "--multi_gpu" if num_processes > 1 else "--cpu"]
    cmd += ["-m", "xalign_utils.training", "--model", str(model_dir), "--out", str(out_dir)]
    cmd += ["--examples", str(examples_file), "--config", json.dumps(asdict(cfg))]
    cmd += ["--device", "cpu"]  # share the cores instead of oversubscribing them:
    threads = str(max(1, (os.cpu_count() or 1) // num_processes))
    env = dict(os.environ, OMP_NUM_THREADS=threads)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"accelerate launch failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return pd.read_parquet(Path(out_dir) / "loss_curve.parquet")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point for ``accelerate launch -m xalign_utils.training``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name in ("--model", "--examples", "--out"):  # model folder, training JSONL, run folder
        parser.add_argument(name, required=True)
    parser.add_argument("--config", default="{}", help="JSON of TrainConfig fields")
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    fields = json.loads(args.config)
    fields["target_modules"] = tuple(fields.get("target_modules", TrainConfig.target_modules))
    cfg = TrainConfig(**fields)
    eager = needs_eager_attention(cfg.regulariser)
    model, tokenizer = load_model(args.model, for_gradients=eager, device=args.device)
    examples = load_examples(Path(args.examples))
    rationales = [ex.rationale_positions() for ex in examples]
    train(model, tokenizer, examples, rationales, cfg, args.out, device=args.device, progress=False)


if __name__ == "__main__":
    main()
