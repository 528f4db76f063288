"""The attach channel's wire: the Attach stream's protobuf frames, length-prefixed, in one SSH channel.

Why a second wire for one stream: a keystroke's echo is mostly wake-ups, and gRPC adds
four per direction (asyncssh's loop -> a UNIX socket -> grpc core's poller thread ->
its self-pipe -> the loop again, at each end); grpcio takes no connected socket, so it
cannot be fed from the SSH channel directly. The agent's SSH server answers a channel
opened to :data:`CHANNEL_NAME` in-process instead (``common.ssh_server``, the
``attach_channel`` setting), and both ends read and write the same ``convocate.v1``
AttachRequest / AttachResponse messages as the gRPC Attach call, framed here:

    kind (1 byte) | length (4 bytes, big-endian) | payload (length bytes, <= MAX_FRAME)

* :data:`MESSAGE`: a serialized AttachRequest (client to agent) or AttachResponse (agent
  to client);
* :data:`ERROR` (agent to client only): the call failed; the payload is the status name
  (``common.errors``' table, as gRPC would send it), a NUL, and the UTF-8 message. The
  agent then closes the channel.

What a peer sends is untrusted: an unknown kind or a length over the bound is a
:class:`FrameError` (the reader keeps nothing of it, and its owner closes the channel).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

__all__ = ["CHANNEL_NAME", "ERROR", "HEADER_SIZE", "MAX_FRAME", "MESSAGE", "FrameError", "FrameReader",
           "decode_error", "encode", "encode_error"]

# The virtual destination a client opens (direct-streamlocal): never a filesystem path,
# so no server mistakes it for a socket to forward to.
CHANNEL_NAME = "convocate/attach-v1"
MESSAGE = 0
ERROR = 1
MAX_FRAME = 1024 * 1024       # far above any attach message (output frames are <= 64 KiB)
_HEADER = struct.Struct(">BI")
HEADER_SIZE = _HEADER.size


class FrameError(ValueError):
    """The peer sent something that is not a frame of this wire (the channel must end)."""


def encode(kind: int, payload: bytes) -> bytes:
    """One frame (the caller keeps ``payload`` within :data:`MAX_FRAME`)."""
    return _HEADER.pack(kind, len(payload)) + payload


def encode_error(status: str, message: str) -> bytes:
    """An :data:`ERROR` frame: the call failed with ``status`` (a status name) and ``message``."""
    payload = status.encode("ascii", "replace") + b"\0" + message.encode("utf-8", "replace")
    return encode(ERROR, payload[:MAX_FRAME])


def decode_error(payload: bytes) -> tuple[str, str]:
    """The status name and message of an :data:`ERROR` frame's payload."""
    status, _, message = payload.partition(b"\0")
    return status.decode("ascii", "replace"), message.decode("utf-8", "replace")


class FrameReader:
    """Cuts frames out of the bytes of one channel, as they arrive in pieces, one at a time.

    Frames are taken one by one (:meth:`next_frame`), so a reader that stops taking them
    holds only the raw bytes it was fed (which the SSH window bounds), never a pile of
    decoded frames.

    Args:
        kinds: the frame kinds this end accepts (anything else is a :class:`FrameError`).
        max_frame: the largest payload accepted.
    """

    def __init__(self, kinds: frozenset[int], max_frame: int = MAX_FRAME) -> None:
        self._kinds = kinds
        self._max = max_frame
        self._buf = bytearray()
        self._pos = 0           # where the next frame starts in _buf

    @property
    def pending(self) -> int:
        """Bytes fed and not taken as a frame yet."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes read from the channel."""
        self._buf += data

    def next_frame(self) -> tuple[int, bytes] | None:
        """The next complete frame (kind, payload), or None until more bytes are fed.

        Raises:
            FrameError: its header names an unknown kind or a payload over the bound
                (everything held is dropped: the channel is not to be read further).
        """
        buf, pos = self._buf, self._pos
        if len(buf) - pos >= HEADER_SIZE:
            kind, size = _HEADER.unpack_from(buf, pos)
            if kind not in self._kinds or size > self._max:
                buf.clear()
                self._pos = 0
                what = f"a frame of unknown kind {kind}" if kind not in self._kinds else (
                    f"a frame of {size} bytes (the limit is {self._max})")
                raise FrameError(what)
            stop = pos + HEADER_SIZE + size
            if stop <= len(buf):
                payload = bytes(buf[pos + HEADER_SIZE:stop])
                self._pos = stop
                return kind, payload
        if pos:                 # keep only the start of the next frame
            del buf[:pos]
            self._pos = 0
        return None

    def frames(self) -> Iterator[tuple[int, bytes]]:
        """Every complete frame fed so far, in order (see :meth:`next_frame`)."""
        while (frame := self.next_frame()) is not None:
            yield frame
