"""The console's agent client over a real tunnel: a Ping the agent fails is tried again soon."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
from convocate.v1 import attach_pb2_grpc, sessions_pb2, sessions_pb2_grpc

from common.client.agent_client import AgentClient, ClientSettings
from common.grpc_server import Service, UnixGrpcServer
from common.registry import AgentRecord
from common.ssh_server import SSHServerSettings, SSHSocketServer
from tests.support.echo_services import EchoAttach, PingOnlySessions
from tests.support.keys import make_peer_keys
from tests.support.net import free_port
from tests.support.waiting import assert_eventually

HOST = "127.0.0.1"
BUSY = 3   # Pings the agent fails before it answers


class BusyAtFirst(PingOnlySessions):
    """Fails the first :data:`BUSY` Pings with UNAVAILABLE (an agent too loaded to answer), then answers."""

    async def Ping(  # noqa: N802 - gRPC method name
        self, request: sessions_pb2.PingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> sessions_pb2.PingResponse:
        if self.pings < BUSY:
            self.pings += 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "too busy to answer")
        return await super().Ping(request, context)


async def test_a_failed_ping_on_a_live_link_is_retried_soon_not_a_heartbeat_later(short_tmp: Path) -> None:
    """With a 60 s heartbeat, an agent whose first Pings fail is reachable within seconds."""
    port = free_port(HOST)
    keys = make_peer_keys(short_tmp / "keys", HOST, port)
    socket_path = short_tmp / "srv" / "agent.sock"
    busy = BusyAtFirst("busy-agent")  # type: ignore[abstract]  # only Ping is served
    server = UnixGrpcServer(socket_path, [
        Service("convocate.v1.Sessions", sessions_pb2_grpc.add_SessionsServicer_to_server, busy),
        Service("convocate.v1.Attach", attach_pb2_grpc.add_AttachServicer_to_server, EchoAttach()),
    ])
    await server.start()
    ssh = SSHSocketServer(SSHServerSettings(host=HOST, port=port, host_key=keys.host_key,
                                            authorized_keys=keys.authorized_keys, socket_path=socket_path,
                                            banner="convocate-agent"))
    await ssh.start()
    record = AgentRecord("busy-agent", HOST, port, keys.client_key, keys.known_hosts)
    client = AgentClient(record, ClientSettings(runtime_dir=short_tmp / "run", heartbeat_interval=60.0))
    try:
        await client.start()
        await assert_eventually(lambda: busy.pings >= 1, timeout=10)
        await assert_eventually(lambda: client.reachable, timeout=10)
        assert busy.pings >= BUSY
    finally:
        await client.close()
        ssh.close()
        await ssh.wait_closed()
        await server.stop(grace=0)
