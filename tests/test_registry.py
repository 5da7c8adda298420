"""The registries (``data/registry.py``, ``attribution/registry.py``) are consistent, and
unknown names fail with the list of valid ones."""

from __future__ import annotations

import pytest

from xalign_utils import attribution as A
from xalign_utils import data
from xalign_utils.schema import DatasetSpec

SPECS = list(data.DATASETS.values())


# --------------------------------------------------------------------------- datasets


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_dataset_entry_is_consistent(spec: DatasetSpec):
    assert data.DATASETS[spec.name] is spec
    assert set(spec.labels) <= set(spec.verbalisers)
    assert all(isinstance(v, str) and v for v in spec.verbalisers.values())
    assert spec.kind in {"classification", "next_token"}
    assert bool(spec.labels) == (spec.kind == "classification")
    assert spec.rationales in {"human", "evidence", "planted", "none"}
    assert "eval" in spec.splits and set(spec.splits) <= {"eval", "train"}
    for role, (source, _split) in spec.splits.items():
        assert source in spec.sources, (role, source)
    for source, _split in spec.published_counts:
        assert source in spec.sources, source
    assert all(n > 0 for n in spec.published_counts.values())


def test_derived_tables_agree_with_the_entries():
    assert data.LABELS == {s.name: s.labels for s in SPECS if s.kind == "classification"}
    assert data.LOADERS == {name: fn for s in SPECS for name, fn in s.sources.items()}
    assert sum(len(s.sources) for s in SPECS) == len(data.LOADERS)  # no source in two entries
    assert {source for source, _ in data.PUBLISHED_COUNTS} <= set(data.LOADERS)


def test_unknown_dataset_lists_the_valid_names():
    assert data.dataset("sst2") is data.DATASETS["sst2"]
    with pytest.raises(KeyError, match="nope") as err:
        data.dataset("nope")
    assert all(name in str(err.value) for name in data.DATASETS)
    with pytest.raises(KeyError, match="esnli_highlights"):
        data.load("nope", "test")


# --------------------------------------------------------------------------- methods


def test_method_entries_are_consistent():
    for name, spec in A.METHODS.items():
        assert spec.name == name
        assert spec.cost in A.COST_TIERS, name
        assert spec.family in {"null", "attention", "gradient", "perturbation", "noise"}, name
        assert spec.gradient_based == (spec.family == "gradient"), name
        if spec.stochastic:
            assert "seed" in spec.options, f"{name} is stochastic but does not read the seed"
        assert callable(spec.function)


def test_available_methods_in_registry_order_cheapest_first():
    names = A.available_methods()
    assert names == list(A.METHODS) == [spec.name for spec in A.METHODS.values()]
    tiers = [A.COST_TIERS.index(A.METHODS[m].cost) for m in names]
    assert tiers == sorted(tiers)
    names.append("changed")  # a copy: the registry is unchanged
    assert "changed" not in A.available_methods()


def test_unknown_method_lists_the_valid_ones():
    assert A.method("saliency") is A.METHODS["saliency"]
    with pytest.raises(KeyError, match="shapley_magic") as err:
        A.method("shapley_magic")
    assert all(name in str(err.value) for name in A.METHODS)
    with pytest.raises(KeyError, match="integrated_gradients"):
        A.attribute(None, None, [], ["saliency", "shapley_magic"])  # before any model work


def test_methods_where_filters_on_facts():
    faithful = A.methods_where(expected_faithful=True)
    assert faithful == [m for m, s in A.METHODS.items() if s.expected_faithful]
    assert "random" not in faithful and "integrated_gradients" in faithful
    assert A.methods_where(cost="costliest") == ["noiser"]
    assert A.methods_where(cost="one_pass", stochastic=True) == ["random"]
    assert A.methods_where() == A.available_methods()
