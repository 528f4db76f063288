"""A real OpenSSH sshd on loopback, the provisioning target for convocate-host tests.

It runs with its own config, host key, authorized keys and pid file in a temp dir,
accepts only public keys, and is stopped (SIGTERM, then SIGKILL) by the fixture.
"""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from common.ssh_keys import add_authorized_key, generate_keypair, pin_host_key
from tests.support.env import require_tool
from tests.support.net import free_port

__all__ = ["Sshd", "start_sshd"]


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
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_sshd(root: Path, host: str = "127.0.0.1") -> Sshd:
    """Start sshd under ``root`` on a free loopback port and wait until it accepts."""
    sshd = require_tool("sshd")
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
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
    config = root / "sshd_config"
    config.write_text(
        f"ListenAddress {host}\nPort {port}\nHostKey {host_key}\nPidFile {root / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {authorized}\nPubkeyAuthentication yes\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nStrictModes no\n"
        "UsePAM no\nAllowTcpForwarding no\nX11Forwarding no\nPrintMotd no\nLogLevel VERBOSE\n"
    )
    log = root / "sshd.log"
    with log.open("wb") as log_file:  # the child keeps its own descriptor
        proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stderr=log_file)
    deadline = time.monotonic() + 15
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection((host, port), timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"sshd did not listen on {host}:{port}") from None
            time.sleep(0.05)
    user = getpass.getuser() if os.geteuid() != 0 else "root"
    return Sshd(host, port, user, client_key, known, proc, log)
