"""`convocate-host sessions log`: a session's event log from whichever agent holds it.

Without ``--agent`` every registered agent is asked which one holds the session (the same
concurrent survey as ``sessions``); then one tunnel to that agent reads the last entries
and, with ``follow``, streams new ones until the caller stops (Ctrl-C). Given the status
service's standing tunnels (:mod:`hostctl.shared_tunnel`), both go through them where they
answer, as ``sessions`` does: the survey agent by agent, the log when the agent answers
Ping there first (once entries flow, a lost tunnel ends the command as a lost connection of
its own would).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from common.client.calls import AgentCalls
from common.domain import SessionLogEntry, rfc3339
from common.errors import NotFoundError, UnavailableError
from common.registry import AgentRecord
from hostctl.fleet import survey
from hostctl.shared_tunnel import PING_DEADLINE, VIA_DIRECT, VIA_SHARED, log

if TYPE_CHECKING:
    from hostctl.shared_tunnel import SharedTunnels

__all__ = ["entry_dict", "find_agent", "read_log"]


def entry_dict(entry: SessionLogEntry) -> dict[str, object]:
    """One log entry for ``--json``."""
    return {"time": rfc3339(entry.time), "kind": entry.kind, "actor": entry.actor, "detail": entry.detail,
            "attributes": entry.attributes}


async def find_agent(records: list[AgentRecord], session_id: str, agent_id: str | None,
                     timeout: float, shared: SharedTunnels | None = None) -> AgentRecord:
    """The agent that holds ``session_id`` (``agent_id`` when given, without asking).

    Raises:
        NotFoundError: no registered agent holds it (or ``agent_id`` is not registered).
    """
    if agent_id is not None:
        for record in records:
            if record.agent_id == agent_id:
                return record
        raise NotFoundError(f'agent "{agent_id}" is not registered: see `convocate-host agents`')
    reports = await survey(records, timeout=timeout, with_sessions=True, shared=shared)
    for report in reports:
        if any(s["id"] == session_id for s in report.sessions):
            return next(r for r in records if r.agent_id == report.agent_id)
    silent = [r.agent_id for r in reports if not r.reachable]
    hint = f" (agents that did not answer: {', '.join(silent)})" if silent else ""
    raise NotFoundError(f'session "{session_id}" is on no registered agent that answered{hint}')


async def read_log(record: AgentRecord, session_id: str, *, limit: int, follow: bool, timeout: float,
                   emit: Callable[[SessionLogEntry], None], shared: SharedTunnels | None = None) -> str:
    """Hand each entry of the session's log to ``emit``; with ``follow``, until cancelled.

    Returns:
        How the agent was reached: through the status service's tunnel or directly.
    """
    socket = shared.socket_for(record) if shared is not None else None
    if socket is not None and await _read_shared(record, socket, session_id, limit, follow, timeout, emit):
        return VIA_SHARED
    await _read_direct(record, session_id, limit=limit, follow=follow, timeout=timeout, emit=emit)
    return VIA_DIRECT


async def _read_shared(record: AgentRecord, socket: Path, session_id: str, limit: int, follow: bool,
                       timeout: float, emit: Callable[[SessionLogEntry], None]) -> bool:
    """The log through the status service's tunnel; False (nothing emitted): ask directly.

    The agent must answer Ping there first, under its id; a call that then finds the tunnel
    gone before any entry, sooner than its deadline, also means asking directly.
    """
    import grpc  # noqa: PLC0415 - loaded with AgentCalls already; named here for the channel

    from common.grpc_options import CLIENT_OPTIONS  # noqa: PLC0415

    emitted = 0

    def counted(entry: SessionLogEntry) -> None:
        nonlocal emitted
        emitted += 1
        emit(entry)

    started = asyncio.get_running_loop().time()
    async with grpc.aio.insecure_channel(f"unix:{socket}", options=CLIENT_OPTIONS) as channel:
        calls = AgentCalls(record.agent_id, lambda: channel, call_timeout=timeout,
                           ping_timeout=min(PING_DEADLINE, timeout), client_id="convocate-host")
        try:
            if (await calls.ping()).agent_id != record.agent_id:
                raise UnavailableError("the agent answered under another id")
            await _read(calls, session_id, limit, follow, counted)
        except UnavailableError as e:
            if emitted or asyncio.get_running_loop().time() - started >= timeout:
                raise
            log.debug("status service tunnel did not answer: asking directly", agent=record.agent_id,
                      error=str(e))
            return False
    return True


async def _read_direct(record: AgentRecord, session_id: str, *, limit: int, follow: bool, timeout: float,
                       emit: Callable[[SessionLogEntry], None]) -> None:
    from common.tunnel import Tunnel, TunnelSettings  # noqa: PLC0415 - SSH only when asked directly

    with tempfile.TemporaryDirectory(prefix="cvh-") as d:
        settings = TunnelSettings(
            name=record.agent_id, host=record.address, port=record.port, client_key=record.client_key,
            known_hosts=record.known_hosts, local_socket=Path(d) / "g.sock", connect_timeout=timeout,
        )
        async with Tunnel(settings) as tunnel:
            await asyncio.wait_for(tunnel.wait_up(timeout), timeout)
            calls = AgentCalls(record.agent_id, lambda: tunnel.channel, call_timeout=timeout,
                               client_id="convocate-host")
            await _read(calls, session_id, limit, follow, emit)


async def _read(calls: AgentCalls, session_id: str, limit: int, follow: bool,
                emit: Callable[[SessionLogEntry], None]) -> None:
    if not follow:
        for entry in await calls.session_log(session_id, limit):
            emit(entry)
        return
    async for entry in calls.follow_session_log(session_id, limit):
        emit(entry)
