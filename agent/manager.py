"""The agent's core: every session operation, the live running state and its events.

It works on dataclasses and publishes :mod:`common.domain` types; the gRPC servicers
convert at the edge (:mod:`common.proto_convert`). Changes of the
record are serialised by one lock (uniqueness checks and writes must not interleave).
The running state follows Docker events (with resync after reconnects), and each
transition is published once, whichever source sees it first.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

from agent.attach_manager import AttachManager
from agent.config import AgentConfig
from agent.container_spec import container_spec, read_current_image
from agent.events import AgentEvent, EventSink, EventType
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
from agent.store import SessionStore
from agent.viewers import ViewerRegistry
from common.errors import ConvocateError, FailedPreconditionError, UnavailableError
from common.logging import get_logger

__all__ = ["SessionManager"]

log = get_logger(__name__)


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

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> tuple[list[SessionRecord], dict[str, ContainerInfo]]:
        """Re-adopt session directories and running containers; follow Docker events.

        Returns:
            The adopted records and the running containers found.
        """
        leftovers = await asyncio.to_thread(self.store.prepare)
        if leftovers:
            log.warning("session directories repaired at start", changes=leftovers)
        records = await asyncio.to_thread(self.store.list)
        self._records = {r.id: r for r in records}
        running: dict[str, ContainerInfo] = {}
        try:
            running = await self.runtime.list_running(self.agent_id)
        except UnavailableError as e:
            log.warning("docker unavailable at start; will resync from events", error=str(e))
        self._running = dict(running)
        unknown = sorted(set(running) - set(self._records))
        if unknown:
            log.warning("running containers without a session directory (left alone)", sessions=unknown)
        # Clients left attached by a previous agent process would count as viewers forever.
        await asyncio.gather(*(self.attach.detach_all(sid) for sid in running), return_exceptions=True)
        self._follower = asyncio.create_task(self._follow(), name="docker-events")
        return records, running

    async def close(self) -> None:
        """Stop following Docker events (containers keep running)."""
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
            self._follower = None

    async def _follow(self) -> None:
        async for ev in self.runtime.events(self.agent_id):
            try:
                if ev.action == "resync":
                    await self._refresh_running()
                elif ev.action == "start":
                    self._mark(ev.session_id, await self.runtime.inspect(ev.session_id))
                elif ev.action == "die":
                    known = self._running.get(ev.session_id)
                    if known is None or not ev.container_id or known.container_id in ("", ev.container_id):
                        self._mark(ev.session_id, None)
            except ConvocateError as e:
                log.warning("docker event not applied", action=ev.action, session=ev.session_id, error=str(e))

    # --- live state and events ------------------------------------------------------------
    def _view(self, record: SessionRecord) -> SessionView:
        info = self._running.get(record.id)
        image = info.image if info else ""
        return SessionView(record, info is not None, self.registry.count(record.id), image)

    def _publish(self, event_type: EventType, session_id: str, record: SessionRecord | None = None) -> None:
        rec = record or self._records.get(session_id)
        session = self._view(rec).session(self.agent_id) if rec is not None else None
        self.events.publish(AgentEvent(event_type, session_id=session_id, session=session))

    def _mark(self, session_id: str, info: ContainerInfo | None) -> None:
        was = session_id in self._running
        if info is not None and info.running:
            self._running[session_id] = info
        else:
            self._running.pop(session_id, None)
        now = session_id in self._running
        if was != now:
            self._publish(EventType.SESSION_STARTED if now else EventType.SESSION_STOPPED, session_id)

    async def _refresh_running(self) -> None:
        try:
            running = await self.runtime.list_running(self.agent_id)
        except UnavailableError as e:
            log.info("running state not refreshed", error=str(e))
            return
        for sid in set(self._running) | set(running):
            self._mark(sid, running.get(sid))

    def _on_viewers(self, session_id: str, attached: bool) -> None:
        self._publish(EventType.SESSION_ATTACHED if attached else EventType.SESSION_DETACHED, session_id)

    # --- reads -------------------------------------------------------------------------------
    async def list(self) -> list[SessionView]:
        """Every session, newest first, with live running state and viewer counts."""
        records = await asyncio.to_thread(self.store.list)
        self._records = {r.id: r for r in records}
        await self._refresh_running()
        return [self._view(r) for r in records]

    async def get(self, session_id: str) -> SessionView:
        """One session with live state.

        Raises:
            NotFoundError: no such session.
        """
        record = await asyncio.to_thread(self.store.get, session_id)
        self._records[session_id] = record
        with contextlib.suppress(UnavailableError):
            self._mark(session_id, await self.runtime.inspect(session_id))
        return self._view(record)

    async def require_running(self, session_id: str) -> SessionView:
        """The session, which must be running.

        Raises:
            NotFoundError: no such session.
            FailedPreconditionError: it is not running.
        """
        view = await self.get(session_id)
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
        async with self._lock:
            others = await asyncio.to_thread(self.store.list)
            check_dns_unique(dns_name, others)
            port = resolve_port(port, protocol, others)
            now = datetime.now(UTC)
            record = SessionRecord(new_session_id(), name, now, now, port, protocol, dns_name)
            await asyncio.to_thread(self.store.create, record)
            self._records[record.id] = record
        self._publish(EventType.SESSION_CREATED, record.id)
        return await self.restart(record.id) if start else self._view(record)

    async def update(
        self, session_id: str, name: str, port: int, protocol: str, dns_name: str
    ) -> SessionView:
        """Replace name, port, protocol and DNS name; a running container is untouched."""
        name, protocol = validate_name(name), validate_protocol(protocol)
        dns_name = validate_dns_name(dns_name, self.config.dns_zone)
        async with self._lock:
            record = await asyncio.to_thread(self.store.get, session_id)
            others = [o for o in await asyncio.to_thread(self.store.list) if o.id != session_id]
            if dns_name != record.dns_name:
                check_dns_unique(dns_name, others)
            if port != record.port or protocol != record.protocol:
                port = resolve_port(port, protocol, others)
            record = SessionRecord(record.id, name, record.created_at, record.last_accessed,
                                   port, protocol, dns_name)
            await asyncio.to_thread(self.store.write, record)
            self._records[record.id] = record
        self._publish(EventType.SESSION_UPDATED, record.id)
        return self._view(record)

    async def clone(self, source_id: str, name: str) -> SessionView:
        """Copy a session's home into a new session (fresh name and timestamps, no port/DNS)."""
        name = validate_name(name)
        async with self._lock:
            await asyncio.to_thread(self.store.get, source_id)
            now = datetime.now(UTC)
            record = SessionRecord(new_session_id(), name, now, now)
            await asyncio.to_thread(self.store.clone, source_id, record)
            self._records[record.id] = record
        self._publish(EventType.SESSION_CREATED, record.id)
        return self._view(record)

    async def delete(self, session_id: str) -> None:
        """Stop a running container first, then remove the session directory."""
        async with self._lock:
            record = await asyncio.to_thread(self.store.get, session_id)
            if await self.runtime.stop(session_id, self.config.stop_timeout):
                self._mark(session_id, None)
            last = self._view(record)
            await asyncio.to_thread(self.store.delete, session_id)
            self._records.pop(session_id, None)
            self._running.pop(session_id, None)
        self.events.publish(AgentEvent(EventType.SESSION_DELETED, session_id=session_id,
                                       session=last.session(self.agent_id)))

    async def kill(self, session_id: str) -> None:
        """Stop the session's container.

        Raises:
            FailedPreconditionError: it is not running.
        """
        record = await asyncio.to_thread(self.store.get, session_id)
        if not await self.runtime.stop(session_id, self.config.stop_timeout):
            self._mark(session_id, None)
            raise FailedPreconditionError(f'session "{record.name}" is not running')
        self._mark(session_id, None)

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
        async with self._lock:
            record = await asyncio.to_thread(self.store.get, session_id)
            info = await self.runtime.inspect(session_id)
            if info is not None and info.running:
                self._mark(session_id, info)
                raise FailedPreconditionError(f'session "{record.name}" already running')
            record = record.touched()
            try:
                await asyncio.to_thread(self.store.write, record)
            except OSError as e:  # best effort, as in v2.0.0
                log.warning("last_accessed not updated", session=session_id, error=str(e))
            self._records[session_id] = record
            spec = container_spec(self.config, record, agent_id=self.agent_id,
                                  image=read_current_image(self.config),
                                  session_dir=self.store.home_dir(session_id))
            self._mark(session_id, await self.runtime.start(spec))
        return self._view(record)
