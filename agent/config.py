"""The agent's configuration: one frozen dataclass; every path is configurable.

Loaded by :func:`load_agent_config` with the precedence of ``common.config``:
flags > ``CONVOCATE_AGENT_<FIELD>`` environment > the TOML ``[agent]`` table > defaults.
Defaults are the production layout (inventory §1.2, §2, §5); tests point every path
into a temporary directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.config import load
from common.defaults import (
    AGENT_AUTHORIZED_KEYS_NAME,
    AGENT_CONFIG_DIR,
    AGENT_PORT,
    AGENT_RUNTIME_DIR,
    SESSIONS_ROOT,
    STATUS_PORT,
)
from common.errors import InvalidArgumentError
from common.session_rules import DEFAULT_DNS_ZONE

__all__ = ["DEFAULT_SESSION_COMMAND", "DEFAULT_SESSION_ID", "AgentConfig", "load_agent_config"]

DEFAULT_SESSION_COMMAND = ("/usr/local/bin/claude", "--dangerously-skip-permissions")
DEFAULT_SESSION_ID = 1337  # the session user's uid and gid when the agent itself runs as root


@dataclass(frozen=True)
class AgentConfig:
    """Everything ``convocate-agent serve`` and ``install`` read."""

    # Files under the agent's configuration directory.
    config_dir: Path = AGENT_CONFIG_DIR
    agent_id_file: Path | None = None           # default: config_dir/agent-id
    current_image_file: Path | None = None      # default: config_dir/current-image
    host_key: Path | None = None                # default: config_dir/ssh_host_ed25519_key
    # Sessions and what they share (the claude user's home in production).
    sessions_root: Path = SESSIONS_ROOT
    skel_dir: Path | None = None                # default: sessions_root/.skel
    claude_config_dir: Path | None = None       # default: sessions_root/.claude (mounted read-only)
    authorized_keys: Path | None = None         # default: config_dir/authorized_keys (not ~/.ssh)
    claude_cli: Path = Path("/usr/local/bin/claude")
    # Runtime: the gRPC socket lives in systemd's RuntimeDirectory.
    runtime_dir: Path = AGENT_RUNTIME_DIR
    socket_name: str = "agent.sock"
    listen_host: str = "0.0.0.0"  # noqa: S104 - the agent serves other hosts, through SSH only
    listen_port: int = AGENT_PORT
    # Who may run it: -1 (or empty) disables the check, for tests and the demo.
    expected_uid: int | None = 1337
    # Containers.
    image: str = "convocate:latest"             # used when the current-image pointer is missing
    session_command: tuple[str, ...] = DEFAULT_SESSION_COMMAND
    container_user: str = "claude"
    cgroup_parent: str = "convocate-sessions.slice"
    dns_server: str = "auto"                    # "auto": first non-loopback IPv4; "": none
    dns_zone: str = DEFAULT_DNS_ZONE            # session DNS names live under it ("": anywhere)
    mount_docker_socket: bool = False
    docker_socket: Path = Path("/var/run/docker.sock")
    docker_url: str = ""                        # "" = DOCKER_HOST or the default socket
    stop_timeout: int = 10
    # Confinement (security review, findings 2 and 4). The session user's uid/gid in the
    # container, who also owns its home on the host: -1 means the agent's own, or
    # DEFAULT_SESSION_ID when the agent runs as root (a session never runs as root).
    session_uid: int = -1
    session_gid: int = -1
    pids_limit: int = 1024                      # processes per session container (0: no limit)
    clone_max_bytes: int = 10 * 1024**3         # the most file content a Clone copies
    # Status emitter (the shell's status service); empty host disables it.
    status_host: str = ""
    status_port: int = STATUS_PORT
    status_client_key: Path | None = None
    status_known_hosts: Path | None = None
    heartbeat_interval: float = 30.0
    # Health (agent/health.py): the engine and host check, the disk thresholds, the alarm.
    health_interval: float = 5.0                # seconds between checks of the engine and host
    disk_low_bytes: int = 1024**3               # "disk nearly full" below this much free space...
    disk_low_percent: float = 5.0               # ...or below this share of the filesystem
    write_min_free_bytes: int = 16 * 1024**2    # create/clone/update refused below this ("disk full")
    mass_death_count: int = 3                   # this many sessions stopping unasked...
    mass_death_window: float = 60.0             # ...within this many seconds raise the alarm
    # Limits.
    watch_queue_size: int = 1024
    viewer_buffer_chunks: int = 256
    slow_viewer_timeout: float = 10.0
    viewer_prime_ttl: float = 20.0              # s a viewer started ahead after a start waits (0: none)

    @property
    def agent_id_path(self) -> Path:
        """Where the agent id is stored."""
        return self.agent_id_file or self.config_dir / "agent-id"

    @property
    def current_image_path(self) -> Path:
        """The current-image pointer file."""
        return self.current_image_file or self.config_dir / "current-image"

    @property
    def host_key_path(self) -> Path:
        """The SSH host key (created on first start)."""
        return self.host_key or self.config_dir / "ssh_host_ed25519_key"

    @property
    def skel_path(self) -> Path:
        """The skeleton copied into every new session directory."""
        return self.skel_dir or self.sessions_root / ".skel"

    @property
    def claude_config_path(self) -> Path:
        """The shared Claude configuration, mounted read-only into every session."""
        return self.claude_config_dir or self.sessions_root / ".claude"

    @property
    def authorized_keys_path(self) -> Path:
        """The keys allowed to open the agent's tunnel."""
        return self.authorized_keys or self.config_dir / AGENT_AUTHORIZED_KEYS_NAME

    @property
    def socket_path(self) -> Path:
        """The gRPC UNIX socket."""
        return self.runtime_dir / self.socket_name

    @property
    def session_owner(self) -> tuple[int, int]:
        """(uid, gid) of the session user: never root.

        Raises:
            InvalidArgumentError: ``session_uid`` or ``session_gid`` is 0.
        """
        if 0 in (self.session_uid, self.session_gid):
            raise InvalidArgumentError("session_uid/session_gid 0: a session never runs as root")
        own = (DEFAULT_SESSION_ID, DEFAULT_SESSION_ID) if os.getuid() == 0 else (os.getuid(), os.getgid())
        uid = self.session_uid if self.session_uid > 0 else own[0]
        gid = self.session_gid if self.session_gid > 0 else own[1]
        return uid, gid or DEFAULT_SESSION_ID

    @property
    def uid_check_enabled(self) -> bool:
        """False when ``expected_uid`` is None or negative."""
        return self.expected_uid is not None and self.expected_uid >= 0


def load_agent_config(config_file: Path | None = None, **overrides: Any) -> AgentConfig:
    """Load the agent configuration.

    Args:
        config_file: explicit TOML file (``--config``); else ``$CONVOCATE_CONFIG`` or
            ``/etc/convocate/convocate.toml`` when it exists.
        **overrides: flag values by field name; None means "not given".

    Returns:
        The frozen configuration.

    Raises:
        InvalidArgumentError: an unknown key or a value of the wrong type.
    """
    return load(AgentConfig, "agent", config_file=config_file, overrides=overrides)
