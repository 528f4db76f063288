"""The agent's own CPU per ListSessions and GetSession with 20 sessions, before and after.

Two real agents (Docker runtime) run side by side: this tree's on 127.0.0.41 and the base
revision's (:mod:`benchmarks.before_tree`) on 127.0.0.42, each with :data:`SESSIONS`
sessions of which :data:`RUNNING` run. Once their records have settled (older than the
record cache's window, as on any agent between operator actions), rounds alternate
between the two: sequential ListSessions, GetSession (a running and a stopped session in
turn), ListSessions from :data:`CONCURRENT` callers at once, and Ping (the floor: the SSH
channel and gRPC alone). Each figure is the agent's user + system CPU over the batch
divided by the calls (dockerd's too: every List and Get asks it); py-spy then profiles a
batch of Lists on each side. ``python -m benchmarks agent_list`` runs it alone
(results/agent_list.md); the summary takes its rows (``summary.EXTRA``).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.record_cache import SETTLED_NS
from benchmarks import profile
from benchmarks.agent_session import environ
from benchmarks.before_tree import before_tree
from benchmarks.fleet import _pids_named
from benchmarks.fleet_stack import cpu_seconds
from benchmarks.report import QUICK, Figures, Row, host_line, median, write_markdown
from common.client.calls import AgentCalls
from common.tunnel import Tunnel
from tests.support.agent_proc import AgentProcess
from tests.support.images import ensure_offline_image

__all__ = ["figures", "run"]

SESSIONS = 20
RUNNING = 5
CALLS = 60 if QUICK.on else 300
ROUNDS = 2 if QUICK.on else 6
CONCURRENT = 8
NOW, BEFORE = "now", "before"
KINDS = ("List", "Get", f"List, {CONCURRENT} callers at once", "Ping")
# Where a List's CPU goes: the share of samples inside each (py-spy sees Python threads only:
# gRPC core's own threads are not in it).
FRAMES = (
    ("ListSessions", "the servicer's ListSessions, all of it"),
    ("SessionStore.list", "reading the records (store.list_kept on the loop, or store.list)"),
    ("list_running", "asking Docker which containers run (aiodocker, aiohttp)"),
    ("SessionsService._session", "building the reply (domain session, protobuf)"),
    ("concurrent/futures", "worker-thread hand-offs and waits"),
    ("asyncssh", "the SSH channel (asyncssh)"),
    ("ssh_data_path", "the SSH data path (common.ssh_data_path)"),
    ("EpollSelector.select", "the event loop's epoll wait"),
)


@dataclass
class Side:
    """One agent, the stub to it and its sessions."""

    agent: AgentProcess
    calls: AgentCalls
    running: list[str]
    stopped: list[str]


@dataclass
class Samples:
    """Per kind: the agent's and dockerd's CPU per call (ms), one value per batch, and wall per call."""

    agent_ms: dict[str, list[float]] = field(default_factory=dict)
    docker_ms: dict[str, list[float]] = field(default_factory=dict)
    wall_ms: dict[str, list[float]] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def _side(root: Path, host: str, image: str, env: dict[str, str]) -> AsyncIterator[Side]:
    agent = AgentProcess(root, host=host, image=image, name=root.name)
    with environ(env):
        await agent.astart(60)
    try:
        async with Tunnel(agent.tunnel_settings()) as tunnel:
            await tunnel.wait_up(30)
            calls = AgentCalls(agent.agent_id, lambda: tunnel.channel, call_timeout=120)
            made = [await calls.create(f"s{i:02d}", 0, "tcp", "", start=i < RUNNING) for i in range(SESSIONS)]
            yield Side(agent, calls, [s.id for s in made[:RUNNING]], [s.id for s in made[RUNNING:]])
    finally:
        await asyncio.to_thread(agent.remove_containers)
        await asyncio.to_thread(agent.close)


def _calls(side: Side, kind: str) -> tuple[int, Callable[[int], Awaitable[Any]]]:
    """How many callers at once, and one call of ``kind`` (its index picks the session)."""
    calls = side.calls
    if kind == "Get":
        def get(i: int) -> Awaitable[Any]:
            sid = side.running[i % len(side.running)] if i % 2 else side.stopped[i % len(side.stopped)]
            return calls.get(sid)
        return 1, get
    if kind == "Ping":
        return 1, lambda _i: calls.ping()
    return CONCURRENT if kind != "List" else 1, lambda _i: calls.list_sessions()


async def _batch(side: Side, kind: str, docker_pids: list[int], out: Samples) -> None:
    callers, call = _calls(side, kind)
    per_caller = CALLS // callers

    async def caller(c: int) -> None:
        for i in range(per_caller):
            await call(c * per_caller + i)

    pid = side.agent.proc.pid if side.agent.proc is not None else 0
    a0, d0, t0 = cpu_seconds(pid), sum(map(cpu_seconds, docker_pids)), time.perf_counter()
    await asyncio.gather(*(caller(c) for c in range(callers)))
    n = per_caller * callers
    out.agent_ms.setdefault(kind, []).append((cpu_seconds(pid) - a0) / n * 1e3)
    out.docker_ms.setdefault(kind, []).append((sum(map(cpu_seconds, docker_pids)) - d0) / n * 1e3)
    out.wall_ms.setdefault(kind, []).append((time.perf_counter() - t0) / n * 1e3)


async def _measure() -> tuple[dict[str, Samples], list[str], str]:
    image = await asyncio.to_thread(ensure_offline_image)
    with tempfile.TemporaryDirectory(prefix="cval-") as d:
        root = Path(d)
        base_path, note = await asyncio.to_thread(before_tree, root / "base")
        before_env = {"PYTHONPATH": base_path, "PYTHONSAFEPATH": "1"}
        async with _side(root / "now", "127.0.0.41", image, {}) as now, \
                _side(root / "before", "127.0.0.42", image, before_env) as before:
            sides = {NOW: now, BEFORE: before}
            for s in sides.values():   # warm both (imports, connections) before anything counts
                for kind in KINDS:
                    _, call = _calls(s, kind)
                    for i in range(10):
                        await call(i)
            await asyncio.sleep(SETTLED_NS / 1e9)   # the records settle, as between operator actions
            docker_pids = _pids_named("dockerd")
            samples = {label: Samples() for label in sides}
            for r in range(ROUNDS):
                order = list(sides.items()) if r % 2 == 0 else list(reversed(sides.items()))
                for kind in KINDS:
                    for label, side in order:
                        await _batch(side, kind, docker_pids, samples[label])

            async def lists() -> None:
                for side in (before, now):
                    _, call = _calls(side, "List")
                    for i in range(CALLS):
                        await call(i)

            spied: dict[str, int | None] = {f"{label} agent": s.agent.proc.pid
                                            for label, s in sides.items() if s.agent.proc}
            what = f"{CALLS} sequential Lists on each agent, one after the other"
            prof = await profile.sample(spied, lists(), root / "spy", what, FRAMES)
    return samples, prof, note


async def figures() -> Figures:
    """The agent's CPU per List and Get, before and after, with dockerd's share and a profile."""
    samples, prof, note = await _measure()
    now, before = samples[NOW], samples[BEFORE]
    floor = median(now.agent_ms["Ping"])
    rows = []
    for kind in KINDS[:3]:
        a, b = median(now.agent_ms[kind]), median(before.agent_ms[kind])
        why = (f"agent + dockerd CPU per call {a + median(now.docker_ms[kind]):.2f} ms against "
               f"{b + median(before.docker_ms[kind]):.2f} ms; wall per call "
               f"{median(now.wall_ms[kind]):.2f} ms against {median(before.wall_ms[kind]):.2f} ms; "
               f"a Ping costs the agent {floor:.2f} ms (the SSH channel and gRPC alone); {note}")
        rows.append(Row(f"agent CPU per {kind} ({SESSIONS} sessions, {RUNNING} running)",
                        "the base revision's agent, alternating in the same run", a, b, "ms",
                        "(no target; part of List across 50 agents)", lambda x: x <= 1.0, why))
    header = ["call", "agent CPU now (ms)", "before (ms)", "ratio", "dockerd CPU now / before (ms)",
              "wall per call now / before (ms)"]
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for kind in KINDS:
        a, b = median(now.agent_ms[kind]), median(before.agent_ms[kind])
        table.append(f"| {kind} | {a:.3f} | {b:.3f} | {a / b:.2f}x | {median(now.docker_ms[kind]):.3f} / "
                     f"{median(before.docker_ms[kind]):.3f} | {median(now.wall_ms[kind]):.2f} / "
                     f"{median(before.wall_ms[kind]):.2f} |")
    notes = ["## The agent's CPU per List and Get (agent_list.py)", "",
             (f"Two agents side by side, {SESSIONS} sessions each ({RUNNING} running), medians of {ROUNDS} "
              f"alternating rounds of {CALLS} calls per kind; CPU per call from /proc (user + system); "
              f"{note}."), "", *table, ""]
    return Figures(rows, notes + prof)


def run() -> None:
    """``python -m benchmarks agent_list``: write results/agent_list.md."""
    result = asyncio.run(figures())
    write_markdown("agent_list", ["# The agent's CPU per List and Get, before and after", "", host_line(), "",
                                  ("| figure | baseline | measured | baseline value | ratio | target | "
                                   "met or missed, and why |"), "|---|---|---|---|---|---|---|",
                                  *("| " + " | ".join(r.cells()) + " |" for r in result.rows), "",
                                  *result.notes])
