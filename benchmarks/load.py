"""Load: many sessions over several agents, each with a viewer receiving 1 KiB at 100 Hz.

Real agents on 127.0.0.2, 127.0.0.3, ... (the offline session image), real session
containers, and one observing viewer per session attached through the SSH tunnel on the
console's own wire (:class:`common.client.attach_channel_call.AttachChannelCall`, the attach
channel). Each session's shell runs a writer typed
into its tmux with ``docker exec ... tmux send-keys``: from a common start second it
prints a 1 KiB line (``#NNNNNN `` and filler) every 10 ms (``read -t 0.01`` between lines,
no process per line) for the load window, then ``END-<lines>-END`` (what it offered).

Measured: viewer disconnects (a stream the agent ended before the benchmark detached),
delivery (distinct line markers a viewer saw / lines its writer emitted; also bytes), the
agents' resident memory at start, with the sessions idle, under load and after, the CPU
of every program on the machine over the window (what limits it), and a py-spy profile
of one agent under load. Then one agent is filled up to the whole session count for the
issue's "agent with 200 sessions" memory figure. Writes results/load.md.

``CONVOCATE_BENCH_LOAD=AGENTSxSESSIONSxSECONDS`` (e.g. ``2x25x30``) runs another size, to find
how much load the machine keeps up with (written to results/load_2x25x30.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc

from benchmarks import profile
from benchmarks.proc_usage import (
    cgroup_cpu_ns,
    cpu_by_command,
    machine_shares,
    machine_ticks,
    rss_mib,
    snapshot,
)
from benchmarks.report import QUICK, Figures, Row, host_line, load_average, write_markdown
from common.client.attach_call import AttachHandle
from common.client.attach_channel_call import AttachChannelCall
from common.client.calls import AgentCalls
from common.domain import AttachEnded, AttachMode, AttachStarted, Session
from common.tunnel import Tunnel
from tests.support.agent_proc import AgentProcess
from tests.support.images import ensure_offline_image

__all__ = ["figures", "run"]

T = TypeVar("T")
X = TypeVar("X")

def _size() -> tuple[int, int, int]:
    """Agents, sessions per agent, seconds: CONVOCATE_BENCH_LOAD ("4x50x60"), else by --quick."""
    given = os.environ.get("CONVOCATE_BENCH_LOAD", "")
    if given:
        parts = given.lower().split("x")
        if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise SystemExit(f"CONVOCATE_BENCH_LOAD={given!r}: expected AGENTSxSESSIONSxSECONDS, "
                             "e.g. 4x50x60")
        return int(parts[0]), int(parts[1]), int(parts[2])
    return (2, 5, 10) if QUICK.on else (4, 50, 60)


AGENTS, PER_AGENT, SECONDS = _size()
TOTAL = AGENTS * PER_AGENT
LINE = 1024            # bytes per write, newline included
HZ = 100
CREATE_PARALLEL = 3    # creates in flight per agent
EXEC_PARALLEL = 8      # docker exec (send-keys) in flight
PROFILE_SECONDS = 10.0
CORES = os.cpu_count() or 1
_MARK = re.compile(rb"#(\d{6}) ")
_END = re.compile(rb"END-(\d+)-END")
_TAIL = 16


def _writer(start_epoch: int, seconds: int) -> str:
    """The shell line typed into a session: wait for the start second, write, report."""
    pad = LINE - len("#000000 ") - 1
    return (f"L=$(printf '%0{pad}d' 0); sleep $(({start_epoch}-$(date +%s))) 2>/dev/null; "
            f"sleep {seconds} & s=$!; n=0; while kill -0 $s 2>/dev/null; do n=$((n+1)); "
            f"printf '#%06d %s\\n' $n \"$L\"; read -t 0.01 x; done; echo $n >/tmp/load-offered; "
            "echo END-$n-END")


@dataclass(eq=False)
class _Viewer:
    """One observing viewer of one session and what it received."""

    agent: int
    session: Session
    call: AttachHandle | None = None
    received: int = 0
    seen: set[int] = field(default_factory=set)
    offered: int | None = None
    ended: str = ""              # why the stream ended before the benchmark detached it
    attach_error: str = ""
    detaching: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)   # end marker seen or stream ended
    _tail: bytes = b""

    @property
    def container(self) -> str:
        return f"convocate-session-{self.session.id}"

    def feed(self, data: bytes) -> None:
        self.received += len(data)
        text = self._tail + data
        self.seen.update(int(m.group(1)) for m in _MARK.finditer(text))
        end = _END.search(text)
        if end:
            self.offered = int(end.group(1))
            self.done.set()
        self._tail = text[-_TAIL:]


@dataclass
class _Run:
    """Everything measured in one run."""

    viewers: list[_Viewer] = field(default_factory=list)
    rss: dict[str, list[float]] = field(default_factory=dict)      # phase -> per agent MiB
    timings: dict[str, float] = field(default_factory=dict)        # phase -> seconds
    cpu: dict[str, float] = field(default_factory=dict)            # command -> % of one core
    machine: dict[str, float] = field(default_factory=dict)       # busy, irq, steal, idle: % of a core
    load_before: str = ""
    cgroups: dict[str, float] = field(default_factory=dict)        # cgroup -> % of one core
    load_during: str = ""
    profile_lines: list[str] = field(default_factory=list)
    full_agent: tuple[int, float] = (0, float("nan"))               # sessions, MiB


async def _bounded(limit: int, job: Callable[[X], Awaitable[T]], items: Sequence[X],
                   ) -> list[T | BaseException]:
    """``job`` of every item, at most ``limit`` at a time; exceptions are returned, not raised."""
    sem = asyncio.Semaphore(limit)

    async def one(item: X) -> T:
        async with sem:
            return await job(item)

    return await asyncio.gather(*(one(i) for i in items), return_exceptions=True)


async def _docker(*args: str, timeout: float = 60) -> str:
    proc = await asyncio.create_subprocess_exec("docker", *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode:
        raise RuntimeError(f"docker {args[0]} failed: {err.decode(errors='replace').strip()}")
    return out.decode()


async def _create(calls: AgentCalls, names: list[str]) -> list[Session]:
    async def create(name: str) -> Session:
        return await calls.create(name, 0, "tcp", "", start=True)

    made = await _bounded(CREATE_PARALLEL, create, names)
    errors = [m for m in made if isinstance(m, BaseException)]
    if errors:
        raise RuntimeError(f"{len(errors)} of {len(names)} creates failed, first: {errors[0]!r}")
    return [m for m in made if isinstance(m, Session)]


async def _watch(v: _Viewer) -> None:
    assert v.call is not None
    try:
        await _frames(v, v.call)
    finally:
        v.done.set()


async def _frames(v: _Viewer, call: AttachHandle) -> None:
    try:
        async for frame in call.frames():
            if isinstance(frame, bytes):
                v.feed(frame)
            elif isinstance(frame, AttachEnded):
                v.ended = f"{frame.reason}: {frame.message}"[:120]
                return
        v.ended = "stream ended"
    except asyncio.CancelledError:
        raise
    except Exception as e:  # any failure of the stream is a disconnect to count
        if not v.detaching:
            v.ended = f"{type(e).__name__}: {e}"[:120]


async def _attach(v: _Viewer, tunnel: Tunnel, attempts: int = 5) -> asyncio.Task[None] | None:
    """Open an observing viewer; retry a session whose tmux is not up yet (bounded)."""
    for _ in range(attempts):
        v.call = AttachChannelCall(tunnel, v.session.agent_id, "load")
        try:
            await v.call.start(v.session.id, rows=24, cols=80, term="", mode=AttachMode.OBSERVE)
            frame = await asyncio.wait_for(v.call.read(), 20)
        except Exception as e:  # reported per viewer
            v.attach_error = f"{type(e).__name__}: {e}"[:120]
            v.call.cancel()
            continue
        if isinstance(frame, AttachStarted):
            v.attach_error = ""
            return asyncio.create_task(_watch(v))
        v.attach_error = f"first frame {frame!r}"[:120]
        v.call.cancel()
        await asyncio.sleep(0.5)   # the session's tmux starts just after its container
    return None


def _channel_of(tunnel: Tunnel) -> Callable[[], grpc.aio.Channel]:
    return lambda: tunnel.channel


def _rss(agents: list[AgentProcess]) -> list[float]:
    return [rss_mib(a.proc.pid) if a.proc is not None else float("nan") for a in agents]


async def _offered_from_file(v: _Viewer) -> None:
    if v.offered is None:
        with contextlib.suppress(Exception):
            out = await _docker("exec", v.container, "cat", "/tmp/load-offered", timeout=30)
            v.offered = int(out.strip())


async def _load_window(r: _Run, agents: list[AgentProcess], tasks: list[asyncio.Task[None] | None],
                       root: Path) -> None:
    """Start the writers, measure the window, wait for every writer's end marker."""
    start = int(time.time()) + 3 + int(TOTAL * 0.06)
    cmd = _writer(start, SECONDS)
    t0 = time.monotonic()
    async def type_writer(v: _Viewer) -> str:
        return await _docker("exec", "-u", "claude", v.container, "tmux", "send-keys", "-t", "claude", "-l",
                             cmd, ";", "send-keys", "-t", "claude", "Enter")

    sent = await _bounded(EXEC_PARALLEL, type_writer, r.viewers)
    r.timings["typing the writers (docker exec send-keys)"] = time.monotonic() - t0
    failed = [s for s in sent if isinstance(s, BaseException)]
    if failed:
        print(f"load: {len(failed)} writers not started, first: {failed[0]!r}")
    await asyncio.sleep(max(0.0, start - time.time()))   # the writers' own start second
    before, ticks0, cg0, t_start = snapshot(), machine_ticks(), cgroup_cpu_ns(), time.monotonic()
    peak = list(_rss(agents))

    async def sample_rss() -> None:
        while True:
            await asyncio.sleep(1.0)
            peak[:] = [max(p, m) for p, m in zip(peak, _rss(agents), strict=True)]

    sampler = asyncio.create_task(sample_rss())
    try:
        if not QUICK.on and profile.available():
            await asyncio.sleep(SECONDS / 4)
            assert agents[0].proc is not None
            r.profile_lines = await profile.sample({"agent 1 under load": agents[0].proc.pid},
                                                   asyncio.sleep(PROFILE_SECONDS), root / "prof",
                                                   f"agent 1 of {AGENTS} with {PER_AGENT} loaded viewers")
        await asyncio.sleep(max(0.0, t_start + SECONDS - time.monotonic()))
        r.load_during = load_average()
        after, ticks1, cg1 = snapshot(), machine_ticks(), cgroup_cpu_ns()
        window = time.monotonic() - t_start
        r.cgroups = {k: (cg1[k] - cg0[k]) / 1e9 / window * 100 for k in cg0 if k in cg1}
        names = {a.proc.pid: f"agent ({AGENTS} processes)" for a in agents if a.proc is not None}
        names[os.getpid()] = f"benchmark client ({TOTAL} viewers, 1 process)"
        by_command = cpu_by_command(before, after, window, names)
        r.machine = machine_shares(ticks0, ticks1, window)
        r.cpu = dict(by_command.most_common(14))
        r.cpu["(not in any process seen at both ends: interrupts, kernel, processes that ended)"] = (
            r.machine["busy"] - sum(by_command.values()))
        waits = [v.done.wait() for v, t in zip(r.viewers, tasks, strict=True) if t is not None]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*waits), 30)
        r.timings["end markers after the window"] = time.monotonic() - t_start - SECONDS
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    r.rss["under load (peak)"] = peak
    await _bounded(EXEC_PARALLEL, _offered_from_file, r.viewers)


