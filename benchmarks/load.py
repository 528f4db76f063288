"""Load: many sessions over several agents, each with a viewer receiving 1 KiB at 100 Hz.

Real agents on 127.0.0.2, 127.0.0.3, ... (the offline session image), real session
containers, and one observing viewer per session attached through the SSH tunnel on the
console's own wire (:class:`common.client.attach_channel_call.AttachChannelCall`, the attach
channel). Each session's shell runs a writer typed into its tmux with ``docker exec ... tmux
send-keys``: from a common start second it prints a 1 KiB line (``#aNNNNNN ``: its window's
tag and the line's number, then filler) every 10 ms (``read -t 0.01`` between lines, no
process per line) for the load window, then ``END-a-<lines>-END`` (what it offered).

Measured: viewer disconnects (a stream the agent ended before the benchmark detached),
delivery (distinct line markers a viewer saw / lines its writer emitted; also bytes), the
agents' resident memory at start, with the sessions idle, under load and after, the CPU
of every program on the machine over the window (what limits it), and a py-spy profile
of one agent under load.

The baseline, in the window after, on the same sessions with the writers typed anew: each
session watched by the agent's own Docker call made from this process (a TTY exec of ``tmux
attach`` read-only, read as fast as it comes), with no agent, SSH or gRPC on the way. What
the machine delivers that way is what the ">= 90 % delivered" target can be held to here;
the ratio between the two windows is what convocate's path costs. Then one agent is filled
up to the whole session count for the issue's "agent with 200 sessions" memory figure.
Writes results/load.md.

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

from agent.docker_runtime import DockerRuntime, DockerTerminal
from agent.viewers import OBSERVE_FLAGS, TMUX_SESSION
from benchmarks import profile
from benchmarks.clients import DETACH_KEYS
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


@dataclass(frozen=True)
class _Size:
    """How much load: agents, sessions per agent, seconds of writing."""

    agents: int
    per_agent: int
    seconds: int

    @property
    def total(self) -> int:
        return self.agents * self.per_agent

    @property
    def what(self) -> str:
        return (f"{self.total} sessions over {self.agents} agents, a viewer each, {LINE} B at {HZ} Hz for "
                f"{self.seconds} s")


def _size() -> _Size:
    """The size measured: CONVOCATE_BENCH_LOAD ("4x50x60"), else the issue's (smaller with --quick)."""
    given = os.environ.get("CONVOCATE_BENCH_LOAD", "")
    if given:
        parts = given.lower().split("x")
        if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise SystemExit(f"CONVOCATE_BENCH_LOAD={given!r}: expected AGENTSxSESSIONSxSECONDS, "
                             "e.g. 4x50x60")
        return _Size(int(parts[0]), int(parts[1]), int(parts[2]))
    return _Size(2, 5, 10) if QUICK.on else _Size(4, 50, 60)


# Also measured, after the size, in a full run: smaller loads, where this machine kind's
# two cores keep up (10 sessions) and just do not (20), to tell the machine's limit from the
# design's.
SMALLER = (_Size(2, 5, 30), _Size(2, 10, 30))
LINE = 1024            # bytes per write, newline included
HZ = 100
CREATE_PARALLEL = 3    # creates in flight per agent
EXEC_PARALLEL = 8      # docker exec (send-keys) in flight
PROFILE_SECONDS = 10.0
ATTACH_DEADLINE = 180.0   # seconds for every raw viewer of a window to attach
CORES = os.cpu_count() or 1
# A window's lines and end marker carry its tag (a letter): a viewer attaching shows the screen
# as it is, which may still hold the window before's last lines and end marker.
_MARK = {tag: re.compile(rb"#" + tag.encode() + rb"(\d{6}) ") for tag in "ab"}
_END = {tag: re.compile(rb"END-" + tag.encode() + rb"-(\d+)-END") for tag in "ab"}
_TAIL = 16


