"""The attach channel: a real agent process, real tmux in real containers, through the real tunnel.

Every stream here is an :class:`AttachChannelCall` without a gRPC fallback, so a refused
channel fails the test instead of quietly taking the gRPC path.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct

import asyncssh
import pytest
from convocate.v1 import attach_pb2

from agent.attach_channel import INBOX_HIGH
from common.attach_wire import CHANNEL_NAME, ERROR, MAX_FRAME, MESSAGE, FrameReader, decode_error, encode
from common.client.attach_call import AttachCall
from common.client.attach_channel_call import AttachChannelCall
from common.client.calls import AgentCalls
from common.domain import AttachMode, EndReason, TerminalSize
from common.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError
from tests.integration.agent.conftest import Client
from tests.support.agent_proc import AgentProcess
from tests.support.attach_frames import FrameCollector
from tests.support.attach_stream import visible_text
from tests.support.waiting import assert_eventually

pytestmark = [pytest.mark.docker]

UNKNOWN = "00000000-0000-4000-8000-000000000000"


def channel_call(client: Client, who: str = "test:channel") -> AttachChannelCall:
    """A stream on the attach channel of ``client``'s tunnel (no gRPC fallback)."""
    return AttachChannelCall(client.tunnel, "agent", client_id=who)


def calls(client: Client) -> AgentCalls:
    """The typed Sessions calls through ``client``'s tunnel."""
    return AgentCalls("agent", lambda: client.tunnel.channel)


async def attach(client: Client, session_id: str, *, rows: int = 24, cols: int = 80,
                 mode: AttachMode = AttachMode.DRIVE, who: str = "test:channel") -> FrameCollector:
    """A started stream on the channel, its frames collected."""
    call = channel_call(client, who)
    await call.start(session_id, rows=rows, cols=cols, term="xterm-256color", mode=mode)
    assert call.on_channel
    return FrameCollector(call)


async def stty_shows(view: FrameCollector, size: str) -> None:
    """``stty size`` in the session prints ``size`` (asked again until tmux has resized the pane: bounded)."""
    for _ in range(20):
        await view.call.send_input(b"stty size\r")
        with contextlib.suppress(AssertionError):
            await view.wait_for(size, timeout=0.5)
            return
    raise AssertionError(f"stty size never printed {size!r}: {view.text[-300:]!r}")


async def test_type_resize_and_detach(client: Client, agent: AgentProcess) -> None:
    """Keys run in the session, a resize reaches its terminal, a detach frame ends with DETACHED."""
    s = await client.create("chan-typing", start=True)
    view = await attach(client, s.id, rows=30, cols=100)
    try:
        started = await view.wait_started()
        assert started.viewer_count == 1
        await view.wait_for("$")
        await view.call.send_input(b"echo MARK-$((40+2)); stty size\r")
        await view.wait_for("MARK-42")
        await view.wait_for("30 100")
        await view.call.resize(40, 120)
        await assert_eventually(lambda: TerminalSize(40, 120) in view.frames, timeout=10)
        await stty_shows(view, "40 120")
        await view.call.detach()
        end = await view.wait_end()
        assert end.reason is EndReason.DETACHED
        assert view.error is None
        got = await client.get(s.id)
        assert got.running
        assert not got.attached
    finally:
        await view.close()
    assert "attach channel opened" in agent.log_text()


async def test_ctrl_b_d_detaches_and_the_event_log_names_the_viewer(client: Client) -> None:
    """tmux's detach chord ends the stream with DETACHED; attach and detach are logged with the client id."""
    s = await client.create("chan-chord", start=True)
    view = await attach(client, s.id, who="test:chord")
    try:
        await view.wait_started()
        await view.wait_for("$")
        await view.call.send_input(b"\x02d")
        end = await view.wait_end()
        assert end.reason is EndReason.DETACHED
    finally:
        await view.close()

    async def logged() -> bool:
        kinds = [(e.kind, e.actor) for e in await calls(client).session_log(s.id)]
        return ("attached", "test:chord") in kinds and ("detached", "test:chord") in kinds

    await assert_eventually(logged, timeout=10)


async def test_observer_sees_output_but_its_keys_and_sizes_do_not_reach(client: Client) -> None:
    """An observer on the channel sees a driver's output; its own keys and sizes never reach the session."""
    s = await client.create("chan-observe", start=True)
    driver = await attach(client, s.id, rows=24, cols=80)
    observer: FrameCollector | None = None
    try:
        await driver.wait_started()
        observer = await attach(client, s.id, rows=50, cols=150, mode=AttachMode.OBSERVE)
        started = await observer.wait_started()
        assert started.mode is AttachMode.OBSERVE
        assert started.viewer_count == 2
        await observer.wait_for("$")
        await observer.call.send_input(b"echo OBS-$((1+1))\r")
        await observer.call.resize(60, 200)
        await driver.call.send_input(b"echo DRV-$((2+3)); stty size\r")
        await observer.wait_for("DRV-5")
        await driver.wait_for("24 80")
        assert "OBS-2" not in driver.text
        assert "OBS-2" not in observer.text
    finally:
        await driver.close()
        if observer is not None:
            await observer.close()


