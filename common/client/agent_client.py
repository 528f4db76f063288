"""One agent, seen from the shell side: a persistent tunnel, a Ping heartbeat, typed calls.

:class:`AgentClient` keeps one :class:`common.tunnel.Tunnel` to the agent (reconnects
with capped, jittered backoff and a fresh gRPC channel), pings it every
``heartbeat_interval`` s with a deadline, and tracks the health of the shell → agent
link, plus the agent's own view of its status link (from PingResponse). Every call
has a deadline. The calls (:class:`common.client.calls.AgentCalls`) return
:mod:`common.domain` types and raise domain errors only. Attach streams go on the
in-process attach channel of the tunnel's connection
(:mod:`common.client.attach_channel_call`), over gRPC where the agent refuses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from common.attach_wire import CHANNEL_NAME
from common.backoff import Backoff
from common.client.attach_call import AttachCall, AttachHandle
from common.client.attach_channel_call import AttachChannelCall
from common.client.calls import AgentCalls
from common.domain import AgentInfo, HostHealth, LinkState
from common.errors import ConvocateError
from common.logging import get_logger
from common.registry import AgentRecord
from common.tasks import cancel_and_wait
from common.tunnel import Tunnel, TunnelSettings

__all__ = ["AgentClient", "ClientSettings"]

log = get_logger(__name__)


def _gist(link: LinkState | None) -> tuple[bool, bool, str, int] | None:
    """What matters of a link for change detection (not its timestamps)."""
    return None if link is None else (link.known, link.up, link.last_error, link.dropped_events)


def _health_gist(health: HostHealth | None) -> tuple[bool, bool, str, str] | None:
    """What matters of a host's health for change detection (not its numbers)."""
    if health is None:
        return None
    return (health.engine_up, health.disk_low, health.engine_version, health.engine_error)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ClientSettings:
    """How a client talks to every agent (the same for all of them)."""

    runtime_dir: Path                    # private dir for the local tunnel sockets
    heartbeat_interval: float = 30.0     # Ping period
    call_timeout: float = 10.0           # deadline of every unary call
    connect_timeout: float = 10.0
    keepalive_interval: float = 5.0      # SSH keepalive (x3 = a frozen link is dropped)
    backoff_initial: float = 0.2
    backoff_max: float = 30.0
    client_id: str = f"shell:{os.getpid()}"


