"""`convocate-host image push`: one streamed pipeline, checked end to end.

Here::

    docker save TAG ─▶ count ─▶ zstd -T0 (or gzip -n) ─▶ sha256 + count ─▶ one SSH exec channel

On the target::

    tee FILE | sha256sum        (FILE: mktemp under /var/tmp, 0600; hashed in the same pass)
    compare with the sender's hash; on a mismatch delete FILE and stop: nothing is loaded
    zstd -d -c FILE | docker load; compare the loaded image id with the local one
    only then rewrite the current-image pointer (atomic rename); FILE is always removed

No stage holds the image in memory: bytes flow in 1 MiB chunks from ``docker save``
through the compressor's pipes into the SSH channel. The compressed stream lands in a
file on the target before ``docker load`` sees it, so a corrupted or truncated stream
never reaches the target's engine (a tag already there keeps its image). zstd is the
default (multi-threaded, several times faster than gzip at a similar ratio); gzip stays
for hosts without the ``zstd`` package. The target needs only the decompressor's
Debian package (:data:`RECEIVER_PACKAGES`), ``sha256sum``, ``mktemp``, ``bash`` and Docker.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from common.errors import ConvocateError, FailedPreconditionError, InvalidArgumentError, NotFoundError
from common.tasks import cancel_and_wait
from hostctl.codecs import DEFAULT_CODEC, STAGING_DIR, CodecName
from hostctl.remote import CommandResult, Runner

__all__ = [
    "CODECS",
    "DEFAULT_CODEC",
    "RECEIVER_PACKAGES",
    "STAGING_DIR",
    "Codec",
    "CodecName",
    "PushProgress",
    "PushResult",
    "push_image",
    "push_plan",
]

CHUNK = 1 << 20
_MISSING_TOOL = 3  # exit status of the target's pre-flight when the decompressor is missing


@dataclass(frozen=True)
class Codec:
    """A compressor here and its decompressor on the target, both command-line tools."""

    name: str
    suffix: str
    package: str  # the Debian package that provides the tool on the target
    default_level: int
    max_level: int
    compress_argv: tuple[str, ...]  # "{level}" is replaced
    decompress_argv: tuple[str, ...]

    def compress(self, level: int | None) -> list[str]:
        """The compressor's argv at ``level`` (the codec's default when None)."""
        chosen = self.default_level if level is None else level
        if not 1 <= chosen <= self.max_level:
            raise InvalidArgumentError(f"{self.name} level must be 1..{self.max_level}, not {chosen}")
        return [a.replace("{level}", str(chosen)) for a in self.compress_argv]


CODECS: dict[str, Codec] = {
    # -T0: one worker per core; a frame checksum is written by default.
    CodecName.zstd: Codec("zstd", ".tar.zst", "zstd", 3, 19,
                  ("zstd", "-q", "-T0", "-{level}", "-c"), ("zstd", "-q", "-d", "-c")),
    # -n: no name or mtime in the header, so the same tar gives the same bytes.
    CodecName.gzip: Codec("gzip", ".tar.gz", "gzip", 1, 9,
                  ("gzip", "-n", "-{level}", "-c"), ("gzip", "-d", "-c")),
}
# What a convocate host must have installed to receive images (the install step adds these).
RECEIVER_PACKAGES = tuple(sorted({c.package for c in CODECS.values()}))


class PushProgress(Protocol):
    """Receives the stages of a push, for a progress display."""

    def stage(self, name: str, total: int | None) -> None:
        """A new stage starts: ``send`` (total = the image's size), ``verify``, ``load``, ``done``."""

    def advance(self, nbytes: int) -> None:
        """``nbytes`` more of the image have gone into the pipeline."""


class _NoProgress:
    def stage(self, name: str, total: int | None) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass


@dataclass(frozen=True)
class PushResult:
    """What was sent and verified."""

    tag: str
    image_id: str
    codec: str
    tar_bytes: int
    compressed_bytes: int
    sha256: str
    remote_file: str
    seconds: float
    stage_seconds: dict[str, float] = field(default_factory=dict)


def push_plan(tag: str, target: str, *, codec: str = DEFAULT_CODEC, set_current: str | None,
              staging_dir: str = STAGING_DIR) -> list[str]:
    """The steps a push takes, for --dry-run."""
    c = _codec(codec)
    steps = [
        f"docker save {tag} | {' '.join(c.compress(None))} | sha256 (here)",
        (f"stream to {target}:{staging_dir}/convocate-image-XXXXXXXX{c.suffix} (0600), "
         "sha256sum in the same pass"),
        "compare the two sha256 digests; stop and delete the file on a mismatch",
        f"{' '.join(c.decompress_argv)} FILE | docker load on the target; compare image ids; delete FILE",
    ]
    if set_current:
        steps.append(f"write {set_current} = {tag} on the target (atomic rename), only if all matched")
    return steps


def _codec(name: str) -> Codec:
    try:
        return CODECS[name]
    except KeyError:
        raise InvalidArgumentError(f"unknown codec {name!r}: choose {' or '.join(CODECS)}") from None


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


class _CompressedSave:
    """``docker save TAG | compressor`` as an async iterator of compressed chunks.

    The tar passes through here on its way to the compressor (to count it for the
    progress display); the compressed bytes are hashed and counted as they are yielded.
    Use as an async context manager: leaving it stops whatever still runs.
    """

    def __init__(self, tag: str, compress: Sequence[str], progress: PushProgress) -> None:
        self.tag, self.compress, self.progress = tag, list(compress), progress
        self.sha = hashlib.sha256()
        self.tar_bytes = 0
        self.compressed_bytes = 0
        self._procs: list[asyncio.subprocess.Process] = []
        self._feed_task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _CompressedSave:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._feed_task is not None:
            await cancel_and_wait([self._feed_task])
        for proc in self._procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    async def _feed(self, save: asyncio.subprocess.Process, comp: asyncio.subprocess.Process) -> None:
        if save.stdout is None or comp.stdin is None:  # pragma: no cover - PIPE gives both
            raise ConvocateError("docker save or the compressor gave no pipe")
        try:
            while chunk := await save.stdout.read(CHUNK):
                self.tar_bytes += len(chunk)
                self.progress.advance(len(chunk))
                comp.stdin.write(chunk)
                await comp.stdin.drain()
        finally:
            comp.stdin.close()

    async def chunks(self) -> AsyncIterator[bytes]:
        """Yield the compressed stream; raise if ``docker save`` or the compressor fails."""
        pipe = asyncio.subprocess.PIPE
        save = await asyncio.create_subprocess_exec("docker", "save", self.tag, stdout=pipe, stderr=pipe)
        self._procs.append(save)
        comp = await asyncio.create_subprocess_exec(*self.compress, stdin=pipe, stdout=pipe, stderr=pipe)
        self._procs.append(comp)
        if comp.stdout is None:  # pragma: no cover - PIPE gives a reader
            raise ConvocateError("the compressor gave no output stream")
        feed = self._feed_task = asyncio.create_task(self._feed(save, comp))
        try:
            while chunk := await comp.stdout.read(CHUNK):
                self.sha.update(chunk)
                self.compressed_bytes += len(chunk)
                yield chunk
            await feed
        finally:
            await cancel_and_wait([feed])
        for proc, what in ((save, f"docker save {self.tag}"), (comp, self.compress[0])):
            err = await proc.stderr.read() if proc.stderr else b""
            if await proc.wait() != 0:
                raise ConvocateError(f"{what} failed here: {err.decode(errors='replace').strip()}")


# The last step on the target, in one exec: load the verified file, compare the image id,
# and only then point at the image. $0 file, $1 tag, $2 expected id, $3 pointer or "".
_FINISH = """
trap 'rm -f "$0"' EXIT
set -o pipefail
DECOMPRESS "$0" | docker load >&2 || exit 10
id=$(docker image inspect --format '{{.Id}}' "$1") || exit 11
[ "$id" = "$2" ] || { printf '%s\\n' "$id"; exit 12; }
[ -z "$3" ] && exit 0
umask 022 && printf '%s\\n' "$1" > "$3.tmp" && mv "$3.tmp" "$3" || exit 13
"""


def _check_finish(result: CommandResult, where: str, tag: str, image_id: str, pointer: str | None) -> None:
    if result.status == 0:
        return
    detail = result.stderr.decode(errors="replace").strip().splitlines()[-3:]
    if result.status == 12:
        raise FailedPreconditionError(f"{where} loaded {tag} as {result.text()}, expected {image_id}; "
                                      "the current image was left as it was")
    what = {10: "docker load", 11: f"docker image inspect {tag}", 13: f"writing {pointer}"}.get(
        result.status, "loading")
    raise ConvocateError(f"{what} on {where} failed (exit {result.status}): {' '.join(detail)}")


async def push_image(
    tag: str,
    runner: Runner,
    *,
    codec: str = DEFAULT_CODEC,
    level: int | None = None,
    set_current: str | None = None,
    progress: PushProgress | None = None,
    staging_dir: str = STAGING_DIR,
) -> PushResult:
    """Send local image ``tag`` to the host behind ``runner``, load it there, verify it.

    Args:
        tag: the local image (``convocate:<version>``).
        runner: where to load it (``LocalRunner`` or ``SSHRunner``).
        codec: ``zstd`` (default, multi-threaded) or ``gzip`` (for hosts without zstd).
        level: the codec's compression level; None takes its default (zstd 3, gzip 1).
        set_current: path of the target's current-image pointer to rewrite, or None.
        progress: told each stage and how many image bytes have been read.
        staging_dir: where on the target the compressed stream waits for its checksum.

    Returns:
        What was sent and verified.

    Raises:
        InvalidArgumentError: unknown codec or level.
        NotFoundError: no local image ``tag``.
        FailedPreconditionError: the target lacks the decompressor, or the checksum or
            the loaded image id does not match (nothing became the current image).
        ConvocateError: a step failed on either end (its message says which).
    """
    c = _codec(codec)
    compress = c.compress(level)
    show = progress or _NoProgress()
    started = time.monotonic()
    stage_seconds: dict[str, float] = {}
    inspected = await _local("docker", "image", "inspect", "--format", "{{.Id}} {{.Size}}", tag)
    if inspected.status != 0:
        raise NotFoundError(f"no local image {tag!r}: build it first (convocate install)")
    image_id, _, size = inspected.text().partition(" ")
    # mktemp creates the file 0600 under a random name: no race, no predictable path.
    template = f"{staging_dir.rstrip('/')}/convocate-image-XXXXXXXX{c.suffix}"
    preflight = f'command -v {c.decompress_argv[0]} >/dev/null || exit {_MISSING_TOOL}; mktemp "$0"'
    made = await runner.run(["sh", "-c", preflight, template], root=True)
    if made.status == _MISSING_TOOL:
        raise FailedPreconditionError(
            f"{c.decompress_argv[0]} is not installed on {runner.name}: install the {c.package!r} package "
            f"there (convocate-host install does), or pass --codec "
            f"{next(n for n in CODECS if n != c.name)}"
        )
    remote_file = _check(made, f"mktemp on {runner.name}")
    removed = False
    try:
        t0 = time.monotonic()
        show.stage("send", int(size) if size.isdigit() else None)
        async with _CompressedSave(tag, compress, show) as stream:
            # The target hashes what it writes, in the same pass, and reports it.
            upload = ["sh", "-c", 'umask 077 && tee "$0" | sha256sum', remote_file]
            got = _check(await runner.run(upload, root=True, stdin=stream.chunks()),
                         f"upload to {runner.name}").split()[0]
        expected = stream.sha.hexdigest()
        stage_seconds["send"] = time.monotonic() - t0
        show.stage("verify", None)
        if got != expected:
            raise FailedPreconditionError(
                f"sha256 mismatch on {runner.name}:{remote_file}: got {got} expected {expected}; "
                "the stream was corrupted or cut and nothing was loaded"
            )
        t0 = time.monotonic()
        show.stage("load", None)
        script = _FINISH.replace("DECOMPRESS", " ".join(c.decompress_argv))
        finish = await runner.run(["bash", "-c", script, remote_file, tag, image_id, set_current or ""],
                                  root=True)
        removed = True  # the script's trap removed the file, whatever happened
        _check_finish(finish, runner.name, tag, image_id, set_current)
        stage_seconds["load"] = time.monotonic() - t0
        show.stage("done", None)
    finally:
        if not removed:
            # Best effort: the error that got us here matters more than a failed clean-up.
            with contextlib.suppress(Exception):
                await runner.run(["rm", "-f", remote_file], root=True, timeout=60)
    return PushResult(tag, image_id, c.name, stream.tar_bytes, stream.compressed_bytes, expected,
                      remote_file, time.monotonic() - started, stage_seconds)
