"""``convocate.v1`` messages <-> :mod:`common.domain` types, both directions.

Used only by the edges: the agent's gRPC services and status emitter, and the one
agent client (:mod:`common.client`). The import-linter contract in ``pyproject.toml``
keeps every other module away from the pb2 modules.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from convocate.v1 import attach_pb2, link_pb2, sessions_pb2, status_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from common.domain import (
    Activity,
    ActivityState,
    AgentInfo,
    AttachEnded,
    AttachFrame,
    AttachMode,
    AttachStarted,
    EndReason,
    HostHealth,
    LinkState,
    NeedsInputReason,
    Screen,
    Session,
    SessionEvent,
    SessionEventKind,
    SessionLogEntry,
    TerminalSize,
)
from common.errors import InvalidArgumentError

__all__ = [
    "activity_from_proto",
    "activity_to_proto",
    "agent_info_from_proto",
    "attach_frame_from_proto",
    "attach_mode_from_proto",
    "attach_mode_to_proto",
    "end_reason_to_proto",
    "from_timestamp",
    "host_health_from_proto",
    "host_health_to_proto",
    "link_from_proto",
    "link_report",
    "link_to_proto",
    "log_entry_from_proto",
    "log_entry_to_proto",
    "screen_from_proto",
    "screen_to_proto",
    "session_event_from_proto",
    "session_event_to_proto",
    "session_from_proto",
    "session_to_proto",
    "timestamp",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIN_SECONDS = -62_135_596_800   # 0001-01-01T00:00:00Z, the first second a Timestamp may hold
_MAX_SECONDS = 253_402_300_799   # 9999-12-31T23:59:59Z, the last
_MODES: dict[attach_pb2.AttachMode.ValueType, AttachMode] = {
    attach_pb2.ATTACH_MODE_UNSPECIFIED: AttachMode.DRIVE,   # the proto's documented default
    attach_pb2.ATTACH_MODE_DRIVE: AttachMode.DRIVE,
    attach_pb2.ATTACH_MODE_OBSERVE: AttachMode.OBSERVE,
    attach_pb2.ATTACH_MODE_TAKE_OVER: AttachMode.TAKE_OVER,
}
_MODE_TO_PROTO: dict[AttachMode, attach_pb2.AttachMode.ValueType] = {
    AttachMode.DRIVE: attach_pb2.ATTACH_MODE_DRIVE,
    AttachMode.OBSERVE: attach_pb2.ATTACH_MODE_OBSERVE,
    AttachMode.TAKE_OVER: attach_pb2.ATTACH_MODE_TAKE_OVER,
}
_REASON_TO_PROTO: dict[EndReason, attach_pb2.EndReason.ValueType] = {
    EndReason.DETACHED: attach_pb2.END_REASON_DETACHED,
    EndReason.SESSION_ENDED: attach_pb2.END_REASON_SESSION_ENDED,
    EndReason.TAKEN_OVER: attach_pb2.END_REASON_TAKEN_OVER,
    EndReason.AGENT_SHUTDOWN: attach_pb2.END_REASON_AGENT_SHUTDOWN,
    EndReason.BACKGROUNDED: attach_pb2.END_REASON_BACKGROUNDED,
    EndReason.ERROR: attach_pb2.END_REASON_ERROR,
}
_REASONS = {v: k for k, v in _REASON_TO_PROTO.items()}
_KIND_TO_PROTO: dict[SessionEventKind, sessions_pb2.SessionEventKind.ValueType] = {
    SessionEventKind.EXISTING: sessions_pb2.SESSION_EVENT_KIND_EXISTING,
    SessionEventKind.SYNCED: sessions_pb2.SESSION_EVENT_KIND_SYNCED,
    SessionEventKind.CREATED: sessions_pb2.SESSION_EVENT_KIND_CREATED,
    SessionEventKind.UPDATED: sessions_pb2.SESSION_EVENT_KIND_UPDATED,
    SessionEventKind.DELETED: sessions_pb2.SESSION_EVENT_KIND_DELETED,
    SessionEventKind.STARTED: sessions_pb2.SESSION_EVENT_KIND_STARTED,
    SessionEventKind.STOPPED: sessions_pb2.SESSION_EVENT_KIND_STOPPED,
    SessionEventKind.ATTACHED: sessions_pb2.SESSION_EVENT_KIND_ATTACHED,
    SessionEventKind.DETACHED: sessions_pb2.SESSION_EVENT_KIND_DETACHED,
    SessionEventKind.ACTIVITY: sessions_pb2.SESSION_EVENT_KIND_ACTIVITY,
}
_KINDS = {v: k for k, v in _KIND_TO_PROTO.items()}
_STATE_TO_PROTO: dict[ActivityState, sessions_pb2.ActivityState.ValueType] = {
    ActivityState.UNKNOWN: sessions_pb2.ACTIVITY_STATE_UNKNOWN,
    ActivityState.WORKING: sessions_pb2.ACTIVITY_STATE_WORKING,
    ActivityState.NEEDS_INPUT: sessions_pb2.ACTIVITY_STATE_NEEDS_INPUT,
    ActivityState.IDLE: sessions_pb2.ACTIVITY_STATE_IDLE,
    ActivityState.STOPPED: sessions_pb2.ACTIVITY_STATE_STOPPED,
}
_STATES = {v: k for k, v in _STATE_TO_PROTO.items()}
_REASON_OF_INPUT_TO_PROTO: dict[NeedsInputReason, sessions_pb2.NeedsInputReason.ValueType] = {
    NeedsInputReason.NONE: sessions_pb2.NEEDS_INPUT_REASON_UNSPECIFIED,
    NeedsInputReason.PERMISSION: sessions_pb2.NEEDS_INPUT_REASON_PERMISSION,
    NeedsInputReason.QUESTION: sessions_pb2.NEEDS_INPUT_REASON_QUESTION,
    NeedsInputReason.IDLE_PROMPT: sessions_pb2.NEEDS_INPUT_REASON_IDLE_PROMPT,
}
_REASONS_OF_INPUT = {v: k for k, v in _REASON_OF_INPUT_TO_PROTO.items()}


# --- timestamps ------------------------------------------------------------------------------
def timestamp(when: datetime | None = None) -> Timestamp:
    """A protobuf Timestamp of ``when`` (now when None; naive means UTC): the one place one is built.

    Computed from the time since the epoch, as ``Timestamp.FromDatetime`` does, at a third
    of its cost (a List builds three per session).
    """
    when = when or datetime.now(UTC)
    since = (when if when.tzinfo is not None else when.replace(tzinfo=UTC)) - _EPOCH
    return Timestamp(seconds=since.days * 86400 + since.seconds, nanos=since.microseconds * 1000)


def from_timestamp(ts: Timestamp, present: bool = True) -> datetime | None:
    """``ts`` as an aware UTC datetime; None when the field was not set.

    As ``Timestamp.ToDatetime(tzinfo=UTC)`` (the same range check and rounding of the
    nanoseconds toward zero) at a third of its cost: a listing converts three per session.
    Out of range, it is the sender's error like any other bad field (an agent's answer is
    untrusted): a domain error the caller already handles as a failed call, not a
    ValueError that would end a command for every agent.

    Raises:
        InvalidArgumentError: outside what a Timestamp may hold (years 1 to 9999, nanos 0 to
            999999999).
    """
    if not present:
        return None
    seconds, nanos = ts.seconds, ts.nanos
    if not (_MIN_SECONDS <= seconds <= _MAX_SECONDS and 0 <= nanos < 1_000_000_000):
        raise InvalidArgumentError(f"a timestamp out of range: {seconds} s, {nanos} ns")
    return _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)


# --- sessions ---------------------------------------------------------------------------------
def session_to_proto(s: Session) -> sessions_pb2.Session:
    """The wire form of a session."""
    return sessions_pb2.Session(
        id=s.id, name=s.name, port=s.port, protocol=s.protocol, dns_name=s.dns_name,
        agent_id=s.agent_id, running=s.running, attached=s.attached, viewer_count=s.viewer_count,
        image=s.image, state_unknown=s.state_unknown, activity=activity_to_proto(s.activity),
        state_known_at=None if s.state_known_at is None else timestamp(s.state_known_at),
        created_at=None if s.created_at is None else timestamp(s.created_at),
        last_accessed=None if s.last_accessed is None else timestamp(s.last_accessed),
    )


def session_from_proto(msg: sessions_pb2.Session, agent_id: str = "") -> Session:
    """A session as an agent sent it (``agent_id`` fills an empty one; protocol defaults to tcp)."""
    return Session(
        id=msg.id, name=msg.name,
        created_at=from_timestamp(msg.created_at, msg.HasField("created_at")),
        last_accessed=from_timestamp(msg.last_accessed, msg.HasField("last_accessed")),
        port=msg.port, protocol=msg.protocol or "tcp", dns_name=msg.dns_name,
        agent_id=msg.agent_id or agent_id, running=msg.running, attached=msg.attached,
        viewer_count=msg.viewer_count, image=msg.image,
        activity=activity_from_proto(msg.activity) if msg.HasField("activity") else Activity(),
        state_unknown=msg.state_unknown,
        state_known_at=from_timestamp(msg.state_known_at, msg.HasField("state_known_at")),
    )


def activity_to_proto(a: Activity) -> sessions_pb2.Activity:
    """The wire form of a session's activity."""
    return sessions_pb2.Activity(state=_STATE_TO_PROTO[a.state], reason=_REASON_OF_INPUT_TO_PROTO[a.reason],
                                 message=a.message, since=None if a.since is None else timestamp(a.since))


