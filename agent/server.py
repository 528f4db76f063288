"""``convocate-agent serve``: wires the agent together and runs it until a signal.

Start order: uid check, agent id, Docker runtime, session re-adoption and the Docker
events follower, the gRPC server on its UNIX socket, the SSH server, then systemd
``READY=1`` (and the watchdog pings when ``WatchdogSec`` is set).

Stop: the first SIGTERM/SIGINT ends every viewer with AGENT_SHUTDOWN, stops gRPC with a
grace period and closes SSH; a second signal exits at once. Containers are never
stopped by the agent stopping.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from pathlib import Path
from typing import Protocol

from convocate.v1 import attach_pb2_grpc, link_pb2, sessions_pb2_grpc

from agent.attach_manager import AttachManager
from agent.attach_service import AttachService
from agent.config import AgentConfig
from agent.docker_runtime import DockerRuntime
from agent.event_hub import EventHub
from agent.events import EventSink, InboundLinkTracker
from agent.identity import load_or_create_agent_id
from agent.manager import SessionManager
from agent.sd_notify import notify, watchdog_interval, watchdog_loop
from agent.sessions_service import SessionsService
from agent.viewers import ViewerRegistry
from common.errors import FailedPreconditionError, PermissionDeniedError
from common.grpc_server import Service, UnixGrpcServer
from common.logging import get_logger
from common.ssh_server import SSHServerSettings, SSHSocketServer
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


def _status_emitter(config: AgentConfig, agent_id: str, tracker: InboundLinkTracker) -> _Emitter | None:
    """The status emitter when a status target is configured (imported only then)."""
    if not config.status_host:
        log.info("status emitter disabled: no status_host configured")
        return None
    if config.status_client_key is None or config.status_known_hosts is None:
        log.warning("status emitter disabled: status_client_key and status_known_hosts are required")
        return None
    try:
        from agent.status_emitter import StatusEmitter  # noqa: PLC0415 - optional component
    except ImportError as e:
        log.warning("status emitter disabled: not available", error=str(e))
        return None
    settings = TunnelSettings(
        name="status", host=config.status_host, port=config.status_port,
        client_key=config.status_client_key, known_hosts=config.status_known_hosts,
        local_socket=config.runtime_dir / "status" / "status.sock",
    )
    emitter: _Emitter = StatusEmitter(agent_id, VERSION, settings,
                                      heartbeat_interval=config.heartbeat_interval, tracker=tracker)
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


async def serve(config: AgentConfig, stop: asyncio.Event | None = None) -> None:
    """Run the agent until ``stop`` is set or SIGTERM/SIGINT arrives.

    Args:
        config: the agent configuration.
        stop: an event that ends the agent (tests); signals set it too.

    Raises:
        PermissionDeniedError: wrong uid.
        FailedPreconditionError: the agent id cannot be read or created.
    """
    check_uid(config)
    if socket_in_use(config.socket_path):
        raise FailedPreconditionError(f"another agent is already serving on {config.socket_path}")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    handler = _Signals(stop)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, handler, sig)
    agent_id = load_or_create_agent_id(config.agent_id_path)
    runtime = DockerRuntime(config.docker_url or None)
    hub, tracker, registry = EventHub(config.watch_queue_size), InboundLinkTracker(), ViewerRegistry()
    attach = AttachManager(runtime, registry, user=config.container_user,
                           buffer_chunks=config.viewer_buffer_chunks, slow_timeout=config.slow_viewer_timeout)
    manager = SessionManager(config, runtime, agent_id=agent_id, events=hub, registry=registry, attach=attach)
    emitter = _status_emitter(config, agent_id, tracker)
    watchdog: asyncio.Task[None] | None = None
    grpc_server: UnixGrpcServer | None = None
    ssh: SSHSocketServer | None = None
    try:
        if emitter is not None:
            hub.add_sink(emitter)
            await emitter.start()
        records, running = await manager.start()
        log.info("sessions adopted", agent_id=agent_id, sessions=len(records), running=len(running))
        sessions = SessionsService(manager, hub, tracker, emitter.status_link if emitter else None)
        grpc_server = UnixGrpcServer(config.socket_path, [
            Service("convocate.v1.Sessions", sessions_pb2_grpc.add_SessionsServicer_to_server, sessions),
            Service("convocate.v1.Attach", attach_pb2_grpc.add_AttachServicer_to_server,
                    AttachService(manager, attach)),
        ])
        await grpc_server.start()
        ssh = SSHSocketServer(SSHServerSettings(
            host=config.listen_host, port=config.listen_port, host_key=config.host_key_path,
            authorized_keys=config.authorized_keys_path, socket_path=config.socket_path,
            banner="convocate-agent", host_key_comment=f"convocate-agent-{agent_id}",
        ))
        await ssh.start()
        log.info("agent serving", agent_id=agent_id, host=config.listen_host, port=ssh.port,
                 socket=str(config.socket_path), version=VERSION)
        notify(f"READY=1\nSTATUS=serving {len(records)} session(s) on port {ssh.port}")
        if (interval := watchdog_interval()) is not None:
            watchdog = asyncio.create_task(watchdog_loop(interval), name="watchdog")
        await stop.wait()
        notify("STOPPING=1")
    finally:
        await _shutdown(attach, grpc_server, ssh, manager, emitter, runtime, watchdog)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _shutdown(
    attach: AttachManager,
    grpc_server: UnixGrpcServer | None,
    ssh: SSHSocketServer | None,
    manager: SessionManager,
    emitter: _Emitter | None,
    runtime: DockerRuntime,
    watchdog: asyncio.Task[None] | None,
) -> None:
    """Stop in order: viewers (end frames), gRPC (grace), SSH, events, emitter, Docker."""
    await attach.shutdown()
    if grpc_server is not None:
        await grpc_server.stop(GRPC_GRACE)
    if ssh is not None:
        ssh.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ssh.wait_closed(), 5)
    await manager.close()
    await attach.close()
    if emitter is not None:
        with contextlib.suppress(Exception):
            await emitter.close()
    if watchdog is not None:
        watchdog.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watchdog
    await runtime.close()
    log.info("agent stopped")


def socket_in_use(path: Path) -> bool:
    """True if something already accepts connections on ``path`` (another agent)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True
