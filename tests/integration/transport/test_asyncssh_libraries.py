"""asyncssh imported after common starts no process, still finds an installed liboqs and leaves
X.509 out (issue 13)."""

from __future__ import annotations

import ctypes.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.native_libs import find_library
from tests.support.env import require_tool

# Records every process the interpreter starts while it imports the entry point, then asyncssh.
_PROBE = """
import importlib, json, sys
started = []
sys.addaudithook(lambda event, args: started.append(repr(args[:2])) if event in (
    "subprocess.Popen", "os.posix_spawn", "os.exec", "os.fork", "os.system") else None)
importlib.import_module(sys.argv[1])
import asyncssh.crypto, asyncssh.mac
print(json.dumps({"started": started, "umac": asyncssh.mac._umac_available,
                  "sntrup": asyncssh.crypto.sntrup_available,
                  "x509": sorted(m for m in sys.modules if "x509" in m and sys.modules[m] is not None)}))
"""

# Just enough of liboqs' ABI for asyncssh to offer sntrup761 (it looks the symbols up).
_FAKE_OQS = """
typedef unsigned char u8;
int OQS_KEM_ntruprime_sntrup761_keypair(u8 *p, u8 *s) { return 0; }
int OQS_KEM_ntruprime_sntrup761_encaps(u8 *c, u8 *k, const u8 *p) { return 0; }
int OQS_KEM_ntruprime_sntrup761_decaps(u8 *k, const u8 *c, const u8 *s) { return 0; }
"""


def _probe(module: str, env: dict[str, str] | None = None) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", _PROBE, module], capture_output=True, text=True, check=True,
                         timeout=60, env=env)
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("module", ["common", "hostctl.cli", "agent.main", "shell.main"])
def test_importing_asyncssh_starts_no_process(module: str) -> None:
    """After any entry point, importing asyncssh starts no ldconfig, gcc or ld; it finds libnettle."""
    seen = _probe(module)
    assert seen["started"] == []
    assert seen["umac"] == (ctypes.util.find_library("nettle") is not None)
    assert seen["x509"] == []   # neither asyncssh's X.509 support nor cryptography.x509 loaded


def _build_fake_liboqs(into: Path, soname: str) -> Path:
    source = into / "oqs.c"
    source.write_text(_FAKE_OQS)
    lib = into / f"{soname}.0"
    subprocess.run([require_tool("gcc"), "-shared", "-fPIC", f"-Wl,-soname,{soname}", "-o", str(lib),
                    str(source)], check=True, timeout=60, capture_output=True)
    return lib


def test_a_liboqs_on_the_library_path_is_still_used(tmp_path: Path) -> None:
    """liboqs found where ld would find it (LD_LIBRARY_PATH) gives asyncssh its sntrup761 key exchange."""
    lib = _build_fake_liboqs(tmp_path, "liboqs.so.9")
    (tmp_path / "liboqs.so").symlink_to(lib.name)
    seen = _probe("common", {**os.environ, "LD_LIBRARY_PATH": str(tmp_path)})
    assert seen["started"] == []
    assert seen["sntrup"] is True
    without = _probe("common")
    assert without["sntrup"] == (ctypes.util.find_library("oqs") is not None)   # as the system has it


def test_a_liboqs_in_the_linker_cache_is_found_by_its_name(tmp_path: Path) -> None:
    """A liboqs that ldconfig cached is answered with its cached name, as `ldconfig -p` lists it."""
    libdir = tmp_path / "lib"
    libdir.mkdir()
    _build_fake_liboqs(libdir, "liboqs.so.9")
    conf, cache = tmp_path / "ld.so.conf", tmp_path / "ld.so.cache"
    conf.write_text(f"{libdir}\n")
    subprocess.run([require_tool("ldconfig"), "-C", str(cache), "-f", str(conf)], check=True, timeout=60,
                   capture_output=True)
    assert find_library("oqs", cache=cache) == "liboqs.so.9"
