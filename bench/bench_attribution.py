"""Attribution throughput: xalign's batched suite against Inseq and Captum's LLM wrappers.

Same model (the offline default, eager attention, fp32), the same e-SNLI chat prompts and
the *identical* target for every tool: the token id of the first token of the predicted
label's most probable surface form (xalign ``target_mode="first_token"``; Captum is
given that token id, Inseq the prompt followed by that token's text, checked to
re-tokenise to the same id). Each row says what is attributed and how many backward
passes (or extra forwards) one example costs. A second xalign row per gradient method
attributes the project's default target, the whole label string summed over its forms
(one more short continuation pass, still one backward). Prints examples/second per
method and tool, the ratios, and the achieved fraction of the machine's measured fp32
matmul peak for the gradient methods; writes ``bench/results.json``. Noiser is compared
with a token-by-token, batch-size-1 loop on the same prompts and first-token target
(timing only: the loop is the earlier relative-noise, all-samples algorithm, not the
label-set variant xalign now runs).

Inseq runs in a subprocess whose ``PYTHONPATH`` starts with ``bench/.inseq``, a package
overlay that ``make bench`` fills with ``pip install --no-deps inseq`` and its light
dependencies (its declared CUDA wheels are not needed on a CPU).

Run with ``make bench``. ``N_PROMPTS`` (default 32) sets the prompts; the reference
tools' slowest runs (IG and occlusion in Inseq and Captum) use the first ``N_SLOW``
(default 8) of them, and the Noiser comparison the first ``N_NOISER`` (default 2);
examples/second stay comparable and each row records its n.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from xalign_utils import attribution, data, forward, machine, models
from xalign_utils.prompts import render

TOKENIZER = None

N_PROMPTS = int(os.environ.get("N_PROMPTS", "32"))
N_SLOW = min(int(os.environ.get("N_SLOW", "8")), N_PROMPTS)
N_NOISER = min(int(os.environ.get("N_NOISER", "2")), N_PROMPTS)
NOISER = {"noise_samples": 4, "bisection_steps": 6}
INSEQ_OVERLAY = Path(__file__).with_name(".inseq")
IG_STEPS = 16
BATCH = 8


def forward_flops(model, n_tokens: int) -> float:
    """≈ 2 · (non-embedding parameters) · tokens for one forward pass (lm_head on 1 position)."""
    emb = model.get_input_embeddings().weight.numel()
    body = sum(p.numel() for p in model.parameters()) - emb
    return 2 * body * n_tokens + 2 * emb


#: What one example costs per method: backward passes (forwards for occlusion, attention).
PASSES = {
    "saliency": "1 backward",
    "input_x_gradient": "1 backward",
    "integrated_gradients": f"{IG_STEPS} backward (one per step)",
    "attention": "1 forward",
    "occlusion": "1 forward per input word + 1",
}
FIRST_TOKEN = "first token of the predicted label's most probable form"
WHOLE_LABEL = "log p(whole label string), summed over its forms"


def time_xalign(model, tok, examples, method: str, target_mode: str = "first_token", **opts):
    attribution.attribute(model, tok, examples[:1], method, target_mode=target_mode, **opts)
    start = time.perf_counter()
    attribution.attribute(
        model, tok, examples, method, batch_size=BATCH, target_mode=target_mode, **opts
    )
    return time.perf_counter() - start


def first_token_targets(model, tok, examples) -> list[int]:
    """The first-token target id of each example (what every tool is given)."""
    batch = forward.prepare(model, tok, examples, target_mode="first_token")
    ids = [int(batch.forms[b, batch.target[b], 0]) for b in range(batch.size)]
    for i in ids:  # Inseq gets text: it must come back as the same single token
        if tok(tok.decode([i]), add_special_tokens=False)["input_ids"] != [i]:
            raise ValueError(f"target token {i} ({tok.decode([i])!r}) does not re-tokenise")
    return ids


def time_captum(model, tok, examples, method: str, targets: list[int]) -> float | None:
    """Captum's LLM wrapper, one example at a time (its only mode), same target token id."""
    from captum.attr import (
        FeatureAblation,
        LayerGradientXActivation,
        LayerIntegratedGradients,
        LLMAttribution,
        LLMGradientAttribution,
        TextTokenInput,
    )

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
    warm = TextTokenInput(render(tok, examples[0], "classify").text, tok)
    steps = {"n_steps": 2} if "integrated" in method else {}
    wrapper.attribute(warm, target=torch.tensor([targets[0]]), **steps)
    start = time.perf_counter()
    for ex, target in zip(examples, targets, strict=True):
        text = render(tok, ex, "classify").text
        inp = TextTokenInput(text, tok)
        kwargs = {"n_steps": IG_STEPS} if method == "integrated_gradients" else {}
        wrapper.attribute(inp, target=torch.tensor([target]), **kwargs)
    return time.perf_counter() - start


