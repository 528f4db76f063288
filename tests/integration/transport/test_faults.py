"""Faults on the server side, in a separate process: freeze (black hole) and kill."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from convocate.v1 import sessions_pb2, sessions_pb2_grpc

from common.tunnel import Tunnel, TunnelSettings
from tests.support.keys import PeerKeys, make_peer_keys
from tests.support.net import free_port
from tests.support.waiting import assert_eventually

HOST = "127.0.0.1"


class ServerProcess:
    """The echo server as a child process that can be frozen, killed and restarted."""

    def __init__(self, root: Path, port: int, keys: PeerKeys) -> None:
        self.argv = [
            sys.executable, "-m", "tests.support.echo_server", "--host", HOST, "--port", str(port),
            "--host-key", str(keys.host_key), "--authorized-keys", str(keys.authorized_keys),
            "--socket", str(root / "srv" / "agent.sock"),
        ]
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(*self.argv, stdout=asyncio.subprocess.PIPE)
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        assert line.strip() == b"ready"

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await asyncio.wait_for(self.proc.wait(), 10)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)


@pytest.fixture
async def server() -> AsyncIterator[tuple[ServerProcess, TunnelSettings]]:
    """An echo server process on loopback and the tunnel settings to reach it."""
    with tempfile.TemporaryDirectory(prefix="cvf-") as d:
        root = Path(d)
        port = free_port(HOST)
        keys = make_peer_keys(root / "keys", HOST, port)
        srv = ServerProcess(root, port, keys)
        await srv.start()
        settings = TunnelSettings(
            name="frozen", host=HOST, port=port, client_key=keys.client_key, known_hosts=keys.known_hosts,
            local_socket=root / "cli" / "agent.sock", keepalive_interval=0.5, keepalive_count_max=3,
            backoff_initial=0.1, backoff_max=0.5,
        )
        try:
            yield srv, settings
        finally:
            with_signal = srv.proc is not None and srv.proc.returncode is None
            if with_signal:
                srv.signal(signal.SIGCONT)
            await srv.kill()


async def test_frozen_server_is_noticed_and_replaced(server: tuple[ServerProcess, TunnelSettings]) -> None:
    """A black-holed server is detected by keepalives; a call with a deadline fails, never hangs."""
    srv, settings = server
    async with Tunnel(settings) as t:
        await t.wait_up(10)
        stub = sessions_pb2_grpc.SessionsStub(t.channel)
        assert (await stub.Ping(sessions_pb2.PingRequest(), timeout=5)).agent_id == "test-agent"
        srv.signal(signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Ping(sessions_pb2.PingRequest(), timeout=1)
        assert info.value.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE)
        await assert_eventually(lambda: not t.up, timeout=10)
        detected = time.monotonic() - started
        assert detected < 10
        srv.signal(signal.SIGCONT)
        await srv.kill()
        await srv.start()
        await t.wait_up(15)
        stub = sessions_pb2_grpc.SessionsStub(t.channel)
        assert (await stub.Ping(sessions_pb2.PingRequest(), timeout=5)).agent_id == "test-agent"
