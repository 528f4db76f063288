"""In-memory stand-ins for the container runtime and its terminals (unit tests)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable

from agent.runtime import ContainerEvent, ContainerInfo, ContainerSpec, ExecResult
from common.errors import FailedPreconditionError, UnavailableError

__all__ = ["FakeRuntime", "FakeTerminal"]


class FakeTerminal:
    """A TerminalExec whose output the test feeds and whose input/resizes the test reads."""

    def __init__(self) -> None:
        self.out: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.written: list[bytes] = []
        self.sizes: list[tuple[int, int]] = []
        self.closed = False
        self.reads = 0  # read() calls so far: the reader came back for more, so it handled the last chunk

    def feed(self, data: bytes | None) -> None:
        """Make ``data`` the next output chunk (None: end of stream)."""
        self.out.put_nowait(data)

    async def read(self) -> bytes | None:
        """The next fed chunk."""
        self.reads += 1
        if self.closed:
            return None
        return await self.out.get()

    async def write(self, data: bytes) -> None:
        """Record input."""
        self.written.append(data)

    async def resize(self, rows: int, cols: int) -> None:
        """Record a resize."""
        self.sizes.append((rows, cols))

    async def close(self) -> None:
        """End the stream."""
        self.closed = True
        self.out.put_nowait(None)


class FakeRuntime:
    """A ContainerRuntime in memory: containers are records; events are pushed by the test."""

    def __init__(self) -> None:
        self.containers: dict[str, ContainerInfo] = {}
        self.specs: dict[str, ContainerSpec] = {}
        self.execs: list[list[str]] = []
        self.terminals: list[tuple[list[str], FakeTerminal]] = []   # exec_terminal's argv and terminal
        self.event_queue: asyncio.Queue[ContainerEvent] = asyncio.Queue()
        self._n = 0
        self.engine_error = ""          # set: the engine "does not answer" with this message

    def _answer(self) -> None:
        if self.engine_error:
            raise UnavailableError(self.engine_error)

    async def engine_version(self) -> str:
        """A fixed version, unless the engine is set down."""
        self._answer()
        return "0.0-fake"

    async def start(self, spec: ContainerSpec, ready: Awaitable[None] | None = None) -> ContainerInfo:
        """Record a running container (after ``ready``)."""
        if ready is not None:
            await ready
        if spec.session_id in self.containers:
            raise FailedPreconditionError(f"container {spec.name} is already running")
        self._n += 1
        info = ContainerInfo(spec.session_id, spec.name, True, spec.image, f"c{self._n}")
        self.containers[spec.session_id] = info
        self.specs[spec.session_id] = spec
        return info

    async def stop(self, session_id: str, timeout: int) -> bool:
        """Forget the container; False if there was none."""
        return self.containers.pop(session_id, None) is not None

    async def inspect(self, session_id: str) -> ContainerInfo | None:
        """The container, if running."""
        self._answer()
        return self.containers.get(session_id)

    async def list_running(self, agent_id: str) -> dict[str, ContainerInfo]:
        """Every running container."""
        self._answer()
        return dict(self.containers)

    async def exec_run(self, session_id: str, argv: list[str], user: str) -> ExecResult:
        """Record the command."""
        self.execs.append(argv)
        return ExecResult(0, "")

    async def exec_terminal(self, session_id: str, argv: list[str], user: str,
                            env: dict[str, str]) -> FakeTerminal:
        """A fake terminal (kept in :attr:`terminals` with its argv)."""
        terminal = FakeTerminal()
        self.terminals.append((argv, terminal))
        return terminal

    async def events(self, agent_id: str) -> AsyncIterator[ContainerEvent]:
        """A resync, then whatever the test pushes.

        Each pushed event is marked done once the consumer asks for the next one, so
        ``await event_queue.join()`` waits until every pushed event was handled.
        """
        yield ContainerEvent("resync")
        while True:
            yield await self.event_queue.get()
            self.event_queue.task_done()

    async def image_exists(self, image: str) -> bool:
        """Always there."""
        return True

    async def build_image(self, context_tar: bytes, tag: str) -> None:
        """Nothing to build."""

    async def image_tags(self, repository: str) -> dict[str, str]:
        """No images."""
        return {}

    async def container_images(self) -> set[str]:
        """Images of the fake containers."""
        return {c.image for c in self.containers.values()}

    async def remove_image(self, tag: str) -> None:
        """Nothing to remove."""

    async def close(self) -> None:
        """Nothing to close."""
