"""A peer slow to open its HTTP/2 connection (a loaded host) still answers the first call."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import grpc

from common.client.calls import AgentCalls
from common.grpc_options import CLIENT_OPTIONS
from common.grpc_server import UnixGrpcServer
from tests.support.echo_services import echo_services

LATE = 1.0   # how long the peer takes to start answering, seconds (a loaded agent host)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


async def test_the_first_call_waits_out_a_slow_http2_handshake(short_tmp: Path) -> None:
    """gRPC's connect deadline (min_reconnect_backoff_ms) is not the reconnect delay: at 200 ms a
    peer whose SETTINGS frame came later than that failed the first call on a loaded host."""
    server = UnixGrpcServer(short_tmp / "srv" / "agent.sock", echo_services("slow-agent"))
    await server.start()

    async def late(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(LATE)   # the injected slowness, not a synchronisation
        up_reader, up_writer = await asyncio.open_unix_connection(str(short_tmp / "srv" / "agent.sock"))
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    front = await asyncio.start_unix_server(late, str(short_tmp / "front.sock"))
    channel = grpc.aio.insecure_channel(f"unix:{short_tmp / 'front.sock'}", options=CLIENT_OPTIONS)
    try:
        info = await AgentCalls("slow-agent", lambda: channel, call_timeout=10).ping()
        assert info.agent_id == "slow-agent"
    finally:
        await channel.close(grace=None)
        front.close()
        await server.stop(grace=0)
