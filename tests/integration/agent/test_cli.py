"""The ``convocate-agent`` command as a process: the error boundary and the uid guard."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True,
                          timeout=60, check=False, env={**os.environ, **(env or {})})


def test_serve_under_the_wrong_uid_prints_one_line_naming_the_expected_uid(tmp_path: Path) -> None:
    """``serve`` as a uid other than the expected one exits 1 with one ``error:`` line."""
    wrong = os.getuid() + 1
    config = tmp_path / "agent.toml"
    config.write_text(f'[agent]\nexpected_uid = {wrong}\nconfig_dir = "{tmp_path}"\n')
    result = _run("serve", "--config", str(config))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f'error: must run as user "claude" (uid {wrong}), currently uid {os.getuid()}')


def test_version_and_a_bad_config_file(tmp_path: Path) -> None:
    """``version`` prints the version; an unknown config key is one clear error line."""
    assert _run("version").stdout.startswith("convocate-agent version ")
    config = tmp_path / "agent.toml"
    config.write_text("[agent]\nno_such_key = 1\n")
    result = _run("serve", "--config", str(config))
    assert result.returncode == 1
    assert "unknown key(s) in [agent]: no_such_key" in result.stderr


def test_help_lists_every_command() -> None:
    """``--help`` lists serve, install, build-image, prune-images and version."""
    result = _run("--help")
    assert result.returncode == 0, result.stderr
    for command in ("serve", "install", "build-image", "prune-images", "version"):
        assert command in result.stdout
