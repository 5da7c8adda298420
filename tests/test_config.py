"""Profiles, overrides, the config hash, notebook parameters and the raw-data folder."""

import dataclasses
from pathlib import Path

import pytest

from xalign_utils import config


def test_overrides_are_coerced_to_field_types():
    cfg = config.load_config("smoke", N_EVAL="50", datasets="esnli, sst2", seed=None)
    assert cfg.n_eval == 50
    assert cfg.datasets == ("esnli", "sst2")
    assert cfg.seed == config.PROFILES["smoke"].seed


def test_unknown_profile_and_parameter_list_the_valid_ones():
    with pytest.raises(KeyError, match="smoke"):
        config.load_config("huge")
    with pytest.raises(KeyError, match="n_eval"):
        config.load_config("smoke", n_evals=3)


def test_hash_changes_with_results_relevant_fields_only():
    a = config.load_config("smoke")
    assert a.hash() == config.load_config("smoke").hash()
    assert a.hash() != config.load_config("smoke", seed=1).hash()
    assert a.hash() == config.load_config("smoke", model=config.OFFLINE_MODEL).hash()
    core = config.load_config("smoke", CORE_ONLY="1")  # skips tables, changes none stored
    assert core.core_only and not a.core_only
    assert all(core.hash(**{k: True}) == a.hash(**{k: True}) for k in ("attribution", "guide"))


def test_model_from_environment(monkeypatch):
    monkeypatch.setenv("XALIGN_MODEL", "some/model")
    assert config.load_config("smoke").model == "some/model"
    assert config.load_config("smoke", model="other/model").model == "other/model"


def test_smoke_figures_never_overwrite_thesis_figures():
    assert config.load_config("smoke").figures_dir != config.FIGURES_DIR
    assert config.load_config("default").figures_dir == config.FIGURES_DIR


def test_raw_data_dir_env_and_missing_message(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("XALIGN_RAW_DATA", str(tmp_path))
    assert config.raw_data_dir() == tmp_path
    monkeypatch.setenv("XALIGN_RAW_DATA", str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="XALIGN_RAW_DATA"):
        config.raw_data_dir()
    monkeypatch.delenv("XALIGN_RAW_DATA")
    monkeypatch.setattr(config, "ROOT", tmp_path / "project")
    monkeypatch.setattr(config, "DATA_DIR", tmp_path / "project" / "data")
    with pytest.raises(FileNotFoundError, match=r"(?s)esnli/.*sst2/"):
        config.raw_data_dir()


def test_parameter_names_are_the_upper_case_fields(monkeypatch):
    monkeypatch.delenv("XALIGN_MODEL", raising=False)
    names = config.parameter_names()
    fields = [f.name for f in dataclasses.fields(config.RunConfig) if f.name != "notes"]
    assert names == [f.upper() for f in fields]
    assert {"PROFILE", "N_EVAL", "K_VALUES", "METHODS"} <= set(names)
    overridable = [n for n in names if n != "PROFILE"]
    assert config.load_config("smoke", **dict.fromkeys(overridable)) == config.PROFILES["smoke"]


def test_from_parameters_reads_the_injected_names(monkeypatch):
    monkeypatch.delenv("XALIGN_MODEL", raising=False)
    smoke = config.PROFILES["smoke"]
    namespace = {
        "PROFILE": "smoke",
        "N_EVAL": 7,
        "SEED": None,  # None keeps the profile's value
        "K_VALUES": "1,2",  # papermill passes command-line values as strings
        "METHODS": "saliency, random",
        "DATASETS": ["sst2"],
        "N_ATTR": "5",
        "n_faith": 99,  # not a parameter name: notebook variables are ignored
        "df": object(),
        "ADAPTER": "some/adapter",
    }
    cfg = config.from_parameters(namespace)
    assert cfg.profile == "smoke" and cfg.n_eval == 7 and cfg.n_attr == 5
    assert cfg.seed == smoke.seed and cfg.n_faith == smoke.n_faith
    assert cfg.k_values == (1, 2) and cfg.methods == ("saliency", "random")
    assert cfg.datasets == ("sst2",)
    assert cfg.model is None  # MODEL absent: the offline default


def test_from_parameters_defaults_and_unknown_profile(monkeypatch):
    monkeypatch.delenv("XALIGN_MODEL", raising=False)
    assert config.from_parameters({}) == config.PROFILES["default"]
    assert config.from_parameters({"PROFILE": None, "MODEL": None}) == config.PROFILES["default"]
    with pytest.raises(KeyError, match="smoke") as err:
        config.from_parameters({"PROFILE": "huge"})
    assert "huge" in str(err.value)
