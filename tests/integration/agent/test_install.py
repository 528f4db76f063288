"""``convocate-agent install`` into a temporary root, and the units it installs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import AgentConfig
from agent.install import SLICE, UNITS, InstallOptions, UnitOptions, install_agent, installed_unit_options
from common.errors import FailedPreconditionError, PermissionDeniedError
from tests.support.env import require_tool

UNITS_DIR = Path(__file__).resolve().parents[3] / "deploy" / "systemd"


def _binary() -> str:
    found = shutil.which("convocate-agent") or str(Path(sys.executable).with_name("convocate-agent"))
    assert Path(found).exists(), "the convocate-agent console script is not installed"
    return found


def _install(root: Path, lines: list[str], **kw: object) -> int:
    opts = InstallOptions(root=root, units_dir=UNITS_DIR, binary=_binary(), **kw)  # type: ignore[arg-type]
    return install_agent(AgentConfig(), opts, lines.append, euid=0)


def _with_cli(root: Path) -> Path:
    cli = root / "usr/local/bin/claude"
    cli.parent.mkdir(parents=True)
    cli.write_text("#!/bin/sh\n")
    return root


def test_install_creates_the_layout_units_and_reports_adopted_sessions(tmp_path: Path) -> None:
    """Install writes the id, host key, keys file, skeleton, slice and units, and counts sessions."""
    root = _with_cli(tmp_path)
    old = root / "home/claude/5a0ef8a4-0c61-4f0e-9d3c-2f1d6b1d1a11"
    old.mkdir(parents=True)
    (old / "session.json").write_text("{}")
    lines: list[str] = []
    assert _install(root, lines) == 1
    agent_id = (root / "etc/convocate-agent/agent-id").read_text().strip()
    assert len(agent_id) == 12
    assert (root / "etc/convocate-agent/ssh_host_ed25519_key").stat().st_mode & 0o777 == 0o600
    allow_list = root / "etc/convocate-agent/authorized_keys"
    assert allow_list.read_text().startswith("#")
    assert allow_list.stat().st_mode & 0o777 == 0o640
    assert not (root / "home/claude/.ssh").exists()     # OpenSSH's own file stays untouched
    assert "Match User claude" in (root / "etc/ssh/sshd_config.d/convocate.conf").read_text()
    assert (root / "home/claude/.skel/CLAUDE.md").is_file()
    units = root / "etc/systemd/system"
    for name in (*UNITS, SLICE):
        assert (units / name).is_file(), name
    assert "CPUQuota=" in (units / SLICE).read_text()
    assert "@" not in (units / SLICE).read_text()
    assert f"ExecStart={_binary()} serve" in (units / "convocate-agent.service").read_text()
    assert any("adopted 1 pre-existing session(s)" in line for line in lines)
    # The options the units were rendered with are recorded (the templates: the release's own).
    config_dir = root / "etc/convocate-agent"
    assert (config_dir / "install-options.json").stat().st_mode & 0o777 == 0o644
    assert installed_unit_options(config_dir, units) == UnitOptions(_binary())
    again: list[str] = []
    _install(root, again)  # idempotent: the id and key stay
    assert (root / "etc/convocate-agent/agent-id").read_text().strip() == agent_id


def test_install_refuses_the_wrong_uid_and_a_missing_cli(tmp_path: Path) -> None:
    """A non-root install names the expected uid; a missing Claude CLI stops the install."""
    opts = InstallOptions(root=tmp_path, units_dir=UNITS_DIR)
    with pytest.raises(PermissionDeniedError, match=r"uid 0\), currently uid 1000"):
        install_agent(AgentConfig(), opts, print, euid=1000)
    with pytest.raises(FailedPreconditionError, match="claude CLI not found at /usr/local/bin/claude"):
        install_agent(AgentConfig(), opts, lambda _line: None, euid=0)


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    """A dry run prints the plan and writes no file."""
    lines: list[str] = []
    _install(tmp_path, lines, dry_run=True)
    assert any("dry run" in line for line in lines)
    assert list(tmp_path.iterdir()) == []


def test_installed_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd-analyze verify accepts every installed unit and rejects a broken one."""
    tool = require_tool("systemd-analyze")
    root = _with_cli(tmp_path)
    _install(root, [])
    units = sorted(str(p) for p in (root / "etc/systemd/system").iterdir())
    ok = subprocess.run([tool, "verify", *units], capture_output=True, text=True, timeout=60, check=False)
    assert ok.returncode == 0, ok.stderr
    assert "convocate" not in ok.stderr, ok.stderr  # no warnings about our units either
    broken = tmp_path / "broken" / "convocate-agent.service"
    broken.parent.mkdir()
    broken.write_text((root / "etc/systemd/system/convocate-agent.service").read_text()
                      .replace("ExecStart=" + _binary(), "ExecStart=/nonexistent/convocate-agent"))
    bad = subprocess.run([tool, "verify", str(broken)], capture_output=True, text=True, timeout=60,
                         check=False)
    assert bad.returncode != 0
