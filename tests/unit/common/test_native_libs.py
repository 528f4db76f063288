"""common.native_libs answers library look-ups as ctypes does, from the real linker cache."""

from __future__ import annotations

import ctypes.util
import re
import subprocess
from pathlib import Path

import pytest

from common.native_libs import UnreadableCacheError, find_library, read_ld_cache
from tests.support.env import require_tool


def _ldconfig_entries() -> list[tuple[str, str]]:
    out = subprocess.run([require_tool("ldconfig"), "-p"], capture_output=True, text=True, check=True,
                         timeout=30).stdout
    return [(m[1], m[2]) for m in re.finditer(r"^\s+(\S+) \(.*?\) => (\S+)$", out, re.MULTILINE)]


def test_the_cache_reads_as_ldconfig_prints_it() -> None:
    """Every entry of /etc/ld.so.cache, in order, is what `ldconfig -p` lists."""
    entries = list(read_ld_cache())
    assert entries, "an empty linker cache"
    assert entries == _ldconfig_entries()


@pytest.mark.parametrize("name", ["c", "m", "z", "nettle", "crypto", "oqs", "liboqs", "no-such-lib-cvx"])
def test_answers_what_ctypes_answers(name: str) -> None:
    """Installed libraries give ctypes' answer (the cached name), missing ones None, as ctypes does."""
    assert find_library(name) == ctypes.util.find_library(name)


def test_an_unreadable_cache_asks_the_fallback(tmp_path: Path) -> None:
    """A file that is not a glibc cache is reported, and find_library defers to the fallback."""
    bogus = tmp_path / "ld.so.cache"
    bogus.write_bytes(b"not a cache at all" * 10)
    with pytest.raises(UnreadableCacheError):
        list(read_ld_cache(bogus))
    asked: list[str] = []

    def fallback(name: str) -> str:
        asked.append(name)
        return "from-fallback"

    assert find_library("nettle", cache=bogus, fallback=fallback) == "from-fallback"
    assert asked == ["nettle"]


def test_a_truncated_cache_is_unreadable(tmp_path: Path) -> None:
    """A cache cut short after its header is refused rather than read past its end."""
    cut = tmp_path / "ld.so.cache"
    cut.write_bytes(Path("/etc/ld.so.cache").read_bytes()[:200])
    with pytest.raises(UnreadableCacheError):
        list(read_ld_cache(cut))


def test_a_library_on_the_library_path_must_be_built_for_this_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """lib<name>.so in LD_LIBRARY_PATH is answered by its path, unless it is for another machine."""
    header = bytearray(Path("/proc/self/exe").read_bytes()[:64])
    ours, foreign = tmp_path / "ours", tmp_path / "foreign"
    ours.mkdir()
    foreign.mkdir()
    (ours / "libcvx-probe.so").write_bytes(header)
    header[18:20] = b"\xfe\xfe" if header[18:20] != b"\xfe\xfe" else b"\xfd\xfd"   # another e_machine
    (foreign / "libcvx-probe.so").write_bytes(header)
    monkeypatch.setenv("LD_LIBRARY_PATH", f"{foreign}:{ours}")
    assert find_library("cvx-probe") == str(ours / "libcvx-probe.so")
    monkeypatch.setenv("LD_LIBRARY_PATH", str(foreign))
    assert find_library("cvx-probe") is None
