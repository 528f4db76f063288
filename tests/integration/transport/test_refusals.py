"""The SSH guard refuses everything but the one socket, and every wrong key."""

from __future__ import annotations

import asyncio
import logging

import asyncssh
import pytest

from common.attach_wire import CHANNEL_NAME
from common.errors import UnavailableError
from common.ssh_keys import generate_keypair, pin_host_key
from common.tunnel import Tunnel
from tests.integration.transport.conftest import HOST, Stack
from tests.support.waiting import assert_eventually


async def _connect(stack: Stack) -> asyncssh.SSHClientConnection:
    return await stack.connect()


async def test_shell_exec_subsystem_and_pty_are_refused(stack: Stack) -> None:
    """Session channels (shell, exec, subsystem, pty) cannot be opened at all."""
    async with await _connect(stack) as conn:
        with pytest.raises(asyncssh.ChannelOpenError):
            await conn.create_process()  # shell
        with pytest.raises(asyncssh.ChannelOpenError):
            await conn.run("id", check=False)  # exec
        with pytest.raises(asyncssh.ChannelOpenError):
            await conn.create_process(subsystem="sftp")
        with pytest.raises(asyncssh.ChannelOpenError):
            await conn.create_process(term_type="xterm")  # pty + shell
        with pytest.raises(asyncssh.ChannelOpenError):
            await conn.start_sftp_client()


@pytest.mark.parametrize("path", ["/var/run/docker.sock", "/run/convocate/other.sock", "convocate2", "",
                                  CHANNEL_NAME])
async def test_other_socket_paths_are_refused(
    stack: Stack, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    """direct-streamlocal to any path but our own socket is refused, and logged."""
    caplog.set_level(logging.INFO)
    async with await _connect(stack) as conn:
        with pytest.raises(asyncssh.ChannelOpenError) as info:
            await conn.open_unix_connection(path)
        assert "only the convocate gRPC socket" in info.value.reason
    assert any("ssh request refused" in r.getMessage() and "direct-streamlocal" in r.getMessage()
               for r in caplog.records)


async def test_tcp_forwarding_both_ways_is_refused(stack: Stack) -> None:
    """direct-tcpip, tcpip-forward and streamlocal-forward are all refused."""
    async with await _connect(stack) as conn:
        with pytest.raises(asyncssh.ChannelOpenError):
            await conn.open_connection(HOST, stack.ssh.port)
        with pytest.raises(asyncssh.ChannelListenError):
            await conn.forward_remote_port("127.0.0.1", 0, HOST, 22)
        with pytest.raises(asyncssh.ChannelListenError):
            await conn.start_unix_server(asyncssh.SSHUNIXSession, str(stack.rundir / "x.sock"))


async def test_password_auth_is_refused(stack: Stack) -> None:
    """Password authentication is never offered, so a password login fails."""
    with pytest.raises(asyncssh.PermissionDenied):
        await asyncssh.connect(
            HOST, stack.ssh.port, username="claude", password="claude", client_keys=[],
            known_hosts=str(stack.keys.known_hosts), config=[], agent_path=None,
        )


async def test_wrong_client_key_is_refused(stack: Stack) -> None:
    """A key that is not in the authorized keys cannot log in; the tunnel says why."""
    stranger = stack.rundir / "stranger_key"
    generate_keypair(stranger, "stranger")
    async with Tunnel(stack.tunnel_settings(client_key=stranger)) as t:
        with pytest.raises(UnavailableError, match="refused our key"):
            await t.wait_up(2)


async def test_revoked_key_is_refused_without_restart(stack: Stack) -> None:
    """Emptying the authorized keys file locks the client out at its next login."""
    stack.keys.authorized_keys.write_text("")
    with pytest.raises(asyncssh.PermissionDenied):
        await _connect(stack)


async def test_changed_host_key_is_refused(stack: Stack) -> None:
    """A server whose host key differs from the pinned one is refused with a clear message."""
    other = generate_keypair(stack.rundir / "other_host_key", "impostor")
    pinned = stack.rundir / "pinned_known_hosts"
    pin_host_key(pinned, HOST, stack.ssh.port, other)
    async with Tunnel(stack.tunnel_settings(known_hosts=pinned)) as t:
        with pytest.raises(UnavailableError, match="does not match the pinned key"):
            await t.wait_up(2)


async def test_unknown_host_is_refused(stack: Stack) -> None:
    """A known-hosts file that does not list the server refuses it."""
    empty = stack.rundir / "empty_known_hosts"
    empty.write_text("")
    async with Tunnel(stack.tunnel_settings(known_hosts=empty)) as t:
        with pytest.raises(UnavailableError, match="pinned key"):
            await t.wait_up(2)


async def test_a_connection_arriving_while_the_server_closes_is_dropped(stack: Stack) -> None:
    """One the listener took just before close() is dropped as it arrives, never left open.

    close() closes the connections it knows; one accepted a moment earlier reaches the guard
    only afterwards, and nothing else would ever close it.
    """
    stack.ssh._shared.closing = True      # close() has begun; the listener still takes this one
    with pytest.raises((asyncssh.Error, OSError)):
        await _connect(stack)
    await assert_eventually(lambda: not stack.ssh._live, timeout=10)


async def test_a_forward_whose_connection_closed_while_its_socket_opened_is_closed(stack: Stack) -> None:
    """The client goes away while the server opens the guarded socket for its channel: the
    socket is closed at once (asyncssh drops such a channel without telling its session)."""
    held = await stack.gate_socket_opening()
    conn = await _connect(stack)
    opening_channel = asyncio.ensure_future(conn.open_unix_connection(str(stack.settings.socket_path)))
    try:
        await asyncio.wait_for(held.opening.wait(), 10)
        conn.abort()                       # gone while the server opens the socket
        await asyncio.wait_for(conn.wait_closed(), 10)
        held.gate.set()
        await assert_eventually(lambda: len(held.opened) == 1, timeout=10)
        await assert_eventually(lambda: held.opened[0].fileno() == -1, timeout=10)   # closed, not leaked
    finally:
        opening_channel.cancel()
        await asyncio.gather(opening_channel, return_exceptions=True)
