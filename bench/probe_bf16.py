"""Probe: notebook 02's generation in bfloat16 instead of float32, speed against identity.

This CPU has AMX-BF16 units, on which bfloat16 matrix products run several times faster
than float32 ones; the question is whether generating in bfloat16 is a way to the 3×
speed-up issue 13 asks for *at identical outputs*. Same prompts as
``bench/bench_generation.py`` (``N_PER_DATASET`` examples per dataset, six prompts each),
both through :func:`xalign_utils.explanations.elicit_many`, after one warm-up call each.
Writes ``bench/probe_bf16.json``: seconds, generated tokens and tokens/s per dtype, and
how many bfloat16 outputs equal the float32 ones. Run it alone:
``.venv/bin/python bench/probe_bf16.py``.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch
from bench_generation import GEN_BATCH, N_PER_DATASET, requests

from xalign_utils import config, models
from xalign_utils.explanations import elicit_many


def main() -> None:
    cfg = config.load_config("default")
    reqs = requests(cfg)
    asks, budgets = [r[:3] for r in reqs], [r[3] for r in reqs]
    rows, outputs = [], {}
    for dtype in ("float32", "bfloat16"):
        model, tok = models.load_model(cfg.model, device="cpu", dtype=dtype)
        kw = {"fixed_k": cfg.topk_fixed, "batch_size": GEN_BATCH}
        elicit_many(model, tok, asks[:6], max_new_tokens=budgets[:6], **kw)  # warm-up
        start = time.perf_counter()
        out = elicit_many(model, tok, asks, max_new_tokens=budgets, **kw)
        seconds = time.perf_counter() - start
        tokens = sum(
            len(tok.encode(t, add_special_tokens=False)) + (not hit)
            for t, hit in zip(out["raw"], out["hit_limit"], strict=True)
        )
        outputs[dtype] = list(out["raw"])
        rows.append(
            {"dtype": dtype, "prompts": len(reqs), "seconds": seconds, "tokens": tokens,
             "tokens_per_s": tokens / seconds}
        )  # fmt: skip
    same = sum(a == b for a, b in zip(outputs["float32"], outputs["bfloat16"], strict=True))
    result = {
        "machine": platform.platform(),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "n_per_dataset": N_PER_DATASET,
        "rows": rows,
        "bf16_speedup": rows[0]["seconds"] / rows[1]["seconds"],
        "bf16_identical_to_fp32": same,
    }
    for r in rows:
        print(f"{r['dtype']:9s} {r['seconds']:6.1f} s {r['tokens_per_s']:6.1f} tok/s")
    print(f"bfloat16 {result['bf16_speedup']:.2f}x, identical outputs {same}/{len(reqs)}")
    Path(__file__).with_name("probe_bf16.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
