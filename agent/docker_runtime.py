"""The Docker Engine behind :class:`agent.runtime.ContainerRuntime` (the only aiodocker import).

Every ``DockerError`` and ``OSError`` is translated here, by the :func:`_docker_errors`
context manager around each engine call, into the domain error the caller acts on, with a
one-line message that says what to do. Facts this module designs around
(reference/transport-measurements.md): Engine 20.10 ignores the initial console size
(resize right after the exec starts); ``containers.run`` would try to pull (we create +
start); filters are JSON strings; the events stream has no reconnect of its own (we
resubscribe with ``since`` and resync).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gzip
import io
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
from aiodocker.events import DockerEvents
from aiodocker.exceptions import DockerError
from aiodocker.execs import Exec
from aiodocker.stream import Stream

from agent.runtime import ContainerEvent, ContainerInfo, ContainerSpec, ExecResult
from agent.sessions import SESSION_LABEL, container_name
from common.backoff import Backoff
from common.errors import (
    AlreadyExistsError,
    ConvocateError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
    UnavailableError,
)
from common.logging import get_logger

__all__ = ["DockerRuntime", "DockerTerminal"]

log = get_logger(__name__)
_CREATE_ATTEMPTS = 50  # a container removed by AutoRemove may still hold its name briefly


# What a person does when the engine does not answer, for every message that says so.
_ENGINE_DOWN = "the Docker Engine does not answer: start it with `systemctl start docker`"
_DISK_FULL = "the agent host's disk is full: free space under the Docker data root and retry"
_NO_CONNECTION = 900  # aiodocker's status for a connection that failed before any answer
_SOCKETS = (Path("/var/run/docker.sock"), Path("/run/docker.sock"))  # where an engine listens by default
_UNIX = "unix://"
_CONNECT_ERRNOS = {errno.ECONNREFUSED, errno.ENOENT, errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN}


def _engine_message(err: DockerError) -> str:
    """The engine's own message, as one line."""
    return " ".join(str(err.message).split())


def _translate(err: DockerError | OSError, what: str, missing: str) -> ConvocateError:
    """Map one Docker or OS error to the domain error for ``what`` (the one table)."""
    if isinstance(err, OSError):
        if err.errno == errno.ENOSPC:
            return ResourceExhaustedError(f"{what}: {_DISK_FULL}")
        if err.errno in _CONNECT_ERRNOS or isinstance(err, ConnectionError):
            return UnavailableError(f"{what}: {_ENGINE_DOWN}")
        return UnavailableError(f"{what}: {err.strerror or type(err).__name__}")
    status, message = err.status, _engine_message(err)
    lowered = message.lower()
    if status == _NO_CONNECTION:
        return UnavailableError(f"{what}: {_ENGINE_DOWN}")
    if "no space left on device" in lowered:
        return ResourceExhaustedError(f"{what}: {_DISK_FULL}")
    if "already allocated" in lowered or "address already in use" in lowered:
        return AlreadyExistsError(f"{what}: a port it publishes is already in use on this host")
    if status == HTTPStatus.NOT_FOUND:
        if missing:
            return NotFoundError(missing)
        if "no such image" in lowered:
            return NotFoundError(f"{what}: the image is not loaded: push it with `convocate-host image push`")
        return NotFoundError(f"{what}: {message}")
    if status == HTTPStatus.NOT_MODIFIED:
        return FailedPreconditionError(f"{what}: it is already in that state")
    if status == HTTPStatus.CONFLICT:
        return FailedPreconditionError(f"{what}: {message}")
    if status == HTTPStatus.BAD_REQUEST:
        return InvalidArgumentError(f"{what}: {message}")
    return UnavailableError(f"{what}: the Docker Engine failed ({status}): {message}")


@contextlib.contextmanager
def _docker_errors(what: str, *, missing: str = "") -> Iterator[None]:
    """Translate every Docker or OS error raised inside into the domain error for ``what``.

    The one translation point of this adapter (like httpx's ``map_httpcore_exceptions``):
    callers that give a status its own meaning catch the domain error (``NotFoundError``
    for "no such container") instead of inspecting Docker's status codes.

    Args:
        what: what was being done, the start of the message ("failed to stop session X").
        missing: the whole message for a 404, when the caller knows what was missing.
    """
    try:
        yield
    except (DockerError, OSError) as e:
        raise _translate(e, what, missing) from None


