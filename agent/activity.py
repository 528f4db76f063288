"""Each session's activity (working, needs input, idle, stopped, unknown) from the CLI's hooks.

The hooks (:mod:`agent.cli_settings`) drop their JSON into the session's spool
(:mod:`agent.hook_spool`); :class:`ActivityTracker` drains the spools of running sessions
every ``poll_interval`` seconds, validates each event (:func:`parse_hook_event`: a JSON
object of at most :data:`agent.hook_spool.MAX_EVENT_BYTES`, a known event name, string
fields of bounded length, printable text), rate-limits it per session (a token bucket:
``burst`` events, refilled at ``rate`` per second; the rest are dropped and counted) and
applies it (:func:`transition`):

==================================  ==========================================
``UserPromptSubmit``, ``PostToolUse``  working
``Notification``                    needs input; the reason from its ``notification_type``
                                    (``permission_prompt``, ``idle_prompt``, else a question;
                                    ``auth_success`` changes nothing)
``PermissionRequest``               needs input (permission)
``Stop``, ``SessionStart``          idle (the CLI waits at its prompt)
``SessionEnd``                      stopped
==================================  ==========================================

The container starting sets ``unknown`` (until a hook speaks), stopping sets ``stopped``.
The time a state began is the event file's time, clamped between the current state's
start and now. The state is kept beside the record in ``<root>/<uuid>/activity.json``
(written atomically, read back as untrusted, bounded), so it survives agent restarts.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.hook_spool import Drained, drain_spool, prepare_spool
from common.domain import Activity, ActivityState, NeedsInputReason
from common.logging import get_logger
from common.paths import atomic_write
from common.session_rules import printable

__all__ = ["ACTIVITY_FILE", "HOOKS_DIR", "ActivityTracker", "HookEvent", "TokenBucket", "parse_hook_event",
           "read_activity", "transition"]

log = get_logger(__name__)
ACTIVITY_FILE = "activity.json"
HOOKS_DIR = "hooks"
MAX_ACTIVITY_BYTES = 4096
MAX_MESSAGE = 200
_FIELD_MAX = 1024
_EVENTS = {"SessionStart", "UserPromptSubmit", "PostToolUse", "PreToolUse", "Notification",
           "PermissionRequest", "Stop", "SubagentStop", "SessionEnd", "PreCompact"}
_NOTIFICATION_REASONS = {
    "permission_prompt": NeedsInputReason.PERMISSION,
    "idle_prompt": NeedsInputReason.IDLE_PROMPT,
    "elicitation_dialog": NeedsInputReason.QUESTION,
}


@dataclass(frozen=True)
class HookEvent:
    """The fields of a hook event the agent uses (validated)."""

    name: str
    notification_type: str = ""
    message: str = ""
    tool_name: str = ""


def _text(d: dict[str, Any], key: str) -> str | None:
    """A string field ("" when absent); None when it is not a string or too long."""
    value = d.get(key, "")
    if not isinstance(value, str) or len(value) > _FIELD_MAX:
        return None
    return value


def parse_hook_event(data: bytes) -> HookEvent | None:
    """The event in a hook's JSON input; None when it is not a valid hook event."""
    try:
        d = json.loads(data.decode())
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(d, dict):
        return None
    name, kind, message, tool, sid = (_text(d, k) for k in (
        "hook_event_name", "notification_type", "message", "tool_name", "session_id"))
    if (name is None or name not in _EVENTS or kind is None or message is None or tool is None
            or sid is None):
        return None
    return HookEvent(name, kind, " ".join(printable(message).split())[:MAX_MESSAGE], printable(tool)[:80])


def _notification_reason(event: HookEvent) -> NeedsInputReason | None:
    if event.notification_type == "auth_success":
        return None
    reason = _NOTIFICATION_REASONS.get(event.notification_type)
    if reason is not None:
        return reason
    text = event.message.lower()   # older CLIs send no type: the message says it
    if "permission" in text:
        return NeedsInputReason.PERMISSION
    if "waiting for your input" in text:
        return NeedsInputReason.IDLE_PROMPT
    return NeedsInputReason.QUESTION


def transition(current: Activity, event: HookEvent, when: datetime) -> Activity | None:
    """The activity after ``event`` at ``when``; None when it changes nothing."""
    new: Activity | None = None
    if event.name in ("UserPromptSubmit", "PostToolUse"):
        new = Activity(ActivityState.WORKING)
    elif event.name in ("Stop", "SessionStart"):
        new = Activity(ActivityState.IDLE)
    elif event.name == "SessionEnd":
        new = Activity(ActivityState.STOPPED)
    elif event.name == "PermissionRequest":
        message = f"permission to use {event.tool_name}" if event.tool_name else "permission request"
        new = Activity(ActivityState.NEEDS_INPUT, NeedsInputReason.PERMISSION, message=message)
    elif event.name == "Notification":
        reason = _notification_reason(event)
        if reason is not None:
            new = Activity(ActivityState.NEEDS_INPUT, reason, message=event.message)
    if new is None or (new.state, new.reason) == (current.state, current.reason):
        return None
    return replace(new, since=when)


