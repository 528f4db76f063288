"""The Docker Engine behind :class:`agent.runtime.ContainerRuntime` (the only aiodocker import).

Every ``DockerError`` is translated here, in :func:`_translate`, into the domain error the
caller acts on. Facts this module designs around (reference/transport-measurements.md):
Engine 20.10 ignores the initial console size (resize right after the exec starts);
``containers.run`` would try to pull (we create + start); filters are JSON strings; the
events stream has no reconnect of its own (we resubscribe with ``since`` and resync).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import io
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiodocker
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
    UnavailableError,
)
from common.logging import get_logger

__all__ = ["DockerRuntime", "DockerTerminal"]

log = get_logger(__name__)
_CREATE_ATTEMPTS = 50  # a container removed by AutoRemove may still hold its name briefly


def _translate(err: Exception, what: str) -> ConvocateError:
    """Map a Docker or connection error to the domain error for ``what`` (the one table)."""
    if isinstance(err, DockerError):
        status, message = err.status, str(err.message).strip()
        if status == 404:
            return NotFoundError(f"{what}: {message}")
        if status == 409:
            return FailedPreconditionError(f"{what}: {message}")
        if status == 400:
            return InvalidArgumentError(f"{what}: {message}")
        return UnavailableError(f"{what}: Docker Engine error {status}: {message}")
    return UnavailableError(f"{what}: Docker Engine unreachable: {type(err).__name__}: {err}")


def _create_config(spec: ContainerSpec) -> dict[str, Any]:
    binds = [f"{m.source}:{m.target}{':ro' if m.read_only else ''}" for m in spec.mounts]
    host: dict[str, Any] = {"Binds": binds, "AutoRemove": True, "Init": False}
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
    """A TTY exec stream (implements :class:`agent.runtime.TerminalExec`)."""

    def __init__(self, exe: Exec, stream: Stream) -> None:
        self._exe = exe
        self._stream = stream

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
            await self._stream.write_in(data)
        except (DockerError, OSError, RuntimeError) as e:
            raise UnavailableError(f"terminal input failed: {e}") from None

    async def resize(self, rows: int, cols: int) -> None:
        """Resize the exec's pty (a finished exec is ignored)."""
        try:
            await self._exe.resize(h=rows, w=cols)
        except DockerError as e:
            log.debug("exec resize failed", error=str(e))

    async def close(self) -> None:
        """Close the stream."""
        with contextlib.suppress(Exception):
            await self._stream.close()


