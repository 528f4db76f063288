"""The container runtime the agent needs, as a Protocol (the Docker adapter implements it).

The agent core works on these dataclasses only; ``agent.docker_runtime`` is the one
module that speaks aiodocker and turns Docker's errors into domain errors.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "ContainerEvent",
    "ContainerInfo",
    "ContainerRuntime",
    "ContainerSpec",
    "ExecResult",
    "Mount",
    "TerminalExec",
]


@dataclass(frozen=True)
class Mount:
    """A bind mount from the agent host into the container."""

    source: str
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class ContainerSpec:
    """Everything needed to start one session container."""

    name: str
    session_id: str
    image: str
    hostname: str
    labels: dict[str, str]
    command: tuple[str, ...]
    workdir: str = "/home/claude"
    mounts: tuple[Mount, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    protocol: str = "tcp"
    dns: tuple[str, ...] = ()
    cgroup_parent: str = ""
    cap_add: tuple[str, ...] = ()       # the only capabilities kept: every other one is dropped
    pids_limit: int = 0                 # 0: no limit


@dataclass(frozen=True)
class ContainerInfo:
    """What the agent needs to know about a session container."""

    session_id: str
    name: str
    running: bool
    image: str = ""
    container_id: str = ""


@dataclass(frozen=True)
class ContainerEvent:
    """A lifecycle change of a session container, or a change of the stream itself.

    ``action`` is ``start``, ``die`` (with the container's ``exit_code``), ``resync``
    (the stream was (re)connected and events may have been missed: the consumer re-reads
    the state) or ``lost`` (the stream ended: the engine may be down until ``resync``).
    """

    action: str
    session_id: str = ""
    container_id: str = ""
    time_nano: int = 0
    exit_code: int | None = None


@dataclass(frozen=True)
class ExecResult:
    """The outcome of a non-interactive exec."""

    exit_code: int
    output: str


class TerminalExec(Protocol):
    """A TTY exec inside a container: bytes in, bytes out, resizable."""

    async def read(self) -> bytes | None:
        """Return the next output chunk, or None at the end of the stream."""
        ...

    async def write(self, data: bytes) -> None:
        """Send ``data`` to the exec's terminal."""
        ...

    async def resize(self, rows: int, cols: int) -> None:
        """Set the exec's terminal size."""
        ...

    async def close(self) -> None:
        """Close the stream (the process inside sees a hang-up)."""
        ...


class ContainerRuntime(Protocol):
    """The operations the agent performs on its container engine."""

    async def start(self, spec: ContainerSpec, ready: Awaitable[None] | None = None) -> ContainerInfo:
        """Create and start a container (replacing a stopped leftover of the same name).

        ``ready``: awaited between the create and the start (what the container needs on the
        host at its start, prepared while the engine creates it).
        """
        ...

    async def stop(self, session_id: str, timeout: int) -> bool:
        """Stop the session's container; return False if it was not running."""
        ...

    async def inspect(self, session_id: str) -> ContainerInfo | None:
        """Return the session's container, or None if there is none."""
        ...

    async def list_running(self, agent_id: str) -> dict[str, ContainerInfo]:
        """Return this agent's running session containers by session id."""
        ...

    async def exec_run(self, session_id: str, argv: list[str], user: str) -> ExecResult:
        """Run ``argv`` in the container without a TTY and collect its output."""
        ...

    async def exec_terminal(
        self, session_id: str, argv: list[str], user: str, env: dict[str, str]
    ) -> TerminalExec:
        """Start ``argv`` in the container on a TTY and return its stream."""
        ...

    async def engine_version(self) -> str:
        """The engine's version (a cheap call that proves it answers).

        Raises:
            UnavailableError: the engine does not answer (the message says what to do).
        """
        ...

    def events(self, agent_id: str) -> AsyncIterator[ContainerEvent]:
        """Follow this agent's container events forever, reconnecting as needed."""
        ...

    async def image_exists(self, image: str) -> bool:
        """True if ``image`` is present in the engine."""
        ...

    async def build_image(self, context_tar: bytes, tag: str) -> None:
        """Build ``tag`` from a tar build context (no registry access needed)."""
        ...

    async def image_tags(self, repository: str) -> dict[str, str]:
        """Tags of ``repository`` and their image ids."""
        ...

    async def container_images(self) -> set[str]:
        """Image names and ids used by any container, running or not."""
        ...

    async def remove_image(self, tag: str) -> None:
        """Remove one tag (the image goes when no tag is left)."""
        ...

    async def close(self) -> None:
        """Release the engine connection."""
        ...
