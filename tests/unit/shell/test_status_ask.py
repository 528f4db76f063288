"""AskAgents' rules for one agent's answer, on stand-in clients (the wire: tests/integration/hostctl).

Which failures are passed on as the agent's error (answered, then the whole deadline
went) and which send the caller to the agent itself (not answered), and that nothing is
left running when the caller goes away.
"""

from __future__ import annotations

import asyncio

import pytest
from convocate.v1 import sessions_pb2, status_pb2

from common.errors import ConvocateError, UnavailableError
from shell.status.ask import ANSWER_BYTES, AgentAsker, Asked


class _Agent:
    """A client whose Ping and List do what the test says."""

    def __init__(self, *, ping_fails: bool = False, list_fails_after: float | None = None,
                 list_hangs: bool = False, sessions: int = 1, name_bytes: int = 8) -> None:
        self.ping_fails, self.list_fails_after, self.list_hangs = ping_fails, list_fails_after, list_hangs
        self.sessions, self.name_bytes = sessions, name_bytes
        self.list_cancelled = False

    async def ping_message(self, timeout: float | None = None) -> sessions_pb2.PingResponse:
        if self.ping_fails:
            raise UnavailableError("agent a is unreachable: deadline exceeded")
        return sessions_pb2.PingResponse(agent_id="a", version="9.9")

    async def list_message(self, timeout: float | None = None) -> sessions_pb2.ListSessionsResponse:
        try:
            if self.list_hangs:
                await asyncio.Event().wait()
            if self.list_fails_after is not None:
                await asyncio.sleep(self.list_fails_after)
                raise ConvocateError("List failed")
        except asyncio.CancelledError:
            self.list_cancelled = True
            raise
        return sessions_pb2.ListSessionsResponse(sessions=[
            sessions_pb2.Session(id=f"{i:032x}", name="n" * self.name_bytes) for i in range(self.sessions)])


class _Clients:
    def __init__(self, agent: _Agent | None) -> None:
        self.agent = agent

    def client_for(self, agent_id: str, entry_written_ns: int) -> tuple[Asked | None, str]:
        return (self.agent, "") if self.agent is not None else (None, "no tunnel here")

    def agent_ids(self) -> list[str]:
        return ["a"] if self.agent is not None else []


async def _one(agent: _Agent | None, timeout: float = 5.0) -> status_pb2.AgentAnswer:
    asker = AgentAsker(_Clients(agent), call_timeout=10.0)
    request = status_pb2.AskAgentsRequest(agents=[status_pb2.AgentEntry(agent_id="a")], with_sessions=True,
                                          timeout_seconds=timeout)
    [answer] = [a async for a in asker.ask(request)]
    return answer


async def test_an_answer_carries_the_agents_ping_and_sessions_unconverted() -> None:
    answer = await _one(_Agent(sessions=3))
    assert (answer.answered, answer.error, answer.ping.version, len(answer.sessions)) == (True, "", "9.9", 3)


async def test_no_client_or_a_failed_ping_is_not_answered() -> None:
    """The caller asks the agent itself, told why."""
    assert (await _one(None)).error == "no tunnel here"
    answer = await _one(_Agent(ping_fails=True))
    assert not answer.answered
    assert "unreachable" in answer.error


async def test_a_list_failing_early_is_not_answered_one_using_the_deadline_is_the_agents_error() -> None:
    early = await _one(_Agent(list_fails_after=0.0))
    assert (early.answered, early.error) == (False, "List failed")
    late = await _one(_Agent(list_fails_after=0.3), timeout=0.2)
    assert (late.answered, late.error, len(late.sessions)) == (True, "List failed", 0)


async def test_an_answer_too_large_to_pass_on_is_not_answered() -> None:
    """Past what the caller's channel takes: the caller asks the agent itself (its own limit applies)."""
    answer = await _one(_Agent(sessions=5, name_bytes=ANSWER_BYTES // 4))
    assert not answer.answered
    assert "too large" in answer.error


async def test_a_caller_that_goes_away_leaves_no_call_running() -> None:
    agent = _Agent(list_hangs=True)
    asker = AgentAsker(_Clients(agent), call_timeout=10.0)
    request = status_pb2.AskAgentsRequest(agents=[status_pb2.AgentEntry(agent_id="a")], with_sessions=True)
    stream = asker.ask(request)
    pending = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.05)
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    await stream.aclose()
    assert agent.list_cancelled


async def test_a_request_naming_no_agent_asks_every_agent_it_keeps_a_tunnel_to() -> None:
    """What grpcurl sends with no body: every agent, under whichever entry its tunnel came from."""
    asker = AgentAsker(_Clients(_Agent(sessions=2)), call_timeout=10.0)
    answers = [a async for a in asker.ask(status_pb2.AskAgentsRequest(with_sessions=True))]
    assert [(a.agent_id, a.answered, len(a.sessions)) for a in answers] == [("a", True, 2)]
    none = AgentAsker(_Clients(None), call_timeout=10.0)
    assert [a async for a in none.ask(status_pb2.AskAgentsRequest())] == []
