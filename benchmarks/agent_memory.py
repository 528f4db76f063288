"""Resident memory of an idle agent (no session), before and after, in the same run.

Each round starts ``convocate-agent serve`` on the Docker runtime three ways, one after
the other: the base revision with its packages (:mod:`benchmarks.before_tree`), this
revision, and this revision with ``MALLOC_ARENA_MAX=2`` (glibc's arena cap, a common
remedy for threaded Python services). Each is read from ``/proc/PID/status`` once it
serves and has settled, then stopped. ``python -m benchmarks agent_memory`` runs it alone;
the summary takes its rows (``summary.EXTRA``).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from benchmarks.agent_session import environ
from benchmarks.before_tree import before_tree
from benchmarks.report import QUICK, Figures, Row, host_line, median, write_markdown
from tests.support.agent_proc import AgentProcess
from tests.support.images import ensure_offline_image

__all__ = ["figures", "run"]

ROUNDS = 2 if QUICK.on else 4
SETTLE = 2.0          # seconds after "agent serving" for start-up work to finish
HOST = "127.0.0.23"   # clear of the other suites' agents
TARGET_MIB = 80e6 / 2**20   # the 80 MB
FIELDS = ("VmRSS", "RssAnon", "RssFile")
BEFORE, NOW, ARENAS = "before", "now", "now, MALLOC_ARENA_MAX=2"


def _status_mib(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in FIELDS:
            out[key] = int(value.split()[0]) / 1024
    return out


def _idle_agent(root: Path, image: str, env: dict[str, str]) -> dict[str, float]:
    agent = AgentProcess(root, host=HOST, image=image, name="mem")
    with environ(env):
        agent.start()
    try:
        time.sleep(SETTLE)   # nothing to wait on: the agent is idle, its start-up garbage settles
        assert agent.proc is not None
        return _status_mib(agent.proc.pid)
    finally:
        agent.close()


def _measure_sync() -> tuple[dict[str, dict[str, list[float]]], str]:
    image = ensure_offline_image()
    samples: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="cvm-") as d:
        root = Path(d)
        base_path, note = before_tree(root / "base")
        variants = {BEFORE: {"PYTHONPATH": base_path, "PYTHONSAFEPATH": "1"}, NOW: {},
                    ARENAS: {"MALLOC_ARENA_MAX": "2"}}
        for i in range(ROUNDS):
            for j, (label, env) in enumerate(variants.items()):
                status = _idle_agent(root / f"a{i}{j}", image, env)
                for key, mib in status.items():
                    samples.setdefault(label, {}).setdefault(key, []).append(mib)
    return samples, note


async def figures() -> Figures:
    """The idle agent's resident memory against the 80 MB target, before and after."""
    samples, note = await asyncio.to_thread(_measure_sync)
    med = {label: {k: median(v) for k, v in fields.items()} for label, fields in samples.items()}
    now, before, arenas = med[NOW], med[BEFORE], med[ARENAS]

    def within(_ratio: float, value: float = now["VmRSS"]) -> bool:
        return value <= TARGET_MIB

    why = (f"of which RssAnon {now['RssAnon']:.1f} MiB (Python objects and heaps) and RssFile "
           f"{now['RssFile']:.1f} MiB (mapped libraries: gRPC, cryptography, libpython); before "
           f"{before['VmRSS']:.1f} MiB ({note}); MALLOC_ARENA_MAX=2: {arenas['VmRSS']:.1f} MiB")
    row = Row("agent resident memory, idle (no session)", "the base revision's agent", now["VmRSS"],
              before["VmRSS"], "MiB", "≤ 80 MB (76.3 MiB)", within, why)
    cells = [[label, *(f"{m[k]:.1f}" for k in FIELDS)] for label, m in med.items()]
    table = ["| agent | " + " | ".join(f"{k} MiB" for k in FIELDS) + " |", "|---|---|---|---|",
             *("| " + " | ".join(c) + " |" for c in cells)]
    notes = ["## Idle agent memory (agent_memory.py)", "",
             f"Medians of {ROUNDS} interleaved rounds; {note}.", "", *table, ""]
    return Figures([row], notes)


def run() -> None:
    """``python -m benchmarks agent_memory``: write results/agent_memory.md."""
    result = asyncio.run(figures())
    write_markdown("agent_memory", ["# Idle agent memory, before and after", "", host_line(), "",
                                    "| " + " | ".join(result.rows[0].cells()) + " |", "", *result.notes])
