"""`convocate-host agents` / `sessions`: every registered agent asked at once, with deadlines.

One tunnel per agent, opened concurrently; an agent that does not answer within the
deadline is one row with its error, never a stall, and one whose connection is
definitively failing (wrong host key, our key refused, nothing listening) is given up
early (:mod:`hostctl.give_up`). For scripts: ``--json`` and exit
status 3 when some agent was unreachable or its Docker Engine is down (0 when all
answered with a working engine). A session's ``state`` is running, stopped or unknown
(its agent's engine does not answer), with when it was last known; its ``activity`` is what
its CLI does (working, needs_input with a reason, idle, stopped, unknown) and since when.

Given the status service's standing tunnels (:mod:`hostctl.shared_tunnel`), every agent
is asked through them first, in one AskAgents call to the service (:mod:`shell.status.ask`;
through each tunnel's socket instead when the service's own socket is not usable or it
does not answer the call): no handshake, and no asyncssh loaded when every agent answers
there. An agent whose shared socket is unusable, or does not answer Ping
there within :data:`hostctl.shared_tunnel.PING_DEADLINE` (or any call there fails), is
asked over a connection of the command's own, exactly as without sharing. Each report
says how the agent was reached (``via``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from common.errors import ConvocateError
from hostctl.shared_tunnel import VIA_DIRECT, VIA_SHARED

if TYPE_CHECKING:
    import grpc

    from common.client.calls import AgentCalls
    from common.domain import AgentInfo, HostHealth, Session
    from common.registry import AgentRecord
    from hostctl.shared_tunnel import SharedTunnels

# asyncio, the domain types and gRPC are loaded by the first agent asked: a registry with no
# agents is answered without them (issue 13: start-up). SSH (asyncssh, cryptography) is loaded
# by the first agent asked over a connection of the command's own: not at all when every agent
# answers through the status service's tunnels. A command line loads what it will need up
# front, with the garbage collector paused (survey_now).
TRANSPORT = ("asyncio", "common.client.calls", "common.domain")
SSH_TRANSPORT = ("common.tunnel", "hostctl.give_up")
STATUS_CLIENT = "shell.fleet.status_client"   # AskAgents, when the status service's socket is usable

__all__ = ["SSH_TRANSPORT", "TRANSPORT", "AgentReport", "survey", "survey_now"]


@dataclass
class AgentReport:
    """What one agent answered (or why it did not)."""

    agent_id: str
    address: str
    port: int
    reachable: bool = False
    error: str = ""
    version: str = ""
    hostname: str = ""
    current_image: str = ""
    status_link_up: bool | None = None
    health: dict[str, object] | None = None     # engine and host (None: the agent did not say)
    sessions: list[dict[str, object]] = field(default_factory=list)
    via: str = VIA_DIRECT   # how it was reached: VIA_SHARED (the status service's tunnel) or VIA_DIRECT

    @property
    def healthy(self) -> bool:
        """Reachable, and its engine answers (as far as it says)."""
        return self.reachable and (self.health is None or bool(self.health["engine_up"]))


def _health_dict(h: HostHealth) -> dict[str, object]:
    from common.domain import rfc3339  # noqa: PLC0415 - see the note on imports above
    return {
        "engine_up": h.engine_up, "engine_version": h.engine_version, "engine_error": h.engine_error,
        "disk_free_bytes": h.disk_free_bytes, "disk_total_bytes": h.disk_total_bytes, "disk_low": h.disk_low,
        "mem_available_bytes": h.mem_available_bytes, "mem_total_bytes": h.mem_total_bytes,
        "load1": h.load1, "cpus": h.cpus, "checked_at": rfc3339(h.checked_at),
    }


def _state(s: Session) -> str:
    if s.state_unknown:
        return "unknown"
    return "running" if s.running else "stopped"


def _session_dict(s: Session) -> dict[str, object]:
    from common.domain import rfc3339  # noqa: PLC0415 - see the note on imports above
    return {
        "id": s.id, "name": s.name, "agent_id": s.agent_id, "running": s.running,
        "attached": s.attached, "viewers": s.viewer_count, "port": s.port,
        "protocol": s.protocol, "dns_name": s.dns_name,
        "created_at": rfc3339(s.created_at), "last_accessed": rfc3339(s.last_accessed),
        "state": _state(s), "state_known_at": rfc3339(s.state_known_at),
        "activity": {"state": s.activity.state.value, "reason": s.activity.reason.value,
                     "since": rfc3339(s.activity.since), "message": s.activity.message},
    }


def _same_agent(report: AgentReport, info: AgentInfo) -> None:
    if info.agent_id != report.agent_id:
        raise ConvocateError(f"the agent answered as {info.agent_id!r}, not {report.agent_id!r}")


def _fill(report: AgentReport, info: AgentInfo, sessions: list[Session] | None) -> None:
    """What the agent said into ``report``."""
    report.version, report.hostname = info.version, info.hostname
    report.current_image = info.current_image
    link = info.status_link
    report.status_link_up = link.up if link is not None and link.known else None
    report.health = _health_dict(info.health) if info.health is not None else None
    if sessions is not None:
        report.sessions = [_session_dict(s) for s in sessions]
    report.reachable = True


async def _answers(report: AgentReport, calls: AgentCalls, with_sessions: bool, *,
                   same_id: bool = False) -> None:
    """Ping and (with_sessions) List on ``calls`` into ``report``; a failed call raises as it failed.

    ``same_id``: an agent that answers Ping under another id than the report's is an error.
    """
    import asyncio  # noqa: PLC0415 - see the note on imports above

    # Ping and List in flight together: one round trip less per agent.
    listing = asyncio.ensure_future(calls.list_sessions()) if with_sessions else None
    try:
        ping = await calls.ping()
        if same_id:
            _same_agent(report, ping)
    except BaseException:
        if listing is not None:
            listing.cancel()
            await asyncio.gather(listing, return_exceptions=True)
        raise
    _fill(report, ping, await listing if listing is not None else None)


async def _ask_shared(record: AgentRecord, socket: Path, timeout: float,
                      with_sessions: bool) -> AgentReport | None:
    """The agent's answers through the status service's tunnel ``socket``; None: ask it directly."""
    import asyncio  # noqa: PLC0415 - see the note on imports above

    from common.client.calls import AgentCalls  # noqa: PLC0415 - see the note on imports above
    from hostctl.shared_tunnel import PING_DEADLINE, log  # noqa: PLC0415

    report = AgentReport(record.agent_id, record.address, record.port, via=VIA_SHARED)
    channel = _channel(socket)
    started = asyncio.get_running_loop().time()
    try:
        calls = AgentCalls(record.agent_id, lambda: channel, call_timeout=timeout,
                           ping_timeout=min(PING_DEADLINE, timeout), client_id="convocate-host")
        await _answers(report, calls, with_sessions, same_id=True)
    except ConvocateError as e:   # refused, UNAVAILABLE, deadline, another agent, a failed List
        if asyncio.get_running_loop().time() - started >= timeout:
            # The agent answered Ping here, then had the whole deadline for List: asked again
            # directly it would only take a second deadline. Its error, as the direct path says it.
            report.error, report.reachable, report.sessions = str(e), False, []
            return report
        log.debug("status service tunnel did not answer: asking directly", agent=record.agent_id,
                  error=str(e))
        return None
    finally:
        await channel.close(grace=None)
    return report


def _channel(socket: Path) -> grpc.aio.Channel:
    import grpc  # noqa: PLC0415 - see the note on imports above

    from common.grpc_options import CLIENT_OPTIONS  # noqa: PLC0415
    return grpc.aio.insecure_channel(f"unix:{socket}", options=CLIENT_OPTIONS)


async def _ask_direct(record: AgentRecord, local_socket: Path, timeout: float,
                      with_sessions: bool) -> AgentReport:
    import asyncio  # noqa: PLC0415 - see the note on imports above

    from common.client.calls import AgentCalls  # noqa: PLC0415
    from common.startup_gc import paused_while_loading  # noqa: PLC0415

    with paused_while_loading():   # the SSH transport: loaded by the first agent asked directly
        from common.tunnel import Tunnel, TunnelSettings  # noqa: PLC0415
        from hostctl.give_up import GiveUpPolicy, refused_grace, wait_up_or_give_up  # noqa: PLC0415

    report = AgentReport(record.agent_id, record.address, record.port)
    settings = TunnelSettings(
        name=record.agent_id, host=record.address, port=record.port, client_key=record.client_key,
        known_hosts=record.known_hosts, local_socket=local_socket,
        connect_timeout=timeout,
    )
    tunnel: Tunnel | None = None
    try:
        tunnel = Tunnel(settings)
        async with asyncio.timeout(timeout), tunnel:
            await wait_up_or_give_up(tunnel, timeout, GiveUpPolicy(refused_grace(timeout)))
            calls = AgentCalls(record.agent_id, lambda: tunnel.channel, call_timeout=timeout,
                               client_id="convocate-host")
            await _answers(report, calls, with_sessions)
    except TimeoutError:
        report.error = report.error or f"no answer within {timeout:g} s"
        if tunnel is not None and tunnel.connects == 0:   # never up: why the attempts failed
            report.error += f": {tunnel.last_error}"
    except ConvocateError as e:
        report.error = str(e)
    if report.error:
        report.reachable = False
    return report


async def _ask(record: AgentRecord, local_socket: Path, timeout: float, with_sessions: bool,
               shared: SharedTunnels | None) -> AgentReport:
    socket = shared.socket_for(record) if shared is not None else None
    if socket is not None:
        report = await _ask_shared(record, socket, timeout, with_sessions)
        if report is not None:
            return report
    return await _ask_direct(record, local_socket, timeout, with_sessions)


async def _ask_all(records: list[AgentRecord], sockets: list[Path], timeout: float, with_sessions: bool,
                   shared: SharedTunnels | None) -> list[AgentReport]:
    """Every agent asked at once, through the status service, its tunnel socket or directly."""
    import asyncio  # noqa: PLC0415 - see the note on imports above

    return list(await asyncio.gather(*(_ask(r, s, timeout, with_sessions, shared)
                                       for r, s in zip(records, sockets, strict=True))))


class _ThroughService:
    """One AskAgents call for every agent; each agent it does not answer for is asked directly
    as soon as that is known (the call failing as a whole: each agent as without it)."""

    def __init__(self, records: list[AgentRecord], sockets: list[Path], timeout: float, with_sessions: bool,
                 shared: SharedTunnels) -> None:
        import asyncio  # noqa: PLC0415 - see the note on imports above

        self.records, self.sockets = records, sockets
        self.timeout, self.with_sessions = timeout, with_sessions
        self.shared = shared
        self.index = {r.agent_id: i for i, r in enumerate(records)}
        self.reports: list[AgentReport | None] = [None] * len(records)
        self.others: dict[int, asyncio.Task[AgentReport]] = {}

    def _ask_directly(self, i: int) -> None:
        import asyncio  # noqa: PLC0415 - see the note on imports above

        if i not in self.others and self.reports[i] is None:
            self.others[i] = asyncio.create_task(
                _ask_direct(self.records[i], self.sockets[i], self.timeout, self.with_sessions))

    async def run(self, status_socket: Path) -> list[AgentReport]:
        from common.tasks import cancel_and_wait  # noqa: PLC0415

        try:
            await self._ask_service(status_socket)
            for i, r in enumerate(self.reports):   # a stream that ended without its answer
                if r is None:
                    self._ask_directly(i)
            for i, future in self.others.items():
                self.reports[i] = await future
        finally:
            await cancel_and_wait(self.others.values())   # cancelled: none is left running
        return [r for r in self.reports if r is not None]

    async def _ask_service(self, status_socket: Path) -> None:
        from common.registry import entry_written_ns  # noqa: PLC0415
        from hostctl.shared_tunnel import log  # noqa: PLC0415
        from shell.fleet.status_client import ask_agents  # noqa: PLC0415

        entries: dict[str, int] = {}
        for i, r in enumerate(self.records):
            try:
                entries[r.agent_id] = entry_written_ns(self.shared.registry, r)
            except OSError as e:   # mid-rewrite or gone: its own connection says which
                log.debug("registry entry unreadable: asking directly", agent=r.agent_id, error=e.strerror)
                self._ask_directly(i)
        try:
            async for a in ask_agents(status_socket, entries, with_sessions=self.with_sessions,
                                      timeout=self.timeout):
                i = self.index[a.agent_id]
                if self.reports[i] is not None or i in self.others:
                    continue
                record = self.records[i]
                report = AgentReport(a.agent_id, record.address, record.port, via=VIA_SHARED)
                try:
                    if not a.answered or a.info is None:
                        raise ConvocateError(a.error or "no answer")
                    _same_agent(report, a.info)
                    _fill(report, a.info, a.sessions if self.with_sessions else None)
                except ConvocateError as e:
                    log.debug("the status service did not reach it: asking directly",
                              agent=a.agent_id, error=str(e))
                    self._ask_directly(i)
                    continue
                if a.error:   # answered Ping, then used the whole deadline: its error, not a second one
                    report.error, report.reachable, report.sessions = a.error, False, []
                self.reports[i] = report
        except ConvocateError as e:
            log.debug("status service did not answer AskAgents: asking each agent as before", error=str(e))
            rest = [i for i, r in enumerate(self.reports) if r is None and i not in self.others]
            late = await _ask_all([self.records[i] for i in rest], [self.sockets[i] for i in rest],
                                  self.timeout, self.with_sessions, self.shared)
            for i, report in zip(rest, late, strict=True):
                self.reports[i] = report


async def survey(records: list[AgentRecord], *, timeout: float = 10.0, with_sessions: bool = False,
                 shared: SharedTunnels | None = None) -> list[AgentReport]:
    """Ask every agent concurrently; return one report per agent, in registry order.

    With ``shared``, the status service is asked for every agent at once (AskAgents) when
    its socket is usable, else each agent through the service's tunnel socket; an agent
    not answered there is asked over a connection of the command's own.
    """
    import tempfile  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="cvh-") as d:
        # One private directory for every agent's socket (not one directory each to make and remove).
        sockets = [Path(d) / f"{i}.sock" for i in range(len(records))]
        if shared is not None and shared.status_socket is not None:
            return await _ThroughService(records, sockets, timeout, with_sessions, shared).run(
                shared.status_socket)
        return await _ask_all(records, sockets, timeout, with_sessions, shared)


def survey_now(records: list[AgentRecord], *, timeout: float = 10.0, with_sessions: bool = False,
               registry: Path | None = None) -> list[AgentReport]:
    """:func:`survey` on an event loop of its own, for a command line; no agents, no loop.

    ``registry``: share the status service's tunnels to the agents of that registry when it
    has usable ones (:func:`hostctl.shared_tunnel.find_shared_tunnels`); None: every agent
    over a connection of the command's own.
    """
    if not records:
        return []
    import asyncio  # noqa: PLC0415 - see the note on imports above
    import importlib  # noqa: PLC0415

    from common.open_files import raise_open_files_limit  # noqa: PLC0415
    from common.startup_gc import paused_while_loading  # noqa: PLC0415

    raise_open_files_limit()   # a socket or more per agent, all at once
    shared = None
    if registry is not None:
        from hostctl.shared_tunnel import find_shared_tunnels  # noqa: PLC0415
        shared = find_shared_tunnels(registry)
    service = (STATUS_CLIENT,) if shared is not None and shared.status_socket is not None else ()
    with paused_while_loading():
        for name in (*TRANSPORT, *service) if shared is not None else (*TRANSPORT, *SSH_TRANSPORT):
            importlib.import_module(name)
    return asyncio.run(survey(records, timeout=timeout, with_sessions=with_sessions, shared=shared))
