"""The shipped deploy files checked by real tools: systemd-analyze and bash."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from shell.install import render_status_unit
from tests.support.env import require_root, require_tool

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


def _fake(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def test_demo_names_the_dockerd_log_when_the_engine_does_not_start(tmp_path: Path) -> None:
    """A docker client without a working engine: demo.sh starts dockerd, sees it exit, names its log."""
    bash = require_tool("bash")
    require_root("deploy/demo.sh runs as root only")
    fakes = tmp_path / "bin"
    fakes.mkdir()
    _fake(fakes, "docker", 'echo "Cannot connect to the Docker daemon" >&2; exit 1')
    _fake(fakes, "dockerd", 'echo "failed to start daemon: no storage driver" >&2; exit 1')
    _fake(fakes, "apt-get", 'echo "apt-get must not run in this test" >&2; exit 99')
    _fake(fakes, "dpkg", "exit 0")
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {
        "PATH": f"{fakes}:{os.environ['PATH']}",
        "CONVOCATE_DEMO_LOG_DIR": str(logs),
        "CONVOCATE_DEMO_VENV": str(tmp_path / "venv"),
        "HOME": str(tmp_path),
    }
    r = subprocess.run([bash, str(REPO / "deploy" / "demo.sh"), "--no-console"], capture_output=True,
                       text=True, timeout=60, check=False, env=env)
    log = logs / "convocate-demo-dockerd.log"
    assert r.returncode == 1, r.stderr
    assert f"dockerd did not start: see {log}" in r.stderr
    assert "no storage driver" in log.read_text()
    assert not (tmp_path / "venv").exists(), "nothing is installed after the engine failed"
