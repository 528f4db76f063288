"""The store's record cache: a kept record is served only while its files are unchanged on disk."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agent import record_cache
from agent.record_cache import SETTLED_NS, RecordCache, stamp_of
from agent.records import RECORD, record_to_json
from agent.sessions import SessionRecord, new_session_id
from agent.store import SessionStore

NOW = datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)


class CountingStore(SessionStore):
    """A store that counts the records it reads from their files."""

    reads = 0

    def _read_file(self, session_id: str) -> SessionRecord | None:
        self.reads += 1
        return super()._read_file(session_id)


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache's clock runs 10 s ahead: every file counts as settled at once."""
    monkeypatch.setattr(record_cache, "time_ns", lambda: time.time_ns() + 10 * 10**9)


def _store(tmp_path: Path, names: list[str]) -> tuple[CountingStore, list[SessionRecord]]:
    root = tmp_path / "sessions"
    root.mkdir()
    store = CountingStore(root, tmp_path / "no-skel")
    records = [SessionRecord(new_session_id(), name, NOW, NOW) for name in names]
    for r in records:
        store.create(r)
    return store, records


def _record_path(store: SessionStore, r: SessionRecord) -> Path:
    return store.session_dir(r.id) / RECORD


@pytest.mark.usefixtures("settled")
def test_unchanged_records_are_not_read_again(tmp_path: Path) -> None:
    """Once read, settled records are served from memory: a second List (and a Get) reads no file."""
    store, records = _store(tmp_path, ["a", "b", "c"])
    first = store.list()
    reads = store.reads
    assert reads == 3
    assert store.list() == first
    assert store.get(records[1].id) == records[1]
    assert store.reads == reads


@pytest.mark.usefixtures("settled")
def test_list_kept_answers_only_from_memory(tmp_path: Path) -> None:
    """list_kept is list() while every record is kept and unchanged, else None (it opens no file)."""
    store, (a, b) = _store(tmp_path, ["a", "b"])
    assert store.list_kept() is None          # nothing kept yet
    assert store.reads == 0
    expected = store.list()
    assert store.list_kept() == expected
    store.write(SessionRecord(b.id, "b2", NOW, NOW))
    assert store.list_kept() is None          # b changed on disk
    store.list()
    reads = store.reads
    assert sorted(r.name for r in store.list_kept() or []) == ["a", "b2"]
    store.delete(a.id)
    assert [r.name for r in store.list_kept() or []] == ["b2"]
    assert store.reads == reads               # all of it from memory


@pytest.mark.usefixtures("settled")
def test_an_edit_in_place_or_a_replaced_file_is_read_again(tmp_path: Path) -> None:
    """A record rewritten in place (same inode) or replaced (a new inode) is read again."""
    store, (a, b) = _store(tmp_path, ["a", "b"])
    store.list()
    path = _record_path(store, a)
    inode = path.stat().st_ino
    with path.open("r+") as f:   # in place, as an editor that truncates and writes would
        f.truncate(0)
        f.write(record_to_json(SessionRecord(a.id, "renamed in place", NOW, NOW)))
    assert path.stat().st_ino == inode
    replaced = _record_path(store, b).with_suffix(".new")
    replaced.write_text(record_to_json(SessionRecord(b.id, "replaced", NOW, NOW)))
    os.replace(replaced, _record_path(store, b))
    assert sorted(r.name for r in store.list()) == ["renamed in place", "replaced"]


@pytest.mark.usefixtures("settled")
def test_a_write_through_the_store_is_served(tmp_path: Path) -> None:
    """The store's own atomic write is seen by the next read."""
    store, (a,) = _store(tmp_path, ["a"])
    store.list()
    store.write(SessionRecord(a.id, "b", NOW, NOW, desired_running=True))
    assert store.get(a.id) == SessionRecord(a.id, "b", NOW, NOW, desired_running=True)


@pytest.mark.usefixtures("settled")
def test_a_record_corrupted_after_it_was_kept_is_refused(tmp_path: Path) -> None:
    """Garbage written over a kept record is refused (set aside, logged), never served from memory."""
    store, (a, _b) = _store(tmp_path, ["a", "b"])
    store.list()
    _record_path(store, a).write_text("{not json")
    with capture_logs() as logs:
        assert [r.name for r in store.list()] == ["b"]
    assert any(e["event"] == "session record refused" and e["session"] == a.id for e in logs)
    assert (store.session_dir(a.id) / f"{RECORD}.rejected").exists()


