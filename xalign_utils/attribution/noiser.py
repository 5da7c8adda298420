"""Noiser (Madani et al. 2025, "Noiser: Bounded Input Perturbations for Attributing Large
Language Models"): bounded Gaussian noise on one input embedding at a time, batched over
tokens × noise samples.

**The paper's algorithm** (read from its released code, ``qasemii/noiser``,
``importance_score_evaluator/utils.py``: ``get_rationales``, ``make_noisy_embeddings``), for a
plain prompt and its greedy next token y:

1. one seeded draw ε ∈ R^{S×D}, ε ~ N(0, I), S = 10 samples, reused for every token, every
   bisection step and every prompt (the code reseeds its generator at each call);
2. noise on token t at scale σ is *absolute*, ``σ · ε_s / B_p(D)`` with B_p(D) ≈ E‖ε‖_p
   (:data:`NORM_BOUNDS`; the code's default is L2, so ‖noise‖₂ ≈ σ);
3. per token, bisect σ ∈ [0, 1] (10 steps); σ keeps the prediction when y is rank 0 in the
   *mean* over samples of the noisy next-token distributions;
4. σ* = the smallest σ over tokens; token t's score is ``p(y|x) − mean_s p(y|x, σ*·noise on t)``.

That is ``variant="paper"``: :func:`noiser` on a next-token batch (Knowns, LongRA through
:mod:`xalign_utils.next_token`, prefix cache reused), and :func:`noiser_next_token` on raw
token ids (one prompt, full passes: the reference the batched path is tested against).

**Label-set adaptation** (``variant="label_set"``, :func:`noiser`, the registry's method for
prompted classification): the same noise, bisection and σ*, but the prediction is the label
as predictions define it, the argmax of :func:`~xalign_utils.forward.label_logprobs_at`
(whole label strings, surface forms summed, so ``neutral`` → ``Neutral`` is no change), and
the distribution is the label set's, renormalised over the labels. Why: the vocabulary-wide
rank of a label's first token fails for chat models that prefer to start "The answer...", so
no σ > 0 would ever qualify; the renormalised label distribution is what predictions
(argmax) and the faithfulness metrics (``faithfulness.label_probabilities``) use; and
averaging the *renormalised* distributions over samples is the paper's mean criterion on
the quantity the prediction is taken from (raw label probabilities would let the one sample
that puts most mass on labels decide).

Options (both variants): ``criterion="mean"`` (the paper's) or ``"all"`` (every sample must
keep the prediction, stricter: smaller σ*); ``scaling="absolute"`` (the paper's) or
``"relative"`` (``σ·‖e_t‖_p·ε/B_p(D)``, noise proportional to each token's embedding norm).

Differences from the released code, on purpose: a token's bisection result is the largest σ
*verified* to keep the prediction (the code keeps the last midpoint tried, which may fail;
they differ by < 2^-steps), so σ* = 0 means no σ > 0 tried keeps the prediction: flagged
(``noiser_no_sigma``), scores 0; the clean input (σ = 0) must keep it (``noiser_clean_ok``,
else flagged, scores 0: with ``target="pred"`` that is a bug); scores are not divided by
their sum (ranks unchanged when it is positive); ε comes from ``torch.Generator(seed)``, not
numpy's ``RandomState(1)``; in prompted classification only input-word tokens are noised
(never instruction or chat template); on plain prompts every token, as in the code; the
batched :func:`noiser` bisects only the tokens that lose the prediction at the largest σ
tried (``strategy="min"``: the same σ* under the monotonicity bisection assumes, in one
pass over the tokens when none loses it; ``"per_token"`` bisects them all, as the code).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..forward import (
    Batch,
    input_embeddings,
    label_logprobs_at,
    last_logits,
    prompt_cache,
    with_prefix,
)
from .aggregate import to_words

#: E‖ε‖_p of ε ~ N(0, I_d) (approximations the paper uses): noise is ``ε / B_p(d)``.
NORM_BOUNDS: dict[str, Callable[[int], float]] = {
    "l1": lambda d: math.sqrt(2 / math.pi) * d,
    "l2": lambda d: math.sqrt(d),
    "linf": lambda d: math.sqrt(2 * math.log(d)),
}
_ORDER = {"l1": 1.0, "l2": 2.0, "linf": float("inf")}
VARIANTS = ("paper", "label_set")
SCALINGS = ("absolute", "relative")
CRITERIA = ("mean", "all")
#: :func:`search` strategies: bisect every token (the paper's code) or only those that lose
#: the prediction at the largest σ tried.
STRATEGIES = ("per_token", "min")

#: ``probs_fn(rows [k, T, D], start) -> [k, C]``: the distribution the prediction is taken
#: from; every row equals the clean embeddings before position ``start``, so the clean
#: keys and values of those positions can be reused (the label-set variant does).
ProbsFn = Callable[[torch.Tensor, int], torch.Tensor]


@dataclass
class NoiserResult:
    """One prompt's Noiser scores and diagnostics.

    Attributes:
        scores: ``[n_tokens]`` drop in the target's probability per noised token.
        sigma: σ*, the noise scale applied to every token (0 when flagged).
        clean_ok: the clean input (σ = 0) keeps the prediction.
        no_sigma: no σ > 0 tried keeps the prediction for every token (scores 0).
        target: the token id (``paper``) or label index (``label_set``) attributed.
        nonmonotone: tokens that lose the prediction at σ* although their search verified
            a σ ≥ σ* keeps it (0 when keeping it is monotone in σ, as bisection assumes).
    """

    scores: np.ndarray
    sigma: float
    clean_ok: bool
    no_sigma: bool
    target: int
    nonmonotone: int = 0


def _check(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, not {value!r}")


def unit_noise(samples: int, dim: int, seed: int, norm: str = "l2") -> torch.Tensor:
    """The one seeded draw ``ε / B_p(dim)`` ``[samples, dim]`` (float32, CPU) that every
    token, bisection step and prompt reuses: ``ε = torch.randn((samples, dim))`` from
    ``torch.Generator().manual_seed(seed)``."""
    _check("norm", norm, tuple(NORM_BOUNDS))
    gen = torch.Generator().manual_seed(seed)
    return torch.randn((samples, dim), generator=gen) / NORM_BOUNDS[norm](dim)


def token_noise(
    unit: torch.Tensor, tokens: torch.Tensor, scaling: str = "absolute", norm: str = "l2"
) -> torch.Tensor:
    """Noise at σ = 1 per token and sample ``[n_tok, S, D]`` from ``unit [S, D]`` and the
    tokens' clean embeddings ``[n_tok, D]``: the same draw for every token (``absolute``),
    or scaled by each token's embedding p-norm (``relative``)."""
    _check("scaling", scaling, SCALINGS)
    out = unit.to(tokens.device, tokens.dtype).expand(tokens.shape[0], -1, -1)
    if scaling == "relative":
        out = out * tokens.norm(p=_ORDER[norm], dim=-1).view(-1, 1, 1)
    return out


