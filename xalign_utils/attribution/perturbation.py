"""Perturbation methods on whole words: occlusion, LIME and KernelSHAP (Captum)."""

from __future__ import annotations

import captum.attr as ca
import numpy as np
import torch

from ..forward import Batch, forward_args, input_embeddings, make_forward, prompt_cache, with_prefix
from .aggregate import word_feature_mask
from .gradient import seeded


def clean_prefix_forward(model, batch: Batch, full: torch.Tensor, inp: torch.Tensor):
    """:func:`~xalign_utils.forward.make_forward`'s function for occlusion, run in each call
    only from the first position any of its rows perturbs.

    Under a causal mask the keys and values before that position equal the clean
    prompt's, so they are served from one clean pass over the batch (exact up to
    floating-point summation order). Occlusion ablates words in order, so a call of
    ``perturbations_per_eval`` words skips the words before its first one. Rows map to
    examples as Captum repeats the batch (row ``r`` is example ``r mod B``); a call whose
    rows do not match that layout runs in full.
    """
    with torch.no_grad():
        kv = prompt_cache(model, full, batch)
    n_clean, width = full.shape[:2]

    def forward(rows_inp, rows_full, mask, positions, in_pos, in_valid, *rest):
        n = rows_inp.shape[0]
        rows = torch.arange(n, device=rows_inp.device) % n_clean
        cut = batch.prefix_len
        if n % n_clean == 0 and torch.equal(rows_full, full[rows]):
            changed = (rows_inp != inp[rows]).any(-1) & in_valid
            first = in_pos.masked_fill(~changed, width - 1).min()
            cut = min(int(first), width - 1)
        one_pass = batch
        if cut > batch.prefix_len:
            # gather only the positions the call reuses, not the whole clean cache
            one_pass = with_prefix(
                batch, [(k[rows, :, :cut], v[rows, :, :cut]) for k, v in kv], cut
            )
        args = (rows_full, mask, positions, in_pos, in_valid, *rest)
        return make_forward(model, one_pass)(rows_inp, *args)

    return forward


def perturbation_method(cls_name: str, per_eval: int = 16):
    """A word-level Captum perturbation method (``FeatureAblation``, ``Lime``, ``KernelShap``)
    evaluating ``per_eval`` perturbations of each example per forward pass by default."""

    def method(
        model,
        batch: Batch,
        n_samples: int = 64,
        seed: int = 0,
        perturbations_per_eval: int | None = None,
        **_,
    ) -> tuple[list, dict]:
        full, inp = input_embeddings(model, batch)
        full, inp = full.detach(), inp.detach()
        if cls_name == "FeatureAblation":
            forward = clean_prefix_forward(model, batch, full, inp)
        else:  # LIME/KernelSHAP perturb words at random: most calls change an early word
            forward = make_forward(model, batch)
        fm = word_feature_mask(batch, inp.shape[-1])
        kwargs = {
            "feature_mask": fm,
            "additional_forward_args": forward_args(batch, full),
            "perturbations_per_eval": perturbations_per_eval or per_eval,
        }
        if cls_name != "FeatureAblation":
            kwargs["n_samples"] = n_samples
            kwargs["return_input_shape"] = True
        results = []
        with torch.no_grad(), seeded(seed):
            if cls_name == "FeatureAblation":
                attr = ca.FeatureAblation(forward).attribute(inp, baselines=0.0, **kwargs)
                rows = [attr[b] for b in range(batch.size)]
            else:  # LIME / KernelSHAP interpret one example at a time
                rows = []
                for b in range(batch.size):
                    one = [
                        a[b : b + 1] if isinstance(a, torch.Tensor) else a
                        for a in forward_args(batch, full)
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


# occlusion: 8 words a call, each call from its first (bench/occlusion_reuse.csv: -16% time)
occlusion = perturbation_method("FeatureAblation", per_eval=8)
lime = perturbation_method("Lime")
kernel_shap = perturbation_method("KernelShap")
