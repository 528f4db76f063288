"""Fan-out of agent events to the status emitter and every WatchSessions stream.

``publish`` never blocks: each watcher has a bounded queue, and a watcher whose queue
is full is marked as fallen behind; its stream then ends (RESOURCE_EXHAUSTED) so the
client re-subscribes and gets a fresh snapshot, instead of slowing the agent down.
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
    """One WatchSessions stream's queue."""

    queue: asyncio.Queue[AgentEvent]
    fell_behind: bool = False
    dropped: int = field(default=0)


class EventHub:
    """An :class:`~agent.events.EventSink` that forwards to sinks and watchers."""

    def __init__(self, queue_size: int = 1024) -> None:
        self.queue_size = queue_size
        self._sinks: list[EventSink] = []
        self._watchers: set[Watcher] = set()

    def add_sink(self, sink: EventSink) -> None:
        """Forward every event to ``sink`` too (the status emitter)."""
        self._sinks.append(sink)

    def watch(self) -> Watcher:
        """Register a new watcher (call :meth:`unwatch` when its stream ends)."""
        w = Watcher(asyncio.Queue(maxsize=self.queue_size))
        self._watchers.add(w)
        return w

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
            try:
                w.queue.put_nowait(event)
            except asyncio.QueueFull:
                w.dropped += 1
                if not w.fell_behind:
                    w.fell_behind = True
                    log.warning("watch stream fell behind; it will be ended", queue=self.queue_size)
