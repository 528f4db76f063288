"""gRPC through the SSH tunnel against the same gRPC server dialled directly.

Baseline (same run, same server): a grpc.aio channel straight on the UNIX socket.
Measured: unary Ping latency (p50/p90/p99) and bidi stream throughput (echo).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import grpc

from benchmarks.report import QUICK, load_average, median, percentile, write_table
from common.client.attach_call import AttachCall
from common.client.calls import AgentCalls
from common.grpc_options import CLIENT_OPTIONS
from common.grpc_server import UnixGrpcServer
from common.ssh_server import SSHServerSettings, SSHSocketServer
from common.tunnel import Tunnel, TunnelSettings
from tests.support.echo_services import echo_services
from tests.support.keys import make_peer_keys
from tests.support.net import free_port

__all__ = ["measure", "run"]

PINGS = 300 if QUICK.on else 1000
STREAM_MIB = 16 if QUICK.on else 64
ROUNDS = 1 if QUICK.on else 3
CHUNK = 64 * 1024


async def _latency(channel: grpc.aio.Channel) -> list[float]:
    calls = AgentCalls("bench", lambda: channel, call_timeout=5)
    for _ in range(50):  # warm-up
        await calls.ping()
    out = []
    for _ in range(PINGS):
        t0 = time.perf_counter_ns()
        await calls.ping()
        out.append((time.perf_counter_ns() - t0) / 1000)
    return out


async def _throughput(channel: grpc.aio.Channel) -> float:
    call = AttachCall(channel, "bench")
    payload = b"x" * CHUNK
    total = STREAM_MIB * 1024 * 1024 // CHUNK
    got = 0

    async def reader() -> None:
        nonlocal got
        async for frame in call.frames():
            if not isinstance(frame, bytes):
                return
            got += len(frame)

    t0 = time.perf_counter()
    await call.start("echo", rows=24, cols=80, term="")   # the echo server ignores the start frame
    task = asyncio.create_task(reader())
    try:
        for _ in range(total):
            await call.send_input(payload)
        await call.detach()
        await call.done_writing()
        await asyncio.wait_for(task, 120)
    finally:
        call.cancel()
    elapsed = time.perf_counter() - t0
    return got / elapsed / 1e6


async def measure() -> tuple[list[float], list[float], list[float], list[float]]:
    """Ping latencies (µs) direct and tunnelled, and bidi MB/s per round, direct and tunnelled.

    Both channels stay open; the rounds alternate between them so both see the same load.
    """
    d_tp: list[float] = []
    t_tp: list[float] = []
    with tempfile.TemporaryDirectory(prefix="cvb-") as d:
        root = Path(d)
        port = free_port()
        keys = make_peer_keys(root / "k", "127.0.0.1", port)
        sock = root / "s" / "agent.sock"
        async with UnixGrpcServer(sock, echo_services("bench")):
            settings = SSHServerSettings("127.0.0.1", port, keys.host_key, keys.authorized_keys, sock)
            ts = TunnelSettings("bench", "127.0.0.1", port, keys.client_key, keys.known_hosts,
                                root / "c" / "agent.sock")
            async with SSHSocketServer(settings), Tunnel(ts) as t:
                await t.wait_up(10)
                direct = grpc.aio.insecure_channel(f"unix:{sock}", options=CLIENT_OPTIONS)
                try:
                    d_lat = await _latency(direct)
                    t_lat = await _latency(t.channel)
                    await _throughput(direct)          # warm-up
                    await _throughput(t.channel)
                    for _ in range(ROUNDS):
                        d_tp.append(await _throughput(direct))
                        t_tp.append(await _throughput(t.channel))
                finally:
                    await direct.close()
    return d_lat, t_lat, d_tp, t_tp


async def _main() -> None:
    d_lat, t_lat, d_tps, t_tps = await measure()
    d_tp, t_tp = median(d_tps), median(t_tps)
    rows = []
    for label, fn in (("p50", 50), ("p90", 90), ("p99", 99)):
        a, b = percentile(d_lat, fn), percentile(t_lat, fn)
        rows.append([f"Ping latency {label} (µs)", f"{a:.0f}", f"{b:.0f}", f"{b / a:.2f}x"])
    rows.append(["bidi echo throughput (MB/s)", f"{d_tp:.1f}", f"{t_tp:.1f}", f"{t_tp / d_tp:.2f}x"])
    write_table(
        "transport",
        "gRPC through the asyncssh tunnel vs. the same server dialled directly",
        ["measure", "direct UNIX socket (baseline)", "through SSH tunnel", "tunnel / baseline"],
        rows,
        [
            (f"{PINGS} sequential Pings after 50 warm-up calls; {STREAM_MIB} MiB echoed in 64 KiB frames, "
             f"{ROUNDS} alternating rounds after one warm-up each (medians)."),
            "Client, tunnel and both servers share one process and one event loop (2 vCPUs).",
            f"Load average {load_average()}.",
        ],
    )


def run() -> None:
    """Run the transport benchmark and write benchmarks/results/transport.md."""
    asyncio.run(_main())
