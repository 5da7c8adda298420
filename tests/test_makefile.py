"""The Makefile: overrides reach papermill, per-notebook targets, `make data`, headless lab.

Most checks read `make -n` (a dry run: nothing executes) in a temporary copy of the
repository layout, so that executed notebooks can be faked without touching `runs/`. The
copy links `.venv` to the project's, and its `pyproject.toml` is dated back so the set-up
step is up to date; `-o .venv/.installed` keeps make from ever re-running it here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from xalign_utils.config import NOTEBOOKS_DIR, ROOT, parameter_names

MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="GNU make is not installed")
NOTEBOOKS = sorted(p.name for p in NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
OLD, NEW = 1_000_000_000, 1_500_000_000  # file times: sources older than outputs


def make_repo(root: Path, notebooks: list[str] = NOTEBOOKS, venv: bool = True) -> Path:
    """A copy of what make reads: Makefile, pyproject.toml, notebooks/, a link to .venv."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "Makefile", root / "Makefile")
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    os.utime(root / "pyproject.toml", (0, 0))
    (root / "notebooks").mkdir()
    for name in notebooks:
        (root / "notebooks" / name).write_text("{}")
        os.utime(root / "notebooks" / name, (OLD, OLD))
    if venv:
        (root / ".venv").symlink_to(ROOT / ".venv", target_is_directory=True)
    return root