def _writer(start_epoch: int, seconds: int, tag: str) -> str:
    """The shell line typed into a session: wait for the start second, write, report."""
    pad = LINE - len(f"#{tag}000000 ") - 1
    return (f"L=$(printf '%0{pad}d' 0); sleep $(({start_epoch}-$(date +%s))) 2>/dev/null; "
            f"sleep {seconds} & s=$!; n=0; while kill -0 $s 2>/dev/null; do n=$((n+1)); "
            f"printf '#{tag}%06d %s\\n' $n \"$L\"; read -t 0.01 x; done; echo $n >/tmp/load-offered; "
            f"echo END-{tag}-$n-END")


@dataclass(eq=False)
class _Viewer:
    """One observing viewer of one session and what it received."""

    agent: int
    session: Session
    tag: str = "a"               # its window's (_MARK, _END)
    call: AttachHandle | None = None
    opened: bool = False         # its stream started (through the agent, or the raw exec)
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
        self.seen.update(int(m.group(1)) for m in _MARK[self.tag].finditer(text))
        end = _END[self.tag].search(text)
        if end:
            self.offered = int(end.group(1))
            self.done.set()
        self._tail = text[-_TAIL:]


@dataclass
class _Window:
    """One load window: its viewers, what they saw and what the machine did meanwhile."""

    viewers: list[_Viewer] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)            # command -> % of one core
    machine: dict[str, float] = field(default_factory=dict)       # busy, irq, steal, idle: % of a core
    cgroups: dict[str, float] = field(default_factory=dict)        # cgroup -> % of one core
    load_during: str = ""

    @property
    def attached(self) -> list[_Viewer]:
        return [v for v in self.viewers if v.opened and not v.attach_error]

    def counts(self) -> tuple[int, int, int]:
        """Lines offered (the writers' own count), distinct lines seen, bytes received."""
        attached = self.attached
        return (sum(v.offered or 0 for v in attached), sum(len(v.seen) for v in attached),
                sum(v.received for v in attached))


@dataclass
class _Run:
    """Everything measured in one run."""

    size: _Size
    window: _Window = field(default_factory=_Window)   # viewers through the agents (the figure)
    raw: _Window = field(default_factory=_Window)      # the baseline: Docker execs of this process
    rss: dict[str, list[float]] = field(default_factory=dict)      # phase -> per agent MiB
    timings: dict[str, float] = field(default_factory=dict)        # phase -> seconds
    load_before: str = ""
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
            v.attach_error, v.opened = "", True
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


async def _load_window(r: _Run, w: _Window, agents: list[AgentProcess], root: Path, label: str,
                       client: str, *, profile_agent: bool) -> None:
    """Start the writers of ``w``'s sessions, measure the window, wait for every writer's end marker."""
    start = int(time.time()) + 3 + int(r.size.total * 0.06)
    cmd = _writer(start, r.size.seconds, w.viewers[0].tag)
    t0 = time.monotonic()

    async def type_writer(v: _Viewer) -> str:
        return await _docker("exec", "-u", "claude", v.container, "tmux", "send-keys", "-t", "claude", "-l",
                             cmd, ";", "send-keys", "-t", "claude", "Enter")

    sent = await _bounded(EXEC_PARALLEL, type_writer, w.viewers)
    r.timings[f"{label}: typing the writers (docker exec send-keys)"] = time.monotonic() - t0
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
        if profile_agent and not QUICK.on and profile.available():
            await asyncio.sleep(r.size.seconds / 4)
            assert agents[0].proc is not None
            r.profile_lines = await profile.sample({"agent 1 under load": agents[0].proc.pid},
                                                   asyncio.sleep(PROFILE_SECONDS), root / "prof",
                                                   f"agent 1 of {r.size.agents} with {r.size.per_agent} "
                                                   "loaded viewers")
        await asyncio.sleep(max(0.0, t_start + r.size.seconds - time.monotonic()))
        w.load_during = load_average()
        after, ticks1, cg1 = snapshot(), machine_ticks(), cgroup_cpu_ns()
        window = time.monotonic() - t_start
        w.cgroups = {k: (cg1[k] - cg0[k]) / 1e9 / window * 100 for k in cg0 if k in cg1}
        names = {a.proc.pid: f"agent ({r.size.agents} processes)" for a in agents if a.proc is not None}
        names[os.getpid()] = client
        by_command = cpu_by_command(before, after, window, names)
        w.machine = machine_shares(ticks0, ticks1, window)
        w.cpu = dict(by_command.most_common(14))
        w.cpu["(not in any process seen at both ends: interrupts, kernel, processes that ended)"] = (
            w.machine["busy"] - sum(by_command.values()))
        waits = [v.done.wait() for v in w.attached]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*waits), 30)
        r.timings[f"{label}: end markers after the window"] = time.monotonic() - t_start - r.size.seconds
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    r.rss[f"{label}: under load (peak)"] = peak
    await _bounded(EXEC_PARALLEL, _offered_from_file, w.viewers)


