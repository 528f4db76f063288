"""Session directories: skeleton copy, shared links, atomic records, crash leftovers."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.sessions import SessionRecord, new_session_id
from agent.store import SHARED_LINKS, SessionStore, parse_time
from common.errors import NotFoundError

NOW = datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)


def _store(tmp_path: Path) -> SessionStore:
    skel = tmp_path / ".skel"
    skel.mkdir(mode=0o750)
    (skel / "CLAUDE.md").write_text("hello")
    (skel / "link").symlink_to("CLAUDE.md")
    return SessionStore(tmp_path, skel)


def test_create_copies_the_skeleton_and_links_the_shared_config(tmp_path: Path) -> None:
    """A new session gets the skeleton (symlinks kept), a 0700 .claude with four links and a record."""
    store = _store(tmp_path)
    r = SessionRecord(new_session_id(), "one", NOW, NOW, 1001, "udp", "one.example")
    store.create(r)
    home = tmp_path / r.id
    assert (home / "CLAUDE.md").read_text() == "hello"
    assert (home / "link").is_symlink()
    assert (home / ".claude").stat().st_mode & 0o777 == 0o700
    for name in SHARED_LINKS:
        assert os.readlink(home / ".claude" / name) == f"/home/claude/.claude-shared/{name}"
    data = json.loads((home / "session.json").read_text())
    assert data["uuid"] == r.id
    assert data["port"] == 1001
    assert data["created_at"] == "2026-03-04T05:06:07.123456Z"
    assert store.get(r.id) == r


def test_list_skips_non_sessions_and_sorts_newest_first(tmp_path: Path) -> None:
    """Only UUID directories with a valid record are listed, newest last_accessed first."""
    store = _store(tmp_path)
    old = SessionRecord(new_session_id(), "old", NOW, NOW)
    new = SessionRecord(new_session_id(), "new", NOW, NOW.replace(year=2027))
    store.create(old)
    store.create(new)
    (tmp_path / new_session_id()).mkdir()                       # no record
    broken = tmp_path / new_session_id()
    broken.mkdir()
    (broken / "session.json").write_text("{not json")            # unreadable record
    (tmp_path / "notes").mkdir()                                  # not a UUID
    assert [r.name for r in store.list()] == ["new", "old"]


def test_crash_leftovers_are_ignored_then_removed(tmp_path: Path) -> None:
    """Half-made and half-deleted directories never list and are removed at start."""
    store = _store(tmp_path)
    sid = new_session_id()
    (tmp_path / f".staging-{sid}").mkdir()
    (tmp_path / f".deleting-{sid}").mkdir()
    assert store.list() == []
    assert sorted(store.remove_leftovers()) == [f".deleting-{sid}", f".staging-{sid}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".skel"]


def test_write_replaces_atomically_and_delete_removes(tmp_path: Path) -> None:
    """Rewriting keeps exactly one valid record; delete removes the directory; unknown ids raise."""
    store = _store(tmp_path)
    r = SessionRecord(new_session_id(), "a", NOW, NOW)
    store.create(r)
    store.write(SessionRecord(r.id, "b", NOW, NOW))
    assert store.get(r.id).name == "b"
    assert [p.name for p in (tmp_path / r.id).iterdir() if p.name.startswith(".session.json")] == []
    store.delete(r.id)
    assert not (tmp_path / r.id).exists()
    with pytest.raises(NotFoundError, match=f'session "{r.id}" does not exist'):
        store.get(r.id)


def test_clone_copies_the_home_with_a_fresh_record(tmp_path: Path) -> None:
    """A clone copies every file but writes its own record."""
    store = _store(tmp_path)
    src = SessionRecord(new_session_id(), "src", NOW, NOW, 1001, "tcp", "src")
    store.create(src)
    (tmp_path / src.id / "work.txt").write_text("data")
    copy = SessionRecord(new_session_id(), "copy", NOW, NOW)
    store.clone(src.id, copy)
    assert (tmp_path / copy.id / "work.txt").read_text() == "data"
    assert store.get(copy.id) == copy


def test_go_nanosecond_timestamps_parse() -> None:
    """Records written by v2.0.0 (RFC 3339 with nanoseconds) are read."""
    t = parse_time("2026-03-04T05:06:07.123456789Z")
    assert t == datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