def activity_from_proto(msg: sessions_pb2.Activity) -> Activity:
    """A session's activity as an agent sent it (an unknown or unspecified state is UNKNOWN)."""
    state = _STATES.get(msg.state, ActivityState.UNKNOWN)
    reason = _REASONS_OF_INPUT.get(msg.reason, NeedsInputReason.QUESTION) \
        if state is ActivityState.NEEDS_INPUT else NeedsInputReason.NONE
    return Activity(state=state, reason=reason, since=from_timestamp(msg.since, msg.HasField("since")),
                    message=msg.message)


def log_entry_to_proto(e: SessionLogEntry) -> sessions_pb2.SessionLogEntry:
    """The wire form of one event-log line."""
    return sessions_pb2.SessionLogEntry(time=timestamp(e.time), kind=e.kind, actor=e.actor, detail=e.detail,
                                        attributes=e.attributes)


def log_entry_from_proto(msg: sessions_pb2.SessionLogEntry) -> SessionLogEntry:
    """One event-log line as an agent sent it."""
    when = from_timestamp(msg.time, msg.HasField("time")) or datetime.fromtimestamp(0, UTC)
    return SessionLogEntry(time=when, kind=msg.kind, actor=msg.actor, detail=msg.detail,
                           attributes=dict(msg.attributes))


