"""`convocate-host agents` / `sessions`: every registered agent asked at once, with deadlines.

One tunnel per agent, opened concurrently; an agent that does not answer within the
deadline is one row with its error, never a stall. For scripts: ``--json`` and exit
status 3 when some agent was unreachable (0 when all answered).
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from convocate.v1 import sessions_pb2, sessions_pb2_grpc

from common.errors import ConvocateError
from common.registry import AgentRecord
from common.tunnel import Tunnel, TunnelSettings

__all__ = ["AgentReport", "survey"]


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
    sessions: list[dict[str, object]] = field(default_factory=list)


def _session_dict(s: sessions_pb2.Session) -> dict[str, object]:
    return {
        "id": s.id, "name": s.name, "agent_id": s.agent_id, "running": s.running,
        "attached": s.attached, "viewers": s.viewer_count, "port": s.port,
        "protocol": s.protocol, "dns_name": s.dns_name,
        "created_at": s.created_at.ToJsonString() if s.HasField("created_at") else "",
        "last_accessed": s.last_accessed.ToJsonString() if s.HasField("last_accessed") else "",
    }


async def _ask(record: AgentRecord, sock_dir: Path, timeout: float, with_sessions: bool) -> AgentReport:
    report = AgentReport(record.agent_id, record.address, record.port)
    settings = TunnelSettings(
        name=record.agent_id, host=record.address, port=record.port, client_key=record.client_key,
        known_hosts=record.known_hosts, local_socket=sock_dir / record.agent_id[:40] / "g.sock",
        connect_timeout=timeout,
    )
    try:
        async with asyncio.timeout(timeout), Tunnel(settings) as tunnel:
            await tunnel.wait_up(timeout)
            stub = sessions_pb2_grpc.SessionsStub(tunnel.channel)
            ping = await stub.Ping(sessions_pb2.PingRequest(client_id="convocate-host"), timeout=timeout)
            report.reachable = True
            report.version, report.hostname = ping.version, ping.hostname
            report.current_image = ping.current_image
            report.status_link_up = ping.status_link.up if ping.status_link.known else None
            if with_sessions:
                listed = await stub.ListSessions(sessions_pb2.ListSessionsRequest(), timeout=timeout)
                report.sessions = [_session_dict(s) for s in listed.sessions]
    except TimeoutError:
        report.error = report.error or f"no answer within {timeout:g} s"
    except ConvocateError as e:
        report.error = str(e)
    except Exception as e:  # a gRPC error: say what the agent said
        details = getattr(e, "details", None)
        report.error = (details() if callable(details) else None) or f"{type(e).__name__}: {e}"
    if report.error:
        report.reachable = False
    return report


async def survey(records: list[AgentRecord], *, timeout: float = 10.0,
                 with_sessions: bool = False) -> list[AgentReport]:
    """Ask every agent concurrently; return one report per agent, in registry order."""
    with tempfile.TemporaryDirectory(prefix="cvh-") as d:
        return list(await asyncio.gather(*(_ask(r, Path(d), timeout, with_sessions) for r in records)))
