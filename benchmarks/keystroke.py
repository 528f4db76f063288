"""Keystroke echo, path by path, with a per-hop breakdown and a sampling profile.

One real agent (127.0.0.2) with one running session of the offline image; every path
attaches to the same tmux session of the same container, in interleaved rounds:

1. ``docker exec -it CTR tmux attach`` on a local pty (the baseline);
2. ``ssh -t root@127.0.0.1 docker exec -it ...`` through a real OpenSSH sshd on loopback;
3. the agent's own Docker call (aiodocker TTY exec of tmux attach) made from here;
4. the gRPC Attach stream on the agent's UNIX socket, no tunnel;
5. the same through the asyncssh tunnel (aes128-gcm, as shipped) and with chacha20;
6. the same Attach messages on the tunnel's attach channel (``common.attach_wire``: no gRPC,
   no UNIX socket, the agent's servicer in its SSH server's loop), what the console uses;
7. the console's relay (``AttachRelay`` on a pty) through the tunnel, opening its stream
   as the console does (the attach channel).

The console's chain (3, 6, 7) adds hops step by step, so the differences of their
medians are the per-hop costs; 4 and 5 show the gRPC path beside it. Timestamps are
taken here, in the harness, never in the product's code. Then py-spy samples the agent
and this process during a further run on the attach channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc

from agent.docker_runtime import DockerRuntime
from benchmarks import profile
from benchmarks.agent_session import agent_session
from benchmarks.clients import ChannelClient, DockerClient, GrpcClient, PtyClient, TermClient
from benchmarks.report import QUICK, host_line, median, percentile, write_markdown
from common.client.calls import AgentCalls
from common.domain import Session
from common.tunnel import Tunnel
from tests.support.agent_proc import AgentProcess, remove_labelled_containers
from tests.support.images import ensure_offline_image
from tests.support.sshd import Sshd, start_sshd

__all__ = ["CHAIN", "CHANNEL", "OUTPUT_BASELINE", "OUTPUT_RAW", "WARMUP", "Hop", "KeystrokeResult", "hops",
           "measure", "relay_argv", "run", "settle", "type_keys"]

KEYS = 60 if QUICK.on else 200
WARMUP = 10
ROUNDS = 1 if QUICK.on else 3
PROFILE_KEYS = 100 if QUICK.on else 400
SEQ_N = 200_000   # about 1.3 MB of output
MARK = "BENCH-DONE"
CREATES = 3 if QUICK.on else 5   # sessions created per round
# Letters that neither the prompt nor tmux's status line print.
KEYSET = b"kmnpqrtvwxz"
USER = "claude"
CHANNEL = "attach channel, tunnel aes128-gcm"     # the console's own stream, without its relay


@dataclasses.dataclass
class KeystrokeResult:
    """Samples (µs) per path label, over all rounds."""

    samples: dict[str, list[float]]
    notes: list[str]
    profile: list[str] = dataclasses.field(default_factory=list)
    output_seconds: dict[str, list[float]] = dataclasses.field(default_factory=dict)   # SEQ_N through it
    output_bytes: dict[str, list[int]] = dataclasses.field(default_factory=dict)       # what it received
    create_ms: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    agent_rss_mib: dict[str, float] = dataclasses.field(default_factory=dict)

    def p(self, label: str, q: float) -> float:
        """The q-th percentile of a path."""
        return percentile(self.samples[label], q)


async def settle(client: TermClient, quiet: float = 0.15, limit: float = 5.0) -> None:
    """Wait for the prompt, then until tmux's redraw of the screen has passed; clear ``buf``.

    The redraw repeats what earlier clients left on screen (typed keys, old marks).
    """
    await client.read_until(b"$ ", 20)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        seen = len(client.buf)
        await asyncio.sleep(quiet)     # quiet for this long: the redraw is over
        if len(client.buf) == seen:
            break
    client.buf.clear()


async def type_keys(client: TermClient, keys: int, warmup: int, *, settled: bool = False) -> list[float]:
    """Type ``warmup + keys`` keys one at a time; the echo times (µs) of the last ``keys``.

    ``settled``: the caller already waited for the prompt and the redraw (:func:`settle`).
    """
    if not settled:
        await settle(client)
    out: list[float] = []
    for i in range(keys + warmup):
        key = KEYSET[i % len(KEYSET):i % len(KEYSET) + 1]
        client.buf.clear()
        t0 = time.perf_counter_ns()
        client.write(key)
        await client.read_until(key)
        if i >= warmup:
            out.append((time.perf_counter_ns() - t0) / 1000)
        if i % 10 == 9:                      # Ctrl-U clears the line; let its redraw pass
            client.write(b"\x15")
            await asyncio.sleep(0.03)
    return out


def _exec_argv(container: str) -> list[str]:
    return ["docker", "exec", "-it", "-u", USER, "-e", "LC_ALL=C.UTF-8", container,
            "tmux", "attach", "-t", "claude"]


def _ssh_argv(sshd: Sshd, container: str) -> list[str]:
    return ["ssh", "-t", "-F", "/dev/null", "-i", str(sshd.client_key), "-p", str(sshd.port),
            "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "BatchMode=yes",
            "-o", f"UserKnownHostsFile={sshd.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            f"{sshd.user}@{sshd.host}", *_exec_argv(container)]


def relay_argv(agent: AgentProcess, local: Path, session_id: str) -> list[str]:
    """The console relay child's command line, tunnelling to ``agent`` through ``local``."""
    settings = dataclasses.asdict(agent.tunnel_settings("relay", local))
    raw = {k: str(v) if isinstance(v, Path) else v for k, v in settings.items()}
    return [sys.executable, "-m", "benchmarks.relay_child", json.dumps(raw), session_id]