def screen_to_proto(screen: Screen) -> sessions_pb2.PeekSessionResponse:
    """The wire form of a peeked screen."""
    return sessions_pb2.PeekSessionResponse(screen=screen.text, rows=screen.rows, cols=screen.cols,
                                            time=timestamp(screen.time))


def screen_from_proto(msg: sessions_pb2.PeekSessionResponse) -> Screen:
    """A peeked screen as an agent sent it."""
    return Screen(text=msg.screen, rows=msg.rows, cols=msg.cols,
                  time=from_timestamp(msg.time, msg.HasField("time")))


def session_event_to_proto(event: SessionEvent) -> sessions_pb2.SessionEvent:
    """The wire form of a WatchSessions event."""
    msg = sessions_pb2.SessionEvent(kind=_KIND_TO_PROTO[event.kind], session_id=event.session_id,
                                    time=timestamp(event.time))
    if event.session is not None:
        msg.session.CopyFrom(session_to_proto(event.session))
    return msg


def session_event_from_proto(msg: sessions_pb2.SessionEvent, agent_id: str = "") -> SessionEvent | None:
    """A WatchSessions event; None for a kind this client does not know."""
    kind = _KINDS.get(msg.kind)
    if kind is None:
        return None
    session = session_from_proto(msg.session, agent_id) if msg.HasField("session") else None
    return SessionEvent(kind, session_id=msg.session_id, session=session,
                        time=from_timestamp(msg.time, msg.HasField("time")))


# --- link health and Ping -------------------------------------------------------------------
def link_to_proto(link: LinkState) -> link_pb2.LinkState:
    """The wire form of a link's state."""
    msg = link_pb2.LinkState(up=link.up, known=link.known, last_error=link.last_error,
                             dropped_events=link.dropped_events)
    if link.since is not None:
        msg.since.CopyFrom(timestamp(link.since))
    if link.last_ok is not None:
        msg.last_ok.CopyFrom(timestamp(link.last_ok))
    return msg


