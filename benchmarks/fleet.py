"""Fleet scale: List across 1, 10 and 50 real agents, an agent seen again after a restart, memory.

The processes are :mod:`benchmarks.fleet_stack`'s: real agents (real Docker runtime) on
127.0.0.2, ... with :data:`~benchmarks.fleet_stack.SESSIONS` session records each, one
status service process, and the real console on a pty. At each fleet size, in one run:

* **List, warm**: :meth:`shell.fleet.router.Router.refresh` (the console's fan-out over
  standing tunnels) in a child process (:mod:`benchmarks.refresh_child`), wall and CPU,
  warm-up excluded, with the agents' and dockerd's CPU per refresh (they share the cores
  here); the baseline is the same on one agent, alternating; the base revision's console
  code (``CONVOCATE_BENCH_BASE``, default :data:`BASE`) runs the same, in alternating rounds;
* **List, whole command**: ``convocate-host sessions --json`` as a fresh process, wall and
  CPU, alternating: one AskAgents call to the status service, which asks every agent over
  its standing tunnel (the default on a shell host: the command finds the service through
  its config file), with ``--direct`` (one new SSH
  connection per agent), and the base revision's (always direct); each against the same on
  the first agent alone (through a second status service probing the one-agent registry);
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
from typing import Any

from benchmarks.before_tree import compile_bytecode
from benchmarks.fleet_stack import SESSIONS, FleetStack, cpu_seconds, fd_count, rss_mib
from benchmarks.keystroke_ab import export_tree
from benchmarks.report import QUICK, Figures, Row, host_line, median, percentile, write_markdown
from benchmarks.scale import ShellCosts
from common.logging import configure_logging
from shell.fleet.router import Router, RouterConfig

__all__ = ["FleetResult", "Stage", "figures", "measure", "run"]

STAGES = (1, 5) if QUICK.on else (1, 10, 50)
REFRESH_ROUNDS = 2 if QUICK.on else 4   # child processes per revision, alternating with the base's
REFRESH_RUNS, REFRESH_WARMUP = (3, 1) if QUICK.on else (6, 2)   # per child
CLI_RUNS, CLI_WARMUP = (3, 1) if QUICK.on else (6, 1)
# main before the console's refresh stopped re-building unchanged agents (CONVOCATE_BENCH_BASE overrides).
BASE = "a1447f4"
ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"
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
    cli_cpu_ms: list[float] = field(default_factory=list)
    one_refresh_ms: list[float] = field(default_factory=list)   # agent 0 alone, alternating with the above
    one_refresh_cpu_ms: list[float] = field(default_factory=list)
    one_cli_ms: list[float] = field(default_factory=list)
    one_cli_cpu_ms: list[float] = field(default_factory=list)
    shared_cli_ms: list[float] = field(default_factory=list)       # through the status service's tunnels
    shared_cli_cpu_ms: list[float] = field(default_factory=list)
    one_shared_cli_ms: list[float] = field(default_factory=list)
    one_shared_cli_cpu_ms: list[float] = field(default_factory=list)
    shared_relay_cpu_ms: list[float] = field(default_factory=list)   # the status service's CPU per shared run
    one_shared_relay_cpu_ms: list[float] = field(default_factory=list)
    agents_cpu_ms: list[float] = field(default_factory=list)    # every agent's CPU per refresh of the fleet
    docker_cpu_ms: list[float] = field(default_factory=list)    # dockerd's (the agents' List asks it)
    base: dict[str, list[float]] = field(default_factory=dict)  # the same series, base revision
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
    base: str = ""                        # the base revision the "before" columns ran


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


def base_revision() -> str:
    """The revision "before" means here: CONVOCATE_BENCH_BASE, else :data:`BASE`."""
    return os.environ.get("CONVOCATE_BENCH_BASE") or BASE


def _pids_named(name: str) -> list[int]:
    """Processes whose command name is ``name`` (dockerd: its CPU is part of every agent's List)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _code_env(code: Path | None) -> dict[str, str]:
    """The environment of a child running ``code`` (None: this checkout)."""
    env = {**os.environ, "CONVOCATE_LOG_LEVEL": "WARNING", "PYTHONSAFEPATH": "1"}
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(code), str(PROTO)])
    return env


