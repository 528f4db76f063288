"""How both ends of the tunnel use the SSH wire: channel sizes and no padding packets.

asyncssh moves every SSH packet in Python (frame, encrypt, one ``send`` each), so the
cost of the tunnel grows with the number of packets, not the bytes. Two settings cut
that number, and both ends apply them: the agent's and status service's servers
(:mod:`common.ssh_server`) and the client (:mod:`common.tunnel`).
"""

from __future__ import annotations

from typing import Any

import asyncssh
from asyncssh.constants import MSG_IGNORE
from asyncssh.packet import String

__all__ = ["CHANNEL_MAX_PKTSIZE", "CHANNEL_WINDOW", "without_ignore_padding"]

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
    None of the ciphers we offer (:data:`common.ssh_server.ENCRYPTION_ALGS`: GCM,
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
