"""Token attributions for a model's answer, over the input words only (DESIGN.md §7).

One entry point, :func:`attribute`, takes a batch of examples and a method name from
:data:`METHODS` and returns one row per example with word-level scores. Everything is
batched over examples (left-padded prompts): the forward function Captum sees takes the
embeddings of the *input-word tokens only* and scatters them into the full prompt's
embeddings, so instruction, chat template and special tokens are never attributed,
perturbed or noised.

Target: the log-probability of the first token of the target label's verbaliser at the
position where the answer starts (predicted label by default; the gold label; or a
contrast ``log p(a) − log p(b)``).

Token → word: a word's *signed* score is the sum of its tokens' signed scores; its
*magnitude* is the sum of its tokens' L2 attribution norms (L1 over tokens of the
per-token L2 norms over embedding dimensions). Perturbation methods (occlusion, LIME,
KernelSHAP) act on whole words, so their word score is the feature's score.
"""

from __future__ import annotations

import contextlib
import math
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .data import LABELS, Example
from .prompts import RenderedPrompt, render


@dataclass
class Batch:
    """Padded prompts and where their input-word tokens sit.

    Layout: the tokens every prompt of the batch shares before its first input word
    (system prompt, instruction: ``prefix_len`` of them) come first, then padding, then
    each prompt's remaining tokens. The prefix never changes under any attribution
    method, so its keys and values (``prefix_kv``, batch size 1) are computed once and
    the forward passes of the gradient and perturbation methods run only over the rest.
    Position ids skip the padding, so scores equal those of the unpadded prompt.

    Shapes: ``ids``/``mask``/``positions`` ``[B, T]``; ``in_pos``/``in_valid``/``tok_word``
    ``[B, P]`` (P = most input tokens in the batch); ``target``/``contrast`` ``[B]``;
    ``candidates``: first tokens of every verbaliser form of the dataset's labels.
    """

    examples: list[Example]
    rendered: list[RenderedPrompt]
    ids: torch.Tensor
    mask: torch.Tensor
    positions: torch.Tensor
    in_pos: torch.Tensor
    in_valid: torch.Tensor
    tok_word: torch.Tensor
    target: torch.Tensor
    contrast: torch.Tensor | None
    target_labels: list[str]
    prefix_len: int = 0
    prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    candidates: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return len(self.examples)

    def slice(self, start: int, stop: int) -> Batch:
        """Examples ``start:stop`` of the batch (padding kept)."""
        sl = slice(start, stop)
        return Batch(
            self.examples[sl],
            self.rendered[sl],
            self.ids[sl],
            self.mask[sl],
            self.positions[sl],
            self.in_pos[sl],
            self.in_valid[sl],
            self.tok_word[sl],
            self.target[sl],
            None if self.contrast is None else self.contrast[sl],
            self.target_labels[sl],
            self.prefix_len,
            self.prefix_kv,
            self.candidates,
        )


#: Most sequences in one forward/backward of the gradient methods (IG steps, SHAP
#: samples). Each sequence of a ~100-token prompt holds ~100 MB of activations for the
#: backward pass of the offline model, so 32 keeps a batch within a few GB.
MAX_ROWS = 32


def _first_token(tokenizer, text: str) -> int:
    return tokenizer(text, add_special_tokens=False)["input_ids"][0]


def target_tokens(
    tokenizer, raw: np.ndarray, forms: list[tuple[int, str]], dataset: str, labels: Sequence[str]
) -> list[int]:
    """First token of each label's most probable verbaliser form (``normal``/``Normal``)."""
    out = []
    for row, lab in zip(raw, labels, strict=True):
        j = LABELS[dataset].index(lab)
        candidates = [(row[i], f) for i, (owner, f) in enumerate(forms) if owner == j]
        out.append(_first_token(tokenizer, max(candidates)[1]))
    return out


