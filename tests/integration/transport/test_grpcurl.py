"""The real grpcurl binary lists services and calls Ping through the forwarded socket."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from common.tunnel import Tunnel
from tests.integration.transport.conftest import Stack
from tests.support.env import require_tool


def _grpcurl() -> str:
    beside = Path(sys.executable).parent / "grpcurl"
    return str(beside) if beside.exists() else require_tool("grpcurl")


async def _run(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        _grpcurl(), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_grpcurl_lists_and_pings_through_tunnel(stack: Stack) -> None:
    """grpcurl, using reflection over the tunnel, lists our services and calls Ping."""
    async with Tunnel(stack.tunnel_settings()) as t:
        await t.wait_up(10)
        sock = str(t.settings.local_socket)
        listed = (await _run("-plaintext", "-unix", sock, "list")).split()
        assert {"convocate.v1.Sessions", "convocate.v1.Attach", "grpc.health.v1.Health"} <= set(listed)
        reply = json.loads(await _run("-plaintext", "-unix", "-d", '{"client_id": "grpcurl"}',
                                      sock, "convocate.v1.Sessions/Ping"))
        assert reply.get("agent_id") == "test-agent", reply
        health = json.loads(await _run("-plaintext", "-unix", sock, "grpc.health.v1.Health/Check"))
        assert health["status"] == "SERVING"
        described = await _run("-plaintext", "-unix", sock, "describe", "convocate.v1.Attach")
        assert "rpc Attach ( stream .convocate.v1.AttachRequest )" in described
