"""Security review finding 6 (floods before and after login) and finding 12 (server options).

A real gRPC server behind a real SSHSocketServer on loopback. The attacker opens
hundreds of idle TCP connections from several source addresses, tries dozens of keys
on one connection and, holding a key, opens hundreds of channels on one connection;
a legitimate client must still log in and complete a call within about a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest
from convocate.v1 import sessions_pb2, sessions_pb2_grpc

from common.deploy_files import deploy_dir
from common.grpc_server import UnixGrpcServer
from common.ssh_keys import generate_keypair, public_key_text
from common.ssh_limits import SSHLimits
from common.ssh_server import SSHServerSettings, SSHSocketServer
from common.tunnel import Tunnel, TunnelSettings
from tests.support.echo_services import echo_services
from tests.support.keys import PeerKeys, make_peer_keys
from tests.support.net import free_port
from tests.support.waiting import assert_eventually

HOST = "127.0.0.1"
LIMITS = SSHLimits()
# Attackers' source addresses: all loopback, none of them the legitimate client's.
ATTACK_SOURCES = [f"127.0.0.{i}" for i in range(2, 8)]
IDLE_PER_SOURCE = 50          # 300 idle connections in all


@dataclass
class Target:
    keys: PeerKeys
    ssh: SSHSocketServer
    root: Path

    def tunnel(self, name: str) -> Tunnel:
        return Tunnel(TunnelSettings(name="target", host=HOST, port=self.ssh.port,
                                     client_key=self.keys.client_key, known_hosts=self.keys.known_hosts,
                                     local_socket=self.root / name / "t.sock"))


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    with tempfile.TemporaryDirectory(prefix="cvf-") as d:
        root = Path(d)
        port = free_port(HOST)
        keys = make_peer_keys(root / "keys", HOST, port)
        sock = root / "srv" / "agent.sock"
        grpc_server = UnixGrpcServer(sock, echo_services())
        await grpc_server.start()
        ssh = SSHSocketServer(SSHServerSettings(HOST, port, keys.host_key, keys.authorized_keys, sock))
        await ssh.start()
        try:
            yield Target(keys, ssh, root)
        finally:
            ssh.close()
            await asyncio.wait_for(ssh.wait_closed(), 10)
            await grpc_server.stop(grace=0)


async def _legitimate_call_seconds(t: Target, name: str) -> float:
    """Log in, open the tunnel and complete one Ping; return how long it took."""
    start = time.monotonic()
    async with t.tunnel(name) as tunnel:
        await tunnel.wait_up(5)
        reply = await sessions_pb2_grpc.SessionsStub(tunnel.channel).Ping(
            sessions_pb2.PingRequest(client_id="legit"), timeout=5)
        assert reply.agent_id == "test-agent"
    return time.monotonic() - start


async def _closed_by_server(reader: asyncio.StreamReader) -> bool:
    """True once the server has closed this connection (EOF after its banner)."""
    with contextlib.suppress(ConnectionError):
        while await reader.read(4096):
            pass
    return True


async def test_finding6_idle_unauthenticated_flood_leaves_room_for_a_real_client(
    target: Target, caplog: pytest.LogCaptureFixture,
) -> None:
    """300 idle connections: the server keeps at most its caps, and a real client gets in fast."""
    caplog.set_level(logging.INFO)
    writers: list[asyncio.StreamWriter] = []
    readers: list[asyncio.StreamReader] = []
    try:
        for source in ATTACK_SOURCES:
            for _ in range(IDLE_PER_SOURCE):
                reader, writer = await asyncio.open_connection(HOST, target.ssh.port, local_addr=(source, 0))
                readers.append(reader)
                writers.append(writer)
        per_source = LIMITS.max_unauthenticated_per_source
        held_max = min(LIMITS.max_unauthenticated, per_source * len(ATTACK_SOURCES))
        watchers = [asyncio.create_task(_closed_by_server(r)) for r in readers]
        try:
            await assert_eventually(lambda: sum(w.done() for w in watchers) >= len(readers) - held_max,
                                    timeout=10)
            still_open = [w for w in watchers if not w.done()]
            assert len(still_open) <= held_max
            seconds = await _legitimate_call_seconds(target, "a")
            assert seconds < 1.5, f"a legitimate login and call took {seconds:.2f} s under the flood"
        finally:
            for w in watchers:
                w.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
    finally:
        for writer in writers:
            writer.close()
        await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)
    refusals = [r for r in caplog.records if "too many unauthenticated" in r.getMessage()]
    assert 1 <= len(refusals) <= 2, "one refusal line per interval, not one per connection"


async def test_finding6_many_keys_on_one_connection_are_cut_off(target: Target) -> None:
    """A client that tries 40 unauthorized keys is disconnected after the failure limit."""
    keys = [asyncssh.generate_private_key("ssh-ed25519") for _ in range(40)]
    with pytest.raises(asyncssh.DisconnectError) as info:
        await asyncssh.connect(HOST, target.ssh.port, username="claude", client_keys=keys,
                               known_hosts=str(target.keys.known_hosts), config=[], agent_path=None)
    assert "too many authentication failures" in info.value.reason


async def test_finding6_channel_storm_is_bounded_and_a_real_client_still_calls(
    target: Target, caplog: pytest.LogCaptureFixture,
) -> None:
    """300 channels on one authenticated connection: at most the cap open, then disconnected."""
    caplog.set_level(logging.INFO)
    conn = await asyncssh.connect(HOST, target.ssh.port, username="claude",
                                  client_keys=[str(target.keys.client_key)],
                                  known_hosts=str(target.keys.known_hosts), config=[], agent_path=None)
    opened: list[asyncssh.SSHWriter[bytes]] = []
    refused = 0
    try:
        for _ in range(300):
            try:
                _, writer = await conn.open_unix_connection("convocate", encoding=None)
                opened.append(writer)
            except asyncssh.ChannelOpenError as e:
                if e.code != asyncssh.OPEN_RESOURCE_SHORTAGE:
                    break         # the server has hung up: the channel opens on a closed connection
                refused += 1
            except (asyncssh.DisconnectError, asyncssh.ConnectionLost, BrokenPipeError):
                break
        assert len(opened) <= LIMITS.max_channels
        assert refused <= LIMITS.max_refused_requests
        await asyncio.wait_for(conn.wait_closed(), 5)  # the server hung up on the storm
        seconds = await _legitimate_call_seconds(target, "b")
        assert seconds < 1.5, f"a legitimate login and call took {seconds:.2f} s after the storm"
    finally:
        conn.close()
        await asyncio.wait_for(conn.wait_closed(), 10)
    logged = [r for r in caplog.records if "ssh request refused" in r.getMessage()]
    assert len(logged) <= 2, "refusals are summarised, not logged one by one"


async def test_finding12_from_option_is_matched_against_the_client_address(target: Target) -> None:
    """A ``from=`` line admits its address and refuses others (it used to raise for every client)."""
    root = target.root
    ok_key, other_key = root / "from_ok", root / "from_other"
    lines = [f'from="127.0.0.1" {public_key_text(generate_keypair(ok_key, "ok"))}',
             f'from="10.9.9.9" {public_key_text(generate_keypair(other_key, "other"))}']
    with target.keys.authorized_keys.open("a") as f:
        f.write("\n".join(lines) + "\n")
    async with asyncssh.connect(HOST, target.ssh.port, username="claude", client_keys=[str(ok_key)],
                                known_hosts=str(target.keys.known_hosts), config=[], agent_path=None) as c:
        _, writer = await c.open_unix_connection("convocate")
        writer.close()
    with pytest.raises(asyncssh.PermissionDenied):
        await asyncssh.connect(HOST, target.ssh.port, username="claude", client_keys=[str(other_key)],
                               known_hosts=str(target.keys.known_hosts), config=[], agent_path=None)


def test_finding6_and_12_server_defaults() -> None:
    """Login within 10 s; the limits are finite."""
    s = SSHServerSettings(HOST, 1, Path("k"), Path("a"), Path("s"))
    assert s.login_timeout <= 10
    assert 0 < s.limits.max_unauthenticated_per_source < s.limits.max_unauthenticated <= 256
    assert s.limits.max_auth_failures <= 10


@pytest.mark.parametrize("unit", ["convocate-agent.service", "convocate-status.service"])
def test_finding6_units_bound_open_files(unit: str) -> None:
    """Both SSH services run with an explicit open-file limit, so EMFILE cannot come from the default."""
    lines = (deploy_dir() / "systemd" / unit).read_text().splitlines()
    (limit,) = [int(ln.split("=", 1)[1]) for ln in lines if ln.startswith("LimitNOFILE=")]
    assert LIMITS.max_unauthenticated * 4 < limit <= 65536