def prepare(
    model,
    tokenizer,
    examples: Sequence[Example],
    target: str = "pred",
    contrast_label: str | None = None,
    labels: Sequence[str] | None = None,
) -> Batch:
    """Render, pad and index a batch of examples of one dataset.

    Args:
        target: ``pred`` (the model's prediction), ``gold``, or ``contrast`` (the
            predicted label against ``contrast_label``, or against the runner-up label).
        labels: explicit target labels (overrides ``target``).
    """
    from .models import (
        context_length,
        forms_to_labels,
        label_form_scores,
        left_pad,
        shared_prefix_length,
    )

    datasets = {ex.dataset for ex in examples}
    if len(datasets) != 1:
        raise ValueError(f"a batch must hold one dataset, got {sorted(datasets)}")
    dataset = datasets.pop()
    rendered = [
        render(tokenizer, ex, "classify", max_length=context_length(model)) for ex in examples
    ]
    raw, forms = label_form_scores(model, tokenizer, [r.input_ids for r in rendered], dataset)
    logp = forms_to_labels(raw, forms, len(LABELS[dataset]))
    order = np.argsort(-logp, axis=1)
    if labels is None:
        if target == "gold":
            labels = [ex.label for ex in examples]
        elif target in {"pred", "contrast"}:
            labels = [LABELS[dataset][o[0]] for o in order]
        else:
            raise ValueError(f"target must be 'pred', 'gold' or 'contrast', not {target!r}")
    contrast_labels = None
    if target == "contrast":  # the given label, else the best-scored label other than the target
        contrast_labels = [
            contrast_label or next(LABELS[dataset][i] for i in o if LABELS[dataset][i] != lab)
            for o, lab in zip(order, labels, strict=True)
        ]
    seqs = [r.input_ids for r in rendered]
    first_input = min(
        (min(min(span) for span in r.word_tokens if span) for r in rendered if r.input_positions),
        default=0,
    )
    plen = min(shared_prefix_length(seqs), first_input)
    rest_ids, rest_mask = left_pad([s[plen:] for s in seqs], tokenizer.pad_token_id)
    prefix = torch.tensor(seqs[0][:plen], dtype=torch.long).expand(len(seqs), -1)
    ids = torch.cat([prefix, rest_ids], 1)
    mask = torch.cat([torch.ones_like(prefix), rest_mask], 1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    width = ids.shape[1]
    n_in = max(max((len(r.input_positions) for r in rendered), default=1), 1)
    in_pos = torch.zeros((len(rendered), n_in), dtype=torch.long)
    in_valid = torch.zeros((len(rendered), n_in), dtype=torch.bool)
    tok_word = torch.full((len(rendered), n_in), -1, dtype=torch.long)
    for b, rp in enumerate(rendered):
        offset = width - len(rp.input_ids)  # the padding sits between prefix and rest
        j = 0
        for w, span in enumerate(rp.word_tokens):
            for p in span:
                in_pos[b, j], in_valid[b, j], tok_word[b, j] = p + offset, True, w
                j += 1
    tgt = torch.tensor(target_tokens(tokenizer, raw, forms, dataset, labels))
    con = (
        torch.tensor(target_tokens(tokenizer, raw, forms, dataset, contrast_labels))
        if contrast_labels
        else None
    )
    device = next(model.parameters()).device
    prefix_kv = None
    if plen:
        with torch.no_grad():  # not inference_mode: these tensors enter autograd graphs
            cache = model(input_ids=prefix[:1].to(device), use_cache=True).past_key_values
        prefix_kv = [(layer.keys, layer.values) for layer in cache.layers]
    return Batch(
        list(examples),
        rendered,
        ids.to(device),
        mask.to(device),
        positions.to(device),
        in_pos.to(device),
        in_valid.to(device),
        tok_word.to(device),
        tgt.to(device),
        None if con is None else con.to(device),
        list(labels),
        plen,
        prefix_kv,
        torch.tensor(sorted({_first_token(tokenizer, f) for _, f in forms}), device=device),
    )


def input_embeddings(model, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """``(full [B, T, D], input-token [B, P, D])`` embeddings of a batch."""
    full = model.get_input_embeddings()(batch.ids)
    idx = batch.in_pos.unsqueeze(-1).expand(-1, -1, full.shape[-1])
    return full, full.gather(1, idx) * batch.in_valid.unsqueeze(-1)


def last_logits(
    model, emb: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, batch: Batch
) -> torch.Tensor:
    """Next-token logits ``[n, V]`` at the last position for full-layout embeddings.

    ``emb``/``mask``/``positions`` cover the whole layout (``n`` rows of the batch's
    width, e.g. IG steps × examples); the shared prefix is served from
    ``batch.prefix_kv`` and only the tokens after it go through the model.
    """
    plen = batch.prefix_len
    if not plen:
        out = model(
            inputs_embeds=emb, attention_mask=mask, position_ids=positions, logits_to_keep=1
        )
        return out.logits[:, -1]
    from .models import expand_prefix

    cache = expand_prefix(model, batch.prefix_kv, emb.shape[0])
    out = model(
        inputs_embeds=emb[:, plen:],
        attention_mask=mask,
        position_ids=positions[:, plen:],
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    return out.logits[:, -1]


def make_forward(model, batch: Batch) -> Callable[..., torch.Tensor]:
    """The scalar target as a function of the input-token embeddings (Captum's forward).

    Extra arguments (Captum repeats them per IG step / perturbation): full embeddings,
    mask, positions, input positions, validity, target and contrast token ids. ``batch``
    supplies the shared prefix cache (see :class:`Batch`).
    """

    def forward(inp, full, mask, positions, in_pos, in_valid, target, contrast=None):
        idx = in_pos.unsqueeze(-1).expand(-1, -1, full.shape[-1])
        current = full.gather(1, idx)
        src = torch.where(in_valid.unsqueeze(-1), inp.to(full.dtype), current)
        logits = last_logits(model, full.scatter(1, idx, src), mask, positions, batch)
        logp = torch.log_softmax(logits.float(), -1)
        value = logp.gather(1, target.unsqueeze(1)).squeeze(1)
        if contrast is not None:
            value = value - logp.gather(1, contrast.unsqueeze(1)).squeeze(1)
        return value

    return forward


def _args(batch: Batch, full: torch.Tensor) -> tuple:
    return (
        full,
        batch.mask,
        batch.positions,
        batch.in_pos,
        batch.in_valid,
        batch.target,
        batch.contrast,
    )


def _to_words(
    batch: Batch, token_signed: torch.Tensor, token_mag: torch.Tensor
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Sum token scores ``[B, P]`` into word scores per example."""
    out = []
    for b, rp in enumerate(batch.rendered):
        n = len(rp.word_tokens)
        valid = batch.in_valid[b]
        words = batch.tok_word[b][valid]
        signed = torch.zeros(n, dtype=torch.float64).index_add_(
            0, words.cpu(), token_signed[b][valid].double().cpu()
        )
        mag = torch.zeros(n, dtype=torch.float64).index_add_(
            0, words.cpu(), token_mag[b][valid].double().cpu()
        )
        out.append((signed.numpy(), mag.numpy()))
    return out


def _word_feature_mask(batch: Batch, dim: int) -> torch.Tensor:
    """Captum feature mask ``[B, P, D]``: each input token carries its word's index."""
    fm = batch.tok_word.clamp(min=0)
    return fm.unsqueeze(-1).expand(-1, -1, dim).contiguous()


# ------------------------------------------------------------------------ methods
# Each takes (model, batch, **options) and returns (per-example (signed, magnitude), extra).


def _random(model, batch: Batch, seed: int = 0, **_) -> tuple[list, dict]:
    out = []
    for ex, rp in zip(batch.examples, batch.rendered, strict=True):
        rng = np.random.default_rng([seed, zlib.crc32(ex.id.encode())])  # stable across processes
        s = rng.random(len(rp.word_tokens))
        out.append((s, s.copy()))
    return out, {}


def _gradients(model, batch: Batch, shared: dict | None = None) -> tuple[torch.Tensor, ...]:
    """Gradient of the target w.r.t. the input-token embeddings, and the embeddings.

    One forward/backward serves saliency and input×gradient: the result is kept in
    ``shared`` (one dict per batch, filled by :func:`attribute`).
    """
    if shared is not None and "gradients" in shared:
        return shared["gradients"]
    full, inp = input_embeddings(model, batch)
    inp = inp.detach().requires_grad_(True)
    value = make_forward(model, batch)(inp, full.detach(), *_args(batch, full.detach())[1:])
    (grad,) = torch.autograd.grad(value.sum(), inp)
    result = (grad, inp.detach())
    if shared is not None:
        shared["gradients"] = result
    return result


def _saliency(model, batch: Batch, shared: dict | None = None, **_) -> tuple[list, dict]:
    grad, _ = _gradients(model, batch, shared)
    norm = grad.norm(dim=-1)
    return _to_words(batch, norm, norm), {}


def _input_x_gradient(model, batch: Batch, shared: dict | None = None, **_) -> tuple[list, dict]:
    grad, inp = _gradients(model, batch, shared)
    prod = grad * inp
    return _to_words(batch, prod.sum(-1), prod.norm(dim=-1)), {}


def _integrated_gradients(
    model, batch: Batch, ig_steps: int = 32, internal_batch_size: int = MAX_ROWS, **_
) -> tuple[list, dict]:
    from captum.attr import IntegratedGradients

    full, inp = input_embeddings(model, batch)
    full, inp = full.detach(), inp.detach()
    ig = IntegratedGradients(make_forward(model, batch))
    attr, delta = ig.attribute(
        inp,
        baselines=torch.zeros_like(inp),
        additional_forward_args=_args(batch, full),
        n_steps=ig_steps,
        internal_batch_size=max(internal_batch_size, batch.size),
        return_convergence_delta=True,
    )
    return _to_words(batch, attr.sum(-1), attr.norm(dim=-1)), {
        "ig_delta": delta.detach().cpu().numpy()
    }


@contextlib.contextmanager
def _seeded(seed: int):
    """Seed torch *and* NumPy's global RNG for one method call, then restore both.

    Captum draws GradientShap's baselines and interpolation points from NumPy's global
    RNG, so seeding torch alone leaves it depending on whatever ran before; restoring
    the states keeps the caller's random streams untouched.
    """
    state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(state)


def _gradient_shap(
    model,
    batch: Batch,
    gradient_shap_samples: int = 16,
    stdevs: float = 0.09,
    seed: int = 0,
    **_,
) -> tuple[list, dict]:
    from captum.attr import GradientShap

    n_samples = gradient_shap_samples
    results = []
    step = max(1, MAX_ROWS // n_samples)  # Captum runs all samples of a batch at once
    with _seeded(seed):
        for start in range(0, batch.size, step):
            sub = batch.slice(start, start + step)
            full, inp = input_embeddings(model, sub)
            full, inp = full.detach(), inp.detach()
            attr = GradientShap(make_forward(model, sub)).attribute(
                inp,
                baselines=torch.zeros_like(inp[:1]),
                n_samples=n_samples,
                stdevs=stdevs,
                additional_forward_args=_args(sub, full),
            )
            results += _to_words(sub, attr.sum(-1), attr.norm(dim=-1))
    return results, {}


def _perturbation(cls_name: str):
    def method(
        model,
        batch: Batch,
        n_samples: int = 64,
        seed: int = 0,
        perturbations_per_eval: int = 16,
        **_,
    ) -> tuple[list, dict]:
        import captum.attr as ca

        full, inp = input_embeddings(model, batch)
        full, inp = full.detach(), inp.detach()
        forward = make_forward(model, batch)
        fm = _word_feature_mask(batch, inp.shape[-1])
        kwargs = {
            "feature_mask": fm,
            "additional_forward_args": _args(batch, full),
            "perturbations_per_eval": perturbations_per_eval,
        }
        if cls_name != "FeatureAblation":
            kwargs["n_samples"] = n_samples
            kwargs["return_input_shape"] = True
        results = []
        with torch.no_grad(), _seeded(seed):
            if cls_name == "FeatureAblation":
                attr = ca.FeatureAblation(forward).attribute(inp, baselines=0.0, **kwargs)
                rows = [attr[b] for b in range(batch.size)]
            else:  # LIME / KernelSHAP interpret one example at a time
                rows = []
                for b in range(batch.size):
                    one = [
                        a[b : b + 1] if isinstance(a, torch.Tensor) else a
                        for a in _args(batch, full)
                    ]
                    kw = dict(
                        kwargs, feature_mask=fm[b : b + 1], additional_forward_args=tuple(one)
                    )
                    rows.append(
                        getattr(ca, cls_name)(forward).attribute(
                            inp[b : b + 1], baselines=0.0, **kw
                        )[0]
                    )
        for b, rp in enumerate(batch.rendered):
            n = len(rp.word_tokens)
            scores = np.zeros(n)
            valid = batch.in_valid[b]
            tw = batch.tok_word[b][valid].cpu().numpy()
            vals = rows[b][valid][:, 0].double().cpu().numpy()
            for w, v in zip(tw, vals, strict=True):
                scores[w] = v  # every token of a word carries the word's score
            results.append((scores, np.abs(scores)))
        return results, {}

    return method


def _attentions(model, batch: Batch, shared: dict | None = None) -> tuple[torch.Tensor, ...]:
    """Attention weights of every layer (one forward, kept in ``shared`` for the other
    attention methods of the same batch)."""
    if shared is not None and "attentions" in shared:
        return shared["attentions"]
    if getattr(model.config, "_attn_implementation", "eager") != "eager":
        raise ValueError(
            "attention methods need the model loaded with for_gradients=True (eager attention)"
        )
    with torch.inference_mode():
        out = model(
            input_ids=batch.ids,
            attention_mask=batch.mask,
            position_ids=batch.positions,
            output_attentions=True,
            logits_to_keep=1,
        )
    if shared is not None:
        shared["attentions"] = out.attentions
    return out.attentions


def _gather_rows(batch: Batch, rows: torch.Tensor) -> list:
    """Scores ``[B, T]`` over positions → input-token scores ``[B, P]`` → words."""
    tok = rows.gather(1, batch.in_pos) * batch.in_valid
    return _to_words(batch, tok, tok)


def _attention(model, batch: Batch, shared: dict | None = None, **_) -> tuple[list, dict]:
    att = _attentions(model, batch, shared)[-1].float().mean(1)  # [B, T, T]
    return _gather_rows(batch, att[:, -1]), {}


def rollout_matrices(attentions: Sequence[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020): ``Â = 0.5·A + 0.5·I`` per layer (head
    mean), rows renormalised, multiplied from the first layer up. Returns ``[B, T, T]``."""
    eye = torch.eye(mask.shape[1], dtype=torch.float64, device=mask.device)
    joint = None
    valid = mask.double()
    for att in attentions:
        a = att.double().mean(1)
        a = 0.5 * a + 0.5 * eye * valid.unsqueeze(-1)
        a = a / a.sum(-1, keepdim=True).clamp(min=1e-12)
        joint = a if joint is None else a @ joint
    return joint


def _rollout(model, batch: Batch, shared: dict | None = None, **_) -> tuple[list, dict]:
    joint = rollout_matrices(_attentions(model, batch, shared), batch.mask)
    return _gather_rows(batch, joint[:, -1].float()), {}


def attention_flow(
    attentions: Sequence[torch.Tensor],
    mask_row: torch.Tensor,
    sources: Sequence[int],
    scale: float = 1e6,
) -> np.ndarray:
    """Exact attention flow (Abnar & Zuidema 2020) for one example.

    The layer graph has a node per (layer, position); an edge from position j at layer
    l to position i at layer l+1 has capacity ``Â_l[i, j]`` (residual-mixed, row
    normalised). The flow of input position s is the max-flow from the last position at
    the top layer to s at the bottom, computed with SciPy's Dinic implementation on
    integer capacities (scaled by ``scale``).

    Returns:
        Flow per position in ``sources`` (fractions of ``scale``).
    """
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_flow

    valid = mask_row.bool()
    n_layers = len(attentions)
    keep = torch.nonzero(valid).squeeze(-1)
    t = len(keep)
    remap = {int(p): i for i, p in enumerate(keep.tolist())}
    rows, cols, caps = [], [], []
    eye = torch.eye(t, dtype=torch.float64)
    for layer, att in enumerate(attentions):
        a = att.double().mean(0)[keep][:, keep].cpu()
        a = 0.5 * a + 0.5 * eye
        a = a / a.sum(-1, keepdim=True)
        i, j = torch.nonzero(a > 0, as_tuple=True)
        # edge from (layer+1, i) down to (layer, j): flow goes from the output downwards
        rows.append(((layer + 1) * t + i).numpy())
        cols.append((layer * t + j).numpy())
        caps.append(np.maximum((a[i, j].numpy() * scale).astype(np.int64), 0))
    n_nodes = (n_layers + 1) * t
    graph = csr_matrix(
        (np.concatenate(caps).astype(np.int32), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_nodes, n_nodes),
    )
    source = n_layers * t + (t - 1)
    return np.array(
        [maximum_flow(graph, source, remap[int(s)]).flow_value / scale for s in sources]
    )


def _flow(model, batch: Batch, shared: dict | None = None, **_) -> tuple[list, dict]:
    atts = _attentions(model, batch, shared)
    out = []
    for b in range(batch.size):
        valid = batch.in_valid[b]
        pos = batch.in_pos[b][valid].tolist()
        flows = attention_flow([a[b] for a in atts], batch.mask[b], pos)
        tok = torch.zeros(batch.in_pos.shape[1], dtype=torch.float64)
        tok[: len(pos)] = torch.tensor(flows)
        out.append(tok)
    tok = torch.stack(out).to(batch.in_valid.device)
    return _to_words(batch, tok, tok), {}


NORM_BOUNDS: dict[str, Callable[[int], float]] = {
    "l1": lambda d: math.sqrt(2 / math.pi) * d,
    "l2": lambda d: math.sqrt(d),
    "linf": lambda d: math.sqrt(2 * math.log(d)),
}


def _noisy_runs(
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


def _noiser(
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
        run = _noisy_runs(model, one, inp, full, unit_noise, chunk)
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
    return _to_words(batch, tok, tok.abs()), {"noiser_sigma": np.array(sigmas)}


METHODS: dict[str, Callable[..., tuple[list, dict]]] = {
    "random": _random,
    "attention": _attention,
    "attention_rollout": _rollout,
    "attention_flow": _flow,
    "saliency": _saliency,
    "input_x_gradient": _input_x_gradient,
    "integrated_gradients": _integrated_gradients,
    "gradient_shap": _gradient_shap,
    "occlusion": _perturbation("FeatureAblation"),
    "lime": _perturbation("Lime"),
    "kernel_shap": _perturbation("KernelShap"),
    "noiser": _noiser,
}
STOCHASTIC = {"random", "gradient_shap", "lime", "kernel_shap", "noiser"}


def available_methods() -> list[str]:
    """Names accepted by :func:`attribute`."""
    return list(METHODS)


def _row(ex: Example, rp: RenderedPrompt | None, method: str, **fields) -> dict:
    return {
        "id": ex.id,
        "dataset": ex.dataset,
        "method": method,
        "words": ex.flat_words() if rp is None else rp.words,
        "words_without_tokens": 0 if rp is None else sum(1 for t in rp.word_tokens if not t),
        "truncated_words": int(ex.meta.get("truncated_words", 0)),
        **fields,
    }


def attribute(
    model,
    tokenizer,
    examples: Sequence[Example],
    method: str | Sequence[str],
    *,
    target: str = "pred",
    labels: Sequence[str] | None = None,
    batch_size: int = 8,
    progress: bool = False,
    **options,
) -> pd.DataFrame:
    """Word-level attributions for a list of examples (any mix of datasets).

    Several methods can be asked for at once: each batch is then rendered and its
    target scored once, saliency and input×gradient share one forward/backward, and the
    attention methods share one forward.

    Args:
        method: a name from :func:`available_methods`, or a list of them.
        target: ``pred``, ``gold`` or ``contrast`` (see :func:`prepare`).
        labels: explicit target labels, one per example.
        progress: show a tqdm bar over batches.
        **options: method options (``ig_steps``; ``n_samples`` for LIME/KernelSHAP;
            ``gradient_shap_samples``; ``noise_samples``, ``bisection_steps``, ``norm``
            for Noiser; ``seed``...).

    Returns:
        One row per example × method: ``id``, ``dataset``, ``method``, ``status``
        (``ok``, or ``context_overflow`` when the prompt exceeds the model's context:
        reported, with empty scores), ``target_label``, ``words``, ``signed``,
        ``magnitude``, ``nonfinite`` (NaN/inf scores detected and set to 0),
        ``words_without_tokens`` (words with no token of their own: score 0),
        ``truncated_words`` (cut by :func:`xalign_utils.data.truncate` before
        prompting), ``seconds`` (the method's wall time for the batch ÷ batch size; a
        pass shared with an earlier method of the same call is paid by that method), and
        method extras (``ig_delta``, ``noiser_sigma``).

    Raises:
        KeyError: unknown method; the message lists the valid ones.
    """
    from tqdm.auto import tqdm

    from .models import context_length
    from .prompts import ContextLengthError

    methods = [method] if isinstance(method, str) else list(method)
    for m in methods:
        if m not in METHODS:
            raise KeyError(f"unknown attribution method {m!r}; available: {available_methods()}")
    limit = context_length(model)
    rows = []
    chunks = []
    by_dataset: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        try:
            render(tokenizer, ex, "classify", max_length=limit)
        except ContextLengthError:
            rows += [
                _row(ex, None, m, status="context_overflow", _order=(i, k))
                for k, m in enumerate(methods)
            ]
            continue
        by_dataset.setdefault(ex.dataset, []).append(i)
    for idx in by_dataset.values():
        chunks += [idx[s : s + batch_size] for s in range(0, len(idx), batch_size)]
    for chunk in tqdm(chunks, disable=not progress, desc="attribution", leave=False):
        batch = prepare(
            model,
            tokenizer,
            [examples[i] for i in chunk],
            target=target,
            labels=None if labels is None else [labels[i] for i in chunk],
        )
        shared: dict = {}
        for k, m in enumerate(methods):
            start = time.perf_counter()
            scores, extra = METHODS[m](model, batch, shared=shared, **options)
            seconds = (time.perf_counter() - start) / batch.size
            for b, (ex, rp, (signed, mag)) in enumerate(
                zip(batch.examples, batch.rendered, scores, strict=True)
            ):
                bad = ~np.isfinite(signed) | ~np.isfinite(mag)
                row = _row(
                    ex,
                    rp,
                    m,
                    status="ok",
                    target_label=batch.target_labels[b],
                    signed=np.where(bad, 0.0, signed),
                    magnitude=np.where(bad, 0.0, mag),
                    nonfinite=int(bad.sum()),
                    seconds=seconds,
                    _order=(chunk[b], k),
                )
                row.update({key: float(values[b]) for key, values in extra.items()})
                rows.append(row)
    rows.sort(key=lambda r: r.pop("_order"))  # examples in input order, then methods
    return pd.DataFrame(rows)


def continuation_attribution(
    model,
    tokenizer,
    example: Example,
    role: str,
    text: str,
    **fields: object,
) -> np.ndarray:
    """Signed input×gradient word scores of ``log p(text | prompt)`` (all text tokens).

    The attribution profile of a *generated explanation* over the input words, for the
    CC-SHAP-style comparison with the prediction's profile
    (:func:`xalign_utils.consistency.profile_distance`). ``fields`` fill the role's
    template (``label``, ``k``). Returns zeros when ``text`` has no tokens.
    """
    from .models import context_length

    prompt = render(tokenizer, example, role, max_length=context_length(model), **fields)
    full = render(tokenizer, example, role, assistant_prefix=text, **fields)
    n_prompt = len(prompt.input_ids)
    if len(full.input_ids) <= n_prompt:
        return np.zeros(len(full.word_tokens))
    device = next(model.parameters()).device
    ids = torch.tensor([full.input_ids], device=device)
    emb = model.get_input_embeddings()(ids).detach().requires_grad_(True)
    logits = model(inputs_embeds=emb).logits[0, n_prompt - 1 : -1].float()
    target = ids[0, n_prompt:]
    value = torch.log_softmax(logits, -1).gather(1, target.unsqueeze(1)).sum()
    (grad,) = torch.autograd.grad(value, emb)
    token = (grad * emb).sum(-1)[0].detach().double().cpu().numpy()
    return np.array([token[span].sum() if span else 0.0 for span in full.word_tokens])