def keeps_prediction(probs: torch.Tensor, target: int, criterion: str = "mean") -> torch.Tensor:
    """Whether noise keeps the prediction, per token, from ``probs [n_tok, S, C]``.

    ``mean``: ``target`` is the argmax of the mean distribution over the S samples (the
    paper's); ``all``: ``target`` is every sample's argmax.
    """
    _check("criterion", criterion, CRITERIA)
    if criterion == "mean":
        return probs.mean(1).argmax(-1) == target
    return (probs.argmax(-1) == target).all(1)


def noisy_evaluator(
    probs_fn: ProbsFn,
    base: torch.Tensor,
    positions: torch.Tensor,
    noise: torch.Tensor,
    target: int,
    criterion: str = "mean",
    chunk: int = 64,
) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Return ``evaluate(sigma [n_tok]) -> (keeps [n_tok], mean p(target) [n_tok])``.

    Row (t, s) is ``base [T, D]`` with ``sigma[t] · noise[t, s]`` added at ``positions[t]``
    alone; rows go through ``probs_fn`` in chunks of whole tokens (≈ ``chunk`` rows), each
    with its first noised position as ``start``: a chunk of late tokens reuses the clean
    keys and values of everything before them.
    """
    n_tok, samples, dim = noise.shape
    per = max(1, chunk // samples)

    def evaluate(sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keep, prob = [], []
        for start in range(0, n_tok, per):
            t = slice(start, start + per)
            k = noise[t].shape[0] * samples
            rows = base.expand(k, -1, -1).clone()
            add = noise[t] * sigma[t].view(-1, 1, 1).to(noise.dtype)
            at = positions[t].repeat_interleave(samples)
            rows[torch.arange(k, device=rows.device), at] += add.reshape(k, dim)
            probs = probs_fn(rows, int(positions[t].min()))
            probs = probs.view(-1, samples, probs.shape[-1])
            keep.append(keeps_prediction(probs, target, criterion))
            prob.append(probs[..., target].mean(1))
        return torch.cat(keep), torch.cat(prob)

    return evaluate


def search(
    probs_fn: ProbsFn,
    base: torch.Tensor,
    positions: torch.Tensor,
    noise: torch.Tensor,
    target: int | None = None,
    steps: int = 10,
    criterion: str = "mean",
    chunk: int = 64,
    strategy: str = "per_token",
) -> NoiserResult:
    """Noiser on one prompt: clean check, per-token bisection, σ*, probability drops.

    Args:
        probs_fn: the distribution the prediction is taken from (see :data:`ProbsFn`).
        base: clean embeddings ``[T, D]`` (the full layout ``probs_fn`` expects).
        positions: ``[n_tok]`` positions in ``base`` to noise, one at a time.
        noise: ``[n_tok, S, D]`` noise at σ = 1 (:func:`token_noise`).
        target: the class to keep (``None``: the clean argmax).
        strategy: ``per_token`` bisects every token (the paper's code); ``min`` first tries
            every token at the largest σ bisection can reach, ``1 − 2^-steps``, and bisects
            only the tokens that lose the prediction there. Only σ* = min over tokens is
            used, so the two give the same σ* and scores whenever keeping the prediction is
            monotone in σ (the assumption bisection rests on); ``min`` costs one pass over
            the tokens instead of ``steps + 1`` when no token loses it (:data:`STRATEGIES`).
    """
    _check("strategy", strategy, STRATEGIES)
    with torch.inference_mode():
        start = int(positions.min()) if positions.numel() else base.shape[0]
        clean = probs_fn(base.unsqueeze(0), start)[0]  # clean: every start is valid
        pred = int(clean.argmax())
        target = pred if target is None else int(target)
        n_tok = positions.shape[0]
        zeros = np.zeros(n_tok)
        if pred != target:  # σ = 0 does not keep the prediction: flagged, no search
            return NoiserResult(zeros, 0.0, False, True, target)
        evaluate = noisy_evaluator(probs_fn, base, positions, noise, target, criterion, chunk)
        top = torch.full((n_tok,), 1 - 2.0**-steps, device=base.device)
        bisect = torch.arange(n_tok, device=base.device)
        noisy = None
        if strategy == "min" and n_tok:
            keeps, noisy = evaluate(top)
            bisect = bisect[~keeps]
        lo = top.clone()
        if bisect.numel():
            part = noisy_evaluator(
                probs_fn, base, positions[bisect], noise[bisect], target, criterion, chunk
            )
            low = torch.zeros(len(bisect), device=base.device)
            high = torch.ones(len(bisect), device=base.device)
            for _ in range(steps):
                mid = (low + high) / 2
                ok = part(mid)[0]
                low, high = torch.where(ok, mid, low), torch.where(ok, high, mid)
            lo[bisect] = low
            noisy = None
        sigma = float(lo.min()) if n_tok else 0.0
        if sigma <= 0:  # some token loses the prediction at every σ > 0 tried
            return NoiserResult(zeros, 0.0, True, True, target)
        lost = 0
        if noisy is None:
            keeps, noisy = evaluate(torch.full((n_tok,), sigma, device=base.device))
            lost = int((~keeps).sum())
        drop = (clean[target] - noisy).double().cpu().numpy()
    return NoiserResult(drop, sigma, True, False, target, lost)


def noiser_next_token(
    model,
    input_ids: Sequence[int] | torch.Tensor,
    target_token: int | None = None,
    input_positions: Sequence[int] | None = None,
    noise_samples: int = 10,
    bisection_steps: int = 10,
    norm: str = "l2",
    scaling: str = "absolute",
    criterion: str = "mean",
    seed: int = 0,
    chunk: int = 64,
    strategy: str = "per_token",
) -> NoiserResult:
    """The paper's Noiser (``variant="paper"``) on a plain next-token prompt.

    Args:
        input_ids: the prompt's token ids (no padding; special tokens as the caller wants).
        target_token: the token attributed (``None``: the greedy next token, the paper's
            target); one that is not the greedy token fails the clean check (flagged).
        input_positions: the positions noised and scored (``None``: every token, as the
            paper's code does).
        noise_samples, bisection_steps, norm, scaling, criterion, seed: see the module doc.
        strategy: see :func:`search` (default: every token bisected, as the paper's code).

    Returns:
        Scores ``[len(input_positions)]`` and diagnostics (:class:`NoiserResult`).
    """
    device = next(model.parameters()).device
    ids = torch.as_tensor(input_ids, dtype=torch.long, device=device).view(1, -1)
    pos = list(range(ids.shape[1])) if input_positions is None else list(input_positions)
    positions = torch.tensor(pos, dtype=torch.long, device=device)
    with torch.inference_mode():
        base = model.get_input_embeddings()(ids)[0]

    def probs_fn(rows: torch.Tensor, start: int) -> torch.Tensor:  # full passes
        logits = model(inputs_embeds=rows, logits_to_keep=1).logits[:, -1]
        return torch.softmax(logits.float(), -1)

    unit = unit_noise(noise_samples, base.shape[-1], seed, norm)
    noise = token_noise(unit, base[positions], scaling, norm)
    return search(
        probs_fn, base, positions, noise, target_token, bisection_steps, criterion, chunk, strategy
    )


def label_scores(model, one: Batch, emb: torch.Tensor) -> torch.Tensor:
    """Whole-label log-probabilities ``[k, n_labels]`` of one example under ``k``
    full-layout embeddings (every label's forms)."""
    k = emb.shape[0]
    return label_logprobs_at(
        model,
        emb,
        one.mask.expand(k, -1),
        one.positions.expand(k, -1),
        one.forms.expand(k, -1, -1),
        one.form_label.expand(k, -1),
        one.n_labels,
        one,
    )


def noiser(
    model,
    batch: Batch,
    noise_samples: int = 10,
    bisection_steps: int = 10,
    norm: str = "l2",
    seed: int = 0,
    variant: str = "label_set",
    scaling: str = "absolute",
    criterion: str = "mean",
    chunk: int = 64,
    strategy: str = "min",
    **_,
) -> tuple[list, dict]:
    """Noiser's label-set adaptation on a prompted-classification batch (module doc); on a
    next-token batch (:mod:`xalign_utils.next_token`) the paper's algorithm: the greedy
    token must stay the argmax of the mean whole-vocabulary distribution (``variant`` is
    then ignored).

    Each example's input-word tokens are noised one at a time; the prediction is the
    argmax of the whole-label log-probabilities and must equal the batch's target label
    (the prediction under ``target="pred"``); scores are drops in the target's
    probability renormalised over the label set, summed into words. The noise draw
    depends on ``seed`` only, not on the example's place in the batch. ``strategy="min"``
    (default) bisects only the tokens that lose the prediction at the largest σ tried
    (:func:`search`: the same σ* and scores as bisecting every token when keeping the
    prediction is monotone in σ, at a fraction of the passes).

    Returns:
        Word scores (signed and magnitude ``|score|``) and extras ``noiser_sigma`` (σ*),
        ``noiser_clean_ok`` (σ = 0 keeps the prediction; False means a target that is
        not the prediction, or a bug), ``noiser_no_sigma`` (flagged rows: scores 0) and
        ``noiser_nonmonotone`` (tokens that lose the prediction at σ*: where it is > 0,
        bisection's monotonicity fails and the two strategies may differ).

    Raises:
        ValueError: ``variant="paper"`` on a classification batch (its predictions are
            labels, not tokens) or an unknown option value.
    """
    _check("variant", variant, VARIANTS)
    if variant == "paper" and batch.kind != "next_token":
        raise ValueError(
            "variant='paper' attributes the greedy next token of a plain prompt: use a "
            "next-token dataset (knowns, longra) or noiser_next_token(model, input_ids); "
            "classification prompts predict labels (variant='label_set')"
        )
    unit = unit_noise(noise_samples, model.get_input_embeddings().weight.shape[-1], seed, norm)
    results, sigma, clean_ok, no_sigma, nonmonotone = [], [], [], [], []
    for b in range(batch.size):
        one = batch.slice(b, b + 1)
        with torch.inference_mode():
            full, inp = input_embeddings(model, one)
            kv = prompt_cache(model, full, one)
        valid = one.in_valid[0]
        positions = one.in_pos[0][valid]

        if one.kind == "next_token":  # the paper's: the whole-vocabulary distribution

            def probs_fn(rows: torch.Tensor, start: int, one: Batch = one, kv=kv) -> torch.Tensor:
                k = rows.shape[0]
                logits = last_logits(
                    model,
                    rows,
                    one.mask.expand(k, -1),
                    one.positions.expand(k, -1),
                    with_prefix(one, kv, start),
                )
                return torch.softmax(logits.float(), -1)

            target = int(one.forms[0, 0, 0])
        else:

            def probs_fn(rows: torch.Tensor, start: int, one: Batch = one, kv=kv) -> torch.Tensor:
                scores = label_scores(model, with_prefix(one, kv, start), rows)
                return torch.softmax(scores, -1)

            target = int(one.target[0])

        noise = token_noise(unit, inp[0][valid], scaling, norm)
        res = search(
            probs_fn,
            full[0],
            positions,
            noise,
            target,
            bisection_steps,
            criterion,
            chunk,
            strategy,
        )
        tok = torch.zeros(batch.in_pos.shape[1], dtype=torch.float64, device=batch.in_pos.device)
        tok[: len(res.scores)] = torch.from_numpy(res.scores).to(tok.device)
        results.append(tok)
        sigma.append(res.sigma)
        clean_ok.append(res.clean_ok)
        no_sigma.append(res.no_sigma)
        nonmonotone.append(res.nonmonotone)
    tok = torch.stack(results)
    extras = {
        "noiser_sigma": np.array(sigma),
        "noiser_clean_ok": np.array(clean_ok),
        "noiser_no_sigma": np.array(no_sigma),
        "noiser_nonmonotone": np.array(nonmonotone),
    }
    return to_words(batch, tok, tok.abs()), extras