def time_inseq(examples, targets: list[str], methods: dict[str, int]) -> dict[str, float]:
    """Seconds per method for Inseq, in a subprocess with the Inseq overlay on its path.

    ``methods`` maps an Inseq method name to the number of prompts it runs on.
    """
    if not (INSEQ_OVERLAY / "inseq").is_dir():
        raise FileNotFoundError(f"{INSEQ_OVERLAY} has no inseq: run `make bench` (it installs it)")
    payload = {
        "texts": [render(TOKENIZER, ex, "classify").text for ex in examples],
        "targets": targets,
        "methods": methods,
        "ig_steps": IG_STEPS,
    }
    env = dict(
        os.environ, PYTHONPATH=f"{INSEQ_OVERLAY}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    )
    done = subprocess.run(
        [sys.executable, "-c", INSEQ_SCRIPT],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        env=env,
    )
    if done.returncode != 0:
        raise RuntimeError(f"Inseq run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


INSEQ_SCRIPT = """
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import inseq
from xalign_utils import models
job = json.load(sys.stdin)
model, tok = models.load_model(None, for_gradients=True, device="cpu")
out = {}
for method, n in job["methods"].items():
    wrapped = inseq.load_model(model, method, tokenizer=tok)
    kw = {"n_steps": job["ig_steps"]} if method == "integrated_gradients" else {}
    wrapped.attribute(input_texts=job["texts"][0],
                      generated_texts=job["texts"][0] + job["targets"][0],
                      show_progress=False, skip_special_tokens=False)  # warm-up, untimed
    start = time.perf_counter()
    for text, target in list(zip(job["texts"], job["targets"]))[:n]:
        wrapped.attribute(input_texts=text, generated_texts=text + target,
                          show_progress=False, skip_special_tokens=False, **kw)
    out[method] = time.perf_counter() - start
print(json.dumps(out))
"""


def _noisy_prob(model, emb: torch.Tensor, t: int, noise: torch.Tensor) -> torch.Tensor:
    """Next-token distribution with ``noise`` added to token ``t`` (batch size 1)."""
    e = emb.clone()
    e[0, t] += noise
    return torch.softmax(model(inputs_embeds=e).logits[0, -1].float(), -1)


def _keeps(model, emb, t: int, scaled: torch.Tensor, target: int) -> bool:
    """Does every noise sample (one forward each) keep ``target`` at rank 0?"""
    return all(_noisy_prob(model, emb, t, noise).argmax() == target for noise in scaled)


def noiser_token_loop(model, batch, noise_samples: int, bisection_steps: int, seed: int = 0):
    """Reference Noiser: every token, bisection step and noise sample is its own forward
    of the whole prompt at batch size 1 (how the authors' code runs); same maths as
    :func:`xalign_utils.attribution.noiser.noiser` with the L2 bound."""
    gen = torch.Generator().manual_seed(seed)
    emb_layer = model.get_input_embeddings()
    scores = []
    with torch.inference_mode():
        for b in range(batch.size):
            keep = batch.mask[b].bool()
            emb = emb_layer(batch.ids[b][keep].unsqueeze(0))
            offset = int((~keep[: batch.in_pos[b][0]]).sum())  # padding before the inputs
            positions = (batch.in_pos[b][batch.in_valid[b]] - offset).tolist()
            target = int(batch.forms[b, batch.target[b], 0])
            d = emb.shape[-1]
            unit = {
                t: torch.randn((noise_samples, d), generator=gen) * emb[0, t].norm() / d**0.5
                for t in positions
            }
            sigmas = []
            for t in positions:
                if _keeps(model, emb, t, unit[t], target):
                    sigmas.append(1.0)
                    continue
                lo, hi = 0.0, 1.0
                for _ in range(bisection_steps):
                    mid = (lo + hi) / 2
                    lo, hi = (
                        (mid, hi) if _keeps(model, emb, t, mid * unit[t], target) else (lo, mid)
                    )
                sigmas.append(lo)
            sigma = min(sigmas)
            clean = _noisy_prob(model, emb, 0, torch.zeros(d))[target]
            scores.append(
                [
                    float(
                        np.mean(
                            [clean - _noisy_prob(model, emb, t, sigma * n)[target] for n in unit[t]]
                        )
                    )
                    for t in positions
                ]
            )
    return scores


def main() -> None:
    global TOKENIZER
    torch.manual_seed(0)
    model, tok = models.load_model(None, for_gradients=True, device="cpu")
    TOKENIZER = tok
    pool = data.load_esnli_highlights("test")
    examples = data.stratified_sample(pool, N_PROMPTS, seed=0)
    batch = forward.prepare(model, tok, examples, target_mode="first_token")
    targets = first_token_targets(model, tok, examples)
    target_texts = [tok.decode([t]) for t in targets]
    tokens = int(batch.mask.sum())
    peak = machine.matmul_gflops()
    print(
        f"{N_PROMPTS} e-SNLI chat prompts, {tokens / N_PROMPTS:.0f} tokens each on average; "
        f"fp32 matmul peak {peak:.0f} GFLOP/s; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    # The methods Inseq and Captum implement too: options and passes over the prompt for
    # the FLOP count; the references run on every prompt for the registry's one-pass
    # methods and on the first N_SLOW for the rest.
    benched = {
        "saliency": ({}, 3),
        "input_x_gradient": ({}, 3),
        "integrated_gradients": ({"ig_steps": IG_STEPS}, 3 * IG_STEPS),
        "attention": ({}, None),
        "occlusion": ({}, None),
    }
    runs = {  # method: (options, passes, n for references)
        m: (opts, passes, N_PROMPTS if attribution.method(m).cost == "one_pass" else N_SLOW)
        for m, (opts, passes) in benched.items()
    }
    inseq_seconds = time_inseq(examples, target_texts, {m: n for m, (_, _, n) in runs.items()})
    results = []
    header = f"{'method':22s} {'xalign ex/s':>12s} {'inseq ex/s':>11s} {'captum ex/s':>12s}"
    print(header + f" {'vs inseq':>9s} {'vs captum':>10s} {'% peak':>7s}")
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    for method, (opts, passes, n_ref) in runs.items():
        ours = time_xalign(model, tok, examples, method, **opts)
        theirs = time_captum(model, tok, examples[:n_ref], method, targets[:n_ref])
        flops = forward_flops(model, tokens) * passes if passes else None
        row = {
            "method": method,
            "target": FIRST_TOKEN,
            "cost_per_example": PASSES[method],
            "n_xalign": N_PROMPTS,
            "n_reference": n_ref,
            "xalign_examples_per_s": N_PROMPTS / ours,
            "inseq_examples_per_s": n_ref / inseq_seconds[method],
            "captum_examples_per_s": None if theirs is None else n_ref / theirs,
            # FLOPs of the whole prompt: what the tools compute; xalign skips the cached
            # prefix, so this is the useful work per second, not the executed work
            "fraction_of_peak": None if flops is None else flops / ours / 1e9 / peak,
        }
        row["ratio_vs_inseq"] = row["xalign_examples_per_s"] / row["inseq_examples_per_s"]
        row["ratio_vs_captum"] = (
            None if theirs is None else row["xalign_examples_per_s"] / row["captum_examples_per_s"]
        )
        if attribution.method(method).gradient_based:  # the project's default target
            whole = time_xalign(model, tok, examples, method, target_mode="label", **opts)
            row["xalign_whole_label_examples_per_s"] = N_PROMPTS / whole
            row["whole_label_target"] = WHOLE_LABEL
        results.append(row)
        print(
            f"{method:22s} {row['xalign_examples_per_s']:12.2f} {row['inseq_examples_per_s']:11.2f} "
            f"{fmt(row['captum_examples_per_s'], '12.2f'):>12s} {row['ratio_vs_inseq']:9.1f} "
            f"{fmt(row['ratio_vs_captum'], '10.1f'):>10s} "
            f"{fmt(row['fraction_of_peak'] and 100 * row['fraction_of_peak'], '7.1f'):>7s}"
        )
    sub = batch.slice(0, N_NOISER)
    start = time.perf_counter()
    attribution.attribute(model, tok, examples[:N_NOISER], "noiser", batch_size=BATCH, **NOISER)
    ours = time.perf_counter() - start
    start = time.perf_counter()
    noiser_token_loop(model, sub, **NOISER)
    loop = time.perf_counter() - start
    noiser = {
        "method": "noiser",
        "n_xalign": N_NOISER,
        "n_reference": N_NOISER,
        "xalign_examples_per_s": N_NOISER / ours,
        "token_loop_examples_per_s": N_NOISER / loop,
        "ratio_vs_token_loop": loop / ours,
        **NOISER,
    }
    results.append(noiser)
    print(
        f"noiser ({N_NOISER} prompts, {NOISER}): xalign {noiser['xalign_examples_per_s']:.3f} ex/s, "
        f"token-by-token loop {noiser['token_loop_examples_per_s']:.3f} ex/s, "
        f"ratio {noiser['ratio_vs_token_loop']:.1f}"
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
