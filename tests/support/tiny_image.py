"""A tiny image built offline (FROM scratch + the host's static busybox), for transfer tests."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from tests.support.env import require_docker, require_tool

__all__ = ["build_tiny_image"]


def build_tiny_image(tag_prefix: str = "convocate-tiny") -> str:
    """Build a unique-tagged ~1 MB image and return its tag (the caller removes it)."""
    require_docker()
    busybox = require_tool("busybox")
    tag = f"{tag_prefix}:{uuid.uuid4().hex[:12]}"
    with tempfile.TemporaryDirectory(prefix="cvimg-") as d:
        ctx = Path(d)
        shutil.copy(busybox, ctx / "busybox")
        (ctx / "stamp").write_text(tag)  # a unique layer, so every build has its own id
        (ctx / "Dockerfile").write_text(
            'FROM scratch\nCOPY busybox /bin/busybox\nCOPY stamp /stamp\nCMD ["/bin/busybox", "true"]\n'
        )
        out = subprocess.run(["docker", "build", "-q", "-t", tag, str(ctx)], check=False,
                             capture_output=True, timeout=120)
    if out.returncode != 0:   # the engine's own words, not only the exit status
        detail = (out.stderr or out.stdout).decode(errors="replace").strip()[-2000:]
        raise RuntimeError(f"docker build of {tag} failed (exit {out.returncode}): {detail}")
    return tag
