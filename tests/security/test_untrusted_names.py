"""Security review finding 3 (the shell side) and finding 11: what an agent says is untrusted.

A compromised agent (the production SSH server and gRPC server, reached through the
router's real tunnel, serving records a session container rewrote) sends a DNS name with a
newline and a forged A record, names with terminal escapes, a newline and a bidi
override, and a DNS name outside the session zone. The real router must keep all of
them out of the dnsmasq hosts file and log why; the console table and
``convocate-host sessions`` must show them escaped.
"""

from __future__ import annotations

import asyncio
import re
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from convocate.v1 import sessions_pb2

from shell.console.state import TableRow
from shell.console.table import columns_for, format_row
from shell.fleet.router import Router, RouterConfig
from tests.support.hostile_agent import HostileAgent
from tests.support.waiting import assert_eventually

FORGED_DNS = "x\n10.6.6.6\tshell.corp.example"
ESC_NAME = "evil\x1b]0;owned\x07\x1b[2J\nFAKE | row"
BIDI_NAME = "txt.\u202eexe"
SAFE_LINE = re.compile(r"[0-9.]+\t[a-z0-9.-]+")


@dataclass
class Compromised:
    """One compromised agent and a router over it."""

    agent: HostileAgent
    router: Router
    config: RouterConfig
    ids: dict[str, str]


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short temp directory (UNIX socket paths must stay under 107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="cvun-") as d:
        yield Path(d)


def _session(agent_id: str, name: str, dns_name: str) -> sessions_pb2.Session:
    return sessions_pb2.Session(id=str(uuid.uuid4()), name=name, dns_name=dns_name, agent_id=agent_id,
                                protocol="tcp")


@pytest.fixture
async def compromised(short_tmp: Path) -> AsyncIterator[Compromised]:
    """agent-a serving rewritten records, and a started router with a hosts file."""
    registry = short_tmp / "registry"
    sessions = {
        "forged-dns": _session("agent-a", "forged", FORGED_DNS),
        "escapes": _session("agent-a", ESC_NAME, ""),
        "bidi": _session("agent-a", BIDI_NAME, ""),
        "outside": _session("agent-a", "outside", "github.com"),
        "bad-name": _session("agent-a", ESC_NAME, "named.convocate.internal"),
        "good": _session("agent-a", "good", "good.convocate.internal"),
    }
    (short_tmp / "dns").mkdir()
    config = RouterConfig(registry_dir=registry, runtime_dir=short_tmp / "run",
                          dnsmasq_hosts=short_tmp / "dns" / "hosts", heartbeat_interval=0.5,
                          call_timeout=2.0, list_timeout=1.0, connect_timeout=1.0, keepalive_interval=0.5,
                          backoff_max=0.5, registry_poll=0, client_id="console:test")
    hostile = HostileAgent(short_tmp, registry, "agent-a", "127.0.0.2", list(sessions.values()))
    async with hostile as agent, Router(config) as router:
        ids = {k: s.id for k, s in sessions.items()}
        await assert_eventually(lambda: set(ids.values()) <= {r.id for r in router.rows()}, timeout=10)
        yield Compromised(agent, router, config, ids)


async def test_forged_dns_records_never_reach_the_hosts_file(
    compromised: Compromised, caplog: pytest.LogCaptureFixture
) -> None:
    """A newline DNS name, a name outside the zone and a bad session name write nothing; errors say why."""
    hosts = compromised.config.dnsmasq_hosts
    assert hosts is not None
    await assert_eventually(lambda: hosts.exists() and "good.convocate.internal" in hosts.read_text())
    lines = hosts.read_text().splitlines()
    assert lines[1:] == ["127.0.0.2\tgood.convocate.internal"]
    assert all(SAFE_LINE.fullmatch(line) for line in lines[1:])
    text = hosts.read_text()
    assert "10.6.6.6" not in text
    assert "github.com" not in text
    assert "named" not in text
    logged = [*caplog.get_records("setup"), *caplog.records]  # the router wrote the file during set-up
    refusals = [str(r.msg) for r in logged if "dns record refused" in str(r.msg)]
    assert any("outside the session zone" in r for r in refusals)
    assert any("invalid character" in r for r in refusals)
    assert any("session name contains invalid character" in r for r in refusals)
    # The rows themselves still show (escaped, below).
    assert {r.id for r in compromised.router.rows()} >= set(compromised.ids.values())


async def test_console_rows_show_escapes_and_bidi_overrides_escaped(compromised: Compromised) -> None:
    """The table draws each hostile name on one line, with ESC, newline and U+202E visible as escapes."""
    cols = columns_for(200)
    for key in ("escapes", "bidi", "forged-dns"):
        row = next(r for r in compromised.router.rows() if r.id == compromised.ids[key])
        line = format_row(TableRow(1, row), cols)
        assert "\n" not in line
        assert "\x1b" not in line
        assert "\u202e" not in line
        assert "\x07" not in line
    escapes = next(r for r in compromised.router.rows() if r.id == compromised.ids["escapes"])
    assert "evil\\x1b]0;owned\\x07\\x1b[2J\\nFAKE | row" in format_row(TableRow(1, escapes), cols)  # escaped
    bidi = next(r for r in compromised.router.rows() if r.id == compromised.ids["bidi"])
    assert "txt.\\u202eexe" in format_row(TableRow(1, bidi), cols)


async def test_convocate_host_sessions_prints_hostile_names_escaped(compromised: Compromised) -> None:
    """`convocate-host sessions` prints one line per session, no raw escape, newline or bidi character."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hostctl", "sessions", "--registry", str(compromised.config.registry_dir),
        "--timeout", "10", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        raw_out, raw_err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, raw_err.decode()
    stdout = raw_out.decode()
    lines = stdout.splitlines()
    assert len(lines) == len(compromised.ids)
    for raw in ("\x1b", "\x07", "\u202e", "\t"):
        assert raw not in stdout
    assert any("evil\\x1b]0;owned\\x07\\x1b[2J\\nFAKE | row" in line for line in lines)
    assert any("txt.\\u202eexe" in line for line in lines)
