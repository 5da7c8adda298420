"""xalign_utils: the slim helper package behind the xalign notebooks.

Importing the package does no work: the submodules and the handful of names in
``__all__`` are loaded on first access (PEP 562 ``__getattr__``), so ``import
xalign_utils`` does not import torch or transformers. Notebooks use ``from xalign_utils
import data, models``; the names are shortcuts for the most used entry points::

    from xalign_utils import attribute, from_parameters, load_model
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

#: Public names and the submodule that defines each, loaded on first use.
_NAMES = {
    "load_config": "config",
    "from_parameters": "config",
    "RunConfig": "config",
    "Example": "schema",
    "DatasetSpec": "schema",
    "DATASETS": "data",
    "METHODS": "attribution",
    "MethodSpec": "attribution",
    "attribute": "attribution",
    "load_model": "models",
}

__all__ = [
    # submodules users import (``from xalign_utils import data``), loaded on first use
    "config",
    "data",
    "prompts",
    "models",
    "scoring",
    "forward",
    "attribution",
    "explanations",
    "faithfulness",
    "plausibility",
    "consistency",
    "validation",
    "stats",
    "reports",
    "plots",
    "store",
    "runner",
    "planted",
    "calibration",
    "baselines",
    "comparisons",
    "metric_tables",
    "validation_runs",
    "training",
    "training_runs",
    "regularised_runs",
    "training_plots",
    "summary",
    # the most used entry points (keys of ``_NAMES``)
    "load_config",
    "from_parameters",
    "RunConfig",
    "Example",
    "DatasetSpec",
    "DATASETS",
    "METHODS",
    "MethodSpec",
    "attribute",
    "load_model",
]

if TYPE_CHECKING:  # for type checkers and IDEs; never executed
    from . import (
        attribution,
        baselines,
        calibration,
        comparisons,
        config,
        consistency,
        data,
        explanations,
        faithfulness,
        forward,
        metric_tables,
        models,
        planted,
        plausibility,
        plots,
        prompts,
        regularised_runs,
        reports,
        runner,
        scoring,
        stats,
        store,
        summary,
        training,
        training_plots,
        training_runs,
        validation,
        validation_runs,
    )
    from .attribution import METHODS, MethodSpec, attribute
    from .config import RunConfig, from_parameters, load_config
    from .data import DATASETS
    from .models import load_model
    from .schema import DatasetSpec, Example


def __getattr__(name: str) -> object:
    """Load a submodule or a public name on first access (PEP 562)."""
    if name in _NAMES:
        value = getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value
    if name in __all__:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
