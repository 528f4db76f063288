"""The attach channel's framing: frames cut out of pieces, bounds and unknown kinds refused."""

from __future__ import annotations

import struct

import pytest

from common.attach_wire import (
    ERROR,
    HEADER_SIZE,
    MAX_FRAME,
    MESSAGE,
    FrameError,
    FrameReader,
    decode_error,
    encode,
    encode_error,
)

BOTH = frozenset({MESSAGE, ERROR})


def test_frames_split_anywhere_come_out_whole_and_in_order() -> None:
    """Bytes arriving one at a time, or several frames at once, give the same frames."""
    frames = [(MESSAGE, b""), (MESSAGE, b"x" * 1000), (ERROR, b"NOT_FOUND\0gone")]
    wire = b"".join(encode(kind, payload) for kind, payload in frames)
    whole = FrameReader(BOTH)
    whole.feed(wire)
    assert list(whole.frames()) == frames
    assert whole.pending == 0
    piecewise = FrameReader(BOTH)
    got: list[tuple[int, bytes]] = []
    for i in range(len(wire)):
        piecewise.feed(memoryview(wire)[i:i + 1])
        got += piecewise.frames()
    assert got == frames
    assert piecewise.pending == 0


def test_frames_not_taken_stay_as_bytes_until_asked_for() -> None:
    """A reader holds what it was fed as bytes; frames are cut one at a time, when asked."""
    reader = FrameReader(BOTH)
    reader.feed(encode(MESSAGE, b"a") * 3 + encode(MESSAGE, b"bc")[:4])
    assert reader.next_frame() == (MESSAGE, b"a")
    assert reader.pending == 2 * (HEADER_SIZE + 1) + 4
    assert [payload for _, payload in reader.frames()] == [b"a", b"a"]
    assert reader.pending == 4          # the start of the next frame, kept
    reader.feed(encode(MESSAGE, b"bc")[4:])
    assert reader.next_frame() == (MESSAGE, b"bc")


def test_a_length_over_the_bound_is_refused_before_the_payload_arrives() -> None:
    """The header alone is enough to refuse a frame too large (nothing of it is held)."""
    reader = FrameReader(BOTH)
    reader.feed(struct.pack(">BI", MESSAGE, MAX_FRAME + 1))
    with pytest.raises(FrameError, match=f"the limit is {MAX_FRAME}"):
        reader.next_frame()
    assert reader.pending == 0


def test_a_kind_this_end_does_not_take_is_refused() -> None:
    """The agent takes only messages: an error frame, or an unknown kind, from a client is refused."""
    agent_side = FrameReader(frozenset({MESSAGE}))
    agent_side.feed(encode(ERROR, b"x"))
    with pytest.raises(FrameError, match="unknown kind 1"):
        agent_side.next_frame()
    reader = FrameReader(BOTH)
    reader.feed(bytes([9]) + bytes(HEADER_SIZE - 1))
    with pytest.raises(FrameError, match="unknown kind 9"):
        reader.next_frame()


def test_error_frames_carry_a_status_and_a_message() -> None:
    """An error frame round-trips its status name and UTF-8 message."""
    reader = FrameReader(BOTH)
    reader.feed(encode_error("NOT_FOUND", 'session "é" does not exist'))
    [(kind, payload)] = reader.frames()
    assert kind == ERROR
    assert decode_error(payload) == ("NOT_FOUND", 'session "é" does not exist')
