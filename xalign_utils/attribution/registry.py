"""The method registry: every fact about an attribution method in one entry.

A new method is one function ``(model, batch, **options) -> (per-example (signed,
magnitude) word scores, extras)`` plus one :class:`MethodSpec` here. The runner's plan
(cost tiers), the validation checks (expected faithful, stochastic), the notebooks'
parameters and the benchmark read this table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..schema import lookup
from .attention import attention, flow, rollout
from .gradient import gradient_shap, input_x_gradient, integrated_gradients, saliency
from .noiser import noiser
from .nulls import (
    position_from_end,
    position_from_start,
    random_scores,
    tokens_per_word,
    word_rarity,
)
from .perturbation import kernel_shap, lime, occlusion

#: Cost tiers, cheapest first: one forward (or forward/backward) per batch; many passes
#: per example; tokens × noise samples × bisection steps forwards per example.
COST_TIERS = ("one_pass", "many_pass", "costliest")


@dataclass(frozen=True)
class MethodSpec:
    """An attribution method and what is known about it.

    Attributes:
        name: public snake_case name (``integrated_gradients``).
        function: ``(model, batch, *, shared, **options) -> (scores, extras)``.
        family: ``null``, ``attention``, ``gradient``, ``perturbation`` or ``noise``
            (figures group methods by it).
        cost: one of :data:`COST_TIERS`; sets how many examples a profile attributes.
        stochastic: scores depend on a seed (seed-stability check applies).
        gradient_based: needs a backward pass (and eager attention for double backward).
        expected_faithful: the planted-evidence model's trigger must rank first.
        options: the method options it reads (``ig_steps``, ``n_samples`` ...).
    """

    name: str
    function: Callable[..., tuple[list, dict]]
    family: str
    cost: str
    stochastic: bool = False
    gradient_based: bool = False
    expected_faithful: bool = True
    options: tuple[str, ...] = ()


_SPECS = (
    MethodSpec(
        "random",
        random_scores,
        "null",
        "one_pass",
        True,
        expected_faithful=False,
        options=("seed",),
    ),
    MethodSpec(
        "position_from_start", position_from_start, "null", "one_pass", expected_faithful=False
    ),
    MethodSpec("position_from_end", position_from_end, "null", "one_pass", expected_faithful=False),
    MethodSpec("tokens_per_word", tokens_per_word, "null", "one_pass", expected_faithful=False),
    MethodSpec(
        "word_rarity",
        word_rarity,
        "null",
        "one_pass",
        expected_faithful=False,
        options=("word_counts",),
    ),
    MethodSpec("attention", attention, "attention", "one_pass", expected_faithful=False),
    MethodSpec("attention_rollout", rollout, "attention", "one_pass"),
    MethodSpec("attention_flow", flow, "attention", "one_pass"),
    MethodSpec("saliency", saliency, "gradient", "one_pass", gradient_based=True),
    MethodSpec("input_x_gradient", input_x_gradient, "gradient", "one_pass", gradient_based=True),
    MethodSpec(
        "integrated_gradients",
        integrated_gradients,
        "gradient",
        "many_pass",
        gradient_based=True,
        options=("ig_steps",),
    ),
    MethodSpec(
        "gradient_shap",
        gradient_shap,
        "gradient",
        "many_pass",
        True,
        True,
        options=("gradient_shap_samples", "seed"),
    ),
    MethodSpec("occlusion", occlusion, "perturbation", "many_pass"),
    MethodSpec("lime", lime, "perturbation", "many_pass", True, options=("n_samples", "seed")),
    MethodSpec(
        "kernel_shap", kernel_shap, "perturbation", "many_pass", True, options=("n_samples", "seed")
    ),
    MethodSpec(
        "noiser",
        noiser,
        "noise",
        "costliest",
        True,
        options=(
            "noise_samples",
            "bisection_steps",
            "norm",
            "variant",
            "scaling",
            "criterion",
            "seed",
        ),
    ),
)

#: Every method by name, in the order tables and figures list them.
METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in _SPECS}


def available_methods() -> list[str]:
    """Names accepted by :func:`~xalign_utils.attribution.attribute`."""
    return list(METHODS)


def method(name: str) -> MethodSpec:
    """The registry entry of ``name``.

    Raises:
        KeyError: unknown name; the message lists the valid ones.
    """
    return lookup(METHODS, name, "attribution method")


def methods_where(**facts: object) -> list[str]:
    """Names of the methods whose entries match every given fact (``cost="one_pass"``)."""
    return [
        spec.name
        for spec in _SPECS
        if all(getattr(spec, key) == value for key, value in facts.items())
    ]