def _create_config(spec: ContainerSpec) -> dict[str, Any]:
    binds = [f"{m.source}:{m.target}{':ro' if m.read_only else ''}" for m in spec.mounts]
    host: dict[str, Any] = {"Binds": binds, "AutoRemove": True, "Init": False,
                            "CapDrop": ["ALL"], "CapAdd": list(spec.cap_add),
                            "SecurityOpt": ["no-new-privileges"]}
    if spec.pids_limit > 0:
        host["PidsLimit"] = spec.pids_limit
    if spec.cgroup_parent:
        host["CgroupParent"] = spec.cgroup_parent
    if spec.dns:
        host["Dns"] = list(spec.dns)
    config: dict[str, Any] = {
        "Image": spec.image,
        "Hostname": spec.hostname,
        "WorkingDir": spec.workdir,
        "Labels": dict(spec.labels),
        "Env": [f"{k}={v}" for k, v in sorted(spec.env.items())],
        "Cmd": list(spec.command),
        "Tty": False,
        "OpenStdin": False,
        "HostConfig": host,
    }
    if spec.port:
        key = f"{spec.port}/{spec.protocol}"
        config["ExposedPorts"] = {key: {}}
        host["PortBindings"] = {key: [{"HostPort": str(spec.port)}]}
    return config


class DockerTerminal:
    """A TTY exec stream (implements :class:`agent.runtime.TerminalExec`).

    ``stack`` holds the stream's context (entered when the exec started); ``close`` exits it.
    """

    def __init__(self, exe: Exec, stream: Stream, stack: contextlib.AsyncExitStack) -> None:
        self._exe = exe
        self._stream = stream
        self._stack = stack

    async def read(self) -> bytes | None:
        """Return the next output chunk, or None at the end of the stream."""
        try:
            msg = await self._stream.read_out()
        except (DockerError, OSError, RuntimeError) as e:
            log.debug("exec stream read ended", error=str(e))
            return None
        return None if msg is None else bytes(msg.data)

    async def write(self, data: bytes) -> None:
        """Send ``data`` to the terminal."""
        try:
            with _docker_errors("terminal input failed"):
                await self._stream.write_in(data)
        except RuntimeError:  # aiodocker's "closed transport"
            raise UnavailableError("terminal input failed: the terminal is closed") from None

    async def resize(self, rows: int, cols: int) -> None:
        """Resize the exec's pty (a finished exec is ignored)."""
        try:
            with _docker_errors("resize terminal"):
                await self._exe.resize(h=rows, w=cols)
        except ConvocateError as e:
            log.debug("exec resize failed", error=str(e))

    async def close(self) -> None:
        """Close the stream."""
        with contextlib.suppress(Exception):
            await self._stack.aclose()


def _container_data(ctr: Any) -> dict[str, Any]:
    """The fields of a listed container (aiodocker exposes them by key only)."""
    return {k: ctr[k] for k in ("Id", "Image", "ImageID", "Labels", "Names", "State") if k in ctr}


def _engine(url: str | None) -> tuple[aiodocker.Docker, aiohttp.BaseConnector | None]:
    """The engine client for ``url`` (else ``$DOCKER_HOST``, else the default socket; a service
    has no Docker CLI context to consult), and the connector it was given (the caller closes
    it), if any.

    On a UNIX socket its connections are not pooled to a count: every attached viewer holds
    one (its exec's stream) for as long as it is attached, and with aiohttp's default pool of
    100 the 100th would leave every later engine call (List, a create, the engine's health
    check, the next attach) waiting, without a deadline, for a viewer to leave.
    """
    host = url or os.environ.get("DOCKER_HOST") or next(
        (f"{_UNIX}{p}" for p in _SOCKETS if p.exists()),
        f"{_UNIX}{_SOCKETS[0]}")   # none: an absent engine is met at the first call
    if not host.startswith(_UNIX):
        return aiodocker.Docker(url=host), None       # TCP or TLS: aiodocker's own connector
    connector = aiohttp.UnixConnector(path=host.removeprefix(_UNIX), limit=0)
    return aiodocker.Docker(url=f"{_UNIX}localhost", connector=connector), connector


