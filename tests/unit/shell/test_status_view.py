"""The status service's merged view: staleness against the budget, notices, watchers."""

from __future__ import annotations

from convocate.v1 import link_pb2, status_pb2

from shell.status.link_notices import LinkFacts, link_notices
from shell.status.view import StatusView


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _beat(agent_id: str = "a", **attrs: str) -> status_pb2.Event:
    return status_pb2.Event(type="agent.heartbeat", agent_id=agent_id, attributes=attrs)


def test_heartbeat_goes_stale_after_the_budget_and_fresh_again() -> None:
    """An agent is stale once no heartbeat arrived within the budget, and fresh at the next one."""
    clock = Clock()
    view = StatusView(heartbeat_budget=1.25, clock=clock)
    view.stream_opened("a")
    view.apply_event(_beat(version="9", hostname="h"))
    h = view.health("a")
    assert h is not None
    assert (h.connected, h.heartbeat_stale, h.version, h.hostname) == (True, False, "9", "h")
    assert h.status_link.up
    clock.now += 1.3
    view.check_staleness()
    h = view.health("a")
    assert h is not None
    assert h.heartbeat_stale
    assert not h.status_link.up
    assert h.notices == ["agent→shell status stream down: no heartbeat for 1.3 s (budget 1.25 s)"]
    view.apply_event(_beat())
    h = view.health("a")
    assert h is not None
    assert not h.heartbeat_stale
    assert h.notices == []


def test_unknown_events_are_kept_and_session_events_indexed() -> None:
    """Unknown event types are accepted and forwarded; session events are kept per session."""
    view = StatusView(heartbeat_budget=10)
    watcher = view.subscribe()
    view.stream_opened("a")
    view.apply_event(status_pb2.Event(type="something.new", agent_id="a", session_id="s1"))
    h = view.health("a")
    assert h is not None
    assert [e.type for e in h.recent_events] == ["something.new"]
    assert h.last_session_events["s1"].type == "something.new"
    assert h.last_session_events["s1"].HasField("time")
    assert watcher is not None


async def test_watchers_get_a_snapshot_first_and_resync_after_overflow() -> None:
    """A watcher starts with a snapshot and, when it falls too far behind, gets a fresh snapshot."""
    view = StatusView(heartbeat_budget=10)
    w = view.subscribe()
    first = await w.next()
    assert first.WhichOneof("update") == "snapshot"
    view.stream_opened("a")
    update = await w.next()
    assert update.WhichOneof("update") == "agent"
    for i in range(3000):
        view.apply_event(_beat(seq=str(i)))
    resync = await w.next()
    assert resync.WhichOneof("update") == "snapshot"
    assert resync.snapshot.agents[0].events_received == 3000


def test_link_reports_and_agent_views_make_direction_notices() -> None:
    """A local client's report of shell→agent and the agent's own status view name the broken side."""
    view = StatusView(heartbeat_budget=10)
    view.stream_opened("a")
    view.apply_event(_beat())
    down = link_pb2.LinkState(known=True, up=False, last_error="refused our key")
    view.report_link(status_pb2.LinkReport(agent_id="a", control_link=down))
    h = view.health("a")
    assert h is not None
    assert h.notices == ["shell→agent link down: refused our key (agent→shell status stream alive)"]
    view.stream_closed("a", "connection lost")
    up = link_pb2.LinkState(known=True, up=True)
    agent_view = link_pb2.LinkState(known=True, up=False, last_error="connection refused")
    view.report_link(status_pb2.LinkReport(agent_id="a", control_link=up, agent_status_link=agent_view))
    h = view.health("a")
    assert h is not None
    assert h.notices == [
        "agent→shell status stream down: agent says: connection refused (shell→agent link alive)"
    ]


