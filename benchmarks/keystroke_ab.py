"""Before/after of hot-path changes, in the same run: the base revision's agent and relay
against the working tree's.

``python -m benchmarks keystroke_ab`` exports the base revision (``CONVOCATE_BENCH_BASE``,
default: main before issue 13's changes) to a temporary tree and runs one agent from
it (127.0.0.3) and one from the working tree (127.0.0.2), each with its own session. The
keystroke paths then alternate between the two, round after round, so both see the same
machine load. The console relay child runs the matching revision too, and opens its
stream as that revision's console does (the attach channel, or gRPC before it); the row
"attach as the console does" is the same in this process (the working tree's client,
which attaches an agent that refuses the channel over gRPC).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from benchmarks.agent_session import agent_session, python_path
from benchmarks.clients import ChannelClient, GrpcClient, PtyClient, TermClient
from benchmarks.keystroke import WARMUP, relay_argv, settle, type_keys
from benchmarks.report import QUICK, host_line, median, percentile, write_markdown
from common.client.attach_channel_call import AttachChannelCall
from common.client.calls import AgentCalls
from common.domain import Session
from common.grpc_options import CLIENT_OPTIONS
from common.tunnel import Tunnel
from tests.support.agent_proc import AgentProcess

__all__ = ["base_revision", "before_after_sessions", "export_tree", "run"]

ROOT = Path(__file__).resolve().parent.parent
Side = tuple[AgentProcess, Tunnel, Session]     # an agent, a tunnel to it, a session on it
KEYS = 60 if QUICK.on else 200
ROUNDS = 2 if QUICK.on else 8
CREATES = 2   # sessions created (and started) per side per round
CONSOLE = "attach as the console does, through the tunnel"


# main just before issue 13's changes (the keystroke harness landed on top of it).
BEFORE_ISSUE_13 = "086d9db"


def base_revision() -> str:
    """The revision "before" means: CONVOCATE_BENCH_BASE, else main before issue 13's changes."""
    return os.environ.get("CONVOCATE_BENCH_BASE") or BEFORE_ISSUE_13


def export_tree(rev: str, into: Path, *extra: str) -> None:
    """Write the code of ``rev`` (agent, common, shell and ``extra`` folders) into ``into``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "agent", "common", "shell", *extra],
                             capture_output=True, check=True, timeout=60).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True, timeout=60)


@contextlib.asynccontextmanager
async def before_after_sessions(rev: str, after: str = "after", before: str = "before",
                                ) -> AsyncIterator[tuple[Path, Path, Side, Side]]:
    """A scratch directory, ``rev``'s code exported into it, and an agent session on each side.

    Yields the directory, the exported tree, then (agent, tunnel, session) of this tree's
    agent on 127.0.0.2 ("after") and of ``rev``'s on 127.0.0.3 ("before").
    """
    with tempfile.TemporaryDirectory(prefix="cvab-") as d:
        base_code = Path(d) / "base"
        base_code.mkdir()
        export_tree(rev, base_code)
        async with agent_session(after, "127.0.0.2") as a_side, \
                agent_session(before, "127.0.0.3", base_code) as b_side:
            yield Path(d), base_code, a_side, b_side


def cpu_ns(pid: int) -> int:
    """CPU time (ns) of every thread of ``pid`` so far (schedstat: finer than the 10 ms ticks of stat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):   # a thread that ended meanwhile
            total += int((task / "schedstat").read_text().split()[0])
    return total


async def _round(make: TermClient, code: Path | None, failures: list[str],
                 cpu: dict[str, list[float]], pids: dict[str, int]) -> list[float]:
    """One round of keys; a key that never echoes ends the round and is reported, not fatal.

    ``cpu`` gets the CPU µs per key of each process in ``pids`` (and of the client's own
    process when it is a child, as "relay"): what a loaded machine cannot inflate.
    """
    with python_path(code):
        await make.open()
    try:
        if isinstance(make, PtyClient):
            pids = {**pids, "relay": make.pid}
        await settle(make)
        before = {name: cpu_ns(pid) for name, pid in pids.items()}
        out = await type_keys(make, KEYS, WARMUP, settled=True)
    except (TimeoutError, RuntimeError) as e:
        failures.append(str(e)[:200])
        return []
    else:
        for name, pid in pids.items():
            cpu.setdefault(name, []).append((cpu_ns(pid) - before[name]) / 1000 / (KEYS + WARMUP))
        return out
    finally:
        await make.close()


def _head() -> str:
    return subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                          capture_output=True, text=True, check=True, timeout=30).stdout.strip()