async def _open_raw(v: _Viewer, runtime: DockerRuntime) -> tuple[DockerTerminal, asyncio.Task[None]] | None:
    """The baseline viewer: the agent's own Docker call for an observer (a TTY exec of ``tmux
    attach`` read-only, sized 24x80), made from this process, read as fast as it comes."""
    try:
        term = await runtime.exec_terminal(
            v.session.id, ["tmux", "attach-session", "-t", TMUX_SESSION, *OBSERVE_FLAGS.split()], "claude",
            {"TERM": "xterm-256color", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "HOME": "/home/claude"})
        await term.resize(24, 80)
    except Exception as e:  # reported per viewer
        v.attach_error = f"{type(e).__name__}: {e}"[:120]
        return None
    v.opened = True

    async def read() -> None:
        try:
            while (chunk := await term.read()) is not None:
                v.feed(chunk)
            if not v.detaching:
                v.ended = "stream ended"
        finally:
            v.done.set()

    return term, asyncio.create_task(read())


async def _raw_window(r: _Run, agents: list[AgentProcess], root: Path) -> None:
    """The same sessions and writers, each watched by a raw Docker exec of this process instead."""
    r.raw.viewers = [_Viewer(v.agent, v.session, tag="b") for v in r.window.viewers]
    async with DockerRuntime() as runtime:
        t0 = time.monotonic()
        opened = await asyncio.wait_for(asyncio.gather(*(_open_raw(v, runtime) for v in r.raw.viewers)),
                                        ATTACH_DEADLINE)
        r.timings[f"baseline: attaching {r.size.total} raw Docker exec viewers"] = time.monotonic() - t0
        try:
            await _load_window(r, r.raw, agents, root, "baseline",
                               f"benchmark ({r.size.total} raw Docker exec viewers)", profile_agent=False)
        finally:
            for v in r.raw.viewers:
                v.detaching = True

            async def detach(pair: tuple[DockerTerminal, asyncio.Task[None]]) -> None:
                term, reader = pair
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(term.write(DETACH_KEYS), 5)
                await asyncio.sleep(0.2)   # the tmux client detaches; its stream then ends
                await term.close()
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)

            await _bounded(EXEC_PARALLEL * 4, detach, [o for o in opened if o is not None])


