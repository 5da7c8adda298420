"""The machine facts pytest prints beside its durations."""

from __future__ import annotations

from xalign_utils import machine


def test_cpu_model_reads_the_model_name_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9B14\n")
    assert machine.cpu_model(info) == "AMD EPYC 9B14"
    assert machine.cpu_model(tmp_path / "missing")  # falls back, never raises


def test_summary_measures_a_positive_throughput():
    facts = machine.summary(repeats=1)
    assert facts["cpus"] >= 1 and facts["torch_threads"] >= 1
    assert 0 < facts["matmul_gflops"] < 1e6
