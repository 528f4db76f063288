"""Session directories: layout, skeleton copy, shared links, atomic records, crash leftovers,
records read as untrusted input, the old layout's migration, and Clone's safe copy."""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from agent.records import MAX_RECORD_BYTES, record_to_json
from agent.sessions import SessionRecord, new_session_id
from agent.store import SHARED_LINKS, SessionStore, parse_time
from common.errors import NotFoundError, ResourceExhaustedError

NOW = datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)


def _store(tmp_path: Path, **kw: int) -> SessionStore:
    skel = tmp_path / ".skel"
    skel.mkdir(mode=0o750)
    (skel / "CLAUDE.md").write_text("hello")
    (skel / "link").symlink_to("CLAUDE.md")
    return SessionStore(tmp_path, skel, **kw)  # type: ignore[arg-type]


def _refusals(logs: list[MutableMapping[str, Any]]) -> dict[str, str]:
    return {str(e["session"]): str(e["reason"]) for e in logs if e["event"] == "session record refused"}


def test_create_puts_the_record_beside_the_home(tmp_path: Path) -> None:
    """The record sits in <uuid>/ (0700) beside home/, which holds the skeleton and a 0700 .claude."""
    store = _store(tmp_path)
    r = SessionRecord(new_session_id(), "one", NOW, NOW, 1001, "udp", "one.example")
    store.create(r)
    home = store.home_dir(r.id)
    assert home == tmp_path / r.id / "home"
    assert sorted(os.listdir(tmp_path / r.id)) == ["home", "session.json"]
    assert (tmp_path / r.id).stat().st_mode & 0o777 == 0o700
    assert not (home / "session.json").exists()
    assert (home / "CLAUDE.md").read_text() == "hello"
    assert (home / "link").is_symlink()
    assert (home / ".claude").stat().st_mode & 0o777 == 0o700
    for name in SHARED_LINKS:
        assert os.readlink(home / ".claude" / name) == f"/home/claude/.claude-shared/{name}"
    data = json.loads((tmp_path / r.id / "session.json").read_text())
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
    (tmp_path / "notes").mkdir()                                  # not a UUID
    assert [r.name for r in store.list()] == ["new", "old"]


def test_crash_leftovers_are_ignored_then_removed(tmp_path: Path) -> None:
    """Half-made and half-deleted directories never list and are removed at start."""
    store = _store(tmp_path)
    sid = new_session_id()
    (tmp_path / f".staging-{sid}").mkdir()
    (tmp_path / f".deleting-{sid}").mkdir()
    assert store.list() == []
    assert sorted(store.prepare()) == [f".deleting-{sid}", f".staging-{sid}"]
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


def test_finding2_records_that_are_not_small_regular_files_are_refused_without_blocking(
    tmp_path: Path,
) -> None:
    """Security review finding 2: a FIFO, a link to /dev/zero, a directory and a huge file as
    session.json are each refused (logged, set aside) at once; the other sessions still list."""
    store = _store(tmp_path)
    good = SessionRecord(new_session_id(), "good", NOW, NOW)
    store.create(good)
    bad: dict[str, str] = {}
    for kind in ("fifo", "zero", "dir", "huge"):
        r = SessionRecord(new_session_id(), kind, NOW, NOW)
        store.create(r)
        path = tmp_path / r.id / "session.json"
        path.unlink()
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "zero":
            path.symlink_to("/dev/zero")
        elif kind == "dir":
            path.mkdir()
        else:
            path.write_bytes(b" " * (MAX_RECORD_BYTES + 1))
        bad[r.id] = kind
    started = time.monotonic()
    with capture_logs() as logs:
        assert [r.name for r in store.list()] == ["good"]
    assert time.monotonic() - started < 5
    reasons = _refusals(logs)
    assert set(reasons) == set(bad)
    assert "FIFO" in next(v for k, v in reasons.items() if bad[k] == "fifo")
    assert "symbolic link" in next(v for k, v in reasons.items() if bad[k] == "zero")
    assert "directory" in next(v for k, v in reasons.items() if bad[k] == "dir")
    assert "bytes" in next(v for k, v in reasons.items() if bad[k] == "huge")
    for sid in bad:
        assert (tmp_path / sid / "session.json.rejected").exists() or (
            tmp_path / sid / "session.json.rejected").is_symlink()
        assert (tmp_path / sid / "home" / "CLAUDE.md").exists()  # nothing of the home is lost
        with pytest.raises(NotFoundError):
            store.get(sid)