async def _measure(r: _Run, root: Path, agents: list[AgentProcess],
                   stack: contextlib.AsyncExitStack, *, whole: bool) -> None:
    """The two windows; ``whole``: also a profile of one agent and one agent filled up."""
    t0 = time.monotonic()
    await asyncio.gather(*(a.astart(60) for a in agents))
    r.timings["starting the agents"] = time.monotonic() - t0
    r.rss["serving, no sessions"] = _rss(agents)
    tunnels = [await stack.enter_async_context(Tunnel(a.tunnel_settings())) for a in agents]
    await asyncio.gather(*(t.wait_up(30) for t in tunnels))
    calls = [AgentCalls(a.agent_id, _channel_of(t), call_timeout=120)
             for a, t in zip(agents, tunnels, strict=True)]
    t0 = time.monotonic()
    made = await asyncio.gather(*(_create(c, [f"load-{i}-{j}" for j in range(r.size.per_agent)])
                                  for i, c in enumerate(calls)))
    r.timings[f"creating {r.size.total} sessions ({CREATE_PARALLEL} per agent at a time)"] = (
        time.monotonic() - t0)
    r.window.viewers = [_Viewer(i, s) for i, sessions in enumerate(made) for s in sessions]
    r.rss[f"{r.size.per_agent} sessions each, idle"] = _rss(agents)
    t0 = time.monotonic()
    tasks = list(await asyncio.gather(*(_attach(v, tunnels[v.agent]) for v in r.window.viewers)))
    r.timings[f"attaching {r.size.total} viewers"] = time.monotonic() - t0
    r.rss[f"{r.size.per_agent} viewers each, idle"] = _rss(agents)
    try:
        await _load_window(r, r.window, agents, root, "convocate",
                           f"benchmark client ({r.size.total} viewers, 1 process)", profile_agent=whole)
        r.rss["after the load, viewers attached"] = _rss(agents)
    finally:
        for v, t in zip(r.window.viewers, tasks, strict=True):
            v.detaching = True
            if t is not None:
                t.cancel()
            if v.call is not None:
                v.call.cancel()
        await asyncio.gather(*(t for t in tasks if t is not None), return_exceptions=True)
    await asyncio.sleep(1.0)   # the agents end their execs; nothing to wait on from here
    r.rss["viewers detached"] = _rss(agents)
    await _raw_window(r, agents, root)
    if not whole:
        return
    # One agent holding every session: stop the others first (their sessions go too).
    await asyncio.gather(*(asyncio.to_thread(a.close) for a in agents[1:]))
    t0 = time.monotonic()
    await _create(calls[0], [f"fill-{j}" for j in range(r.size.total - r.size.per_agent)])
    r.timings[f"filling agent 1 up to {r.size.total} sessions"] = time.monotonic() - t0
    r.full_agent = (r.size.total, _rss(agents[:1])[0])


def _pct(part: float, whole: float) -> float:
    return part / whole * 100 if whole else float("nan")


def _baseline(r: _Run) -> str:
    """The raw Docker exec window, in words."""
    raw_offered, raw_seen, raw_received = r.raw.counts()
    nominal = r.size.total * r.size.seconds * HZ
    return (f"the same sessions and writers, each watched by a raw Docker exec of `tmux attach` from one "
            f"process (no agent, SSH or gRPC), the window after: {_pct(raw_seen, raw_offered):.1f} % of "
            f"{raw_offered} lines offered ({_pct(raw_offered, nominal):.0f} % of nominal), bytes "
            f"{_pct(raw_received, raw_offered * LINE):.0f} %, the cores "
            f"{r.raw.machine.get('busy', 0.0) / CORES:.0f} % busy")


