"""Attach through the agent and the SSH tunnel against raw `docker exec -it ... tmux attach`.

Both attach to the same tmux session in the same container (the offline session image,
a real agent process on 127.0.0.2), so the difference is what convocate adds: the gRPC
Attach stream, the asyncssh tunnel and the agent's exec relay.
Measured: keystroke round trip (a key typed at the shell prompt until its echo arrives)
and bulk output throughput (``seq`` printed inside the session).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import struct
import termios
import time
from pathlib import Path

import grpc

from benchmarks.agent_session import agent_session
from benchmarks.report import percentile, write_table
from common.client.attach_call import AttachCall

__all__ = ["run"]

KEYS = 200
SEQ_N = 200_000   # about 1.3 MB of output
MARK = "BENCH-DONE"


class _Raw:
    """`docker exec -it CTR tmux attach` in a local pty: the baseline."""

    def __init__(self, container: str) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # child: size the pty, then exec at once
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
            os.execvp("docker", ["docker", "exec", "-it", "-u", "claude", "-e", "LC_ALL=C.UTF-8", container,
                                 "tmux", "attach", "-t", "claude"])
        self.buf = b""

    async def read_until(self, needle: bytes, timeout: float = 30) -> None:
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout
        while needle not in self.buf:
            fut: asyncio.Future[bytes] = loop.create_future()
            def ready(f: asyncio.Future[bytes] = fut) -> None:
                if not f.done():
                    f.set_result(os.read(self.fd, 65536))

            loop.add_reader(self.fd, ready)
            try:
                self.buf += await asyncio.wait_for(fut, max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                raise TimeoutError(f"{needle!r} not seen; got {self.buf[-300:]!r}") from None
            finally:
                loop.remove_reader(self.fd)

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def close(self) -> None:
        self.write(b"\x02d")
        os.close(self.fd)
        os.waitpid(self.pid, 0)


class _Grpc:
    """The Attach stream, through the tunnel."""

    def __init__(self, channel: grpc.aio.Channel, session_id: str) -> None:
        self.session_id = session_id
        self.call = AttachCall(channel, "bench")
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()   # None: detach
        self.buf = b""
        self._sender: asyncio.Task[None] | None = None

    async def _send(self) -> None:
        while (data := await self.queue.get()) is not None:
            await self.call.send_input(data)
        await self.call.detach()

    async def read_until(self, needle: bytes, timeout: float = 30) -> None:
        if self._sender is None:
            await self.call.start(self.session_id, rows=24, cols=80, term="")
            self._sender = asyncio.create_task(self._send())
        deadline = time.monotonic() + timeout
        while needle not in self.buf:
            frame = await asyncio.wait_for(self.call.read(), max(0.01, deadline - time.monotonic()))
            if frame is None:
                raise RuntimeError("the stream ended")
            if isinstance(frame, bytes):
                self.buf += frame

    def write(self, data: bytes) -> None:
        self.queue.put_nowait(data)

    async def close(self) -> None:
        self.queue.put_nowait(None)
        if self._sender is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._sender, 5)
        self.call.cancel()


async def _measure(client: _Raw | _Grpc) -> tuple[list[float], float]:
    await client.read_until(b"$ ", 20)  # the prompt
    rtts: list[float] = []
    for i in range(KEYS):
        key = b"abcdefghij"[i % 10 : i % 10 + 1]
        client.buf = b""
        t0 = time.perf_counter_ns()
        client.write(key)
        await client.read_until(key, 10)
        rtts.append((time.perf_counter_ns() - t0) / 1000)
    client.write(b"\x15")  # Ctrl-U: clear the typed line
    client.buf = b""
    started = time.perf_counter()
    client.write(f"seq 1 {SEQ_N}; echo {MARK[:5]}''{MARK[5:]}\r".encode())
    await client.read_until(MARK.encode(), 120)
    seconds = time.perf_counter() - started
    return rtts, seconds


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _main() -> None:
    async with agent_session("bench") as (agent, tunnel, s):
        assert agent.proc is not None
        rss_idle = _rss_mib(agent.proc.pid)
        raw = _Raw(f"convocate-session-{s.id}")
        try:
            raw_rtt, raw_s = await _measure(raw)
        finally:
            raw.close()
        ours = _Grpc(tunnel.channel, s.id)
        try:
            our_rtt, our_s = await _measure(ours)
            rss_attached = _rss_mib(agent.proc.pid)
        finally:
            await ours.close()
    rows = []
    for label, q in (("p50", 50), ("p90", 90), ("p99", 99)):
        a, b = percentile(raw_rtt, q), percentile(our_rtt, q)
        rows.append([f"keystroke round trip {label} (µs)", f"{a:.0f}", f"{b:.0f}", f"{b / a:.2f}x"])
    rows.append([f"`seq 1 {SEQ_N}` through tmux (s)", f"{raw_s:.2f}", f"{our_s:.2f}",
                 f"{our_s / raw_s:.2f}x"])
    write_table(
        "attach",
        "Attach: convocate (gRPC + SSH tunnel + agent) vs. raw docker exec -it tmux attach",
        ["measure", "docker exec -it (baseline)", "convocate Attach", "convocate / baseline"],
        rows,
        [f"{KEYS} keys typed at a busybox shell prompt inside the session's tmux, one at a time.",
         "Same container, same tmux session, one after the other; agent on 127.0.0.2 through asyncssh.",
         (f"Agent process RSS: {rss_idle:.1f} MiB with one session, {rss_attached:.1f} MiB after "
         "streaming the output to one viewer.")],
    )


def run() -> None:
    """Run the attach benchmark and write benchmarks/results/attach.md."""
    asyncio.run(_main())
