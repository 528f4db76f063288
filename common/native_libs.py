"""asyncssh's shared-library look-ups, answered from the dynamic linker's cache without subprocesses.

When asyncssh is imported it asks :func:`ctypes.util.find_library` for liboqs (post-quantum
key exchange) and libnettle (UMAC MACs). On Linux that runs ``ldconfig -p`` for each name
and, for a library that is not installed (liboqs on most hosts), ``gcc`` (with its
``collect2`` and ``ld``) and ``ld`` as well: eight processes, about 25 ms of CPU and several
times that in wall time, paid by every process that talks to an agent (issue 13).

:func:`find_library` answers the same question by reading ``/etc/ld.so.cache`` (what
``ldconfig -p`` prints) and then looking for ``lib<name>.so`` in ``LD_LIBRARY_PATH`` and the
standard library directories (where gcc and ld would find it), keeping only files built for
this interpreter's machine. A liboqs installed by a package or by ``make install`` is
therefore still found and used. A cache it cannot read sends the question on to ctypes.

:func:`answer_asyncssh_lookups` puts it in ctypes' place for asyncssh's names only;
:mod:`common.asyncssh_import` does so just before asyncssh is first imported.
"""

from __future__ import annotations

import os
import struct
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["ASYNCSSH_LIBRARIES", "UnreadableCacheError", "answer_asyncssh_lookups", "find_library",
           "read_ld_cache"]

# What asyncssh 2.x looks up (asyncssh/crypto/pq.py and umac.py).
ASYNCSSH_LIBRARIES = frozenset({"oqs", "liboqs", "nettle", "libnettle", "libnettle-6"})

LD_CACHE = Path("/etc/ld.so.cache")
_MAGIC = b"glibc-ld.so.cache1.1"       # glibc's cache format since 2.32 (alone, or after the old one)
_HEADER = struct.Struct("=II")           # nlibs, len_strings (after the 20-byte magic and version)
_HEADER_SIZE = 48
_ENTRY = struct.Struct("=iIIIQ")         # flags, key, value, osversion, hwcap
# Where gcc and ld look for -l<name> on Linux, after LD_LIBRARY_PATH.
_MULTIARCH = getattr(sys.implementation, "_multiarch", "")
_DEFAULT_DIRS = tuple(d for d in (
    f"/usr/local/lib/{_MULTIARCH}", "/usr/local/lib", "/usr/local/lib64",
    f"/lib/{_MULTIARCH}", f"/usr/lib/{_MULTIARCH}", "/lib64", "/usr/lib64", "/lib", "/usr/lib",
) if not d.endswith("/"))


class UnreadableCacheError(Exception):
    """The linker cache is missing or in a format this module does not read."""


def read_ld_cache(path: Path = LD_CACHE) -> Iterator[tuple[str, str]]:
    """Yield the (library name, file path) entries of a glibc linker cache, in its order.

    Raises:
        UnreadableCacheError: no such file, or not glibc's 1.1 format.
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UnreadableCacheError(str(e)) from e
    base = data.find(_MAGIC)    # 0, or after the old-format table in a compat file
    if base < 0 or len(data) < base + _HEADER_SIZE:
        msg = f"{path}: not a glibc 1.1 linker cache"
        raise UnreadableCacheError(msg)
    nlibs, _strings = _HEADER.unpack_from(data, base + len(_MAGIC))
    start = base + _HEADER_SIZE
    if len(data) < start + nlibs * _ENTRY.size:
        msg = f"{path}: truncated"
        raise UnreadableCacheError(msg)

    def string(offset: int) -> str:
        at = base + offset
        end = data.find(b"\0", at)
        if end < 0:
            msg = f"{path}: a name runs past the end"
            raise UnreadableCacheError(msg)
        return data[at:end].decode("utf-8", "surrogateescape")

    for _flags, key, value, _os, _hwcap in _ENTRY.iter_unpack(data[start:start + nlibs * _ENTRY.size]):
        yield string(key), string(value)


def _elf_kind(path: str) -> bytes | None:
    """Class, byte order and machine of an ELF file (None: not readable or not ELF)."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return None
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    return head[4:6] + head[18:20]


_own_kind: list[bytes | None] = []


def _loadable(path: str) -> bool:
    """Whether ``path`` is a library for this interpreter's machine (32/64-bit, architecture).

    Any ELF file passes when the interpreter's own kind cannot be read.
    """
    if not _own_kind:
        _own_kind.append(_elf_kind("/proc/self/exe") or _elf_kind(os.path.realpath(sys.executable)))
    kind = _elf_kind(path)
    return kind is not None and _own_kind[0] in (None, kind)


def find_library(name: str, *, cache: Path = LD_CACHE,
                 fallback: Callable[[str], str | None] | None = None) -> str | None:
    """What :func:`ctypes.util.find_library` answers on Linux, without starting a process.

    Args:
        name: the library name without ``lib`` and suffix (``oqs`` for liboqs).
        cache: the linker cache to read.
        fallback: asked instead when the cache cannot be read (default: ctypes' own).

    Returns:
        The cached library name (``libnettle.so.8``), as ctypes returns it; a path, for a
        ``lib<name>.so`` found only in ``LD_LIBRARY_PATH`` or a standard directory; None
        when the library is not installed for this machine.
    """
    prefix = f"lib{name}."
    try:
        for soname, path in read_ld_cache(cache):
            if soname.startswith(prefix) and _loadable(path):
                return soname
    except UnreadableCacheError:
        if fallback is None:
            import ctypes.util  # noqa: PLC0415 - only for a system this module cannot read
            fallback = ctypes.util.find_library
        return fallback(name)
    dirs = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    for directory in (*dirs, *_DEFAULT_DIRS):
        candidate = os.path.join(directory, f"lib{name}.so")
        if _loadable(candidate):
            return candidate
    return None


def answer_asyncssh_lookups() -> None:
    """Make :func:`ctypes.util.find_library` answer asyncssh's names with :func:`find_library`.

    Every other name still goes to ctypes' own look-up. Linux only; idempotent.
    """
    if sys.platform != "linux":
        return
    import ctypes.util  # noqa: PLC0415 - only when asyncssh is about to be imported (it imports this too)

    original = ctypes.util.find_library
    if getattr(original, "answers_asyncssh", False):
        return

    def lookup(name: str) -> str | None:
        if name in ASYNCSSH_LIBRARIES:
            return find_library(name, fallback=original)
        return original(name)

    lookup.answers_asyncssh = True  # type: ignore[attr-defined]
    ctypes.util.find_library = lookup