@contextlib.asynccontextmanager
async def _tunnel(agent: AgentProcess, local: Path, cipher: str) -> AsyncIterator[Tunnel]:
    """A tunnel to the agent that offers only ``cipher``."""
    settings = dataclasses.replace(agent.tunnel_settings(f"t-{cipher}", local), encryption_algs=(cipher,))
    async with Tunnel(settings) as t:
        await t.wait_up(15)
        yield t


async def measure(*, with_profile: bool = True) -> KeystrokeResult:
    """Run every path in interleaved rounds; profile the tunnel path at the end."""
    notes: list[str] = []
    prof: list[str] = []
    samples: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="cvk-") as d:
        root = Path(d)
        have_ssh = bool(shutil.which("ssh") and shutil.which("sshd", path="/usr/sbin:/usr/bin"))
        sshd = start_sshd(root / "sshd") if have_ssh else None
        try:
            async with agent_session("keys") as (agent, tunnel, s), DockerRuntime() as runtime, \
                    _tunnel(agent, root / "ch.sock", "chacha20-poly1305@openssh.com") as chacha:
                ctr = f"convocate-session-{s.id}"
                paths: dict[str, Callable[[], TermClient]] = {
                    "docker exec -it (baseline)": lambda: PtyClient(_exec_argv(ctr)),
                    "aiodocker TTY exec (the agent's call)": lambda: DockerClient(runtime, s.id, USER),
                    "gRPC Attach, agent socket direct": lambda: GrpcClient(direct, s.id),
                    "gRPC Attach, tunnel aes128-gcm": lambda: GrpcClient(lambda: tunnel.channel, s.id),
                    "gRPC Attach, tunnel chacha20-poly1305": lambda: GrpcClient(lambda: chacha.channel, s.id),
                    CHANNEL: lambda: ChannelClient(tunnel, s.id),
                    "console relay on a pty + tunnel": lambda: PtyClient(
                        relay_argv(agent, root / "relay.sock", s.id)),
                }
                if sshd is not None:
                    paths["ssh -t (OpenSSH) docker exec -it"] = lambda: PtyClient(_ssh_argv(sshd, ctr))
                direct_ch = grpc.aio.insecure_channel(f"unix:{agent.socket_path}")

                def direct() -> grpc.aio.Channel:
                    return direct_ch

                try:
                    for _ in range(ROUNDS):
                        for label, make in paths.items():
                            client = make()
                            await client.open()
                            try:
                                samples.setdefault(label, []).extend(await type_keys(client, KEYS, WARMUP))
                            finally:
                                await client.close()
                    output, output_bytes = await _output_rounds(ctr, {
                        OUTPUT_BASELINE: lambda: PtyClient(_exec_argv(ctr)),
                        "console relay on a pty + tunnel (in the session)": lambda: PtyClient(
                            relay_argv(agent, root / "relay.sock", s.id)),
                        "gRPC Attach through the tunnel (in the session)": lambda: GrpcClient(
                            lambda: tunnel.channel, s.id),
                        "attach channel through the tunnel (in the session)": lambda: ChannelClient(
                            tunnel, s.id),
                    })
                    rss = {"agent, one session": _rss_mib(agent)}
                    creates = await _create_rounds(agent, tunnel, image_of(s))
                    rss[f"agent, {1 + CREATES * ROUNDS} running sessions"] = _rss_mib(agent)
                    if with_profile and profile.available():
                        prof = await _profile(agent, lambda: ChannelClient(tunnel, s.id), root)
                finally:
                    await direct_ch.close()
        finally:
            if sshd is not None:
                sshd.stop()
    notes.insert(0, f"{ROUNDS} interleaved rounds x {KEYS} keys per path, after {WARMUP} warm-up keys "
                    "in each round.")
    return KeystrokeResult(samples, notes, prof, output, output_bytes, creates, rss)


