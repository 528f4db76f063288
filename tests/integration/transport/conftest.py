"""A real gRPC server on a UNIX socket behind a real restricted asyncssh server."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

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
