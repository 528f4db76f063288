"""`convocate-host sessions log`: a session's event log from whichever agent holds it.

Without ``--agent`` every registered agent is asked which one holds the session (the same
concurrent survey as ``sessions``); then one tunnel to that agent reads the last entries
and, with ``follow``, streams new ones until the caller stops (Ctrl-C).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path

from common.client.calls import AgentCalls
from common.domain import SessionLogEntry, rfc3339
from common.errors import NotFoundError
from common.registry import AgentRecord
from common.tunnel import Tunnel, TunnelSettings
from hostctl.fleet import survey

__all__ = ["entry_dict", "find_agent", "read_log"]


def entry_dict(entry: SessionLogEntry) -> dict[str, object]:
    """One log entry for ``--json``."""
    return {"time": rfc3339(entry.time), "kind": entry.kind, "actor": entry.actor, "detail": entry.detail,
            "attributes": entry.attributes}


async def find_agent(records: list[AgentRecord], session_id: str, agent_id: str | None,
                     timeout: float) -> AgentRecord:
    """The agent that holds ``session_id`` (``agent_id`` when given, without asking).

    Raises:
        NotFoundError: no registered agent holds it (or ``agent_id`` is not registered).
    """
    if agent_id is not None:
        for record in records:
            if record.agent_id == agent_id:
                return record
        raise NotFoundError(f'agent "{agent_id}" is not registered: see `convocate-host agents`')
    reports = await survey(records, timeout=timeout, with_sessions=True)
    for report in reports:
        if any(s["id"] == session_id for s in report.sessions):
            return next(r for r in records if r.agent_id == report.agent_id)
    silent = [r.agent_id for r in reports if not r.reachable]
    hint = f" (agents that did not answer: {', '.join(silent)})" if silent else ""
    raise NotFoundError(f'session "{session_id}" is on no registered agent that answered{hint}')


async def read_log(record: AgentRecord, session_id: str, *, limit: int, follow: bool, timeout: float,
                   emit: Callable[[SessionLogEntry], None]) -> None:
    """Hand each entry of the session's log to ``emit``; with ``follow``, until cancelled."""
    with tempfile.TemporaryDirectory(prefix="cvh-") as d:
        settings = TunnelSettings(
            name=record.agent_id, host=record.address, port=record.port, client_key=record.client_key,
            known_hosts=record.known_hosts, local_socket=Path(d) / "g.sock", connect_timeout=timeout,
        )
        async with Tunnel(settings) as tunnel:
            await asyncio.wait_for(tunnel.wait_up(timeout), timeout)
            calls = AgentCalls(record.agent_id, lambda: tunnel.channel, call_timeout=timeout,
                               client_id="convocate-host")
            if not follow:
                for entry in await calls.session_log(session_id, limit):
                    emit(entry)
                return
            async for entry in calls.follow_session_log(session_id, limit):
                emit(entry)
