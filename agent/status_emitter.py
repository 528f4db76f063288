"""The agent's status emitter: events and heartbeats to the shell's status service.

:class:`StatusEmitter` is an :class:`agent.events.EventSink`. It keeps one tunnel to
the shell's status socket (its own key, the shell's pinned host key) and one Publish
stream on it. ``agent.started`` is sent once per process, a heartbeat on every
(re)connect and every ``heartbeat_interval`` s, then every event, and
``agent.shutdown`` on close.

Unlike v2.0.0 (inventory §9.3 item 17): heartbeats are made at send time, never
queued, so an outage cannot fill the queue with them; an event whose write failed is
sent again on the next stream; ``publish`` never blocks and a full queue drops the new
event, counts it, logs it and reports the count in every heartbeat.

It also watches the shell's Pings (:class:`agent.events.InboundLinkTracker`): when they
stop for longer than ``control_budget`` it publishes ``link.control_stale`` through the
status stream, and ``link.control_restored`` when they resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from datetime import datetime

import grpc
from convocate.v1 import link_pb2, status_pb2, status_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp

from agent.events import AgentEvent, EventType, InboundLinkTracker
from common.backoff import Backoff
from common.domain import HostHealth, host_health_attributes
from common.errors import ConvocateError
from common.logging import get_logger
from common.proto_convert import session_to_proto, timestamp
from common.tasks import TaskSet
from common.tunnel import Tunnel, TunnelSettings

__all__ = ["QUEUE_SIZE", "StatusEmitter"]

QUEUE_SIZE = 256
log = get_logger(__name__)


class StatusEmitter:
    """Sends this agent's events to the shell's status service; never blocks the agent.

    Args:
        agent_id: this agent's id.
        version: this agent's version (sent in every heartbeat).
        settings: the tunnel to the status service (host, port :223, key, known_hosts).
        heartbeat_interval: seconds between heartbeats.
        tracker: the Ping tracker of the agent's Sessions service (None: not watched).
        control_budget: seconds without a Ping before ``link.control_stale``
            (default 2.5 x ``heartbeat_interval``).
        queue_size: events held while the stream is down or slow.
        hostname: sent in heartbeats (default: this host's name).
        health: the host's cached health, sent in every heartbeat (engine, disk, memory, load).
    """

    def __init__(
        self,
        agent_id: str,
        version: str,
        settings: TunnelSettings,
        *,
        heartbeat_interval: float = 30.0,
        tracker: InboundLinkTracker | None = None,
        control_budget: float | None = None,
        queue_size: int = QUEUE_SIZE,
        hostname: str | None = None,
        health: Callable[[], HostHealth] | None = None,
    ) -> None:
        self.agent_id = agent_id
        self.version = version
        self.heartbeat_interval = heartbeat_interval
        self.control_budget = control_budget or 2.5 * heartbeat_interval
        self.hostname = hostname or socket.gethostname()
        self.tunnel = Tunnel(settings)
        self._tracker = tracker
        self._health = health
        self._queue: asyncio.Queue[status_pb2.Event] = asyncio.Queue(queue_size)
        self._pending: status_pb2.Event | None = None
        self._seq = 0
        self.dropped = 0
        self.sent = 0
        self._up = False
        self._since = timestamp()
        self._last_ok: Timestamp | None = None
        self._error = "not connected yet"
        self._control_stale = False
        self._tasks = TaskSet("status-emitter")
        self._closing = False
        self._done = asyncio.Event()

    # --- EventSink ---------------------------------------------------------------------
    def publish(self, event: AgentEvent) -> None:
        """Queue ``event`` for the shell; when the queue is full, drop and count it."""
        message = self._to_proto(event.type, event.session_id, event.attributes, event.time)
        if event.session is not None:
            message.session.CopyFrom(session_to_proto(event.session))
        self._offer(message)

    def _offer(self, message: status_pb2.Event) -> None:
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:  # counted always, logged sparingly
                log.warning("status queue full, event dropped", type=message.type,
                            session=message.session_id or None, dropped=self.dropped)

    def _to_proto(self, type_: str, session_id: str = "", attributes: dict[str, str] | None = None,
                  when: datetime | None = None) -> status_pb2.Event:
        self._seq += 1
        return status_pb2.Event(type=type_, agent_id=self.agent_id, session_id=session_id,
                                time=timestamp(when), seq=self._seq, attributes=attributes or {})

    # --- link state ------------------------------------------------------------------------
    def status_link(self) -> link_pb2.LinkState:
        """This agent's view of its status link (agent -> shell), for PingResponse."""
        link = link_pb2.LinkState(up=self._up, known=True, dropped_events=self.dropped,
                                  last_error="" if self._up else self._error)
        link.since.CopyFrom(self._since)
        if self._last_ok is not None:
            link.last_ok.CopyFrom(self._last_ok)
        return link

    def _set_link(self, up: bool, error: str = "") -> None:
        if not up:
            self._error = error or self._error
        if up != self._up:
            self._up = up
            self._since = timestamp()
            if up:
                log.info("status link up", shell=self.tunnel.settings.host)
            else:
                log.warning("status link down", error=self._error)

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Queue ``agent.started`` and start the tunnel, the sender and the Ping watcher."""
        self._offer(self._to_proto(EventType.AGENT_STARTED,
                                   attributes={"version": self.version, "hostname": self.hostname}))
        await self.tunnel.start()
        self.tunnel.add_listener(lambda up, err: None if up else self._set_link(False, err))
        self._tasks.create_task(self._send_loop(), name="status-sender")
        self._tasks.create_task(self._watch_control(), name="status-pings")

    async def close(self, timeout: float = 2.0) -> None:
        """Send ``agent.shutdown`` (waiting up to ``timeout`` s for it to leave), then stop."""
        if self._closing:
            return
        self._closing = True
        shutdown = self._to_proto(EventType.AGENT_SHUTDOWN, attributes={"dropped": str(self.dropped)})
        if self._queue.full():  # the last word matters more than the oldest event
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(shutdown)
        if self._up:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._done.wait()
        await self._tasks.aclose()
        await self.tunnel.close()
        log.info("status emitter closed", sent=self.sent, dropped=self.dropped)

    async def __aenter__(self) -> StatusEmitter:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- the sender ---------------------------------------------------------------------------
    def _heartbeat(self) -> status_pb2.Event:
        attrs = {"version": self.version, "hostname": self.hostname, "dropped": str(self.dropped),
                 "interval": f"{self.heartbeat_interval:g}"}
        if self._tracker is not None:
            age = self._tracker.seconds_since_last_ping()
            attrs["ping_age"] = "never" if age is None else f"{age:.1f}"
        if self._health is not None:
            attrs.update(host_health_attributes(self._health()))
        return self._to_proto(EventType.AGENT_HEARTBEAT, attributes=attrs)

    async def _write(self, call: grpc.aio.StreamUnaryCall[status_pb2.Event, status_pb2.PublishSummary],
                     event: status_pb2.Event) -> None:
        # A frozen tunnel can block a write on flow control; keepalives end it, this bounds it.
        async with asyncio.timeout(max(5.0, self.heartbeat_interval)):
            await call.write(event)
        self.sent += 1
        self._last_ok = timestamp()

    async def _stream_once(self) -> None:
        await self.tunnel.wait_up(timeout=max(1.0, self.heartbeat_interval))
        call = status_pb2_grpc.StatusStub(self.tunnel.channel).Publish()
        try:
            await self._write(call, self._heartbeat())
            self._set_link(True)
            loop = asyncio.get_running_loop()
            next_beat = loop.time() + self.heartbeat_interval
            while True:
                if self._pending is None:
                    try:  # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel
                        async with asyncio.timeout(max(0.0, next_beat - loop.time())):
                            self._pending = await self._queue.get()
                    except TimeoutError:
                        await self._write(call, self._heartbeat())
                        next_beat = loop.time() + self.heartbeat_interval
                        continue
                event = self._pending
                await self._write(call, event)
                self._pending = None
                if event.type == EventType.AGENT_SHUTDOWN:
                    await call.done_writing()
                    with contextlib.suppress(grpc.RpcError, TimeoutError):
                        async with asyncio.timeout(2):
                            await call
                    self._done.set()
                    return
        finally:
            if not call.done():
                call.cancel()

    async def _send_loop(self) -> None:
        backoff = Backoff(initial=0.2, maximum=min(30.0, max(1.0, self.heartbeat_interval)))
        while not self._done.is_set():
            try:
                await self._stream_once()
                backoff.reset()
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling() > 0:
                    raise
                # grpc.aio cancels the stream when the tunnel closes its channel: a link failure.
                self._set_link(False, self.tunnel.last_error or "status stream cancelled")
                await asyncio.sleep(backoff.next_delay())
            except (grpc.RpcError, ConvocateError, TimeoutError, asyncio.InvalidStateError) as e:
                error = self.tunnel.last_error if not self.tunnel.up else _describe(e)
                self._set_link(False, error)
                if self.tunnel.up:  # the tunnel backs off by itself; a failing stream here
                    await asyncio.sleep(backoff.next_delay())
            except Exception as e:  # keep emitting whatever goes wrong; never kill the agent
                log.exception("status sender failed", error=str(e))
                self._set_link(False, _describe(e))
                await asyncio.sleep(backoff.next_delay())

    async def _watch_control(self) -> None:
        if self._tracker is None:
            return
        period = max(0.05, min(self.heartbeat_interval, self.control_budget / 4))
        while True:
            await asyncio.sleep(period)
            age = self._tracker.seconds_since_last_ping()
            stale = age is not None and age > self.control_budget
            if stale and not self._control_stale:
                detail = f"no Ping from the shell for {age:.1f} s (budget {self.control_budget:g} s)"
                log.warning("control link stale", detail=detail)
                self._offer(self._to_proto(EventType.LINK_CONTROL_STALE, attributes={"detail": detail}))
            elif not stale and self._control_stale:
                log.info("control link restored")
                self._offer(self._to_proto(EventType.LINK_CONTROL_RESTORED))
            self._control_stale = stale


def _describe(e: BaseException) -> str:
    if isinstance(e, grpc.aio.AioRpcError):
        return f"status service: {e.code().name}: {e.details()}"
    if isinstance(e, TimeoutError):
        return "status service did not accept an event in time"
    return f"{type(e).__name__}: {e}"