async def _measure(r: _Run, root: Path, agents: list[AgentProcess],
                   stack: contextlib.AsyncExitStack) -> None:
    t0 = time.monotonic()
    await asyncio.gather(*(a.astart(60) for a in agents))
    r.timings["starting the agents"] = time.monotonic() - t0
    r.rss["serving, no sessions"] = _rss(agents)
    tunnels = [await stack.enter_async_context(Tunnel(a.tunnel_settings())) for a in agents]
    await asyncio.gather(*(t.wait_up(30) for t in tunnels))
    calls = [AgentCalls(a.agent_id, _channel_of(t), call_timeout=120)
             for a, t in zip(agents, tunnels, strict=True)]
    t0 = time.monotonic()
    made = await asyncio.gather(*(_create(c, [f"load-{i}-{j}" for j in range(PER_AGENT)])
                                  for i, c in enumerate(calls)))
    r.timings[f"creating {TOTAL} sessions ({CREATE_PARALLEL} per agent at a time)"] = time.monotonic() - t0
    r.viewers = [_Viewer(i, s) for i, sessions in enumerate(made) for s in sessions]
    r.rss[f"{PER_AGENT} sessions each, idle"] = _rss(agents)
    t0 = time.monotonic()
    tasks = list(await asyncio.gather(*(_attach(v, tunnels[v.agent]) for v in r.viewers)))
    r.timings[f"attaching {TOTAL} viewers"] = time.monotonic() - t0
    r.rss[f"{PER_AGENT} viewers each, idle"] = _rss(agents)
    try:
        await _load_window(r, agents, tasks, root)
        r.rss["after the load, viewers attached"] = _rss(agents)
    finally:
        for v, t in zip(r.viewers, tasks, strict=True):
            v.detaching = True
            if t is not None:
                t.cancel()
            if v.call is not None:
                v.call.cancel()
        await asyncio.gather(*(t for t in tasks if t is not None), return_exceptions=True)
    await asyncio.sleep(1.0)   # the agents end their execs; nothing to wait on from here
    r.rss["viewers detached"] = _rss(agents)
    # One agent holding every session: stop the others first (their sessions go too).
    await asyncio.gather(*(asyncio.to_thread(a.close) for a in agents[1:]))
    t0 = time.monotonic()
    await _create(calls[0], [f"fill-{j}" for j in range(TOTAL - PER_AGENT)])
    r.timings[f"filling agent 1 up to {TOTAL} sessions"] = time.monotonic() - t0
    r.full_agent = (TOTAL, _rss(agents[:1])[0])


