"""Where convocate-host runs a step: on this machine, or on a host over OpenSSH :22.

Both sides take an argv list (quoted for the remote shell here, never by callers),
optionally stream bytes to its stdin, and return exit status and output. Steps that
need root run under ``sudo -n`` (which fails instead of prompting) unless the user is
already root. Host keys are pinned through a known-hosts file; no ssh-agent or
``~/.ssh/config`` is consulted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import asyncssh

from common.errors import ConvocateError, InvalidArgumentError, UnavailableError
from common.ssh_keys import read_private_key
from common.ssh_wire import ENCRYPTION_ALGS
from common.tasks import cancel_and_wait
from common.tunnel import describe_connect_error

__all__ = ["CommandResult", "LocalRunner", "OutputStream", "Runner", "SSHRunner", "SSHTarget", "make_runner",
           "with_runner"]


@dataclass(frozen=True)
class CommandResult:
    """Exit status and output of one step."""

    status: int
    stdout: bytes
    stderr: bytes

    def text(self) -> str:
        """stdout as text, stripped."""
        return self.stdout.decode(errors="replace").strip()


T = TypeVar("T")

class Runner(Protocol):
    """Runs a step on one host."""

    name: str

    async def run(self, argv: Sequence[str], *, root: bool = False,
                  stdin: AsyncIterator[bytes] | None = None, timeout: float = 600) -> CommandResult: ...

    def output(self, argv: Sequence[str], *, root: bool = False) -> contextlib.AbstractAsyncContextManager[
        OutputStream]: ...

    async def close(self) -> None: ...


@dataclass
class OutputStream:
    """A running step's stdout as chunks; ``result()`` waits for its exit (stdout left empty)."""

    chunks: AsyncIterator[bytes]
    result: Callable[[], Awaitable[CommandResult]]


_CHUNK = 1 << 20


class _InputRefusedError(Exception):
    """The step stopped reading its stdin before the end of the stream."""


async def _pump(
    source: AsyncIterator[bytes], write: asyncio.StreamWriter | asyncssh.SSHWriter[bytes],
    abort: Callable[[], object],
) -> int:
    """Copy ``source`` into the step's stdin, then EOF; return the bytes written.

    If ``source`` fails, ``abort`` stops the step (so nobody waits for an EOF that never
    comes) and the error propagates; if the step stops reading, :class:`_InputRefusedError`.
    """
    sent = 0
    try:
        async for chunk in source:
            try:
                write.write(chunk)
                await write.drain()
            except (OSError, asyncssh.Error) as e:
                raise _InputRefusedError(f"it stopped reading its input after {sent} bytes ({e})") from None
            sent += len(chunk)
        write.write_eof()
    except BaseException:
        abort()
        raise
    return sent


def _refused(where: str, argv: Sequence[str], e: _InputRefusedError, err: bytes) -> ConvocateError:
    detail = err.decode(errors="replace").strip()
    return ConvocateError(f"{argv[0]} on {where}: {e}" + (f": {detail}" if detail else ""))


