"""A real OpenSSH sshd on loopback, the provisioning target for convocate-host tests.

It runs with its own config, host key, authorized keys and pid file in a temp dir,
accepts only public keys, and is stopped (SIGTERM, then SIGKILL) by the fixture.
"""

from __future__ import annotations

import getpass
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from common.ssh_keys import add_authorized_key, generate_keypair, pin_host_key
from tests.support.env import require_tool
from tests.support.net import free_port
from tests.support.processes import spawn_logged, stop_process, wait_listening

__all__ = ["QUIET_SHELL", "Sshd", "run_sshd", "start_sshd"]


@dataclass
class Sshd:
    """A running sshd and what a client needs to log in to it."""

    host: str
    port: int
    user: str
    client_key: Path
    known_hosts: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """Stop sshd and every connection it holds."""
        stop_process(self.proc)


def run_sshd(config: Path, host: str, port: int) -> tuple[subprocess.Popen[bytes], Path]:
    """Run sshd on ``config`` (which listens on ``host:port``) until it accepts; its log beside it."""
    sshd = require_tool("sshd")
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
    log = config.parent / "sshd.log"
    proc = spawn_logged([sshd, "-D", "-e", "-f", str(config)], log)
    wait_listening(proc, host, port, log, "sshd")
    return proc, log


# For ``env``: bash started by sshd reads ~/.bashrc unless SHLVL says it is not the first
# shell. On a development machine root's may run slow things (pyenv init: 0.2-1 s per exec
# under load); a provisioned host's does nothing of the kind.
QUIET_SHELL = {"SHLVL": "1"}


def start_sshd(root: Path, host: str = "127.0.0.1", env: dict[str, str] | None = None) -> Sshd:
    """Start sshd under ``root`` on a free loopback port and wait until it accepts.

    ``env``: variables set in every session (``SetEnv``), e.g. ``DOCKER_HOST`` to make a
    private Docker Engine the target's engine.
    """
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    port = free_port(host)
    host_key = root / "ssh_host_ed25519_key"
    host_pub = generate_keypair(host_key, "test-sshd")
    client_key = root / "client_ed25519_key"
    client = generate_keypair(client_key, "test-client")
    authorized = root / "authorized_keys"
    add_authorized_key(authorized, client)
    known = root / "known_hosts"
    pin_host_key(known, host, port, host_pub)
    config = root / "sshd_config"
    config.write_text(
        f"ListenAddress {host}\nPort {port}\nHostKey {host_key}\nPidFile {root / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {authorized}\nPubkeyAuthentication yes\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nStrictModes no\n"
        "UsePAM no\nAllowTcpForwarding no\nX11Forwarding no\nPrintMotd no\nLogLevel VERBOSE\n"
        # One SetEnv line: sshd keeps only the first SetEnv line it reads.
        + ("SetEnv " + " ".join(f'"{k}={v}"' for k, v in env.items()) + "\n" if env else "")
    )
    proc, log = run_sshd(config, host, port)
    user = getpass.getuser() if os.geteuid() != 0 else "root"
    return Sshd(host, port, user, client_key, known, proc, log)
