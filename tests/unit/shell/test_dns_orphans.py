"""The dnsmasq hosts file rules and pre-v2 orphan sessions on the shell host."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from common.domain import Session, SessionEvent, SessionEventKind
from common.errors import FailedPreconditionError, NotFoundError
from shell.fleet.dns import HEADER, DnsHosts, dns_records, resolve_address
from shell.fleet.model import SessionRow
from shell.fleet.orphans import delete_orphan, orphan_refusal, scan_orphans
from shell.fleet.session_cache import AgentSessions

K = SessionEventKind


def _row(agent: str, dns: str, *, orphan: bool = False, placeholder: bool = False) -> SessionRow:
    return SessionRow(id=str(uuid.uuid4()), name="n", agent_id=agent, created_at=None, last_accessed=None,
                      dns_name=dns, orphan=orphan, placeholder=placeholder)


def test_records_skip_orphans_placeholders_unknown_agents_and_duplicates() -> None:
    """Only agent sessions with a DNS name and a known agent IP get a record; the first claim wins."""
    rows = [
        _row("a", "web"),
        _row("b", "web"),
        _row("a", ""),
        _row("", "old", orphan=True),
        _row("b", "", placeholder=True),
        _row("c", "lost"),
        _row("b", "api"),
    ]
    assert dns_records(rows, {"a": "127.0.0.2", "b": "127.0.0.3"}, zone="") == [
        ("127.0.0.3", "api"),
        ("127.0.0.2", "web"),
    ]


def test_hosts_file_is_written_atomically_only_on_change(tmp_path: Path) -> None:
    """The file has the managed header, one tab-separated line per record, and is rewritten only on change."""
    hosts = DnsHosts(tmp_path / "hosts")
    assert hosts.write([("10.0.0.1", "a")])
    assert not hosts.write([("10.0.0.1", "a")])
    assert (tmp_path / "hosts").read_text() == f"{HEADER}\n10.0.0.1\ta\n"
    assert (tmp_path / "hosts").stat().st_mode & 0o777 == 0o644
    assert not DnsHosts(tmp_path / "missing" / "hosts").write([])


async def test_on_the_loop_the_file_is_written_in_a_thread_latest_content_once(tmp_path: Path) -> None:
    """submit() on a running loop writes nothing on the caller's stack; a burst before the writer
    runs costs one write, of the latest records; flush() waits for it; unchanged content is not
    written again."""
    path = tmp_path / "hosts"
    hosts = DnsHosts(path)
    for i in range(5):
        hosts.submit([("10.0.0.1", f"n{i}")])
    assert not path.exists()                       # not on the loop
    await hosts.flush()
    assert path.read_text() == f"{HEADER}\n10.0.0.1\tn4\n"
    assert hosts.writes == 1
    hosts.submit([("10.0.0.1", "n4")])
    await hosts.flush()
    assert hosts.writes == 1


async def test_a_write_that_failed_is_tried_again_at_the_next_submit(tmp_path: Path) -> None:
    """The directory is missing: nothing is written; once it exists the same records are written."""
    path = tmp_path / "dns" / "hosts"
    hosts = DnsHosts(path)
    hosts.submit([("10.0.0.1", "a")])
    await hosts.flush()
    assert not path.exists()
    path.parent.mkdir()
    hosts.submit([("10.0.0.1", "a")])
    await hosts.flush()
    assert path.read_text() == f"{HEADER}\n10.0.0.1\ta\n"


async def test_addresses_resolve_to_ip_literals() -> None:
    """An IP literal is used as is; localhost resolves to a loopback address."""
    assert await resolve_address("127.0.0.5") == "127.0.0.5"
    assert await resolve_address("localhost") in ("127.0.0.1", "::1")


def _orphan(root: Path, name: str) -> str:
    sid = str(uuid.uuid4())
    (root / sid).mkdir(parents=True)
    (root / sid / "session.json").write_text(
        json.dumps(
            {
                "uuid": sid,
                "name": name,
                "created_at": "2025-01-02T03:04:05.123456789Z",
                "port": 1001,
                "dns_name": "old",
            }
        )
    )
    return sid


def test_orphans_are_listed_refused_with_the_migration_and_deletable(tmp_path: Path) -> None:
    """Pre-v2 session dirs are O rows; writes are refused with the migrate command; delete removes them."""
    sid = _orphan(tmp_path, "legacy")
    (tmp_path / "not-a-uuid").mkdir()
    (tmp_path / "not-a-uuid" / "session.json").write_text("{}")
    bad = tmp_path / str(uuid.uuid4())
    bad.mkdir()
    (bad / "session.json").write_text("{broken")
    rows = scan_orphans(tmp_path)
    assert [(r.id, r.name, r.status_letter, r.port) for r in rows] == [(sid, "legacy", "O", 1001)]
    assert rows[0].created_at is not None
    err = orphan_refusal(rows[0], "restart")
    assert isinstance(err, FailedPreconditionError)
    assert f"convocate-host migrate-session --agent <agent-id> --session {sid}" in str(err)
    delete_orphan(tmp_path, sid)
    assert not (tmp_path / sid).exists()
    with pytest.raises(NotFoundError):
        delete_orphan(tmp_path, sid)
    assert scan_orphans(None) == []


def test_session_cache_applies_snapshot_and_changes() -> None:
    """EXISTING events build a snapshot that SYNCED installs; later events add, change and remove rows."""
    cache = AgentSessions("a")
    sid = str(uuid.uuid4())
    s1 = Session(id=sid, name="one")
    assert not cache.apply(SessionEvent(K.EXISTING, session=s1))
    assert cache.apply(SessionEvent(K.SYNCED))
    assert [r.name for r in cache.rows()] == ["one"]
    s1 = replace(s1, running=True)
    assert cache.apply(SessionEvent(K.STARTED, session=s1))
    row = cache.get(sid)
    assert row is not None
    assert (row.status_letter, row.agent_id) == ("R", "a")
    assert not cache.apply(SessionEvent(K.STARTED, session=s1))
    assert cache.apply(SessionEvent(K.DELETED, session_id=sid))
    assert cache.rows() == []
