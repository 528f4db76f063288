"""The status service process: SSH :223 guarding the publish socket, and a local socket.

Two gRPC sockets serve one :class:`StatusView`. The publish socket (``publish_socket``,
Publish only, requests at most 64 KiB) is the only one the SSH server opens, and every
stream on it is bound to the agent its SSH key names (:mod:`shell.status.identity`).
The local socket (``socket``: Watch, GetView, ReportLink, AskAgents) is for the console
and other clients on this host; no SSH channel reaches it.

``convocate status serve`` calls :func:`serve_status` (tests and the demo run it as
``python -m shell.main status serve --config FILE``). Configuration comes from the
``[status]`` table through :func:`common.config.load` (flags > ``CONVOCATE_STATUS_*``
env > TOML > the defaults of :class:`StatusConfig`).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import TYPE_CHECKING

from common.client.agent_client import ClientSettings
from common.grpc_server import UnixGrpcServer
from common.logging import get_logger
from common.ssh_server import SSHServerSettings, SSHSocketServer
from common.tasks import cancel_and_wait
from shell.status.ask import AgentAsker
from shell.status.config import StatusConfig
from shell.status.identity import AgentKeys, PublishGate
from shell.status.link_prober import REPORTER, LinkProber
from shell.status.service import local_service, publish_service
from shell.status.view import StatusView

if TYPE_CHECKING:
    from shell.status.webhook import InputWebhook

__all__ = ["PUBLISH_MAX_RECEIVE", "StatusConfig", "StatusServer", "serve_status"]

PUBLISH_MAX_RECEIVE = 64 * 1024  # one event from an agent, at most

log = get_logger(__name__)


class StatusServer:
    """The view, the gRPC server on the status socket and the SSH server in front of it."""

    def __init__(self, config: StatusConfig) -> None:
        self.config = config
        self.prober: LinkProber | None = None
        self.view = StatusView(config.heartbeat_budget, registered=self._registered)
        self.gate = PublishGate(AgentKeys(config.authorized_keys), config.publish_path)

        self.publish = UnixGrpcServer(config.publish_path, [publish_service(self.view, self.gate.agent_of)],
                                      max_receive=PUBLISH_MAX_RECEIVE)
        self.ssh = SSHSocketServer(SSHServerSettings(
            host=config.host, port=config.port, host_key=config.host_key,
            authorized_keys=config.authorized_keys, socket_path=config.publish_path,
            banner="convocate", host_key_comment="convocate-status-host",
            keepalive_interval=config.ssh_keepalive_interval, open_socket=self.gate.open,
        ))
        self._ticker: asyncio.Task[None] | None = None
        self.webhook: InputWebhook | None = None
        if config.webhook is not None:
            # aiohttp (some 90 modules, 8 MiB resident) is loaded only by a service with a webhook.
            from shell.status.webhook import InputWebhook  # noqa: PLC0415
            self.webhook = InputWebhook(config.webhook, self.view)
        if config.registry_dir is not None:
            interval = config.heartbeat_interval
            self.prober = LinkProber(config.registry_dir, ClientSettings(
                runtime_dir=config.probe_sockets, heartbeat_interval=interval,
                call_timeout=min(10.0, interval), backoff_max=min(30.0, max(1.0, 2 * interval)),
                client_id=REPORTER,
            ), self.view)
        self.asker = (AgentAsker(self.prober, self.prober.settings.call_timeout)
                      if self.prober is not None else None)
        self.grpc = UnixGrpcServer(config.socket, [local_service(self.view, self.asker)])

    def _registered(self) -> set[str]:
        """The registered agents (those the prober pings) and the agents with keys."""
        keys = set(self.gate.keys.agent_ids())
        return keys | set(self.prober.clients) if self.prober is not None else keys

    async def start(self) -> None:
        """Start both gRPC servers, then SSH, then the staleness ticker."""
        await self.grpc.start()
        try:
            await self.publish.start()
            await self.ssh.start()
        except BaseException:
            await self.publish.stop(grace=0)
            await self.grpc.stop(grace=0)
            raise
        self._ticker = asyncio.create_task(self._tick(), name="status-staleness")
        if self.webhook is not None:
            await self.webhook.start()
        if self.prober is not None:
            await self.prober.start()
        log.info("status service ready", port=self.ssh.port, socket=str(self.config.socket),
                 heartbeat_budget=self.config.heartbeat_budget)

    async def _tick(self) -> None:
        period = max(0.05, min(5.0, self.config.heartbeat_budget / 10))
        while True:
            await asyncio.sleep(period)
            self.view.check_staleness()

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting agents, let calls in flight finish for ``grace`` s, stop."""
        if self.prober is not None:
            await self.prober.close()
        if self.webhook is not None:
            await self.webhook.close()
        if self._ticker is not None:
            await cancel_and_wait([self._ticker])
            self._ticker = None
        self.ssh.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self.ssh.wait_closed()
        grace = self.config.grace if grace is None else grace
        await self.publish.stop(grace)
        await self.grpc.stop(grace)
        log.info("status service stopped")

    async def __aenter__(self) -> StatusServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop(grace=0)


async def serve_status(config: StatusConfig) -> None:
    """Run the status service until SIGTERM/SIGINT (a second signal stops at once).

    Args:
        config: the service's configuration.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    main_task = asyncio.current_task()

    def on_signal() -> None:
        if stop.is_set() and main_task is not None:
            main_task.cancel()  # second signal: no more grace
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    server = StatusServer(config)
    await server.start()
    try:
        await stop.wait()
        log.info("status service stopping", grace=config.grace)
    finally:
        await server.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
