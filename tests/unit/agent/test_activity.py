"""Activity from hook events: validation, transitions, the rate limit, and what is kept on disk."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.activity import (
    ACTIVITY_FILE,
    ActivityTracker,
    HookEvent,
    TokenBucket,
    parse_hook_event,
    read_activity,
    transition,
)
from agent.event_log import LOG_FILE
from agent.hook_spool import MAX_EVENT_BYTES, MAX_EVENTS_PER_DRAIN, drain_spool, prepare_spool
from agent.layout_migration import is_new_layout, migrate_sessions
from common.domain import Activity, ActivityState, NeedsInputReason

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
BASE = {"session_id": "abc", "transcript_path": "/home/claude/.claude/projects/x/abc.jsonl",
        "cwd": "/home/claude"}


def _event(name: str, **fields: object) -> bytes:
    return json.dumps({**BASE, "hook_event_name": name, **fields}).encode()


@pytest.mark.parametrize(("data", "state", "reason"), [
    (_event("UserPromptSubmit", prompt="go"), ActivityState.WORKING, NeedsInputReason.NONE),
    (_event("PostToolUse", tool_name="Bash"), ActivityState.WORKING, NeedsInputReason.NONE),
    (_event("Notification", message="Claude needs your permission to use Bash",
            notification_type="permission_prompt"), ActivityState.NEEDS_INPUT, NeedsInputReason.PERMISSION),
    (_event("Notification", message="Claude is waiting for your input", notification_type="idle_prompt"),
     ActivityState.NEEDS_INPUT, NeedsInputReason.IDLE_PROMPT),
    (_event("Notification", message="Pick one", notification_type="elicitation_dialog"),
     ActivityState.NEEDS_INPUT, NeedsInputReason.QUESTION),
    (_event("Notification", message="Claude needs your permission to use Edit"),   # an older CLI: no type
     ActivityState.NEEDS_INPUT, NeedsInputReason.PERMISSION),
    (_event("PermissionRequest", tool_name="Bash", tool_input={}), ActivityState.NEEDS_INPUT,
     NeedsInputReason.PERMISSION),
    (_event("Stop", stop_hook_active=False), ActivityState.IDLE, NeedsInputReason.NONE),
    (_event("SessionStart", source="startup"), ActivityState.IDLE, NeedsInputReason.NONE),
    (_event("SessionEnd", reason="exit"), ActivityState.STOPPED, NeedsInputReason.NONE),
])
def test_hook_events_map_to_states(data: bytes, state: ActivityState, reason: NeedsInputReason) -> None:
    """Each hook the CLI fires gives the documented state and reason, stamped with the event's time."""
    event = parse_hook_event(data)
    assert event is not None
    new = transition(Activity(), event, T0)
    assert new is not None
    assert (new.state, new.reason, new.since) == (state, reason, T0)
    assert transition(new, event, T0 + timedelta(seconds=1)) is None  # the same again changes nothing


@pytest.mark.parametrize("data", [
    b"", b"not json", b"[1, 2]", b'"text"', b"\xff\xfe",
    _event("Bogus"),
    json.dumps({**BASE, "hook_event_name": 7}).encode(),
    _event("Notification", message={"nested": "object"}),
    _event("Notification", message="x" * 5000),
    json.dumps({"hook_event_name": "Stop", "session_id": ["not", "a", "string"]}).encode(),
    b"[" * 100000,
])
def test_invalid_hook_input_is_refused(data: bytes) -> None:
    """Anything but a JSON object with a known event name and string fields of bounded size is dropped."""
    assert parse_hook_event(data) is None


def test_messages_are_made_printable_and_bounded() -> None:
    """Control characters (a terminal escape) never reach the state; long messages are cut."""
    event = parse_hook_event(_event("Notification", message="\x1b]0;pwned\x07 hello\nworld " + "y" * 900))
    assert event is not None
    assert "\x1b" not in event.message
    assert "\x07" not in event.message
    assert "\n" not in event.message
    assert len(event.message) <= 200
    assert transition(Activity(), HookEvent("Notification", notification_type="auth_success"), T0) is None


