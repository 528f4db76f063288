"""The "before" side of start-up and memory comparisons: the base revision's code and packages.

:func:`before_tree` exports the base revision (``CONVOCATE_BENCH_BASE``, default: main
before issue 13's changes). For that default base it installs, next to it, the packages
that revision resolved where this one pins them differently (typer 0.29, which parses
options through pydantic), so a process started with the returned PYTHONPATH runs what the
base revision ran; any other base runs with this revision's packages.
Bytecode is compiled for both trees and the installed packages, as ``pip install`` does
on a host (without it, each process would compile its modules at start).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

from benchmarks.agent_session import PROTO
from benchmarks.keystroke_ab import BEFORE_ISSUE_13, ROOT, base_revision, export_tree

__all__ = ["BEFORE_PACKAGES", "before_tree", "compile_bytecode"]

# What the base revision installed that pyproject now excludes (typer<0.29).
BEFORE_PACKAGES = ("typer==0.29.2",)


def compile_bytecode(*trees: Path) -> None:
    """Write the .pyc files of the installed packages, this checkout and ``trees``."""
    paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], str(PROTO),
             *(str(ROOT / p) for p in ("agent", "common", "shell", "hostctl")), *map(str, trees)}
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", *sorted(paths)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, timeout=900)


def _dependencies(rev: str | None) -> list[str]:
    """The ``[project] dependencies`` of ``rev``'s pyproject.toml (None: the working tree's)."""
    text = (ROOT / "pyproject.toml").read_text() if rev is None else subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:pyproject.toml"], capture_output=True, text=True,
        check=True, timeout=60).stdout
    deps: list[str] = tomllib.loads(text)["project"]["dependencies"]
    return deps


def before_tree(into: Path) -> tuple[str, str]:
    """Export the base revision into ``into``; return its PYTHONPATH and a note on its packages."""
    code, deps = into / "code", into / "deps"
    code.mkdir(parents=True)
    export_tree(base_revision(), code, "hostctl")
    if base_revision() != BEFORE_ISSUE_13:
        # BEFORE_PACKAGES is what the revision before issue 13 resolved differently; for
        # any other base, this revision's packages (the note says whether its pins differ).
        compile_bytecode(code, PROTO)
        same = _dependencies(base_revision()) == _dependencies(None)
        pins = "the same pins" if same else "this revision's packages; its pins differ"
        return f"{code}:{PROTO}", f"before = {base_revision()} ({pins})"
    uv = shutil.which("uv")
    installed = uv is not None and subprocess.run(
        [uv, "pip", "install", "-q", "--python", sys.executable, "--target", str(deps), *BEFORE_PACKAGES],
        check=False, timeout=300, capture_output=True).returncode == 0
    path = [code, PROTO, deps] if installed else [code, PROTO]
    compile_bytecode(*path)
    wanted = ", ".join(BEFORE_PACKAGES)
    packages = wanted if installed else f"this revision's packages (could not install {wanted})"
    return ":".join(map(str, path)), f"before = {base_revision()} with {packages}"
