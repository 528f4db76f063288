"""ShellConfig: where the console and the shell-side services find their files.

Loaded by :func:`common.config.load` from the ``[shell]`` table, so the precedence is
flags > ``CONVOCATE_SHELL_*`` env > TOML > the defaults below. ``expected_uid`` is the
only uid allowed to run the console (the ``claude`` user, 1337 in production); ``-1``
turns the check off (tests and the demo).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.config import load
from common.defaults import AGENT_KEYS_DIR, DNSMASQ_HOSTS_FILE, STATUS_SOCKET
from common.errors import PermissionDeniedError
from common.session_rules import DEFAULT_DNS_ZONE

__all__ = ["DEFAULT_UID", "ShellConfig", "check_uid", "load_shell_config"]

DEFAULT_UID = 1337


def _default_log() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "convocate" / "console.log"


@dataclass(frozen=True)
class ShellConfig:
    """Shell-host settings (console, status service, router)."""

    registry_dir: Path = AGENT_KEYS_DIR
    status_socket: Path = STATUS_SOCKET
    log_file: Path | None = None          # default: $XDG_STATE_HOME/convocate/console.log
    expected_uid: int = DEFAULT_UID       # -1: no check
    orphans_root: Path = Path("/home/claude")
    dnsmasq_hosts: Path | None = DNSMASQ_HOSTS_FILE   # None: no DNS records
    dnsmasq_pidfile: Path | None = None   # SIGHUP dnsmasq after each write (needs permission)
    dns_zone: str = DEFAULT_DNS_ZONE      # as the agents' dns_zone: names outside it get no record
    runtime_dir: Path | None = None       # tunnel sockets; default $XDG_RUNTIME_DIR or /tmp
    user: str = "claude"
    bell: bool = False                    # the console rings the terminal bell when a session needs input

    @property
    def runtime_base(self) -> Path:
        """Where each console makes its private directory of tunnel sockets."""
        return self.runtime_dir or Path(os.environ.get("XDG_RUNTIME_DIR") or "/tmp")  # noqa: S108

    @property
    def console_log(self) -> Path:
        """The console's log file (never the screen)."""
        return self.log_file or _default_log()


def load_shell_config(config_file: Path | None = None, **overrides: Any) -> ShellConfig:
    """Load :class:`ShellConfig` (flags given as keyword overrides; None = not given).

    Args:
        config_file: an explicit TOML file (``--config``).
        **overrides: flag values by field name.

    Returns:
        The configuration.
    """
    return load(ShellConfig, "shell", config_file=config_file, overrides=overrides)


def check_uid(config: ShellConfig, uid: int | None = None) -> None:
    """Refuse to run the console under any uid but ``config.expected_uid``.

    Raises:
        PermissionDeniedError: naming the expected uid and how to get there.
    """
    if config.expected_uid < 0:
        return
    actual = os.getuid() if uid is None else uid
    if actual != config.expected_uid:
        raise PermissionDeniedError(
            f"the console runs as the {config.user} user (uid {config.expected_uid}), not uid "
            f"{actual}: log in as {config.user} (ssh {config.user}@<shell-host>) or run "
            f"'sudo -u {config.user} convocate'; set CONVOCATE_SHELL_EXPECTED_UID=-1 to disable "
            "this check for tests"
        )
