"""Activity, event-log lines and peeked screens: domain <-> wire round trips and defaults."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from convocate.v1 import sessions_pb2

from common.domain import (
    Activity,
    ActivityState,
    NeedsInputReason,
    Screen,
    Session,
    SessionEvent,
    SessionEventKind,
    SessionLogEntry,
)
from common.proto_convert import (
    activity_from_proto,
    activity_to_proto,
    log_entry_from_proto,
    log_entry_to_proto,
    screen_from_proto,
    screen_to_proto,
    session_event_from_proto,
    session_event_to_proto,
    session_from_proto,
    session_to_proto,
)

T0 = datetime(2026, 1, 2, 3, 4, 5, 123000, tzinfo=UTC)


@pytest.mark.parametrize("activity", [
    Activity(),
    Activity(ActivityState.WORKING, since=T0),
    Activity(ActivityState.NEEDS_INPUT, NeedsInputReason.PERMISSION, T0, "Claude needs your permission"),
    Activity(ActivityState.NEEDS_INPUT, NeedsInputReason.IDLE_PROMPT, T0),
    Activity(ActivityState.IDLE, since=T0),
    Activity(ActivityState.STOPPED, since=T0),
])
def test_activity_round_trips(activity: Activity) -> None:
    """Every state and reason survives domain -> pb2 -> domain, inside a session and an event."""
    assert activity_from_proto(activity_to_proto(activity)) == activity
    session = Session(id="s1", name="one", activity=activity)
    assert session_from_proto(session_to_proto(session)).activity == activity
    event = SessionEvent(SessionEventKind.ACTIVITY, session_id="s1", session=session, time=T0)
    assert session_event_from_proto(session_event_to_proto(event)) == event


def test_activity_wire_defaults() -> None:
    """An agent that sends no activity reads as unknown; a reason outside needs-input is dropped."""
    assert session_from_proto(sessions_pb2.Session(id="x")).activity == Activity()
    odd = sessions_pb2.Activity(state=sessions_pb2.ACTIVITY_STATE_IDLE,
                                reason=sessions_pb2.NEEDS_INPUT_REASON_PERMISSION)
    assert activity_from_proto(odd) == Activity(ActivityState.IDLE)
    future = sessions_pb2.Activity(state=99, reason=99)  # type: ignore[arg-type] # a newer agent's values
    assert activity_from_proto(future).state is ActivityState.UNKNOWN
    asks = sessions_pb2.Activity(state=sessions_pb2.ACTIVITY_STATE_NEEDS_INPUT, reason=99)  # type: ignore[arg-type]
    assert activity_from_proto(asks).reason is NeedsInputReason.QUESTION
    assert Activity(ActivityState.NEEDS_INPUT).needs_input
    assert not Activity(ActivityState.IDLE).needs_input


def test_log_entry_and_screen_round_trip() -> None:
    """An event-log line and a peeked screen survive the wire unchanged."""
    entry = SessionLogEntry(T0, "reply", actor="console:op@shell", detail="sent 3 characters",
                            attributes={"text": "yes"})
    assert log_entry_from_proto(log_entry_to_proto(entry)) == entry
    screen = Screen("line 1\nline 2", rows=24, cols=80, time=T0)
    assert screen_from_proto(screen_to_proto(screen)) == screen
