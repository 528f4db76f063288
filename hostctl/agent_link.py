"""One agent's Sessions calls from convocate-host: the console's client through an SSH tunnel."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from common.client.calls import AgentCalls
from common.registry import AgentRecord
from common.tunnel import Tunnel, TunnelSettings

__all__ = ["agent_calls"]


@contextlib.asynccontextmanager
async def agent_calls(record: AgentRecord, timeout: float = 15.0) -> AsyncIterator[AgentCalls]:
    """A tunnel to ``record``'s agent (pinned host key) and the calls on it, for the block."""
    with tempfile.TemporaryDirectory(prefix="cvh-") as d:
        settings = TunnelSettings(
            name=record.agent_id, host=record.address, port=record.port, client_key=record.client_key,
            known_hosts=record.known_hosts, local_socket=Path(d) / "g.sock", connect_timeout=timeout,
        )
        async with Tunnel(settings) as tunnel:
            await tunnel.wait_up(timeout)
            yield AgentCalls(record.agent_id, lambda: tunnel.channel, call_timeout=timeout,
                             client_id="convocate-host")
