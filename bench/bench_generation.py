"""Generation throughput: notebook 02's prompts decoded three ways, same greedy outputs.

``N_PER_DATASET`` default-profile evaluation examples of each dataset, six prompts each as
notebook 02 asks them (Unbound and Top-Var lists for the gold and another label, budget
32 tokens; explain-then-predict and predict-then-explain, budget 64):

* ``today``: the path notebook 02 used before the decoding package — ``model.generate``
  on left-padded batches of ``GEN_BATCH`` prompts grouped by length, one call per role
  and budget (:func:`xalign_utils.models.generate`);
* ``xalign``: :func:`xalign_utils.explanations.elicit_many` — one call, the prompts about
  one example decoded as a group (shared prefix computed once per group, the prefix all
  prompts share once), rows leaving the batch as they end;
* ``batch 1``: a plain ``model.generate`` loop, one prompt at a time, as reference code
  does it (on the first ``N_BATCH1`` prompts only: it is slow).

Tokens are the generated tokens (end token included); every row reports tokens/second
and whether its outputs equal ``today``'s token for token. Writes
``bench/generation.json``. Run with ``make bench`` (or
``.venv/bin/python bench/bench_generation.py``).
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch

from xalign_utils import config, data, models
from xalign_utils.decoding.generation import eos_ids
from xalign_utils.explanations import elicit_many, rationale_k
from xalign_utils.prompts import render

N_PER_DATASET = int(os.environ.get("N_PER_DATASET", "16"))
GEN_BATCH = int(os.environ.get("GEN_BATCH", "64"))
N_BATCH1 = int(os.environ.get("N_BATCH1", "24"))
LISTS, FREE = (
    ("rationale_unbound", "rationale_topk"),
    ("explain_then_predict", "predict_then_explain"),
)


def requests(cfg: config.RunConfig) -> list[tuple]:
    """``(example, role, label, budget)`` for notebook 02's six prompts per example."""
    out = []
    for name in cfg.datasets:
        for ex in data.load_processed(cfg.processed_dir, name, "eval")[:N_PER_DATASET]:
            other = next(lab for lab in data.LABELS[ex.dataset] if lab != ex.label)
            out += [(ex, role, lab, 32) for role in LISTS for lab in (ex.label, other)]
            out += [(ex, role, ex.label, 64) for role in FREE]
    return out


def main() -> None:
    cfg = config.load_config("default")
    model, tok = models.load_model(cfg.model, device="cpu")
    reqs = requests(cfg)
    ids = [
        render(tok, ex, role, label=lab, k=rationale_k(ex, cfg.topk_fixed)).input_ids
        for ex, role, lab, _ in reqs
    ]
    ends = eos_ids(model, tok)

    start = time.perf_counter()
    today: list[str] = [""] * len(reqs)
    for role in (*LISTS, *FREE):
        idx = [i for i, r in enumerate(reqs) if r[1] == role]
        outs = models.generate(model, tok, [ids[i] for i in idx], reqs[idx[0]][3], GEN_BATCH)
        for i, o in zip(idx, outs, strict=True):
            today[i] = o["text"]
    t_today = time.perf_counter() - start

    start = time.perf_counter()
    new = elicit_many(
        model,
        tok,
        [r[:3] for r in reqs],
        fixed_k=cfg.topk_fixed,
        max_new_tokens=[r[3] for r in reqs],
        batch_size=GEN_BATCH,
    )
    t_new = time.perf_counter() - start
    n_tokens = sum(
        len(tok.encode(t, add_special_tokens=False)) + (not hit)
        for t, hit in zip(new["raw"], new["hit_limit"], strict=True)
    )

    start, one_tokens, one_same = time.perf_counter(), 0, 0
    with torch.inference_mode():
        for i in range(min(N_BATCH1, len(reqs))):
            gen = model.generate(
                input_ids=torch.tensor([ids[i]]),
                max_new_tokens=reqs[i][3],
                do_sample=False,
                pad_token_id=tok.pad_token_id,
            )[0, len(ids[i]) :].tolist()
            one_tokens += len(gen)
            text = tok.decode([t for t in gen if t not in ends], skip_special_tokens=True)
            one_same += text.strip() == today[i]
    t_one = time.perf_counter() - start

    same = int(sum(a == b for a, b in zip(today, new["raw"], strict=True)))
    rows = [
        {"path": "today (model.generate, length batches)", "prompts": len(reqs),
         "seconds": t_today, "tokens_per_s": n_tokens / t_today, "identical": len(reqs)},
        {"path": "xalign (grouped prefix caches)", "prompts": len(reqs), "seconds": t_new,
         "tokens_per_s": n_tokens / t_new, "identical": same},
        {"path": "model.generate, batch 1", "prompts": min(N_BATCH1, len(reqs)),
         "seconds": t_one, "tokens_per_s": one_tokens / t_one, "identical": one_same},
    ]  # fmt: skip
    result = {
        "machine": platform.platform(),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "n_per_dataset": N_PER_DATASET,
        "gen_batch": GEN_BATCH,
        "generated_tokens": n_tokens,
        "speedup_vs_today": t_today / t_new,
        "rows": rows,
    }
    for r in rows:
        print(
            f"{r['path']:42s} {r['prompts']:4d} prompts {r['seconds']:7.1f} s "
            f"{r['tokens_per_s']:7.1f} tok/s  identical to today: {r['identical']}/{r['prompts']}"
        )
    print(f"speed-up of xalign over today: {t_today / t_new:.2f}x")
    Path(__file__).with_name("generation.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
