"""The status service's merged, cached view of every agent's health and events.

One :class:`StatusView` per status service. Agents' Publish streams feed it events,
local clients feed it shell → agent link reports, a ticker re-checks heartbeat
staleness, and every change goes to the watchers (each with a bounded queue; a watcher
that falls behind gets a fresh snapshot instead of a backlog).

Everything an agent sends is untrusted and bounded: the number of agents (ids that are
not registered and have no open stream are evicted; past :data:`MAX_AGENTS` the least
recently heard idle one makes room), reporters per agent, attributes per event and
their sizes, the bytes of events kept per agent, and the heartbeat interval an agent
may claim. A snapshot that would still be too big for one gRPC message is sent
without the per-agent event lists, so GetView and Watch keep working.

Host health (engine, disk, memory, load) rides on the heartbeat and ``agent.health``
attributes; an engine that is down or a disk that is nearly full becomes a notice, and
so does a ``sessions.mass_death`` alarm, for :data:`ALARM_SECONDS`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from convocate.v1 import link_pb2, status_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from common.domain import HostHealth, host_health_from_attributes
from common.errors import ResourceExhaustedError
from common.grpc_options import MAX_MESSAGE_BYTES
from common.logging import get_logger
from common.proto_convert import host_health_to_proto
from shell.status.link_notices import LinkFacts, link_notices

__all__ = ["MAX_AGENTS", "MAX_EVENT_BYTES", "MAX_SESSION_EVENTS", "RECENT_EVENTS", "StatusView", "Watcher"]

RECENT_EVENTS = 20
BUDGET_FACTOR = 2.5
MAX_SESSION_EVENTS = 1000
WATCH_QUEUE = 1024
MAX_AGENTS = 1024               # agents the view holds at once
MAX_REPORTERS = 16              # local reporters per agent (the oldest report makes room)
MAX_ATTRIBUTES = 32             # attributes kept per event (the rest are dropped)
MAX_ATTRIBUTE_KEY = 64          # characters of an attribute name
MAX_ATTRIBUTE_VALUE = 1024      # characters of an attribute value
MAX_FIELD = 256                 # characters of version, hostname, a reporter's name
MAX_EVENT_BYTES = 16 * 1024     # an event bigger than this (after trimming) is refused
MAX_AGENT_EVENT_BYTES = 256 * 1024  # bytes of per-session events kept per agent
MAX_INTERVAL = 3600.0           # the longest heartbeat interval an agent may claim (s)
MIN_EVICT_AFTER = 60.0          # an idle, unregistered agent is forgotten after this long (s)
SNAPSHOT_LIMIT = MAX_MESSAGE_BYTES - 256 * 1024
LOG_BURST = 5                   # refusals logged per agent per LOG_WINDOW
LOG_WINDOW = 60.0
ALARM_SECONDS = 600.0           # a mass-death alarm stays a notice this long
_HEALTH_EVENTS = ("agent.started", "agent.heartbeat", "agent.health")
log = get_logger(__name__)


def _now() -> Timestamp:
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts


def _key(link: link_pb2.LinkState) -> tuple[bool, bool, str]:
    return (link.known, link.up, link.last_error)


def _gist(host: HostHealth | None) -> tuple[bool, bool, str] | None:
    return None if host is None else (host.engine_up, host.disk_low, host.engine_error)


def _cut(text: str, limit: int = MAX_FIELD) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _interval(text: str) -> float | None:
    """A claimed heartbeat interval, or None unless finite and within (0, MAX_INTERVAL]."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and 0 < value <= MAX_INTERVAL else None


class LogBudget:
    """At most ``burst`` log lines per key per ``window`` seconds (refusals of a flood)."""

    def __init__(self, clock: Callable[[], float], burst: int = LOG_BURST,
                 window: float = LOG_WINDOW) -> None:
        self._clock, self._burst, self._window = clock, burst, window
        self._spent: dict[str, tuple[float, int]] = {}
        self.suppressed = 0

    def allow(self, key: str) -> bool:
        """True if a line for ``key`` may be logged now."""
        now = self._clock()
        start, count = self._spent.get(key, (now, 0))
        if now - start > self._window:
            start, count = now, 0
        if len(self._spent) > MAX_AGENTS and key not in self._spent:
            self._spent.clear()  # bounded: a flood of keys resets the budget book
        self._spent[key] = (start, count + 1)
        if count < self._burst:
            return True
        self.suppressed += 1
        return False