async def test_a_flood_of_frames_is_taken_in_turn_and_nothing_is_lost(client: Client) -> None:
    """Thousands of frames in one write pause the channel's reading, resume it, and all arrive in order."""
    s = await client.create("chan-flood", start=True)
    chan, raw = await client.tunnel.open_channel(RawChannel, CHANNEL_NAME)
    start = attach_pb2.AttachRequest(start=attach_pb2.AttachStart(session_id=s.id, rows=24, cols=80,
                                                                  term="xterm"))
    empty = encode(MESSAGE, attach_pb2.AttachRequest(input=b"").SerializeToString())
    last = encode(MESSAGE, attach_pb2.AttachRequest(input=b"echo FLOOD-$((7*6))\r").SerializeToString())
    chan.write(encode(MESSAGE, start.SerializeToString()) + empty * (50 * INBOX_HIGH) + last)

    def echoed() -> bool:
        outputs = [attach_pb2.AttachResponse.FromString(p).output for k, p in frames_of(raw.received)
                   if k == MESSAGE]
        return "FLOOD-42" in visible_text(b"".join(outputs))

    await assert_eventually(echoed, timeout=20)
    assert not raw.closed.is_set()
    chan.close()
    await asyncio.wait_for(raw.closed.wait(), 10)


async def test_closing_the_channel_releases_the_viewer(client: Client) -> None:
    """Cancelling the stream (the channel closes) frees the viewer, as a cancelled gRPC call does."""
    s = await client.create("chan-cancel", start=True)
    view = await attach(client, s.id)
    await view.wait_started()
    assert (await client.get(s.id)).viewer_count == 1
    await view.close()

    async def released() -> bool:
        return (await client.get(s.id)).viewer_count == 0

    await assert_eventually(released, timeout=10)


async def test_refusals_are_the_same_domain_errors_as_over_grpc(client: Client) -> None:
    """Unknown session, stopped session, no start frame: the channel raises what the gRPC call raises."""
    s = await client.create("chan-stopped")
    cases: list[tuple[str, type[Exception]]] = [(UNKNOWN, NotFoundError), (s.id, FailedPreconditionError)]
    for session_id, expected in cases:
        for call in (channel_call(client), AttachCall(client.tunnel.channel, "agent")):
            await call.start(session_id, rows=24, cols=80, term="xterm")
            with pytest.raises(expected) as info:
                await call.read()
            call.cancel()
            if expected is FailedPreconditionError:
                assert "is not running" in str(info.value)
    await client.delete(s.id)


async def test_a_first_frame_that_is_not_a_start_frame_is_invalid(client: Client) -> None:
    """The servicer's start-frame rule holds on the channel: an INVALID_ARGUMENT error frame, then close."""
    chan, raw = await client.tunnel.open_channel(RawChannel, CHANNEL_NAME)
    chan.write(encode(MESSAGE, attach_pb2.AttachRequest(input=b"ls\r").SerializeToString()))
    await asyncio.wait_for(raw.closed.wait(), 10)
    [(kind, payload)] = frames_of(raw.received)
    assert kind == ERROR
    status, message = decode_error(payload)
    assert (status, message) == (InvalidArgumentError.status, "the first attach frame must be a start frame")


def frames_of(data: bytes) -> list[tuple[int, bytes]]:
    """The frames an agent sent, as a client reads them."""
    reader = FrameReader(frozenset({MESSAGE, ERROR}))
    reader.feed(data)
    return list(reader.frames())


class RawChannel(asyncssh.SSHUNIXSession[bytes]):
    """A channel session that records what the agent sends and when the channel closes."""

    def __init__(self) -> None:
        self.received = b""
        self.closed = asyncio.Event()

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self.received += bytes(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()


@pytest.mark.parametrize(("what", "frame"), [
    ("oversized", struct.pack(">BI", MESSAGE, MAX_FRAME + 1)),
    ("unknown kind", struct.pack(">BI", 7, 3) + b"abc"),
    ("error kind from a client", encode(ERROR, b"INTERNAL\0no")),
    ("not an AttachRequest", encode(MESSAGE, b"\xff\xff\xff")),
])
async def test_a_bad_frame_ends_its_channel_and_the_agent_serves_on(
    client: Client, agent: AgentProcess, what: str, frame: bytes,
) -> None:
    """A malformed frame gets an INVALID_ARGUMENT error frame and a closed channel; other streams go on."""
    s = await client.create(f"chan-bad-{what.split(maxsplit=1)[0]}", start=True)
    other = await attach(client, s.id)
    try:
        await other.wait_started()
        chan, raw = await client.tunnel.open_channel(RawChannel, CHANNEL_NAME)
        chan.write(frame)
        await asyncio.wait_for(raw.closed.wait(), 10)
        frames = frames_of(raw.received)
        assert len(frames) == 1
        assert frames[0][0] == ERROR
        status, message = decode_error(frames[0][1])
        assert status == InvalidArgumentError.status
        assert "bad attach frame" in message
        # The agent, the connection and the other stream are untouched.
        await other.call.send_input(b"echo STILL-$((6*7))\r")
        await other.wait_for("STILL-42")
        again = await attach(client, s.id)
        await again.wait_started()
        await again.close()
    finally:
        await other.close()
    assert "bad frame from the client" in agent.log_text()
    assert agent.running