class DockerRuntime:
    """Session containers on the local Docker Engine, through aiodocker."""

    def __init__(self, url: str | None = None) -> None:
        self._docker, self._connector = _engine(url)

    async def close(self) -> None:
        """Close the engine connection."""
        await self._docker.close()
        if self._connector is not None:
            await self._connector.close()

    async def __aenter__(self) -> DockerRuntime:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- containers ------------------------------------------------------------------
    async def _get(self, session_id: str) -> tuple[Any, dict[str, Any]] | None:
        """The session's container and its inspect data, or None if there is none."""
        ctr = self._docker.containers.container(container_name(session_id))
        try:
            with _docker_errors(f"inspect session {session_id}"):
                return ctr, await ctr.show()
        except NotFoundError:
            return None

    @staticmethod
    def _info(session_id: str, data: dict[str, Any]) -> ContainerInfo:
        state = data.get("State") or {}
        running = bool(state.get("Running")) if isinstance(state, dict) else state == "running"
        image = (data.get("Config") or {}).get("Image") or data.get("Image", "")
        name = data.get("Name") or (data.get("Names") or [""])[0]
        return ContainerInfo(session_id, str(name).lstrip("/"), running, str(image), str(data.get("Id", "")))

    async def inspect(self, session_id: str) -> ContainerInfo | None:
        """Return the session's container, or None if there is none."""
        found = await self._get(session_id)
        return None if found is None else self._info(session_id, found[1])

    async def list_running(self, agent_id: str) -> dict[str, ContainerInfo]:
        """Return this agent's running session containers by session id."""
        filters = json.dumps({"label": [f"convocate.agent={agent_id}"]})
        with _docker_errors("list containers"):
            found = await self._docker.containers.list(filters=filters)
        out: dict[str, ContainerInfo] = {}
        for ctr in found:
            data = _container_data(ctr)
            sid = (data.get("Labels") or {}).get(SESSION_LABEL, "")
            if sid:
                out[sid] = self._info(sid, data)
        return out

    async def start(self, spec: ContainerSpec, ready: Awaitable[None] | None = None) -> ContainerInfo:
        """Create and start the container, replacing a stopped leftover of the same name.

        ``ready`` is awaited between the create and the start (and when the create fails).

        Raises:
            FailedPreconditionError: the container is already running.
            NotFoundError: the image is not loaded.
            AlreadyExistsError: a port it publishes is taken.
            ResourceExhaustedError: the disk is full.
            UnavailableError: the engine failed or does not answer.
        """
        config = _create_config(spec)
        what = f"failed to start container {spec.name}"
        missing = (f'image "{spec.image}" is not loaded on this agent: push it with '
                   "`convocate-host image push` or fix the current-image pointer")
        try:
            ctr = await self._create(spec, config, what, missing)
        finally:
            if ready is not None:
                await ready
        try:
            with _docker_errors(what):
                await ctr.start()
        except ConvocateError as e:
            with contextlib.suppress(ConvocateError), _docker_errors(f"remove container {spec.name}"):
                await ctr.delete(force=True)
            if spec.port and isinstance(e, AlreadyExistsError):
                raise AlreadyExistsError(
                    f"port {spec.port}/{spec.protocol} is already in use on this host: "
                    "edit the session to choose another port"
                ) from None
            raise
        # The start's answer suffices (no inspect after it): the engine answers once the
        # container's process runs. One that ends at once is reported by its "die" event.
        return ContainerInfo(spec.session_id, spec.name, running=True, image=spec.image,
                             container_id=str(ctr.id))

    async def _create(self, spec: ContainerSpec, config: dict[str, Any], what: str, missing: str) -> Any:
        """Create the container; a stopped leftover of its name is removed first."""
        for _ in range(_CREATE_ATTEMPTS):
            try:
                with _docker_errors(what, missing=missing):
                    return await self._docker.containers.create(config, name=spec.name)
            except FailedPreconditionError:  # 409: a container of that name exists
                pass
            old = await self.inspect(spec.session_id)
            if old is not None and old.running:
                raise FailedPreconditionError(f"container {spec.name} is already running")
            if old is not None:
                with contextlib.suppress(ConvocateError), _docker_errors(f"remove container {spec.name}"):
                    await self._docker.containers.container(spec.name).delete(force=True)
            await asyncio.sleep(0.1)
        raise FailedPreconditionError(f"{what}: the old container of that name does not go away")

    async def stop(self, session_id: str, timeout: int) -> bool:
        """Stop the container (SIGTERM, SIGKILL after ``timeout`` s); False if not running."""
        found = await self._get(session_id)
        if found is None or not self._info(session_id, found[1]).running:
            return False
        try:
            with _docker_errors(f"failed to stop session {session_id}"):
                await found[0].stop(t=timeout)
        except (NotFoundError, FailedPreconditionError):  # gone, or already stopped (304)
            return False
        return True

    # --- exec ------------------------------------------------------------------------------
    async def _exec(self, session_id: str, what: str, argv: list[str], **options: Any) -> Any:
        """Create an exec of ``argv`` in the session's container.

        No inspect first: the engine itself refuses an exec in a container that is missing
        (404) or not running (409: stopped, paused, restarting), which is said here as "not
        running", as an inspect would have; one engine call instead of two.
        """
        ctr = self._docker.containers.container(container_name(session_id))
        try:
            with _docker_errors(what):
                return await ctr.exec(argv, **options)
        except (NotFoundError, FailedPreconditionError):
            raise FailedPreconditionError(f"session {session_id} is not running") from None

    async def exec_run(self, session_id: str, argv: list[str], user: str) -> ExecResult:
        """Run ``argv`` without a TTY and return its exit code and output."""
        exe = await self._exec(session_id, f"exec in session {session_id}", argv, stdout=True, stderr=True,
                               user=user, environment={"LC_ALL": "C.UTF-8"})
        with _docker_errors(f"exec in session {session_id}"):
            chunks: list[bytes] = []
            async with exe.start(detach=False) as stream:
                while (msg := await stream.read_out()) is not None:
                    chunks.append(bytes(msg.data))
            info = await exe.inspect()
        code = info.get("ExitCode")
        return ExecResult(int(code) if code is not None else -1, b"".join(chunks).decode(errors="replace"))

    async def exec_terminal(
        self, session_id: str, argv: list[str], user: str, env: dict[str, str]
    ) -> DockerTerminal:
        """Start ``argv`` on a TTY (stdin open) and return its stream."""
        exe = await self._exec(session_id, f"attach to session {session_id}", argv, stdin=True, stdout=True,
                               stderr=True, tty=True, user=user, environment=env)
        async with contextlib.AsyncExitStack() as stack:
            with _docker_errors(f"attach to session {session_id}"):
                stream = await stack.enter_async_context(exe.start(detach=False))
            # The terminal owns the started stream from here; its close() exits it.
            return DockerTerminal(exe, stream, stack.pop_all())
        raise AssertionError  # unreachable: the block returns or raises

    # --- events ----------------------------------------------------------------------------
    async def events(self, agent_id: str) -> AsyncIterator[ContainerEvent]:
        """Follow start/die events of this agent's containers, forever.

        After every (re)subscription a ``resync`` event tells the consumer to re-read the
        state, since events may have been missed while the stream was down.
        """
        filters = json.dumps({
            "type": ["container"], "event": ["start", "die"], "label": [f"convocate.agent={agent_id}"],
        })
        backoff = Backoff(initial=0.2, maximum=5.0)
        since = time.time() - 1
        while True:
            ev = DockerEvents(self._docker)  # type: ignore[no-untyped-call]
            sub = ev.subscribe(filters=filters, since=f"{since:.3f}")  # type: ignore[no-untyped-call]
            try:
                yield ContainerEvent("resync")
                while (data := await sub.get()) is not None:
                    backoff.reset()
                    nano = int(data.get("timeNano", 0))
                    since = max(since, nano / 1e9 - 1)
                    attrs = (data.get("Actor") or {}).get("Attributes") or {}
                    sid = attrs.get(SESSION_LABEL, "")
                    if sid:
                        actor_id = str((data.get("Actor") or {}).get("ID", ""))
                        code = str(attrs.get("exitCode", ""))
                        yield ContainerEvent(str(data.get("Action", "")), sid, actor_id, nano,
                                             int(code) if code.isdigit() else None)
            finally:
                with contextlib.suppress(Exception):
                    await ev.stop()  # type: ignore[no-untyped-call]
            yield ContainerEvent("lost")
            delay = backoff.next_delay()
            log.warning("docker events stream ended; resubscribing", delay=round(delay, 2))
            await asyncio.sleep(delay)

    async def engine_version(self) -> str:
        """The engine's version (``GET /version``); the error is the bare "does not answer" line."""
        try:
            with _docker_errors("version"):
                info = await self._docker.version()
        except ConvocateError as e:
            raise type(e)(str(e).removeprefix("version: ")) from None
        return str(info.get("Version", ""))

    # --- images ----------------------------------------------------------------------------
    async def image_exists(self, image: str) -> bool:
        """True if ``image`` is present in the engine."""
        try:
            with _docker_errors(f"inspect image {image}"):
                await self._docker.images.inspect(image)
        except NotFoundError:
            return False
        return True

    async def build_image(self, context_tar: bytes, tag: str) -> None:
        """Build ``tag`` from a tar context (the Dockerfile at its root)."""
        with _docker_errors(f"build image {tag}"):
            # The daemon needs a Content-Encoding; gzip is one it always understands.
            packed = await asyncio.to_thread(gzip.compress, context_tar, 1)
            await self._docker.images.build(fileobj=io.BytesIO(packed), tag=tag, rm=True, encoding="gzip")

    async def image_tags(self, repository: str) -> dict[str, str]:
        """Tags of ``repository`` and their image ids."""
        with _docker_errors("list images"):
            images = await self._docker.images.list(filters=json.dumps({"reference": [f"{repository}:*"]}))
        return {tag: str(img.get("Id", "")) for img in images for tag in img.get("RepoTags") or []}

    async def container_images(self) -> set[str]:
        """Image names and ids used by any container, running or not."""
        with _docker_errors("list containers"):
            containers = await self._docker.containers.list(all=True)
        used: set[str] = set()
        for ctr in containers:
            data = _container_data(ctr)
            used.update(str(data.get(k, "")) for k in ("Image", "ImageID"))
        return used

    async def remove_image(self, tag: str) -> None:
        """Remove one tag."""
        with _docker_errors(f"remove image {tag}"):
            await self._docker.images.delete(tag)
