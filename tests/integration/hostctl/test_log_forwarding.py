"""Log forwarding against real rsyslogd: a listener (the shell's drop-in) and forwarders
(an agent's drop-in), on loopback, each with its own config, pid file and work dir.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.errors import InvalidArgumentError
from hostctl import log_pki, logforward
from hostctl.logforward import Forwarder, Listener
from tests.support.env import require_tool
from tests.support.net import free_port
from tests.support.rsyslogd import Rsyslogd, start_rsyslogd
from tests.support.waiting import wait_for_sync

SERVER_NAME = "shell.convocate.test"

# In the foreground rsyslogd reports its own errors (a refused handshake) on stderr.
LISTENER_CONF = """
include(file="{root}/rsyslog.d/10-convocate-server.conf")
"""
FORWARDER_CONF = """
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{root}/log.sock" CreatePath="on")
include(file="{root}/rsyslog.d/10-convocate-client.conf")
"""


def _listens(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[tuple[Rsyslogd, Listener]]:
    """A listener with a fresh CA and a server certificate for SERVER_NAME and localhost."""
    require_tool("rsyslogd")
    root = tmp_path / "shell"
    tls = root / "tls"
    assert logforward.init_ca(tls)
    logforward.issue_server_cert(tls / "ca.crt", tls / "ca.key", [SERVER_NAME, "localhost"], tls)
    listener = Listener(address="127.0.0.1", port=free_port("127.0.0.1"), tls_dir=tls,
                        log_dir=root / "agents", own_log=root / "convocate.log")
    (root / "rsyslog.d").mkdir(parents=True)
    (root / "rsyslog.d" / "10-convocate-server.conf").write_text(logforward.render_listener(listener))
    daemon = start_rsyslogd(root, LISTENER_CONF, ready=lambda: _listens(listener.port))
    try:
        yield daemon, listener
    finally:
        daemon.stop()


def _forwarder(root: Path, listener: Listener, agent_id: str, tls: Path) -> Rsyslogd:
    forwarder = Forwarder(agent_id=agent_id, target="127.0.0.1", server_name=SERVER_NAME,
                          port=listener.port, tls_dir=tls, spool_dir=root / "spool")
    (root / "rsyslog.d").mkdir(parents=True, exist_ok=True)
    (root / "spool").mkdir(exist_ok=True)
    (root / "rsyslog.d" / "10-convocate-client.conf").write_text(logforward.render_forwarder(forwarder))
    return start_rsyslogd(root, FORWARDER_CONF, ready=(root / "log.sock").exists)


def _log(forwarder: Rsyslogd, text: str) -> None:
    logger = require_tool("logger")
    subprocess.run([logger, "-u", str(forwarder.root / "log.sock"), "-t", "convocate-agent", text],
                   check=True, timeout=10)


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def test_an_agents_message_lands_in_its_own_file(shell: tuple[Rsyslogd, Listener], tmp_path: Path) -> None:
    """A line logged on the agent arrives over TLS in <log_dir>/<agent id>.log on the shell."""
    daemon, listener = shell
    tls = listener.tls_dir
    agent_tls = tmp_path / "agent-tls"
    logforward.issue_agent_cert(tls / "ca.crt", tls / "ca.key", "agent7abc", agent_tls)
    forwarder = _forwarder(tmp_path / "agent", listener, "agent7abc", agent_tls)
    try:
        marker = f"hello from the agent {uuid.uuid4().hex}"
        _log(forwarder, marker)
        agent_file = listener.log_dir / "agent7abc.log"
        wait_for_sync(lambda: marker in _read(agent_file), timeout=30)
    finally:
        forwarder.stop()
    line = next(ln for ln in _read(agent_file).splitlines() if marker in ln)
    assert "agent7abc" in line, line
    assert "convocate-agent" in line, line
    assert sorted(p.name for p in listener.log_dir.iterdir()) == ["agent7abc.log"]
    assert daemon.proc.poll() is None, daemon.output()


def test_a_client_without_a_valid_certificate_is_refused(
    shell: tuple[Rsyslogd, Listener], tmp_path: Path
) -> None:
    """A forwarder whose certificate comes from another CA is refused; its lines never land."""
    daemon, listener = shell
    other = tmp_path / "other-ca"
    assert logforward.init_ca(other)
    intruder_tls = tmp_path / "intruder-tls"
    logforward.issue_agent_cert(other / "ca.crt", other / "ca.key", "intruder", intruder_tls)
    # It trusts the real CA for the server, so only its own certificate is wrong.
    (intruder_tls / "ca.crt").write_bytes((listener.tls_dir / "ca.crt").read_bytes())
    intruder = _forwarder(tmp_path / "intruder", listener, "intruder", intruder_tls)
    try:
        secret = f"must not land {uuid.uuid4().hex}"
        _log(intruder, secret)
        wait_for_sync(lambda: "certificate invalid" in daemon.output(), timeout=30)
    finally:
        intruder.stop()
    assert not (listener.log_dir / "intruder.log").exists()
    assert not any(secret in _read(p) for p in listener.log_dir.glob("*"))
    assert "DN: O=convocate,CN=intruder" in daemon.output()


def test_the_forwarder_checks_the_shells_name(shell: tuple[Rsyslogd, Listener], tmp_path: Path) -> None:
    """A forwarder expecting another server name does not deliver to this listener (x509/name)."""
    daemon, listener = shell
    tls = listener.tls_dir
    agent_tls = tmp_path / "agent-tls"
    logforward.issue_agent_cert(tls / "ca.crt", tls / "ca.key", "agent7abc", agent_tls)
    root = tmp_path / "agent"
    forwarder = Forwarder(agent_id="agent7abc", target="127.0.0.1", server_name="elsewhere.convocate.test",
                          port=listener.port, tls_dir=agent_tls, spool_dir=root / "spool")
    (root / "rsyslog.d").mkdir(parents=True)
    (root / "spool").mkdir()
    (root / "rsyslog.d" / "10-convocate-client.conf").write_text(logforward.render_forwarder(forwarder))
    agent = start_rsyslogd(root, FORWARDER_CONF, ready=(root / "log.sock").exists)
    try:
        secret = f"must not leave {uuid.uuid4().hex}"
        _log(agent, secret)
        wait_for_sync(lambda: "peer name not authorized" in agent.output(), timeout=30)
    finally:
        agent.stop()
    assert not any(secret in _read(p) for p in listener.log_dir.glob("*"))
    assert daemon.proc.poll() is None


def test_names_that_cannot_go_into_a_drop_in_are_refused() -> None:
    """An agent id or address that would break out of an rsyslog string is a clear error."""
    with pytest.raises(InvalidArgumentError, match="agent id 'bad id'"):
        logforward.render_forwarder(Forwarder("bad id", "127.0.0.1", SERVER_NAME))
    with pytest.raises(InvalidArgumentError, match="target"):
        logforward.render_forwarder(Forwarder("agent7abc", '127.0.0.1" port="1', SERVER_NAME))
    with pytest.raises(InvalidArgumentError, match="host name"):
        log_pki.issue_server(*_ca(), ["../x"])


def _ca() -> tuple[bytes, bytes]:
    ca = log_pki.make_ca()
    return ca.cert_pem, ca.key_pem


def test_cli_issues_an_agent_certificate_as_json(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "hostctl", "logs"]
    ca = tmp_path / "ca"
    made = subprocess.run([*run, "init-ca", "--out", str(ca), "--json"], capture_output=True, text=True,
                          timeout=60, check=True)
    assert json.loads(made.stdout)["changed"] is True
    again = subprocess.run([*run, "init-ca", "--out", str(ca)], capture_output=True, text=True,
                           timeout=60, check=True)
    assert "nothing changed" in again.stdout
    out = tmp_path / "agent"
    issued = subprocess.run([*run, "issue-cert", "--agent", "agent7abc", "--ca-cert", str(ca / "ca.crt"),
                             "--ca-key", str(ca / "ca.key"), "--out", str(out), "--json"],
                            capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(issued.stdout) == {
        "cert": str(out / "client.crt"), "agent": "agent7abc", "changed": True,
    }
    assert sorted(p.name for p in out.iterdir()) == ["ca.crt", "client.crt", "client.key"]
    bad = subprocess.run([*run, "issue-cert", "--agent", "a/b", "--ca-cert", str(ca / "ca.crt"),
                          "--ca-key", str(ca / "ca.key"), "--out", str(tmp_path / "x")],
                         capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 1
    assert "agent id 'a/b' is not a DNS-style name" in bad.stderr
