"""A real gRPC server on a UNIX socket behind a real restricted asyncssh server."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh
import pytest

from common.grpc_server import UnixGrpcServer
from common.ssh_server import SSHServerSettings, SSHSocketServer
from common.tunnel import TunnelSettings
from tests.support.echo_services import echo_services
from tests.support.keys import PeerKeys, make_peer_keys
from tests.support.net import free_port

HOST = "127.0.0.1"


@dataclass
class Stack:
    """The server side of one peer, and what a client needs to reach it."""

    keys: PeerKeys
    grpc: UnixGrpcServer
    ssh: SSHSocketServer
    settings: SSHServerSettings
    rundir: Path

    def tunnel_settings(self, **overrides: object) -> TunnelSettings:
        values: dict[str, object] = {
            "name": "test-agent",
            "host": HOST,
            "port": self.ssh.port,
            "client_key": self.keys.client_key,
            "known_hosts": self.keys.known_hosts,
            "local_socket": self.rundir / "client" / "agent.sock",
        }
        values.update(overrides)
        return TunnelSettings(**values)  # type: ignore[arg-type]

    async def connect(self) -> asyncssh.SSHClientConnection:
        """A plain asyncssh client connection with the peer's key, the host key pinned."""
        return await asyncssh.connect(
            HOST, self.ssh.port, username="claude", client_keys=[str(self.keys.client_key)],
            known_hosts=str(self.keys.known_hosts), config=[], agent_path=None,
        )

    async def gate_socket_opening(self) -> SocketGate:
        """Restart the SSH server so that opening the gRPC socket for a channel waits on a gate."""
        gate = SocketGate()

        async def open_socket(_key: asyncssh.SSHKey) -> socket.socket:
            gate.opening.set()
            await gate.gate.wait()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, str(self.settings.socket_path))
            gate.opened.append(sock)
            return sock

        self.ssh.close()
        await self.ssh.wait_closed()
        self.ssh = SSHSocketServer(dataclasses.replace(self.settings, open_socket=open_socket))
        await self.ssh.start()
        return gate


@dataclass
class SocketGate:
    """The server's socket openings held (:meth:`Stack.gate_socket_opening`): ``opening`` is set
    when one begins, each waits for ``gate``, and the sockets opened are in ``opened``."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)
    opening: asyncio.Event = field(default_factory=asyncio.Event)
    opened: list[socket.socket] = field(default_factory=list)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short temp directory (UNIX socket paths must stay under 107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="cvt-") as d:
        yield Path(d)


@pytest.fixture
async def stack(short_tmp: Path) -> AsyncIterator[Stack]:
    """gRPC (Ping + echo Attach) on a socket, guarded by the SSH server on loopback."""
    port = free_port(HOST)
    keys = make_peer_keys(short_tmp / "keys", HOST, port)
    socket_path = short_tmp / "srv" / "agent.sock"
    grpc_server = UnixGrpcServer(socket_path, echo_services())
    await grpc_server.start()
    settings = SSHServerSettings(
        host=HOST, port=port, host_key=keys.host_key, authorized_keys=keys.authorized_keys,
        socket_path=socket_path, banner="convocate-agent",
    )
    ssh = SSHSocketServer(settings)
    await ssh.start()
    stack = Stack(keys, grpc_server, ssh, settings, short_tmp)
    try:
        yield stack
    finally:
        stack.ssh.close()  # a test may have replaced the server (a restart)
        await stack.ssh.wait_closed()
        await grpc_server.stop(grace=0)
