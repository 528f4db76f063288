"""How both ends of the tunnel use the SSH wire: channel sizes, no padding packets, no
per-packet bookkeeping that does nothing.

asyncssh moves every SSH packet in Python (frame, encrypt, one ``send`` each), so the
cost of the tunnel grows with the number of packets, not the bytes. Two settings cut
that number, and both ends apply them: the agent's and status service's servers
(:mod:`common.ssh_server`) and the client (:mod:`common.tunnel`).
:func:`tune_connection` then takes out per-packet work that has no effect (see each
helper), on that one connection only.
"""

from __future__ import annotations

from typing import Any

import asyncssh
from asyncssh.constants import MSG_IGNORE
from asyncssh.logging import SSHLogger
from asyncssh.packet import String

from common.ssh_data_path import DataPath

__all__ = ["CHANNEL_MAX_PKTSIZE", "CHANNEL_WINDOW", "ENCRYPTION_ALGS", "SOCKET_ALIAS", "quiet_packet_log",
           "tune_channel", "tune_connection", "without_ignore_padding"]

# The name a client gives the server's own gRPC socket (it never needs the real path).
SOCKET_ALIAS = "convocate"
# aes128-gcm costs about 40 % less tunnel CPU than asyncssh's default chacha20 on
# AES-NI hosts; the others stay as fallbacks for peers without it.
ENCRYPTION_ALGS = [
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
]

# Flow control of each tunnel channel, the same at both ends: the bytes a sender may
# have in flight before the receiver acknowledges, and the most one SSH packet carries.
# 256 KiB packets instead of asyncssh's default 32 KiB cut the packets per byte
# eightfold. The window stays asyncssh's default: bigger ones measured no faster on
# loopback, and it bounds what one channel may leave buffered at the receiver. Channels
# exist only after login, so the packet-length limit before authentication stays
# asyncssh's default.
CHANNEL_WINDOW = 2 * 1024 * 1024
CHANNEL_MAX_PKTSIZE = 256 * 1024

_EMPTY_IGNORE_ARGS = (String(b""),)


def without_ignore_padding(conn: asyncssh.SSHClientConnection | asyncssh.SSHServerConnection) -> None:
    """Stop ``conn`` from sending an empty SSH_MSG_IGNORE before each of its packets.

    asyncssh sends one before every packet once encryption is on: the countermeasure
    of RFC 4251 section 9.3.1 against predictable IVs in CBC mode. It doubles the
    packets, the encryptions and the ``send`` calls, and the peer wakes up for each.
    None of the ciphers we offer (:data:`ENCRYPTION_ALGS`: GCM,
    ChaCha20-Poly1305, CTR) is CBC, and the padding stays if a CBC cipher is ever
    negotiated. Only this connection changes (an attribute shadows asyncssh's method);
    every other packet, and the ignore packets the peer sends us, are untouched.
    """
    send_packet = conn.send_packet

    def send_unpadded(pkttype: int, *args: bytes, handler: Any = None) -> None:
        if (pkttype == MSG_IGNORE and args == _EMPTY_IGNORE_ARGS
                and not str(conn.get_extra_info("send_cipher", "")).endswith("-cbc")):
            return
        send_packet(pkttype, *args, handler=handler)

    conn.send_packet = send_unpadded  # type: ignore[method-assign]


# asyncssh writes each packet to its log at debug level 3 and above (asyncssh.set_debug_level).
_PACKET_LOG_LEVEL = 3


def quiet_packet_log(handler: Any) -> None:
    """Let ``handler`` (a connection or a channel) format its packet log lines only when logged.

    asyncssh builds each packet's log line (the type's name, the byte count: two formatted
    strings) before its logger checks the debug level, for every packet sent and received.
    The level is checked first here, at each packet, so ``asyncssh.set_debug_level(3)``
    still logs every packet.
    """
    log_sent, log_received = handler.log_sent_packet, handler.log_received_packet

    def sent(pkttype: int, pktid: int | None, packet: Any, note: str = "") -> None:
        if SSHLogger._debug_level >= _PACKET_LOG_LEVEL:
            log_sent(pkttype, pktid, packet, note)

    def received(pkttype: int, pktid: int | None, packet: Any, note: str = "") -> None:
        if SSHLogger._debug_level >= _PACKET_LOG_LEVEL:
            log_received(pkttype, pktid, packet, note)

    handler.log_sent_packet = sent
    handler.log_received_packet = received


def _keepalive_timer_kept(conn: Any) -> None:
    """Keep one keepalive timer running instead of replacing it at every read.

    asyncssh cancels its keepalive timer and schedules a new one each time data arrives:
    two timer-heap operations per read, and cancelled timers pile up in the heap until the
    loop sweeps them. Here a read only notes the time; the timer, when it fires, schedules
    itself again for the rest of the interval if anything arrived meanwhile, and otherwise
    runs asyncssh's keepalive as before (a request, and the connection closes after
    ``keepalive_count_max`` unanswered ones). Same rule: ``keepalive_interval`` without
    any incoming data triggers a keepalive.
    """
    loop = conn._loop
    keepalive = conn._keepalive_timer_callback
    last_read = loop.time()

    def read() -> None:
        nonlocal last_read
        last_read = loop.time()
        if (conn._auth_complete and conn._keepalive_timer is None
                and conn._keepalive_interval):
            conn._keepalive_timer = loop.call_later(conn._keepalive_interval, fire)

    def fire() -> None:
        conn._keepalive_timer = None
        interval = conn._keepalive_interval
        if not interval:
            return
        quiet = loop.time() - last_read
        if quiet < interval:
            conn._keepalive_timer = loop.call_later(interval - quiet, fire)
        else:
            keepalive()

    conn._reset_keepalive_timer = read
    conn._keepalive_timer_callback = fire
    if conn._keepalive_timer is not None:   # armed before this (the client logs in first)
        conn._keepalive_timer.cancel()
        conn._keepalive_timer = None
        read()


def tune_connection(conn: asyncssh.SSHClientConnection | asyncssh.SSHServerConnection) -> DataPath:
    """Everything both ends change on one tunnel connection (nothing on the wire changes
    but the padding packets :func:`without_ignore_padding` leaves out).

    Returns the connection's :class:`~common.ssh_data_path.DataPath`: give each forwarding
    channel to :func:`tune_channel`.
    """
    without_ignore_padding(conn)
    quiet_packet_log(conn)
    _keepalive_timer_kept(conn)
    return DataPath(conn)


def tune_channel(data_path: DataPath, channel: Any) -> None:
    """What both ends change on each forwarding channel of a tuned connection."""
    quiet_packet_log(channel)
    data_path.add(channel)
