"""Keystroke round trip of an attached session: a key in, its echo out.

Path measured: client -> SSH tunnel -> gRPC Attach -> agent -> docker exec -> tmux client
-> tmux server -> the session's shell echoes -> all the way back. Baseline: the same
Attach stream on the agent's UNIX socket directly (no SSH tunnel), same session.
"""

from __future__ import annotations

import asyncio
import time

import grpc

from benchmarks.agent_session import agent_session
from benchmarks.report import median, percentile, write_table
from common.client.attach_call import AttachCall

__all__ = ["run"]

KEYS = 200
WARMUP = 10


async def _read_until(call: AttachCall, needle: bytes, timeout: float = 10.0) -> None:
    seen = b""
    async with asyncio.timeout(timeout):
        while needle not in seen:
            frame = await call.read()
            if frame is None:
                raise RuntimeError("the stream ended")
            if isinstance(frame, bytes):
                seen += frame


async def _round_trips(channel: grpc.aio.Channel, session_id: str) -> list[float]:
    call = AttachCall(channel, "bench")
    await call.start(session_id, rows=24, cols=80, term="xterm")
    await _read_until(call, b"$ ")
    samples: list[float] = []
    try:
        for i in range(KEYS + WARMUP):
            key = b"abcdefghij"[i % 10:i % 10 + 1]
            t0 = time.perf_counter()
            await call.send_input(key)
            await _read_until(call, key)
            if i >= WARMUP:
                samples.append(time.perf_counter() - t0)
            if i % 10 == 9:
                await call.send_input(b"\x15")  # Ctrl-U: clear the line
                await asyncio.sleep(0.05)
        await call.detach()
    finally:
        call.cancel()
    return samples


async def _main() -> None:
    async with agent_session("rtt") as (agent, tunnel, s):
        tunneled = await _round_trips(tunnel.channel, s.id)
        async with grpc.aio.insecure_channel(f"unix:{agent.socket_path}") as direct:
            local = await _round_trips(direct, s.id)
    rows = [[name, f"{median(v) * 1000:.2f}", f"{percentile(v, 95) * 1000:.2f}",
             f"{max(v) * 1000:.2f}"] for name, v in (("through the SSH tunnel", tunneled),
                                                      ("agent socket directly (baseline)", local))]
    write_table("attach_rtt", "Attach keystroke round trip", ["path", "median ms", "p95 ms", "max ms"], rows,
                [f"{KEYS} keys after {WARMUP} warm-up keys, one at a time, echo awaited each time.",
                 "The echo comes from the session's shell through tmux (tmux batches its redraws)."])


def run() -> None:
    """Run the attach round-trip benchmark and write benchmarks/results/attach_rtt.md."""
    asyncio.run(_main())