def _rss_mib(agent: AgentProcess) -> float:
    assert agent.proc is not None
    for line in Path(f"/proc/{agent.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def image_of(s: Session) -> str:
    """The image the session runs (the offline image)."""
    return ensure_offline_image() if not s.image else s.image


# The output rows: ``seq`` on its own TTY exec (no tmux: the floor), and the like-for-like
# baseline of every attach path, the same ``seq`` typed into the session and watched by
# ``docker exec -it CTR tmux attach``.
OUTPUT_RAW = "docker exec -t CTR seq (no tmux)"
OUTPUT_BASELINE = "docker exec -it tmux attach (in the session)"


async def _output_rounds(ctr: str, clients: dict[str, Callable[[], TermClient]],
                         ) -> tuple[dict[str, list[float]], dict[str, list[int]]]:
    """Seconds to print ``seq 1 SEQ_N`` through each client (in the session) and by ``docker exec -t``.

    Also the bytes each one received: tmux sends a slow client less (it redraws instead of
    replaying every line), so a rate alone does not say how much was shown.
    """
    out: dict[str, list[float]] = {}
    got: dict[str, list[int]] = {}
    for n in range(ROUNDS):
        t0 = time.perf_counter()
        argv = ["docker", "exec", "-t", "-u", USER, ctr, "seq", "1", str(SEQ_N)]
        proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
        stdout, _ = await proc.communicate()
        out.setdefault(OUTPUT_RAW, []).append(time.perf_counter() - t0)
        got.setdefault(OUTPUT_RAW, []).append(len(stdout))
        for label, make in clients.items():
            client = make()
            await client.open()
            mark = f"{MARK}-{n}-{len(out.get(label, []))}-{uuid.uuid4().hex[:6]}"
            try:
                await settle(client)
                t0 = time.perf_counter()
                client.write(f"seq 1 {SEQ_N}; echo {mark[:5]}''{mark[5:]}\r".encode())
                await client.read_until(mark.encode(), 120)
                out.setdefault(label, []).append(time.perf_counter() - t0)
                got.setdefault(label, []).append(len(client.buf))
            finally:
                await client.close()
    return out, got


async def _create_rounds(agent: AgentProcess, tunnel: Tunnel, image: str) -> dict[str, list[float]]:
    """create(start=True) through the tunnel against ``docker run -d`` of the same image."""
    calls = AgentCalls(agent.agent_id, lambda: tunnel.channel, call_timeout=60)
    label = f"convocate.bench=create-{uuid.uuid4().hex[:8]}"
    out: dict[str, list[float]] = {"docker run -d (baseline)": [], "create + start through the tunnel": []}
    try:
        for i in range(CREATES * ROUNDS):
            t0 = time.perf_counter()
            argv = ["docker", "run", "-d", "--label", label, "-e", "TERM=screen", image]
            proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL)
            await proc.wait()
            out["docker run -d (baseline)"].append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            await calls.create(f"c{i}", 0, "tcp", "", start=True)
            out["create + start through the tunnel"].append((time.perf_counter() - t0) * 1000)
    finally:
        await asyncio.to_thread(remove_labelled_containers, label)
    return out


async def _profile(agent: AgentProcess, make: Callable[[], TermClient], root: Path) -> list[str]:
    assert agent.proc is not None
    client = make()
    await client.open()
    try:
        return await profile.sample({"agent": agent.proc.pid, "client (bench process)": None},
                                    type_keys(client, PROFILE_KEYS, WARMUP), root / "prof",
                                    f"{PROFILE_KEYS} keys on the attach channel through the tunnel")
    finally:
        await client.close()


