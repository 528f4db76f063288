"""A real agent process on 127.0.0.2 (real SSH, real Docker) and a tunnelled client to it."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from convocate.v1 import attach_pb2_grpc, sessions_pb2, sessions_pb2_grpc

from common.tunnel import Tunnel
from tests.support.agent_proc import AgentProcess
from tests.support.images import offline_image  # noqa: F401 - the session fixture, re-exported
from tests.support.keys import make_peer_keys
from tests.support.net import free_port

HOST = "127.0.0.2"
TIMEOUT = 20.0
CGROUP_PARENT = "convocate-it.slice"


@dataclass
class Client:
    """Stubs through one tunnel to the agent (made per use: the channel changes on reconnect)."""

    tunnel: Tunnel

    @property
    def sessions(self) -> sessions_pb2_grpc.SessionsAsyncStub:
        """The Sessions stub on the current channel."""
        return sessions_pb2_grpc.SessionsStub(self.tunnel.channel)

    @property
    def attach(self) -> attach_pb2_grpc.AttachAsyncStub:
        """The Attach stub on the current channel."""
        return attach_pb2_grpc.AttachStub(self.tunnel.channel)

    async def create(self, name: str, *, start: bool = False, **kw: object) -> sessions_pb2.Session:
        """Create a session (started when ``start``)."""
        req = sessions_pb2.CreateSessionRequest(name=name, start=start, **kw)  # type: ignore[arg-type]
        return await self.sessions.CreateSession(req, timeout=TIMEOUT)

    async def restart(self, session_id: str) -> sessions_pb2.Session:
        """Restart (start) a session."""
        req = sessions_pb2.RestartSessionRequest(id=session_id)
        return await self.sessions.RestartSession(req, timeout=TIMEOUT)

    async def kill(self, session_id: str) -> None:
        """Kill (stop) a session."""
        await self.sessions.KillSession(sessions_pb2.KillSessionRequest(id=session_id), timeout=TIMEOUT)

    async def delete(self, session_id: str) -> None:
        """Delete a session."""
        await self.sessions.DeleteSession(sessions_pb2.DeleteSessionRequest(id=session_id), timeout=TIMEOUT)

    async def get(self, session_id: str) -> sessions_pb2.Session:
        """Get one session."""
        return await self.sessions.GetSession(sessions_pb2.GetSessionRequest(id=session_id), timeout=TIMEOUT)


@pytest.fixture(scope="module")
def agent(offline_image: str) -> Iterator[AgentProcess]:  # noqa: F811 - fixture injection
    """One agent process for the module (its containers are removed afterwards)."""
    with tempfile.TemporaryDirectory(prefix="cva-") as d:
        # A status target where nothing listens: the emitter is wired in and reports the link down.
        status_port = free_port(HOST)
        status_keys = make_peer_keys(Path(d) / "status-keys", HOST, status_port, "status")
        config = {
            "cgroup_parent": CGROUP_PARENT, "status_host": HOST, "status_port": status_port,
            "status_client_key": status_keys.client_key, "status_known_hosts": status_keys.known_hosts,
        }
        proc = AgentProcess(Path(d), host=HOST, image=offline_image, config=config)
        proc.start()
        try:
            yield proc
        finally:
            proc.close()
            remove_cgroup_dirs(CGROUP_PARENT)


def remove_cgroup_dirs(parent: str) -> None:
    """Docker leaves CgroupParent directories behind (cgroupfs driver): remove the empty ones."""
    for cg in Path("/sys/fs/cgroup").glob(f"*/{parent}"):
        for path in [*sorted((p for p in cg.rglob("*") if p.is_dir()), reverse=True), cg]:
            with contextlib.suppress(OSError):
                path.rmdir()


async def open_client(agent: AgentProcess, name: str = "cli") -> Client:
    """A tunnel (up) and stubs to ``agent``."""
    tunnel = Tunnel(agent.tunnel_settings(local_socket=agent.root / name / "agent.sock"))
    await tunnel.start()
    await tunnel.wait_up(15)
    return Client(tunnel)


@pytest.fixture
async def client(agent: AgentProcess) -> AsyncIterator[Client]:
    """A tunnelled client to the module's agent."""
    c = await open_client(agent)
    try:
        yield c
    finally:
        await c.tunnel.close()
