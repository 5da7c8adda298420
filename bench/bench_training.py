"""Training throughput: xalign's LoRA step (plain and regularised) against a plain PEFT +
Hugging Face ``Trainer`` step on the same batch.

Same model (the offline default, fp32; fused attention for the plain steps as notebook 05
trains them, eager where the double backward needs it), LoRA shape of the default
profile, ``BATCH`` e-SNLI training examples (dev split) with their chat-rendered
classification prompts and gold labels:

* ``xalign plain``: :func:`xalign_utils.training.batch_terms` (the shared chat-template
  prefix computed once per batch, logits only at the label positions, the label loss over
  every surface form of every label) + backward + AdamW step;
* ``xalign rrr`` / ``xalign align``: the same with the regulariser at λ = 1 (double
  backward through the input gradient);
* ``peft + Trainer``: the usual recipe, ``Trainer`` on prompt + gold label string with the
  prompt tokens masked (-100), full logits over every position, right padding.

Prints examples/second per row over ``STEPS`` timed steps (after one warm-up step) and
writes ``bench/training.json``. Run with ``make bench`` (or
``.venv/bin/python bench/bench_training.py``).
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from xalign_utils import config, data, forward, models, training
from xalign_utils.prompts import render

BATCH = int(os.environ.get("BATCH", "8"))
STEPS = int(os.environ.get("STEPS", "3"))


def xalign_seconds(regulariser: str) -> float:
    """Seconds per step of xalign's loss + backward + optimiser step."""
    eager = training.needs_eager_attention(regulariser)
    model, tok = models.load_model(None, for_gradients=eager, device="cpu")
    tc = training.train_config(config.load_config("default"), regulariser=regulariser, lam=1.0)
    model = training.add_lora(model, tc)
    examples = data.load_esnli_highlights("dev")[:BATCH]
    rationales = [ex.rationale_positions() for ex in examples]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=tc.lr)
    times = []
    for step in range(STEPS + 1):
        start = time.perf_counter()
        model.eval()
        batch = forward.prepare(model, tok, examples, target="gold")
        model.train()
        lab, reg = training.batch_terms(model, batch, rationales, regulariser)
        (lab.mean() + tc.lam * reg.mean()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step:  # the first step warms up
            times.append(time.perf_counter() - start)
    return sum(times) / len(times)


class _Sequences(torch.utils.data.Dataset):
    """Prompt + gold label string, the prompt masked out of the labels."""

    def __init__(self, tok, examples):
        self.rows = []
        for ex in examples:
            prompt = render(tok, ex, "classify").input_ids
            answer = tok(ex.label, add_special_tokens=False).input_ids + [tok.eos_token_id]
            ids = list(prompt) + answer
            self.rows.append({"input_ids": ids, "labels": [-100] * len(prompt) + answer})

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]


def _collate(pad_id: int):
    def collate(rows: list[dict]) -> dict:
        width = max(len(r["input_ids"]) for r in rows)
        out = {"input_ids": [], "labels": [], "attention_mask": []}
        for r in rows:
            pad = width - len(r["input_ids"])
            out["input_ids"].append(r["input_ids"] + [pad_id] * pad)
            out["labels"].append(r["labels"] + [-100] * pad)
            out["attention_mask"].append([1] * len(r["input_ids"]) + [0] * pad)
        return {k: torch.tensor(v) for k, v in out.items()}

    return collate


def trainer_seconds() -> float:
    """Seconds per step of a plain PEFT + ``Trainer`` run on the same examples."""
    model, tok = models.load_model(None, device="cpu")
    tc = training.train_config(config.load_config("default"))
    model = training.add_lora(model, tc)
    examples = data.load_esnli_highlights("dev")[:BATCH]
    dataset = _Sequences(tok, examples * (STEPS + 1))
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=BATCH,
            max_steps=STEPS + 1,
            learning_rate=tc.lr,
            logging_strategy="no",
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            disable_tqdm=True,
            dataloader_drop_last=True,
        )
        trainer = Trainer(model=model, args=args, train_dataset=dataset)
        trainer.data_collator = _collate(tok.pad_token_id)
        stamps: list[float] = []

        class Timer(TrainerCallback):
            def on_step_begin(self, *a, **k):
                stamps.append(time.perf_counter())

            def on_train_end(self, *a, **k):
                stamps.append(time.perf_counter())

        trainer.add_callback(Timer())
        trainer.train()
    steps = [b - a for a, b in zip(stamps[1:-1], stamps[2:], strict=False)]
    return sum(steps) / len(steps)


def main() -> None:
    torch.manual_seed(0)
    rows = []
    for name, fn in (
        ("xalign plain", lambda: xalign_seconds("none")),
        ("xalign rrr (λ=1, double backward)", lambda: xalign_seconds("rrr")),
        ("xalign align (λ=1, double backward)", lambda: xalign_seconds("align")),
        ("peft + Trainer (full-sequence LM loss)", trainer_seconds),
    ):
        seconds = fn()
        rows.append(
            {
                "step": name,
                "batch": BATCH,
                "seconds_per_step": seconds,
                "examples_per_s": BATCH / seconds,
            }
        )
        print(f"{name:42s} {BATCH / seconds:8.2f} examples/s ({seconds:.2f} s/step)", flush=True)
    out = {
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "steps_timed": STEPS,
        "rows": rows,
    }
    path = Path(__file__).with_name("training.json")
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
