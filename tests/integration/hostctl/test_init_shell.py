"""init-shell over a real sshd: the real `convocate install --root`, the allow-list, the log listener.

The shell host is a root directory on this machine behind the test sshd, seeded with
the ``claude`` user (so the installer's useradd/usermod work under ``--root``); rsyslog
is not restarted here (the listener's configuration is exercised against a real
rsyslogd in test_log_forwarding).
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

from hostctl.logforward import Listener
from hostctl.remote import SSHRunner, SSHTarget
from hostctl.report import Report
from hostctl.shell_setup import ShellSetup, setup_shell
from tests.support.sshd import Sshd

pytestmark = [pytest.mark.sshd]


@pytest.fixture
def shell_root() -> Iterator[Path]:
    """A shell host's root with /etc/passwd, group and shadow holding claude."""
    with tempfile.TemporaryDirectory(prefix="cvsh-") as d:
        root = Path(d)
        etc = root / "etc"
        etc.mkdir()
        (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n"
                                    "claude:x:1337:1337::/home/claude:/usr/sbin/nologin\n")
        (etc / "group").write_text("root:x:0:\nclaude:x:1337:\n")
        (etc / "shadow").write_text("root:*:19000:0:99999:7:::\nclaude:!:19000:0:99999:7:::\n")
        (etc / "shadow").chmod(0o600)
        yield root


def _setup(root: Path) -> ShellSetup:
    convocate = Path(sys.executable).parent / "convocate"
    return ShellSetup(
        log_names=("shell.example", "127.0.0.1"), owner="",
        status_unit=root / "etc/systemd/system/convocate-status.service",
        status_authorized_keys=root / "etc/convocate/status_authorized_keys",
        install_argv=(str(convocate), "install", "--root", str(root), "--no-image", "--no-start"),
        listener=Listener(tls_dir=root / "etc/convocate/rsyslog-ca", log_dir=root / "var/log/convocate-agent",
                          own_log=root / "var/log/convocate.log"),
        listener_dropin=root / "etc/rsyslog.d/10-convocate-server.conf",
        logrotate=root / "etc/logrotate.d/convocate-agent-logs", logs_reload_argv=None,
    )


async def _run(sshd: Sshd, setup: ShellSetup, *, dry_run: bool = False) -> Report:
    report = Report("init-shell", sshd.host, dry_run=dry_run)
    runner = SSHRunner(SSHTarget(sshd.host, sshd.port, sshd.user, sshd.client_key, sshd.known_hosts))
    try:
        await setup_shell(runner, setup, report)
    finally:
        await runner.close()
    return report


async def test_init_shell_sets_up_the_role_and_the_listener_then_changes_nothing(
    sshd: Sshd, shell_root: Path,
) -> None:
    """Role, allow-list, CA, server certificate, drop-in and logrotate; the second run is a no-op."""
    setup = _setup(shell_root)
    plan = await _run(sshd, setup, dry_run=True)
    assert [(s.step, s.changed) for s in plan.steps] == [("role", True), ("allow-list", True), ("logs", True)]
    assert not setup.status_unit.exists()

    first = await _run(sshd, setup)
    assert all(s.changed for s in first.steps), first.as_dict()
    passwd = (shell_root / "etc/passwd").read_text()
    assert "claude:x:1337:1337::/home/claude:/usr/local/bin/convocate" in passwd
    dropin = (shell_root / "etc/ssh/sshd_config.d/convocate.conf").read_text()
    assert "ForceCommand /usr/local/bin/convocate" in dropin
    allow = setup.status_authorized_keys
    assert oct(allow.stat().st_mode & 0o777) == "0o640"
    tls = setup.listener.tls_dir
    assert oct((tls / "ca.key").stat().st_mode & 0o777) == "0o600"
    server = x509.load_pem_x509_certificate((tls / "server.crt").read_bytes())
    server.verify_directly_issued_by(x509.load_pem_x509_certificate((tls / "ca.crt").read_bytes()))
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "shell.example" in sans.get_values_for_type(x509.DNSName)
    assert str(tls / "server.crt") in setup.listener_dropin.read_text()
    assert "rotate" in setup.logrotate.read_text()
    ca_before = (tls / "ca.crt").read_bytes()

    second = await _run(sshd, setup)
    assert not second.changed, second.as_dict()
    assert (tls / "ca.crt").read_bytes() == ca_before   # the CA is never replaced


def test_cli_dry_run_json(sshd: Sshd) -> None:
    """`init-shell --dry-run --json`: one JSON object, the three steps, exit 0."""
    argv = [sys.executable, "-m", "hostctl", "init-shell", "--host", sshd.host, "--ssh-port", str(sshd.port),
            "--user", sshd.user, "--key", str(sshd.client_key), "--known-hosts", str(sshd.known_hosts),
            "--dry-run", "--json"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert [s["step"] for s in out["steps"]] == ["role", "allow-list", "logs"]
    assert out["dry_run"] is True
