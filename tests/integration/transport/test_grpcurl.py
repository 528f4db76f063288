"""The real grpcurl binary lists services and calls Ping through the forwarded socket."""

from __future__ import annotations

import asyncio
import json
import sys

from common.tunnel import Tunnel
from tests.integration.transport.conftest import Stack
from tests.support.env import require_grpcurl


async def _run(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        require_grpcurl(), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
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


async def test_hostctl_tunnel_command_serves_grpcurl(stack: Stack) -> None:
    """`convocate-host tunnel` holds a socket that grpcurl uses, and cleans up on SIGTERM."""
    sock = stack.rundir / "cli" / "grpc.sock"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hostctl", "tunnel", "--host", "127.0.0.1", "--port", str(stack.ssh.port),
        "--key", str(stack.keys.client_key), "--known-hosts", str(stack.keys.known_hosts),
        "--name", "a1", "--socket", str(sock),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert f"is up at {sock}" in line.decode()
        reply = json.loads(await _run("-plaintext", "-unix", str(sock), "convocate.v1.Sessions/Ping"))
        assert reply["agent_id"] == "test-agent"
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 15)
    assert proc.returncode == 0
    assert not sock.exists()


async def test_hostctl_tunnel_reports_wrong_key_in_one_line(stack: Stack) -> None:
    """A refused key makes `convocate-host tunnel` print one error line and exit 1."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hostctl", "tunnel", "--host", "127.0.0.1", "--port", str(stack.ssh.port),
        "--key", str(stack.keys.host_key), "--known-hosts", str(stack.keys.known_hosts),
        "--name", "a1", "--socket", str(stack.rundir / "cli2" / "g.sock"), "--timeout", "2",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    lines = [ln for ln in err.decode().splitlines() if ln.startswith("error:")]
    assert lines == [lines[0]]
    assert "refused our key" in lines[0]
