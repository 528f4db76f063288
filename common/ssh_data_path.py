"""Channel data of the tunnel, framed and encrypted with two copies instead of about nine.

asyncssh builds each SSH packet by concatenating bytes at every layer: the channel copies
what it is given into a send buffer, slices it, length-prefixes it, prefixes the channel
number, the packet type, the padding length, appends the padding, encrypts, and joins the
ciphertext to its header and to the tag: about nine copies of each 64-256 KiB packet
before ``send``. Reading, it slices the packet out of its input buffer, joins the first
block to the rest and the rest to the tag, decrypts, strips the padding and cuts the data
out again: about eight. With the tunnel carrying a gRPC stream, these copies and the
Python around them are a large part of what each end spends per byte.

Here, on the tunnel's own connections only, the one kind of packet that carries the bytes,
``SSH_MSG_CHANNEL_DATA``, takes a short path when the connection is in its steady state
(logged in, no key exchange under way, no compression) and its cipher is AES-GCM (the
one we prefer, :data:`common.ssh_wire.ENCRYPTION_ALGS`):

* sending: the payload is joined once (header fields, data, random padding) and
  encrypted straight into the buffer that goes to the socket (``AESGCM.encrypt_into``);
* receiving: each complete data packet is decrypted straight out of the received bytes
  (``AESGCM.decrypt_into``) and its data handed to the channel as a view of that buffer.

The wire is byte for byte what asyncssh sends: the same packet format, random padding,
sequence numbers, AEAD (the tag is checked before any byte is used) and rekeying (a due
rekey, like every other packet type, any other cipher and every state but the steady one
go through asyncssh unchanged). A received packet that is not channel data for one of
our channels, or that fails its tag, is left in place for asyncssh, which reads it as it
always did (failing the tag, it disconnects).
"""

from __future__ import annotations

import os
import time
import weakref
from typing import Any

import asyncssh
from asyncssh.constants import MSG_CHANNEL_DATA
from asyncssh.encryption import GCMEncryption
from asyncssh.logging import SSHLogger
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["DataPath"]

_TAG = 16           # the GCM tag that follows each packet
_LENGTH = 4         # the packet length before it, in clear (authenticated as associated data)
# The decrypted packet: padding length (1), type (1), recipient channel (4), data length (4).
_DATA_HEADER = 10
_SEQ_MASK = 0xFFFFFFFF
_PACKET_LOG_LEVEL = 3     # asyncssh logs each packet from this debug level on