def link_from_proto(msg: link_pb2.LinkState) -> LinkState:
    """A link's state as the wire carried it."""
    return LinkState(up=msg.up, known=msg.known, last_error=msg.last_error,
                     dropped_events=msg.dropped_events,
                     since=from_timestamp(msg.since, msg.HasField("since")),
                     last_ok=from_timestamp(msg.last_ok, msg.HasField("last_ok")))


def link_report(agent_id: str, reporter: str, control: LinkState,
                agent_status: LinkState | None) -> status_pb2.LinkReport:
    """A ReportLink message: the shell -> agent link, and the agent's own view of agent -> shell."""
    report = status_pb2.LinkReport(agent_id=agent_id, reporter=reporter, control_link=link_to_proto(control))
    if agent_status is not None:
        report.agent_status_link.CopyFrom(link_to_proto(agent_status))
    return report


def host_health_to_proto(h: HostHealth) -> sessions_pb2.HostHealth:
    """The wire form of a host's health."""
    msg = sessions_pb2.HostHealth(
        engine_up=h.engine_up, engine_version=h.engine_version, engine_error=h.engine_error,
        disk_free_bytes=h.disk_free_bytes, disk_total_bytes=h.disk_total_bytes, disk_low=h.disk_low,
        mem_available_bytes=h.mem_available_bytes, mem_total_bytes=h.mem_total_bytes,
        load1=h.load1, cpus=h.cpus,
    )
    if h.checked_at is not None:
        msg.checked_at.CopyFrom(timestamp(h.checked_at))
    return msg


def host_health_from_proto(msg: sessions_pb2.HostHealth) -> HostHealth:
    """A host's health as the wire carried it."""
    return HostHealth(
        engine_up=msg.engine_up, engine_version=msg.engine_version, engine_error=msg.engine_error,
        checked_at=from_timestamp(msg.checked_at, msg.HasField("checked_at")),
        disk_free_bytes=msg.disk_free_bytes, disk_total_bytes=msg.disk_total_bytes, disk_low=msg.disk_low,
        mem_available_bytes=msg.mem_available_bytes, mem_total_bytes=msg.mem_total_bytes,
        load1=msg.load1, cpus=msg.cpus,
    )


def agent_info_from_proto(msg: sessions_pb2.PingResponse) -> AgentInfo:
    """An agent's Ping answer (``status_link`` and ``health`` None when the agent sent none)."""
    return AgentInfo(
        agent_id=msg.agent_id, version=msg.version, hostname=msg.hostname,
        server_time=from_timestamp(msg.server_time, msg.HasField("server_time")),
        status_link=link_from_proto(msg.status_link) if msg.HasField("status_link") else None,
        current_image=msg.current_image,
        health=host_health_from_proto(msg.health) if msg.HasField("health") else None,
    )


# --- attach -------------------------------------------------------------------------------------
def attach_mode_to_proto(mode: AttachMode) -> attach_pb2.AttachMode.ValueType:
    """The wire value of an attach mode."""
    return _MODE_TO_PROTO[mode]


def attach_mode_from_proto(value: attach_pb2.AttachMode.ValueType) -> AttachMode | None:
    """The attach mode of a wire value (UNSPECIFIED is DRIVE); None for an unknown value."""
    return _MODES.get(value)


def end_reason_to_proto(reason: EndReason) -> attach_pb2.EndReason.ValueType:
    """The wire value of an end reason."""
    return _REASON_TO_PROTO[reason]


def attach_frame_from_proto(resp: attach_pb2.AttachResponse) -> AttachFrame | None:
    """One frame from the agent; None for an empty or unknown frame.

    An end frame with an unknown or unspecified reason counts as :attr:`EndReason.ERROR`.
    """
    kind = resp.WhichOneof("frame")
    if kind == "output":
        return resp.output
    if kind == "size":
        return TerminalSize(resp.size.rows, resp.size.cols)
    if kind == "started":
        mode = _MODES.get(resp.started.mode, AttachMode.DRIVE)
        return AttachStarted(resp.started.session_id, mode, resp.started.viewer_count)
    if kind == "end":
        return AttachEnded(_REASONS.get(resp.end.reason, EndReason.ERROR), resp.end.message)
    return None