def make(
    repo: Path,
    *args: str,
    env: dict[str, str] | None = None,
    check: bool = True,
    keep_setup: bool = True,
) -> str:
    """Run make in ``repo``; return stdout + stderr.

    ``keep_setup`` (``-o .venv/.installed``) treats the set-up step as done, so nothing
    here ever reinstalls the project's environment.
    """
    proc = subprocess.run(
        [MAKE, "--no-print-directory", *(["-o", ".venv/.installed"] if keep_setup else []), *args],
        cwd=repo,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def papermill_calls(output: str) -> list[str]:
    """The papermill command lines of a dry run."""
    return [line.rstrip("\\ ") for line in output.splitlines() if "bin/papermill " in line]


def executed(calls: list[str]) -> list[str]:
    """Names of the notebooks the papermill calls execute, in order."""
    return [re.search(r"notebooks/(\S+\.ipynb)", call).group(1) for call in calls]


def fake_outputs(repo: Path, profile: str, names: list[str], when: int = NEW) -> None:
    """Executed notebooks in runs/<profile>/ dated ``when``."""
    run_dir = repo / "runs" / profile
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        (run_dir / name).write_text("{}")
        os.utime(run_dir / name, (when, when))


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


# --------------------------------------------------------------------------- basics


def test_help_and_setup_need_no_venv(tmp_path):
    bare = make_repo(tmp_path / "bare", venv=False)
    listing = make(bare, "help")
    for target in ("setup", "all", "figures", "data", "test", "test-fast", "lab", "clean", "NN"):
        assert re.search(rf"^  {re.escape(target)}\s", listing, re.M), target
    dry = make(bare, "-n", "setup", keep_setup=False)
    assert "-m venv .venv" in dry
    assert "pip install -q -e '.[dev]'" in dry


def test_a_missing_venv_is_an_error_not_silently_dropped_overrides(tmp_path):
    bare = make_repo(tmp_path / "bare", venv=False)
    out = make(bare, "-n", "all", "N_FAITH=5", check=False)
    assert "cannot read the parameter names" in out
    assert not papermill_calls(out)


# --------------------------------------------------------------------------- overrides


def test_override_reaches_every_papermill_call(repo):
    calls = papermill_calls(make(repo, "-n", "all", "N_FAITH=5", "PROFILE=smoke"))
    assert executed(calls) == NOTEBOOKS
    for call in calls:
        assert "-p PROFILE smoke" in call
        assert "-p N_FAITH '5'" in call


def test_every_run_config_field_is_forwarded_when_set(repo):
    names = [n for n in parameter_names() if n != "PROFILE"]
    values = {name: f"v{i}" for i, name in enumerate(names)}
    values["MASK_TEXT"] = "it's"  # a quote survives the shell
    (call,) = papermill_calls(
        make(
            repo, "-n", NOTEBOOKS[0][:2], "PROFILE=smoke", *(f"{k}={v}" for k, v in values.items())
        )
    )
    words = shlex.split(call)
    passed = {words[i + 1]: words[i + 2] for i, w in enumerate(words) if w == "-p"}
    assert passed == {"PROFILE": "smoke", **values}


def test_environment_overrides_are_forwarded_and_unset_ones_are_not(repo):
    (call,) = papermill_calls(
        make(repo, "-n", NOTEBOOKS[0][:2], "PROFILE=smoke", env={"N_EVAL": "7", "SEED": ""})
    )
    words = shlex.split(call)
    passed = {words[i + 1]: words[i + 2] for i, w in enumerate(words) if w == "-p"}
    assert passed == {"PROFILE": "smoke", "N_EVAL": "7"}


@pytest.mark.notebook
def test_an_injected_parameter_reaches_the_run_config(tmp_path):
    """Really execute a probe notebook through make: N_FAITH reaches from_parameters()."""
    repo = make_repo(tmp_path / "repo", notebooks=[])
    probe = {
        "cells": [
            {
                "cell_type": "code",
                "metadata": {"tags": ["parameters"]},
                "source": 'PROFILE = "default"\n',
                "outputs": [],
                "execution_count": None,
            },
            {
                "cell_type": "code",
                "metadata": {},
                "source": (
                    "import json\n"
                    "from xalign_utils.config import from_parameters\n"
                    "cfg = from_parameters(globals())\n"
                    "with open('probe.json', 'w') as fh:\n"
                    "    json.dump([cfg.profile, cfg.n_faith, list(cfg.k_values)], fh)\n"
                ),
                "outputs": [],
                "execution_count": None,
            },
        ],
        "metadata": {
            "kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (repo / "notebooks/01_probe.ipynb").write_text(json.dumps(probe))
    failing = {**probe, "cells": [{**probe["cells"][1], "source": "raise RuntimeError('boom')\n"}]}
    (repo / "notebooks/02_fails.ipynb").write_text(json.dumps(failing))

    make(repo, "01", "PROFILE=smoke", "N_FAITH=5", "K_VALUES=1,3")
    assert json.loads((repo / "probe.json").read_text()) == ["smoke", 5, [1, 3]]
    assert (repo / "runs/smoke/01_probe.ipynb").is_file()

    out = make(repo, "02", "PROFILE=smoke", check=False)
    assert "!! notebooks/02_fails.ipynb failed" in out
    failed = repo / "runs/smoke/02_fails.ipynb"
    assert failed.is_file() and failed.stat().st_mtime == 0  # kept, but out of date
    assert executed(papermill_calls(make(repo, "-n", "02", "PROFILE=smoke"))) == ["02_fails.ipynb"]


# --------------------------------------------------------------------------- notebook targets


def test_nn_executes_only_nn_when_the_earlier_outputs_are_current(repo):
    fake_outputs(repo, "smoke", NOTEBOOKS)
    for i, name in enumerate(NOTEBOOKS):
        calls = papermill_calls(make(repo, "-n", name[:2], "PROFILE=smoke"))
        assert executed(calls) == [name], i


def test_nn_builds_missing_earlier_notebooks_in_order(repo):
    third = NOTEBOOKS[2]
    assert executed(papermill_calls(make(repo, "-n", third[:2], "PROFILE=smoke"))) == NOTEBOOKS[:3]
    fake_outputs(repo, "smoke", [NOTEBOOKS[0]])
    assert executed(papermill_calls(make(repo, "-n", third[:2], "PROFILE=smoke"))) == NOTEBOOKS[1:3]


def test_an_edited_earlier_notebook_is_re_executed_with_what_follows(repo):
    fake_outputs(repo, "smoke", NOTEBOOKS)
    os.utime(repo / "notebooks" / NOTEBOOKS[0], (NEW + 10, NEW + 10))
    calls = papermill_calls(make(repo, "-n", NOTEBOOKS[2][:2], "PROFILE=smoke"))
    assert executed(calls) == NOTEBOOKS[:3]


def test_all_re_executes_everything_in_order(repo):
    fake_outputs(repo, "smoke", NOTEBOOKS)
    assert executed(papermill_calls(make(repo, "-n", "all", "PROFILE=smoke"))) == NOTEBOOKS


def test_profiles_have_their_own_outputs(repo):
    fake_outputs(repo, "smoke", NOTEBOOKS)
    calls = papermill_calls(make(repo, "-n", NOTEBOOKS[1][:2], "PROFILE=default"))
    assert executed(calls) == NOTEBOOKS[:2]
    assert all("runs/default/" in call for call in calls)


def test_a_run_on_an_adapter_has_its_own_outputs(repo):
    fake_outputs(repo, "smoke", NOTEBOOKS)  # the base model's run is complete
    calls = papermill_calls(make(repo, "-n", NOTEBOOKS[1][:2], "PROFILE=smoke", "ADAPTER=ft"))
    assert executed(calls) == NOTEBOOKS[:2]
    assert all("runs/smoke+ft/" in call and "-p ADAPTER 'ft'" in call for call in calls)


def test_a_run_on_other_datasets_has_its_own_outputs(repo):
    calls = papermill_calls(
        make(repo, "-n", NOTEBOOKS[1][:2], "PROFILE=smoke", "DATASETS=xnli-de,xnli-fr")
    )
    assert executed(calls) == NOTEBOOKS[:2]
    assert all(
        "runs/smoke+xnli-de+xnli-fr/" in c and "-p DATASETS 'xnli-de,xnli-fr'" in c for c in calls
    )
    # each profile's own datasets keep its folder; another profile's are a track of this one
    own = papermill_calls(
        make(repo, "-n", NOTEBOOKS[0][:2], "PROFILE=smoke", "DATASETS=esnli,sst2")
    )
    assert own and all("runs/smoke/" in c for c in own)
    wide = "DATASETS=esnli,sst2,hatexplain"
    calls = papermill_calls(make(repo, "-n", NOTEBOOKS[0][:2], "PROFILE=smoke", wide))
    assert calls and all("runs/smoke+esnli+sst2+hatexplain/" in c for c in calls)


def test_the_xnli_track_runs_before_the_last_notebook_outside_smoke(repo):
    fake_outputs(repo, "default", NOTEBOOKS)
    calls = papermill_calls(make(repo, "-n", "all", "PROFILE=default"))
    track = [c for c in calls if "runs/default+xnli-en+xnli-de+xnli-fr/" in c]
    assert executed(track) == [n for n in NOTEBOOKS if n[:2] <= "04"]
    assert all(
        "-p N_EVAL '48'" in c and "-p EXTRA_DATASETS 'xnli-en,xnli-de,xnli-fr'" in c for c in track
    )
    assert all("-p CORE_ONLY '1'" in c for c in track)  # skips what 07 does not read
    main = [c for c in calls if c not in track]
    assert not any("CORE_ONLY" in c for c in main)
    assert executed(calls)[-1] == NOTEBOOKS[-1] and calls.index(track[-1]) < len(calls) - 1
    fake_outputs(repo, "smoke", NOTEBOOKS)
    smoke = papermill_calls(make(repo, "-n", "all", "PROFILE=smoke"))
    assert not any("xnli" in c for c in smoke)  # under smoke, 07 reports the track as not run
    small = papermill_calls(make(repo, "-n", "xnli", "PROFILE=smoke"))
    assert small and not any("N_EVAL" in c for c in small)  # the smoke profile's own sizes


def test_notebooks_come_from_the_folder_and_figures_runs_the_last(tmp_path):
    names = [*dict.fromkeys([*NOTEBOOKS, "07_analysis.ipynb"]), "10_extra.ipynb"]
    repo = make_repo(tmp_path / "repo", notebooks=names)
    fake_outputs(repo, "smoke", names)
    assert executed(papermill_calls(make(repo, "-n", "figures", "PROFILE=smoke"))) == [names[-1]]
    assert executed(papermill_calls(make(repo, "-n", "07", "PROFILE=smoke"))) == [
        "07_analysis.ipynb"
    ]
    assert executed(papermill_calls(make(repo, "-n", "all", "PROFILE=smoke"))) == names


# --------------------------------------------------------------------------- data, lab


def test_data_runs_the_download_module(repo):
    out = make(repo, "-n", "data", "ONLY=sst2 xnli")
    assert "-m xalign_utils.data.download --dest data/raw --only sst2 xnli" in out


def test_lab_is_headless_and_allows_root_only_as_root(repo):
    out = make(repo, "-n", "lab", "LAB_PORT=9999")
    (command,) = [line for line in out.splitlines() if "bin/jupyter lab" in line]
    assert "--no-browser" in command and "--ip=127.0.0.1" in command
    assert "--port=9999" in command
    assert ("--allow-root" in command) == (os.geteuid() == 0)
    assert "http://127.0.0.1:9999/lab" in out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_make_lab_serves_jupyterlab(repo, tmp_path):
    pytest.importorskip("jupyterlab")
    port, token = _free_port(), "xalign-test-token"
    proc = subprocess.Popen(
        [
            MAKE,
            "--no-print-directory",
            "-o",
            ".venv/.installed",
            "lab",
            f"LAB_PORT={port}",
            f"LAB_TOKEN={token}",
        ],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: make, jupyter and the server
        env={**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")},
    )
    url = f"http://127.0.0.1:{port}/lab?token={token}"
    status = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    status = response.status
                    break
            except OSError:
                time.sleep(0.5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            output, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
    assert status == 200, output
    assert f"http://127.0.0.1:{port}/lab?token={token}" in output


def test_the_makefile_knows_the_profiles_datasets():
    """RUN_DIR leaves out DATASETS equal to the profile's, as RunConfig.run_name does."""
    from xalign_utils.config import PROFILES

    line = re.search(
        r"^PROFILE_DATASETS := \$\(if \$\(filter smoke,\$\(PROFILE\)\),(\S+),(\S+)\)$",
        (ROOT / "Makefile").read_text(),
        re.M,
    )
    smoke, other = (g.replace("$(comma)", ",") for g in line.groups())
    for name, profile in PROFILES.items():
        assert ",".join(profile.datasets) == (smoke if name == "smoke" else other), name
