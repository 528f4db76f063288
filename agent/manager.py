"""The agent's core: every session operation, the live running state and its events.

It works on dataclasses and publishes :mod:`common.domain` types; the gRPC servicers
convert at the edge (:mod:`common.proto_convert`). Changes of the
record are serialised by one lock (uniqueness checks and writes must not interleave).
The running state follows Docker events (with resync after reconnects), and each
transition is published once, whichever source sees it first. List and Get still read
the engine on every call, never only the events (which a slow reader can miss): Lists
that come at once share one reading taken after each began (:mod:`agent.shared_refresh`).

Health: while the engine does not answer, every session's state is *unknown* (not
running, not stopped), stamped with when it was last read; sessions that stop without
an operator asking are counted, and ``mass_death_count`` of them within
``mass_death_window`` seconds publish one ``sessions.mass_death`` event naming them
with their exit codes. A write first checks free space (``write_min_free_bytes``), and
a disk that fills up during it is reported as "disk full" (the store cleans up).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import errno
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import TypeVar

from agent.activity import ActivityTracker
from agent.attach_manager import AttachManager
from agent.cli_settings import CliSettingsError, write_cli_settings
from agent.config import AgentConfig
from agent.container_spec import container_spec, read_current_image
from agent.event_log import DEFAULT_LIMIT, EventLog
from agent.events import AgentEvent, EventSink, EventType
from agent.health import HealthMonitor, require_free_space
from agent.runtime import ContainerInfo, ContainerRuntime
from agent.sessions import (
    SessionRecord,
    SessionView,
    check_dns_unique,
    new_session_id,
    resolve_port,
    validate_dns_name,
    validate_name,
    validate_protocol,
)
from agent.shared_refresh import SharedRefresh
from agent.store import SessionStore
from agent.viewers import TMUX_SESSION, ViewerRegistry
from common.domain import Activity, ActivityState, HostHealth, Screen, SessionLogEntry, rfc3339
from common.errors import (
    ConvocateError,
    FailedPreconditionError,
    InvalidArgumentError,
    ResourceExhaustedError,
    UnavailableError,
)
from common.logging import get_logger
from common.tasks import TaskSet, cancel_and_wait

__all__ = ["SessionManager"]

log = get_logger(__name__)
T = TypeVar("T")
ASKED_GRACE = 30.0  # seconds after an operator's stop returns in which its "die" is still the operator's
MAX_REPLY_CHARS = 1000
MAX_PEEK_LINES = 2000
MAX_SCREEN_CHARS = 256 * 1024
# Peek: the pane's size, then its text (capture-pane only reads: no resize, no client).
_PEEK = ('tmux display-message -p -t "$1" "#{pane_height} #{pane_width}" && '
         'tmux capture-pane -p -J -t "$1" -S "$2"')
_REPLY = 'if [ -n "$2" ]; then tmux send-keys -t "$1" -l -- "$2" || exit 1; fi; tmux send-keys -t "$1" Enter'


class SessionManager:
    """Sessions of one agent: records on disk, containers in the runtime, viewers."""

    def __init__(
        self,
        config: AgentConfig,
        runtime: ContainerRuntime,
        *,
        agent_id: str,
        events: EventSink,
        registry: ViewerRegistry,
        attach: AttachManager,
        health: HealthMonitor | None = None,
    ) -> None:
        self.config = config
        self.runtime = runtime
        self.agent_id = agent_id
        self.events = events
        self.registry = registry
        self.attach = attach
        self.store = SessionStore(config.sessions_root, config.skel_path, owner=config.session_owner,
                                  clone_max_bytes=config.clone_max_bytes)
        self._lock = asyncio.Lock()
        self._running: dict[str, ContainerInfo] = {}
        self._records: dict[str, SessionRecord] = {}
        self._follower: asyncio.Task[None] | None = None
        registry.set_listener(self._on_viewers)
        self.health = health
        self._engine_ok = True
        self._known_at: datetime | None = None
        self._asked: dict[str, float] = {}          # session id -> until when a stop is the operator's
        self._deaths: dict[str, tuple[float, int | None]] = {}  # unasked stops in the window
        self._tasks = TaskSet("session-manager")
        if health is not None:
            health.add_listener(self._on_health)
        self.activity = ActivityTracker(config.sessions_root, self._on_activity, owner=self.store.owner)
        self.event_log = EventLog(config.sessions_root)
        self._poller: asyncio.Task[None] | None = None
        self._list_refresh = SharedRefresh(self._refresh_running)   # Lists at once share one reading

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> tuple[list[SessionRecord], dict[str, ContainerInfo]]:
        """Re-adopt session directories and running containers; follow Docker events; bring back
        sessions whose record says they should run but whose container is gone.

        Returns:
            The adopted records and the running containers (those brought back included).
        """
        leftovers = await asyncio.to_thread(self.store.prepare)
        if leftovers:
            log.warning("session directories repaired at start", changes=leftovers)
        records = await asyncio.to_thread(self.store.list)
        self._records = {r.id: r for r in records}
        running: dict[str, ContainerInfo] = {}
        try:
            running = await self.runtime.list_running(self.agent_id)
            self._known_at = datetime.now(UTC)
        except UnavailableError as e:
            log.warning("docker unavailable at start; will resync from events", error=str(e))
            self._engine_ok = False
        self._running = dict(running)
        unknown = sorted(set(running) - set(self._records))
        if unknown:
            log.warning("running containers without a session directory (left alone)", sessions=unknown)
        # Clients left attached by a previous agent process would count as viewers forever.
        await asyncio.gather(*(self.attach.detach_all(sid) for sid in running), return_exceptions=True)
        for rec in records if self._engine_ok else ():  # a CLI that stopped while this agent was down
            if rec.id not in running and self.activity.get(rec.id).state is not ActivityState.UNKNOWN:
                self.activity.set(rec.id, Activity(ActivityState.STOPPED), quiet=True)
        self._follower = asyncio.create_task(self._follow(), name="docker-events")
        self._poller = asyncio.create_task(self.activity.run(lambda: list(self._running)), name="hook-spools")
        if self._engine_ok:
            await self._bring_back(records)
        return records, dict(self._running)

    async def _bring_back(self, records: list[SessionRecord]) -> None:
        """Start every session that should run but has no container (a host restart, an engine
        restart while the agent was down): each with the current image, one failure logged and
        the rest still started."""
        gone = [r for r in records if r.desired_running and r.id not in self._running]
        for record in gone:
            try:
                await self._start_session(record.id, check_engine=False)
            except ConvocateError as e:
                log.warning("session not brought back", session=record.id, error=str(e))
            else:
                log.info("session brought back", session=record.id, name=record.name)

    async def close(self) -> None:
        """Stop following Docker events (containers keep running)."""
        await self._tasks.aclose()
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        if self._follower is not None:
            await cancel_and_wait([self._follower])
            self._follower = None

    async def _follow(self) -> None:
        async for ev in self.runtime.events(self.agent_id):
            try:
                if ev.action == "resync":
                    if self.health is not None:
                        self.health.kick()
                    await self._refresh_running()
                elif ev.action == "lost" and self.health is not None:
                    self.health.kick()  # the engine may be down: find out now, not at the next check
                elif ev.action == "start":
                    known = self._running.get(ev.session_id)
                    if known is None or not ev.container_id or known.container_id != ev.container_id:
                        # Not this agent's own start (which marked it already, from the start's
                        # answer): read it. Skipped, the start of a session just created costs no
                        # engine call beside its first viewer's exec.
                        self._mark(ev.session_id, await self.runtime.inspect(ev.session_id))
                elif ev.action == "die":
                    known = self._running.get(ev.session_id)
                    if known is None or not ev.container_id or known.container_id in ("", ev.container_id):
                        self._mark(ev.session_id, None, exit_code=ev.exit_code)
                        if known is not None:
                            self._died(ev.session_id, ev.exit_code)
            except ConvocateError as e:
                log.warning("docker event not applied", action=ev.action, session=ev.session_id, error=str(e))

    # --- health -------------------------------------------------------------------------------
    def _on_health(self, health: HostHealth) -> None:
        if not health.engine_up:
            self._engine_lost(health.engine_error)
        elif not self._engine_ok:
            with contextlib.suppress(RuntimeError):  # closed: the agent is stopping
                self._tasks.create_task(self._refresh_running(), name="engine-restored")

    def _engine_lost(self, error: str) -> None:
        """The engine does not answer: every session's state becomes unknown (published once)."""
        if not self._engine_ok:
            return
        self._engine_ok = False
        log.warning("session states unknown: the docker engine does not answer", error=error)
        for sid in list(self._records):
            self._publish(EventType.SESSION_UPDATED, sid)

    def _engine_down_error(self) -> FailedPreconditionError:
        # Not UNAVAILABLE: the agent answers (clients would say "agent X is unreachable").
        return FailedPreconditionError(f"the Docker Engine on agent {self.agent_id} does not answer: "
                                       "start it with `systemctl start docker`")

    def _require_engine(self) -> None:
        if self.health is not None and not self.health.current.engine_up:
            raise self._engine_down_error()

    def _asked_to_stop(self, session_id: str) -> None:
        """An operator asked for this session to stop: its "die" is not a death to count."""
        self._asked[session_id] = time.monotonic() + self.config.stop_timeout + ASKED_GRACE

    def _died(self, session_id: str, exit_code: int | None) -> None:
        """Count a stop nobody asked for; publish the alarm when enough come within the window."""
        now = time.monotonic()
        if self._asked.pop(session_id, 0.0) >= now:
            return
        window, count = self.config.mass_death_window, self.config.mass_death_count
        self._deaths[session_id] = (now, exit_code)
        self._deaths = {s: d for s, d in self._deaths.items() if now - d[0] <= window}
        if count <= 0 or len(self._deaths) < count:
            return
        victims, self._deaths = sorted(self._deaths.items(), key=lambda kv: kv[1][0]), {}
        names = [self._records[s].name if s in self._records else s for s, _ in victims]
        codes = ["?" if d[1] is None else str(d[1]) for _, d in victims]
        detail = ", ".join(f'"{n}" (exit {c})' for n, c in zip(names, codes, strict=True))
        log.warning("sessions died at once", count=len(victims), window=window, sessions=detail)
        self.events.publish(AgentEvent(EventType.SESSIONS_MASS_DEATH, attributes={
            "count": str(len(victims)), "window": f"{window:g}",
            "sessions": ",".join(s for s, _ in victims), "exit_codes": ",".join(codes),
            "detail": f"{len(victims)} sessions stopped unasked within {window:g} s: {detail}",
        }))

    def _check_space(self) -> None:
        require_free_space(self.config.sessions_root, self.config.write_min_free_bytes)

    async def _write(self, fn: Callable[[], T]) -> T:
        """Run a store write in a thread; a disk that fills up meanwhile is "disk full"."""
        try:
            return await asyncio.to_thread(fn)
        except (OSError, UnavailableError) as e:
            cause = e if isinstance(e, OSError) else e.__context__
            if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
                raise ResourceExhaustedError(
                    f"disk full on this agent under {self.config.sessions_root}: free space there "
                    "and retry; nothing was changed") from None
            raise

    # --- live state and events ------------------------------------------------------------
    def _view(self, record: SessionRecord) -> SessionView:
        info = self._running.get(record.id)
        image = info.image if info else ""
        return SessionView(record, info is not None, self.registry.count(record.id), image,
                           unknown=not self._engine_ok, known_at=self._known_at,
                           activity=self.activity.get(record.id))

    def _publish(self, event_type: EventType, session_id: str, record: SessionRecord | None = None) -> None:
        rec = record or self._records.get(session_id)
        session = self._view(rec).session(self.agent_id) if rec is not None else None
        self.events.publish(AgentEvent(event_type, session_id=session_id, session=session))

    def _mark(self, session_id: str, info: ContainerInfo | None, *, exit_code: int | None = None) -> None:
        was = session_id in self._running
        if info is not None and info.running:
            self._running[session_id] = info
        else:
            self._running.pop(session_id, None)
        now = session_id in self._running
        if was and not now:
            self.attach.unprime(session_id)
        elif now and not was:
            self.attach.started(session_id)
        if was != now:
            if session_id in self._records:  # first, so the event carries the new activity
                self._log_run(session_id, info if now else None, exit_code)
            self._publish(EventType.SESSION_STARTED if now else EventType.SESSION_STOPPED, session_id)

    def _log_run(self, session_id: str, info: ContainerInfo | None, exit_code: int | None) -> None:
        """The event log and activity of a container that started (``info``) or stopped.

        The activity changes quietly: the started/stopped event that follows carries it.
        """
        if info is not None:
            self.event_log.record(session_id, "started", f"container started ({info.image})",
                                  actor="agent", attributes={"image": info.image})
            self.activity.set(session_id, Activity(ActivityState.UNKNOWN), quiet=True)
            return
        code = "" if exit_code is None else str(exit_code)
        detail = "container stopped" + (f" (exit code {code})" if code else "")
        self.event_log.record(session_id, "stopped", detail, actor="agent",
                              attributes={"exit_code": code} if code else {})
        self.activity.set(session_id, Activity(ActivityState.STOPPED), quiet=True)

    def _on_activity(self, session_id: str, old: Activity, new: Activity) -> None:
        """A session's activity changed: the event log, then WatchSessions and the status stream."""
        attrs = {"state": new.state.value, "previous": old.state.value, "since": rfc3339(new.since)}
        if new.reason:
            attrs["reason"] = new.reason.value
        detail = new.state.value.replace("_", " ") + (f" ({new.reason.value})" if new.reason else "")
        if new.message:
            detail += f": {new.message}"
        self.event_log.record(session_id, "activity", detail, actor="cli", attributes=attrs, when=new.since)
        rec = self._records.get(session_id)
        session = self._view(rec).session(self.agent_id) if rec is not None else None
        self.events.publish(AgentEvent(EventType.SESSION_ACTIVITY, session_id=session_id, session=session,
                                       attributes=attrs))

    async def _refresh_running(self) -> None:
        try:
            running = await self.runtime.list_running(self.agent_id)
        except UnavailableError as e:
            log.info("running state not refreshed", error=str(e))
            self._engine_lost(str(e))
            return
        self._known_at = datetime.now(UTC)
        restored, self._engine_ok = not self._engine_ok, True
        changed = set(self._running) ^ set(running)
        for sid in set(self._running) | set(running):
            self._mark(sid, running.get(sid))
        if restored:
            log.info("session states known again: the docker engine answers", running=len(running))
            for sid in set(self._records) - changed:  # the others went out with started/stopped
                self._publish(EventType.SESSION_UPDATED, sid)

    def _on_viewers(self, session_id: str, attached: bool) -> None:
        self._publish(EventType.SESSION_ATTACHED if attached else EventType.SESSION_DETACHED, session_id)

    # --- reads -------------------------------------------------------------------------------
    async def list(self) -> list[SessionView]:
        """Every session, newest first, with live running state and viewer counts."""
        records = self.store.list_kept()   # no file changed: from memory, on the loop (stat calls only)
        if records is None:
            records = await asyncio.to_thread(self.store.list)
        self._records = {r.id: r for r in records}
        await self._list_refresh()   # a reading of the engine taken after this call began
        return [self._view(r) for r in records]

    async def get(self, session_id: str) -> SessionView:
        """One session with live state.

        Raises:
            NotFoundError: no such session.
        """
        kept = self.store.list_kept()   # as in list(): from memory on the loop when nothing changed
        record = next((r for r in kept or () if r.id == session_id), None)
        if record is None:   # changed on disk, or not there: read (the store raises NotFoundError)
            record = await asyncio.to_thread(self.store.get, session_id)
        self._records[session_id] = record
        try:
            self._mark(session_id, await self.runtime.inspect(session_id))
        except UnavailableError as e:
            self._engine_lost(str(e))
        return self._view(record)

    async def require_running(self, session_id: str) -> SessionView:
        """The session, which must be running.

        Raises:
            NotFoundError: no such session.
            FailedPreconditionError: it is not running.
        """
        view = await self.get(session_id)
        if view.unknown:
            raise self._engine_down_error()
        if not view.running:
            raise FailedPreconditionError(
                f'session "{view.record.name}" is not running: restart it first'
            )
        return view

    # --- writes ------------------------------------------------------------------------------
    async def create(
        self, name: str, port: int, protocol: str, dns_name: str, *, start: bool
    ) -> SessionView:
        """Create a session directory and record (and start it when ``start``)."""
        name, protocol = validate_name(name), validate_protocol(protocol)
        dns_name = validate_dns_name(dns_name, self.config.dns_zone)
        self._check_space()
        async with self._lock:
            # Unchanged on disk: from memory, on the loop (as in list()), else read in a thread.
            others = self.store.list_kept()
            if others is None:
                others = await asyncio.to_thread(self.store.list)
            check_dns_unique(dns_name, others)
            port = resolve_port(port, protocol, others)
            now = datetime.now(UTC)
            if start:
                self._require_engine()
            # Created already wanting to run: one record write, and no inspect of a container
            # that cannot exist yet (a fresh id), on the way to the start.
            record = SessionRecord(new_session_id(), name, now, now, port, protocol, dns_name,
                                   desired_running=start)
            await self._write(lambda: self.store.create(record))
            self._records[record.id] = record
        self.event_log.record(record.id, "created", f'session "{name}" created', actor="agent")
        self._publish(EventType.SESSION_CREATED, record.id)
        if not start:
            return self._view(record)
        async with self._lock:
            await self._launch(record, prime=True)
        return self._view(record)

    async def update(
        self, session_id: str, name: str, port: int, protocol: str, dns_name: str
    ) -> SessionView:
        """Replace name, port, protocol and DNS name; a running container is untouched."""
        name, protocol = validate_name(name), validate_protocol(protocol)
        dns_name = validate_dns_name(dns_name, self.config.dns_zone)
        self._check_space()
        async with self._lock:
            record = await asyncio.to_thread(self.store.get, session_id)
            others = [o for o in await asyncio.to_thread(self.store.list) if o.id != session_id]
            if dns_name != record.dns_name:
                check_dns_unique(dns_name, others)
            if port != record.port or protocol != record.protocol:
                port = resolve_port(port, protocol, others)
            updated = SessionRecord(record.id, name, record.created_at, record.last_accessed,
                                    port, protocol, dns_name, desired_running=record.desired_running)
            await self._write(lambda: self.store.write(updated))
            record = updated
            self._records[record.id] = record
        self._publish(EventType.SESSION_UPDATED, record.id)
        return self._view(record)

    async def clone(self, source_id: str, name: str) -> SessionView:
        """Copy a session's home into a new session (fresh name and timestamps, no port/DNS)."""
        name = validate_name(name)
        self._check_space()
        async with self._lock:
            await asyncio.to_thread(self.store.get, source_id)
            now = datetime.now(UTC)
            record = SessionRecord(new_session_id(), name, now, now)
            await self._write(lambda: self.store.clone(source_id, record))
            self._records[record.id] = record
        self.event_log.record(record.id, "created", f'session "{name}" cloned from {source_id}',
                              actor="agent", attributes={"source": source_id})
        self._publish(EventType.SESSION_CREATED, record.id)
        return self._view(record)

    async def delete(self, session_id: str) -> None:
        """Stop a running container first, then remove the session directory."""
        async with self._lock:
            record = await asyncio.to_thread(self.store.get, session_id)
            self._require_engine()
            self._asked_to_stop(session_id)
            if await self.runtime.stop(session_id, self.config.stop_timeout):
                self._mark(session_id, None)
            last = self._view(record)
            await asyncio.to_thread(self.store.delete, session_id)
            self._records.pop(session_id, None)
            self._running.pop(session_id, None)
            self.activity.forget(session_id)
        self.events.publish(AgentEvent(EventType.SESSION_DELETED, session_id=session_id,
                                       session=last.session(self.agent_id)))

    async def kill(self, session_id: str) -> None:
        """Stop the session's container.

        Raises:
            FailedPreconditionError: it is not running.
        """
        record = await asyncio.to_thread(self.store.get, session_id)
        self._require_engine()
        self._asked_to_stop(session_id)
        stopped = await self.runtime.stop(session_id, self.config.stop_timeout)
        await self._want_running(session_id, want=False)
        if not stopped:
            self._asked.pop(session_id, None)
            self._mark(session_id, None)
            raise FailedPreconditionError(f'session "{record.name}" is not running')
        self._mark(session_id, None)

    async def _want_running(self, session_id: str, *, want: bool) -> None:
        """Record whether the session should run (best effort: a failed write is logged)."""
        async with self._lock:
            try:
                record = await asyncio.to_thread(self.store.get, session_id)
                if record.desired_running != want:
                    record = replace(record, desired_running=want)
                    await asyncio.to_thread(self.store.write, record)
                self._records[session_id] = record
            except (OSError, ConvocateError) as e:
                log.warning("desired state not recorded", session=session_id, running=want, error=str(e))

    async def background(self, session_id: str) -> int:
        """Detach every client of the session's tmux; return how many viewers that ended."""
        await self.require_running(session_id)
        return await self.attach.background(session_id)

    async def restart(self, session_id: str) -> SessionView:
        """Start a stopped session with the current image.

        Raises:
            NotFoundError: no such session.
            FailedPreconditionError: it is already running.
        """
        return await self._start_session(session_id, check_engine=True)

    async def _start_session(self, session_id: str, *, check_engine: bool) -> SessionView:
        """:meth:`restart`; ``check_engine`` False when the caller has just heard the engine answer
        (at start-up, before the health monitor's first check)."""
        async with self._lock:
            record = await asyncio.to_thread(self.store.get, session_id)
            if check_engine:
                self._require_engine()
            try:
                info = await self.runtime.inspect(session_id)
            except UnavailableError as e:
                self._engine_lost(str(e))
                if self.health is not None:
                    self.health.kick()
                raise self._engine_down_error() from None
            if info is not None and info.running:
                self._mark(session_id, info)
                raise FailedPreconditionError(f'session "{record.name}" already running')
            record = replace(record.touched(), desired_running=True)
            try:
                await asyncio.to_thread(self.store.write, record)
            except OSError as e:  # best effort, as in v2.0.0
                log.warning("last_accessed and desired state not updated", session=session_id, error=str(e))
            self._records[session_id] = record
            await self._launch(record, prime=check_engine)   # an operator's restart, not a bring-back
        return self._view(record)

    async def _launch(self, record: SessionRecord, *, prime: bool = False) -> None:
        """Start the container of ``record`` with the current image (caller holds the lock).

        ``prime``: an operator asked for this start, so an attach is likely to follow: a
        viewer is started ahead for it (not for the sessions brought back at agent start).
        """
        spec = container_spec(self.config, record, agent_id=self.agent_id,
                              image=read_current_image(self.config),
                              session_dir=self.store.home_dir(record.id),
                              hooks_dir=self.activity.spool_dir(record.id))
        # The hook spool and the CLI's settings are written while the engine creates the container.
        prepared = asyncio.create_task(asyncio.to_thread(self._prepare_cli, record.id))
        try:
            info = await self.runtime.start(spec, prepared)
        finally:
            await cancel_and_wait([prepared])   # done by now (the start waited for it)
        self._mark(record.id, info)
        if prime and record.id in self._running:
            self.attach.prime(record.id)

    def _prepare_cli(self, session_id: str) -> None:
        """Before a start: an empty hook spool, and the CLI's settings with our hooks (blocking).

        A home whose settings cannot be written safely starts without hooks (activity unknown).
        """
        try:
            self.activity.starting(session_id)
            write_cli_settings(self.store.home_dir(session_id), self.config.claude_config_path,
                               self.store.owner)
        except (CliSettingsError, OSError) as e:
            log.warning("session starts without activity hooks", session=session_id, error=str(e))

    # --- event log, peek and reply -----------------------------------------------------------
    async def log_entries(self, session_id: str,
                          limit: int = DEFAULT_LIMIT) -> builtins.list[SessionLogEntry]:
        """The last ``limit`` entries of the session's event log, oldest first."""
        await asyncio.to_thread(self.store.get, session_id)
        return await asyncio.to_thread(self.event_log.read, session_id, limit)

    def record_viewer(self, session_id: str, kind: str, actor: str, attributes: dict[str, str]) -> None:
        """Note a viewer attaching or detaching (``kind``) in the session's event log."""
        mode = attributes.get("mode", "")
        detail = f"{kind} by {actor or 'an unnamed client'}" + (f" ({mode})" if mode else "")
        self.event_log.record(session_id, kind, detail, actor=actor, attributes=attributes)

    async def peek(self, session_id: str, lines: int = 0) -> Screen:
        """The session's last screen from tmux (read-only: no resize, no client attached).

        Args:
            session_id: the session.
            lines: at most this many last lines, scrollback included (0: the visible screen).

        Raises:
            FailedPreconditionError: not running, or its tmux session is gone.
        """
        await self.require_running(session_id)
        lines = min(max(lines, 0), MAX_PEEK_LINES)
        start = f"-{lines}" if lines else "0"
        argv = ["/bin/sh", "-c", _PEEK, "sh", TMUX_SESSION, start]
        result = await self.runtime.exec_run(session_id, argv, self.attach.user)
        head, _, text = result.output.partition("\n")
        size = head.split()
        if result.exit_code != 0 or len(size) != 2 or not all(p.isdigit() for p in size):
            raise FailedPreconditionError(f"session {session_id} shows no screen: its tmux is not there")
        rows = text.rstrip("\n").split("\n")
        while rows and not rows[-1].strip():
            rows.pop()
        if lines:
            rows = rows[-lines:]
        screen = "\n".join(r.rstrip() for r in rows)[-MAX_SCREEN_CHARS:]
        return Screen(screen, rows=int(size[0]), cols=int(size[1]), time=datetime.now(UTC))

    async def reply(self, session_id: str, text: str, sender: str) -> None:
        """Type one line into the session (keystrokes, then Enter) and log it with its sender.

        Raises:
            InvalidArgumentError: the text has control characters or is too long.
            FailedPreconditionError: not running.
        """
        if len(text) > MAX_REPLY_CHARS:
            raise InvalidArgumentError(f"a reply is at most {MAX_REPLY_CHARS} characters, got {len(text)}")
        if not text.isprintable():
            raise InvalidArgumentError("a reply is one line of printable text (no control characters)")
        sender = sender.strip()
        if len(sender) > 200 or not sender.isprintable():
            raise InvalidArgumentError("sender must be printable, at most 200 characters")
        await self.require_running(session_id)
        argv = ["/bin/sh", "-c", _REPLY, "sh", TMUX_SESSION, text]
        result = await self.runtime.exec_run(session_id, argv, self.attach.user)
        if result.exit_code != 0:
            raise FailedPreconditionError(f"the reply did not reach session {session_id}: its CLI's tmux "
                                          f"answered {result.exit_code}")
        self.event_log.record(session_id, "reply", f"reply sent: {text}" if text else "reply sent: Enter",
                              actor=sender or "unknown", attributes={"chars": str(len(text))})
