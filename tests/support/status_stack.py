"""A real status service on loopback for tests, and the key material its agents need."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from convocate.v1 import status_pb2, status_pb2_grpc

from common.grpc_options import CLIENT_OPTIONS
from common.ssh_keys import add_authorized_key, generate_keypair, pin_host_key
from common.tunnel import TunnelSettings
from shell.status.identity import agent_key_comment
from shell.status.server import StatusConfig, StatusServer
from tests.support.net import free_port
from tests.support.waiting import assert_eventually

__all__ = ["StatusStack", "agent_status_keys", "fast_tunnel", "start_status_stack", "status_config",
           "write_status_toml"]

HOST = "127.0.0.1"


def fast_tunnel(**values: object) -> TunnelSettings:
    """TunnelSettings with test-sized keepalives, timeouts and backoff."""
    defaults: dict[str, object] = {
        "connect_timeout": 2.0, "keepalive_interval": 0.5, "keepalive_count_max": 3,
        "backoff_initial": 0.1, "backoff_max": 0.5,
    }
    defaults.update(values)
    return TunnelSettings(**defaults)  # type: ignore[arg-type]


def status_config(root: Path, heartbeat_interval: float = 0.5, port: int | None = None,
                  registry_dir: Path | None = None) -> StatusConfig:
    """A StatusConfig under ``root`` with a fresh host key, on a free loopback port.

    ``registry_dir`` turns on the service's own Pings to the registered agents.
    """
    root.mkdir(parents=True, exist_ok=True)
    host_key = root / "status_host_ed25519_key"
    if not host_key.exists():
        generate_keypair(host_key, "status-host")
    return StatusConfig(
        host=HOST, port=port or free_port(HOST), host_key=host_key,
        authorized_keys=root / "status_authorized_keys", socket=root / "run" / "status.sock",
        heartbeat_interval=heartbeat_interval, ssh_keepalive_interval=1.0, grace=1.0,
        registry_dir=registry_dir,
    )


def write_status_toml(config: StatusConfig, path: Path, registry: Path | None = None) -> Path:
    """``config`` as the ``[status]`` table of a config file (``convocate status serve --config``, and
    what ``convocate-host`` reads to find the service's tunnels); ``registry``: its registry_dir instead."""
    registry = registry or config.registry_dir
    path.write_text(
        "[status]\n"
        f'host = "{config.host}"\nport = {config.port}\nhost_key = "{config.host_key}"\n'
        f'authorized_keys = "{config.authorized_keys}"\nsocket = "{config.socket}"\n'
        f"heartbeat_interval = {config.heartbeat_interval}\ngrace = {config.grace}\n"
        + (f'registry_dir = "{registry}"\n' if registry is not None else 'registry_dir = ""\n'))
    return path


def agent_status_keys(
    config: StatusConfig, agent_root: Path, agent_id: str | None = None
) -> tuple[Path, Path]:
    """Mint an agent -> shell key, authorize it on the status service, pin the status host key.

    The key's allow-list line names ``agent_id`` (default: ``agent_root``'s name), as
    init-agent writes it: the status service binds the agent's stream to that id.

    Returns:
        (the agent's private key, the agent's known_hosts pinning the status service).
    """
    agent_root.mkdir(parents=True, exist_ok=True)
    key_path = agent_root / "agent_to_shell_ed25519_key"
    key = generate_keypair(key_path, agent_key_comment(agent_id or agent_root.name))
    add_authorized_key(config.authorized_keys, key)
    known = agent_root / "status_known_hosts"
    pin_host_key(known, config.host, config.port, Path(str(config.host_key) + ".pub").read_text())
    return key_path, known


@dataclass
class StatusStack:
    """An in-process status service and how to reach it."""

    root: Path
    config: StatusConfig
    server: StatusServer

    def agent_tunnel(self, agent_id: str, agent_root: Path) -> TunnelSettings:
        """The emitter's tunnel settings for a new agent (key minted and authorized)."""
        key, known = agent_status_keys(self.config, agent_root, agent_id)
        return fast_tunnel(name="status", host=self.config.host, port=self.config.port, client_key=key,
                           known_hosts=known, local_socket=agent_root / "run" / "status.sock")

    def channel(self) -> grpc.aio.Channel:
        """A local channel on the status socket (close it after use)."""
        return grpc.aio.insecure_channel(f"unix:{self.config.socket}", options=CLIENT_OPTIONS)

    async def view(self) -> status_pb2.View:
        """GetView through the socket."""
        async with self.channel() as ch:
            return await status_pb2_grpc.StatusStub(ch).GetView(status_pb2.GetViewRequest(), timeout=5)

    def health(self, agent_id: str) -> status_pb2.AgentHealth:
        """The agent's current health straight from the in-process view (must exist)."""
        h = self.server.view.health(agent_id)
        assert h is not None, f"the status service has never heard of {agent_id}"
        return h

    async def wait_health(
        self, agent_id: str, pred: Callable[[status_pb2.AgentHealth], bool], timeout: float = 10.0
    ) -> status_pb2.AgentHealth:
        """Wait until the agent's health satisfies ``pred``; return it."""

        found: list[status_pb2.AgentHealth] = []

        def check() -> bool:
            h = self.server.view.health(agent_id)
            if h is not None and pred(h):
                found.append(h)
                return True
            return False

        await assert_eventually(check, timeout=timeout)
        return found[-1]


async def start_status_stack(root: Path, heartbeat_interval: float = 0.5,
                             registry_dir: Path | None = None) -> StatusStack:
    """Start a status service under ``root`` (stop it with ``stack.server.stop()``)."""
    config = status_config(root, heartbeat_interval, registry_dir=registry_dir)
    server = StatusServer(config)
    await server.start()
    return StatusStack(root, config, server)
