"""What machine a timing came from: CPU model, threads, measured fp32 matmul throughput.

Timings in this compendium (``make bench``, the README's budgets, CI's test durations)
differ by 2-4x between 2-core machines of the same nominal size; a timing is only
comparable beside the throughput of the machine that produced it. pytest prints
:func:`summary` at the end of every run for that reason.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import torch


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name (``/proc/cpuinfo``), else :func:`platform.processor`."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    """Measured fp32 ``n × n`` matmul throughput in GFLOP/s (best of ``repeats``)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def summary(repeats: int = 5) -> dict[str, object]:
    """CPU model, CPUs visible, torch's intra-op threads and :func:`matmul_gflops`."""
    return {
        "cpu": cpu_model(),
        "cpus": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "matmul_gflops": round(matmul_gflops(repeats=repeats), 1),
    }
