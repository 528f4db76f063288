"""How a session becomes a container: name, labels, mounts, env, port, DNS, confinement (pure).

Mounts and environment follow inventory §5.2, with the Docker socket opt-in
(``mount_docker_socket``) instead of always on, and labels naming session and agent.
Only the session's home is mounted, never the directory holding its record.

Confinement (security review, finding 4): every capability is dropped except
:data:`SESSION_CAPABILITIES`, which only the entrypoint uses while it is still root, to
become the session user (``CLAUDE_UID``/``CLAUDE_GID``, never 0). The session itself then
runs without any capability, with ``no-new-privileges`` (setuid files and file
capabilities give nothing, in the home or elsewhere) and a PID limit. Without MKNOD no
process in the container can make a device node.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

from agent.cli_settings import HOOK_SPOOL
from agent.config import AgentConfig
from agent.runtime import ContainerSpec, Mount
from agent.sessions import (
    AGENT_LABEL,
    SESSION_LABEL,
    SessionRecord,
    container_hostname,
    container_name,
)

__all__ = ["SESSION_CAPABILITIES", "container_spec", "host_dns_address", "read_current_image"]

HOME = "/home/claude"

# Kept for the entrypoint (deploy/docker/entrypoint.sh; the offline image's is smaller):
SESSION_CAPABILITIES = (
    "CHOWN",        # it chowns /home/claude to the session user
    "SETUID",       # it switches to the session user (su / sudo -u claude)
    "SETGID",       # ... with the user's groups (setgid, setgroups)
    "AUDIT_WRITE",  # sudo writes an audit record for that switch and fails if it cannot
)


def read_current_image(config: AgentConfig) -> str:
    """The trimmed content of the current-image pointer, else the configured default.

    Read at every start, so a new pointer applies to the next (re)start without an
    agent restart.
    """
    try:
        text = config.current_image_path.read_text().strip()
    except OSError:
        text = ""
    return text or config.image


def host_dns_address() -> str:
    """The host's first non-loopback IPv4 address (``127.0.0.1`` if there is none)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            # No packet is sent: connect() on UDP only picks the outgoing address.
            s.connect(("192.0.2.1", 53))
            addr = str(s.getsockname()[0])
        except OSError:
            addr = ""
    return addr if addr and not addr.startswith("127.") else "127.0.0.1"


def container_spec(
    config: AgentConfig,
    record: SessionRecord,
    *,
    agent_id: str,
    image: str,
    session_dir: Path,
    exists: Callable[[Path], bool] = os.path.exists,
    dns_address: Callable[[], str] = host_dns_address,
    hooks_dir: Path | None = None,
) -> ContainerSpec:
    """Build the container specification of ``record``.

    Args:
        config: the agent configuration.
        record: the session.
        agent_id: this agent's id (a label).
        image: the image to run (from :func:`read_current_image`).
        session_dir: the session's home on the host (mounted as ``/home/claude``).
        exists: path probe (optional mounts are added only when the source exists).
        dns_address: how ``dns_server = "auto"`` is resolved.
        hooks_dir: the session's hook spool on the host, mounted at ``HOOK_SPOOL`` (agent.activity).

    Returns:
        The spec handed to the container runtime.
    """
    claude_home = config.sessions_root
    uid, gid = config.session_owner
    mounts = [
        Mount(str(session_dir), HOME),
        Mount(str(config.claude_config_path), f"{HOME}/.claude-shared", read_only=True),
    ]
    if hooks_dir is not None:
        mounts.append(Mount(str(hooks_dir), HOOK_SPOOL))
    if config.mount_docker_socket:
        mounts.append(Mount(str(config.docker_socket), "/var/run/docker.sock"))
    for source, target in ((claude_home / ".ssh", f"{HOME}/.ssh"),
                           (claude_home / ".gitconfig", f"{HOME}/.gitconfig"),
                           (config.claude_cli, "/usr/local/bin/claude")):
        if exists(source):
            mounts.append(Mount(str(source), target, read_only=True))
    dns: tuple[str, ...] = ()
    if config.dns_server == "auto":
        dns = (dns_address(),)
    elif config.dns_server:
        dns = (config.dns_server,)
    return ContainerSpec(
        name=container_name(record.id),
        session_id=record.id,
        image=image,
        hostname=container_hostname(record.id),
        labels={SESSION_LABEL: record.id, AGENT_LABEL: agent_id},
        command=tuple(config.session_command),
        workdir=HOME,
        mounts=tuple(mounts),
        env={"CLAUDE_UID": str(uid), "CLAUDE_GID": str(gid),
             "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"},
        port=record.port,
        protocol=record.protocol,
        dns=dns,
        cgroup_parent=config.cgroup_parent,
        cap_add=SESSION_CAPABILITIES,
        pids_limit=config.pids_limit,
    )
