"""Provisioning a fleet the way the README tells an operator: install, init-shell, init-agent.

``convocate-host install --host`` and ``init-shell --host`` run from the test machine; where
this checkout does not have them yet, :func:`base_install` and :func:`shell_role_by_hand` do
their part with the fixture's plumbing (packages from the archive, the wheelhouse, the
README's shell-host commands) so the rest of the procedure still runs for real.
``init-agent`` runs on the shell host as the operator (it registers the agent in the shell's
registry), over real SSH to the agent host with the operator's key and ``sudo -n``.
"""

from __future__ import annotations

import functools
import json
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from common.ssh_keys import known_hosts_line
from common.version import VERSION
from tests.hosts.agent_host import (
    CLAUDE_STAND_IN,
    HOST_PYTHON,
    VENV,
    install_convocate,
    load_image,
    unit_state,
)
from tests.hosts.engine import DAEMON_JSON, install_docker
from tests.hosts.machines import Host, RemoteError
from tests.support.waiting import wait_for_sync

__all__ = [
    "AgentInfo",
    "base_install",
    "command_exists",
    "hostctl_local",
    "init_agent",
    "prepare_operator_on_shell",
    "restart_status_by_hand",
    "shell_role",
]

PACKAGES = ("zstd", "rsyslog", "rsyslog-gnutls")   # beside docker.io; what `install --host` adds
OPERATOR_KEY_ON_SHELL = "/home/admin/.ssh/id_ed25519"
KNOWN_HOSTS_ON_SHELL = "/home/admin/.ssh/known_hosts"
HOSTCTL_TIMEOUT = 600.0


@functools.cache
def command_exists(name: str) -> bool:
    """Whether this checkout's ``convocate-host`` has the command ``name``."""
    r = subprocess.run([sys.executable, "-m", "hostctl", name, "--help"], capture_output=True,
                       timeout=60, check=False)
    return r.returncode == 0