def test_notices_for_both_ways_down_missing_pings_and_drops() -> None:
    """Both directions down, pings missing as told by the agent, and dropped events each get a notice."""
    both = LinkFacts(
        status_alive=False,
        status_error="closed",
        control_known=True,
        control_up=False,
        control_error="timeout",
    )
    assert link_notices(both) == ["agent unreachable both ways: shell→agent: timeout; agent→shell: closed"]
    pings = LinkFacts(
        status_alive=True,
        status_error="",
        control_known=False,
        control_up=False,
        control_error="",
        agent_missing_pings="no Ping for 80 s",
        events_dropped=3,
    )
    assert link_notices(pings) == [
        "shell→agent heartbeats missing: no Ping for 80 s (reported over the agent→shell status stream)",
        "agent dropped 3 status event(s): its queue was full",
    ]
    fine = LinkFacts(
        status_alive=True, status_error="", control_known=True, control_up=True, control_error=""
    )
    assert link_notices(fine) == []


def test_link_reports_expire_and_any_fresh_reporter_seeing_down_wins() -> None:
    """Reports older than the TTL stop counting; among fresh ones a down report wins over an up one."""
    clock = Clock()
    view = StatusView(heartbeat_budget=1.0, clock=clock, report_ttl=2.0)
    view.stream_opened("a")
    view.apply_event(_beat(interval="0.4"))
    up = link_pb2.LinkState(known=True, up=True)
    down = link_pb2.LinkState(known=True, up=False, last_error="timeout")
    view.report_link(status_pb2.LinkReport(agent_id="a", reporter="c1", control_link=up))
    view.report_link(status_pb2.LinkReport(agent_id="a", reporter="c2", control_link=down))
    h = view.health("a")
    assert h is not None
    assert (h.control_link.up, h.control_link.last_error) == (False, "timeout")
    clock.now += 0.9
    view.apply_event(_beat())
    view.report_link(status_pb2.LinkReport(agent_id="a", reporter="c1", control_link=up))
    clock.now += 1.5  # c2's report is now 2.4 s old, c1's 1.5 s
    view.apply_event(_beat())
    h = view.health("a")
    assert h is not None
    assert h.control_link.up
    clock.now += 1.0
    view.check_staleness()
    h = view.health("a")
    assert h is not None
    assert not h.control_link.known


def test_an_agent_with_a_slower_heartbeat_gets_its_own_budget() -> None:
    """An agent announcing a 2 s interval is not stale after 1.5 s even if the service budget is 1 s."""
    clock = Clock()
    view = StatusView(heartbeat_budget=1.0, clock=clock)
    view.stream_opened("a")
    view.apply_event(_beat(interval="2"))
    clock.now += 1.5
    view.check_staleness()
    h = view.health("a")
    assert h is not None
    assert not h.heartbeat_stale
    clock.now += 4.0
    view.check_staleness()
    h = view.health("a")
    assert h is not None
    assert h.heartbeat_stale


def test_a_withdrawn_report_stops_counting_at_once() -> None:
    """A reporter that withdraws (known=False, a console exiting) no longer vouches for either state."""
    view = StatusView(heartbeat_budget=10)
    view.stream_opened("a")
    view.apply_event(_beat())
    down = link_pb2.LinkState(known=True, up=False, last_error="closed")
    view.report_link(status_pb2.LinkReport(agent_id="a", reporter="console:1", control_link=down))
    h = view.health("a")
    assert h is not None
    assert h.notices
    withdraw = link_pb2.LinkState(known=False)
    view.report_link(status_pb2.LinkReport(agent_id="a", reporter="console:1", control_link=withdraw))
    h = view.health("a")
    assert h is not None
    assert not h.control_link.known
    assert h.notices == []


def test_the_dropped_events_notice_fades_while_the_count_stays() -> None:
    """A queue overflow shows a notice while recent; the cumulative count stays in the health."""
    clock = Clock()
    view = StatusView(heartbeat_budget=1.0, clock=clock, report_ttl=2.0)
    view.stream_opened("a")
    view.apply_event(_beat(dropped="4"))
    h = view.health("a")
    assert h is not None
    assert h.notices == ["agent dropped 4 status event(s): its queue was full"]
    for _ in range(5):
        clock.now += 0.5
        view.apply_event(_beat(dropped="4"))
    h = view.health("a")
    assert h is not None
    assert list(h.notices) == []
    assert h.events_dropped == 4