@pytest.mark.parametrize("swap", ["record", "fifo"])
def test_a_record_replaced_while_it_is_opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              swap: str) -> None:
    """A record replaced between its stat and its open: by a newer record (the store's own atomic
    write racing a List) it is read, not set aside; by a FIFO it is refused as before."""
    store = _store(tmp_path)
    r = SessionRecord(new_session_id(), "old", NOW, NOW)
    store.create(r)
    path = tmp_path / r.id / "session.json"
    real_open = os.open

    def open_after_a_swap(name: Any, flags: int, *args: Any, **kw: Any) -> int:
        if name == "session.json" and kw.get("dir_fd") is not None and not monkeypatch_done:
            monkeypatch_done.append(True)
            if swap == "record":
                store.write(SessionRecord(r.id, "new", NOW, NOW))
            else:
                path.unlink()
                os.mkfifo(path)
        return real_open(name, flags, *args, **kw)

    monkeypatch_done: list[bool] = []
    monkeypatch.setattr("agent.records.os.open", open_after_a_swap)
    with capture_logs() as logs:
        listed = store.list()
    assert monkeypatch_done
    if swap == "record":
        assert [x.name for x in listed] == ["new"]
        assert _refusals(logs) == {}
        assert not path.with_name("session.json.rejected").exists()
    else:
        assert listed == []
        assert "FIFO" in _refusals(logs)[r.id]


def test_desired_state_is_kept_and_an_older_record_without_it_reads_as_stopped(tmp_path: Path) -> None:
    """The desired state round-trips; a record written before the field existed is "stopped"."""
    store = _store(tmp_path)
    r = SessionRecord(new_session_id(), "a", NOW, NOW, desired_running=True)
    store.create(r)
    assert json.loads((tmp_path / r.id / "session.json").read_text())["desired_state"] == "running"
    assert store.get(r.id).desired_running
    path = tmp_path / r.id / "session.json"
    data = json.loads(path.read_text())
    del data["desired_state"]
    path.write_text(json.dumps(data))
    assert store.get(r.id) == SessionRecord(r.id, "a", NOW, NOW)


@pytest.mark.parametrize(("field", "value"), [
    ("dns_name", "x\n10.6.6.6\tshell.corp.example"),
    ("dns_name", "UPPER.example"),
    ("name", "evil\x1b]0;title\x07"),
    ("name", "row\nforged"),
    ("name", ""),
    ("port", 70000),
    ("port", "1001"),
    ("port", True),
    ("protocol", "sctp"),
    ("uuid", "00000000-0000-4000-8000-000000000000"),
    ("created_at", "yesterday"),
    ("desired_state", "paused"),
    ("desired_state", True),
])
def test_finding3_records_breaking_the_rpc_rules_are_never_served(
    tmp_path: Path, field: str, value: object,
) -> None:
    """Security review finding 3 (agent side): a record rewritten with a value the RPCs would
    refuse is refused on read, logged and set aside."""
    store = _store(tmp_path)
    r = SessionRecord(new_session_id(), "ok", NOW, NOW, 1001, "tcp", "ok.example")
    store.create(r)
    path = tmp_path / r.id / "session.json"
    data = json.loads(path.read_text())
    data[field] = value
    path.write_text(json.dumps(data))
    with capture_logs() as logs:
        assert store.list() == []
    assert r.id in _refusals(logs)
    assert (tmp_path / r.id / "session.json.rejected").is_file()


