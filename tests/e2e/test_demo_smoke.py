"""`convocate demo --no-console`: the demo's Python part, end to end, as CI runs it."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.support.env import require_docker, require_tool

pytestmark = [pytest.mark.docker, pytest.mark.tmux]


def test_demo_smoke_creates_attaches_and_cleans_up() -> None:
    """The demo starts a real agent and status service, passes its smoke test and cleans up."""
    require_docker()
    require_tool("tmux")
    require_tool("busybox")
    with tempfile.TemporaryDirectory(prefix="cvd-") as d:
        work = Path(d) / "w"
        r = subprocess.run([sys.executable, "-c", "from shell.main import main; main()", "demo",
                            "--no-console", "--workdir", str(work)],
                           capture_output=True, text=True, timeout=150, check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "smoke test passed" in r.stdout
        assert "[demo] stopped" in r.stdout
        left = subprocess.run(["docker", "ps", "-aq", "--filter", "label=convocate.agent=local"],
                              capture_output=True, text=True, timeout=30, check=False).stdout.split()
        assert left == []
