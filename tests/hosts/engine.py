"""Steps on a booted host: its systemd state and its own Docker Engine.

Each step is idempotent (a second call finds the work done and returns at once), so a
test may call every prerequisite itself and a module's tests may share one host.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from tests.hosts.machines import Host
from tests.support.waiting import wait_for_sync

__all__ = ["DAEMON_JSON", "SystemState", "install_docker", "system_state"]

# Docker inside a container: the host's overlay filesystem cannot carry another overlay,
# so the engine uses vfs. The systemd cgroup driver matches a Debian 12 host (cgroup v2)
# and makes `--cgroup-parent convocate-sessions.slice` the systemd slice of that name.
DAEMON_JSON = {"storage-driver": "vfs", "exec-opts": ["native.cgroupdriver=systemd"]}
APT_TIMEOUT = 600.0


@dataclass(frozen=True)
class SystemState:
    """What ``systemctl is-system-running`` said, and the failed units when degraded."""

    state: str
    failed: tuple[str, ...]


def system_state(host: Host, timeout: float = 120.0) -> SystemState:
    """Wait (bounded) until systemd has finished starting; return its state and failed units."""
    r = host.run(f"timeout {int(timeout)} systemctl is-system-running --wait", check=False,
                 timeout=timeout + 15)
    state = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else f"unknown (exit {r.returncode})"
    failed: tuple[str, ...] = ()
    if state != "running":
        listed = host.run("systemctl list-units --failed --no-legend --plain", check=False)
        failed = tuple(line.split()[0] for line in listed.stdout.splitlines() if line.strip())
    return SystemState(state, failed)


def install_docker(host: Host) -> str:
    """``apt-get install docker.io`` on ``host`` (vfs driver); return the server version."""
    if host.run("command -v dockerd", check=False).returncode != 0:
        config = json.dumps(DAEMON_JSON)
        host.sudo(f"install -d -m 755 /etc/docker && printf '%s\\n' '{config}' > /etc/docker/daemon.json")
        host.sudo("apt-get update -q", timeout=APT_TIMEOUT)
        host.sudo("DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker.io",
                  timeout=APT_TIMEOUT)
    host.sudo("systemctl start docker.service", timeout=120)

    def server_version() -> str:
        return host.sudo("docker version --format '{{.Server.Version}}'", check=False,
                         timeout=30).stdout.strip()

    return wait_for_sync(server_version, timeout=90, interval=1.0)