class DataPath:
    """The short path for channel data on one connection (both directions).

    Create it once the connection is made, then :meth:`add` each forwarding channel.
    """

    def __init__(self, conn: asyncssh.SSHClientConnection | asyncssh.SSHServerConnection) -> None:
        self._conn: Any = conn
        self._channels: weakref.WeakSet[Any] = weakref.WeakSet()
        # The AEAD of the current keys, each way, with the asyncssh object it was made for.
        self._send_key: tuple[object, AESGCM] | None = None
        self._recv_key: tuple[object, AESGCM] | None = None
        self._data_received = self._conn.data_received
        self._recv_pkthdr = self._conn._recv_pkthdr
        # asyncio looks it up at each read
        self._conn.data_received = self._receive  # type: ignore[method-assign]

    def add(self, channel: Any) -> None:
        """Send and receive ``channel``'s data on the short path (a forwarding channel, bytes only)."""
        if channel.get_encoding()[0] is not None:
            return
        self._channels.add(channel)
        write = channel.write

        def fast_write(data: bytes, datatype: int | None = None) -> None:
            size = len(data)
            if (datatype is None and size and channel._send_state == "open" and not channel._send_buf
                    and size <= channel._send_window and size <= channel._send_pktsize
                    and channel._send_chan is not None and self._send(channel._send_chan, data)):
                channel._send_window -= size
                return
            write(data, datatype)

        channel.write = fast_write

    # --- sending ---------------------------------------------------------------------------
    def _steady(self) -> bool:
        conn = self._conn
        return bool(conn._kex_complete and conn._auth_complete and conn._transport is not None
                    and SSHLogger._debug_level < _PACKET_LOG_LEVEL)

    def _send(self, channel_id: int, data: bytes) -> bool:
        """Send one data packet; False (nothing sent) when asyncssh must send it instead."""
        conn = self._conn
        enc = conn._send_encryption
        if type(enc) is not GCMEncryption or conn._compressor is not None or not self._steady():
            return False
        if conn._rekey_bytes_sent >= conn._rekey_bytes or (
                conn._rekey_seconds and time.monotonic() >= conn._rekey_time):
            return False        # asyncssh starts the key exchange, then sends or defers it
        if self._send_key is None or self._send_key[0] is not enc:
            self._send_key = (enc, AESGCM(enc._cipher._key))
        aead, cipher = self._send_key[1], enc._cipher
        size = len(data)
        payload = 1 + 4 + 4 + size
        padding = -(conn._send_enchdrlen + payload) % conn._send_blocksize
        if padding < 4:         # RFC 4253: at least four bytes
            padding += conn._send_blocksize
        length = 1 + payload + padding
        header = length.to_bytes(4, "big")
        plain = b"".join((bytes((padding, MSG_CHANNEL_DATA)), channel_id.to_bytes(4, "big"),
                          size.to_bytes(4, "big"), data, os.urandom(padding)))
        packet = bytearray(_LENGTH + length + _TAG)
        packet[:_LENGTH] = header
        aead.encrypt_into(cipher._iv, plain, header, memoryview(packet)[_LENGTH:])
        cipher._update_iv()
        conn._send(packet)
        conn._send_seq = (conn._send_seq + 1) & _SEQ_MASK
        conn._rekey_bytes_sent += length
        return True

    # --- receiving -------------------------------------------------------------------------
    def _receive(self, data: bytes, datatype: int | None = None) -> None:
        conn = self._conn
        enc = conn._recv_encryption
        if (type(enc) is not GCMEncryption or conn._decompressor is not None or conn._recv_macsize != _TAG
                or conn._recv_handler != self._recv_pkthdr or not self._steady()):
            self._data_received(data, datatype)
            return
        buffer = conn._inpbuf + data if conn._inpbuf else data
        try:
            used, rest_is_partial = self._deliver(buffer, enc)
        except Exception:       # from the channel's session, as asyncssh's own reading would
            conn._inpbuf = b""
            conn.internal_error()
            return
        conn._inpbuf = buffer[used:] if used else buffer
        if rest_is_partial:
            conn._reset_keepalive_timer()
        else:                   # a packet for asyncssh: it reads the rest as it always does
            conn._recv_data()

    def _deliver(self, buffer: bytes, enc: GCMEncryption) -> tuple[int, bool]:
        """Hand on the data of each complete data packet at the start of ``buffer``.

        Consecutive packets for one channel are handed on together (one write to its
        socket instead of one per packet). Returns how many bytes were used, and whether
        what is left is only the start of a packet (else asyncssh has a packet to read,
        or an error to find).
        """
        batch = _Batch()
        try:
            return self._decrypt_all(buffer, enc, batch)
        finally:
            batch.flush()

    def _decrypt_all(self, buffer: bytes, enc: GCMEncryption, batch: _Batch) -> tuple[int, bool]:
        conn = self._conn
        if self._recv_key is None or self._recv_key[0] is not enc:
            self._recv_key = (enc, AESGCM(enc._cipher._key))
        aead, cipher = self._recv_key[1], enc._cipher
        view = memoryview(buffer)
        end, pos = len(buffer), 0
        while True:
            if end - pos < conn._recv_blocksize:
                return pos, True
            length = int.from_bytes(view[pos:pos + _LENGTH], "big")
            if length > conn._max_recv_pktlen:
                return pos, False
            stop = pos + _LENGTH + length + _TAG
            if stop > end:
                return pos, True
            packet = bytearray(length)
            try:
                aead.decrypt_into(cipher._iv, view[pos + _LENGTH:stop], view[pos:pos + _LENGTH], packet)
            except (InvalidTag, ValueError):
                return pos, False
            channel = self._channel_for(packet, length, batch)
            if channel is None:
                return pos, False
            cipher._update_iv()
            conn._recv_seq = (conn._recv_seq + 1) & _SEQ_MASK
            conn._auth_final = True
            size = int.from_bytes(packet[6:_DATA_HEADER], "big")
            pos = stop
            batch.add(channel, memoryview(packet)[_DATA_HEADER:_DATA_HEADER + size])

    def _channel_for(self, packet: bytearray, length: int, batch: _Batch) -> Any:
        """The channel a well-formed data packet within its window is for, else None.

        The window left is what the channel has, less what ``batch`` holds for it.
        """
        if length < _DATA_HEADER or packet[1] != MSG_CHANNEL_DATA:
            return None
        size = int.from_bytes(packet[6:_DATA_HEADER], "big")
        if _DATA_HEADER + size != length - packet[0]:
            return None
        channel = self._conn._channels.get(int.from_bytes(packet[2:6], "big"))
        if (channel is None or channel not in self._channels or channel._recv_state != "open"
                or size > channel._recv_window - batch.held(channel)):
            return None
        return channel


class _Batch:
    """Data read for one channel, handed on at once when another channel's comes or at the end."""

    def __init__(self) -> None:
        self._channel: Any = None
        self._parts: list[memoryview] = []
        self._size = 0

    def held(self, channel: Any) -> int:
        """Bytes held for ``channel`` (they already count against its window)."""
        return self._size if channel is self._channel else 0

    def add(self, channel: Any, data: memoryview) -> None:
        """Hold ``data`` for ``channel`` (handing on what another channel's batch held)."""
        if channel is not self._channel:
            self.flush()
            self._channel = channel
        self._parts.append(data)
        self._size += len(data)

    def flush(self) -> None:
        """Hand what is held to its channel (asyncssh's accounting: window, pause, session)."""
        channel, parts = self._channel, self._parts
        self._channel, self._parts, self._size = None, [], 0
        if parts:
            channel._accept_data(parts[0] if len(parts) == 1 else b"".join(parts))
