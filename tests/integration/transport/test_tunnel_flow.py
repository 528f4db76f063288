"""The tunnel's use of the SSH wire: big packets both ways and no padding packets, big
messages, flow control, refusals."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncssh
import grpc
import pytest
from convocate.v1 import attach_pb2, attach_pb2_grpc, sessions_pb2, sessions_pb2_grpc

from common.errors import UnavailableError
from common.grpc_options import MAX_MESSAGE_BYTES
from common.ssh_data_path import DataPath
from common.ssh_server import SSHServerSettings, SSHSocketServer
from common.ssh_wire import CHANNEL_MAX_PKTSIZE, CHANNEL_WINDOW
from common.tunnel import Tunnel, TunnelSettings
from tests.integration.transport.conftest import HOST, Stack
from tests.support.keys import make_peer_keys
from tests.support.net import free_port
from tests.support.waiting import assert_eventually

MIB = 1024 * 1024


async def test_channels_use_the_large_packets_both_ways(
    stack: Stack, caplog: pytest.LogCaptureFixture,
) -> None:
    """Every channel the tunnel opens, and the server's side of it, carries 256 KiB packets.

    asyncssh logs each end's view of the other's window and packet size when a channel opens.
    """
    caplog.set_level(logging.DEBUG, logger="asyncssh")
    asyncssh.set_debug_level(2)
    try:
        async with Tunnel(stack.tunnel_settings()) as t:
            await t.wait_up(10)
            stub = attach_pb2_grpc.AttachStub(t.channel)
            call = stub.Attach(timeout=10)
            await call.write(attach_pb2.AttachRequest(detach=attach_pb2.Detach()))
            await call.done_writing()
            _ = [r async for r in call]
    finally:
        asyncssh.set_debug_level(1)
    sizes = [r.getMessage() for r in caplog.records if "Initial send window" in r.getMessage()]
    # The probe and the gRPC channel, each seen from both ends.
    assert len(sizes) >= 4, sizes
    expected = f"Initial send window {CHANNEL_WINDOW}, packet size {CHANNEL_MAX_PKTSIZE}"
    assert all(s.endswith(expected) for s in sizes), sizes


async def test_neither_end_sends_padding_packets(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    """Once the tunnel is up, a call is only its own packets: no empty SSH_MSG_IGNORE before
    each, from the client or from the server (asyncssh's packet log of both ends)."""
    caplog.set_level(logging.DEBUG, logger="asyncssh")
    async with Tunnel(stack.tunnel_settings()) as t:
        await t.wait_up(10)
        stub = sessions_pb2_grpc.SessionsStub(t.channel)
        await stub.Ping(sessions_pb2.PingRequest(client_id="warm-up"), timeout=5)
        asyncssh.set_debug_level(3)
        try:
            caplog.clear()
            assert (await stub.Ping(sessions_pb2.PingRequest(client_id="test"), timeout=5)).agent_id
        finally:
            asyncssh.set_debug_level(1)
    logged = [r.getMessage() for r in caplog.records]
    sent = [m.split("] ", 1)[1].split(",")[0] for m in logged if "] Sent MSG_" in m]
    assert any("Sent MSG_CHANNEL_DATA" in s for s in sent), sent
    assert not [s for s in sent if "MSG_IGNORE" in s], sent


async def test_messages_near_the_size_limit_echo_intact(stack: Stack) -> None:
    """Messages of 3 MiB (each many SSH packets) cross the tunnel both ways, intact and in order.

    The echoes are read while the messages are written, as a real attach client does: a client
    that writes everything first deadlocks once the echoes fill every buffer on the way back
    (HTTP/2 and SSH windows, sockets), and whether 18 MiB fit in them depends on how far gRPC's
    flow control has grown its windows, so such a test passes or hangs depending on timing.
    """
    size = MAX_MESSAGE_BYTES - MIB
    messages = [bytes([i]) * size for i in range(6)]

    async def outputs(call: grpc.aio.StreamStreamCall[attach_pb2.AttachRequest, attach_pb2.AttachResponse],
                      ) -> list[bytes]:
        return [r.output async for r in call if r.WhichOneof("frame") == "output"]

    async with Tunnel(stack.tunnel_settings()) as t:
        await t.wait_up(10)
        call = attach_pb2_grpc.AttachStub(t.channel).Attach(timeout=60)
        async with asyncio.TaskGroup() as tasks:
            reading = tasks.create_task(outputs(call))
            for m in messages:
                await call.write(attach_pb2.AttachRequest(input=m))
            await call.write(attach_pb2.AttachRequest(detach=attach_pb2.Detach()))
            await call.done_writing()
        echoed = reading.result()
    assert [hashlib.sha256(e).digest() for e in echoed] == [hashlib.sha256(m).digest() for m in messages]


async def test_reads_keep_the_one_keepalive_timer(stack: Stack) -> None:
    """Traffic leaves each end's keepalive timer in place (no cancel and reschedule per read)."""
    async with Tunnel(stack.tunnel_settings(keepalive_interval=60)) as t:
        await t.wait_up(10)
        client = t._conn
        assert client is not None
        (server,) = stack.ssh._live
        timers = client._keepalive_timer, server._keepalive_timer
        assert None not in timers
        stub = sessions_pb2_grpc.SessionsStub(t.channel)
        for i in range(50):
            await stub.Ping(sessions_pb2.PingRequest(client_id=f"c{i}"), timeout=5)
        assert (client._keepalive_timer, server._keepalive_timer) == timers
        assert not any(timer is None or timer.cancelled() for timer in timers)


async def test_a_quiet_connection_still_sends_keepalives_and_stays_up(
    stack: Stack, caplog: pytest.LogCaptureFixture,
) -> None:
    """With nothing to read for an interval, the client asks the server for a keepalive; the
    answers keep the tunnel up and the next call works."""
    caplog.set_level(logging.DEBUG, logger="asyncssh")
    async with Tunnel(stack.tunnel_settings(keepalive_interval=0.2, keepalive_count_max=3)) as t:
        await t.wait_up(10)
        stub = sessions_pb2_grpc.SessionsStub(t.channel)
        await stub.Ping(sessions_pb2.PingRequest(client_id="before"), timeout=5)

        def answered() -> int:
            return sum("Got keepalive response" in r.getMessage() for r in caplog.records)

        await assert_eventually(lambda: answered() >= 3, timeout=30, interval=0.1)
        assert t.up
        assert t.connects == 1
        assert (await stub.Ping(sessions_pb2.PingRequest(client_id="after"), timeout=5)).agent_id


async def _echo(channel: grpc.aio.Channel, messages: list[bytes]) -> list[bytes]:
    """Echo ``messages`` through one Attach stream, reading while writing."""
    call = attach_pb2_grpc.AttachStub(channel).Attach(timeout=60)

    async def outputs() -> list[bytes]:
        return [r.output async for r in call if r.WhichOneof("frame") == "output"]

    async with asyncio.TaskGroup() as tasks:
        reading = tasks.create_task(outputs())
        for m in messages:
            await call.write(attach_pb2.AttachRequest(input=m))
        await call.write(attach_pb2.AttachRequest(detach=attach_pb2.Detach()))
        await call.done_writing()
    return reading.result()


async def test_channel_data_takes_the_short_path_both_ways(stack: Stack) -> None:
    """With AES-GCM, the bytes of a stream go through ssh_data_path's sending and reading at
    both ends, and arrive intact."""
    calls: list[str] = []
    sends, deliveries = DataPath._send, DataPath._deliver

    def send(self: DataPath, channel_id: int, data: bytes) -> bool:
        sent = sends(self, channel_id, data)
        calls.append(f"send {sent}")
        return sent

    def deliver(self: DataPath, buffer: bytes, enc: Any) -> tuple[int, bool]:
        used, partial = deliveries(self, buffer, enc)
        calls.append(f"deliver {used > 0}")
        return used, partial

    messages = [bytes([i]) * (300 * 1024) for i in range(8)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DataPath, "_send", send)
        patch.setattr(DataPath, "_deliver", deliver)
        async with Tunnel(stack.tunnel_settings()) as t:
            await t.wait_up(10)
            echoed = await _echo(t.channel, messages)
    assert echoed == messages
    assert calls.count("send True") >= 2 * 8       # both ends, 300 KiB each way: 2 packets each
    assert calls.count("deliver True") >= 2 * 8
    assert "send False" not in calls


async def test_rekeying_in_the_middle_of_a_stream_loses_nothing(
    stack: Stack, caplog: pytest.LogCaptureFixture,
) -> None:
    """Keys renewed every 512 KiB the client sends: the short path hands each rekey to
    asyncssh, switches to the new keys, and every byte arrives in order."""
    caplog.set_level(logging.DEBUG, logger="asyncssh")
    messages = [bytes([i]) * (256 * 1024) for i in range(24)]
    async with Tunnel(stack.tunnel_settings()) as t:
        await t.wait_up(10)
        assert t._conn is not None
        t._conn._rekey_bytes = 512 * 1024
        echoed = await _echo(t.channel, messages)
        assert t.connects == 1
    assert [hashlib.sha256(e).digest() for e in echoed] == [hashlib.sha256(m).digest() for m in messages]
    assert sum(r.getMessage().endswith("Completed key exchange") for r in caplog.records) >= 2 * 4


async def test_a_packet_that_fails_its_tag_drops_the_connection(
    stack: Stack, caplog: pytest.LogCaptureFixture,
) -> None:
    """Bytes that do not authenticate are never delivered: asyncssh reads them, fails the
    MAC and drops the connection; the tunnel reconnects."""
    async with Tunnel(stack.tunnel_settings(recovery_max=0.1)) as t:
        await t.wait_up(10)
        conn = t._conn
        assert conn is not None
        caplog.set_level(logging.INFO, logger="asyncssh")
        length = 1024
        forged = length.to_bytes(4, "big") + bytes([8, 94]) + bytes(length - 2 + 16)
        conn.data_received(forged)
        await assert_eventually(lambda: t.connects == 2 and t.up, timeout=30)
        assert any("Sending disconnect: MAC verification failed" in r.getMessage() for r in caplog.records)
        stub = sessions_pb2_grpc.SessionsStub(t.channel)
        assert (await stub.Ping(sessions_pb2.PingRequest(client_id="after"), timeout=5)).agent_id


class _SlowSink:
    """A UNIX socket server that reads nothing until released, then hashes what it got."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.digests: list[tuple[int, bytes]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.release.wait()
        digest, count = hashlib.sha256(), 0
        while chunk := await reader.read(MIB):
            digest.update(chunk)
            count += len(chunk)
        if count:
            self.digests.append((count, digest.digest()))
        writer.close()


@pytest.fixture
async def slow_stack(short_tmp: Path) -> AsyncIterator[tuple[TunnelSettings, _SlowSink]]:
    """The SSH guard in front of a plain socket whose reader stalls (not gRPC)."""
    sink = _SlowSink()
    socket_path = short_tmp / "srv" / "sink.sock"
    socket_path.parent.mkdir(mode=0o700)
    server = await asyncio.start_unix_server(sink.handle, str(socket_path))
    port = free_port(HOST)
    keys = make_peer_keys(short_tmp / "keys", HOST, port)
    settings = SSHServerSettings(HOST, port, keys.host_key, keys.authorized_keys, socket_path)
    try:
        async with SSHSocketServer(settings):
            yield TunnelSettings("sink", HOST, port, keys.client_key, keys.known_hosts,
                                 short_tmp / "client" / "sink.sock"), sink
    finally:
        sink.release.set()
        server.close()
        await server.wait_closed()


async def test_a_stalled_reader_stops_the_sender_and_nothing_is_lost(
    slow_stack: tuple[TunnelSettings, _SlowSink],
) -> None:
    """While the far end reads nothing, the sender is held back after a bounded amount (the
    window plus socket buffers), not buffered without end; released, every byte arrives."""
    settings, sink = slow_stack
    total, chunk = 64 * MIB, bytes(range(256)) * 4096   # 1 MiB
    sent = 0
    async with Tunnel(settings) as t:
        await t.wait_up(10)
        reader, writer = await asyncio.open_unix_connection(str(t.settings.local_socket))

        async def send() -> None:
            nonlocal sent
            for _ in range(total // len(chunk)):
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
            writer.write_eof()

        sender = asyncio.create_task(send())
        seen: list[int] = []

        def stalled() -> bool:   # the sender made no progress over the last three looks
            seen.append(sent)
            assert not sender.done(), f"all {total} bytes were taken while nothing was read"
            return sent > 0 and len(seen) >= 3 and seen[-1] == seen[-2] == seen[-3]

        await assert_eventually(stalled, timeout=30, interval=0.2)
        assert sent <= CHANNEL_WINDOW + 8 * MIB   # the window plus kernel and transport buffers
        sink.release.set()
        await asyncio.wait_for(sender, 60)
        await assert_eventually(lambda: sink.digests, timeout=30)
        writer.close()
        del reader
    assert sink.digests == [(total, hashlib.sha256(chunk * (total // len(chunk))).digest())]


@pytest.mark.parametrize("path", ["/var/run/docker.sock", "convocate2"])
async def test_the_forward_to_another_socket_is_refused(stack: Stack, path: str) -> None:
    """A tunnel asked to forward to any other socket never comes up, and says why."""
    async with Tunnel(stack.tunnel_settings(remote_socket=path)) as t:
        with pytest.raises(UnavailableError, match="refused the tunnel to"):
            await t.wait_up(3)
        assert "only the convocate gRPC socket" in t.last_error
