"""Start-up of ``convocate-host`` against ``python3 -c pass``, before and after, same run.

Each command runs as a fresh process, interleaved with the others, after warm-up runs:
``python -c pass`` (the floor), ``convocate-host --help`` and ``convocate-host agents
--json`` on an empty registry (start-up and the command's imports, no network). The
"before" rows run the base revision's code (``CONVOCATE_BENCH_BASE``, default: main
before issue 13's changes) through PYTHONPATH.
"""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.agent_session import PROTO
from benchmarks.keystroke_ab import base_revision, export_tree
from benchmarks.report import QUICK

__all__ = ["measure"]

RUNS = 5 if QUICK.on else 15
WARMUP = 2


def _time(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) milliseconds of one run of ``argv``."""
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                   timeout=60)
    wall = (time.perf_counter() - t0) * 1000
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime) * 1000


def _measure_sync() -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory(prefix="cvs-") as d:
        root = Path(d)
        registry = root / "registry"
        registry.mkdir()
        base = root / "base"
        base.mkdir()
        export_tree(base_revision(), base, "hostctl")
        host = [sys.executable, "-m", "hostctl"]
        # PYTHONSAFEPATH: `python -m` would otherwise put the working directory first.
        now = {**os.environ, "CONVOCATE_LOG_LEVEL": "WARNING", "PYTHONSAFEPATH": "1"}
        before = {**now, "PYTHONPATH": os.pathsep.join([str(base), str(PROTO)])}
        cases: dict[str, tuple[list[str], dict[str, str]]] = {
            "python -c pass (baseline)": ([sys.executable, "-c", "pass"], now),
            "convocate-host --help": ([*host, "--help"], now),
            "convocate-host --help, before": ([*host, "--help"], before),
            "convocate-host agents --json": ([*host, "agents", "--json", "--registry", str(registry)], now),
            "convocate-host agents --json, before": (
                [*host, "agents", "--json", "--registry", str(registry)], before),
        }
        out: dict[str, list[float]] = {}
        for i in range(WARMUP + RUNS):
            for name, (argv, env) in cases.items():
                wall, cpu = _time(argv, env)
                if i >= WARMUP:
                    out.setdefault(name, []).append(wall)
                    out.setdefault(f"{name} (CPU)", []).append(cpu)
    return out


async def measure() -> dict[str, list[float]]:
    """Wall-clock and CPU (key + " (CPU)") milliseconds per case, in a thread."""
    return await asyncio.to_thread(_measure_sync)
