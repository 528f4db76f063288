"""Pure parts of update's unit handling and of the firewall's boot unit: parse, compare, render."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.install import UNITS, render_units
from common.deploy_files import deploy_dir
from common.errors import FailedPreconditionError
from hostctl.firewall import FIREWALL_SCRIPT, installed_firewall, render_firewall_unit
from hostctl.units import Rendered, UnitChange, changed_units, parse_rendered
from shell.install import render_status_unit
from shell.install import render_units as render_shell_units


def test_the_agent_renders_its_slice_and_units_from_the_shipped_templates() -> None:
    units = render_units(deploy_dir() / "systemd", "/opt/x/convocate-agent", 180, 1000)
    assert set(units) == {"convocate-sessions.slice", *UNITS}
    assert "CPUQuota=180%" in units["convocate-sessions.slice"]
    assert "MemoryMax=1000\n" in units["convocate-sessions.slice"]
    assert "ExecStart=/opt/x/convocate-agent serve" in units["convocate-agent.service"]
    assert parse_rendered(json.dumps(units), "test") == Rendered(units)   # a release before the record


def test_a_missing_template_is_named(tmp_path: Path) -> None:
    with pytest.raises(FailedPreconditionError, match=r"convocate-agent\.service is missing"):
        render_units(tmp_path, "/usr/local/bin/convocate-agent", 90, 1)


def test_the_shell_renders_its_status_unit() -> None:
    assert render_shell_units() == {"convocate-status.service": render_status_unit()}


@pytest.mark.parametrize(("command", "options"), [("agent.main", ["--binary", "/a"]),
                                                  ("shell.main", ["--exec-path", "/c", "--user", "u"])])
def test_the_units_commands_print_what_the_installers_write(command: str, options: list[str]) -> None:
    """``convocate-agent units`` / ``convocate units``: one JSON object update can parse."""
    done = subprocess.run([sys.executable, "-c", f"from {command} import main; main()", "units", *options],
                          capture_output=True, text=True, timeout=60, check=True)
    rendered = parse_rendered(done.stdout, command)
    main = "convocate-agent.service" if command == "agent.main" else "convocate-status.service"
    assert main in rendered.units
    assert main in rendered.enable


@pytest.mark.parametrize("printed", [
    "not json", "[]", '{"convocate-agent.service": 3}',
    '{"units": {"a.service": "x"}, "enable": "a.service"}',
    '{"units": {"a.service": "x"}, "enable": ["b.service"]}',
    '{"units": {"../a.service": "x"}}', '{"../../etc/passwd": "x"}',
    '{"/etc/systemd/system/x.service": "x"}', '{"x.service.d/../../y.conf": "x"}', '{"notes.txt": "x"}',
])
def test_anything_but_unit_names_and_texts_is_refused(printed: str) -> None:
    with pytest.raises(FailedPreconditionError):
        parse_rendered(printed, "convocate-agent units")


def test_drop_ins_are_accepted() -> None:
    assert parse_rendered('{"a.service.d/10-b.conf": "[Service]\\n"}', "x").units == {
        "a.service.d/10-b.conf": "[Service]\n"}


def test_only_files_that_differ_change_and_their_old_text_is_kept() -> None:
    rendered = Rendered({"a.service": "new\n", "b.slice": "same\n", "c.timer": "fresh\n"})
    current: dict[str, bytes | None] = {"a.service": b"old\n", "b.slice": b"same\n", "c.timer": None}
    d = Path("/s")
    assert changed_units(rendered, current, d) == [
        UnitChange("a.service", "new\n", b"old\n", d / "a.service"),
        UnitChange("c.timer", "fresh\n", None, d / "c.timer")]
    assert changed_units(Rendered({"b.slice": "same\n"}), current, d) == []


def test_only_new_files_that_install_enables_are_enabled_and_started_as_install_does() -> None:
    units = {"a.service": "new\n", "t.timer": "t\n", "p.service": "p\n", "s.slice": "s\n"}
    rendered = Rendered(units, enable=("a.service", "t.timer"), start=("t.timer",))
    current: dict[str, bytes | None] = {"a.service": b"old\n"}    # there already: left as enabled or not
    changes = {c.name: (c.enable, c.start) for c in changed_units(rendered, current)}
    assert changes == {"a.service": (False, False), "t.timer": (True, True), "p.service": (False, False),
                       "s.slice": (False, False)}


def test_the_firewall_unit_runs_the_same_script_after_the_hosts_restore() -> None:
    text = render_firewall_unit((22, 222, 223), Path("/usr/local/lib/convocate/firewall.sh"))
    lines = text.splitlines()
    assert "ExecStart=/bin/sh /usr/local/lib/convocate/firewall.sh apply 22 222 223" in lines
    after = next(line for line in lines if line.startswith("After="))
    assert "netfilter-persistent.service" in after
    assert "nftables.service" in after
    assert "Before=convocate-agent.service convocate-status.service" in lines
    assert "WantedBy=multi-user.target" in lines
    assert "Type=oneshot" in lines


def test_the_firewall_script_is_valid_sh_taking_the_mode_first() -> None:
    subprocess.run(["sh", "-n", "-c", FIREWALL_SCRIPT], check=True, timeout=10)
    # With neither tool on PATH it says so with exit 4, after reading its mode.
    done = subprocess.run(["/bin/sh", "-c", FIREWALL_SCRIPT, "convocate-firewall", "plan", "22"],
                          env={"PATH": "/nonexistent"}, capture_output=True, timeout=10, check=False)
    assert done.returncode == 4, done.stderr


def test_the_firewall_refresh_reads_the_script_and_ports_from_the_installed_unit() -> None:
    script = Path("/opt/fw.sh")
    assert installed_firewall(render_firewall_unit((22, 2222), script)) == (script, (22, 2222))
    for text in ("", "ExecStart=/bin/sh /opt/fw.sh plan 22\n", "ExecStart=/bin/sh /opt/fw.sh apply x\n",
                 "ExecStart=/bin/bash /opt/fw.sh apply 22\n", "ExecStart=/bin/sh fw.sh apply 22\n",
                 "ExecStart=/bin/sh /opt/fw.sh apply 70000\n"):
        assert installed_firewall(text) is None, text
