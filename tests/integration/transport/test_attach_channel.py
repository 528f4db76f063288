"""The attach channel at the transport: the guard's in-process channel, and the gRPC fallback.

The ``stack`` server has no attach handler (like an agent older than the channel, or the
status service): the virtual name is refused there and clients attach over gRPC.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Callable

import asyncssh
import pytest

from common.attach_wire import CHANNEL_NAME
from common.client.agent_client import AgentClient, ClientSettings
from common.client.attach_call import AttachCall
from common.client.attach_channel_call import AttachChannelCall
from common.domain import AttachEnded, EndReason
from common.errors import UnavailableError
from common.registry import AgentRecord
from common.ssh_limits import SSHLimits
from common.ssh_server import SSHSocketServer
from common.tunnel import Tunnel
from tests.integration.transport.conftest import HOST, Stack
from tests.support.waiting import assert_eventually


class Echo(asyncssh.SSHUNIXSession[bytes]):
    """An in-process channel handler that echoes its bytes and counts itself out when closed."""

    def __init__(self, on_close: Callable[[], None], opened: list[str]) -> None:
        self._on_close = on_close
        self._opened = opened
        self._chan: asyncssh.SSHUNIXChannel[bytes] | None = None

    def connection_made(self, chan: asyncssh.SSHUNIXChannel[bytes]) -> None:
        self._chan = chan

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        assert self._chan is not None
        self._chan.write(bytes(data))

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_close()


class Collect(asyncssh.SSHUNIXSession[bytes]):
    """The client's end: keeps what arrives."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.kinds: set[type] = set()
        self.closed = asyncio.Event()

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self.kinds.add(type(data))
        self.received += data

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()


def agent_client(stack: Stack) -> AgentClient:
    """The console's client of the stack's server."""
    record = AgentRecord("test-agent", HOST, stack.ssh.port, stack.keys.client_key, stack.keys.known_hosts)
    return AgentClient(record, ClientSettings(runtime_dir=stack.rundir / "run", heartbeat_interval=60.0))


async def test_the_virtual_name_is_refused_without_a_handler(stack: Stack) -> None:
    """A server given no attach handler refuses the channel like any other path (administratively)."""
    async with Tunnel(stack.tunnel_settings()) as t:
        await t.wait_up(10)
        with pytest.raises(asyncssh.ChannelOpenError) as info:
            await t.open_channel(Collect, CHANNEL_NAME)
        assert info.value.code == asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED
        assert t.refuses(CHANNEL_NAME)
        call = AttachChannelCall(t, "test-agent")
        with pytest.raises(UnavailableError, match="refused the attach channel"):
            await call.start("s1", rows=24, cols=80, term="xterm")


async def test_an_old_agent_is_attached_over_grpc_asked_once_per_connection(stack: Stack) -> None:
    """The console falls back to gRPC Attach, remembers the refusal, and forgets it on a new connection."""
    async with agent_client(stack) as client:
        await client.tunnel.wait_up(10)
        call = client.attach()
        assert isinstance(call, AttachChannelCall)
        await call.start("s1", rows=24, cols=80, term="xterm")
        assert not call.on_channel
        await call.send_input(b"over grpc")
        assert await call.read() == b"over grpc"
        await call.detach()
        end = await call.read()
        assert isinstance(end, AttachEnded)
        assert end.reason is EndReason.DETACHED
        call.cancel()
        assert isinstance(client.attach(), AttachCall)      # remembered: straight to gRPC
        # A new connection asks again (the agent may have been upgraded meanwhile).
        stack.ssh.close()
        await stack.ssh.wait_closed()
        await assert_eventually(lambda: not client.tunnel.up, timeout=5)
        stack.ssh = SSHSocketServer(stack.settings)
        await stack.ssh.start()
        await client.tunnel.wait_up(15)
        assert isinstance(client.attach(), AttachChannelCall)


async def test_a_handled_channel_carries_bytes_both_ways_and_counts_against_the_channel_limit(
    stack: Stack,
) -> None:
    """The guard answers the name in-process; the channel closes, the count goes down again."""
    opened: list[str] = []

    def handler(origin: str, on_close: Callable[[], None]) -> Echo:
        opened.append(origin)
        return Echo(on_close, opened)

    stack.ssh.close()
    await stack.ssh.wait_closed()
    settings = dataclasses.replace(stack.settings, attach_channel=handler, limits=SSHLimits(max_channels=2))
    stack.ssh = SSHSocketServer(settings)
    await stack.ssh.start()
    async with await asyncssh.connect(
        HOST, stack.ssh.port, username="claude", client_keys=[str(stack.keys.client_key)],
        known_hosts=str(stack.keys.known_hosts), config=[], agent_path=None,
    ) as conn:
        first, second, third = Collect(), Collect(), Collect()
        first_chan, _ = await conn.create_unix_connection(lambda: first, CHANNEL_NAME)
        payload = os.urandom(3 * 1024 * 1024)   # more than a window: flow control both ways
        first_chan.write(payload)
        await assert_eventually(lambda: len(first.received) >= len(payload), timeout=20)
        assert bytes(first.received) == payload
        assert opened[0].startswith(f"{HOST}:")
        assert " key SHA256:" in opened[0]
        await conn.create_unix_connection(lambda: second, CHANNEL_NAME)
        with pytest.raises(asyncssh.ChannelOpenError) as info:
            await conn.create_unix_connection(Collect, CHANNEL_NAME)
        assert info.value.code == asyncssh.OPEN_RESOURCE_SHORTAGE
        first_chan.close()
        await asyncio.wait_for(first.closed.wait(), 5)
        chan, _ = await conn.create_unix_connection(lambda: third, CHANNEL_NAME)
        chan.write(b"again")
        await assert_eventually(lambda: bytes(third.received) == b"again", timeout=5)
        assert not second.closed.is_set()


async def test_the_channel_takes_the_aes_gcm_data_path_at_both_ends(stack: Stack) -> None:
    """Data arrives as views of the decrypted packet (``common.ssh_data_path``), not asyncssh's copies."""
    kinds: list[type] = []

    class Typed(Echo):
        def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
            kinds.append(type(data))
            super().data_received(data, datatype)

    def handler(origin: str, on_close: Callable[[], None]) -> Echo:
        return Typed(on_close, [])

    stack.ssh.close()
    await stack.ssh.wait_closed()
    stack.ssh = SSHSocketServer(dataclasses.replace(stack.settings, attach_channel=handler))
    await stack.ssh.start()
    async with Tunnel(stack.tunnel_settings(port=stack.ssh.port)) as t:
        await t.wait_up(10)
        chan, got = await t.open_channel(Collect, CHANNEL_NAME)
        chan.write(b"through the data path")
        await assert_eventually(lambda: bytes(got.received) == b"through the data path", timeout=5)
        assert kinds
        assert set(kinds) == {memoryview}       # the agent's end
        assert got.kinds == {memoryview}        # the client's end
