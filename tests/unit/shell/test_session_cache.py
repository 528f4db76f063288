"""One agent's session cache: the listing fingerprint it keeps, ownership checks, sorted rows."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime

from common.domain import Session, SessionEvent, SessionEventKind
from shell.fleet.session_cache import AgentSessions

LISTED = b"fingerprint-1"


def _listed(cache: AgentSessions) -> bytes | None:
    return cache.listed


def _session(name: str, minute: int = 0) -> Session:
    return Session(id=str(uuid.uuid4()), name=name, last_accessed=datetime(2026, 1, 1, 0, minute, tzinfo=UTC))


def test_the_listing_fingerprint_is_kept_until_anything_else_changes_the_rows() -> None:
    """A replace keeps its listing's fingerprint; an identical put keeps it; a change or a removal
    forgets it."""
    one, two = _session("one"), _session("two", 1)
    cache = AgentSessions("a")
    assert cache.replace([one, two], LISTED)
    assert _listed(cache) == LISTED
    assert not cache.replace([one, two], LISTED)  # the same answer again: nothing changed
    cache.put(one)
    assert _listed(cache) == LISTED                  # the row it already had
    cache.put(replace(one, running=True))
    assert _listed(cache) is None
    assert cache.replace([one, two], LISTED)
    assert cache.remove(two.id)
    assert _listed(cache) is None
    assert cache.replace([one, two], LISTED)
    assert cache.apply(SessionEvent(SessionEventKind.DELETED, session_id=one.id))
    assert _listed(cache) is None


def test_a_listing_with_a_refused_session_keeps_no_fingerprint() -> None:
    """A refusal may not hold at the next listing (the other agent lets the id go): it is judged again."""
    taken = _session("taken")
    held_by_b = {taken.id}
    cache = AgentSessions("a", lambda sid, _asking: "b" if sid in held_by_b else None)
    mine = _session("mine")
    assert cache.replace([mine, taken], LISTED)
    assert [r.name for r in cache.rows()] == ["mine"]
    assert cache.refused == 1
    assert _listed(cache) is None
    held_by_b.clear()
    assert cache.replace([mine, taken], LISTED)
    assert {r.name for r in cache.rows()} == {"mine", "taken"}
    assert _listed(cache) == LISTED


def test_ids_already_held_are_not_checked_against_the_other_agents_again() -> None:
    """Only a new id asks who else holds it; every id this agent holds was checked when it came."""
    asked: list[str] = []

    def owner_of(session_id: str, _asking: str) -> str | None:
        asked.append(session_id)
        return None

    cache = AgentSessions("a", owner_of)
    old, new = _session("old"), _session("new")
    cache.replace([old])
    assert asked == [old.id]
    cache.replace([old, new])
    assert asked == [old.id, new.id]
    cache.put(replace(old, name="renamed"))
    assert asked == [old.id, new.id]


def test_rows_stay_sorted_newest_first_across_changes() -> None:
    """The sorted rows are kept between reads and follow every change."""
    a, b = _session("a", 1), _session("b", 2)
    cache = AgentSessions("x")
    cache.replace([a, b])
    assert [r.name for r in cache.rows()] == ["b", "a"]
    cache.put(replace(a, last_accessed=datetime(2026, 1, 1, 0, 3, tzinfo=UTC)))
    assert [r.name for r in cache.rows()] == ["a", "b"]
    cache.rows().clear()                       # a caller's copy, not the cache's
    assert [r.name for r in cache.rows()] == ["a", "b"]
    cache.remove(a.id)
    assert [r.name for r in cache.rows()] == ["b"]


def test_a_known_state_carries_no_known_at_and_an_unknown_one_does() -> None:
    """The agent stamps when it read a state at every list: only an unknown state's stamp is kept."""
    when = datetime(2026, 1, 1, tzinfo=UTC)
    known, unknown = _session("known"), replace(_session("unknown"), state_unknown=True)
    cache = AgentSessions("a")
    cache.replace([replace(known, state_known_at=when), replace(unknown, state_known_at=when)])
    assert sorted((r.name, r.known_at) for r in cache.rows()) == [("known", None), ("unknown", when)]