class AgentClient(AgentCalls):
    """A persistent connection to one agent (the calls are :class:`AgentCalls`').

    Every call method raises :class:`common.errors.UnavailableError` when the agent is
    unreachable or misses the deadline (naming the agent and why), and the other
    :class:`common.errors.ConvocateError` subclasses with the agent's own message
    (NotFoundError, AlreadyExistsError, InvalidArgumentError, FailedPreconditionError...).

    Args:
        record: the agent's registry entry.
        settings: timing and where the local sockets go.
        on_change: called (in the loop) whenever reachability or link details change.
    """

    def __init__(self, record: AgentRecord, settings: ClientSettings,
                 on_change: Callable[[AgentClient], None] | None = None) -> None:
        self.record = record
        self.settings = settings
        self._on_change = on_change
        super().__init__(record.agent_id, lambda: self.tunnel.channel, call_timeout=settings.call_timeout,
                         ping_timeout=min(settings.call_timeout, settings.heartbeat_interval),
                         client_id=settings.client_id, on_unavailable=self.kick)
        self.tunnel = Tunnel(TunnelSettings(
            name=record.agent_id, host=record.address, port=record.port,
            client_key=record.client_key, known_hosts=record.known_hosts,
            local_socket=settings.runtime_dir / f"{record.agent_id}.sock",
            connect_timeout=settings.connect_timeout, keepalive_interval=settings.keepalive_interval,
            backoff_initial=settings.backoff_initial, backoff_max=settings.backoff_max,
        ))
        self.reachable = False
        self.last_error = "not connected yet"
        self.version = ""
        self.hostname = ""
        self.agent_status_link: LinkState | None = None
        self.health: HostHealth | None = None        # the agent's engine and host, from its last Ping
        self._since = _now()
        self._last_ok: datetime | None = None
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the tunnel and the heartbeat (returns at once)."""
        self.tunnel.add_listener(self._tunnel_changed)
        await self.tunnel.start()
        self._task = asyncio.create_task(self._heartbeat(), name=f"ping-{self.agent_id}")

    async def close(self) -> None:
        """Stop the heartbeat and close the tunnel."""
        try:
            if self._task is not None:
                await cancel_and_wait([self._task])
                self._task = None
        finally:  # a close cancelled while the heartbeat ends still closes the tunnel
            await self.tunnel.close()

    async def __aenter__(self) -> AgentClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- link health -----------------------------------------------------------------------
    def control_link(self) -> LinkState:
        """The shell → agent link as this client sees it."""
        return LinkState(up=self.reachable, known=True, since=self._since, last_ok=self._last_ok,
                         last_error="" if self.reachable else self.last_error)

    def _set(self, reachable: bool, error: str = "") -> None:
        old = (self.reachable, self.last_error)
        if not reachable:
            self.last_error = error or self.last_error
        if reachable != self.reachable:
            self.reachable = reachable
            self._since = _now()
            if reachable:
                log.info("agent reachable", agent=self.agent_id, version=self.version)
            else:
                log.warning("agent unreachable", agent=self.agent_id, error=self.last_error)
        if old != (self.reachable, self.last_error) and self._on_change is not None:
            self._on_change(self)

    def _tunnel_changed(self, up: bool, error: str) -> None:
        if up:
            self._kick.set()  # ping at once: the table should not wait a whole interval
        else:
            self._set(False, error)

    def _pinged(self, reply: AgentInfo) -> None:
        self._last_ok = _now()
        status_link = reply.status_link if reply.status_link is not None else self.agent_status_link
        changed = (reply.version, reply.hostname, _gist(status_link), _health_gist(reply.health)) != (
            self.version, self.hostname, _gist(self.agent_status_link), _health_gist(self.health))
        self.version, self.hostname, self.agent_status_link = reply.version, reply.hostname, status_link
        self.health = reply.health
        if changed and self.reachable and self._on_change is not None:
            self._on_change(self)
        self._set(True)

    async def _heartbeat(self) -> None:
        # A Ping that fails while the link is up (an agent too busy to answer in time) is
        # tried again soon, backing off up to the interval, not only a whole interval later.
        retry = Backoff(initial=self.settings.backoff_initial, maximum=self.settings.heartbeat_interval)
        while True:
            wait = self.settings.heartbeat_interval
            if self.tunnel.up:
                try:
                    self._pinged(await self.ping())
                    retry.reset()
                except ConvocateError as e:
                    self._set(False, str(e))
                    wait = retry.next_delay()
            else:  # the tunnel's latest reason (e.g. "refused our key" after "connection lost")
                self._set(False, self.tunnel.last_error)
            self._kick.clear()
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._kick.wait()

    def kick(self) -> None:
        """Ping now (e.g. after a failed call), instead of at the next interval."""
        self._kick.set()

    # --- calls -----------------------------------------------------------------------------
    def attach(self) -> AttachHandle:
        """A new attach stream: on the attach channel, or gRPC where this connection's agent refused it.

        Raises:
            UnavailableError: the agent is unreachable (with the reason).
        """
        channel = self._channel()
        if self.tunnel.refuses(CHANNEL_NAME):
            return AttachCall(channel, self.agent_id, self.client_id)

        def over_grpc() -> AttachHandle:
            return AttachCall(self._channel(), self.agent_id, self.client_id)

        return AttachChannelCall(self.tunnel, self.agent_id, self.client_id, fallback=over_grpc)

    def _unreachable_reason(self) -> str:
        return self.tunnel.last_error
