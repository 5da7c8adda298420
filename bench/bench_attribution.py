"""Attribution throughput: xalign's batched suite against Captum's ``LLMGradientAttribution``.

Same model (the offline default, eager attention, fp32), the same e-SNLI chat prompts and
the same target (the first token of the predicted label's verbaliser). Prints
examples/second per method and the ratio, plus the achieved fraction of the machine's
measured fp32 matmul peak for the gradient methods; writes ``bench/results.json``.

Run with ``make bench`` (``N_PROMPTS=8 make bench`` for a quicker look). Inseq is not
compared yet: it needs its own environment (see the closing notes of the issue).
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch

from xalign_utils import attribution, data, models

N_PROMPTS = int(os.environ.get("N_PROMPTS", "32"))
IG_STEPS = 16
BATCH = 8


def matmul_peak_gflops(n: int = 2048, repeats: int = 10) -> float:
    """Measured fp32 matmul throughput of this machine (best of ``repeats``)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def forward_flops(model, n_tokens: int) -> float:
    """≈ 2 · (non-embedding parameters) · tokens for one forward pass (lm_head on 1 position)."""
    emb = model.get_input_embeddings().weight.numel()
    body = sum(p.numel() for p in model.parameters()) - emb
    return 2 * body * n_tokens + 2 * emb


def time_xalign(model, tok, examples, method: str, **opts) -> float:
    start = time.perf_counter()
    attribution.attribute(model, tok, examples, method, batch_size=BATCH, **opts)
    return time.perf_counter() - start


def time_captum(model, tok, examples, method: str, labels: list[str]) -> float | None:
    """Captum's LLM wrapper, one example at a time (its only mode), same target token."""
    from captum.attr import (
        FeatureAblation,
        LayerGradientXActivation,
        LayerIntegratedGradients,
        LLMAttribution,
        LLMGradientAttribution,
        TextTokenInput,
    )

    from xalign_utils.prompts import render

    emb = model.get_input_embeddings()
    if method == "saliency":
        wrapper = LLMGradientAttribution(
            LayerGradientXActivation(model, emb, multiply_by_inputs=False), tok
        )
    elif method == "input_x_gradient":
        wrapper = LLMGradientAttribution(LayerGradientXActivation(model, emb), tok)
    elif method == "integrated_gradients":
        wrapper = LLMGradientAttribution(LayerIntegratedGradients(model, emb), tok)
    elif method == "occlusion":
        wrapper = LLMAttribution(FeatureAblation(model), tok)
    else:
        return None
    start = time.perf_counter()
    for ex, label in zip(examples, labels, strict=True):
        text = render(tok, ex, "classify").text
        inp = TextTokenInput(text, tok)
        kwargs = {"n_steps": IG_STEPS} if method == "integrated_gradients" else {}
        wrapper.attribute(inp, target=label, **kwargs)
    return time.perf_counter() - start


def main() -> None:
    torch.manual_seed(0)
    model, tok = models.load_model(None, for_gradients=True, device="cpu")
    pool = data.load_esnli_highlights("test")
    examples = data.stratified_sample(pool, N_PROMPTS, seed=0)
    batch = attribution.prepare(model, tok, examples)
    labels = [lab for lab in batch.target_labels]
    tokens = int(batch.mask.sum())
    peak = matmul_peak_gflops()
    print(
        f"{N_PROMPTS} e-SNLI chat prompts, {tokens / N_PROMPTS:.0f} tokens each on average; "
        f"fp32 matmul peak {peak:.0f} GFLOP/s; torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    runs = {
        "saliency": ({}, 3),
        "input_x_gradient": ({}, 3),
        "integrated_gradients": ({"ig_steps": IG_STEPS}, 3 * IG_STEPS),
        "attention": ({}, 1),
        "occlusion": ({}, None),
    }
    results = []
    print(f"{'method':22s} {'xalign ex/s':>12s} {'captum ex/s':>12s} {'ratio':>7s} {'% peak':>7s}")
    for method, (opts, passes) in runs.items():
        ours = time_xalign(model, tok, examples, method, **opts)
        theirs = time_captum(model, tok, examples, method, labels)
        flops = forward_flops(model, tokens) * passes if passes else None
        row = {
            "method": method,
            "xalign_examples_per_s": N_PROMPTS / ours,
            "captum_examples_per_s": None if theirs is None else N_PROMPTS / theirs,
            "ratio": None if theirs is None else theirs / ours,
            "fraction_of_peak": None if flops is None else flops / ours / 1e9 / peak,
        }
        results.append(row)
        fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
        print(
            f"{method:22s} {row['xalign_examples_per_s']:12.2f} {fmt(row['captum_examples_per_s'], '12.2f'):>12s} "
            f"{fmt(row['ratio'], '7.1f'):>7s} {fmt(row['fraction_of_peak'] and 100 * row['fraction_of_peak'], '7.1f'):>7s}"
        )
    out = Path(__file__).with_name("results.json")
    out.write_text(
        json.dumps(
            {
                "machine": platform.platform(),
                "cpu_threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "n_prompts": N_PROMPTS,
                "mean_tokens": tokens / N_PROMPTS,
                "matmul_peak_gflops": peak,
                "batch_size": BATCH,
                "ig_steps": IG_STEPS,
                "results": results,
            },
            indent=2,
        )
    )
    print("wrote", out)


if __name__ == "__main__":
    main()