def _refresh_child(stack: FleetStack, stage: Stage, code: Path | None, name: str) -> dict[str, Any]:
    """One child's warm refreshes (see :mod:`benchmarks.refresh_child`) with ``code``'s console."""
    config = {"registry": str(stack.registry), "registry_one": str(stack.registry_one),
              "runtime_dir": str(stack.root / name), "status_socket": str(stack.status.socket),
              "n": stage.n, "sessions": SESSIONS, "runs": REFRESH_RUNS, "warmup": REFRESH_WARMUP,
              "agent_pids": [a.proc.pid for a in stack.agents if a.proc is not None],
              "docker_pids": _pids_named("dockerd")}
    argv = [sys.executable, str(ROOT / "benchmarks" / "refresh_child.py"), json.dumps(config)]
    done = subprocess.run(argv, env=_code_env(code), capture_output=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"refresh child ({name}) exit {done.returncode}: "
                           f"{done.stderr.decode(errors='replace')[-1500:]}")
    out: dict[str, Any] = json.loads(done.stdout)
    if out["incomplete"]:
        stage.incomplete.append(f"{name}: {out['incomplete']} refreshes did not list every session")
    return out


def _refreshes(stack: FleetStack, stage: Stage, base: Path) -> None:
    """Warm refreshes, this checkout's console and the base revision's in alternating child processes."""
    for i in range(REFRESH_ROUNDS):
        for code, into in ((None, None), (base, stage.base)):
            out = _refresh_child(stack, stage, code, f"r{stage.n}-{i}-{'base' if code else 'now'}")
            if into is None:
                stage.refresh_ms += out["wall"]
                stage.refresh_cpu_ms += out["cpu"]
                stage.one_refresh_ms += out["one_wall"]
                stage.one_refresh_cpu_ms += out["one_cpu"]
                stage.agents_cpu_ms += out["agents_cpu"]
                stage.docker_cpu_ms += out["docker_cpu"]
            else:
                for key in ("wall", "cpu", "one_wall", "one_cpu", "agents_cpu", "docker_cpu"):
                    into.setdefault(key, []).extend(out[key])


def _cli(registry: Path, n: int, stage: Stage, code: Path | None = None, *,
         shared: Path | None = None) -> tuple[float, float] | None:
    """``convocate-host sessions --json`` once: (wall ms, CPU ms); None if it did not list every session.

    ``shared``: the status service's config file, every agent to be reached through its tunnels;
    None: ``--direct`` (the base revision ``code``: as it is, it has no such option).
    """
    argv = [sys.executable, "-m", "hostctl", "sessions", "--json", "--registry", str(registry)]
    env = _code_env(code)
    if shared is not None:
        env["CONVOCATE_CONFIG"] = str(shared)
    elif code is None:
        argv.append("--direct")
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, timeout=120, check=False)
    wall = (time.perf_counter() - t0) * 1000
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime) * 1000
    try:
        answer = json.loads(done.stdout or b"{}")
        listed, via = len(answer.get("sessions", [])), list(answer.get("via", {}).values())
    except ValueError:
        listed, via = -1, []
    if done.returncode != 0 or listed != n * SESSIONS:
        stage.incomplete.append(f"sessions --json exit {done.returncode}, {listed} of {n * SESSIONS} "
                                f"sessions: {done.stderr.decode(errors='replace')[-300:]}")
        return None
    if shared is not None and via.count("status-service") != n:
        stage.incomplete.append(f"sessions --json: {n - via.count('status-service')} of {n} agents not "
                                "reached through the status service")
        return None
    return wall, cpu


def _cli_runs(stack: FleetStack, stage: Stage, base: Path) -> None:
    """The whole command over all agents, over the first alone, and the base revision's, alternating."""
    for i in range(CLI_WARMUP + CLI_RUNS):
        mine, one = _cli(stack.registry, stage.n, stage), _cli(stack.registry_one, 1, stage)
        # The status service asks every agent in a shared run (AskAgents): its CPU over each run.
        relay0, one_relay = cpu_seconds(stack.status_pid), cpu_seconds(stack.status_one_pid)
        shared = _cli(stack.registry, stage.n, stage, shared=stack.status_toml)
        relay1 = cpu_seconds(stack.status_pid)
        one_shared = _cli(stack.registry_one, 1, stage, shared=stack.status_one_toml)
        relay2 = cpu_seconds(stack.status_one_pid)
        before = _cli(stack.registry, stage.n, stage, base)
        if i < CLI_WARMUP or mine is None or one is None or before is None or shared is None \
                or one_shared is None:
            continue
        stage.shared_cli_ms.append(shared[0])
        stage.shared_cli_cpu_ms.append(shared[1])
        stage.one_shared_cli_ms.append(one_shared[0])
        stage.one_shared_cli_cpu_ms.append(one_shared[1])
        stage.shared_relay_cpu_ms.append((relay1 - relay0) * 1000)
        stage.one_shared_relay_cpu_ms.append((relay2 - one_relay) * 1000)
        stage.cli_ms.append(mine[0])
        stage.cli_cpu_ms.append(mine[1])
        stage.one_cli_ms.append(one[0])
        stage.one_cli_cpu_ms.append(one[1])
        stage.base.setdefault("cli", []).append(before[0])
        stage.base.setdefault("cli_cpu", []).append(before[1])


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