async def _main() -> None:
    rev, head = base_revision(), _head()
    samples: dict[tuple[str, str], list[float]] = {}
    failures: dict[str, list[str]] = {}
    cpu: dict[tuple[str, str], dict[str, list[float]]] = {}   # (path, side) -> process -> µs per key
    on_channel: dict[str, bool] = {}
    async with before_after_sessions(rev) as (
            d, base_code, (a_agent, a_tunnel, a_s), (b_agent, b_tunnel, b_s)):
        sides = {"before": (b_agent, b_tunnel, b_s, base_code), "after": (a_agent, a_tunnel, a_s, None)}
        # Straight on each agent's UNIX socket: the agent's side alone, without the tunnel's noise.
        channels = {side: grpc.aio.insecure_channel(f"unix:{v[0].socket_path}", options=CLIENT_OPTIONS)
                    for side, v in sides.items()}
        try:
            for i in range(ROUNDS):
                order = ["before", "after"] if i % 2 == 0 else ["after", "before"]
                for side in order:
                    agent, tunnel, s, code = sides[side]
                    lost = failures.setdefault(side, [])
                    assert agent.proc is not None
                    pids = {"agent": agent.proc.pid}
                    direct = GrpcClient(lambda c=channels[side]: c, s.id)   # type: ignore[misc]
                    samples.setdefault(("gRPC Attach, agent socket (no tunnel)", side), []).extend(
                        await _round(direct, code, lost, cpu.setdefault(("direct", side), {}), pids))
                    grpc_client = GrpcClient(lambda t=tunnel: t.channel, s.id)   # type: ignore[misc]
                    samples.setdefault(("gRPC Attach through the tunnel", side), []).extend(
                        await _round(grpc_client, code, lost, cpu.setdefault(("tunnel", side), {}), pids))
                    console = ChannelClient(tunnel, s.id, fallback=True)
                    samples.setdefault((CONSOLE, side), []).extend(
                        await _round(console, code, lost, cpu.setdefault(("console", side), {}), pids))
                    on_channel[side] = isinstance(console.call, AttachChannelCall) and console.call.on_channel
                    relay = PtyClient(relay_argv(agent, Path(d) / f"r{side}.sock", s.id))
                    samples.setdefault(("console relay on a pty + tunnel", side), []).extend(
                        await _round(relay, code, lost, cpu.setdefault(("relay", side), {}), pids))
                    calls = AgentCalls(agent.agent_id, lambda t=tunnel: t.channel,  # type: ignore[misc]
                                       call_timeout=60)
                    for n in range(CREATES):
                        t0 = time.perf_counter()
                        await calls.create(f"ab{i}-{n}", 0, "tcp", "", start=True)
                        samples.setdefault(("create + start through the tunnel", side), []).append(
                            (time.perf_counter() - t0) * 1e6)
            opened = {side: v[0].log_text().count("attach channel opened") for side, v in sides.items()}
        finally:
            for ch in channels.values():
                await ch.close()
    rows = []
    for path in dict.fromkeys(p for p, _ in samples):
        before, after = samples[(path, "before")], samples[(path, "after")]
        for q in (50, 99):
            b, a = percentile(before, q), percentile(after, q)
            rows.append(f"| {path} p{q} | {b:.0f} | {a:.0f} | {a / b:.2f}x |")
    names = {"direct": "gRPC Attach, agent socket (no tunnel)", "tunnel": "gRPC Attach through the tunnel",
             "console": CONSOLE, "relay": "console relay on a pty + tunnel"}
    for (path, side), per in cpu.items():
        if side != "before" or (path, "after") not in cpu:
            continue
        for proc, values in per.items():
            b, a = median(values), median(cpu[(path, "after")].get(proc, []))
            rows.append(f"| {names[path]}: CPU µs of the {proc} per key (median of rounds) | {b:.0f} | "
                        f"{a:.0f} | {a / b:.2f}x |")
    write_markdown("keystroke_ab", [
        "# Keystroke echo before/after the hot-path changes (same run)", "", host_line(), "",
        f"Before: agent and relay from {rev[:12]}; after: the working tree ({head}).", "",
        "| path | before µs | after µs | after / before |", "|---|---|---|---|", *rows, "",
        (f"- {ROUNDS} rounds alternating before/after, {KEYS} keys per path per round after {WARMUP} "
         f"warm-up keys, then {CREATES} sessions created and started on each side (that row in µs "
         "too); the in-process gRPC client is the working tree's on both sides."),
        "- The two agents run side by side (127.0.0.2 and .3), each with its own session container.",
        (f'- "{CONSOLE}" went on the attach channel: '
         + ", ".join(f"{side} {'yes' if on else 'no (gRPC)'}" for side, on in on_channel.items())
         + "; the relay child opens its stream the way its revision's console does (attach channels "
         + "the agents opened in the run: " + ", ".join(f"{side} {n}" for side, n in opened.items()) + ")."),
        *(f"- A round of {side} ended early (its samples are left out): {msg}"
          for side, msgs in failures.items() for msg in msgs),
    ])


def run() -> None:
    """Measure and write benchmarks/results/keystroke_ab.md."""
    asyncio.run(_main())