@dataclass
class _Agent:
    agent_id: str
    version: str = ""
    hostname: str = ""
    streams: int = 0
    last_heartbeat: Timestamp | None = None
    heartbeat_mono: float | None = None
    status_error: str = "no status stream yet"
    status_since: Timestamp = field(default_factory=_now)
    status_last_ok: Timestamp | None = None
    events_received: int = 0
    events_dropped: int = 0
    dropped_at: float | None = None     # monotonic time the drop count last grew
    # reporter -> (when received, its view of shell -> agent)
    reports: dict[str, tuple[float, link_pb2.LinkState]] = field(default_factory=dict)
    agent_status: link_pb2.LinkState | None = None
    interval: float = 0.0                 # the agent's own heartbeat interval, if it said
    control_summary: tuple[bool, bool, str, bool] = (False, False, "", False)
    missing_pings: str = ""
    recent: deque[status_pb2.Event] = field(default_factory=lambda: deque(maxlen=RECENT_EVENTS))
    last_session_events: dict[str, status_pb2.Event] = field(default_factory=dict)
    session_event_bytes: int = 0
    events_refused: int = 0
    heard_at: float = 0.0                 # monotonic time of the last input about it
    stale: bool = True
    host: HostHealth | None = None        # engine and host, from the latest heartbeat
    alarm: tuple[float, str] | None = None  # (monotonic time, text) of the last mass-death alarm


class Watcher:
    """One Watch stream's queue of updates (bounded; overflow turns into a resync)."""

    def __init__(self, view: StatusView) -> None:
        self._view = view
        self._queue: asyncio.Queue[status_pb2.ViewUpdate] = asyncio.Queue(WATCH_QUEUE)
        self._resync = True  # the first update is always a snapshot

    def offer(self, update: status_pb2.ViewUpdate) -> None:
        """Queue ``update``; when full, drop the backlog and resync with a snapshot."""
        if self._resync:
            return
        try:
            self._queue.put_nowait(update)
        except asyncio.QueueFull:
            self._resync = True
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(status_pb2.ViewUpdate())  # wake the reader

    async def next(self) -> status_pb2.ViewUpdate:
        """The next update to send (a snapshot after a start or an overflow)."""
        if self._resync:
            self._resync = False
            return status_pb2.ViewUpdate(snapshot=self._view.snapshot())
        update = await self._queue.get()
        if update.WhichOneof("update") is None:  # the overflow wake-up
            return await self.next()
        return update


