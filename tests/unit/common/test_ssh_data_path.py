"""The short path's framing and batching, on asyncssh's own AES-GCM objects without sockets.

The real-connection behaviour (both ends, rekeying, a forged packet, flow control) is in
tests/integration/transport/test_tunnel_flow.py; these pin the batching rules exactly.
"""

from __future__ import annotations

import os
from typing import Any

from asyncssh.encryption import GCMEncryption

from common.ssh_data_path import DataPath

KEY, IV = os.urandom(16), os.urandom(12)


class _Conn:
    """The connection attributes the short path reads, in the steady state."""

    def __init__(self, channels: dict[int, Any]) -> None:
        self._kex_complete = self._auth_complete = True
        self._transport = object()
        self._compressor = self._decompressor = None
        self._send_encryption = GCMEncryption.new("aes128-gcm", KEY, IV)
        self._recv_encryption = GCMEncryption.new("aes128-gcm", KEY, IV)
        self._rekey_bytes_sent, self._rekey_bytes, self._rekey_seconds, self._rekey_time = 0, 1 << 40, 0, 0.0
        self._send_enchdrlen, self._send_blocksize, self._send_seq = 1, 16, 0
        self._recv_blocksize, self._recv_macsize, self._recv_seq = 16, 16, 0
        self._max_recv_pktlen = 1 << 20
        self._inpbuf = b""
        self._channels = channels
        self._recv_handler = self._recv_pkthdr
        self.sent: list[bytes] = []
        self.handed_to_asyncssh = 0

    def data_received(self, data: bytes, datatype: Any = None) -> None:
        raise AssertionError("the short path should have taken it")

    def _recv_pkthdr(self) -> bool:
        return False

    def _send(self, packet: bytearray) -> None:
        self.sent.append(bytes(packet))

    def _reset_keepalive_timer(self) -> None:
        pass

    def _recv_data(self) -> None:
        self.handed_to_asyncssh += 1

    def internal_error(self) -> None:
        raise AssertionError("internal error")


class _Channel:
    """A forwarding channel: what it was handed, each time."""

    def __init__(self, number: int, window: int = 1 << 20) -> None:
        self._send_chan = number
        self._send_state = self._recv_state = "open"
        self._send_buf: list[bytes] = []
        self._send_window = self._recv_window = window
        self._send_pktsize = 256 * 1024
        self.deliveries: list[bytes] = []

    def get_encoding(self) -> tuple[None, str]:
        return None, "strict"

    def write(self, data: bytes, datatype: Any = None) -> None:
        raise AssertionError("the short path should have sent it")

    def _accept_data(self, data: bytes) -> None:
        self.deliveries.append(bytes(data))
        self._recv_window -= len(data)


def _wire(*packets: tuple[int, bytes]) -> bytes:
    """The bytes of data packets (channel number, data) as the short path sends them."""
    conn = _Conn({})
    path = DataPath(conn)  # type: ignore[arg-type]
    for number, data in packets:
        channel = _Channel(number)
        path.add(channel)
        channel.write(data)
    return b"".join(conn.sent)


def _reader(*channels: _Channel) -> tuple[_Conn, DataPath]:
    conn = _Conn({c._send_chan: c for c in channels})
    path = DataPath(conn)  # type: ignore[arg-type]
    for channel in channels:
        path.add(channel)
    return conn, path


def test_packets_for_one_channel_in_one_read_are_handed_on_together() -> None:
    """Three packets for one channel read at once reach it as one piece, in order."""
    chan = _Channel(7)
    conn, _ = _reader(chan)
    conn.data_received(_wire((7, b"a" * 1000), (7, b"b" * 2000), (7, b"c" * 3)))
    assert chan.deliveries == [b"a" * 1000 + b"b" * 2000 + b"c" * 3]
    assert conn._recv_seq == 3
    assert conn._inpbuf == b""
    assert conn.handed_to_asyncssh == 0


def test_packets_for_two_channels_keep_their_order() -> None:
    """A change of channel hands on what the first held before the second's data."""
    first, second = _Channel(1), _Channel(2)
    conn, _ = _reader(first, second)
    conn.data_received(_wire((1, b"x"), (1, b"y"), (2, b"z"), (1, b"w")))
    assert first.deliveries == [b"xy", b"w"]
    assert second.deliveries == [b"z"]


def test_a_partial_packet_waits_for_the_rest() -> None:
    """The start of a packet is kept; the rest, read later, completes it."""
    chan = _Channel(3)
    conn, _ = _reader(chan)
    wire = _wire((3, b"q" * 5000))
    conn.data_received(wire[:1234])
    assert chan.deliveries == []
    assert conn._inpbuf == wire[:1234]
    conn.data_received(wire[1234:])
    assert chan.deliveries == [b"q" * 5000]
    assert conn._inpbuf == b""


def test_data_beyond_the_window_with_what_is_held_goes_to_asyncssh() -> None:
    """Held data counts against the window: a packet past it is left for asyncssh (which
    reports the violation), after the held data was handed on."""
    chan = _Channel(4, window=1500)
    conn, _ = _reader(chan)
    wire = _wire((4, b"1" * 1000), (4, b"2" * 1000))
    conn.data_received(wire)
    assert chan.deliveries == [b"1" * 1000]
    assert conn.handed_to_asyncssh == 1
    assert conn._recv_seq == 1
    assert len(conn._inpbuf) == len(wire) // 2


def test_a_packet_that_fails_its_tag_is_not_delivered() -> None:
    """A flipped ciphertext byte: nothing is handed on; asyncssh gets the packet (and
    disconnects on the MAC failure)."""
    chan = _Channel(5)
    conn, _ = _reader(chan)
    wire = bytearray(_wire((5, b"secret" * 100)))
    wire[40] ^= 1
    conn.data_received(bytes(wire))
    assert chan.deliveries == []
    assert conn.handed_to_asyncssh == 1
    assert conn._recv_seq == 0
