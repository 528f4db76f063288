"""``convocate-agent serve``: wires the agent together and runs it until a signal.

The caller passes the container runtime (Docker in production, the fake in tests).
Start order: uid check, agent id, session re-adoption and the Docker
events follower, the gRPC server on its UNIX socket, the SSH server, then systemd
``READY=1`` (and the watchdog pings when ``WatchdogSec`` is set).

Stop: the first SIGTERM/SIGINT ends every viewer with AGENT_SHUTDOWN and every watch or log
follow stream with UNAVAILABLE ("the agent is stopping"), stops gRPC with a
grace period and closes SSH; a second signal exits at once. Containers are never
stopped by the agent stopping.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Protocol

from convocate.v1 import attach_pb2_grpc, link_pb2, sessions_pb2_grpc

from agent.attach_channel import AttachChannels
from agent.attach_manager import AttachManager
from agent.attach_service import AttachService
from agent.config import AgentConfig
from agent.event_hub import EventHub
from agent.events import AgentEvent, EventSink, EventType, InboundLinkTracker
from agent.health import DiskThresholds, HealthMonitor
from agent.identity import load_or_create_agent_id
from agent.manager import SessionManager
from agent.runtime import ContainerRuntime
from agent.sd_notify import notify, watchdog_interval, watchdog_loop
from agent.sessions_service import SessionsService
from agent.status_emitter import StatusEmitter
from agent.viewers import ViewerRegistry
from common.domain import HostHealth, host_health_attributes
from common.errors import FailedPreconditionError, PermissionDeniedError
from common.grpc_server import Service, UnixGrpcServer
from common.logging import get_logger
from common.ssh_server import SSHServerSettings, SSHSocketServer
from common.tasks import TaskSet
from common.tunnel import TunnelSettings
from common.version import VERSION

__all__ = ["check_uid", "serve", "socket_in_use"]

log = get_logger(__name__)
GRPC_GRACE = 3.0


def check_uid(config: AgentConfig, uid: int | None = None) -> None:
    """Refuse to run under the wrong uid (unless the check is disabled).

    Raises:
        PermissionDeniedError: the message names the expected uid.
    """
    current = os.getuid() if uid is None else uid
    if config.uid_check_enabled and current != config.expected_uid:
        raise PermissionDeniedError(
            f'must run as user "claude" (uid {config.expected_uid}), currently uid {current} '
            "— try: sudo -u claude convocate-agent serve"
        )


class _Emitter(EventSink, Protocol):
    """What the server needs of the status emitter (``agent.status_emitter.StatusEmitter``)."""

    async def start(self) -> None:
        """Connect and start sending."""

    async def close(self) -> None:
        """Send agent.shutdown (bounded) and disconnect."""

    def status_link(self) -> link_pb2.LinkState:
        """The emitter's view of the agent -> shell link."""
        ...


def _status_emitter(config: AgentConfig, agent_id: str, tracker: InboundLinkTracker,
                    health: HealthMonitor) -> _Emitter | None:
    """The status emitter when a status target is configured."""
    if not config.status_host:
        log.info("status emitter disabled: no status_host configured")
        return None
    if config.status_client_key is None or config.status_known_hosts is None:
        log.warning("status emitter disabled: status_client_key and status_known_hosts are required")
        return None
    settings = TunnelSettings(
        name="status", host=config.status_host, port=config.status_port,
        client_key=config.status_client_key, known_hosts=config.status_known_hosts,
        local_socket=config.runtime_dir / "status" / "status.sock",
    )
    emitter: _Emitter = StatusEmitter(agent_id, VERSION, settings,
                                      heartbeat_interval=config.heartbeat_interval, tracker=tracker,
                                      health=lambda: health.current)
    return emitter


class _Signals:
    """First signal: graceful stop. Second: exit at once."""

    def __init__(self, stop: asyncio.Event) -> None:
        self.stop = stop

    def __call__(self, signum: int) -> None:
        if self.stop.is_set():
            log.warning("second signal: exiting now", signal=signal.Signals(signum).name)
            os._exit(128 + signum)
        log.info("stopping", signal=signal.Signals(signum).name)
        self.stop.set()


@contextlib.contextmanager
def _signal_handlers(stop: asyncio.Event) -> Iterator[None]:
    """SIGTERM/SIGINT set ``stop`` (a second one exits) while the block runs."""
    loop = asyncio.get_running_loop()
    handler = _Signals(stop)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, handler, sig)
    try:
        yield
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _close_quietly(close: Callable[[], Awaitable[object]], what: str, timeout: float) -> None:
    """Run one shutdown step, bounded; a failure is logged and the shutdown goes on."""
    try:
        await asyncio.wait_for(close(), timeout)
    except Exception as e:  # one failed step must not skip the others
        log.warning("shutdown step failed", step=what, error=f"{type(e).__name__}: {e}")