class StatusView:
    """Per-agent health merged from status streams, link reports and heartbeat timing.

    Args:
        heartbeat_budget: seconds without a heartbeat before an agent is stale
            (typically 2.5 x the agents' heartbeat interval; an agent that reports a
            longer interval gets 2.5 x its own).
        clock: monotonic clock (tests may pass their own).
        report_ttl: seconds a local client's link report stays valid (clients resend
            theirs every heartbeat interval; default 2 x ``heartbeat_budget``). An
            expired report means nobody watches shell -> agent now, so the agent's own
            "no Ping" notice takes over.
        registered: the ids of the registered agents (None: no registry). Others are
            forgotten once they have no stream and nothing was heard of them for
            ``max(60 s, 4 x heartbeat_budget)``.
        max_agents: the most agents held at once.
    """

    def __init__(self, heartbeat_budget: float, clock: Callable[[], float] = time.monotonic,
                 report_ttl: float | None = None, registered: Callable[[], Collection[str]] | None = None,
                 max_agents: int = MAX_AGENTS) -> None:
        self.heartbeat_budget = heartbeat_budget
        self.report_ttl = report_ttl if report_ttl is not None else 2 * heartbeat_budget
        self._clock = clock
        self._registered = registered
        self.max_agents = max_agents
        self.evict_after = max(MIN_EVICT_AFTER, 4 * heartbeat_budget)
        self._agents: dict[str, _Agent] = {}
        self._watchers: set[Watcher] = set()
        self.log_budget = LogBudget(clock)
        self._evicted_at = -math.inf

    # --- watchers ------------------------------------------------------------------------
    def subscribe(self) -> Watcher:
        """A new watcher; its first update is the snapshot."""
        w = Watcher(self)
        self._watchers.add(w)
        return w

    def unsubscribe(self, watcher: Watcher) -> None:
        """Forget ``watcher``."""
        self._watchers.discard(watcher)

    def _broadcast(self, update: status_pb2.ViewUpdate) -> None:
        for w in list(self._watchers):
            w.offer(update)

    def _changed(self, agent: _Agent) -> None:
        self._broadcast(status_pb2.ViewUpdate(agent=self._health(agent)))

    # --- inputs ----------------------------------------------------------------------------
    def _agent(self, agent_id: str) -> _Agent:
        a = self._agents.get(agent_id)
        if a is None:
            if len(self._agents) >= self.max_agents and not self._make_room():
                raise ResourceExhaustedError(f"the status view holds {self.max_agents} agents already")
            a = self._agents[agent_id] = _Agent(agent_id)
        a.heard_at = self._clock()
        return a

    def _idle(self, a: _Agent) -> bool:
        return a.streams == 0 and not any(self._recent(at) for at, _ in a.reports.values())

    def _make_room(self) -> bool:
        """Forget the least recently heard idle agent; False if every agent is busy."""
        idle = [a for a in self._agents.values() if self._idle(a)]
        if not idle:
            return False
        victim = min(idle, key=lambda a: a.heard_at)
        del self._agents[victim.agent_id]
        log.info("agent forgotten to make room", agent=victim.agent_id)
        return True

    def evict_unknown(self) -> None:
        """Forget agents that are not registered, have no stream and were not heard of lately."""
        now = self._clock()
        if self._registered is None or now - self._evicted_at < 1.0:
            return
        self._evicted_at = now
        registered = set(self._registered())
        for a in list(self._agents.values()):
            if a.agent_id not in registered and self._idle(a) and now - a.heard_at > self.evict_after:
                del self._agents[a.agent_id]
                log.info("unregistered agent forgotten", agent=a.agent_id)

    def refuse(self, agent_id: str, what: str, **details: object) -> None:
        """Log a refused input about ``agent_id`` (rate-limited per agent)."""
        if self.log_budget.allow(agent_id):
            log.warning("status input refused", agent=agent_id, what=what, **details)

    def agent_count(self) -> int:
        """How many agents the view holds."""
        return len(self._agents)

    def stream_opened(self, agent_id: str) -> None:
        """An agent's Publish stream started."""
        a = self._agent(agent_id)
        a.streams += 1
        log.info("status stream opened", agent=agent_id, streams=a.streams)
        self._refresh(a, force=True)

    def stream_closed(self, agent_id: str, error: str) -> None:
        """An agent's Publish stream ended (``error`` says why; empty after agent.shutdown)."""
        a = self._agent(agent_id)
        a.streams = max(0, a.streams - 1)
        if a.streams == 0:
            if error:  # without one, the agent said agent.shutdown and status_error says so
                a.status_error = f"status stream closed: {error}"
            a.status_since = _now()
        log.info("status stream closed", agent=agent_id, error=error, streams=a.streams)
        self._refresh(a, force=True)

    def _trim(self, event: status_pb2.Event) -> bool:
        """Bound the event's attributes in place; False if it is still too big to keep."""
        attrs = dict(event.attributes)
        if len(attrs) > MAX_ATTRIBUTES or any(
            len(k) > MAX_ATTRIBUTE_KEY or len(v) > MAX_ATTRIBUTE_VALUE for k, v in attrs.items()
        ):
            kept = {_cut(k, MAX_ATTRIBUTE_KEY): _cut(v, MAX_ATTRIBUTE_VALUE)
                    for k, v in sorted(attrs.items())[:MAX_ATTRIBUTES]}
            event.ClearField("attributes")
            event.attributes.update(kept)
        event.type = _cut(event.type, MAX_ATTRIBUTE_KEY)
        return event.ByteSize() <= MAX_EVENT_BYTES

    def _keep_session_event(self, a: _Agent, event: status_pb2.Event) -> None:
        """Newest last; bounded in count and bytes so deleted sessions do not pile up."""
        old = a.last_session_events.pop(event.session_id, None)
        if old is not None:
            a.session_event_bytes -= old.ByteSize()
        a.last_session_events[event.session_id] = event
        a.session_event_bytes += event.ByteSize()
        events = a.last_session_events
        while len(events) > MAX_SESSION_EVENTS or a.session_event_bytes > MAX_AGENT_EVENT_BYTES:
            oldest = next(iter(a.last_session_events))
            a.session_event_bytes -= a.last_session_events.pop(oldest).ByteSize()

    def apply_event(self, event: status_pb2.Event) -> None:
        """Merge one event (unknown types are kept and forwarded) and log it.

        Raises:
            ResourceExhaustedError: the view is full of agents that are all active.
        """
        if not event.HasField("time"):
            event.time.CopyFrom(_now())
        a = self._agent(event.agent_id)
        if not self._trim(event):
            a.events_refused += 1
            self.refuse(a.agent_id, "event too big", type=event.type, bytes=event.ByteSize(),
                        refused=a.events_refused)
            return
        before = (a.version, a.hostname, a.events_dropped, a.missing_pings, a.status_error, _gist(a.host),
                  a.alarm)
        a.events_received += 1
        attrs = dict(event.attributes)
        log.info("status event", type=event.type, agent=event.agent_id, session=event.session_id or None,
                 seq=event.seq, attributes={k: _cut(v, 80) for k, v in sorted(attrs.items())[:8]} or None)
        a.version = _cut(attrs.get("version", a.version))
        if "interval" in attrs:
            interval = _interval(attrs["interval"])
            if interval is None:
                self.refuse(a.agent_id, "heartbeat interval out of range",
                            interval=_cut(attrs["interval"], 32))
            else:
                a.interval = interval
        a.hostname = _cut(attrs.get("hostname", a.hostname))
        if "dropped" in attrs and attrs["dropped"].isdigit() and len(attrs["dropped"]) <= 18:
            if int(attrs["dropped"]) > a.events_dropped:
                a.dropped_at = self._clock()
            a.events_dropped = int(attrs["dropped"])
        if event.type in ("agent.started", "agent.heartbeat"):
            a.last_heartbeat = event.time
            a.heartbeat_mono = self._clock()
            a.status_last_ok = event.time
        elif event.type == "agent.shutdown":
            a.status_error = "agent shut down"
            a.heartbeat_mono = None
        elif event.type == "link.control_stale":
            a.missing_pings = _cut(attrs.get("detail", "no Ping from the shell within the budget"))
        elif event.type == "link.control_restored":
            a.missing_pings = ""
        if event.type in _HEALTH_EVENTS:
            a.host = host_health_from_attributes(attrs) or a.host
        elif event.type == "sessions.mass_death":
            text = attrs.get("detail") or f"{attrs.get('count', 'several')} sessions stopped unasked"
            a.alarm = (self._clock(), _cut(text, MAX_ATTRIBUTE_VALUE))
            log.warning("sessions died at once", agent=a.agent_id, detail=a.alarm[1])
        a.recent.append(event)
        if event.session_id:
            self._keep_session_event(a, event)
        self._broadcast(status_pb2.ViewUpdate(event=event))
        # The event itself went out above; a full agent update only when its summary moved
        # (an AgentHealth carries every session's last event: too big to send per event).
        after = (a.version, a.hostname, a.events_dropped, a.missing_pings, a.status_error, _gist(a.host),
                 a.alarm)
        self._refresh(a, force=before != after or event.type in ("agent.started", "agent.shutdown"))

    def report_link(self, report: status_pb2.LinkReport) -> None:
        """Record a local client's view of shell -> agent (and the agent's status link)."""
        a = self._agent(report.agent_id)
        reporter = _cut(report.reporter or "unknown")
        old = a.reports.get(reporter)
        changed = old is None or _key(old[1]) != _key(report.control_link)
        if report.control_link.known:
            if old is None and len(a.reports) >= MAX_REPORTERS:  # the oldest report makes room
                del a.reports[min(a.reports, key=lambda r: a.reports[r][0])]
            report.control_link.last_error = _cut(report.control_link.last_error, MAX_ATTRIBUTE_VALUE)
            a.reports[reporter] = (self._clock(), report.control_link)
        else:  # the reporter withdraws (a console that exits stops vouching either way)
            changed = a.reports.pop(reporter, None) is not None
        if report.HasField("agent_status_link"):
            previous = a.agent_status
            changed = changed or previous is None or _key(previous) != _key(report.agent_status_link)
            a.agent_status = report.agent_status_link
        if changed:
            log.info("link report", agent=report.agent_id, reporter=reporter,
                     control_up=report.control_link.up, control_error=report.control_link.last_error,
                     agent_status_up=report.agent_status_link.up)
        self._refresh(a, force=changed)

    def check_staleness(self) -> None:
        """Re-evaluate every agent's heartbeat age and forget unknown idle ones (called by a ticker)."""
        self.evict_unknown()
        for a in list(self._agents.values()):
            self._refresh(a, force=False)

    # --- outputs -----------------------------------------------------------------------------
    def _budget(self, a: _Agent) -> float:
        # An agent that says it beats slower than we expect gets its own, longer budget.
        return max(self.heartbeat_budget, BUDGET_FACTOR * a.interval)

    def _recent(self, when: float | None) -> bool:
        return when is not None and self._clock() - when <= self.report_ttl

    def _control(self, a: _Agent) -> link_pb2.LinkState:
        """The shell -> agent link merged over fresh reports: down if any reporter sees it down."""
        now = self._clock()
        fresh = [link for at, link in a.reports.values() if now - at <= self.report_ttl]
        if not fresh:
            return link_pb2.LinkState(known=False)
        down = [link for link in fresh if not link.up]
        return down[0] if down else fresh[-1]

    def _refresh(self, a: _Agent, *, force: bool) -> None:
        age = None if a.heartbeat_mono is None else self._clock() - a.heartbeat_mono
        budget = self._budget(a)
        stale = age is None or age > budget
        if stale and not a.stale and a.streams > 0 and age is not None:
            a.status_error = f"no heartbeat for {age:.1f} s (budget {budget:g} s)"
            a.status_since = _now()
            log.warning("agent heartbeat stale", agent=a.agent_id, age=round(age, 2))
        control = self._control(a)
        summary = (control.known, control.up, control.last_error, self._recent(a.dropped_at))
        flipped = stale != a.stale or summary != a.control_summary
        a.stale, a.control_summary = stale, summary
        if flipped or force:
            self._changed(a)

    def _status_link(self, a: _Agent) -> link_pb2.LinkState:
        up = a.streams > 0 and not a.stale
        link = link_pb2.LinkState(up=up, known=True, dropped_events=a.events_dropped,
                                  last_error="" if up else a.status_error)
        link.since.CopyFrom(a.status_since)
        if a.status_last_ok is not None:
            link.last_ok.CopyFrom(a.status_last_ok)
        return link

    def _health(self, a: _Agent, *, events: bool = True) -> status_pb2.AgentHealth:
        status = self._status_link(a)
        control = self._control(a)
        agent_status_error = ""
        if a.agent_status is not None and a.agent_status.known and not a.agent_status.up:
            agent_status_error = f"agent says: {a.agent_status.last_error or 'down'}"
        facts = LinkFacts(
            status_alive=status.up, status_error=status.last_error,
            control_known=control.known, control_up=control.up, control_error=control.last_error,
            agent_status_error=agent_status_error, agent_missing_pings=a.missing_pings,
            # The count is cumulative; the notice lasts only while drops are recent.
            events_dropped=a.events_dropped if self._recent(a.dropped_at) else 0,
        )
        h = status_pb2.AgentHealth(
            agent_id=a.agent_id, version=a.version, hostname=a.hostname, connected=a.streams > 0,
            status_link=status, control_link=control, events_received=a.events_received,
            events_dropped=a.events_dropped,
            notices=[*self._alarm(a), *link_notices(facts), *self._host_notices(a)],
            recent_events=list(a.recent) if events else [], heartbeat_stale=a.stale,
        )
        if a.last_heartbeat is not None:
            h.last_heartbeat.CopyFrom(a.last_heartbeat)
        if a.host is not None:
            h.host.CopyFrom(host_health_to_proto(a.host))
        if events:
            for sid, ev in a.last_session_events.items():
                h.last_session_events[sid].CopyFrom(ev)
        return h

    def _alarm(self, a: _Agent) -> list[str]:
        """A recent mass-death alarm (it comes first among the notices)."""
        recent = a.alarm is not None and self._clock() - a.alarm[0] <= ALARM_SECONDS
        return [a.alarm[1]] if a.alarm is not None and recent else []

    @staticmethod
    def _host_notices(a: _Agent) -> list[str]:
        """Engine down, disk nearly full (while the agent is heard)."""
        return list(a.host.problems()) if a.host is not None and not a.stale else []

    def health(self, agent_id: str) -> status_pb2.AgentHealth | None:
        """One agent's health (None if never heard of)."""
        a = self._agents.get(agent_id)
        return None if a is None else self._health(a)

    def snapshot(self) -> status_pb2.View:
        """The whole view, agents sorted by id (without event lists if it would not fit one message)."""
        view = status_pb2.View(agents=[self._health(self._agents[k]) for k in sorted(self._agents)])
        if view.ByteSize() > SNAPSHOT_LIMIT:
            log.warning("status view too big for one message: sent without event lists",
                        bytes=view.ByteSize(), agents=len(self._agents))
            view = status_pb2.View(agents=[self._health(self._agents[k], events=False)
                                           for k in sorted(self._agents)])
        view.generated_at.CopyFrom(_now())
        return view
