"""Fan-out of agent events to the status emitter and every WatchSessions stream.

``publish`` never blocks: each watcher has a bounded queue, and a watcher whose queue
is full is marked as fallen behind; its stream then ends (RESOURCE_EXHAUSTED) so the
client re-subscribes and gets a fresh snapshot, instead of slowing the agent down.
:meth:`EventHub.close` (the agent is stopping) ends every stream at once, so the gRPC
server's grace period waits only for the calls that end by themselves.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from agent.events import AgentEvent, EventSink
from common.logging import get_logger

__all__ = ["EventHub", "Watcher"]

log = get_logger(__name__)


@dataclass(eq=False)
class Watcher:
    """One WatchSessions stream's queue; ``None`` in it means the hub closed (the agent is stopping)."""

    queue: asyncio.Queue[AgentEvent | None]
    fell_behind: bool = False
    dropped: int = field(default=0)


class EventHub:
    """An :class:`~agent.events.EventSink` that forwards to sinks and watchers."""

    def __init__(self, queue_size: int = 1024) -> None:
        self.queue_size = queue_size
        self._sinks: list[EventSink] = []
        self._watchers: set[Watcher] = set()
        self.closed = False

    def add_sink(self, sink: EventSink) -> None:
        """Forward every event to ``sink`` too (the status emitter)."""
        self._sinks.append(sink)

    def watch(self) -> Watcher:
        """Register a new watcher (call :meth:`unwatch` when its stream ends)."""
        w = Watcher(asyncio.Queue(maxsize=self.queue_size))
        self._watchers.add(w)
        if self.closed:
            w.queue.put_nowait(None)
        return w

    def close(self) -> None:
        """End every watcher's stream (and any opened later): each gets ``None`` next."""
        self.closed = True
        for w in self._watchers:
            if w.queue.full():
                w.queue.get_nowait()   # the stream ends anyway: its oldest event makes room
            w.queue.put_nowait(None)

    def unwatch(self, watcher: Watcher) -> None:
        """Forget ``watcher``."""
        self._watchers.discard(watcher)

    @property
    def watcher_count(self) -> int:
        """How many WatchSessions streams are open."""
        return len(self._watchers)

    def publish(self, event: AgentEvent) -> None:
        """Hand ``event`` to every sink and watcher; never blocks, never raises."""
        for sink in self._sinks:
            try:
                sink.publish(event)
            except Exception:
                log.exception("event sink failed", event_type=event.type)
        for w in list(self._watchers):
            if self.closed:
                break
            try:
                w.queue.put_nowait(event)
            except asyncio.QueueFull:
                w.dropped += 1
                if not w.fell_behind:
                    w.fell_behind = True
                    log.warning("watch stream fell behind; it will be ended", queue=self.queue_size)
