"""Token attributions for a model's answer, over the input words only (DESIGN.md §7).

One entry point, :func:`attribute`, takes examples and method names from the registry
(:data:`METHODS`, :class:`MethodSpec`) and returns one row per example × method with
word-level scores. Modules: ``gradient``, ``perturbation``, ``attention`` (with rollout
and flow), ``noiser``, ``nulls``; ``aggregate`` turns sub-word scores into word scores.
"""

from .attention import attention_flow, rollout_matrices
from .core import attribute, completeness_errors, continuation_attribution, path_values
from .noiser import NORM_BOUNDS
from .registry import COST_TIERS, METHODS, MethodSpec, available_methods, method, methods_where

__all__ = [
    "COST_TIERS",
    "METHODS",
    "NORM_BOUNDS",
    "MethodSpec",
    "attention_flow",
    "attribute",
    "available_methods",
    "completeness_errors",
    "continuation_attribution",
    "method",
    "methods_where",
    "path_values",
    "rollout_matrices",
]
