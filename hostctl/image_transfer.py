"""`convocate-host image push`: one streamed pipeline, checked end to end, loaded as it arrives.

Here::

    docker save TAG ─▶ edit (untag; leave out layers the target has) ─▶ zstd -T0 (or gzip -n)
        ─▶ sha256 + count ─▶ one SSH exec channel

On the target (:mod:`hostctl.image_receiver`)::

    tee FIFO | zstd -d | docker load        sha256sum < FIFO     (one pass, nothing staged)
    then, only if both sha256 digests and the loaded image id match:
    docker tag ID TAG; check TAG's id; rewrite the current-image pointer (atomic rename)
    else: remove the untagged image this load added; the tag and pointer stay as they were

Before sending, the sender asks the target which images (and layer diff ids) its engine
holds and leaves out of the tar every layer whose chain the target has (an update ships
only its new layers; ``docker load`` does not open a layer it already has). The tar
carries no tag (:mod:`hostctl.image_tar`), so loading a corrupted stream never moves a
tag: the stream's checksum and the image id are checked before anything is tagged.

No stage holds the image in memory: bytes flow in 1 MiB chunks. zstd is the default
(multi-threaded, several times faster than gzip at a similar ratio); gzip stays for hosts
without the ``zstd`` package. The target needs only the decompressor's Debian package
(:data:`RECEIVER_PACKAGES`), bash, coreutils and Docker.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import hashlib
import json
import os
import subprocess
import tarfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from common.errors import ConvocateError, FailedPreconditionError, InvalidArgumentError, NotFoundError
from common.tasks import cancel_and_wait
from hostctl import image_receiver as receiver
from hostctl.codecs import DEFAULT_CODEC, STAGING_DIR, CodecName
from hostctl.image_tar import TarEdit, edit_save_stream
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
_PIPE_SIZE = 1 << 20
_STEP_TIMEOUT = 3600.0  # the load step of a large image on a slow link
_WIND_DOWN = 30.0  # seconds a failed push waits for the target's steps to end
_F_SETPIPE_SZ = 1031  # Linux fcntl: grow a pipe's buffer (fewer wake-ups between the stages)


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
    # -T0: one worker per core; a frame checksum is written by default. Level 1: on two cores
    # shared with docker save and the SSH cipher, -3 costs 2.3x the CPU of -1 (57 MB: 0.34 s
    # vs. 0.15 s) for a stream a few percent smaller at most, slower than a LAN to produce.
    CodecName.zstd: Codec("zstd", ".tar.zst", "zstd", 1, 19,
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
    layers_sent: int
    layers_skipped: int
    seconds: float
    stage_seconds: dict[str, float] = field(default_factory=dict)


def push_plan(tag: str, target: str, *, codec: str = DEFAULT_CODEC, set_current: str | None,
              staging_dir: str = STAGING_DIR) -> list[str]:
    """The steps a push takes, for --dry-run."""
    c = _codec(codec)
    steps = [
        f"ask {target} which images and layers its engine has",
        (f"docker save {tag} | untag, leave out the layers {target} has | "
         f"{' '.join(c.compress(None))} | sha256 (here)"),
        (f"stream to {target}: tee | {' '.join(c.decompress_argv)} | docker load (untagged), "
         f"sha256 in the same pass (FIFO under {staging_dir})"),
        "compare the two sha256 digests and the loaded image id; on a mismatch remove what was loaded",
        f"docker tag ID {tag} on {target}, only if all matched",
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


def _grow_pipe(fd: int) -> None:
    with contextlib.suppress(OSError):  # not Linux, or above the system's limit: keep the default
        fcntl.fcntl(fd, _F_SETPIPE_SZ, _PIPE_SIZE)


class _CompressedSave:
    """``docker save TAG | edit | compressor``, read as an async iterator of compressed chunks.

    ``docker save`` and the compressor are native processes; the tar edit
    (:func:`hostctl.image_tar.edit_save_stream`) runs in a thread between them, writing
    into a pipe the compressor reads. ``start`` runs them before ``skip`` is known (the
    edit spools layers meanwhile); :meth:`chunks` hashes and counts what it yields.
    Use as an async context manager: leaving it stops whatever still runs.
    """

    def __init__(self, tag: str, compress: Sequence[str], progress: PushProgress) -> None:
        self.tag, self.compress, self.progress = tag, list(compress), progress
        self.skip: concurrent.futures.Future[frozenset[str]] = concurrent.futures.Future()
        self.sha = hashlib.sha256()
        self.edit = TarEdit()
        self.compressed_bytes = 0
        self._save: subprocess.Popen[bytes] | None = None
        self._comp: asyncio.subprocess.Process | None = None
        self._edit_done: asyncio.Future[TarEdit] | None = None
        self._aborted = False
        # time.monotonic() when the edit had read all of docker save, and after the last chunk
        self.saved_at = self.ended_at = 0.0

    def abort(self) -> None:
        """End the stream early and quietly: :meth:`chunks` returns (the reader sees EOF)."""
        self._aborted = True
        self.skip.cancel()
        if self._comp is not None and self._comp.returncode is None:
            self._comp.kill()

    async def __aenter__(self) -> _CompressedSave:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.skip.cancel()  # an edit waiting for it stops
        if self._save is not None and self._save.poll() is None:
            self._save.kill()
        if self._comp is not None and self._comp.returncode is None:
            self._comp.kill()
            await self._comp.wait()
        if self._edit_done is not None:
            # Both ends of the edit are gone: it ends at once (EOF or EPIPE).
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(self._edit_done), 60)
        if self._save is not None:
            await asyncio.to_thread(self._save.wait, 60)
            for f in (self._save.stdout, self._save.stderr):
                if f is not None:
                    f.close()

    def _run_edit(self, save: subprocess.Popen[bytes], out: int, loop: asyncio.AbstractEventLoop) -> TarEdit:
        def advance(n: int) -> None:
            loop.call_soon_threadsafe(self.progress.advance, n)

        try:
            if save.stdout is None:  # pragma: no cover - PIPE gives a reader
                raise ConvocateError("docker save gave no output stream")
            return edit_save_stream(save.stdout, out, self.skip, advance)
        finally:
            self.saved_at = time.monotonic()
            os.close(out)

    async def start(self) -> None:
        """Start ``docker save``, the edit and the compressor."""
        self._save = await asyncio.to_thread(
            subprocess.Popen, ["docker", "save", self.tag], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        read_end, write_end = os.pipe()
        _grow_pipe(write_end)
        try:
            pipe = asyncio.subprocess.PIPE
            self._comp = await asyncio.create_subprocess_exec(*self.compress, stdin=read_end, stdout=pipe,
                                                              stderr=pipe)
        except BaseException:
            os.close(write_end)
            raise
        finally:
            os.close(read_end)
        loop = asyncio.get_running_loop()
        edit = asyncio.to_thread(self._run_edit, self._save, write_end, loop)
        self._edit_done = asyncio.ensure_future(edit)

    async def chunks(self) -> AsyncIterator[bytes]:
        """Yield the compressed stream; raise if ``docker save``, the edit or the compressor fails."""
        save, comp, edit = self._save, self._comp, self._edit_done
        if save is None or comp is None or comp.stdout is None or edit is None:
            raise ConvocateError("the image stream was not started")
        while chunk := await comp.stdout.read(CHUNK):
            self.sha.update(chunk)
            self.compressed_bytes += len(chunk)
            yield chunk
        self.ended_at = time.monotonic()
        if self._aborted:
            return
        try:
            self.edit = await edit
        except (OSError, tarfile.TarError) as e:
            err = await asyncio.to_thread(_stderr_of, save)
            raise ConvocateError(f"reading docker save {self.tag} failed here: {err or e}") from None
        err = await asyncio.to_thread(_stderr_of, save)
        if await asyncio.to_thread(save.wait, 60) != 0:
            raise ConvocateError(f"docker save {self.tag} failed here: {err}")
        comp_err = await comp.stderr.read() if comp.stderr else b""
        if await comp.wait() != 0:
            detail = comp_err.decode(errors="replace").strip()
            raise ConvocateError(f"{self.compress[0]} failed here: {detail}")


def _stderr_of(proc: subprocess.Popen[bytes]) -> str:
    return proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""


async def _inventory(runner: Runner, c: Codec) -> dict[str, list[str]]:
    result = await runner.run(receiver.inventory_script(c.decompress_argv[0]), root=True, timeout=120)
    if result.status == receiver.MISSING_TOOL:
        raise FailedPreconditionError(
            f"{c.decompress_argv[0]} is not installed on {runner.name}: install the {c.package!r} package "
            f"there (convocate-host install does), or pass --codec "
            f"{next(n for n in CODECS if n != c.name)}"
        )
    if result.status != 0:
        detail = result.stderr.decode(errors="replace").strip()
        raise ConvocateError(f"listing the images on {runner.name} failed (exit {result.status}): {detail}")
    return receiver.parse_inventory(result.text())


def _check_load(result: CommandResult, where: str, got: str, expected: str, loaded: str, tag: str,
                image_id: str) -> None:
    if got != expected:
        raise FailedPreconditionError(
            f"sha256 mismatch on {where}: got {got or 'none'} expected {expected}; the stream "
            "was corrupted or cut: nothing was tagged and what it loaded was removed")
    if result.status != 0:
        detail = " ".join(result.stderr.decode(errors="replace").strip().splitlines()[-3:])
        raise ConvocateError(f"docker load on {where} failed (exit {result.status}): {detail}")
    if loaded != image_id:
        raise FailedPreconditionError(
            f"{where} loaded {tag} as {loaded or 'nothing'}, expected {image_id}; "
            "nothing was tagged and the current image was left as it was")


async def _discard(runner: Runner, image_id: str, before: dict[str, list[str]]) -> None:
    """Remove ``image_id`` from the target if this push added it (best effort)."""
    if image_id and image_id not in before:
        with contextlib.suppress(Exception):  # the error that got us here matters more
            await runner.run(["sh", "-c", receiver.DISCARD, image_id], root=True, timeout=120)


async def push_image(
    tag: str,
    runner: Runner,
    *,
    codec: str = DEFAULT_CODEC,
    level: int | None = None,
    set_current: str | None = None,
    progress: PushProgress | None = None,
    staging_dir: str = STAGING_DIR,
    all_layers: bool = False,
) -> PushResult:
    """Send local image ``tag`` to the host behind ``runner``, load it there, verify it, tag it.

    Args:
        tag: the local image (``convocate:<version>``).
        runner: where to load it (``LocalRunner`` or ``SSHRunner``).
        codec: ``zstd`` (default, multi-threaded) or ``gzip`` (for hosts without zstd).
        level: the codec's compression level; None takes its default (zstd 1, gzip 1).
        set_current: path of the target's current-image pointer to rewrite, or None.
        progress: told each stage (``send``, ``verify``, ``done``) and the image bytes read.
        staging_dir: where on the target the load step keeps its FIFO and digest (a few bytes).
        all_layers: send every layer, even those the target has.

    Returns:
        What was sent and verified.

    Raises:
        InvalidArgumentError: unknown codec or level.
        NotFoundError: no local image ``tag``.
        FailedPreconditionError: the target lacks the decompressor, or the checksum or
            the loaded image id does not match (nothing was tagged; what the load added
            is removed).
        ConvocateError: a step failed on either end (its message says which).
    """
    c = _codec(codec)
    compress = c.compress(level)
    show = progress or _NoProgress()
    started = time.monotonic()
    stage_seconds: dict[str, float] = {}
    verdict: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    image_id = ""

    async def commit_input() -> AsyncIterator[bytes]:
        if await verdict:
            yield f"commit {image_id}\n".encode()

    loaded = ""
    before: dict[str, list[str]] | None = None
    load_argv = ["bash", "-c", receiver.load_script(c.decompress_argv), staging_dir.rstrip("/") or "/"]
    async with _CompressedSave(tag, compress, show) as stream:
        # Everything starts at once: here docker save and the image's inspect, there the
        # inventory and the load step (docker load waits for its input), then the commit
        # step (it waits for the verdict). Only the layers wait for the inventory.
        inventory = asyncio.ensure_future(_inventory(runner, c))
        steps: list[asyncio.Task[Any]] = [inventory]
        try:
            inspect = asyncio.ensure_future(_local("docker", "image", "inspect", "--format",
                                                   "{{.Id}} {{.Size}} {{json .RootFS.Layers}}", tag))
            steps.append(inspect)
            await stream.start()
            steps.append(asyncio.ensure_future(runner.run(load_argv, root=True, stdin=stream.chunks(),
                                                          timeout=_STEP_TIMEOUT)))
            load = steps[-1]
            inspected = await inspect
            if inspected.status != 0:
                raise NotFoundError(f"no local image {tag!r}: build it first (convocate install)")
            image_id, size, layers_json = inspected.text().split(" ", 2)
            layers: list[str] = json.loads(layers_json) or []
            commit_argv = ["bash", "-c", receiver.COMMIT, image_id, tag, set_current or ""]
            commit = asyncio.ensure_future(runner.run(commit_argv, root=True, stdin=commit_input(),
                                                      timeout=_STEP_TIMEOUT))
            steps.append(commit)
            before = await inventory
            stream.skip.set_result(frozenset() if all_layers else receiver.layers_to_skip(layers, before))
            t0 = time.monotonic()
            stage_seconds["inventory"] = t0 - started
            show.stage("send", int(size) if size.isdigit() else None)
            result = await load
            got, loaded = receiver.parse_load(result)
            expected = stream.sha.hexdigest()
            done = time.monotonic()
            stage_seconds.update({"send+load": done - t0, "save": stream.saved_at - started,
                                  "send": stream.ended_at - t0, "load": done - stream.ended_at})
            show.stage("verify", None)
            _check_load(result, runner.name, got, expected, loaded, tag, image_id)
            t0 = time.monotonic()
            verdict.set_result(True)
            receiver.raise_for_commit(await commit, runner.name, tag, image_id, set_current)
            stage_seconds["commit"] = time.monotonic() - t0
        except BaseException:
            # Both steps get EOF and end on their own (the load step removes its FIFO):
            # wait for that, bounded, before cleaning up.
            stream.abort()
            if not verdict.done():
                verdict.set_result(False)  # the commit step changes nothing
            await asyncio.wait(steps, timeout=_WIND_DOWN)
            await cancel_and_wait(steps)
            if before is not None:
                await _discard(runner, loaded or image_id, before)
            raise
    show.stage("done", None)
    return PushResult(tag, image_id, c.name, stream.edit.tar_bytes, stream.compressed_bytes, expected,
                      stream.edit.layers_sent, stream.edit.layers_skipped, time.monotonic() - started,
                      stage_seconds)
