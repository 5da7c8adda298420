"""Gradient methods: saliency, input×gradient (one shared forward/backward), integrated
gradients and gradient SHAP (Captum), all on the input-word embeddings of a batch."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from captum.attr import GradientShap, IntegratedGradients

from ..forward import MAX_ROWS, Batch, forward_args, input_embeddings, make_forward
from .aggregate import to_words


def gradients(model, batch: Batch, shared: dict | None = None) -> tuple[torch.Tensor, ...]:
    """Gradient of the target w.r.t. the input-token embeddings, and the embeddings.

    One forward/backward serves saliency and input×gradient: the result is kept in
    ``shared`` (one dict per batch, filled by :func:`attribute`).
    """
    if shared is not None and "gradients" in shared:
        return shared["gradients"]
    full, inp = input_embeddings(model, batch)
    inp = inp.detach().requires_grad_(True)
    value = make_forward(model, batch)(inp, *forward_args(batch, full.detach()))
    (grad,) = torch.autograd.grad(value.sum(), inp)
    result = (grad, inp.detach())
    if shared is not None:
        shared["gradients"] = result
    return result


def saliency(model, batch: Batch, shared: dict | None = None, **_) -> tuple[list, dict]:
    """Gradient L2 norm per token (Simonyan et al. 2014)."""
    grad, _ = gradients(model, batch, shared)
    norm = grad.norm(dim=-1)
    return to_words(batch, norm, norm), {}


def input_x_gradient(model, batch: Batch, shared: dict | None = None, **_) -> tuple[list, dict]:
    """Gradient × input embedding: signed sum and L2 norm over dimensions."""
    grad, inp = gradients(model, batch, shared)
    prod = grad * inp
    return to_words(batch, prod.sum(-1), prod.norm(dim=-1)), {}


def integrated_gradients(
    model, batch: Batch, ig_steps: int = 32, internal_batch_size: int = MAX_ROWS, **_
) -> tuple[list, dict]:
    """Integrated gradients (Captum) from an all-zero input-word baseline; reports the
    completeness error ``ig_delta`` per example."""
    full, inp = input_embeddings(model, batch)
    full, inp = full.detach(), inp.detach()
    ig = IntegratedGradients(make_forward(model, batch))
    attr, delta = ig.attribute(
        inp,
        baselines=torch.zeros_like(inp),
        additional_forward_args=forward_args(batch, full),
        n_steps=ig_steps,
        internal_batch_size=max(internal_batch_size, batch.size),
        return_convergence_delta=True,
    )
    return to_words(batch, attr.sum(-1), attr.norm(dim=-1)), {
        "ig_delta": delta.detach().cpu().numpy()
    }


@contextlib.contextmanager
def seeded(seed: int):
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


def gradient_shap(
    model,
    batch: Batch,
    gradient_shap_samples: int = 16,
    stdevs: float = 0.09,
    seed: int = 0,
    **_,
) -> tuple[list, dict]:
    """Gradient SHAP (Captum): expected gradients from noisy zero baselines, seeded."""
    n_samples = gradient_shap_samples
    results = []
    step = max(1, MAX_ROWS // n_samples)  # Captum runs all samples of a batch at once
    with seeded(seed):
        for start in range(0, batch.size, step):
            sub = batch.slice(start, start + step)
            full, inp = input_embeddings(model, sub)
            full, inp = full.detach(), inp.detach()
            attr = GradientShap(make_forward(model, sub)).attribute(
                inp,
                baselines=torch.zeros_like(inp[:1]),
                n_samples=n_samples,
                stdevs=stdevs,
                additional_forward_args=forward_args(sub, full),
            )
            results += to_words(sub, attr.sum(-1), attr.norm(dim=-1))
    return results, {}
