"""The per-session event log: bounded on disk, read back in order, followed live."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.event_log import LOG_FILE, EventLog
from common.errors import UnavailableError
from tests.support.waiting import assert_eventually

SID = "11111111-2222-4333-8444-555555555555"


def test_log_rotates_and_reads_the_last_entries(tmp_path: Path) -> None:
    """Past max_bytes the log rotates once; reads return the newest entries, oldest first."""
    (tmp_path / SID).mkdir()
    log = EventLog(tmp_path, max_bytes=2000)
    for i in range(100):
        log.record(SID, "activity", f"entry {i}", actor="cli", attributes={"n": str(i)})
    files = sorted(p.name for p in (tmp_path / SID).iterdir())
    assert files == [LOG_FILE, f"{LOG_FILE}.1"]
    assert sum((tmp_path / SID / f).stat().st_size for f in files) <= 4000
    last = log.read(SID, limit=5)
    assert [e.detail for e in last] == [f"entry {i}" for i in range(95, 100)]
    assert last[-1].attributes == {"n": "99"}


def test_garbage_lines_are_skipped_and_text_is_made_printable(tmp_path: Path) -> None:
    """A torn or foreign line is skipped on read; control characters never reach the log."""
    (tmp_path / SID).mkdir()
    log = EventLog(tmp_path)
    log.record(SID, "reply", "yes\x1b[2J", actor="op\x07")
    with (tmp_path / SID / LOG_FILE).open("ab") as f:
        f.write(b'{"time": "not a time", "kind": "x"}\n{"torn')
    entries = log.read(SID)
    assert len(entries) == 1
    assert "\x1b" not in entries[0].detail
    assert "\x07" not in entries[0].actor


async def test_follow_gives_the_backlog_then_new_entries(tmp_path: Path) -> None:
    """A follower sees the last entries and then every new one, once each."""
    (tmp_path / SID).mkdir()
    log = EventLog(tmp_path)
    log.record(SID, "created", "one")
    seen: list[str] = []

    async def follow() -> None:
        async for entry in log.follow(SID):
            seen.append(entry.detail)  # noqa: PERF401 - seen by the test while the stream runs

    task = asyncio.create_task(follow())
    try:
        await assert_eventually(lambda: seen == ["one"])
        log.record(SID, "started", "two")
        await assert_eventually(lambda: seen == ["one", "two"])
    finally:
        task.cancel()


async def test_close_ends_followers_and_refuses_new_ones(tmp_path: Path) -> None:
    """The agent stopping: a follower (even one with a full queue) ends UNAVAILABLE; so does a late one."""
    log = EventLog(tmp_path)
    (tmp_path / SID).mkdir()
    log.record(SID, "created")
    seen: list[str] = []

    async def follow() -> None:
        seen.extend([entry.kind async for entry in log.follow(SID)])

    task = asyncio.create_task(follow())
    await assert_eventually(lambda: log._followers.get(SID))
    for i in range(200):               # more than its queue holds, unread
        log.record(SID, f"e{i}")
    log.close()
    with pytest.raises(UnavailableError, match="the agent is stopping"):
        await asyncio.wait_for(task, 10)
    assert seen == []     # the comprehension never finished: the follow ended in the error
    with pytest.raises(UnavailableError, match="the agent is stopping"):
        await anext(aiter(log.follow(SID)))
