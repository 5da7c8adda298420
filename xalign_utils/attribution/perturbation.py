"""Perturbation methods on whole words: occlusion, LIME and KernelSHAP (Captum)."""

from __future__ import annotations

import captum.attr as ca
import numpy as np
import torch

from ..forward import Batch, forward_args, input_embeddings, make_forward
from .aggregate import word_feature_mask
from .gradient import seeded


def perturbation_method(cls_name: str):
    """A word-level Captum perturbation method (``FeatureAblation``, ``Lime``, ``KernelShap``)."""

    def method(
        model,
        batch: Batch,
        n_samples: int = 64,
        seed: int = 0,
        perturbations_per_eval: int = 16,
        **_,
    ) -> tuple[list, dict]:
        full, inp = input_embeddings(model, batch)
        full, inp = full.detach(), inp.detach()
        forward = make_forward(model, batch)
        fm = word_feature_mask(batch, inp.shape[-1])
        kwargs = {
            "feature_mask": fm,
            "additional_forward_args": forward_args(batch, full),
            "perturbations_per_eval": perturbations_per_eval,
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


occlusion = perturbation_method("FeatureAblation")
lime = perturbation_method("Lime")
kernel_shap = perturbation_method("KernelShap")