class LocalRunner:
    """Runs steps on this machine (``sudo -n`` for root steps when not root)."""

    name = "local"

    async def run(self, argv: Sequence[str], *, root: bool = False,
                  stdin: AsyncIterator[bytes] | None = None, timeout: float = 600) -> CommandResult:
        """Run ``argv``; stream ``stdin`` into it; return its result (never raises on status)."""
        full = ["sudo", "-n", "--", *argv] if root and os.geteuid() != 0 else list(argv)
        proc = await asyncio.create_subprocess_exec(
            *full, stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        pump = asyncio.create_task(_pump(stdin, proc.stdin, proc.kill)) if stdin and proc.stdin else None
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
            if pump is not None:
                try:
                    await pump
                except _InputRefusedError as e:
                    raise _refused(self.name, argv, e, err) from None
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            if pump is not None:
                await cancel_and_wait([pump])
        return CommandResult(proc.returncode or 0, out, err)

    @contextlib.asynccontextmanager
    async def output(self, argv: Sequence[str], *, root: bool = False) -> AsyncIterator[OutputStream]:
        """Run ``argv`` and stream its stdout; the step is killed if the block leaves early."""
        full = ["sudo", "-n", "--", *argv] if root and os.geteuid() != 0 else list(argv)
        proc = await asyncio.create_subprocess_exec(
            *full, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)

        async def chunks() -> AsyncIterator[bytes]:
            assert proc.stdout is not None  # noqa: S101 - PIPE gives a reader
            while chunk := await proc.stdout.read(_CHUNK):
                yield chunk

        async def result() -> CommandResult:
            err = await proc.stderr.read() if proc.stderr else b""
            return CommandResult(await proc.wait(), b"", err)

        try:
            yield OutputStream(chunks(), result)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    async def close(self) -> None:
        """Nothing to close."""


@dataclass(frozen=True)
class SSHTarget:
    """A host reached over OpenSSH for provisioning."""

    host: str
    port: int = 22
    user: str = "root"
    key: Path | None = None
    known_hosts: Path | None = None
    connect_timeout: float = 15.0


class SSHRunner:
    """Runs steps on a remote host over one SSH connection (exec channels)."""

    def __init__(self, target: SSHTarget) -> None:
        self.target = target
        self.name = f"{target.user}@{target.host}:{target.port}"
        self._conn: asyncssh.SSHClientConnection | None = None
        # Logged in as root: no need to ask (saves a round trip and an exec per connection).
        self._is_root: bool | None = True if target.user == "root" else None
        self._connecting = asyncio.Lock()  # steps run at once share the one connection

    async def _connection(self) -> asyncssh.SSHClientConnection:
        async with self._connecting:
            return await self._connect()

    async def _connect(self) -> asyncssh.SSHClientConnection:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        self._conn = None  # lost (or never made): a later step reconnects
        t = self.target
        if t.known_hosts is None or not t.known_hosts.exists():
            raise InvalidArgumentError(
                f"no pinned host key for {t.host}: pass --known-hosts with a file that lists it "
                f"(e.g. `ssh-keyscan -p {t.port} {t.host} > known_hosts`, checked out of band)"
            )
        keys = [read_private_key(t.key)] if t.key else None
        try:
            self._conn = await asyncio.wait_for(asyncssh.connect(
                t.host, t.port, username=t.user, client_keys=keys, known_hosts=str(t.known_hosts),
                config=[], agent_path=None, preferred_auth="publickey", encryption_algs=list(ENCRYPTION_ALGS),
                connect_timeout=t.connect_timeout,
            ), t.connect_timeout + 1)
        except (OSError, asyncssh.Error, TimeoutError) as e:
            raise UnavailableError(describe_connect_error(
                e, name=self.name, host=t.host, port=t.port, client_key=t.key, known_hosts=t.known_hosts,
                connect_timeout=t.connect_timeout)) from None
        return self._conn

    async def _process(self, argv: Sequence[str], *, root: bool) -> asyncssh.SSHClientProcess[bytes]:
        """Start ``argv`` remotely (quoted here; through ``sudo -n`` for ``root`` unless logged in
        as root, which is asked once per connection)."""
        conn = await self._connection()
        if root and self._is_root is None:
            who = await conn.run("id -u", check=False, timeout=30)
            self._is_root = str(who.stdout).strip() == "0"
        command = shlex.join(argv)
        if root and not self._is_root:
            command = "sudo -n -- " + command
        return await conn.create_process(command, encoding=None)

    async def run(self, argv: Sequence[str], *, root: bool = False,
                  stdin: AsyncIterator[bytes] | None = None, timeout: float = 600) -> CommandResult:
        """Run ``argv`` remotely (quoted here); stream ``stdin``; return its result."""
        proc = await self._process(argv, root=root)
        async with proc:
            pump = asyncio.create_task(_pump(stdin, proc.stdin, proc.close)) if stdin else None
            if pump is None:
                proc.stdin.write_eof()
            try:
                result = await asyncio.wait_for(proc.wait(check=False), timeout)
                if pump is not None:
                    try:
                        await pump
                    except _InputRefusedError as e:
                        err = result.stderr if isinstance(result.stderr, bytes) else b""
                        raise _refused(self.name, argv, e, err) from None
            finally:
                if pump is not None:
                    await cancel_and_wait([pump])
        out = result.stdout if isinstance(result.stdout, bytes) else b""
        err = result.stderr if isinstance(result.stderr, bytes) else b""
        return CommandResult(result.exit_status if result.exit_status is not None else 255, out, err)

    @contextlib.asynccontextmanager
    async def output(self, argv: Sequence[str], *, root: bool = False) -> AsyncIterator[OutputStream]:
        """Run ``argv`` remotely and stream its stdout; the channel is closed if the block leaves early."""
        proc = await self._process(argv, root=root)
        proc.stdin.write_eof()

        async def chunks() -> AsyncIterator[bytes]:
            while chunk := await proc.stdout.read(_CHUNK):
                yield chunk

        async def result() -> CommandResult:
            done = await proc.wait(check=False)
            err = done.stderr if isinstance(done.stderr, bytes) else b""
            return CommandResult(done.exit_status if done.exit_status is not None else 255, b"", err)

        try:
            yield OutputStream(chunks(), result)
        finally:
            proc.close()

    async def close(self) -> None:
        """Close the SSH connection."""
        if self._conn is not None:
            self._conn.close()
            await self._conn.wait_closed()
            self._conn = None


def make_runner(host: str, port: int = 22, user: str = "root", key: Path | None = None,
                known_hosts: Path | None = None) -> Runner:
    """A runner for ``host`` ('local' = this machine) as the commands' options give it."""
    if host == "local":
        return LocalRunner()
    return SSHRunner(SSHTarget(host, port, user, key, known_hosts))


async def with_runner(host: str, port: int, user: str, key: Path | None, known_hosts: Path | None,
                      fn: Callable[[Runner], Awaitable[T]]) -> T:
    """Run ``fn(runner)`` on a runner for ``host`` (see :func:`make_runner`), closed afterwards."""
    runner = make_runner(host, port, user, key, known_hosts)
    try:
        return await fn(runner)
    finally:
        await runner.close()