def test_finding3_port_and_dns_uniqueness_cannot_be_bypassed_by_rewriting_records(tmp_path: Path) -> None:
    """Security review finding 3: a record rewritten to claim another session's port or DNS name
    is not served; the older session keeps it."""
    store = _store(tmp_path)
    first = SessionRecord(new_session_id(), "first", NOW, NOW, 1001, "tcp", "a.example")
    later = NOW.replace(year=2027)
    copycat = SessionRecord(new_session_id(), "copycat", later, later)
    dns_copycat = SessionRecord(new_session_id(), "dns", later, later, 0, "tcp", "")
    udp = SessionRecord(new_session_id(), "udp", later, later, 1001, "udp")
    for rec in (first, copycat, dns_copycat, udp):
        store.create(rec)
    (tmp_path / copycat.id / "session.json").write_text(
        record_to_json(SessionRecord(copycat.id, "copycat", later, later, 1001, "tcp")))
    (tmp_path / dns_copycat.id / "session.json").write_text(
        record_to_json(SessionRecord(dns_copycat.id, "dns", later, later, 0, "tcp", "a.example")))
    with capture_logs() as logs:
        assert sorted(r.name for r in store.list()) == ["first", "udp"]
    assert set(_refusals(logs)) == {copycat.id, dns_copycat.id}
    with pytest.raises(NotFoundError):
        store.get(copycat.id)


def _old_layout(root: Path, name: str) -> tuple[str, Path]:
    sid = new_session_id()
    home = root / sid
    (home / ".claude").mkdir(parents=True)
    (home / ".claude" / "settings.json").symlink_to("/home/claude/.claude-shared/settings.json")
    (home / "home" / "deep").mkdir(parents=True)         # a user's own ~/home survives as is
    (home / "home" / "deep" / "f.txt").write_text("deep")
    (home / "work.txt").write_text("work")
    (home / "session.json").write_text(record_to_json(SessionRecord(sid, name, NOW, NOW)))
    return sid, home


def test_old_layout_sessions_are_moved_losing_nothing(tmp_path: Path) -> None:
    """At start a session whose record sits in its home is moved: record beside, files in home/."""
    store = _store(tmp_path)
    sid, _ = _old_layout(tmp_path, "legacy")
    fresh = SessionRecord(new_session_id(), "fresh", NOW, NOW)
    store.create(fresh)
    assert store.prepare() == [f"migrated {sid}"]
    assert sorted(os.listdir(tmp_path / sid)) == ["home", "session.json"]
    home = store.home_dir(sid)
    assert (home / "work.txt").read_text() == "work"
    assert (home / "home" / "deep" / "f.txt").read_text() == "deep"
    assert os.readlink(home / ".claude" / "settings.json") == "/home/claude/.claude-shared/settings.json"
    assert not (home / "session.json").exists()
    assert store.get(sid).name == "legacy"
    assert store.get(fresh.id).name == "fresh"
    assert store.prepare() == []  # idempotent


@pytest.mark.parametrize("stage", ["made", "moved", "record_moved"])
def test_an_interrupted_migration_is_finished_at_the_next_start(tmp_path: Path, stage: str) -> None:
    """A crash after any of the migration's renames leaves a state the next start completes."""
    store = _store(tmp_path)
    sid, home = _old_layout(tmp_path, "legacy")
    work = tmp_path / f".migrating-{sid}"
    work.mkdir()
    if stage != "made":
        os.rename(home, work / "home")
    if stage == "record_moved":
        os.rename(work / "home" / "session.json", work / "session.json")
    store.prepare()
    assert not work.exists()
    assert store.get(sid).name == "legacy"
    assert (store.home_dir(sid) / "work.txt").read_text() == "work"