class DockerRuntime:
    """Session containers on the local Docker Engine, through aiodocker."""

    def __init__(self, url: str | None = None) -> None:
        self._docker = aiodocker.Docker(url=url)

    async def close(self) -> None:
        """Close the engine connection."""
        await self._docker.close()

    async def __aenter__(self) -> DockerRuntime:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- containers ------------------------------------------------------------------
    async def _get(self, session_id: str) -> Any | None:
        try:
            return await self._docker.containers.get(container_name(session_id))
        except DockerError as e:
            if e.status == 404:
                return None
            raise _translate(e, f"inspect session {session_id}") from None
        except OSError as e:
            raise _translate(e, f"inspect session {session_id}") from None

    @staticmethod
    def _info(session_id: str, data: dict[str, Any]) -> ContainerInfo:
        state = data.get("State") or {}
        running = bool(state.get("Running")) if isinstance(state, dict) else state == "running"
        image = (data.get("Config") or {}).get("Image") or data.get("Image", "")
        name = data.get("Name") or (data.get("Names") or [""])[0]
        return ContainerInfo(session_id, str(name).lstrip("/"), running, str(image), str(data.get("Id", "")))

    async def inspect(self, session_id: str) -> ContainerInfo | None:
        """Return the session's container, or None if there is none."""
        ctr = await self._get(session_id)
        return None if ctr is None else self._info(session_id, ctr._container)

    async def list_running(self, agent_id: str) -> dict[str, ContainerInfo]:
        """Return this agent's running session containers by session id."""
        filters = json.dumps({"label": [f"convocate.agent={agent_id}"]})
        try:
            found = await self._docker.containers.list(filters=filters)
        except (DockerError, OSError) as e:
            raise _translate(e, "list containers") from None
        out: dict[str, ContainerInfo] = {}
        for ctr in found:
            data = ctr._container
            sid = (data.get("Labels") or {}).get(SESSION_LABEL, "")
            if sid:
                out[sid] = self._info(sid, data)
        return out

    async def start(self, spec: ContainerSpec) -> ContainerInfo:
        """Create and start the container, replacing a stopped leftover of the same name.

        Raises:
            FailedPreconditionError: the container is already running.
            NotFoundError: the image is not loaded.
            UnavailableError: the engine failed.
        """
        config = _create_config(spec)
        what = f"failed to start container {spec.name}"
        for _ in range(_CREATE_ATTEMPTS):
            try:
                ctr = await self._docker.containers.create(config, name=spec.name)
                break
            except DockerError as e:
                if e.status == 404:
                    raise NotFoundError(
                        f'image "{spec.image}" is not loaded on this agent: push it with '
                        "`convocate-host image push` or fix the current-image pointer"
                    ) from None
                if e.status != 409:
                    raise _translate(e, what) from None
            except OSError as e:
                raise _translate(e, what) from None
            old = await self.inspect(spec.session_id)
            if old is not None and old.running:
                raise FailedPreconditionError(f"container {spec.name} is already running")
            if old is not None:
                with contextlib.suppress(DockerError):
                    await self._docker.containers.container(spec.name).delete(force=True)
            await asyncio.sleep(0.1)
        else:
            raise FailedPreconditionError(f"{what}: the old container of that name does not go away")
        try:
            await ctr.start()
        except DockerError as e:
            with contextlib.suppress(DockerError):
                await ctr.delete(force=True)
            if spec.port and ("already allocated" in e.message or "address already in use" in e.message):
                raise AlreadyExistsError(
                    f"port {spec.port}/{spec.protocol} is already in use on this host: "
                    "edit the session to choose another port"
                ) from None
            raise _translate(e, what) from None
        info = await self.inspect(spec.session_id)
        return info or ContainerInfo(spec.session_id, spec.name, running=False, image=spec.image)

    async def stop(self, session_id: str, timeout: int) -> bool:
        """Stop the container (SIGTERM, SIGKILL after ``timeout`` s); False if not running."""
        ctr = await self._get(session_id)
        if ctr is None or not self._info(session_id, ctr._container).running:
            return False
        try:
            await ctr.stop(t=timeout)
        except DockerError as e:
            if e.status in (304, 404):
                return False
            raise _translate(e, f"failed to stop session {session_id}") from None
        return True

    # --- exec ------------------------------------------------------------------------------
    async def _running(self, session_id: str) -> Any:
        ctr = await self._get(session_id)
        if ctr is None or not self._info(session_id, ctr._container).running:
            raise FailedPreconditionError(f"session {session_id} is not running")
        return ctr

    async def exec_run(self, session_id: str, argv: list[str], user: str) -> ExecResult:
        """Run ``argv`` without a TTY and return its exit code and output."""
        ctr = await self._running(session_id)
        try:
            exe = await ctr.exec(argv, stdout=True, stderr=True, user=user,
                                 environment={"LC_ALL": "C.UTF-8"})
            chunks: list[bytes] = []
            async with exe.start(detach=False) as stream:
                while (msg := await stream.read_out()) is not None:
                    chunks.append(bytes(msg.data))
            info = await exe.inspect()
        except (DockerError, OSError) as e:
            raise _translate(e, f"exec in session {session_id}") from None
        code = info.get("ExitCode")
        return ExecResult(int(code) if code is not None else -1, b"".join(chunks).decode(errors="replace"))

    async def exec_terminal(
        self, session_id: str, argv: list[str], user: str, env: dict[str, str]
    ) -> DockerTerminal:
        """Start ``argv`` on a TTY (stdin open) and return its stream."""
        ctr = await self._running(session_id)
        try:
            exe = await ctr.exec(argv, stdin=True, stdout=True, stderr=True, tty=True, user=user,
                                 environment=env)
            stream = exe.start(detach=False)
            await stream.__aenter__()
        except (DockerError, OSError) as e:
            raise _translate(e, f"attach to session {session_id}") from None
        return DockerTerminal(exe, stream)

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
                        yield ContainerEvent(str(data.get("Action", "")), sid, actor_id, nano)
            finally:
                with contextlib.suppress(Exception):
                    await ev.stop()  # type: ignore[no-untyped-call]
            delay = backoff.next_delay()
            log.warning("docker events stream ended; resubscribing", delay=round(delay, 2))
            await asyncio.sleep(delay)

    # --- images ----------------------------------------------------------------------------
    async def image_exists(self, image: str) -> bool:
        """True if ``image`` is present in the engine."""
        try:
            await self._docker.images.inspect(image)
        except DockerError as e:
            if e.status == 404:
                return False
            raise _translate(e, f"inspect image {image}") from None
        except OSError as e:
            raise _translate(e, f"inspect image {image}") from None
        return True

    async def build_image(self, context_tar: bytes, tag: str) -> None:
        """Build ``tag`` from a tar context (the Dockerfile at its root)."""
        try:
            # The daemon needs a Content-Encoding; gzip is one it always understands.
            packed = await asyncio.to_thread(gzip.compress, context_tar, 1)
            await self._docker.images.build(fileobj=io.BytesIO(packed), tag=tag, rm=True, encoding="gzip")
        except (DockerError, OSError) as e:
            raise _translate(e, f"build image {tag}") from None

    async def image_tags(self, repository: str) -> dict[str, str]:
        """Tags of ``repository`` and their image ids."""
        try:
            images = await self._docker.images.list(filters=json.dumps({"reference": [f"{repository}:*"]}))
        except (DockerError, OSError) as e:
            raise _translate(e, "list images") from None
        return {tag: str(img.get("Id", "")) for img in images for tag in img.get("RepoTags") or []}

    async def container_images(self) -> set[str]:
        """Image names and ids used by any container, running or not."""
        try:
            containers = await self._docker.containers.list(all=True)
        except (DockerError, OSError) as e:
            raise _translate(e, "list containers") from None
        used: set[str] = set()
        for ctr in containers:
            used.update(str(ctr._container.get(k, "")) for k in ("Image", "ImageID"))
        return used

    async def remove_image(self, tag: str) -> None:
        """Remove one tag."""
        try:
            await self._docker.images.delete(tag)
        except (DockerError, OSError) as e:
            raise _translate(e, f"remove image {tag}") from None
