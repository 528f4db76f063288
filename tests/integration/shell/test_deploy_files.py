"""The shipped deploy files checked by real tools: systemd-analyze and bash."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from shell.install import render_status_unit
from tests.support.env import require_tool

REPO = Path(__file__).resolve().parents[3]


def test_status_unit_passes_systemd_analyze(tmp_path: Path) -> None:
    """The status unit passes `systemd-analyze verify` with a real ExecStart."""
    analyze = require_tool("systemd-analyze")
    exe = shutil.which("convocate") or str(Path(sys.executable).parent / "convocate")
    unit = tmp_path / "convocate-status.service"
    unit.write_text(render_status_unit(exe))
    r = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60,
                       check=False)
    assert r.returncode == 0, r.stderr
    assert "convocate-status.service" not in r.stderr


def test_demo_script_is_valid_bash() -> None:
    """deploy/demo.sh parses, runs as root only, and ends in `convocate demo`."""
    bash = require_tool("bash")
    script = REPO / "deploy" / "demo.sh"
    r = subprocess.run([bash, "-n", str(script)], capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 0, r.stderr
    text = script.read_text()
    assert 'exec "$VENV/bin/convocate" demo "$@"' in text
    for package in ("docker.io", "tmux", "busybox-static", "python3-venv"):
        assert package in text
