"""One side of the transport benchmark, in its own processes: ``python -m benchmarks.transport_side``.

``serve DIR``: the server end, as an agent runs it: the echo gRPC server on a UNIX
socket behind the restricted SSH server. Prints one ``@@`` line (JSON: where to reach
it), serves until its stdin closes.

``client [--one-process]``: the client end, as the console runs it: a :class:`Tunnel`
and a direct channel to the same gRPC socket. It starts its own ``serve`` child (or,
with ``--one-process``, serves in its own event loop), then answers commands read
from stdin, one per line, each with one ``@@`` JSON line: ``ping direct|tunnel N``
(latencies in µs) and ``bidi direct|tunnel MIB`` (MB/s), both with the CPU seconds
the client and server processes spent on it. The code is whatever ``common`` this
interpreter imports: the parent runs a base revision's side with it first on
PYTHONPATH, for before/after figures in one run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc

from common.client.attach_call import AttachCall
from common.client.calls import AgentCalls
from common.grpc_options import CLIENT_OPTIONS
from common.grpc_server import UnixGrpcServer
from common.ssh_server import SSHServerSettings, SSHSocketServer
from common.tunnel import Tunnel, TunnelSettings
from tests.support.echo_services import echo_services
from tests.support.keys import make_peer_keys
from tests.support.net import free_port

__all__ = ["MARK", "cpu_seconds"]

MARK = "@@"
CHUNK = 64 * 1024
WARMUP_PINGS = 50


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of process ``pid`` so far (schedstat, ns resolution)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def _reply(obj: dict[str, Any]) -> None:
    print(MARK + json.dumps(obj), flush=True)


@contextlib.asynccontextmanager
async def _serving(root: Path) -> AsyncIterator[dict[str, Any]]:
    port = free_port()
    keys = make_peer_keys(root / "k", "127.0.0.1", port)
    sock = root / "s" / "agent.sock"
    async with UnixGrpcServer(sock, echo_services("bench")):
        settings = SSHServerSettings("127.0.0.1", port, keys.host_key, keys.authorized_keys, sock)
        async with SSHSocketServer(settings):
            yield {"port": port, "socket": str(sock), "client_key": str(keys.client_key),
                   "known_hosts": str(keys.known_hosts), "pid": os.getpid()}


async def _serve(root: Path) -> None:
    async with _serving(root) as where:
        _reply(where)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def _pings(channel: grpc.aio.Channel, n: int) -> list[float]:
    calls = AgentCalls("bench", lambda: channel, call_timeout=5)
    for _ in range(WARMUP_PINGS):
        await calls.ping()
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        await calls.ping()
        out.append((time.perf_counter_ns() - t0) / 1000)
    return out


async def _bidi(channel: grpc.aio.Channel, mib: int) -> float:
    """MB/s of one-way payload echoed through one Attach stream in 64 KiB frames."""
    call = AttachCall(channel, "bench")
    payload = b"x" * CHUNK
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
        for _ in range(mib * 1024 * 1024 // CHUNK):
            await call.send_input(payload)
        await call.detach()
        await call.done_writing()
        await asyncio.wait_for(task, 300)
    finally:
        call.cancel()
    return got / (time.perf_counter() - t0) / 1e6


@contextlib.asynccontextmanager
async def _server(root: Path, one_process: bool) -> AsyncIterator[dict[str, Any]]:
    if one_process:
        async with _serving(root) as where:
            yield where
        return
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.transport_side", "serve", str(root),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert child.stdin is not None
    assert child.stdout is not None
    try:
        async with asyncio.timeout(60):
            while (line := (await child.stdout.readline()).decode()) and not line.startswith(MARK):
                pass   # the child's log lines
        if not line.startswith(MARK):
            raise RuntimeError(f"the transport server exited early ({await child.wait()})")
        yield json.loads(line[len(MARK):])
    finally:
        child.stdin.close()
        try:
            await asyncio.wait_for(child.wait(), 10)
        except TimeoutError:
            child.kill()
            await child.wait()


async def _client(one_process: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="cvb-") as d:
        root = Path(d)
        async with _server(root, one_process) as where:
            ts = TunnelSettings("bench", "127.0.0.1", where["port"], Path(where["client_key"]),
                                Path(where["known_hosts"]), root / "c" / "agent.sock")
            async with Tunnel(ts) as tunnel:
                await tunnel.wait_up(15)
                direct = grpc.aio.insecure_channel(f"unix:{where['socket']}", options=CLIENT_OPTIONS)
                channels: dict[str, Callable[[], grpc.aio.Channel]] = {
                    "direct": lambda: direct, "tunnel": lambda: tunnel.channel}
                server_pid = int(where["pid"])
                try:
                    _reply({"ready": True})
                    while line := await asyncio.to_thread(sys.stdin.readline):
                        what, path, amount = line.split()
                        c0, s0 = cpu_seconds(os.getpid()), cpu_seconds(server_pid)
                        if what == "ping":
                            result: object = await _pings(channels[path](), int(amount))
                        else:
                            result = await _bidi(channels[path](), int(amount))
                        client_cpu = cpu_seconds(os.getpid()) - c0
                        server_cpu = 0.0 if one_process else cpu_seconds(server_pid) - s0
                        _reply({"result": result, "client_cpu": client_cpu, "server_cpu": server_cpu})
                finally:
                    await direct.close()


def main(argv: list[str]) -> None:
    """``serve DIR`` or ``client [--one-process]``."""
    if argv[:1] == ["serve"]:
        asyncio.run(_serve(Path(argv[1])))
    else:
        asyncio.run(_client("--one-process" in argv))


if __name__ == "__main__":
    main(sys.argv[1:])
