"""Domain types and their wire conversion: round trips, defaults, the status letter."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from convocate.v1 import attach_pb2, sessions_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from common.domain import (
    AttachEnded,
    AttachMode,
    AttachStarted,
    EndReason,
    LinkState,
    Session,
    SessionEvent,
    SessionEventKind,
    TerminalSize,
    rfc3339,
    session_status,
)
from common.errors import InvalidArgumentError
from common.proto_convert import (
    agent_info_from_proto,
    attach_frame_from_proto,
    attach_mode_from_proto,
    attach_mode_to_proto,
    from_timestamp,
    link_from_proto,
    link_to_proto,
    session_event_from_proto,
    session_event_to_proto,
    session_from_proto,
    session_to_proto,
    timestamp,
)

T0 = datetime(2026, 1, 2, 3, 4, 5, 123000, tzinfo=UTC)


def test_session_and_event_round_trip() -> None:
    """A session and its event survive domain -> pb2 -> domain unchanged."""
    s = Session(id="1", name="one", created_at=T0, last_accessed=T0, port=1001, protocol="udp",
                dns_name="one", agent_id="a", running=True, attached=True, viewer_count=2, image="img")
    assert session_from_proto(session_to_proto(s)) == s
    event = SessionEvent(SessionEventKind.STARTED, session_id="1", session=s, time=T0)
    assert session_event_from_proto(session_event_to_proto(event)) == event
    synced = session_event_from_proto(session_event_to_proto(SessionEvent(SessionEventKind.SYNCED, time=T0)))
    assert synced == SessionEvent(SessionEventKind.SYNCED, time=T0)


def test_wire_defaults_fill_in() -> None:
    """An empty agent id and protocol take the answering agent and tcp; unknown kinds are dropped."""
    s = session_from_proto(sessions_pb2.Session(id="x"), "agent-b")
    assert (s.agent_id, s.protocol, s.created_at) == ("agent-b", "tcp", None)
    assert session_event_from_proto(sessions_pb2.SessionEvent(kind=99)) is None   # type: ignore[arg-type]


def test_link_and_ping() -> None:
    """Link states round-trip; a Ping without a status link says None, not 'down'."""
    link = LinkState(up=True, known=True, since=T0, last_ok=T0, dropped_events=3)
    assert link_from_proto(link_to_proto(link)) == link
    ping = sessions_pb2.PingResponse(agent_id="a", version="v", server_time=timestamp(T0))
    info = agent_info_from_proto(ping)
    assert (info.status_link, info.server_time) == (None, T0)


def test_attach_modes_and_frames() -> None:
    """Modes map both ways (UNSPECIFIED is DRIVE); frames become domain frames; odd end reasons are ERROR."""
    for mode in AttachMode:
        assert attach_mode_from_proto(attach_mode_to_proto(mode)) is mode
    assert attach_mode_from_proto(attach_pb2.ATTACH_MODE_UNSPECIFIED) is AttachMode.DRIVE
    assert attach_mode_from_proto(42) is None   # type: ignore[arg-type]
    r = attach_pb2.AttachResponse
    assert attach_frame_from_proto(r(output=b"hi")) == b"hi"
    assert attach_frame_from_proto(r(size=attach_pb2.SizeNotice(rows=2, cols=3))) == TerminalSize(2, 3)
    started = attach_frame_from_proto(r(started=attach_pb2.AttachStarted(
        session_id="s", mode=attach_pb2.ATTACH_MODE_OBSERVE, viewer_count=2)))
    assert started == AttachStarted("s", AttachMode.OBSERVE, 2)
    end = attach_frame_from_proto(r(end=attach_pb2.AttachEnd(reason=attach_pb2.END_REASON_UNSPECIFIED,
                                                             message="m")))
    assert end == AttachEnded(EndReason.ERROR, "m")
    assert attach_frame_from_proto(r()) is None


def test_status_letter_and_rfc3339() -> None:
    """One status letter rule; RFC 3339 text like protobuf's JSON form."""
    assert [session_status(running=r, attached=a) for r, a in
            ((True, True), (True, False), (False, True), (False, False))] == ["C", "R", "L", "-"]
    assert session_status(running=True, attached=True, orphan=True) == "O"
    assert rfc3339(T0) == timestamp(T0).ToJsonString() == "2026-01-02T03:04:05.123Z"
    whole = T0.replace(microsecond=0)
    assert rfc3339(whole) == timestamp(whole).ToJsonString()
    odd = T0.replace(microsecond=123456)
    assert rfc3339(odd) == timestamp(odd).ToJsonString()
    assert rfc3339(None) == ""


def test_timestamps_convert_as_protobufs_own_functions_do() -> None:
    """from_timestamp and rfc3339 are quicker stand-ins for ToDatetime and ToJsonString: the same
    results over the whole range (a seeded sample and its ends); outside it, a domain error (a
    sender's bad field) where protobuf raises ValueError."""
    rng = random.Random(13)
    low, high = -62_135_596_800, 253_402_300_799
    samples = [(low, 0), (high, 999_999_999), (0, 0), (-1, 999_999_999), (1, 1_000)]
    samples += [(rng.randint(low, high), rng.randrange(1_000_000_000)) for _ in range(5_000)]
    for seconds, nanos in samples:
        ts = Timestamp(seconds=seconds, nanos=nanos)
        when = from_timestamp(ts)
        assert when == ts.ToDatetime(tzinfo=UTC)
        assert when is not None
        assert when.utcoffset() == timedelta(0)
        assert rfc3339(when) == timestamp(when).ToJsonString()
    assert from_timestamp(Timestamp(seconds=5), present=False) is None
    for seconds, nanos in ((high + 1, 0), (low - 1, 0), (0, -1), (0, 1_000_000_000)):
        with pytest.raises(InvalidArgumentError, match="out of range"):
            from_timestamp(Timestamp(seconds=seconds, nanos=nanos))
        with pytest.raises(ValueError):
            Timestamp(seconds=seconds, nanos=nanos).ToDatetime(tzinfo=UTC)
    local = datetime(2026, 1, 2, 4, 4, 5, tzinfo=timezone(timedelta(hours=1)))
    assert rfc3339(local) == "2026-01-02T03:04:05Z"