def _base_tree(into: Path) -> Path:
    """The base revision's code (agent, common, shell, hostctl), compiled as an install would be."""
    into.mkdir(parents=True)
    export_tree(base_revision(), into, "hostctl")
    compile_bytecode(into)
    return into


async def measure() -> FleetResult:
    """Run every stage (see the module docstring); every process is stopped before returning."""
    configure_logging("cli", level="ERROR")   # the restarts would log every reconnect
    t_start = time.monotonic()
    result = FleetResult([], {}, [], {}, base=base_revision())
    stack = FleetStack()
    try:
        base = await asyncio.to_thread(_base_tree, stack.root / "base")
        await stack.start_status()
        for n in STAGES:
            t0 = time.monotonic()
            await stack.grow(n)
            ids = {a.agent_id for a in stack.agents}
            await stack.wait_status(ids, READY_TIMEOUT)
            result.setup_s[n] = time.monotonic() - t0
            if stack.status_one_proc is None:
                await stack.start_status_one()
            stage = Stage(n)
            result.stages.append(stage)
            await _console_and_status(stack, stage, ids, idle=n in (STAGES[0], STAGES[-1]))
            router = await _cold_start(stack, stage)
            try:
                await asyncio.to_thread(_refreshes, stack, stage, base)
                await asyncio.to_thread(_cli_runs, stack, stage, base)
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


def _m(values: list[float]) -> float:
    return median(values) if values else float("nan")


def _detail_lines(r: FleetResult) -> list[str]:
    header = ("| agents | warm refresh p50 / p99 (ms) | the first agent alone, alternating: p50 (ms) "
              "| refresh CPU p50: console / agents / dockerd (ms) "
              "| base revision: refresh p50, console CPU (ms) "
              "| `sessions --json --direct` p50 / p99 (ms), CPU | the first agent alone: p50 (ms), CPU "
              "| `sessions --json` via the status service p50 / p99 (ms), CPU "
              "| the first agent alone: p50 (ms), CPU "
              "| base revision: `sessions --json` p50 (ms), CPU "
              "| new Router to all reachable (s, CPU ms) | real console to all reachable (s) "
              "| console RSS (MiB), fds | status service RSS (MiB), fds "
              "| idle CPU console / status (% of a core) |")
    return [header, "|" + "---|" * 16, *(
        f"| {s.n} | {percentile(s.refresh_ms, 50):.1f} / {percentile(s.refresh_ms, 99):.1f} "
        f"| {percentile(s.one_refresh_ms, 50):.1f} "
        f"| {_m(s.refresh_cpu_ms):.1f} / {_m(s.agents_cpu_ms):.1f} / {_m(s.docker_cpu_ms):.1f} "
        f"| {_m(s.base.get('wall', [])):.1f}, {_m(s.base.get('cpu', [])):.1f} "
        f"| {percentile(s.cli_ms, 50):.0f} / {percentile(s.cli_ms, 99):.0f}, {_m(s.cli_cpu_ms):.0f} "
        f"| {percentile(s.one_cli_ms, 50):.0f}, {_m(s.one_cli_cpu_ms):.0f} "
        f"| {percentile(s.shared_cli_ms, 50):.0f} / {percentile(s.shared_cli_ms, 99):.0f}, "
        f"{_m(s.shared_cli_cpu_ms):.0f} "
        f"| {percentile(s.one_shared_cli_ms, 50):.0f}, {_m(s.one_shared_cli_cpu_ms):.0f} "
        f"| {_m(s.base.get('cli', [])):.0f}, {_m(s.base.get('cli_cpu', [])):.0f} "
        f"| {s.cold_s:.2f}, {s.cold_cpu_ms:.0f} | {s.console_ready_s:.2f} "
        f"| {s.console_mib:.1f}, {s.console_fds} | {s.status_mib:.1f}, {s.status_fds} "
        f"| {s.console_idle_pct:.2f} / {s.status_idle_pct:.2f} |" for s in r.stages)]


def refresh_projection(s: Stage) -> float:
    """A warm refresh of ``s.n`` agents on their own hosts: one agent's refresh + n x console CPU
    per agent."""
    return percentile(s.one_refresh_ms, 50) + _m(s.refresh_cpu_ms)


