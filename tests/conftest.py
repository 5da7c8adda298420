"""Shared fixtures: the real raw data, a scratch raw-data folder, the offline model, the
planted-evidence model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from xalign_utils import config, machine


@pytest.fixture(scope="session")
def raw_dir() -> Path:
    """The real raw-data folder; tests that need it are skipped when it is absent."""
    try:
        return config.raw_data_dir()
    except FileNotFoundError:
        pytest.skip("raw data not available")


@pytest.fixture()
def scratch_raw(tmp_path: Path, raw_dir: Path):
    """Return ``copy(name, files)``: a scratch raw folder holding copies to corrupt."""

    def copy(dataset: str, files: list[str]) -> Path:
        (tmp_path / dataset).mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy(raw_dir / dataset / f, tmp_path / dataset / f)
        return tmp_path

    return copy


@pytest.fixture(scope="session")
def model_and_tokenizer():
    """The offline default model with eager attention (converted on first use)."""
    from xalign_utils.models import load_model

    return load_model(None, for_gradients=True, device="cpu")


@pytest.fixture(scope="session")
def tokenizer(model_and_tokenizer):
    return model_and_tokenizer[1]


@pytest.fixture(scope="session")
def planted_model(tokenizer):
    """A tiny model trained so that the planted trigger word alone decides the answer
    (:func:`xalign_utils.planted.build_planted_model` with its defaults; trained once)."""
    from xalign_utils.planted import build_planted_model

    return build_planted_model(tokenizer)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter):
    """The machine's CPU, threads and fp32 matmul throughput: durations (``--durations``)
    only compare between runs beside it (CI's machine runs 2-3x slower than some)."""
    facts = machine.summary()
    terminalreporter.write_line(
        "machine: {cpu}; {cpus} CPUs, torch {torch_threads} threads, "
        "fp32 matmul {matmul_gflops} GFLOP/s (2048², best of 5)".format(**facts)
    )
