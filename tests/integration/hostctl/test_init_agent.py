"""init-agent, the whole agent, over a real sshd: role, keys, image, log certificate, start, Ping.

The agent host is a state root on this machine behind the test sshd; its role installer
is the real ``convocate-agent install --root``; its "unit" a script that starts the real
agent on 127.0.0.5 with the real Docker Engine. The client that checks it is the
console's (:mod:`common.client` through the SSH tunnel, via ``hostctl.fleet.survey``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from common.errors import NotFoundError
from common.registry import load_registry
from hostctl import logforward
from hostctl.agent_setup import setup_agent
from hostctl.fleet import survey
from hostctl.remote import SSHRunner, SSHTarget
from hostctl.report import Report
from tests.integration.hostctl.agent_host import TestAgentHost
from tests.support.net import free_port
from tests.support.sshd import Sshd
from tests.support.tiny_image import build_tiny_image

pytestmark = [pytest.mark.docker, pytest.mark.sshd]

HOST = "127.0.0.5"


@pytest.fixture
def image() -> Iterator[str]:
    """A tiny image to push (removed afterwards)."""
    tag = build_tiny_image("convocate-initagent")
    try:
        yield tag
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False, timeout=60)


@pytest.fixture
def agent_host() -> Iterator[TestAgentHost]:
    """A fresh agent host state root (short: sockets live under it) and a log CA here."""
    with tempfile.TemporaryDirectory(prefix="cvia-") as d:
        root = Path(d)
        logforward.init_ca(root / "ca")
        host = TestAgentHost(root, HOST, free_port("127.0.0.1"), root / "ca")
        try:
            yield host
        finally:
            host.stop()


def _runner(sshd: Sshd) -> SSHRunner:
    return SSHRunner(SSHTarget(sshd.host, sshd.port, sshd.user, sshd.client_key, sshd.known_hosts))


async def _init(sshd: Sshd, host: TestAgentHost, image: str, *, dry_run: bool = False) -> Report:
    report = Report("init-agent", HOST, dry_run=dry_run)
    runner = _runner(sshd)
    try:
        await setup_agent(runner, host.setup(image), report)
    finally:
        await runner.close()
    return report


async def test_init_agent_then_the_console_client_reaches_it_and_a_rerun_changes_nothing(
    sshd: Sshd, agent_host: TestAgentHost, image: str,
) -> None:
    """From a bare state root to an agent that answers; the second run changes nothing."""
    h = agent_host
    plan = await _init(sshd, h, image, dry_run=True)
    assert [s.step for s in plan.steps] == ["role", "keys", "image", "logs", "start"]
    assert all(s.changed for s in plan.steps)
    assert not h.layout.config_dir.exists()      # the plan touched nothing

    first = await _init(sshd, h, image)
    assert {s.step: s.changed for s in first.steps} == dict.fromkeys(
        ["role", "keys", "image", "logs", "start"], True), h.describe()
    agent_id = h.agent_id()
    assert first.data["agent_id"] == agent_id
    (record,) = load_registry(h.shell.registry_dir)
    (answer,) = await survey([record], timeout=10, with_sessions=True)
    assert answer.reachable, answer.error
    assert answer.current_image == image
    assert (h.layout.config_dir / "current-image").read_text().strip() == image
    # The log client certificate is this agent's, from this CA; the drop-in forwards to the shell.
    tls = h.prefix / "etc" / "convocate-agent" / "rsyslog-tls"
    cert = x509.load_pem_x509_certificate((tls / "client.crt").read_bytes())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate((h.ca_dir / "ca.crt").read_bytes()))
    assert cert.subject.rfc4514_string() .startswith(f"CN={agent_id}")
    assert oct((tls / "client.key").stat().st_mode & 0o777) == "0o600"
    dropin = (h.prefix / "etc" / "rsyslog.d" / "10-convocate-client.conf").read_text()
    assert 'target="127.0.0.1"' in dropin
    assert agent_id in dropin
    pid = h.pidfile.read_text()

    second = await _init(sshd, h, image)
    assert not second.changed, second.as_dict()
    assert "nothing changed" in second.summary()
    assert h.pidfile.read_text() == pid       # not restarted
    converged = await _init(sshd, h, image, dry_run=True)
    assert not converged.changed, converged.as_dict()   # the plan of a converged host is empty too
    json.dumps(second.as_dict())


async def test_missing_ca_is_one_clear_error(sshd: Sshd, agent_host: TestAgentHost) -> None:
    """Without a CA (and no --ca-cert) init-agent stops and says how to get one."""
    report = Report("init-agent", HOST)
    runner = _runner(sshd)
    setup = agent_host.setup("", ca_cert=agent_host.root / "none.crt", ca_key=agent_host.root / "none.key",
                             start_argv=("false",))
    try:
        with pytest.raises(NotFoundError, match="--ca-cert"):
            await setup_agent(runner, setup, report)
    finally:
        await runner.close()
    assert [s.step for s in report.steps] == ["role", "keys", "image"]


def test_cli_dry_run_json_parses(sshd: Sshd, agent_host: TestAgentHost) -> None:
    """`convocate-host init-agent --dry-run --json` prints only JSON on stdout and changes nothing."""
    h = agent_host
    argv = [sys.executable, "-m", "hostctl", "init-agent", "--host", sshd.host, "--ssh-port", str(sshd.port),
            "--user", sshd.user, "--key", str(sshd.client_key), "--known-hosts", str(sshd.known_hosts),
            "--address", HOST, "--status-address", "127.0.0.1",
            "--agent-config-dir", str(h.layout.config_dir), "--sessions-root", str(h.layout.sessions_root),
            "--registry", str(h.shell.registry_dir), "--ca-cert", str(h.ca_dir / "ca.crt"),
            "--ca-key", str(h.ca_dir / "ca.key"), "--dry-run", "--json"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["dry_run"] is True
    assert [s["step"] for s in out["steps"]] == ["role", "keys", "image", "logs", "start"]
    assert not h.layout.config_dir.exists()
    helped = subprocess.run([sys.executable, "-m", "hostctl", "init-agent", "--help"], capture_output=True,
                            text=True, timeout=60, check=False)
    assert "Exit status" in helped.stdout