def _report(r: _Run, started: float, *, whole: bool) -> Figures:
    """The summary rows, and results/load.md (``whole``) or results/load_AxSxT.md."""
    n, w, raw = r.size, r.window, r.raw
    attached = w.attached
    cut = [v for v in attached if v.ended]
    offered, seen, received = w.counts()
    raw_offered, raw_seen, raw_received = raw.counts()
    nominal = n.total * n.seconds * HZ
    disconnect_pct = _pct(len(cut) + n.total - len(attached), n.total)
    delivered_pct = _pct(seen, offered)
    raw_pct = _pct(raw_seen, raw_offered)
    limit = (f"CPU: the machine's {CORES} cores were {w.machine['busy'] / CORES:.0f} % busy over the window "
             f"(load average {w.load_during})")
    agent_label = f"agent ({n.agents} processes)"
    what = n.what
    delivered = Row(
        f"load: offered output delivered ({what})", "(target)", delivered_pct, 90.0, "%", "≥ 90 %",
        lambda x: x >= 1.0, (f"lines (distinct markers); bytes: {_pct(received, offered * LINE):.0f} %. "
        f"The writers themselves offered {_pct(offered, nominal):.0f} % of the nominal {nominal} "
        f"lines. {limit}; the agents used {w.cpu.get(agent_label, 0.0):.0f} % of one core in all. "
        f"Baseline: {_baseline(r)}"), higher_is_better=True)
    if not whole:
        rows = [delivered]
    else:
        idle = max(r.rss[f"{n.per_agent} sessions each, idle"])
        peak = max(r.rss["convocate: under load (peak)"])
        rows = [
            Row(f"load: viewer disconnects ({what})", "(target)", disconnect_pct, 1.0, "%", "< 1 %",
                lambda x: x < 1.0, f"{len(cut)} cut, {n.total - len(attached)} never attached"),
            delivered,
            Row(f"load: offered output delivered, through the agents ({n.total} sessions)",
                "raw Docker exec viewers of the same sessions (no agent, SSH or gRPC)", delivered_pct,
                raw_pct, "%", "(no target; what the ≥ 90 % row's miss owes to convocate)", lambda x: x >= 0.9,
                f"{_baseline(r)}; through the agents {delivered_pct:.1f} % of {offered} lines offered",
                higher_is_better=True),
            Row(f"load: agent resident memory under load (peak of {n.agents})",
                f"same agent, {n.per_agent} sessions idle", peak, idle, "MiB", "bounded (≤ 150 MiB)",
                lambda _x: peak <= 150, "see load.md for every phase"),
            Row(f"resident memory: one agent with {r.full_agent[0]} idle sessions", "(target)",
                r.full_agent[1], 150.0, "MiB", "≤ 150 MiB", lambda x: x <= 1.0),
        ]

    def machine(m: dict[str, float]) -> str:
        return (f"busy {m.get('busy', 0.0):.0f}, of which interrupts {m.get('irq', 0.0):.0f}, steal "
                f"{m.get('steal', 0.0):.0f}; idle {m.get('idle', 0.0):.0f}")

    raw_cut = [v for v in raw.attached if v.ended]
    lines = [f"# Load: {what}", "", host_line(),
             (f"Load average before the run: {r.load_before}; at the end of the window: {w.load_during} "
              f"(the baseline's window: {raw.load_during})."),
             f"Run took {time.monotonic() - started:.0f} s.", "",
             ("Two windows on the same sessions, one after the other, the same writers typed anew: first "
              "each session watched through its agent (the attach channel over the SSH tunnel, as the "
              "console watches), then, as the baseline, each watched by the agent's own Docker call made "
              "from this process (a TTY exec of `tmux attach` read-only, 24x80, read as fast as it comes: "
              "no agent, SSH or gRPC on the way)."), "",
             "| figure | through the agents | baseline: raw Docker exec viewers |", "|---|---|---|",
             f"| viewers attached | {len(attached)} of {n.total} | {len(raw.attached)} of {n.total} |",
             f"| viewers cut before the end | {len(cut)} | {len(raw_cut)} |",
             (f"| lines offered (writers' own count; nominal {nominal}) | {offered} "
              f"({_pct(offered, nominal):.1f} %) | {raw_offered} ({_pct(raw_offered, nominal):.1f} %) |"),
             (f"| lines delivered (distinct markers seen, of offered) | {seen} ({delivered_pct:.1f} %) | "
              f"{raw_seen} ({raw_pct:.1f} %) |"),
             (f"| bytes received by the viewers (of offered bytes; tmux redraws, so bytes are not lines) | "
              f"{received / 1e6:.1f} MB ({_pct(received, offered * LINE):.1f} %) | "
              f"{raw_received / 1e6:.1f} MB ({_pct(raw_received, raw_offered * LINE):.1f} %) |"),
             (f"| viewer throughput, all viewers | {received / 1e6 / r.size.seconds:.2f} MB/s | "
              f"{raw_received / 1e6 / r.size.seconds:.2f} MB/s |"),
             (f"| the machine over the window (% of one core, {CORES} cores) | {machine(w.machine)} | "
              f"{machine(raw.machine)} |"), "",
             "## Agents' resident memory (MiB, one column per agent)", "",
             "| phase | " + " | ".join(f"agent {i + 1}" for i in range(r.size.agents)) + " |",
             "|---|" + "---|" * r.size.agents]
    lines += [f"| {phase} | " + " | ".join(f"{m:.1f}" for m in mib) + " |" for phase, mib in r.rss.items()]
    if whole:
        lines += ["", (f"One agent filled up to {r.full_agent[0]} sessions (the others stopped): "
                       f"{r.full_agent[1]:.1f} MiB.")]
    lines += [""]
    for title, win in (("through the agents", w), ("baseline, raw Docker exec viewers", raw)):
        lines += [f"## Where the time goes: CPU per program over the window, {title}", "",
                  "| program (comm) | % of one core |", "|---|---|"]
        lines += [f"| {comm} | {pct:.1f} |" for comm, pct in win.cpu.items()]
        lines += ["", "By cgroup (these include processes that ended inside the window): " + "; ".join(
            f"{name} {pct:.0f} % of one core" for name, pct in win.cgroups.items()) + ". All containers "
            "are the sessions' (writers, tmux, the viewers' `tmux attach` execs) plus any other containers "
            "on this shared machine.", ""]
    lines += ["## Phase timings", "", "| phase | seconds |", "|---|---|"]
    lines += [f"| {k} | {s:.1f} |" for k, s in r.timings.items()]
    reasons = sorted({v.ended for v in cut} | {v.attach_error for v in w.viewers if v.attach_error})
    raw_reasons = sorted({v.ended for v in raw_cut} | {v.attach_error for v in raw.viewers if v.attach_error})
    if reasons or raw_reasons:
        lines += ["", "## Why viewers ended early or never attached", "", *(f"- {x}" for x in reasons[:10]),
                  *(f"- baseline: {x}" for x in raw_reasons[:10])]
    lines += ["", *r.profile_lines]
    custom = os.environ.get("CONVOCATE_BENCH_LOAD", "") or not whole
    write_markdown(f"load_{n.agents}x{n.per_agent}x{n.seconds}" if custom else "load", lines)
    top = "; ".join(f"{comm} {pct:.0f} %" for comm, pct in list(w.cpu.items())[:6])
    if not whole:
        return Figures(rows, [(f"A smaller load ({what}): {limit}; delivered through the "
                               f"agents {delivered_pct:.1f} % of the lines offered; {_baseline(r)} "
                               f"(results/load_{n.agents}x{n.per_agent}x{n.seconds}.md)."), ""])
    notes = [f"## Load ({n.total} sessions with a viewer each)", "",
             (f"{what}: {limit}. CPU per program over the window (% of one core): {top}. The agents had "
              f"{_pct(w.cpu.get(agent_label, 0.0), w.machine.get('busy', 0.0)):.0f} % of the busy CPU. "
              f"Delivered through the agents {delivered_pct:.1f} % of the lines offered; baseline: "
              f"{_baseline(r)}. "
              "Details, memory per phase and a profile of one agent in load.md."), ""]
    return Figures(rows, notes)