@pytest.mark.usefixtures("settled")
def test_a_record_or_directory_removed_behind_the_store_is_gone(tmp_path: Path) -> None:
    """A record deleted from disk (or its whole directory) is no longer served."""
    store, (a, b, _c) = _store(tmp_path, ["a", "b", "c"])
    store.list()
    _record_path(store, a).unlink()
    os.rename(store.session_dir(b.id), tmp_path / "moved-away")
    assert [r.name for r in store.list()] == ["c"]


@pytest.mark.usefixtures("settled")
def test_a_file_planted_beside_the_record_is_seen(tmp_path: Path) -> None:
    """A stranger file in the session directory changes its stamp: the layout check runs again."""
    store, (a,) = _store(tmp_path, ["a"])
    assert store.list() == [a]
    (store.session_dir(a.id) / "planted").write_text("x")
    with capture_logs():
        assert store.list() == []


def test_records_that_just_changed_are_read_every_time(tmp_path: Path) -> None:
    """Within SETTLED_NS of a change (file times come from a coarse clock) a record is read on every call."""
    store, _ = _store(tmp_path, ["a", "b"])
    store.list()
    reads = store.reads
    store.list()
    assert store.reads == reads + 2


@pytest.mark.usefixtures("settled")
def test_lists_from_several_threads_while_records_change(tmp_path: Path) -> None:
    """Lists on the loop and in worker threads at once, while records are rewritten, all see
    every session, each with its old or its new name."""
    store, records = _store(tmp_path, [f"s{i:02d}" for i in range(20)])
    errors: list[BaseException] = []

    def lists(kept: bool) -> None:
        try:
            for _ in range(150):
                got = store.list_kept() if kept else store.list()
                if got is not None:
                    assert {r.id for r in got} == {r.id for r in records}
                    assert all(r.name.removesuffix("x") in names for r in got)
        except BaseException as e:  # reported below
            errors.append(e)

    def writes() -> None:
        for i in range(150):
            r = records[i % len(records)]
            store.write(SessionRecord(r.id, r.name + ("x" if i % 2 else ""), NOW, NOW))

    names = {r.name for r in records}
    threads = [threading.Thread(target=lists, args=(i % 2 == 0,)) for i in range(4)]
    threads.append(threading.Thread(target=writes))
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []


def test_put_keeps_only_settled_records() -> None:
    """A record is kept once its newest ctime (directory or file) is SETTLED_NS old, else dropped."""
    cache = RecordCache()
    r = SessionRecord(new_session_id(), "a", NOW, NOW)
    stamp = (1, 2, 0o40700, 4096, 10, 100, 1, 3, 0o100644, 120, 20, 500)
    cache.put(r.id, stamp, r, now_ns=500 + SETTLED_NS - 1)
    assert cache.get(r.id, stamp) is None
    cache.put(r.id, stamp, r, now_ns=500 + SETTLED_NS)
    assert cache.get(r.id, stamp) == r
    assert cache.get(r.id, (*stamp[:-1], 501)) is None     # any field that differs: not served
    assert cache.get(r.id, None) is None
    cache.put(r.id, stamp, None, now_ns=10**18)            # refused now: the old entry goes
    assert cache.get(r.id, stamp) is None
    cache.put(r.id, stamp, r, now_ns=10**18)
    cache.keep_only(set())
    assert len(cache) == 0


def test_stamp_needs_a_directory_and_a_regular_record(tmp_path: Path) -> None:
    """No stamp for a missing record, a record that is a link or a FIFO, or a directory that is a link."""
    d = tmp_path / "s"
    d.mkdir()
    assert stamp_of(d, RECORD) is None
    (d / RECORD).write_text("{}")
    assert stamp_of(d, RECORD) is not None
    (tmp_path / "link").symlink_to(d)
    assert stamp_of(tmp_path / "link", RECORD) is None
    (d / RECORD).unlink()
    (d / RECORD).symlink_to(tmp_path / "elsewhere")
    assert stamp_of(d, RECORD) is None
    (d / RECORD).unlink()
    os.mkfifo(d / RECORD)
    assert stamp_of(d, RECORD) is None