READING = [
    "## How to read it",
    "",
    ("- Each hop's cost is the difference of two medians, so a hop that costs less than the "
    "run-to-run noise of the machine (load average above) can come out negative."),
    ("- Transport settings checked for this run: the tunnel offers aes128-gcm first (the chacha20 "
    "row is the same tunnel offering only chacha20-poly1305); asyncssh sets TCP_NODELAY on its TCP "
    "socket on both ends (SSHConnection.connection_made); the other hops (gRPC client to the local "
    "tunnel socket, the agent's SSH server to its gRPC socket) are UNIX sockets, where Nagle does "
    "not apply. uvloop is not used: with it in every process the console measured within the "
    "noise (shared transport measurements), and grpc.aio polls from its own thread either way."),
    ("- The attach channel carries the gRPC Attach's own protobuf messages, length-prefixed, in an "
    "SSH channel both ends handle in their event loop: a key goes console loop -> asyncssh -> TCP -> "
    "the agent's asyncssh -> servicer -> Docker exec, without the local tunnel socket, the agent's "
    "gRPC socket or grpc core's poller thread at either end (each one a wake-up per message)."),
    ("- The profiles count samples of running threads only. Time in `EpollSelector.select` and "
    "socket writes is the cost of waking up across processes and threads (on the gRPC path one "
    "message is also a hand-off from grpc's poller thread to the event loop on each side), not "
    "Python work: the Python code of the relay, the servicer and the viewer is a few per cent of "
    "either process. "
    "py-spy counts a thread as running from the moment it is woken, so on a loaded machine the "
    "select share also holds the wait for a free core after each wake-up: fewer wake-ups per "
    "key (processes, threads, event-loop turns) is what shortens the echo."),
    "",
]


@dataclasses.dataclass(frozen=True)
class Hop:
    """One hop of the keystroke path: its short name, what it holds, its p50 and the p50 it adds."""

    name: str
    what: str
    cumulative: float
    added: float


# The console's path, each step adding hops to the one before it: (path label, short name,
# what the added hops are). The gRPC rows of the table are the path before the attach channel.
CHAIN = [
    ("aiodocker TTY exec (the agent's call)", "Docker exec + tmux",
     "dockerd exec stream + tmux client/server + shell echo"),
    (CHANNEL, "attach channel + agent servicer",
     "attach channel: asyncssh client + TCP + asyncssh server (the agent's loop) + servicer, viewer queue"),
    ("console relay on a pty + tunnel", "console relay",
     "console relay: its own process on a pty, input queue, terminal writer"),
]


def hops(r: KeystrokeResult) -> list[Hop]:
    """The per-hop costs of this run (differences of p50s along :data:`CHAIN`)."""
    out, prev = [], 0.0
    for label, name, what in CHAIN:
        if label not in r.samples:
            continue
        p50 = r.p(label, 50)
        out.append(Hop(name, what, p50, p50 - prev))
        prev = p50
    return out


def _breakdown(r: KeystrokeResult) -> list[list[str]]:
    return [[h.what, f"{h.cumulative:.0f}", f"{h.added:+.0f}"] for h in hops(r)]


def _output_table(r: KeystrokeResult) -> list[str]:
    if not r.output_seconds:
        return []
    rows = []
    for label, secs in r.output_seconds.items():
        mb = median([float(b) for b in r.output_bytes.get(label, [])]) / 1e6
        rows.append(f"| {label} | {median(secs):.2f} | {mb:.2f} |")
    return [f"## Output of seq 1 {SEQ_N} (median of {ROUNDS} rounds)", "",
            "| path | seconds | MB received |", "|---|---|---|", *rows, "",
            (f"- `{OUTPUT_RAW}` is the floor without tmux; every other row types the same seq into the "
             f"session's tmux, and `{OUTPUT_BASELINE}` is their like-for-like baseline."), ""]


def write(r: KeystrokeResult, extra: list[str]) -> None:
    """Write benchmarks/results/keystroke_breakdown.md."""
    base = "docker exec -it (baseline)"
    table = [[label, f"{r.p(label, 50):.0f}", f"{r.p(label, 99):.0f}",
              f"{r.p(label, 50) / r.p(base, 50):.2f}x", f"{r.p(label, 99) / r.p(base, 99):.2f}x"]
             for label in r.samples]
    lines = [
        "# Keystroke echo: where the time goes",
        "",
        host_line(),
        "",
        "| path | p50 µs | p99 µs | p50 / baseline | p99 / baseline |",
        "|---|---|---|---|---|",
        *("| " + " | ".join(row) + " |" for row in table),
        "",
        "## Per hop (differences of medians, each path adds hops to the one above)",
        "",
        "| hop | cumulative p50 µs | added µs |",
        "|---|---|---|",
        *("| " + " | ".join(row) + " |" for row in _breakdown(r)),
        "",
        *(f"- {n}" for n in r.notes),
        "",
        *_output_table(r),
        *READING,
        (f"- gRPC core of this process and its children: GRPC_EXPERIMENTS="
         f"`{os.environ.get('GRPC_EXPERIMENTS', '')}` (common.grpc_options.configure_core)."), "",
        *r.profile,
        *extra,
    ]
    write_markdown("keystroke_breakdown", lines)


def run() -> None:
    """Measure and write the breakdown."""
    async def main() -> None:
        r = await measure()
        write(r, [])
    asyncio.run(main())

