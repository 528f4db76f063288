"""The sender's edit of a ``docker save`` stream, on its way to the compressor.

Two changes, made while the bytes flow (nothing is held whole in memory):

* **Untagged**: ``manifest.json`` loses its ``RepoTags`` and the legacy ``repositories``
  file is dropped, so ``docker load`` on the target registers the image by id and moves
  no tag. The receiver tags it only after the stream's checksum and the image id matched:
  a corrupted stream can never take over a tag that is already there.
* **Layers the target has**: a ``layer.tar`` whose sha256 (its diff id) is in ``skip`` is
  left out. ``docker load`` (the classic image store) does not open the file of a layer
  whose chain id it already has, so it never misses them. ``docker save`` names layer
  directories by v1 ids and writes them in name order, not layer order, so a layer's diff
  id is known only once its bytes are read: while there may be something to skip, each
  ``layer.tar`` is spooled to a local temporary file while it is hashed, then sent or
  dropped. ``skip`` is a future: the edit starts before the target has said what it has,
  spooling layers until it knows (a target that has nothing gets the rest unspooled).
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import IO

__all__ = ["TarEdit", "edit_save_stream"]

CHUNK = 1 << 20
BLOCK = 512


@dataclass
class TarEdit:
    """What the edit did: bytes read from ``docker save``, layers sent and left out."""

    tar_bytes: int = 0
    layers_sent: int = 0
    layers_skipped: int = 0
    skipped_bytes: int = 0


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _member(out: int, info: tarfile.TarInfo, body: Callable[[], None]) -> None:
    _write_all(out, info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
    body()
    if pad := -info.size % BLOCK:
        _write_all(out, bytes(pad))


def _untagged_manifest(data: bytes) -> bytes:
    items = json.loads(data)
    for item in items:
        item["RepoTags"] = None
    return json.dumps(items, separators=(",", ":")).encode()


def edit_save_stream(src: IO[bytes], out: int, skip: Future[frozenset[str]],
                     advance: Callable[[int], None] = lambda _n: None) -> TarEdit:
    """Copy the tar ``src`` (``docker save``) to the fd ``out``, untagged and without ``skip``.

    Args:
        src: the ``docker save`` output.
        out: where the edited tar goes (the compressor's stdin); not closed here.
        skip: will hold the diff ids (``sha256:<hex>``) of layers the target has (see the
            module docstring); cancel it to stop the edit at the next layer.
        advance: told how many bytes of ``src`` were read, as they are read.

    Returns:
        Counts of what was read, sent and left out.
    """
    edit = TarEdit()

    def read(f: IO[bytes], n: int) -> bytes:
        chunk = f.read(n)
        edit.tar_bytes += len(chunk)
        advance(len(chunk))
        return chunk

    with tarfile.open(fileobj=src, mode="r|", bufsize=CHUNK) as tar:
        for info in tar:
            f = tar.extractfile(info) if info.isfile() else None
            name = info.name.removeprefix("./")
            if f is None:
                _member(out, info, lambda: None)
            elif name == "repositories":
                read(f, info.size)
            elif name == "manifest.json":
                data = _untagged_manifest(read(f, info.size))
                info.size = len(data)
                _member(out, info, lambda d=data: _write_all(out, d))  # type: ignore[misc]
            elif name.endswith("/layer.tar") and (not skip.done() or skip.result()):
                _spooled_layer(f, info, out, skip, edit, read)
            else:
                def copy(f: IO[bytes] = f) -> None:
                    while chunk := read(f, CHUNK):
                        _write_all(out, chunk)
                _member(out, info, copy)
                edit.layers_sent += name.endswith("/layer.tar")
    _write_all(out, bytes(2 * BLOCK))
    return edit


def _spooled_layer(f: IO[bytes], info: tarfile.TarInfo, out: int, skip: Future[frozenset[str]], edit: TarEdit,
                   read: Callable[[IO[bytes], int], bytes]) -> None:
    sha = hashlib.sha256()
    with tempfile.TemporaryFile(prefix="convocate-layer-") as spool:
        while chunk := read(f, CHUNK):
            sha.update(chunk)
            spool.write(chunk)
        if f"sha256:{sha.hexdigest()}" in skip.result():
            edit.layers_skipped += 1
            edit.skipped_bytes += info.size
            return
        spool.seek(0)

        def copy() -> None:
            while chunk := spool.read(CHUNK):
                _write_all(out, chunk)
        _member(out, info, copy)
        edit.layers_sent += 1