def test_clone_copies_the_home_with_a_fresh_record(tmp_path: Path) -> None:
    """A clone copies files, directories and inner links but writes its own record."""
    store = _store(tmp_path)
    src = SessionRecord(new_session_id(), "src", NOW, NOW, 1001, "tcp", "src")
    store.create(src)
    (store.home_dir(src.id) / "sub").mkdir()
    (store.home_dir(src.id) / "sub" / "work.txt").write_text("data")
    (store.home_dir(src.id) / "sub" / "up").symlink_to("../CLAUDE.md")
    copy = SessionRecord(new_session_id(), "copy", NOW, NOW)
    store.clone(src.id, copy)
    assert (store.home_dir(copy.id) / "sub" / "work.txt").read_text() == "data"
    assert os.readlink(store.home_dir(copy.id) / "sub" / "up") == "../CLAUDE.md"
    assert store.get(copy.id) == copy


def test_finding4_clone_copies_no_fifo_device_setuid_bit_or_escaping_link(tmp_path: Path) -> None:
    """Security review finding 4: Clone never opens a FIFO or a device, drops setuid/setgid
    bits and leaves out links that leave the home; it returns promptly."""
    store = _store(tmp_path)
    src = SessionRecord(new_session_id(), "src", NOW, NOW)
    store.create(src)
    home = store.home_dir(src.id)
    os.mkfifo(home / "fifo")
    os.mknod(home / "zero", 0o666 | stat.S_IFCHR, os.makedev(1, 5))
    tool = home / "tool"
    tool.write_bytes(b"#!/bin/sh\n")
    tool.chmod(0o6755)
    (home / "escape").symlink_to("/etc/shadow")
    (home / "up").symlink_to("../../..")
    (home / "inside").symlink_to("/home/claude/CLAUDE.md")
    copy = SessionRecord(new_session_id(), "copy", NOW, NOW)
    started = time.monotonic()
    store.clone(src.id, copy)
    assert time.monotonic() - started < 5
    out = store.home_dir(copy.id)
    names = set(os.listdir(out))
    assert {"fifo", "zero", "escape", "up"}.isdisjoint(names)
    assert {"tool", "inside", "CLAUDE.md", ".claude"} <= names
    assert (out / "tool").stat().st_mode & 0o7777 == 0o755


def test_finding4_clone_over_the_size_cap_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    """Security review finding 4: a home over clone_max_bytes is refused with a clear error."""
    store = _store(tmp_path, clone_max_bytes=1000)
    src = SessionRecord(new_session_id(), "src", NOW, NOW)
    store.create(src)
    (store.home_dir(src.id) / "big").write_bytes(b"x" * 2000)
    with pytest.raises(ResourceExhaustedError, match=r"clone of session .* refused: .*more than 1000 bytes"):
        store.clone(src.id, SessionRecord(new_session_id(), "copy", NOW, NOW))
    assert sorted(p.name for p in tmp_path.iterdir()) == [".skel", src.id]


def test_go_nanosecond_timestamps_parse() -> None:
    """Records written by v2.0.0 (RFC 3339 with nanoseconds) are read."""
    t = parse_time("2026-03-04T05:06:07.123456789Z")
    assert t == datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)


def test_a_session_that_cannot_move_is_logged_and_the_others_still_move(tmp_path: Path) -> None:
    """A session directory the migration cannot move (its work name is taken) is logged and
    left as it is; the other old-layout sessions move."""
    store = _store(tmp_path)
    stuck, _ = _old_layout(tmp_path, "stuck")
    free, _ = _old_layout(tmp_path, "free")
    (tmp_path / f".migrating-{stuck}").write_text("in the way")
    with capture_logs() as logs:
        assert store.prepare() == [f"migrated {free}"]
    assert any(e["event"] == "session not moved to the new layout" for e in logs)
    assert (tmp_path / stuck / "session.json").is_file()
    assert store.get(free).name == "free"
    with pytest.raises(NotFoundError):  # never served while its record is in the container's reach
        store.get(stuck)