def test_token_bucket_limits_a_burst() -> None:
    """A burst passes up to its size, then events are refused until the bucket refills."""
    bucket = TokenBucket(rate=0.001, burst=5)
    assert [bucket.take() for _ in range(8)] == [True] * 5 + [False] * 3


def test_tracker_keeps_state_on_disk_and_bounds_a_flood(tmp_path: Path) -> None:
    """State changes are written atomically beside the record and read back by a new tracker;
    a flood beyond the burst is dropped and counted."""
    changes: list[tuple[str, Activity, Activity]] = []
    sid = "11111111-2222-4333-8444-555555555555"
    (tmp_path / sid).mkdir()
    tracker = ActivityTracker(tmp_path, lambda s, old, new: changes.append((s, old, new)),
                              rate=0.001, burst=3)
    spool = tracker.spool_dir(sid)
    prepare_spool(spool)
    for i, name in enumerate(["UserPromptSubmit", "Stop", "UserPromptSubmit", "Stop", "UserPromptSubmit"]):
        (spool / f"{1000 + i}-1.json").write_bytes(_event(name))
        os.utime(spool / f"{1000 + i}-1.json", ns=(0, (1_700_000_000 + i) * 10**9))
    tracker.apply(sid, drain_spool(spool))
    assert [new.state for _, _, new in changes] == [ActivityState.WORKING, ActivityState.IDLE,
                                                    ActivityState.WORKING]
    assert tracker.dropped[sid] == 2
    assert not list(spool.iterdir())
    assert read_activity(tmp_path / sid / ACTIVITY_FILE) == tracker.get(sid)
    again = ActivityTracker(tmp_path, lambda *_: None)
    assert again.get(sid).state is ActivityState.WORKING
    assert again.get(sid).since == datetime.fromtimestamp(1_700_000_002, UTC)


def test_spool_drain_is_bounded_and_ignores_what_is_not_a_file(tmp_path: Path) -> None:
    """Links, FIFOs, directories, oversized and half-written entries are never read; at most
    MAX_EVENTS_PER_DRAIN events come out of one drain, and everything examined is removed."""
    spool = tmp_path / "hooks"
    prepare_spool(spool)
    secret = tmp_path / "secret.json"
    secret.write_bytes(_event("Stop"))
    (spool / "1-link.json").symlink_to(secret)
    os.mkfifo(spool / "2-fifo.json")
    (spool / "3-dir").mkdir()
    (spool / "4-big.json").write_bytes(b" " * (MAX_EVENT_BYTES + 1))
    (spool / ".5-writing").write_bytes(b"{")
    for i in range(MAX_EVENTS_PER_DRAIN + 10):
        (spool / f"9-{i:03d}.json").write_bytes(_event("Stop"))
    drained = drain_spool(spool)
    assert len(drained.events) == MAX_EVENTS_PER_DRAIN
    assert drained.discarded == 4 + 10
    assert sorted(p.name for p in spool.iterdir()) == [".5-writing"]   # a hook may still be writing it
    assert secret.exists()


def test_unreadable_activity_file_reads_as_unknown(tmp_path: Path) -> None:
    """A missing, corrupt or oversized activity file gives "unknown", never an error."""
    path = tmp_path / ACTIVITY_FILE
    assert read_activity(path) == Activity()
    for data in (b"{", b'{"state": "dancing"}', b"[]", b'{"state": "idle", "since": "yesterday"}',
                 b" " * 5000):
        path.write_bytes(data)
        assert read_activity(path) == Activity()


def test_session_directory_with_activity_files_is_not_taken_for_the_old_layout(tmp_path: Path) -> None:
    """The activity file, the event log and the hook spool beside the home keep a session in the
    new layout, so a start never migrates (nests) it again."""
    sid = "11111111-2222-4333-8444-555555555555"
    d = tmp_path / sid
    (d / "home" / ".claude").mkdir(parents=True)
    for name in ("session.json", ACTIVITY_FILE, LOG_FILE, f"{LOG_FILE}.1", ".activity.json.abc.tmp"):
        (d / name).write_text("{}")
    (d / "hooks").mkdir()
    assert is_new_layout(d)
    assert migrate_sessions(tmp_path) == []
