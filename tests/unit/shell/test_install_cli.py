"""`convocate install`, `version` and the uid guard through the typer app."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from common.errors import PermissionDeniedError
from shell import install as install_mod
from shell.console.config import ShellConfig, check_uid
from shell.install import render_status_unit, with_base
from shell.main import app, main

REPO = Path(__file__).resolve().parents[3]


def test_deploy_unit_matches_the_rendered_unit() -> None:
    """deploy/systemd/convocate-status.service is what install writes (default paths)."""
    text = (REPO / "deploy" / "systemd" / "convocate-status.service").read_text()
    assert text == render_status_unit()


def test_install_under_root_writes_files_and_runs_commands(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """install --root writes the unit, dnsmasq files and /etc/shells; user commands are recorded."""
    ran: list[list[str]] = []
    monkeypatch.setattr(install_mod, "run_command", ran.append)
    r = CliRunner().invoke(app, ["install", "--root", str(tmp_path), "--no-image"])
    assert r.exit_code == 0, r.output
    assert "[install] Installation complete." in r.output
    assert (tmp_path / "etc/systemd/system/convocate-status.service").read_text() == render_status_unit()
    assert (tmp_path / "var/lib/convocate/dnsmasq-hosts").read_text() == "# Managed by convocate.\n"
    dropin = (tmp_path / "etc/dnsmasq.d/convocate.conf").read_text()
    assert "addn-hosts=/var/lib/convocate/dnsmasq-hosts" in dropin
    assert "/usr/local/bin/convocate" in (tmp_path / "etc/shells").read_text()
    assert (tmp_path / "etc/convocate/agent-keys").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "usr/local/bin/convocate").is_symlink()
    useradd = next(cmd for cmd in ran if cmd[0] == "useradd")
    assert useradd[useradd.index("--uid") + 1] == "1337"
    (tmp_path / "etc/passwd").write_text("claude:x:1337:1337::/home/claude:/usr/local/bin/convocate\n")
    ran.clear()
    again = CliRunner().invoke(app, ["install", "--root", str(tmp_path), "--no-image"])
    assert again.exit_code == 0
    assert not any(cmd[0] == "useradd" for cmd in ran)
    assert (tmp_path / "etc/shells").read_text().count("/usr/local/bin/convocate") == 1


def test_install_dry_run_changes_nothing(tmp_path: Path) -> None:
    """--dry-run prints the plan with the chosen base image and writes nothing."""
    r = CliRunner().invoke(app, ["install", "--root", str(tmp_path), "--dry-run", "--base", "debian:12"])
    assert r.exit_code == 0, r.output
    assert "would: Building session image" in r.output
    assert "(base debian:12)" in r.output
    assert list(tmp_path.iterdir()) == []


def test_version_prints_the_version() -> None:
    """`convocate version` prints `convocate version X`."""
    r = CliRunner().invoke(app, ["version"])
    assert r.output.startswith("convocate version ")


def test_wrong_uid_is_refused_with_the_expected_uid() -> None:
    """The uid guard names the expected uid; -1 disables it."""
    with pytest.raises(PermissionDeniedError, match=r"uid 1337"):
        check_uid(ShellConfig(), uid=1000)
    check_uid(ShellConfig(expected_uid=-1), uid=1000)
    check_uid(ShellConfig(expected_uid=1000), uid=1000)


def test_console_under_wrong_uid_prints_one_error_line(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """`convocate` as the wrong user exits 1 with one `error:` line naming uid 1337."""
    monkeypatch.setattr(sys, "argv", ["convocate"])
    monkeypatch.setenv("CONVOCATE_SHELL_EXPECTED_UID", "1337")
    monkeypatch.setattr("os.getuid", lambda: 4242)
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("error: ")
    assert "uid 1337" in err[0]


def test_status_serve_and_demo_have_help() -> None:
    """`convocate status serve --help` and `convocate demo --help` describe their options."""
    serve = CliRunner().invoke(app, ["status", "serve", "--help"], env={"COLUMNS": "120"})
    assert serve.exit_code == 0
    assert "--socket" in serve.output
    demo = CliRunner().invoke(app, ["demo", "--help"], env={"COLUMNS": "120"})
    assert demo.exit_code == 0
    assert "--no-console" in demo.output


def test_base_image_replaces_the_first_from(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--base builds the production Dockerfile with its first FROM replaced."""
    assert with_base("# c\nFROM ubuntu:24.04\nRUN x\nFROM y\n", "debian:12") == (
        "# c\nFROM debian:12\nRUN x\nFROM y\n")
    ran: list[list[str]] = []
    seen: list[str] = []

    def record(argv: list[str]) -> None:
        ran.append(argv)
        if argv[:2] == ["docker", "build"]:
            seen.append((Path(argv[-1]) / "Dockerfile").read_text())

    monkeypatch.setattr(install_mod, "run_command", record)
    r = CliRunner().invoke(app, ["install", "--root", str(tmp_path), "--base", "debian:12"])
    assert r.exit_code == 0, r.output
    assert seen
    assert "FROM debian:12" in seen[0]