def cli_projection(s: Stage) -> float:
    """The whole command over ``s.n`` agents on their own hosts: one agent's + (n - 1) x client CPU per
    further agent."""
    return percentile(s.one_cli_ms, 50) + max(0.0, _m(s.cli_cpu_ms) - _m(s.one_cli_cpu_ms))


def _refresh_why(s: Stage, rev: str) -> str:
    cpu, agents, docker = _m(s.refresh_cpu_ms), _m(s.agents_cpu_ms), _m(s.docker_cpu_ms)
    base_cpu = _m(s.base.get("cpu", []))
    one = percentile(s.one_refresh_ms, 50)
    proj = refresh_projection(s)
    return (f"all measured per refresh: the console's CPU {cpu:.1f} ms ({cpu / s.n:.2f} ms per agent; base "
            f"{rev}: {base_cpu:.1f} ms, {base_cpu / s.n:.2f} per agent, refresh "
            f"{_m(s.base.get('wall', [])):.0f} ms), the {s.n} agents' {agents:.0f} ms and dockerd's "
            f"{docker:.0f} ms ({(agents + docker) / s.n:.1f} ms per agent), all on the same 2 cores: "
            f"{(cpu + agents + docker) / 2:.0f} ms of wall at the least. Agents on their own hosts: one "
            f"agent's {one:.1f} ms + {s.n} x {cpu / s.n:.2f} ms of console CPU = {proj:.0f} ms "
            f"({proj / one:.2f}x)")


def _cli_why(s: Stage, rev: str) -> str:
    cpu, one_cpu = _m(s.cli_cpu_ms), _m(s.one_cli_cpu_ms)
    per = max(0.0, cpu - one_cpu) / max(1, s.n - 1)
    one = percentile(s.one_cli_ms, 50)
    proj = cli_projection(s)
    return (f"the command's CPU {cpu:.0f} ms against {one_cpu:.0f} ms for one agent: {per:.1f} ms per "
            f"further agent (a new SSH connection each: handshake, forward, Ping, List; base {rev}: "
            f"{_m(s.base.get('cli', [])):.0f} ms, CPU {_m(s.base.get('cli_cpu', [])):.0f} ms); the rest of "
            f"the wall is the agents' side of {s.n} handshakes on the same 2 cores. Agents on their own "
            f"hosts: one agent's {one:.0f} ms + {s.n - 1} x {per:.1f} ms = {proj:.0f} ms ({proj / one:.2f}x)")


def _shared_per_agent(s: Stage) -> tuple[float, float]:
    """CPU ms per further agent of a shared run: the command's, and the status service's (asking them)."""
    cpu = max(0.0, _m(s.shared_cli_cpu_ms) - _m(s.one_shared_cli_cpu_ms)) / max(1, s.n - 1)
    relay = max(0.0, _m(s.shared_relay_cpu_ms) - _m(s.one_shared_relay_cpu_ms)) / max(1, s.n - 1)
    return cpu, relay


def shared_cli_projection(s: Stage) -> float:
    """`sessions --json` through the status service over ``s.n`` agents on their own hosts: one agent's +
    (n - 1) x (the command's and the status service's CPU per further agent)."""
    cpu, relay = _shared_per_agent(s)
    return percentile(s.one_shared_cli_ms, 50) + (s.n - 1) * (cpu + relay)


