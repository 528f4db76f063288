"""A viewer's output queue: coalescing, size notices, end reasons and the slow-viewer cut-off."""

from __future__ import annotations

import asyncio

from agent.viewers import EndReason, Mode, Size, Viewer, ViewerRegistry
from tests.fakes.fake_runtime import FakeTerminal
from tests.support.waiting import assert_eventually


async def _classify(tail: bytes) -> tuple[EndReason, str]:
    return (EndReason.DETACHED, "detached") if b"[detached" in tail else (EndReason.ERROR, "eof")


async def test_output_is_coalesced_up_to_the_limit() -> None:
    """Queued chunks come out as one frame of at most max_bytes, then the end."""
    term = FakeTerminal()
    v = Viewer("s", Mode.DRIVE, term)
    for _ in range(10):
        term.feed(b"x" * 1000)
    term.feed(b"[detached (from session claude)]")
    term.feed(None)
    v.start_reader(_classify)
    await assert_eventually(lambda: term.reads >= 12, timeout=5)  # every chunk is queued, then the end
    first = await v.next_frame(max_bytes=4000)
    assert first == b"x" * 4000
    rest = b""
    while (frame := await v.next_frame(max_bytes=64 * 1024)) is not None:
        assert isinstance(frame, bytes)
        rest += frame
    assert rest.endswith(b"[detached (from session claude)]")
    assert v.end_reason is EndReason.DETACHED
    assert await v.next_frame() is None  # stays ended
    await v.close()


async def test_size_notices_keep_their_place_between_outputs() -> None:
    """A size notice is delivered between the output before and after it."""
    term = FakeTerminal()
    v = Viewer("s", Mode.DRIVE, term)
    v.start_reader(_classify)
    term.feed(b"before")
    await assert_eventually(lambda: term.reads >= 2, timeout=5)  # "before" is queued
    v.notify_size(Size(40, 120))
    term.feed(b"after")
    await assert_eventually(lambda: term.reads >= 3, timeout=5)
    assert await v.next_frame() == b"before"
    assert await v.next_frame() == Size(40, 120)
    assert await v.next_frame() == b"after"
    await v.close()


async def _first_frame(term: FakeTerminal, v: Viewer) -> None:
    """Start the reader and take a first frame, so the next one follows it."""
    v.start_reader(_classify)
    term.feed(b"first")
    assert await asyncio.wait_for(v.next_frame(), 10) == b"first"


async def test_streaming_output_waits_briefly_to_share_a_frame() -> None:
    """A frame right after the previous one, nobody typing, takes output that arrives within
    ``linger`` (0.5 s here) into the same frame instead of going out alone."""
    term = FakeTerminal()
    v = Viewer("s", Mode.DRIVE, term, linger=0.5, linger_after=30)
    await _first_frame(term, v)
    term.feed(b"a" * 300)
    await assert_eventually(lambda: term.reads >= 2, timeout=5)      # queued
    asyncio.get_running_loop().call_later(0.01, term.feed, b"b" * 300)
    frame = await asyncio.wait_for(v.next_frame(), 10)
    assert frame == b"a" * 300 + b"b" * 300
    await v.close()


async def test_output_after_input_goes_out_at_once() -> None:
    """Within ``input_quiet`` of a key (its echo), a frame never waits for more output."""
    term = FakeTerminal()
    v = Viewer("s", Mode.DRIVE, term, linger=30, linger_after=30, input_quiet=30)
    await _first_frame(term, v)
    v.note_input()
    term.feed(b"k")
    assert await asyncio.wait_for(v.next_frame(), 10) == b"k"
    await v.close()


async def test_an_isolated_frame_goes_out_at_once() -> None:
    """Output after a pause longer than ``linger_after`` does not wait either."""
    term = FakeTerminal()
    v = Viewer("s", Mode.DRIVE, term, linger=30, linger_after=0)
    await _first_frame(term, v)
    term.feed(b"later")
    assert await asyncio.wait_for(v.next_frame(), 10) == b"later"
    await v.close()


async def test_lingering_stops_at_a_size_notice_and_keeps_it_in_order() -> None:
    """A size notice ends a lingering frame and comes next, before later output."""
    term = FakeTerminal()
    v = Viewer("s", Mode.DRIVE, term, linger=0.5, linger_after=30)
    await _first_frame(term, v)
    term.feed(b"out")
    await assert_eventually(lambda: term.reads >= 2, timeout=5)
    asyncio.get_running_loop().call_later(0.01, v.notify_size, Size(30, 100))
    assert await asyncio.wait_for(v.next_frame(), 10) == b"out"
    assert await asyncio.wait_for(v.next_frame(), 10) == Size(30, 100)
    await v.close()


async def test_a_slow_viewer_is_cut_off_without_blocking_others() -> None:
    """A viewer nobody reads is ended with ERROR after slow_timeout; another viewer keeps flowing."""
    slow_term, fast_term = FakeTerminal(), FakeTerminal()
    slow = Viewer("s", Mode.DRIVE, slow_term, buffer_chunks=4, slow_timeout=0.2)
    fast = Viewer("s", Mode.DRIVE, fast_term, buffer_chunks=4, slow_timeout=0.2)
    slow.start_reader(_classify)
    fast.start_reader(_classify)
    for _ in range(20):
        slow_term.feed(b"data")
    for i in range(20):
        fast_term.feed(f"{i};".encode())
        assert await fast.next_frame() == f"{i};".encode()
    await assert_eventually(lambda: slow.end_reason is EndReason.ERROR, timeout=5)
    assert "too slow" in slow.end_message
    assert await slow.next_frame() is None  # its backlog was dropped, the end is immediate
    await slow.close()
    await fast.close()


async def test_first_end_reason_wins_and_registry_counts() -> None:
    """finish() keeps the first reason; the registry counts viewers per session and reports changes."""
    changes: list[tuple[str, bool]] = []
    reg = ViewerRegistry(lambda sid, attached: changes.append((sid, attached)))
    a, b = Viewer("s", Mode.DRIVE, FakeTerminal()), Viewer("s", Mode.OBSERVE, FakeTerminal())
    reg.add(a)
    reg.add(b)
    assert reg.count("s") == 2
    assert b.read_only
    a.finish(EndReason.TAKEN_OVER)
    a.finish(EndReason.DETACHED)
    assert a.end_reason is EndReason.TAKEN_OVER
    reg.remove(a)
    reg.remove(a)  # unknown now: no-op
    assert reg.count("s") == 1
    assert changes == [("s", True), ("s", True), ("s", False)]
