"""update's unit plan for hosts installed before the install record, with the real ``units`` commands.

The release's commands are this checkout's (``convocate-agent`` / ``convocate`` shims in
a temporary bin directory), run by a :class:`~hostctl.remote.LocalRunner` against a host
root in a temporary directory.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hostctl.firewall import FIREWALL_SCRIPT, FIREWALL_UNIT, plan_refresh, render_firewall_unit
from hostctl.remote import LocalRunner
from hostctl.units import ROLES, plan_units
from shell.install import render_status_unit


def _release_bin(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for command, module in (("convocate-agent", "agent.main"), ("convocate", "shell.main")):
        shim = bin_dir / command
        shim.write_text(f'#!/bin/sh\nexec {sys.executable} -c "from {module} import main; main()" "$@"\n')
        shim.chmod(0o755)
    return bin_dir


async def test_without_a_record_the_shell_keeps_its_path_and_user_and_the_agent_is_left_alone(
    tmp_path: Path,
) -> None:
    host = tmp_path / "host"
    systemd = host / "etc/systemd/system"
    systemd.mkdir(parents=True)
    # Installed by a release before the record: an older status unit with a path and user of its own.
    (systemd / "convocate-status.service").write_text(
        "[Service]\nUser=ops\nExecStart=/srv/bin/convocate status serve\n")
    (systemd / "convocate-agent.service").write_text("# edited by hand\n")   # says nothing of its binary
    plan = await plan_units(LocalRunner(), _release_bin(tmp_path), ROLES, systemd, host)
    assert [(c.name, c.text) for c in plan.changes] == [
        ("convocate-status.service", render_status_unit("/srv/bin/convocate", "ops"))]
    assert "the agent units stay as they are: cannot tell how the agent was installed" in plan.note
    assert (systemd / "convocate-agent.service").read_text() == "# edited by hand\n"


async def test_the_firewall_refresh_keeps_the_hosts_ports_and_script_path(tmp_path: Path) -> None:
    systemd, script = tmp_path / "systemd", tmp_path / "lib/firewall.sh"
    runner = LocalRunner()
    systemd.mkdir()
    assert await plan_refresh(runner, systemd) == ((), "")          # no boot unit: nothing to refresh
    (systemd / FIREWALL_UNIT).write_text("[Service]\nExecStart=/bin/sh " + str(script) + " apply 22 2222\n")
    changes, note = await plan_refresh(runner, systemd)
    assert note == ""
    assert [(c.path, c.text, c.mode, c.before is None) for c in changes] == [
        (systemd / FIREWALL_UNIT, render_firewall_unit((22, 2222), script), "644", False),
        (script, FIREWALL_SCRIPT, "755", True)]
    (systemd / FIREWALL_UNIT).write_text("[Service]\nExecStart=/usr/sbin/my-firewall\n")
    changes, note = await plan_refresh(runner, systemd)
    assert changes == ()
    assert "stays as it is" in note