async def _one(size: _Size, *, whole: bool) -> _Run:
    image = ensure_offline_image()
    r = _Run(size, load_before=load_average())
    with tempfile.TemporaryDirectory(prefix="cvl-") as d:
        root = Path(d)
        agents = [AgentProcess(root / f"a{i}", host=f"127.0.0.{i + 2}", image=image, name=f"load{i}")
                  for i in range(size.agents)]
        try:
            async with contextlib.AsyncExitStack() as stack:
                await _measure(r, root, agents, stack, whole=whole)
        finally:
            await asyncio.gather(*(asyncio.to_thread(a.close) for a in agents), return_exceptions=True)
    return r


async def figures() -> Figures:
    """Run the load and return its summary rows (also writes results/load.md).

    A full run (no ``--quick``, no ``CONVOCATE_BENCH_LOAD``) then measures :data:`SMALLER` too.
    """
    started = time.monotonic()
    out = _report(await _one(_size(), whole=True), started, whole=True)
    if QUICK.on or os.environ.get("CONVOCATE_BENCH_LOAD"):
        return out
    for size in SMALLER:
        started = time.monotonic()
        smaller = _report(await _one(size, whole=False), started, whole=False)
        out = Figures(out.rows + smaller.rows, out.notes + smaller.notes)
    return out


def run() -> None:
    """Run the load suite alone."""
    asyncio.run(figures())
