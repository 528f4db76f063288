"""Attach through the SSH tunnel to a real tmux in a real container."""

from __future__ import annotations

import grpc
import pytest
from convocate.v1 import attach_pb2

from tests.integration.agent.conftest import Client
from tests.support.attach_stream import AttachStream
from tests.support.waiting import assert_eventually

pytestmark = [pytest.mark.docker]


async def test_type_a_command_and_read_its_output(client: Client) -> None:
    """Keys typed into a drive attach run in the session and their output comes back."""
    s = await client.create("typing", start=True)
    view = AttachStream(client.attach, s.id, rows=30, cols=100)
    try:
        started = await view.wait_started()
        assert started.viewer_count == 1
        await view.wait_for("$")
        view.type("echo MARK-$((40+2))\r")
        await view.wait_for("MARK-42")
        await view.wait_stty_size(30, 100)
    finally:
        await view.close()


async def test_window_change_resizes_the_session(client: Client) -> None:
    """A window change reaches the session's terminal (stty size) and comes back as a size notice."""
    s = await client.create("resize", start=True)
    view = AttachStream(client.attach, s.id, rows=24, cols=80)
    try:
        await view.wait_started()
        await view.wait_for("$")
        view.resize(40, 120)
        await assert_eventually(lambda: (40, 120) in [
            (f.size.rows, f.size.cols) for f in view.frames if f.WhichOneof("frame") == "size"], timeout=10)
        await view.wait_stty_size(40, 120)      # the notice can come before tmux resized the pane
    finally:
        await view.close()


async def test_observer_cannot_type_or_resize_but_sees_output(client: Client) -> None:
    """An observer's keys and sizes do not reach the session, while a driver's output reaches it."""
    s = await client.create("observe", start=True)
    driver = AttachStream(client.attach, s.id, rows=24, cols=80)
    await driver.wait_started()
    observer = AttachStream(client.attach, s.id, rows=50, cols=150, mode=attach_pb2.ATTACH_MODE_OBSERVE)
    try:
        await observer.wait_started()
        await observer.wait_for("$")
        observer.type("echo OBS-$((1+1))\r")
        observer.resize(60, 200)
        driver.type("echo DRV-$((2+3)); stty size\r")
        await observer.wait_for("DRV-5")
        await driver.wait_for("24 80")  # the observer's sizes never reach the session
        assert "OBS-2" not in driver.text
        assert "OBS-2" not in observer.text
        got = await client.get(s.id)
        assert got.attached
        assert got.viewer_count == 2
    finally:
        await driver.close()
        await observer.close()


async def test_take_over_ends_the_other_stream(client: Client) -> None:
    """A take-over attach ends every other viewer with TAKEN_OVER and then drives."""
    s = await client.create("takeover", start=True)
    first = AttachStream(client.attach, s.id)
    second: AttachStream | None = None
    try:
        await first.wait_started()
        second = AttachStream(client.attach, s.id, mode=attach_pb2.ATTACH_MODE_TAKE_OVER)
        await second.wait_started()
        end = await first.wait_end()
        assert end.reason == attach_pb2.END_REASON_TAKEN_OVER
        second.type("echo TAKEN-$((3*3))\r")
        await second.wait_for("TAKEN-9")
    finally:
        await first.close()
        if second is not None:
            await second.close()


async def test_two_viewers_see_the_same_output(client: Client) -> None:
    """Two drive viewers of one session both see what one of them typed."""
    s = await client.create("twoviewers", start=True)
    a = AttachStream(client.attach, s.id)
    await a.wait_started()
    b = AttachStream(client.attach, s.id)
    try:
        started_b = await b.wait_started()
        assert started_b.viewer_count == 2
        a.type("echo BOTH-$((5*5))\r")
        await a.wait_for("BOTH-25")
        await b.wait_for("BOTH-25")
    finally:
        await a.close()
        await b.close()


async def test_ctrl_b_d_detaches_and_the_session_keeps_running(client: Client) -> None:
    """tmux's detach chord ends the stream with DETACHED and leaves the container running."""
    s = await client.create("chord", start=True)
    view = AttachStream(client.attach, s.id)
    try:
        await view.wait_started()
        await view.wait_for("$")
        view.type(b"\x02d")
        end = await view.wait_end()
        assert end.reason == attach_pb2.END_REASON_DETACHED
        got = await client.get(s.id)
        assert got.running
        assert not got.attached
    finally:
        await view.close()


async def test_detach_frame_ends_with_detached(client: Client) -> None:
    """A detach frame from the client ends the stream with DETACHED."""
    s = await client.create("detachframe", start=True)
    view = AttachStream(client.attach, s.id)
    try:
        await view.wait_started()
        view.detach()
        end = await view.wait_end()
        assert end.reason == attach_pb2.END_REASON_DETACHED
        # Counted out before the end frame was sent: no wait needed.
        got = await client.get(s.id)
        assert (got.attached, got.viewer_count) == (False, 0)
    finally:
        await view.close()


async def test_session_exiting_by_itself_ends_the_stream_and_shows_stopped(client: Client) -> None:
    """When the CLI exits the container stops: the stream ends SESSION_ENDED and Get says stopped."""
    s = await client.create("selfexit", start=True)
    view = AttachStream(client.attach, s.id)
    try:
        await view.wait_started()
        await view.wait_for("$")
        view.type("exit\r")
        end = await view.wait_end()
        assert end.reason == attach_pb2.END_REASON_SESSION_ENDED
        await assert_stopped(client, s.id)
    finally:
        await view.close()


async def assert_stopped(client: Client, session_id: str) -> None:
    """Get reports the session stopped within a few seconds."""

    async def stopped() -> bool:
        return not (await client.get(session_id)).running

    done: bool = await assert_eventually(stopped, timeout=10)
    assert done


async def test_attach_to_unknown_or_stopped_session_is_refused(client: Client) -> None:
    """Attach to an unknown id fails NOT_FOUND; to a stopped session FAILED_PRECONDITION."""
    unknown = AttachStream(client.attach, "00000000-0000-4000-8000-000000000000")
    await unknown.wait_closed()
    assert isinstance(unknown.error, grpc.aio.AioRpcError)
    assert unknown.error.code() == grpc.StatusCode.NOT_FOUND
    s = await client.create("stopped")
    stopped = AttachStream(client.attach, s.id)
    await stopped.wait_closed()
    assert isinstance(stopped.error, grpc.aio.AioRpcError)
    assert stopped.error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "is not running" in (stopped.error.details() or "")
    await client.delete(s.id)
