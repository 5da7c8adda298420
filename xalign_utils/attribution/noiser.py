"""Noiser ("Noiser: Bounded Input Perturbations for Attributing Large Language Models",
2025): bounded Gaussian noise per input token, batched over tokens × noise samples."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from ..forward import Batch, input_embeddings, last_logits
from .aggregate import to_words

NORM_BOUNDS: dict[str, Callable[[int], float]] = {
    "l1": lambda d: math.sqrt(2 / math.pi) * d,
    "l2": lambda d: math.sqrt(d),
    "linf": lambda d: math.sqrt(2 * math.log(d)),
}


def noisy_runs(
    model, one: Batch, inp: torch.Tensor, full: torch.Tensor, unit_noise: torch.Tensor, chunk: int
):
    """Return ``run(sigma, want_prob)`` evaluating noise ``sigma[t]`` on token t alone.

    ``one`` holds a single example; ``unit_noise`` is ``[n_tok, samples, D]`` (σ = 1).
    All tokens × samples go through the model in batched chunks.
    """
    valid_idx = torch.nonzero(one.in_valid[0]).squeeze(-1)
    n_tok, samples, d = unit_noise.shape
    total = n_tok * samples
    tok_idx = valid_idx.repeat_interleave(samples)
    target = one.target[0]
    cands = one.candidates

    def run(sigma: torch.Tensor, want_prob: bool) -> torch.Tensor:
        noisy = inp.expand(total, -1, -1).clone()
        noisy[torch.arange(total), tok_idx] += (unit_noise * sigma.view(n_tok, 1, 1)).reshape(
            total, d
        )
        outs = []
        for s in range(0, total, chunk):
            e = noisy[s : s + chunk]
            k = e.shape[0]
            emb = full.expand(k, -1, -1)
            idx = one.in_pos.expand(k, -1).unsqueeze(-1).expand(-1, -1, d)
            src = torch.where(one.in_valid.expand(k, -1).unsqueeze(-1), e, emb.gather(1, idx))
            logits = last_logits(
                model,
                emb.scatter(1, idx, src),
                one.mask.expand(k, -1),
                one.positions.expand(k, -1),
                one,
            ).float()
            outs.append(
                torch.softmax(logits, -1)[:, target]
                if want_prob
                else cands[logits[:, cands].argmax(-1)] == target
            )
        return torch.cat(outs).view(n_tok, samples)

    return run


def noiser(
    model,
    batch: Batch,
    noise_samples: int = 10,
    bisection_steps: int = 10,
    norm: str = "l2",
    seed: int = 0,
    chunk: int = 64,
    **_,
) -> tuple[list, dict]:
    """Noiser: bounded Gaussian noise per input token (see DESIGN.md §7).

    Noise on token t is ``σ · ||e_t||_p · ε / E||ε||_p`` with ε ~ N(0, I); the bound
    E||ε||_p uses the expected-norm approximations in :data:`NORM_BOUNDS`. For each token
    the largest σ ∈ [0, 1] that keeps the target token at rank 0 for every noise
    sample is bisected; the smallest such σ over tokens is then applied to each token
    in turn and the token's score is the mean drop in the target token's probability.

    Rank 0 is taken among the label tokens (``batch.candidates``), not the whole
    vocabulary: a prompted classifier's label token is rarely the model's overall top
    token (the 135M model puts < 1% of its mass on labels and would rather start "The
    answer..."), and with the whole vocabulary no σ > 0 ever qualifies, so every score
    is 0. Among labels, the criterion is the paper's "prediction unchanged".
    All tokens × noise samples of an example are evaluated in batched forwards. A
    contrast target is not used here: Noiser is defined on the predicted token.
    """
    gen = torch.Generator().manual_seed(seed)
    p = {"l1": 1, "l2": 2, "linf": float("inf")}[norm]
    results, sigmas = [], []
    for b in range(batch.size):
        one = batch.slice(b, b + 1)
        full, inp = input_embeddings(model, one)
        full, inp = full.detach(), inp.detach()
        d = inp.shape[-1]
        valid_idx = torch.nonzero(one.in_valid[0]).squeeze(-1)
        n_tok = len(valid_idx)
        eps = torch.randn((n_tok, noise_samples, d), generator=gen).to(inp.device)
        unit_noise = eps * (
            inp[0, valid_idx].norm(p=p, dim=-1).view(n_tok, 1, 1) / NORM_BOUNDS[norm](d)
        )
        run = noisy_runs(model, one, inp, full, unit_noise, chunk)
        with torch.inference_mode():
            lo = torch.zeros(n_tok, device=inp.device)
            hi = torch.ones(n_tok, device=inp.device)
            keeps_at_one = run(hi, False).all(1)
            for _ in range(bisection_steps):
                mid = (lo + hi) / 2
                ok = run(mid, False).all(1)
                lo, hi = torch.where(ok, mid, lo), torch.where(ok, hi, mid)
            sigma = (
                float(torch.where(keeps_at_one, torch.ones_like(lo), lo).min()) if n_tok else 0.0
            )
            clean = last_logits(model, full, one.mask, one.positions, one)
            p_clean = torch.softmax(clean.float(), -1)[0, one.target[0]]
            if sigma > 0:
                noisy = run(torch.full((n_tok,), sigma, device=inp.device), True)
                drop = (p_clean - noisy).mean(1)
            else:  # no noise level keeps the prediction for every token: all scores 0
                drop = torch.zeros(n_tok, device=inp.device)
        tok = torch.zeros(batch.in_pos.shape[1], dtype=torch.float64, device=inp.device)
        tok[:n_tok] = drop.double()
        results.append(tok)
        sigmas.append(sigma)
    tok = torch.stack(results)
    return to_words(batch, tok, tok.abs()), {"noiser_sigma": np.array(sigmas)}
