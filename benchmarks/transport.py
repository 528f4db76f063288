"""gRPC through the SSH tunnel against the same gRPC server dialled directly, before and after.

Baseline (same run, same server): a grpc.aio channel straight on the server's UNIX
socket. Measured: unary Ping latency (p50/p99), bidi stream throughput (echo) and the
CPU both ends spend per MB. Each side runs in its own processes
(:mod:`benchmarks.transport_side`): the client (tunnel + gRPC client, as the console)
and the server (SSH server + gRPC server, as the agent). Four sides alternate round
by round so all see the same machine load: the working tree and the base revision
(``CONVOCATE_BENCH_BASE``, see :func:`benchmarks.keystroke_ab.base_revision`), each with
the server in its own process and with everything in one process and event loop (the
layout of the earlier figures).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.agent_session import python_path
from benchmarks.keystroke_ab import base_revision, export_tree
from benchmarks.report import QUICK, host_line, median, percentile, write_markdown
from benchmarks.transport_side import MARK

__all__ = ["SIDES", "TransportResult", "measure", "run"]

PINGS = 300 if QUICK.on else 1000
STREAM_MIB = 16 if QUICK.on else 64
ROUNDS = 1 if QUICK.on else 5
# side name -> (base revision's code?, one process?)
SIDES = {
    "after": (False, False),
    "before": (True, False),
    "after, one process": (False, True),
    "before, one process": (True, True),
}


@dataclasses.dataclass
class PathFigures:
    """What one path (direct or tunnel) of one side measured, pooled over the rounds."""

    ping_us: list[float] = dataclasses.field(default_factory=list)
    bidi_mbps: list[float] = dataclasses.field(default_factory=list)
    client_cpu_ms_per_mb: list[float] = dataclasses.field(default_factory=list)
    server_cpu_ms_per_mb: list[float] = dataclasses.field(default_factory=list)

    @property
    def mbps(self) -> float:
        """Median bidi MB/s."""
        return median(self.bidi_mbps)

    @property
    def cpu_ms_per_mb(self) -> float:
        """Median CPU (client + server processes) per MB of bidi payload, in ms."""
        pairs = zip(self.client_cpu_ms_per_mb, self.server_cpu_ms_per_mb, strict=True)
        return median([c + s for c, s in pairs])


@dataclasses.dataclass
class TransportResult:
    """Per side ("after", "before", ...) and path ("direct", "tunnel")."""

    base: str
    figures: dict[tuple[str, str], PathFigures]

    def get(self, side: str, path: str) -> PathFigures:
        """The figures of one side's path."""
        return self.figures[(side, path)]

    def ratio(self, side: str) -> float:
        """Median tunnel bidi MB/s over median direct bidi MB/s of one side (as the summary shows it)."""
        return self.get(side, "tunnel").mbps / self.get(side, "direct").mbps

    def round_ratios(self, side: str) -> list[float]:
        """Each round's tunnel/direct MB/s (both back to back): their spread shows the load's noise."""
        pairs = zip(self.get(side, "tunnel").bidi_mbps, self.get(side, "direct").bidi_mbps, strict=True)
        return sorted(t / d for t, d in pairs)