def _shared_cli_why(s: Stage, rev: str) -> str:
    cpu, one_cpu = _m(s.shared_cli_cpu_ms), _m(s.one_shared_cli_cpu_ms)
    per, relay = _shared_per_agent(s)
    one, proj = percentile(s.one_shared_cli_ms, 50), shared_cli_projection(s)
    return (f"one AskAgents call to the status service, which asks every agent over its standing tunnel "
            f"(no handshake, no asyncssh loaded): the command's CPU {cpu:.0f} ms against {one_cpu:.0f} ms "
            f"for one agent, {per:.1f} ms per further agent (checking and converting its answer), and the "
            f"status service's {_m(s.shared_relay_cpu_ms):.0f} ms asking them ({relay:.1f} ms per further "
            f"agent: Ping and List each); agents "
            f"on their own hosts: {one:.0f} + {s.n - 1} x {per + relay:.1f} ms = {proj:.0f} ms "
            f"({proj / one:.2f}x); the same with --direct (a new "
            f"SSH connection each): {percentile(s.cli_ms, 50):.0f} ms, CPU {_m(s.cli_cpu_ms):.0f} ms; base "
            f"{rev}: {_m(s.base.get('cli', [])):.0f} ms, CPU {_m(s.base.get('cli_cpu', [])):.0f} ms; the"
            f" rest of the wall is the {s.n} agents answering List on the same 2 cores")


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
    out += [Row(f"List, {s.n} agents x {SESSIONS} sessions: warm Router.refresh p50", ONE,
                percentile(s.refresh_ms, 50), percentile(s.one_refresh_ms, 50),
                "ms", "≤ 2.0x (50 agents)", lambda x: x <= 2.0, _refresh_why(s, r.base))
            for s in r.stages[1:]]
    out.append(Row(f"List, {big.n} agents: warm Router.refresh p99", ONE,
                   percentile(big.refresh_ms, 99), percentile(big.one_refresh_ms, 99), "ms",
                   "≤ 2.0x (50 agents)", lambda x: x <= 2.0, "p99 of a few runs on a shared machine"))
    out.append(Row(f"List, {big.n} agents: warm refresh, agents on their own hosts (projected from this "
                   "run's figures)", "the same on one agent (measured)", refresh_projection(big),
                   percentile(big.one_refresh_ms, 50), "ms", "≤ 2.0x (50 agents)", lambda x: x <= 2.0,
                   "one agent's refresh + the console's CPU per refresh of all; the agents' own CPU runs on "
                   "their own hosts in parallel"))
    out.append(Row(f"List, {big.n} agents: the console's CPU per warm refresh", f"the base revision {r.base}",
                   _m(big.refresh_cpu_ms), _m(big.base.get("cpu", [])), "ms", "(no target)", lambda _x: True,
                   "alternating child processes over the same agents"))
    out += [Row(f"List, {s.n} agents: `convocate-host sessions --json` via the status service p50 (whole "
                "command)", "the same on one agent (via a status service), alternating in the same minute",
                percentile(s.shared_cli_ms, 50), percentile(s.one_shared_cli_ms, 50), "ms",
                "≤ 2.0x (50 agents)", lambda x: x <= 2.0, _shared_cli_why(s, r.base)) for s in r.stages[1:]]
    out.append(Row(f"List, {big.n} agents: `convocate-host sessions --json` via the status service, agents "
                   "on their own hosts (projected from this run's figures)",
                   "the same on one agent (via a status service, measured)", shared_cli_projection(big),
                   percentile(big.one_shared_cli_ms, 50), "ms", "≤ 2.0x (50 agents)", lambda x: x <= 2.0,
                   "one agent's whole command + the CPU of the command and of the status service for each "
                   "further agent"))
    out += [Row(f"List, {s.n} agents: `convocate-host sessions --json --direct` p50 (whole command)",
                ONE, percentile(s.cli_ms, 50), percentile(s.one_cli_ms, 50), "ms",
                "≤ 2.0x (50 agents)", lambda x: x <= 2.0, _cli_why(s, r.base)) for s in r.stages[1:]]
    out.append(Row(f"List, {big.n} agents: `convocate-host sessions --json --direct`, agents on their own "
                   "hosts "
                   "(projected from this run's figures)", "the same on one agent (measured)",
                   cli_projection(big), percentile(big.one_cli_ms, 50), "ms", "≤ 2.0x (50 agents)",
                   lambda x: x <= 2.0, "one agent's whole command + the client CPU of each further agent"))
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
        *(f"- `sessions --json` via the status service at {s.n} agents: the status service's CPU asking "
          f"them, one run {_m(s.shared_relay_cpu_ms):.0f} ms (one agent, the second service: "
          f"{_m(s.one_shared_relay_cpu_ms):.0f} ms); the command's {_m(s.shared_cli_cpu_ms):.0f} ms."
          for s in r.stages),
        "",
    ]


async def figures() -> Figures:
    """Measure, write results/fleet.md, and return the summary's rows, notes and the scale inputs."""
    r = await measure()
    notes, table = _notes(r), rows(r)
    header = "| figure | baseline | measured | baseline value | ratio | target | met or missed, and why |"
    lines = ["| " + " | ".join(t.cells()) + " |" for t in table]
    write_markdown("fleet", ["# Fleet scale", "", host_line(), "", *notes, header,
                             "|---|---|---|---|---|---|---|", *lines])
    return Figures(rows=table, notes=notes, inputs=dataclasses.asdict(shell_costs(r)))


def run() -> None:
    """``python -m benchmarks fleet``: this suite alone (writes results/fleet.md)."""
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    asyncio.run(figures())
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    print(f"driver CPU: {cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime:.1f} s")
