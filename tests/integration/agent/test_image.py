"""The offline session image: small, built without a registry, with tmux, locale and the stand-in CLI."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from agent.image_build import build_context, offline_image_tag

pytestmark = [pytest.mark.docker]


def test_offline_image_is_small_and_complete(offline_image: str) -> None:
    """The image is about 7 MB and holds busybox, tmux with its libraries, the locale and the CLI."""
    out = subprocess.run(["docker", "image", "inspect", offline_image], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    info = json.loads(out)[0]
    assert info["Size"] < 15 * 1024 * 1024
    assert info["Config"]["Entrypoint"] == ["/usr/local/bin/convocate-entrypoint"]
    run = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", offline_image, "-c",
         "tmux -V && ls /usr/lib/locale/C.utf8/LC_CTYPE && head -1 /usr/local/bin/claude"],
        capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("tmux ")
    assert "#!/bin/sh" in run.stdout


def test_build_context_is_deterministic() -> None:
    """The same host gives the same context, so the tag names the content and rebuilds are skipped."""
    started = time.monotonic()
    first, second = build_context(), build_context()
    assert first == second
    assert offline_image_tag(first, "x").startswith("x:offline-")
    assert time.monotonic() - started < 20
