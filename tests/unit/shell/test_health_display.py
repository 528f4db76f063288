"""Health on the shell side: the shared view's host health and alarms, the console's marks.

Against a real agent and a private Docker Engine: tests/integration/agent/test_engine_health.py.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from convocate.v1 import status_pb2

from common.domain import HostHealth, host_health_attributes, last_known
from shell.console.actions import agent_lines
from shell.console.layout import StatusLine, title_text
from shell.console.state import ConsoleState
from shell.console.table import columns_for, format_row
from shell.fleet.model import AgentRow
from shell.status.view import StatusView
from tests.fakes.fake_router import FakeRouter, make_row

DOWN = HostHealth(engine_up=False, engine_error="the Docker Engine does not answer: start it with "
                  "`systemctl start docker`")
LOW = HostHealth(engine_up=True, engine_version="20.10.24", disk_low=True, disk_free_bytes=1024**2,
                 disk_total_bytes=1024**3)
FINE = HostHealth(engine_up=True, engine_version="20.10.24", disk_free_bytes=1024**3,
                  disk_total_bytes=2 * 1024**3)


def _line(line: StatusLine) -> str:
    return "".join(f[1] for f in line())


def test_view_carries_host_health_and_turns_problems_into_notices() -> None:
    """Heartbeat attributes fill AgentHealth.host; an engine down is a notice until it is back up."""
    view = StatusView(heartbeat_budget=10)
    watcher = view.subscribe()
    view.stream_opened("a")
    view.apply_event(status_pb2.Event(type="agent.heartbeat", agent_id="a",
                                      attributes=host_health_attributes(FINE)))
    h = view.health("a")
    assert h is not None
    assert h.host.engine_up
    assert h.host.engine_version == "20.10.24"
    assert h.notices == []
    view.apply_event(status_pb2.Event(type="agent.health", agent_id="a",
                                      attributes=host_health_attributes(DOWN)))
    h = view.health("a")
    assert h is not None
    assert not h.host.engine_up
    assert h.notices == [DOWN.engine_error]
    assert watcher is not None


async def test_mass_death_alarm_is_a_notice_at_once_and_goes_after_a_while() -> None:
    """The alarm comes first among the notices, as an agent update the moment it arrives."""
    now = [100.0]
    view = StatusView(heartbeat_budget=10, clock=lambda: now[0])
    view.stream_opened("a")
    watcher = view.subscribe()
    assert (await watcher.next()).WhichOneof("update") == "snapshot"
    detail = '3 sessions stopped unasked within 60 s: "x" (exit 137), "y" (exit 137), "z" (exit 1)'
    view.apply_event(status_pb2.Event(type="sessions.mass_death", agent_id="a",
                                      attributes={"detail": detail, "count": "3"}))
    event, update = await watcher.next(), await watcher.next()
    assert event.event.type == "sessions.mass_death"
    assert update.agent.notices[0] == detail
    now[0] += 601
    h = view.health("a")
    assert h is not None
    assert detail not in h.notices


def test_console_marks_engine_down_and_disk_low_in_title_rows_and_settings() -> None:
    """Title counts them, rows of such an agent are marked, Settings says what is wrong."""
    agents = [AgentRow("a", "10.0.0.1", True, health=DOWN), AgentRow("b", "10.0.0.2", True, health=LOW),
              AgentRow("c", "10.0.0.3", True, health=FINE), AgentRow("d", "10.0.0.4", False)]
    rows = [make_row("on-a", "a", running=True), make_row("on-c", "c", running=True)]
    state = ConsoleState(FakeRouter(agents, rows))
    title = title_text(state, 138, now=0)
    assert "agents 3 up, 1 DOWN, 1 engine down, 1 disk low" in title
    table = state.table()
    assert [t.agent_trouble for t in table[:2]] == [True, False]
    assert agent_lines(agents[0])[2] == f"    ! {DOWN.engine_error}"
    assert "disk 1.0 MiB free (LOW)" in agent_lines(agents[1])[1]
    assert agent_lines(agents[2])[1:] == ["    engine 20.10.24, disk 1.0 GiB free, mem 0 B free, load 0.00"]
    assert _line(StatusLine(state)).startswith(" ! a: the Docker Engine does not answer: start it")


def test_unknown_sessions_show_a_question_mark_and_when_they_were_last_known() -> None:
    """Unknown is "?" in the table; the status line says how old the last known state is."""
    when = datetime.now(UTC) - timedelta(minutes=2, seconds=5)
    row = replace(make_row("lost", "a", running=True), unknown=True, known_at=when)
    state = ConsoleState(FakeRouter([AgentRow("a", "10.0.0.1", True, health=FINE)], [row]))
    [t] = state.table()
    assert format_row(t, columns_for(110)).endswith("?")
    assert _line(StatusLine(state)) == ' session "lost": state unknown, last known 2m ago'
    assert last_known(None) == "never known"
    assert last_known(when, when + timedelta(hours=3)) == "last known 3h ago"


def test_a_new_notice_replaces_a_fresh_message_at_once() -> None:
    """An operator's message gives way to a notice that arrives after it (the alarm is not held back)."""
    router = FakeRouter([AgentRow("a", "10.0.0.1", True)], [])
    state = ConsoleState(router)
    line = StatusLine(state)
    state.message = "Created session"
    assert "Created session" in _line(line)
    router.set_agents([AgentRow("a", "10.0.0.1", True, notices=("3 sessions stopped unasked",))])
    assert "! a: 3 sessions stopped unasked" in _line(line)


def test_router_takes_the_more_recent_health_report() -> None:
    """Ping's report and the shared view's: the later check wins (the view hears of a change at once)."""
    from shell.fleet.router import _fresher  # noqa: PLC0415 - a private helper, tested alone

    old = replace(FINE, checked_at=datetime(2026, 1, 1, tzinfo=UTC))
    new = replace(DOWN, checked_at=datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC))
    assert _fresher(old, new) is new
    assert _fresher(new, old) is new
    assert _fresher(None, old) is old
    assert _fresher(None, None) is None