def hostctl_local(*args: str, timeout: float = HOSTCTL_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run ``convocate-host ARGS`` on the test machine; raise with its output when it fails."""
    argv = [sys.executable, "-m", "hostctl", *args]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if r.returncode != 0:
        raise RemoteError(f"convocate-host {' '.join(args[:2])} exited {r.returncode}\n"
                          f"stdout: {r.stdout[-3000:]}\nstderr: {r.stderr[-3000:]}")
    return r


def _host_options(host: Host) -> list[str]:
    return ["--host", host.address, "--user", host.user, "--key", str(host.key),
            "--known-hosts", str(host.known_hosts)]


def base_install(host: Host, wheelhouse: Path) -> str:
    """Docker (vfs), the packages and convocate on ``host``; ``convocate-host install`` when it exists.

    The engine's ``daemon.json`` (vfs: no overlay inside a container) is the machine's own
    configuration, written before docker.io is installed, as a provider's image would have it.
    Returns how it was installed ("install --host" or "wheelhouse").
    """
    config = json.dumps(DAEMON_JSON)
    host.sudo(f"install -d -m 755 /etc/docker && printf '%s\\n' '{config}' > /etc/docker/daemon.json")
    if command_exists("install"):
        hostctl_local("install", *_host_options(host))
        install_docker(host)   # finds it installed; waits until the engine answers
        how = "install --host"
    else:
        install_docker(host)
        host.sudo("DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "
                  + " ".join(PACKAGES), timeout=600)
        install_convocate(host, wheelhouse)
        for tool in ("convocate", "convocate-host"):
            host.sudo(f"ln -sf {VENV}/bin/{tool} /usr/local/bin/{tool}")
        how = "wheelhouse"
    # The Claude CLI the agent mounts into sessions (a stand-in: the offline image needs no CLI).
    host.sudo(f"test -x /usr/local/bin/claude || {{ printf %s {shlex.quote(CLAUDE_STAND_IN)} "
              "> /usr/local/bin/claude && chmod 755 /usr/local/bin/claude; }")
    return how


def shell_role(shell: Host, image: str) -> str:
    """The shell role on ``shell``: ``init-shell --host`` when it exists, else by hand.

    ``image`` (the offline session image) is loaded into the shell's engine as
    ``convocate:<version>``, the tag ``init-agent`` pushes by default. Returns how.
    """
    load_image(shell, image, as_tag=f"convocate:{VERSION}")
    if command_exists("init-shell"):
        # `--base offline` builds the offline test image from the host's busybox-static (init-shell
        # says so when it is missing; `install --host` does not add it: the production image needs
        # none of it).
        shell.sudo("DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "
                   "busybox-static", timeout=600)
        # Agents reach the listener at the shell's address on the fleet's network; the session
        # image is the offline one (already loaded under its content tag, so not rebuilt).
        hostctl_local("init-shell", *_host_options(shell), "--log-name", shell.internal_ip,
                      "--base", "offline")
        how = "init-shell --host"
    else:
        shell_role_by_hand(shell)
        how = "by hand (no init-shell yet)"
    return how


# The README's shell-host commands, then the rsyslog listener that init-shell will install.
_LISTENER = (
    "from pathlib import Path; from common import defaults; from common.paths import atomic_write; "
    "from hostctl.logforward import Listener, render_listener; "
    "atomic_write(defaults.LOG_SHELL_DROPIN, render_listener(Listener()), mode=0o644)"
)


def shell_role_by_hand(shell: Host) -> None:
    """``convocate install``, the log CA and server certificate, the listener; status started."""
    shell.sudo("convocate install --no-image", timeout=180)
    shell.sudo("convocate-host logs init-ca")
    shell.sudo(f"convocate-host logs issue-server-cert --name {shell.internal_ip} --name {shell.name}")
    shell.sudo(f"{HOST_PYTHON} -c {shlex.quote(_LISTENER)} && systemctl restart rsyslog")


def restart_status_by_hand(shell: Host) -> None:
    """Without init-shell the status service started before its host key existed (init-agent
    makes it): start it again now that the key is there."""
    shell.sudo("systemctl reset-failed convocate-status.service; systemctl restart convocate-status.service")
    wait_for_sync(lambda: unit_state(shell, "convocate-status.service") == "active", timeout=60, interval=0.5)


def prepare_operator_on_shell(shell: Host, agents: list[Host]) -> None:
    """The operator's key and the agent hosts' pinned host keys in admin's ``~/.ssh`` on the shell."""
    shell.run(f"umask 077 && cat > {OPERATOR_KEY_ON_SHELL}", stdin=shell.key.read_text())
    lines = []
    for agent in agents:
        key = agent.docker_exec("cat /etc/ssh/ssh_host_ed25519_key.pub").stdout.strip()
        lines.append(known_hosts_line(agent.internal_ip, 22, key))
    shell.run(f"umask 077 && cat > {KNOWN_HOSTS_ON_SHELL}", stdin="\n".join(lines) + "\n")


@dataclass(frozen=True)
class AgentInfo:
    """An agent as init-agent reported it."""

    host: Host
    agent_id: str
    report: dict[str, object]


def init_agent(shell: Host, agent: Host) -> AgentInfo:
    """``sudo -n convocate-host init-agent --host <agent> --status-address <shell> --json`` on the shell."""
    out = shell.sudo(
        f"convocate-host init-agent --host {agent.internal_ip} --status-address {shell.internal_ip} "
        f"--user {agent.user} --key {OPERATOR_KEY_ON_SHELL} --known-hosts {KNOWN_HOSTS_ON_SHELL} --json",
        timeout=HOSTCTL_TIMEOUT).stdout
    report = json.loads(out.strip().splitlines()[-1])
    agent_id = agent.run("cat /etc/convocate-agent/agent-id").stdout.strip()
    wait_for_sync(lambda: unit_state(agent, "convocate-agent.service") == "active", timeout=60, interval=0.5)
    return AgentInfo(agent, agent_id, report)