class _Side:
    """One client child (which starts its server child) answering commands."""

    def __init__(self, name: str, code: Path | None, one_process: bool) -> None:
        self.name, self._code, self._one_process = name, code, one_process
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        argv = [sys.executable, "-m", "benchmarks.transport_side", "client"]
        with python_path(self._code):
            self._proc = await asyncio.create_subprocess_exec(
                *argv, *(["--one-process"] if self._one_process else []),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        await self._answer(60)

    async def _answer(self, timeout: float) -> dict[str, Any]:
        assert self._proc is not None
        assert self._proc.stdout is not None
        async with asyncio.timeout(timeout):
            while line := (await self._proc.stdout.readline()).decode():
                if line.startswith(MARK):
                    return dict(json.loads(line[len(MARK):]))
        raise RuntimeError(f"transport side {self.name!r} exited ({await self._proc.wait()})")

    async def ask(self, command: str) -> dict[str, Any]:
        assert self._proc is not None
        assert self._proc.stdin is not None
        self._proc.stdin.write(command.encode() + b"\n")
        await self._proc.stdin.drain()
        return await self._answer(600)

    async def close(self) -> None:
        if self._proc is None:
            return
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            await asyncio.wait_for(self._proc.wait(), 20)
        except TimeoutError:
            self._proc.kill()
            await self._proc.wait()


async def _round(side: _Side, figures: dict[tuple[str, str], PathFigures], pings: bool) -> None:
    for path in ("direct", "tunnel"):
        f = figures.setdefault((side.name, path), PathFigures())
        if pings:
            f.ping_us += (await side.ask(f"ping {path} {PINGS}"))["result"]
        r = await side.ask(f"bidi {path} {STREAM_MIB}")
        mb = STREAM_MIB * 1.048576
        f.bidi_mbps.append(r["result"])
        f.client_cpu_ms_per_mb.append(r["client_cpu"] * 1000 / mb)
        f.server_cpu_ms_per_mb.append(r["server_cpu"] * 1000 / mb)


async def measure(sides: tuple[str, ...] = tuple(SIDES)) -> TransportResult:
    """Ping latencies and bidi throughput, direct and tunnelled, for each of ``sides``.

    One warm-up bidi per side and path, then ``ROUNDS`` rounds; the order of the sides
    turns each round so none always runs first.
    """
    rev = base_revision()
    figures: dict[tuple[str, str], PathFigures] = {}
    with tempfile.TemporaryDirectory(prefix="cvtp-") as d:
        base_code = Path(d) / "base"
        base_code.mkdir()
        export_tree(rev, base_code)
        running = [_Side(name, base_code if SIDES[name][0] else None, SIDES[name][1]) for name in sides]
        try:
            for side in running:
                await side.start()
            for side in running:   # warm-up, not kept
                await _round(side, {}, pings=False)
            for i in range(ROUNDS):
                order = running[i % len(running):] + running[:i % len(running)]
                for side in order:
                    await _round(side, figures, pings=True)
        finally:
            for side in running:
                await side.close()
    return TransportResult(rev, figures)


def why_tunnel_throughput(r: TransportResult) -> str:
    """The summary's explanation of the bidi figure, from this run's measurements."""
    d, t, b = r.get("after", "direct"), r.get("after", "tunnel"), r.get("before", "tunnel")
    client, server = median(t.client_cpu_ms_per_mb), median(t.server_cpu_ms_per_mb)
    text = (f"the rounds' own ratios {_span(r.round_ratios('after'))}; tunnel CPU {t.cpu_ms_per_mb:.1f} "
            f"ms/MB (client {client:.1f}, server {server:.1f}) against {d.cpu_ms_per_mb:.1f} direct: "
            "each message crosses two more sockets (gRPC to asyncssh at both ends) and TCP, each hop a "
            "read, a send and a wake-up per process (common.ssh_data_path frames and encrypts the data "
            "packets with two copies, asyncssh's own path with about nine); "
            f"base revision {r.base[:12]} in the same run: "
            f"{b.mbps:.0f} MB/s, {r.ratio('before'):.2f}x, {b.cpu_ms_per_mb:.1f} ms/MB")
    if ("after, one process", "tunnel") in r.figures:
        one = r.ratio("after, one process")
        text += (f"; with client and server in one process and event loop {one:.2f}x "
                 f"(before: {r.ratio('before, one process'):.2f}x)")
    return text


def _span(values: list[float]) -> str:
    return f"{values[0]:.2f}-{values[-1]:.2f}x" if values else "n/a"


def _rows(r: TransportResult, layout: str, suffix: str) -> list[str]:
    after, before = f"after{suffix}", f"before{suffix}"
    d, t, b = r.get(after, "direct"), r.get(after, "tunnel"), r.get(before, "tunnel")
    rows = [
        (f"| bidi echo MB/s, {layout} | {d.mbps:.1f} | {b.mbps:.1f} | {t.mbps:.1f} | "
         f"{r.ratio(before):.2f}x | {r.ratio(after):.2f}x |"),
        (f"| bidi tunnel/direct of each round (both back to back), {layout} | | | | "
         f"{_span(r.round_ratios(before))} | {_span(r.round_ratios(after))} |"),
        (f"| bidi CPU ms/MB (client + server), {layout} | {d.cpu_ms_per_mb:.1f} | {b.cpu_ms_per_mb:.1f} | "
         f"{t.cpu_ms_per_mb:.1f} | {b.cpu_ms_per_mb / d.cpu_ms_per_mb:.2f}x | "
         f"{t.cpu_ms_per_mb / d.cpu_ms_per_mb:.2f}x |"),
    ]
    for q in (50, 99):
        dp, bp, tp = (percentile(x.ping_us, q) for x in (d, b, t))
        rows.append(f"| Ping p{q} µs, {layout} | {dp:.0f} | {bp:.0f} | {tp:.0f} | {bp / dp:.2f}x | "
                    f"{tp / dp:.2f}x |")
    return rows


def write(r: TransportResult) -> None:
    """results/transport.md: every side against its direct baseline."""
    rows = _rows(r, "own processes", "")
    if ("after, one process", "tunnel") in r.figures:
        rows += _rows(r, "one process", ", one process")
    write_markdown("transport", [
        "# gRPC through the asyncssh tunnel vs. the same server dialled directly, before/after", "",
        host_line(), "",
        f"Before: client and server code of {r.base[:12]}; after: the working tree.", "",
        "| measure | direct (baseline) | tunnel before | tunnel after | before / direct | after / direct |",
        "|---|---|---|---|---|---|", *rows, "",
        (f"- {PINGS} sequential Pings after 50 warm-up calls per round; {STREAM_MIB} MiB echoed in 64 KiB "
         f"frames (MB/s one way); {ROUNDS} rounds, the sides in turn, after one warm-up each; medians "
         "(latency percentiles over all rounds). The direct column is the after side's; each MB/s ratio "
         "is against its own side's direct median, latency and CPU ratios against the direct column."),
        ("- own processes: client (tunnel + gRPC client, as the console) and server (SSH + gRPC server, "
         "as the agent) in two processes; one process: both in one event loop, as the earlier figures."),
        "- CPU: every thread of the client and server processes, from /proc schedstat.",
        f"- Why: {why_tunnel_throughput(r)}.",
    ])


def run() -> None:
    """Run the transport benchmark and write benchmarks/results/transport.md."""
    write(asyncio.run(measure()))
