"""The needs-input webhook: one HTTP POST when a session starts waiting for the operator.

Opt-in (``webhook_url`` in the ``[status]`` table). It runs in the status service,
which sees every agent's events whether or not a console is open. :class:`InputWebhook`
watches the service's :class:`shell.status.view.StatusView` like any local client (a
snapshot, then every event) and, per session, posts once per transition into
``needs_input``: a session is known by its agent, its id and the time its wait began,
so an event re-sent after a reconnect or a snapshot does not post again.

Nothing waits on the receiver. Transitions go into a bounded queue (a full queue drops
the new post and counts it); one sender task posts them in order, at most
``webhook_per_minute`` a minute, each with a timeout, retrying a failed post with capped
backoff (:class:`common.backoff.Backoff`) up to ``webhook_attempts`` times; failures
are logged (rate-limited) and counted.

The body is ``webhook_template`` with these placeholders replaced: ``{name}``,
``{agent}``, ``{session}``, ``{reason}``, ``{message}``, ``{wait}`` ("3m"),
``{wait_seconds}`` and ``{since}`` (RFC 3339). With a JSON content type each value is
inserted JSON-escaped (without quotes), so a JSON template stays valid JSON whatever a
session is called. The default template suits Slack- and Mattermost-style receivers.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

import aiohttp
from convocate.v1 import status_pb2

from common.backoff import Backoff
from common.errors import InvalidArgumentError
from common.logging import get_logger
from common.proto_convert import activity_from_proto
from common.tasks import TaskSet
from common.text import safe_display
from shell.status.config import DEFAULT_TEMPLATE
from shell.status.view import LogBudget, StatusView

__all__ = ["DEFAULT_TEMPLATE", "MAX_TRACKED", "QUEUE_SIZE", "InputWebhook", "TokenBucket", "Transition",
           "WebhookSettings", "render"]

QUEUE_SIZE = 256          # transitions waiting to be posted; beyond it new ones are dropped
MAX_TRACKED = 10_000      # sessions whose last state is remembered (the oldest is forgotten)
MAX_VALUE = 200           # characters of one inserted value
NEEDS_INPUT = "needs_input"
log = get_logger(__name__)


@dataclass(frozen=True)
class WebhookSettings:
    """Where and how to post (from the status service's configuration)."""

    url: str
    template: str = DEFAULT_TEMPLATE
    content_type: str = "application/json"
    per_minute: int = 30          # posts a minute at most
    timeout: float = 10.0         # one POST, seconds
    attempts: int = 5             # tries per transition before it is given up
    backoff_initial: float = 1.0
    backoff_max: float = 60.0

    def check(self) -> None:
        """Refuse a URL that is not http(s) or numbers out of range.

        Raises:
            InvalidArgumentError: naming the setting.
        """
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidArgumentError(f"webhook_url must be an http:// or https:// URL, not {self.url!r}")
        if self.per_minute < 1 or self.attempts < 1 or self.timeout <= 0:
            raise InvalidArgumentError("webhook_per_minute and webhook_attempts must be at least 1, "
                                       "webhook_timeout above 0")


@dataclass(frozen=True)
class Transition:
    """A session that started needing input."""

    agent_id: str
    session_id: str
    name: str
    reason: str = ""
    message: str = ""
    since: datetime | None = None
    seen_at: float = field(default_factory=time.monotonic)


def _duration(seconds: float) -> str:
    s = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def render(template: str, t: Transition, *, json_values: bool, now: datetime | None = None) -> str:
    """The body for ``t``: the template with its placeholders replaced (see the module docstring)."""
    now = now or datetime.now(UTC)
    wait = (now - t.since).total_seconds() if t.since is not None else 0.0
    values = {
        "name": t.name, "agent": t.agent_id, "session": t.session_id, "reason": t.reason or "input",
        "message": t.message, "wait": _duration(wait), "wait_seconds": str(max(0, int(wait))),
        "since": t.since.isoformat() if t.since is not None else "",
    }
    body = template
    for key, value in values.items():
        text = safe_display(value, MAX_VALUE)
        body = body.replace("{" + key + "}", json.dumps(text)[1:-1] if json_values else text)
    return body


class TokenBucket:
    """A token bucket: ``per_minute`` posts a minute, bursts up to the same number."""

    def __init__(self, per_minute: int, clock: Callable[[], float]) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self.tokens = self.capacity
        self.clock = clock
        self.at = clock()

    def wait_time(self) -> float:
        """Seconds until a token is there (0: take it now)."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self) -> None:
        """Spend one token."""
        self.tokens -= 1


class InputWebhook:
    """Posts a webhook per transition into needs_input (see the module docstring). ``start``/``close``."""

    def __init__(self, settings: WebhookSettings, view: StatusView,
                 clock: Callable[[], float] = time.monotonic) -> None:
        settings.check()
        self.settings = settings
        self.view = view
        self._last: OrderedDict[tuple[str, str], tuple[str, datetime | None]] = OrderedDict()
        self._queue: asyncio.Queue[Transition] = asyncio.Queue(QUEUE_SIZE)
        self._bucket = TokenBucket(settings.per_minute, clock)
        self._tasks = TaskSet("webhook")
        self._session: aiohttp.ClientSession | None = None
        self._log_budget = LogBudget(clock)
        self.posted = 0          # posts the receiver accepted (2xx)
        self.failed = 0          # transitions given up after every attempt
        self.dropped = 0         # transitions dropped because the queue was full
        self.attempts = 0        # POSTs tried

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Watch the view and start the sender."""
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.settings.timeout))
        watcher = self.view.subscribe()

        async def watch() -> None:
            try:
                while True:
                    self.observe(await watcher.next())
            finally:
                self.view.unsubscribe(watcher)

        self._tasks.create_task(watch(), name="webhook-watch")
        self._tasks.create_task(self._send_all(), name="webhook-send")
        log.info("needs-input webhook on", host=urlsplit(self.settings.url).hostname,
                 per_minute=self.settings.per_minute)

    async def close(self) -> None:
        """Stop watching and sending (what is queued is dropped), close the HTTP session."""
        await self._tasks.aclose()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- transitions -------------------------------------------------------------------------
    def observe(self, update: status_pb2.ViewUpdate) -> None:
        """Take one update of the view: every session event in it may be a transition."""
        kind = update.WhichOneof("update")
        if kind == "event":
            self.offer_event(update.event)
        elif kind == "snapshot":
            for agent in update.snapshot.agents:
                for event in agent.last_session_events.values():
                    self.offer_event(event)

    def offer_event(self, event: status_pb2.Event) -> None:
        """Queue a post if ``event`` shows its session newly needing input."""
        if not event.session_id or not event.HasField("session"):
            return
        activity = activity_from_proto(event.session.activity)
        self.offer(Transition(event.agent_id, event.session_id, event.session.name or event.session_id,
                              activity.reason.value, activity.message, activity.since), activity.state.value)

    def offer(self, t: Transition, state: str) -> bool:
        """Record ``state`` for ``t``'s session; queue a post on a new wait. True if queued."""
        key = (t.agent_id, t.session_id)
        before = self._last.pop(key, None)
        self._last[key] = (state, t.since)
        while len(self._last) > MAX_TRACKED:
            self._last.popitem(last=False)
        if state != NEEDS_INPUT or (before is not None and before == (state, t.since)):
            return False
        if before is not None and before[0] == NEEDS_INPUT and t.since is None:
            return False   # no time to tell a new wait from the same one: the same one
        try:
            self._queue.put_nowait(t)
        except asyncio.QueueFull:
            self.dropped += 1
            if self._log_budget.allow("dropped"):
                log.warning("webhook queue full: post dropped", session=t.session_id, dropped=self.dropped)
            return False
        return True

    # --- sending ----------------------------------------------------------------------------------
    async def _send_all(self) -> None:
        while True:
            t = await self._queue.get()
            delay = self._bucket.wait_time()
            if delay > 0:
                await asyncio.sleep(delay)
                self._bucket.wait_time()
            self._bucket.take()
            await self._deliver(t)

    async def _deliver(self, t: Transition) -> None:
        """POST ``t``, retrying with capped backoff; give up after ``attempts`` tries."""
        backoff = Backoff(initial=self.settings.backoff_initial, maximum=self.settings.backoff_max)
        json_values = "json" in self.settings.content_type
        error = ""
        for attempt in range(1, self.settings.attempts + 1):
            body = render(self.settings.template, t, json_values=json_values)
            self.attempts += 1
            try:
                error = await self._post(body)
            except (aiohttp.ClientError, TimeoutError, OSError) as e:
                error = f"{type(e).__name__}: {e}"
            if not error:
                self.posted += 1
                log.info("webhook posted", agent=t.agent_id, session=t.session_id, attempt=attempt)
                return
            if self._log_budget.allow("failed"):
                log.warning("webhook post failed", agent=t.agent_id, session=t.session_id, attempt=attempt,
                            error=safe_display(error, 200))
            if attempt < self.settings.attempts:
                await asyncio.sleep(backoff.next_delay())
        self.failed += 1
        log.error("webhook post given up", agent=t.agent_id, session=t.session_id,
                  attempts=self.settings.attempts, error=safe_display(error, 200), failed=self.failed)

    async def _post(self, body: str) -> str:
        """One POST; "" on a 2xx answer, else what went wrong."""
        if self._session is None:
            return "the webhook is closed"
        async with self._session.post(self.settings.url, data=body.encode(),
                                      headers={"Content-Type": self.settings.content_type}) as resp:
            await resp.read()
            return "" if 200 <= resp.status < 300 else f"HTTP {resp.status}"