async def serve(config: AgentConfig, runtime: ContainerRuntime, stop: asyncio.Event | None = None) -> None:
    """Run the agent on ``runtime`` until ``stop`` is set or SIGTERM/SIGINT arrives.

    The caller owns ``runtime`` (``convocate-agent serve`` passes the Docker runtime, tests
    the fake one) and closes it after this returns. Everything started here is entered
    into one exit stack, so it stops in the reverse order: viewers (end frames), watch and
    log-follow streams, gRPC (grace for the calls in flight), SSH, events, the attach
    manager, the status emitter, the watchdog.

    Args:
        config: the agent configuration.
        runtime: the container runtime the sessions run on.
        stop: an event that ends the agent (tests); signals set it too.

    Raises:
        PermissionDeniedError: wrong uid.
        FailedPreconditionError: another agent serves on the socket, or the agent id cannot
            be read or created.
    """
    check_uid(config)
    if socket_in_use(config.socket_path):
        raise FailedPreconditionError(f"another agent is already serving on {config.socket_path}")
    stop = stop or asyncio.Event()
    agent_id = load_or_create_agent_id(config.agent_id_path)
    hub, tracker, registry = EventHub(config.watch_queue_size), InboundLinkTracker(), ViewerRegistry()
    attach = AttachManager(runtime, registry, user=config.container_user,
                           buffer_chunks=config.viewer_buffer_chunks, slow_timeout=config.slow_viewer_timeout,
                           prime_ttl=config.viewer_prime_ttl)
    health = HealthMonitor(runtime, config.sessions_root, interval=config.health_interval,
                           thresholds=DiskThresholds(config.disk_low_bytes, config.disk_low_percent))

    def health_changed(h: HostHealth) -> None:
        hub.publish(AgentEvent(EventType.AGENT_HEALTH, attributes=host_health_attributes(h)))

    health.add_listener(health_changed)
    manager = SessionManager(config, runtime, agent_id=agent_id, events=hub, registry=registry, attach=attach,
                             health=health)
    emitter = _status_emitter(config, agent_id, tracker, health)
    async with contextlib.AsyncExitStack() as stack:
        stack.enter_context(_signal_handlers(stop))
        stack.callback(log.info, "agent stopped")
        tasks = await stack.enter_async_context(TaskSet("agent"))
        if emitter is not None:
            hub.add_sink(emitter)
            stack.push_async_callback(_close_quietly, emitter.close, "status emitter", 10)
            await emitter.start()
        stack.push_async_callback(attach.close)
        stack.push_async_callback(manager.close)
        records, running = await manager.start()
        stack.push_async_callback(health.close)
        await health.start()
        log.info("sessions adopted", agent_id=agent_id, sessions=len(records), running=len(running))
        attach_service = AttachService(manager, attach)
        # Attach streams on the in-process SSH channel: the same servicer, without gRPC's hops.
        channels = AttachChannels(attach_service)
        stack.push_async_callback(channels.aclose)      # after SSH closed every channel
        ssh = SSHSocketServer(SSHServerSettings(
            host=config.listen_host, port=config.listen_port, host_key=config.host_key_path,
            authorized_keys=config.authorized_keys_path, socket_path=config.socket_path,
            banner="convocate-agent", host_key_comment=f"convocate-agent-{agent_id}",
            attach_channel=channels,
        ))
        stack.push_async_callback(_close_quietly, ssh.wait_closed, "ssh", 5)
        stack.callback(ssh.close)  # after gRPC's grace: calls in flight come through SSH
        sessions = SessionsService(manager, hub, tracker, emitter.status_link if emitter else None,
                                   health=lambda: health.current)
        grpc_server = UnixGrpcServer(config.socket_path, [
            Service("convocate.v1.Sessions", sessions_pb2_grpc.add_SessionsServicer_to_server, sessions),
            Service("convocate.v1.Attach", attach_pb2_grpc.add_AttachServicer_to_server, attach_service),
        ])
        await grpc_server.start()
        stack.push_async_callback(grpc_server.stop, GRPC_GRACE)
        # Before the grace: the streams that never end by themselves end now (UNAVAILABLE, "watch
        # again"), so the grace waits only for calls that do; a stop takes well under a second.
        stack.callback(manager.event_log.close)
        stack.callback(hub.close)
        await ssh.start()
        stack.push_async_callback(attach.shutdown)  # first: viewers get their end frames
        log.info("agent serving", agent_id=agent_id, host=config.listen_host, port=ssh.port,
                 socket=str(config.socket_path), version=VERSION)
        notify(f"READY=1\nSTATUS=serving {len(records)} session(s) on port {ssh.port}")
        if (interval := watchdog_interval()) is not None:
            tasks.create_task(watchdog_loop(interval), name="watchdog")
        await stop.wait()
        notify("STOPPING=1")


def socket_in_use(path: Path) -> bool:
    """True if something already accepts connections on ``path`` (another agent)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True
