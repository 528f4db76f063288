"""Fleet scale: List across 1, 10 and 50 real agents, an agent seen again after a restart, memory.

The processes are :mod:`benchmarks.fleet_stack`'s: real agents (real Docker runtime) on
127.0.0.2, ... with :data:`~benchmarks.fleet_stack.SESSIONS` session records each, one
status service process, and the real console on a pty. At each fleet size, in one run:

* **List, warm**: :meth:`shell.fleet.router.Router.refresh` (the console's fan-out over
  standing tunnels) in this process, wall and CPU, warm-up excluded; the baseline is the
  same on one agent;
* **List, whole command**: ``convocate-host sessions --json`` as a fresh process (one new
  SSH connection per agent);
* **reconnect handshakes**: a new Router's start until every agent is reachable (wall, and
  CPU per agent: SSH handshake, forward, gRPC channel, first Ping);
* **memory and descriptors**: resident memory and open files of the real console once
  every agent is reachable in its log, and of the status service (which pings every
  agent itself and takes every agent's Publish stream);
* **idle CPU** of both, per agent, over a window (first and last size).

At the largest size, one agent is stopped and started again, repeatedly: from the
moment its SSH port accepts a connection to the moment this process's Router (the
console's fleet code, with its reconnect logic and defaults) reports it reachable; a
second Router sees the same restarts with the tunnels' exponential backoff alone (the
reconnect logic before the recovery window), side by side.

Writes results/fleet.md; :func:`figures` gives summary.md its rows and the measured
per-agent costs that :mod:`benchmarks.scale` turns into "scale on paper".
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.fleet_stack import SESSIONS, FleetStack, cpu_seconds, fd_count, rss_mib
from benchmarks.report import QUICK, Figures, Row, host_line, median, percentile, write_markdown
from benchmarks.scale import ShellCosts
from common.logging import configure_logging
from shell.fleet.router import Router, RouterConfig

__all__ = ["FleetResult", "Stage", "figures", "measure", "run"]

STAGES = (1, 5) if QUICK.on else (1, 10, 50)
REFRESH_RUNS, REFRESH_WARMUP = (5, 2) if QUICK.on else (20, 3)
CLI_RUNS, CLI_WARMUP = (3, 1) if QUICK.on else (6, 1)
RESTARTS = 2 if QUICK.on else 5
IDLE_WINDOW = 3.0 if QUICK.on else 10.0
RSS_SAMPLES = 8            # the console's RSS: the largest of this many samples, 0.25 s apart
READY_TIMEOUT = 180.0
NOW = "console Router"
BEFORE = "the same without fast retries after a drop (before)"
ONE = "the same on one agent, alternating in the same minute"


@dataclass
class Stage:
    """What one fleet size measured."""

    n: int
    refresh_ms: list[float] = field(default_factory=list)
    refresh_cpu_ms: list[float] = field(default_factory=list)
    cli_ms: list[float] = field(default_factory=list)
    one_refresh_ms: list[float] = field(default_factory=list)   # agent 0 alone, alternating with the above
    one_cli_ms: list[float] = field(default_factory=list)
    cold_s: float = float("nan")          # a new Router's start to every agent reachable
    cold_cpu_ms: float = float("nan")
    console_ready_s: float = float("nan")  # the real console's start to every agent reachable
    console_mib: float = float("nan")
    console_fds: int = 0
    status_mib: float = float("nan")
    status_fds: int = 0
    console_idle_pct: float = float("nan")  # % of one core, over IDLE_WINDOW
    status_idle_pct: float = float("nan")
    incomplete: list[str] = field(default_factory=list)   # runs left out: an agent did not answer


@dataclass
class FleetResult:
    """Every stage, the restart figures and how long the suite took."""

    stages: list[Stage]
    restart_ms: dict[str, list[float]]    # NOW and BEFORE: the same restarts seen by both routers
    restart_down_s: list[float]           # how long the agent was away each time
    setup_s: dict[int, float]
    seconds: float = 0.0


def _router_config(stack: FleetStack, name: str = "drv", *, one: bool = False) -> RouterConfig:
    """The console's router configuration (its defaults), with this run's paths (``one``: agent 0 only)."""
    registry = stack.registry_one if one else stack.registry
    return RouterConfig(registry_dir=registry, runtime_dir=stack.root / name,
                        status_socket=stack.status.socket, client_id=f"bench-console:{os.getpid()}")


async def _wait(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.005)


def _all_reachable(router: Router, n: int) -> bool:
    return len(router.clients) == n and all(c.reachable for c in router.clients.values())


async def _reachable_router(config: RouterConfig, n: int) -> Router:
    """A started Router with every one of its ``n`` agents reachable."""
    router = Router(config)
    await router.start()
    try:
        await _wait(lambda: _all_reachable(router, n), READY_TIMEOUT, f"{n} agents reachable")
    except BaseException:
        await router.close()
        raise
    return router


async def _cold_start(stack: FleetStack, stage: Stage) -> Router:
    cpu0, t0 = time.process_time(), time.monotonic()
    router = await _reachable_router(_router_config(stack), stage.n)
    stage.cold_s = time.monotonic() - t0
    stage.cold_cpu_ms = (time.process_time() - cpu0) * 1000
    return router


async def _refresh(router: Router, n: int, stage: Stage) -> tuple[float, float] | None:
    """One warm refresh: (wall ms, CPU ms), or None if an agent dropped out meanwhile."""
    await _wait(lambda: _all_reachable(router, n), READY_TIMEOUT, "every agent reachable")
    cpu0, t0 = time.process_time(), time.perf_counter()
    rows = await router.refresh()
    wall, cpu = (time.perf_counter() - t0) * 1000, (time.process_time() - cpu0) * 1000
    listed = sum(1 for r in rows if not r.placeholder and not r.unknown)
    if listed != n * SESSIONS:   # a loaded machine
        stage.incomplete.append(f"refresh listed {listed} of {n * SESSIONS} sessions")
        return None
    return wall, cpu


async def _refreshes(router: Router, one: Router, stage: Stage) -> None:
    """Warm refreshes of all agents and of the first alone, alternating (the baseline, same minute)."""
    for i in range(REFRESH_WARMUP + REFRESH_RUNS):
        mine, base = await _refresh(router, stage.n, stage), await _refresh(one, 1, stage)
        if i >= REFRESH_WARMUP and mine is not None and base is not None:
            stage.refresh_ms.append(mine[0])
            stage.refresh_cpu_ms.append(mine[1])
            stage.one_refresh_ms.append(base[0])


def _cli(registry: Path, n: int, stage: Stage) -> float | None:
    """``convocate-host sessions --json`` once: wall ms, or None if it did not list every session."""
    argv = [sys.executable, "-m", "hostctl", "sessions", "--json", "--registry", str(registry)]
    env = {**os.environ, "CONVOCATE_LOG_LEVEL": "WARNING", "PYTHONSAFEPATH": "1"}
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, timeout=120, check=False)
    wall = (time.perf_counter() - t0) * 1000
    try:
        listed = len(json.loads(done.stdout or b"{}").get("sessions", []))
    except ValueError:
        listed = -1
    if done.returncode != 0 or listed != n * SESSIONS:
        stage.incomplete.append(f"sessions --json exit {done.returncode}, {listed} of {n * SESSIONS} "
                                f"sessions: {done.stderr.decode(errors='replace')[-300:]}")
        return None
    return wall


def _cli_runs(stack: FleetStack, stage: Stage) -> None:
    """The whole command over all agents and over the first alone, alternating."""
    for i in range(CLI_WARMUP + CLI_RUNS):
        mine, base = _cli(stack.registry, stage.n, stage), _cli(stack.registry_one, 1, stage)
        if i >= CLI_WARMUP and mine is not None and base is not None:
            stage.cli_ms.append(mine)
            stage.one_cli_ms.append(base)


async def _console_and_status(stack: FleetStack, stage: Stage, ids: set[str], idle: bool) -> None:
    """Memory, descriptors (and idle CPU) of a real console over the fleet and of the status service."""
    console = stack.console(f"c{stage.n}")
    try:
        stage.console_ready_s = await console.wait_reachable(ids, READY_TIMEOUT)
        pid = console.proc.pid
        samples = []
        for _ in range(RSS_SAMPLES):   # its watch snapshots may still be arriving
            samples.append(rss_mib(pid))
            await asyncio.sleep(0.25)
        stage.console_mib, stage.console_fds = max(samples), fd_count(pid)
        stage.status_mib, stage.status_fds = rss_mib(stack.status_pid), fd_count(stack.status_pid)
        if idle:
            c0, s0, t0 = cpu_seconds(pid), cpu_seconds(stack.status_pid), time.monotonic()
            await asyncio.sleep(IDLE_WINDOW)
            seconds = time.monotonic() - t0
            stage.console_idle_pct = (cpu_seconds(pid) - c0) / seconds * 100
            stage.status_idle_pct = (cpu_seconds(stack.status_pid) - s0) / seconds * 100
    finally:
        console.close()
        stack.consoles.remove(console)


class _PortProbe:
    """Connects to ``host:port`` every 2 ms in a thread; records when it first accepts."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.accepted: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(host, port, timeout), daemon=True)
        self._thread.start()

    def _run(self, host: str, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                with socket.create_connection((host, port), timeout=0.5):
                    self.accepted = time.monotonic()
                    return
            except OSError:
                time.sleep(0.002)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def _without_recovery(router: Router) -> None:
    """The "before" arm: every tunnel backs off exponentially only (no fast retries after a drop)."""
    for client in router.clients.values():   # the tunnel's private backoff object: this arm only
        client.tunnel._backoff.recovery = 0.0


async def _restarts(stack: FleetStack, routers: dict[str, Router], result: FleetResult) -> None:
    """Stop and start one agent; time from its port accepting to each router's reachable."""
    agent = stack.agents[len(stack.agents) // 2]
    clients = {label: r.clients[agent.agent_id] for label, r in routers.items()}
    up_at: dict[str, float] = {}

    def listener(label: str) -> Callable[[], None]:
        def changed() -> None:
            if clients[label].reachable and label not in up_at:
                up_at[label] = time.monotonic()
        return changed

    unsubscribe = [r.subscribe(listener(label)) for label, r in routers.items()]
    try:
        for _ in range(RESTARTS):
            down_at = time.monotonic()
            await agent.astop()
            await _wait(lambda: not any(c.reachable for c in clients.values()), 30,
                        "the routers to see the agent down")
            up_at.clear()
            probe = _PortProbe(agent.host, agent.port, 60)
            try:
                await agent.astart(60)
                await _wait(lambda: len(up_at) == len(routers), 90, "the routers to see the agent again")
            finally:
                probe.close()
            if probe.accepted is None:
                raise RuntimeError("the restarted agent's port never accepted a connection")
            for label, at in up_at.items():
                result.restart_ms.setdefault(label, []).append((at - probe.accepted) * 1000)
            result.restart_down_s.append(probe.accepted - down_at)
    finally:
        for u in unsubscribe:
            u()


async def _restarts_side_by_side(stack: FleetStack, router: Router, result: FleetResult) -> None:
    before = Router(_router_config(stack, "drv-b"))
    await before.start()
    try:
        await _wait(lambda: _all_reachable(before, len(stack.agents)), READY_TIMEOUT, "the before arm")
        _without_recovery(before)
        await _restarts(stack, {NOW: router, BEFORE: before}, result)
    finally:
        await before.close()


async def measure() -> FleetResult:
    """Run every stage (see the module docstring); every process is stopped before returning."""
    configure_logging("cli", level="ERROR")   # the restarts would log every reconnect
    t_start = time.monotonic()
    result = FleetResult([], {}, [], {})
    stack = FleetStack()
    try:
        await stack.start_status()
        for n in STAGES:
            t0 = time.monotonic()
            await stack.grow(n)
            ids = {a.agent_id for a in stack.agents}
            await stack.wait_status(ids, READY_TIMEOUT)
            result.setup_s[n] = time.monotonic() - t0
            stage = Stage(n)
            result.stages.append(stage)
            await _console_and_status(stack, stage, ids, idle=n in (STAGES[0], STAGES[-1]))
            router = await _cold_start(stack, stage)
            try:
                one = await _reachable_router(_router_config(stack, "drv1", one=True), 1)
                try:
                    await _refreshes(router, one, stage)
                finally:
                    await one.close()
                await asyncio.to_thread(_cli_runs, stack, stage)
                if n == STAGES[-1]:
                    await _restarts_side_by_side(stack, router, result)
            finally:
                await router.close()
    finally:
        await asyncio.to_thread(stack.close)
    result.seconds = time.monotonic() - t_start
    return result


# --- reporting ------------------------------------------------------------------------------------
def shell_costs(r: FleetResult) -> ShellCosts:
    """The per-agent costs of the console and the status service, from this run."""
    one, big = r.stages[0], r.stages[-1]
    extra = max(1, big.n - one.n)
    return ShellCosts(
        agents=big.n,
        console_base_mib=one.console_mib, console_per_agent_mib=(big.console_mib - one.console_mib) / extra,
        status_base_mib=one.status_mib, status_per_agent_mib=(big.status_mib - one.status_mib) / extra,
        console_base_fds=one.console_fds, console_fds_per_agent=(big.console_fds - one.console_fds) / extra,
        status_base_fds=one.status_fds, status_fds_per_agent=(big.status_fds - one.status_fds) / extra,
        refresh_cpu_ms_per_agent=median(big.refresh_cpu_ms) / big.n,
        refresh_ms=median(big.refresh_ms),
        handshake_cpu_ms=big.cold_cpu_ms / big.n,
        console_idle_pct_per_agent=max(0.0, big.console_idle_pct - one.console_idle_pct) / extra,
        status_idle_pct_per_agent=max(0.0, big.status_idle_pct - one.status_idle_pct) / extra,
    )


def _detail_lines(r: FleetResult) -> list[str]:
    header = ("| agents | warm refresh p50 / p99 (ms) | the first agent alone, alternating: p50 (ms) "
              "| refresh CPU p50 (ms) | `sessions --json` p50 / p99 (ms) | the first agent alone: p50 (ms) "
              "| new Router to all reachable (s, CPU ms) | real console to all reachable (s) "
              "| console RSS (MiB), fds | status service RSS (MiB), fds "
              "| idle CPU console / status (% of a core) |")
    return [header, "|" + "---|" * 11, *(
        f"| {s.n} | {percentile(s.refresh_ms, 50):.1f} / {percentile(s.refresh_ms, 99):.1f} "
        f"| {percentile(s.one_refresh_ms, 50):.1f} | {median(s.refresh_cpu_ms):.1f} "
        f"| {percentile(s.cli_ms, 50):.0f} / {percentile(s.cli_ms, 99):.0f} "
        f"| {percentile(s.one_cli_ms, 50):.0f} "
        f"| {s.cold_s:.2f}, {s.cold_cpu_ms:.0f} | {s.console_ready_s:.2f} "
        f"| {s.console_mib:.1f}, {s.console_fds} | {s.status_mib:.1f}, {s.status_fds} "
        f"| {s.console_idle_pct:.2f} / {s.status_idle_pct:.2f} |" for s in r.stages)]


def _restart_why(r: FleetResult) -> str:
    before = r.restart_ms.get(BEFORE, [])
    shown = (f"; before (exponential backoff alone, same restarts): p50 {median(before):.0f} ms, worst "
             f"{max(before):.0f} ms") if before else ""
    return ("after an established connection drops, the tunnel retries every ≤ 0.5 s for a minute, then "
            "backs off (from 0.2 s, doubling, to 30 s); once up, the client pings at once" + shown)


def rows(r: FleetResult) -> list[Row]:
    """The summary table's rows."""
    one, big = r.stages[0], r.stages[-1]
    out: list[Row] = []
    costs = shell_costs(r)
    for s in r.stages[1:]:
        why = (f"refresh CPU {median(s.refresh_cpu_ms):.1f} ms against {median(one.refresh_cpu_ms):.1f} ms "
               f"(≈ {costs.refresh_cpu_ms_per_agent:.2f} ms per agent); the rest is {s.n} agents' servers "
               "sharing 2 cores with it")
        out.append(Row(f"List, {s.n} agents x {SESSIONS} sessions: warm Router.refresh p50", ONE,
                       percentile(s.refresh_ms, 50), percentile(s.one_refresh_ms, 50),
                       "ms", "≤ 2.0x (50 agents)", lambda x: x <= 2.0, why))
    out.append(Row(f"List, {big.n} agents: warm Router.refresh p99", ONE,
                   percentile(big.refresh_ms, 99), percentile(big.one_refresh_ms, 99), "ms",
                   "≤ 2.0x (50 agents)", lambda x: x <= 2.0, "p99 of a few runs on a shared machine"))
    for s in r.stages[1:]:
        why = (f"a new SSH connection per agent per call (≈ {s.cold_cpu_ms / s.n:.1f} ms of client CPU each, "
               f"from the new-Router figure) plus Python start-up; the console keeps its tunnels instead")
        out.append(Row(f"List, {s.n} agents: `convocate-host sessions --json` p50 (whole command)",
                       ONE, percentile(s.cli_ms, 50), percentile(s.one_cli_ms, 50), "ms",
                       "≤ 2.0x (50 agents)", lambda x: x <= 2.0, why))
    out.append(Row(f"new console Router to all {big.n} agents reachable", "the same for one agent",
                   big.cold_s * 1000, one.cold_s * 1000, "ms", "(no target)", lambda _x: True,
                   f"{costs.handshake_cpu_ms:.1f} ms of client CPU per agent (handshake, forward, "
                   "first Ping)"))
    now = r.restart_ms.get(NOW, [])
    if now:
        out.append(Row(f"agent seen again after it restarts, p50 of {len(now)} (port accepts -> "
                       "router reachable)", "(target)", median(now), 1000, "ms", "≤ 1 s",
                       lambda x: x <= 1.0, _restart_why(r)))
        out.append(Row("agent seen again after it restarts, worst", "(target)", max(now), 1000,
                       "ms", "≤ 1 s", lambda x: x <= 1.0, _restart_why(r)))
    out.append(Row(f"resident memory: status service with {big.n} agents", "(target)", big.status_mib, 100,
                   "MiB", "≤ 100 MB", lambda x: x <= 1.0,
                   f"{costs.status_per_agent_mib:.2f} MiB per agent (an AgentClient and a Publish stream "
                   "each)"))
    out.append(Row(f"resident memory: the real console with {big.n} agents", "(target)", big.console_mib, 150,
                   "MiB", "≤ 150 MB", lambda x: x <= 1.0,
                   f"{costs.console_per_agent_mib:.2f} MiB per agent (an AgentClient, its watch and cache)"))
    return out


def _notes(r: FleetResult) -> list[str]:
    restarts = "; ".join(f"{label}: " + ", ".join(f"{ms:.0f}" for ms in values)
                         for label, values in r.restart_ms.items())
    down = ", ".join(f"{s:.1f}" for s in r.restart_down_s)
    setup = ", ".join(f"{n}: {s:.0f} s" for n, s in r.setup_s.items())
    return [
        f"## Fleet scale (benchmarks/fleet.py, {r.seconds:.0f} s)", "",
        (f"Real agents (Docker runtime) on 127.0.0.2..., {SESSIONS} session records each (not started), "
         "one status service process, the real console on a pty; List and restarts through this process's "
         "Router (the console's fleet code with its defaults). See fleet.md."), "",
        *_detail_lines(r), "",
        f"- agent seen again after restart (ms, each): {restarts}; the agent was away {down} s each time.",
        *(f"- left out at {s.n} agents ({len(s.incomplete)}): {'; '.join(s.incomplete[:3])}"
          for s in r.stages if s.incomplete),
        f"- setting up each size (agents started, sessions created, status service seeing all): {setup}.",
        "",
    ]


async def figures() -> Figures:
    """Measure, write results/fleet.md, and return the summary's rows, notes and the scale inputs."""
    r = await measure()
    notes = _notes(r)
    write_markdown("fleet", ["# Fleet scale", "", host_line(), "", *notes])
    return Figures(rows=rows(r), notes=notes, inputs=dataclasses.asdict(shell_costs(r)))


def run() -> None:
    """``python -m benchmarks fleet``: this suite alone (writes results/fleet.md)."""
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    asyncio.run(figures())
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    print(f"driver CPU: {cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime:.1f} s")
