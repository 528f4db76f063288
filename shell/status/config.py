"""The status service's configuration: where it listens, what it trusts, where its sockets are.

Its own module, light to import (the standard library and :mod:`common.defaults`):
``convocate-host`` reads it, loaded as the service loads it (:func:`common.config.load`,
the ``[status]`` table), to find the status service's standing tunnels to the agents
(:attr:`StatusConfig.probe_sockets`) without loading the service.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from common.defaults import (
    AGENT_KEYS_DIR,
    STATUS_AUTHORIZED_KEYS,
    STATUS_HOST_KEY,
    STATUS_PORT,
    STATUS_SOCKET,
)

if TYPE_CHECKING:
    from shell.status.webhook import WebhookSettings

__all__ = ["DEFAULT_TEMPLATE", "StatusConfig"]

DEFAULT_TEMPLATE = ('{"text": "convocate: session \\"{name}\\" on {agent} needs input ({reason}), '
                    'waiting {wait}"}')


@dataclass(frozen=True)
class StatusConfig:
    """Where the status service listens and what it trusts."""

    host: str = "0.0.0.0"  # noqa: S104 - agents on other hosts connect here (SSH, key-only)
    port: int = STATUS_PORT
    host_key: Path = STATUS_HOST_KEY
    authorized_keys: Path = STATUS_AUTHORIZED_KEYS
    socket: Path = STATUS_SOCKET          # local only: Watch, GetView, ReportLink, AskAgents
    publish_socket: Path | None = None   # what SSH opens (Publish only); default: beside ``socket``
    heartbeat_interval: float = 30.0     # the agents' heartbeat interval
    heartbeat_budget_factor: float = 2.5  # stale after this many missed intervals
    ssh_keepalive_interval: float = 15.0
    grace: float = 5.0                   # seconds for calls in flight at SIGTERM
    # The agent registry: the service pings every agent itself (shell -> agent health
    # without a console). None or a missing directory: rely on the consoles' reports.
    registry_dir: Path | None = AGENT_KEYS_DIR
    probe_dir: Path | None = None        # its tunnel sockets; default: beside the socket
    # The needs-input webhook (shell.status.webhook): off while the URL is empty.
    webhook_url: str = ""
    webhook_template: str = DEFAULT_TEMPLATE
    webhook_content_type: str = "application/json"
    webhook_per_minute: int = 30
    webhook_timeout: float = 10.0
    webhook_attempts: int = 5

    @property
    def webhook(self) -> WebhookSettings | None:
        """The webhook's settings (None: no webhook)."""
        if not self.webhook_url:
            return None
        from shell.status.webhook import WebhookSettings  # noqa: PLC0415 - aiohttp: the service only
        return WebhookSettings(url=self.webhook_url, template=self.webhook_template,
                               content_type=self.webhook_content_type, per_minute=self.webhook_per_minute,
                               timeout=self.webhook_timeout, attempts=self.webhook_attempts)

    @property
    def publish_path(self) -> Path:
        """The socket the SSH server forwards agents to."""
        return self.publish_socket or self.socket.parent / "publish.sock"

    @property
    def probe_sockets(self) -> Path:
        """Where the prober's tunnel sockets go."""
        return self.probe_dir or self.socket.parent / "probe"

    @property
    def heartbeat_budget(self) -> float:
        """Seconds without a heartbeat before an agent is marked stale."""
        return self.heartbeat_interval * self.heartbeat_budget_factor
