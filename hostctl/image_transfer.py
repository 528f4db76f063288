"""`convocate-host image push`: docker save | gzip | sha256 | ssh | docker load, checked.

1. ``docker save TAG`` here, gzip in-process (zlib in a worker thread, mtime 0 so the
   same image gives the same bytes), SHA-256 and byte count in the same pass;
2. streamed over one SSH exec channel into a private temp file on the target;
3. the target hashes what it wrote (in the same pass); a mismatch deletes the file and
   fails, so a corrupted stream never reaches ``docker load``;
4. ``gunzip -c FILE | docker load`` on the target, then the loaded image id is compared
   with the local one; the temp file is always removed;
5. optionally the target's current-image pointer is rewritten atomically.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from common.errors import ConvocateError, FailedPreconditionError, NotFoundError
from hostctl.remote import CommandResult, Runner

__all__ = ["PushResult", "push_image", "push_plan"]

CHUNK = 1 << 20
DEFAULT_POINTER = "/etc/convocate-agent/current-image"


@dataclass(frozen=True)
class PushResult:
    """What was sent and verified."""

    tag: str
    image_id: str
    tar_bytes: int
    gz_bytes: int
    sha256: str
    remote_file: str
    seconds: float


def push_plan(tag: str, target: str, *, set_current: str | None) -> list[str]:
    """The steps a push takes, for --dry-run."""
    steps = [
        f"docker save {tag} | gzip | sha256 (here)",
        f"stream to {target}:/tmp/convocate-image-XXXXXXXX.tar.gz (0600)",
        "sha256sum on the target; stop and delete on mismatch",
        "gunzip -c FILE | docker load on the target; compare image ids; delete FILE",
    ]
    if set_current:
        steps.append(f"write {set_current} = {tag} on the target (atomic rename)")
    return steps


async def _local(*argv: str) -> CommandResult:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return CommandResult(proc.returncode or 0, out, err)


def _check(result: CommandResult, what: str) -> str:
    if result.status != 0:
        detail = result.stderr.decode(errors="replace").strip() or result.text()
        raise ConvocateError(f"{what} failed (exit {result.status}): {detail}")
    return result.text()


class _GzipStream:
    """docker save → gzip → (sha256, counts), as an async iterator of compressed chunks."""

    def __init__(self, tag: str, level: int, corrupt_at: int | None) -> None:
        self.tag, self.level, self.corrupt_at = tag, level, corrupt_at
        self.sha = hashlib.sha256()
        self.tar_bytes = 0
        self.gz_bytes = 0
        self.proc: asyncio.subprocess.Process | None = None

    def _emit(self, data: bytes) -> bytes:
        self.sha.update(data)
        self.gz_bytes += len(data)
        if self.corrupt_at is not None and self.gz_bytes > self.corrupt_at >= self.gz_bytes - len(data):
            i = self.corrupt_at - (self.gz_bytes - len(data))
            data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]  # what the wire delivers
        return data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        # wbits=31: gzip framing; the header carries no name and mtime 0 (reproducible).
        comp = zlib.compressobj(self.level, zlib.DEFLATED, 31)
        self.proc = await asyncio.create_subprocess_exec(
            "docker", "save", self.tag, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        stdout = self.proc.stdout
        if stdout is None:  # pragma: no cover - PIPE always gives a reader
            raise ConvocateError("docker save gave no output stream")
        while chunk := await stdout.read(CHUNK):
            self.tar_bytes += len(chunk)
            out = await asyncio.to_thread(comp.compress, chunk)
            if out:
                yield self._emit(out)
        yield self._emit(comp.flush())
        err = await self.proc.stderr.read() if self.proc.stderr else b""
        if await self.proc.wait() != 0:
            raise ConvocateError(f"docker save {self.tag} failed: {err.decode(errors='replace').strip()}")


async def push_image(
    tag: str,
    runner: Runner,
    *,
    level: int = 1,
    set_current: str | None = None,
    on_uploaded: Callable[[], Awaitable[None]] | None = None,
    corrupt_at: int | None = None,
) -> PushResult:
    """Send local image ``tag`` to the host behind ``runner`` and verify it there.

    Args:
        tag: the local image (``convocate:<version>``).
        runner: where to load it (``LocalRunner`` or ``SSHRunner``).
        level: gzip level (1 is 4-5x faster than 6 for a few % more bytes).
        set_current: path of the target's current-image pointer to rewrite, or None.
        on_uploaded: awaited after the upload is verified and before ``docker load``.
        corrupt_at: test hook: flip the byte at this offset of the stream on the wire.

    Returns:
        What was sent and verified.

    Raises:
        NotFoundError: no local image ``tag``.
        FailedPreconditionError: the checksum or the loaded image id does not match.
        ConvocateError: a step failed on either end (its message says which).
    """
    started = time.monotonic()
    inspected = await _local("docker", "image", "inspect", "--format", "{{.Id}}", tag)
    if inspected.status != 0:
        raise NotFoundError(f"no local image {tag!r}: build it first (convocate install)")
    image_id = inspected.text()
    # mktemp creates the file 0600 under a random name: no race, no predictable path.
    template = "/tmp/convocate-image-XXXXXXXX.tar.gz"  # noqa: S108
    remote_file = _check(await runner.run(["mktemp", template], root=True), f"mktemp on {runner.name}")
    try:
        stream = _GzipStream(tag, level, corrupt_at)
        # The target hashes what it writes, in the same pass (tee), and reports it.
        upload = ["sh", "-c", 'umask 077 && tee "$0" | sha256sum', remote_file]
        got = _check(await runner.run(upload, root=True, stdin=stream.__aiter__()),
                     f"upload to {runner.name}").split()[0]
        expected = stream.sha.hexdigest()
        if got != expected:
            raise FailedPreconditionError(
                f"sha256 mismatch on {runner.name}:{remote_file}: got {got} expected {expected}; "
                "the transfer was corrupted and nothing was loaded"
            )
        if on_uploaded is not None:
            await on_uploaded()
        _check(await runner.run(["sh", "-c", 'gunzip -c "$0" | docker load', remote_file], root=True),
               f"docker load on {runner.name}")
        inspect = ["docker", "image", "inspect", "--format", "{{.Id}}", tag]
        loaded = _check(await runner.run(inspect, root=True), f"docker image inspect on {runner.name}")
        if loaded != image_id:
            raise FailedPreconditionError(f"{runner.name} loaded {tag} as {loaded}, expected {image_id}")
        if set_current:
            script = 'umask 022 && printf "%s\\n" "$1" > "$0.tmp" && mv "$0.tmp" "$0"'
            _check(await runner.run(["sh", "-c", script, set_current, tag], root=True),
                   f"writing {set_current} on {runner.name}")
    finally:
        await runner.run(["rm", "-f", remote_file], root=True)
    return PushResult(tag, image_id, stream.tar_bytes, stream.gz_bytes, expected, remote_file,
                      time.monotonic() - started)