def read_activity(path: Path) -> Activity:
    """The activity kept in ``path``; unknown when there is none or it is not valid."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_ACTIVITY_BYTES + 1)
        d = json.loads(data.decode()) if len(data) <= MAX_ACTIVITY_BYTES else None
        state = ActivityState(d["state"]) if isinstance(d, dict) else ActivityState.UNKNOWN
        reason = NeedsInputReason(d.get("reason", "")) if isinstance(d, dict) else NeedsInputReason.NONE
        since = datetime.fromisoformat(d["since"]) if isinstance(d, dict) and d.get("since") else None
        message = printable(str(d.get("message", "")))[:MAX_MESSAGE] if isinstance(d, dict) else ""
    except (OSError, ValueError, KeyError, TypeError):
        return Activity()
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return Activity(state, reason if state is ActivityState.NEEDS_INPUT else NeedsInputReason.NONE,
                    since, message)


def _activity_json(a: Activity) -> str:
    return json.dumps({"state": a.state.value, "reason": a.reason.value,
                       "since": a.since.isoformat() if a.since else "", "message": a.message}) + "\n"


class TokenBucket:
    """``burst`` events at once, refilled at ``rate`` per second."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens = float(burst)
        self.at = time.monotonic()

    def take(self) -> bool:
        """Spend a token; False when none is left."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


# Called with the session id, the old and the new activity, after the new one is kept.
ChangeListener = Callable[[str, Activity, Activity], None]


class ActivityTracker:
    """The activity of every session of one agent; drains the hook spools of running sessions.

    Args:
        root: the sessions root (``<root>/<uuid>/activity.json`` and ``.../hooks``).
        on_change: told of every change (after it is on disk).
        owner: (uid, gid) the spool directories are given; None keeps the agent's.
        poll_interval: seconds between drains.
        rate: hook events per second a session may send on average (token bucket refill).
        burst: hook events a session may send at once.
    """

    def __init__(self, root: Path, on_change: ChangeListener, *, owner: tuple[int, int] | None = None,
                 poll_interval: float = 0.5, rate: float = 5.0, burst: int = 60) -> None:
        self.root = root
        self.on_change = on_change
        self.owner = owner
        self.poll_interval = poll_interval
        self.rate, self.burst = rate, burst
        self._state: dict[str, Activity] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self.dropped: dict[str, int] = {}        # rate-limited, invalid or discarded, per session
        self._warned: dict[str, float] = {}

    def spool_dir(self, session_id: str) -> Path:
        """The session's hook spool on the host."""
        return self.root / session_id / HOOKS_DIR

    def get(self, session_id: str) -> Activity:
        """The session's activity (read from disk on first use)."""
        found = self._state.get(session_id)
        if found is None:
            found = read_activity(self.root / session_id / ACTIVITY_FILE)
            self._state[session_id] = found
        return found

    def forget(self, session_id: str) -> None:
        """Drop a deleted session."""
        for table in (self._state, self._buckets, self.dropped, self._warned):
            table.pop(session_id, None)

    def set(self, session_id: str, activity: Activity, *, quiet: bool = False) -> bool:
        """Keep ``activity`` (on disk, atomically) and tell the listener unless ``quiet``.

        Returns:
            False when nothing changed.
        """
        old = self.get(session_id)
        if (old.state, old.reason, old.message) == (activity.state, activity.reason, activity.message):
            return False
        if activity.since is None:
            activity = replace(activity, since=datetime.now(UTC))
        path = self.root / session_id / ACTIVITY_FILE
        try:
            atomic_write(path, _activity_json(activity), mode=0o600)
        except OSError as e:
            log.warning("activity not kept on disk", session=session_id, error=str(e))
        self._state[session_id] = activity
        if not quiet:
            self.on_change(session_id, old, activity)
        return True

    def starting(self, session_id: str) -> None:
        """Before the container starts: an empty spool (blocking I/O: run it in a thread)."""
        prepare_spool(self.spool_dir(session_id), self.owner)

    def apply(self, session_id: str, drained: Drained) -> None:
        """Apply drained events in order (validated, rate-limited)."""
        bad = drained.discarded
        bucket = self._buckets.setdefault(session_id, TokenBucket(self.rate, self.burst))
        now = datetime.now(UTC)
        for entry in drained.events:
            if not bucket.take():
                bad += 1
                continue
            event = parse_hook_event(entry.data)
            if event is None:
                bad += 1
                continue
            current = self.get(session_id)
            when = datetime.fromtimestamp(entry.mtime_ns / 1e9, UTC)
            when = min(max(when, current.since or when), now)
            new = transition(current, event, when)
            if new is not None:
                self.set(session_id, new)
        if bad:
            self.dropped[session_id] = self.dropped.get(session_id, 0) + bad
            if time.monotonic() - self._warned.get(session_id, -1e9) > 60.0:
                self._warned[session_id] = time.monotonic()
                log.warning("hook events dropped (over the rate, invalid or too large)", session=session_id,
                            count=bad, total=self.dropped[session_id])

    async def poll_once(self, running: Iterable[str]) -> None:
        """Drain and apply the spools of ``running`` sessions once."""
        ids = list(running)
        if not ids:
            return
        drained = await asyncio.to_thread(lambda: [(sid, drain_spool(self.spool_dir(sid))) for sid in ids])
        for sid, found in drained:
            if found.events or found.discarded:
                self.apply(sid, found)

    async def run(self, running: Callable[[], Iterable[str]]) -> None:
        """Poll until cancelled; ``running`` names the sessions whose container runs."""
        while True:
            try:
                await self.poll_once(running())
            except Exception:  # the poller must outlive any one bad spool
                log.exception("hook spools not drained")
            await asyncio.sleep(self.poll_interval)
