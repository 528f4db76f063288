"""The restricted SSH server in front of each gRPC socket (agent :222, status :223).

It accepts public-key authentication only and opens exactly one kind of channel:
``direct-streamlocal`` to its own gRPC socket. The client may name that socket by its
real path or by the alias :data:`SOCKET_ALIAS`, so it never needs to know the remote
path. A server given an ``attach_channel`` handler (the agent) also accepts the virtual
name :data:`common.attach_wire.CHANNEL_NAME`, answered in-process by that handler rather
than forwarded (the attach stream without gRPC's socket and thread hops); without one,
that name is refused like any other. Shell, exec, subsystems, pty, X11, agent and TCP
forwarding, remote listeners and every other socket path (``/var/run/docker.sock``
above all) are refused, and refusals are logged with the client's address and key
fingerprint (rate-limited).

The authorized-keys file is read at each authentication, so adding or revoking a key
takes effect without a restart. Its lines may carry OpenSSH options (init-agent writes
``restrict,command="/bin/false"`` so the same line is useless to OpenSSH): this server
honours ``from=`` and ignores the rest, since it never runs a command anyway.

Floods are bounded (:mod:`common.ssh_limits`): unauthenticated connections in total
and per source, a 10 s login timeout, failed keys and refused requests per connection
(then it is disconnected), channels open at once per connection, and refusal logs.
GSSAPI is off whatever libraries the host has.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh
from asyncssh.forward import SSHForwarder

from common.attach_wire import CHANNEL_NAME
from common.logging import get_logger
from common.ssh_data_path import DataPath
from common.ssh_keys import fingerprint, load_or_create_host_key
from common.ssh_limits import Admission, RefusalLog, SSHLimits
from common.ssh_wire import (  # the two names both ends share are defined there: a client loads no server
    CHANNEL_MAX_PKTSIZE,
    CHANNEL_WINDOW,
    ENCRYPTION_ALGS,
    SOCKET_ALIAS,
    tune_channel,
    tune_connection,
)

__all__ = ["ENCRYPTION_ALGS", "SOCKET_ALIAS", "ChannelHandler", "SSHLimits", "SSHServerSettings",
           "SSHSocketServer"]

log = get_logger(__name__)

# Answers a channel opened to CHANNEL_NAME in-process: called with who opened it (peer
# and key, for its logs) and a callback the session must call once when the channel
# closes (the channel count); returns the session that handles the channel's bytes.
ChannelHandler = Callable[[str, Callable[[], None]], asyncssh.SSHUNIXSession[bytes]]


@dataclass(frozen=True)
class SSHServerSettings:
    """Where the server listens and what it guards."""

    host: str
    port: int
    host_key: Path
    authorized_keys: Path
    socket_path: Path
    banner: str = "convocate"
    host_key_comment: str = "convocate-host"
    keepalive_interval: float = 15.0
    keepalive_count_max: int = 3
    login_timeout: float = 10.0
    limits: SSHLimits = field(default_factory=SSHLimits)
    # Connects the guarded socket for the authenticated key instead of a plain connect
    # (the status service binds each agent's stream to the agent its key names).
    open_socket: Callable[[asyncssh.SSHKey], Awaitable[socket.socket]] | None = None
    # The in-process attach channel (the agent's); None refuses CHANNEL_NAME.
    attach_channel: ChannelHandler | None = None


class _Counted(SSHForwarder):
    """The channel side of one forwarded connection; tells the guard when it closes."""

    def __init__(self, peer: SSHForwarder, on_close: Callable[[], None]) -> None:
        super().__init__(peer)
        self._on_close: Callable[[], None] | None = on_close

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()


@dataclass
class _Shared:
    """What every connection of one server shares."""

    settings: SSHServerSettings
    live: set[asyncssh.SSHServerConnection]
    admission: Admission
    refusals: RefusalLog
    closing: bool = False       # close() was called: a connection still arriving is dropped


class _Guard(asyncssh.SSHServer):
    """Per-connection policy: who may log in and which channel may be opened."""

    def __init__(self, shared: _Shared) -> None:
        self._shared = shared
        self._settings = shared.settings
        self._limits = shared.settings.limits
        self._conn: asyncssh.SSHServerConnection | None = None
        # The gRPC sockets this connection's channels opened and that are still open: closed
        # with the connection, whatever asyncssh did with their channels.
        self._forwards: set[SSHForwarder] = set()
        self._lost = False
        self._data_path: DataPath | None = None
        self._addr = ""
        self._peer = "?"
        self._key_fp = ""
        self._key: asyncssh.SSHKey | None = None
        self._auth_failures = 0
        self._refused = 0
        self._channels = 0

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._data_path = tune_connection(conn)
        self._shared.live.add(conn)
        peer = conn.get_extra_info("peername")
        self._addr = str(peer[0]) if peer else ""
        self._peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        loop = asyncio.get_running_loop()

        def drop() -> None:
            loop.call_soon(conn.abort)

        if self._shared.closing:     # accepted just before the listener closed: nobody would close it
            drop()
            return
        if not self._shared.admission.admit(conn, self._addr, drop):
            self._shared.refusals.warning("ssh connection refused: too many unauthenticated from this source",
                                          peer=self._peer,
                                          limit=self._limits.max_unauthenticated_per_source)
            drop()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        for forward in list(self._forwards):
            forward.close()
        self._forwards.clear()
        if self._conn is not None:
            self._shared.live.discard(self._conn)
            self._shared.admission.done(self._conn)
        if self._key_fp:
            log.info("ssh connection closed", peer=self._peer, key=self._key_fp, error=str(exc or ""))

    def auth_completed(self) -> None:
        if self._conn is not None:
            self._shared.admission.done(self._conn)

    def _disconnect(self, code: int, reason: str) -> None:
        conn = self._conn
        if conn is not None:
            asyncio.get_running_loop().call_soon(conn.disconnect, code, reason)

    def _refuse(self, what: str, **details: Any) -> None:
        self._shared.refusals.warning("ssh request refused", what=what, peer=self._peer, key=self._key_fp,
                                      **details)
        self._refused += 1
        if self._refused >= self._limits.max_refused_requests:
            self._shared.refusals.warning("ssh connection dropped: too many refused requests",
                                          peer=self._peer, key=self._key_fp)
            self._disconnect(asyncssh.DISC_BY_APPLICATION, "too many refused requests")

    # --- authentication: public key only -----------------------------------------
    def begin_auth(self, username: str) -> bool:  # noqa: ARG002 - the user name is not used
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def host_based_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        fp = fingerprint(key)
        try:
            allowed = asyncssh.read_authorized_keys(str(self._settings.authorized_keys))
        except (OSError, ValueError) as e:  # missing or unreadable file: nobody is allowed
            self._shared.refusals.warning("authorized keys unreadable",
                                          path=str(self._settings.authorized_keys), error=str(e))
            allowed = None
        # from="..." options match the client's address (no reverse DNS: the address is its name).
        ok = bool(allowed and allowed.validate(key, self._addr, self._addr) is not None)
        if ok:
            if self._key_fp != fp:  # asyncssh asks twice: probe, then signature
                self._key_fp, self._key = fp, key
                log.info("ssh login", peer=self._peer, user=username, key=fp)
            return True
        self._shared.refusals.warning("ssh login refused: key not authorized", peer=self._peer, user=username,
                                      key=fp)
        self._auth_failures += 1
        if self._auth_failures >= self._limits.max_auth_failures:
            self._disconnect(asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE, "too many authentication failures")
        return False

    # --- channels: exactly one kind ----------------------------------------------------
    def unix_connection_requested(self, dest_path: str) -> Any:
        real = str(self._settings.socket_path)
        handler = self._settings.attach_channel if dest_path == CHANNEL_NAME else None
        if (dest_path not in (real, SOCKET_ALIAS) and handler is None) or self._conn is None:
            self._refuse("direct-streamlocal", path=dest_path)
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                f"only the convocate gRPC socket may be opened, not {dest_path!r}",
            )
        if self._channels >= self._limits.max_channels:
            self._refuse("direct-streamlocal: too many channels", limit=self._limits.max_channels)
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_RESOURCE_SHORTAGE,
                                            f"at most {self._limits.max_channels} channels per connection")
        self._channels += 1
        channel = self._conn.create_unix_channel(window=CHANNEL_WINDOW, max_pktsize=CHANNEL_MAX_PKTSIZE)
        if self._data_path is not None:
            tune_channel(self._data_path, channel)
        if handler is not None:
            return channel, handler(f"{self._peer} key {self._key_fp}", self._channel_closed)
        return channel, self._forward(real)

    def _channel_closed(self) -> None:
        self._channels -= 1

    async def _forward(self, real: str) -> SSHForwarder:
        """Connect one channel to the gRPC socket, counting it until it closes."""
        closed = self._channel_closed
        loop = asyncio.get_running_loop()
        try:
            if self._settings.open_socket is not None and self._key is not None:
                sock = await self._settings.open_socket(self._key)
                _, peer = await loop.create_unix_connection(SSHForwarder, sock=sock)
            else:
                _, peer = await loop.create_unix_connection(SSHForwarder, real)
        except asyncssh.ChannelOpenError:
            closed()
            raise
        except OSError as e:
            closed()
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, str(e)) from None
        if self._lost or self._conn is None or self._conn.is_closed():
            # The SSH connection went away while the socket opened: asyncssh then drops the
            # channel without telling its session, and connection_lost has already run.
            peer.close()
            closed()
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, "the SSH connection closed")
        self._forwards.add(peer)

        def forward_closed() -> None:
            self._forwards.discard(peer)
            closed()

        return _Counted(peer, forward_closed)

    def session_requested(self) -> bool:
        self._refuse("session (shell, exec, subsystem)")
        return False

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> bool:  # noqa: ARG002
        self._refuse("direct-tcpip", dest=f"{dest_host}:{dest_port}")
        return False

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        self._refuse("tcpip-forward", listen=f"{listen_host}:{listen_port}")
        return False

    def unix_server_requested(self, listen_path: str) -> bool:
        self._refuse("streamlocal-forward", path=listen_path)
        return False


class SSHSocketServer:
    """An asyncssh server that tunnels only to one gRPC UNIX socket.

    Use ``await start()`` then ``close()`` / ``await wait_closed()``, or ``async with``.
    """

    def __init__(self, settings: SSHServerSettings) -> None:
        self.settings = settings
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._live: set[asyncssh.SSHServerConnection] = set()
        self._shared = _Shared(settings, self._live, Admission(settings.limits),
                               RefusalLog(settings.limits.log_interval))

    async def start(self) -> None:
        """Load (or create) the host key and start listening (again, after a close)."""
        s = self.settings
        self._shared.closing = False
        host_key = load_or_create_host_key(s.host_key, s.host_key_comment)
        self._acceptor = await asyncssh.create_server(
            lambda: _Guard(self._shared),
            s.host,
            s.port,
            server_host_keys=[host_key],
            server_version=s.banner,
            encryption_algs=ENCRYPTION_ALGS,
            allow_pty=False,
            x11_forwarding=False,
            agent_forwarding=False,
            allow_scp=False,
            keepalive_interval=s.keepalive_interval,
            keepalive_count_max=s.keepalive_count_max,
            login_timeout=s.login_timeout,
            gss_host=None,          # no Kerberos, even where python-gssapi and a keytab exist
            reuse_address=True,
        )
        log.info("ssh server listening", host=s.host, port=self.port, socket=str(s.socket_path))

    @property
    def port(self) -> int:
        """The bound port (useful when started on port 0)."""
        if self._acceptor is None:
            return self.settings.port
        return int(self._acceptor.get_port())

    def close(self) -> None:
        """Stop accepting and close every open connection."""
        self._shared.closing = True
        if self._acceptor is not None:
            self._acceptor.close()
        for conn in list(self._live):
            conn.close()
        self._shared.refusals.close()

    async def wait_closed(self) -> None:
        """Wait until the listener is closed."""
        if self._acceptor is not None:
            await self._acceptor.wait_closed()
            self._acceptor = None
        # Until none is left: one accepted just before the close is dropped a turn later.
        for _ in range(1000):
            if not self._live:
                break
            await next(iter(self._live)).wait_closed()
            await asyncio.sleep(0)

    async def __aenter__(self) -> SSHSocketServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await asyncio.wait_for(self.wait_closed(), 10)
