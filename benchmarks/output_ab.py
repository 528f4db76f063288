"""Attach output throughput before/after, in the same run: ``seq`` in the session, watched
through the console relay, against ``docker exec -it CTR tmux attach`` of the same session.

``python -m benchmarks output_ab`` runs one agent from the base revision
(``CONVOCATE_BENCH_BASE``, see :func:`benchmarks.keystroke_ab.base_revision`) and one from
the working tree, each with its own session. Round after round, the sides in turn, each
side prints ``seq 1 SEQ_N`` in its session once watched by ``docker exec -it tmux attach``
(the baseline) and once by the console relay on a pty through the tunnel (its revision's
relay child). Measured: seconds until the mark after the output arrives, the bytes the
client got (tmux sends a client what it can take, so this varies), and the CPU the relay
child and the agent spent on the run: on two shared cores the relay path's CPU is what
slows the session's output down.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from pathlib import Path

from benchmarks.agent_session import python_path
from benchmarks.clients import PtyClient
from benchmarks.keystroke import MARK, SEQ_N, USER, relay_argv, settle
from benchmarks.keystroke_ab import base_revision, before_after_sessions, cpu_ns
from benchmarks.report import QUICK, host_line, median, write_markdown
from tests.support.agent_proc import AgentProcess

__all__ = ["run"]

ROUNDS = 2 if QUICK.on else 6


@dataclasses.dataclass
class _Run:
    """One seq watched by one client."""

    seconds: float
    received: int
    client_cpu_ms: float
    agent_cpu_ms: float


def _tmux_argv(container: str) -> list[str]:
    return ["docker", "exec", "-it", "-u", USER, "-e", "LC_ALL=C.UTF-8", container,
            "tmux", "attach", "-t", "claude"]


async def _watch(client: PtyClient, agent: AgentProcess, code: Path | None, n: int) -> _Run:
    with python_path(code):
        await client.open()
    try:
        await settle(client)
        mark = f"{MARK}-{n}-{uuid.uuid4().hex[:6]}"
        assert agent.proc is not None
        c0, a0, t0 = cpu_ns(client.pid), cpu_ns(agent.proc.pid), time.perf_counter()
        client.write(f"seq 1 {SEQ_N}; echo {mark[:5]}''{mark[5:]}\r".encode())
        await client.read_until(mark.encode(), 120)
        seconds = time.perf_counter() - t0
        client_ms, agent_ms = (cpu_ns(client.pid) - c0) / 1e6, (cpu_ns(agent.proc.pid) - a0) / 1e6
        return _Run(seconds, len(client.buf), client_ms, agent_ms)
    finally:
        await client.close()


async def measure() -> tuple[str, dict[str, list[_Run]]]:
    """``ROUNDS`` alternating rounds; runs keyed by "<side> <client>"."""
    rev = base_revision()
    runs: dict[str, list[_Run]] = {}
    async with before_after_sessions(rev, "out-after", "out-before") as (
            d, base_code, (a_agent, _, a_s), (b_agent, _, b_s)):
        sides = [("after", a_agent, a_s.id, None), ("before", b_agent, b_s.id, base_code)]
        for n in range(ROUNDS):
            for side, agent, session_id, code in sides[n % 2:] + sides[:n % 2]:
                container = f"convocate-session-{session_id}"
                tmux = PtyClient(_tmux_argv(container))
                runs.setdefault(f"{side} tmux", []).append(await _watch(tmux, agent, None, n))
                relay = PtyClient(relay_argv(agent, d / f"r-{side}.sock", session_id))
                runs.setdefault(f"{side} relay", []).append(await _watch(relay, agent, code, n))
    return rev, runs


def _rows(side: str, runs: dict[str, list[_Run]]) -> list[str]:
    tmux, relay = runs[f"{side} tmux"], runs[f"{side} relay"]
    rate = median([r.seconds for r in tmux]) / median([r.seconds for r in relay])
    each = sorted(t.seconds / r.seconds for t, r in zip(tmux, relay, strict=True))
    return [
        (f"| {side} | {median([r.seconds for r in tmux]):.2f} | {median([r.seconds for r in relay]):.2f} | "
         f"{rate:.2f}x ({each[0]:.2f}-{each[-1]:.2f}x) | {median([r.received for r in relay]) / 1e6:.2f} | "
         f"{median([r.client_cpu_ms for r in relay]):.0f} | {median([r.agent_cpu_ms for r in relay]):.0f} |"),
    ]


def write(rev: str, runs: dict[str, list[_Run]]) -> None:
    """results/output_ab.md."""
    write_markdown("output_ab", [
        (f"# Output of seq 1 {SEQ_N} in the session: console relay against docker exec -it tmux attach, "
         "before/after"), "",
        host_line(), "",
        f"Before: agent and relay of {rev[:12]}; after: the working tree.", "",
        ("| side | tmux attach s (baseline) | relay on a pty + tunnel s | relay rate / baseline (rounds) | "
         "relay MB received | relay CPU ms | agent CPU ms (relay run) |"),
        "|---|---|---|---|---|---|---|",
        *_rows("before", runs), *_rows("after", runs), "",
        (f"- {ROUNDS} rounds, the sides in turn; medians; the rate ratio is median/median with each "
         "round's own ratio as the spread. Seconds from typing the command to the mark after the output."),
        ("- CPU (schedstat) of the relay child and of the agent process over the relay's run: the "
         "relay path's cost per run on the two shared cores. tmux sends a client what it can take, so "
         "the bytes received vary between runs and clients."),
    ])


def run() -> None:
    """Run the suite and write benchmarks/results/output_ab.md."""
    write(*asyncio.run(measure()))
