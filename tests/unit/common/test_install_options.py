"""The install record: written by the role installers, read back by their ``units`` commands."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from agent import install as agent_install
from common.errors import FailedPreconditionError
from common.install_options import OPTIONS_UNKNOWN, exec_start, read_options, unit_setting, write_options
from hostctl.units import parse_rendered
from shell import install as shell_install


def test_a_record_is_written_whole_readable_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "install-options.json"
    write_options(path, "agent", {"binary": "/opt/a"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert json.loads(path.read_text()) == {"format": 1, "role": "agent", "options": {"binary": "/opt/a"}}
    assert read_options(path, "agent") == {"binary": "/opt/a"}
    assert not list(path.parent.glob(".*.tmp"))       # no temp file left beside it
    assert read_options(tmp_path / "none.json", "agent") is None


@pytest.mark.parametrize("text", [
    "", "not json", "[]", '{"format": 2, "role": "agent", "options": {}}',
    '{"format": 1, "role": "shell", "options": {}}', '{"format": 1, "role": "agent", "options": {"a": 1}}',
    '{"format": 1, "role": "agent"}',
])
def test_a_bad_record_is_named_and_left_alone(tmp_path: Path, text: str) -> None:
    path = tmp_path / "install-options.json"
    path.write_text(text)
    with pytest.raises(FailedPreconditionError, match=r"install-options\.json"):
        read_options(path, "agent")
    assert path.read_text() == text


def test_exec_start_and_settings_of_a_unit() -> None:
    text = "[Service]\nUser=bob\nExecStart=-/opt/x/convocate 'status' serve\nExecStart=/other\n"
    assert exec_start(text) == ["/opt/x/convocate", "status", "serve"]
    assert unit_setting(text, "User") == "bob"
    assert unit_setting(text, "Group") is None
    assert exec_start("ExecStart=/a 'unclosed\n") == []


def _agent_host(tmp_path: Path, unit: str | None) -> tuple[Path, Path]:
    config, systemd = tmp_path / "etc" / "convocate-agent", tmp_path / "etc" / "systemd" / "system"
    config.mkdir(parents=True)
    systemd.mkdir(parents=True)
    if unit is not None:
        (systemd / "convocate-agent.service").write_text(unit)
    return config, systemd


def test_the_agent_options_come_from_the_record_first(tmp_path: Path) -> None:
    config, systemd = _agent_host(tmp_path, "[Service]\nExecStart=/elsewhere/convocate-agent serve\n")
    opts = agent_install.UnitOptions("/opt/custom/convocate-agent", tmp_path / "templates")
    write_options(config / "install-options.json", "agent", opts.as_record())
    assert agent_install.installed_unit_options(config, systemd) == opts


def test_an_agent_installed_before_the_record_gets_the_binary_of_its_unit(tmp_path: Path) -> None:
    config, systemd = _agent_host(tmp_path, "[Service]\nExecStart=/opt/old/convocate-agent serve\n")
    assert agent_install.installed_unit_options(config, systemd) == agent_install.UnitOptions(
        "/opt/old/convocate-agent")


@pytest.mark.parametrize("unit", [None, "# edited by hand\n", "[Service]\nExecStart=/x/agent run\n",
                                  "[Service]\nExecStart=agent serve\n"])
def test_an_agent_with_neither_is_not_guessed(tmp_path: Path, unit: str | None) -> None:
    config, systemd = _agent_host(tmp_path, unit)
    with pytest.raises(FailedPreconditionError, match="cannot tell how the agent was installed"):
        agent_install.installed_unit_options(config, systemd)


def test_the_shell_options_come_from_the_record_then_the_status_unit(tmp_path: Path) -> None:
    systemd = tmp_path / "etc" / "systemd" / "system"
    systemd.mkdir(parents=True)
    with pytest.raises(FailedPreconditionError, match="cannot tell how the shell role was installed"):
        shell_install.installed_unit_options(tmp_path)
    (systemd / "convocate-status.service").write_text(shell_install.render_status_unit("/opt/c", "ops"))
    assert shell_install.installed_unit_options(tmp_path) == shell_install.UnitOptions("/opt/c", "ops")
    write_options(tmp_path / "etc" / "convocate" / "install-options.json", "shell",
                  shell_install.UnitOptions("/srv/convocate", "console").as_record())
    assert shell_install.installed_unit_options(tmp_path) == shell_install.UnitOptions(
        "/srv/convocate", "console")


def test_the_shell_installer_records_its_options(tmp_path: Path) -> None:
    opts = shell_install.InstallOptions(root=tmp_path, exec_path="/srv/bin/convocate", user="ops",
                                        build_image=False, start_service=False)
    steps = shell_install.plan_install(opts, lambda _argv: None)
    (step,) = [s for s in steps if s.title.startswith("Record")]
    step.action()
    want = shell_install.UnitOptions("/srv/bin/convocate", "ops")
    assert shell_install.installed_unit_options(tmp_path) == want


def _units(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", f"from {module} import main; main()", "units", *args],
                          capture_output=True, text=True, timeout=60, check=False)


def test_the_units_commands_render_as_recorded_and_refuse_to_guess(tmp_path: Path) -> None:
    config, _ = _agent_host(tmp_path, None)
    done = _units("agent.main", "--root", str(tmp_path))
    assert done.returncode == OPTIONS_UNKNOWN, done.stderr
    assert "cannot tell how the agent was installed" in done.stderr
    assert done.stdout == ""
    write_options(config / "install-options.json", "agent", {"binary": "/opt/custom/convocate-agent"})
    done = _units("agent.main", "--root", str(tmp_path))
    assert done.returncode == 0, done.stderr
    rendered = parse_rendered(done.stdout, "convocate-agent units")
    unit = rendered.units["convocate-agent.service"].splitlines()
    assert "ExecStart=/opt/custom/convocate-agent serve" in unit
    assert rendered.enable == agent_install.ENABLE
    assert rendered.start == agent_install.START
    given = parse_rendered(_units("agent.main", "--root", str(tmp_path), "--binary", "/b/a").stdout, "x")
    assert "ExecStart=/b/a serve" in given.units["convocate-agent.service"].splitlines()

    write_options(tmp_path / "etc" / "convocate" / "install-options.json", "shell",
                  {"exec_path": "/srv/convocate", "user": "ops"})
    done = _units("shell.main", "--root", str(tmp_path))
    assert done.returncode == 0, done.stderr
    want = shell_install.render_units("/srv/convocate", "ops")
    assert parse_rendered(done.stdout, "convocate units").units == want
