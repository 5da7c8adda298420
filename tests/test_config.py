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
