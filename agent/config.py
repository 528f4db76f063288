"""The agent's configuration: one frozen dataclass; every path is configurable.

Loaded by :func:`load_agent_config` with the precedence of ``common.config``:
flags > ``CONVOCATE_AGENT_<FIELD>`` environment > the TOML ``[agent]`` table > defaults.
Defaults are the production layout (inventory §1.2, §2, §5); tests point every path
into a temporary directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.config import load
from common.defaults import AGENT_CONFIG_DIR, AGENT_PORT, AGENT_RUNTIME_DIR, SESSIONS_ROOT, STATUS_PORT

__all__ = ["DEFAULT_SESSION_COMMAND", "AgentConfig", "load_agent_config"]

DEFAULT_SESSION_COMMAND = ("/usr/local/bin/claude", "--dangerously-skip-permissions")


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
    authorized_keys: Path | None = None         # default: sessions_root/.ssh/authorized_keys
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
    mount_docker_socket: bool = False
    docker_socket: Path = Path("/var/run/docker.sock")
    docker_url: str = ""                        # "" = DOCKER_HOST or the default socket
    stop_timeout: int = 10
    # Status emitter (the shell's status service); empty host disables it.
    status_host: str = ""
    status_port: int = STATUS_PORT
    status_client_key: Path | None = None
    status_known_hosts: Path | None = None
    heartbeat_interval: float = 30.0
    # Limits.
    watch_queue_size: int = 1024
    viewer_buffer_chunks: int = 256
    slow_viewer_timeout: float = 10.0

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
        return self.authorized_keys or self.sessions_root / ".ssh" / "authorized_keys"

    @property
    def socket_path(self) -> Path:
        """The gRPC UNIX socket."""
        return self.runtime_dir / self.socket_name

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