def _pct(part: float, whole: float) -> float:
    return part / whole * 100 if whole else float("nan")


def _report(r: _Run, started: float) -> Figures:
    attached = [v for v in r.viewers if v.call is not None and not v.attach_error]
    cut = [v for v in attached if v.ended]
    offered = sum(v.offered or 0 for v in attached)
    seen = sum(len(v.seen) for v in attached)
    received = sum(v.received for v in attached)
    nominal = TOTAL * SECONDS * HZ
    disconnect_pct = _pct(len(cut) + TOTAL - len(attached), TOTAL)
    delivered_pct = _pct(seen, offered)
    idle = max(r.rss[f"{PER_AGENT} sessions each, idle"])
    peak = max(r.rss["under load (peak)"])
    limit = (f"CPU: the machine's {CORES} cores were {r.machine['busy'] / CORES:.0f} % busy over the window "
             f"(load average {r.load_during})")
    agent_label = f"agent ({AGENTS} processes)"
    what = f"{TOTAL} sessions over {AGENTS} agents, a viewer each, {LINE} B at {HZ} Hz for {SECONDS} s"
    rows = [
        Row(f"load: viewer disconnects ({what})", "(target)", disconnect_pct, 1.0, "%", "< 1 %",
            lambda x: x < 1.0, f"{len(cut)} cut, {TOTAL - len(attached)} never attached"),
        Row(f"load: offered output delivered ({what})", "(target)", delivered_pct, 90.0, "%", "≥ 90 %",
            lambda x: x >= 1.0, (f"lines (distinct markers); bytes: {_pct(received, offered * LINE):.0f} %. "
            f"The writers themselves offered only {_pct(offered, nominal):.0f} % of the nominal {nominal} "
            f"lines. {limit}; the agents used {r.cpu.get(agent_label, 0.0):.0f} % of one core in all"),
            higher_is_better=True),
        Row(f"load: agent resident memory under load (peak of {AGENTS})",
            f"same agent, {PER_AGENT} sessions idle", peak, idle, "MiB", "bounded (≤ 150 MiB)",
            lambda _x: peak <= 150, "see load.md for every phase"),
        Row(f"resident memory: one agent with {r.full_agent[0]} idle sessions", "(target)",
            r.full_agent[1], 150.0, "MiB", "≤ 150 MiB", lambda x: x <= 1.0),
    ]
    lines = [f"# Load: {what}", "", host_line(),
             f"Load average before the run: {r.load_before}; at the end of the window: {r.load_during}.",
             f"Run took {time.monotonic() - started:.0f} s.", "",
             "| figure | value |", "|---|---|",
             f"| viewers attached | {len(attached)} of {TOTAL} |",
             f"| viewers cut before the end | {len(cut)} |",
             (f"| lines offered (writers' own count) | {offered} ({_pct(offered, nominal):.1f} % of "
              f"nominal {nominal}) |"),
             f"| lines delivered (distinct markers seen) | {seen} ({delivered_pct:.1f} % of offered) |",
             (f"| bytes received by the viewers | {received / 1e6:.1f} MB "
              f"({_pct(received, offered * LINE):.1f} % of offered bytes; tmux redraws, so bytes are not "
              "lines) |"),
             f"| viewer throughput, all viewers | {received / 1e6 / SECONDS:.2f} MB/s |",
             (f"| the machine over the window (% of one core, {CORES} cores) | busy {r.machine['busy']:.0f}, "
              f"of which interrupts {r.machine['irq']:.0f}, steal {r.machine['steal']:.0f}; idle "
              f"{r.machine['idle']:.0f} |"), "",
             "## Agents' resident memory (MiB, one column per agent)", "",
             "| phase | " + " | ".join(f"agent {i + 1}" for i in range(AGENTS)) + " |",
             "|---|" + "---|" * AGENTS]
    lines += [f"| {phase} | " + " | ".join(f"{m:.1f}" for m in mib) + " |" for phase, mib in r.rss.items()]
    lines += ["", (f"One agent filled up to {r.full_agent[0]} sessions (the others stopped): "
                   f"{r.full_agent[1]:.1f} MiB."), "",
              "## Where the time goes: CPU per program over the window", "",
              "| program (comm) | % of one core |", "|---|---|"]
    lines += [f"| {comm} | {pct:.1f} |" for comm, pct in r.cpu.items()]
    lines += ["", "By cgroup (these include processes that ended inside the window): " + "; ".join(
        f"{name} {pct:.0f} % of one core" for name, pct in r.cgroups.items()) + ". All containers "
        "are the sessions' (writers, tmux, the viewers' `tmux attach` execs) plus any other containers "
        "on this shared machine."]
    lines += ["", "## Phase timings", "", "| phase | seconds |", "|---|---|"]
    lines += [f"| {k} | {s:.1f} |" for k, s in r.timings.items()]
    reasons = sorted({v.ended for v in cut} | {v.attach_error for v in r.viewers if v.attach_error})
    if reasons:
        lines += ["", "## Why viewers ended early or never attached", "", *(f"- {x}" for x in reasons[:10])]
    lines += ["", *r.profile_lines]
    size = os.environ.get("CONVOCATE_BENCH_LOAD", "")
    write_markdown(f"load_{size.lower()}" if size else "load", lines)
    top = "; ".join(f"{comm} {pct:.0f} %" for comm, pct in list(r.cpu.items())[:6])
    notes = ["## Load (200 sessions with a viewer each)", "",
             (f"{what}: {limit}. CPU per program over the window (% of one core): {top}. The agents had "
              f"{_pct(r.cpu.get(agent_label, 0.0), r.machine.get('busy', 0.0)):.0f} % of the busy CPU; "
              "details, memory per phase and a profile of one agent in load.md."), ""]
    return Figures(rows, notes)


async def figures() -> Figures:
    """Run the load and return its summary rows (also writes results/load.md)."""
    started = time.monotonic()
    image = ensure_offline_image()
    r = _Run(load_before=load_average())
    with tempfile.TemporaryDirectory(prefix="cvl-") as d:
        root = Path(d)
        agents = [AgentProcess(root / f"a{i}", host=f"127.0.0.{i + 2}", image=image, name=f"load{i}")
                  for i in range(AGENTS)]
        try:
            async with contextlib.AsyncExitStack() as stack:
                await _measure(r, root, agents, stack)
        finally:
            await asyncio.gather(*(asyncio.to_thread(a.close) for a in agents), return_exceptions=True)
    return _report(r, started)


def run() -> None:
    """Run the load suite alone."""
    asyncio.run(figures())
