"""update --host over a real sshd, with a real agent running from the installed release and a session.

The agent runs from ``<prefix>/current/venv`` (the release install made from this
checkout's wheelhouse), so a restart after the switch really runs the new release.
A second release is the same wheelhouse plus one marker wheel (a different bundle, as
far as releases go). The failed update is injected from outside: the restart command
refuses to start the third release, as a broken unit or package would.

The agent was installed (``convocate-agent install --root``) with a binary path of its
own, which its install record keeps; the host's systemd directory under that root then
holds an older agent unit, lacks the prune timer (a unit the new release adds), and has
the firewall's boot unit with an older script. The update writes the release's units
there as ``convocate-agent units`` renders them for this host (the custom binary),
enables the new timer as install would, refreshes the firewall's files, and the failed
one disables and removes what it added and puts back what was there. ``systemctl``
enable/disable are recorded by a stand-in (no systemd here).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

from common.registry import load_registry
from hostctl import bundle as bundles
from hostctl.agent_link import agent_calls
from hostctl.agent_setup import setup_agent
from hostctl.firewall import FIREWALL_SCRIPT, FIREWALL_UNIT, render_firewall_unit
from hostctl.host_install import ensure_release
from hostctl.remote import SSHRunner, SSHTarget
from hostctl.report import Report
from hostctl.update import RolledBackError, UpdateSpec, update_host
from tests.integration.hostctl.agent_host import TestAgentHost
from tests.support.net import free_port
from tests.support.sshd import Sshd

pytestmark = [pytest.mark.docker, pytest.mark.sshd, pytest.mark.timeout(900)]

HOST = "127.0.0.6"


def _variant(base: bundles.Bundle, root: Path, marker: str) -> bundles.Bundle:
    """``base`` plus an unrelated marker wheel: another release of the same software."""
    out = root / f"bundle-{marker}"
    shutil.copytree(base.directory, out)
    name = f"convocate_marker_{marker}"
    with zipfile.ZipFile(out / f"{name}-1.0-py3-none-any.whl", "w") as z:
        z.writestr(f"{name}-1.0.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        wheel = "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        z.writestr(f"{name}-1.0.dist-info/WHEEL", wheel)
        z.writestr(f"{name}-1.0.dist-info/RECORD", "")
    return bundles.load_bundle(out)


def _rendered_units(release_bin: Path, root: Path) -> dict[str, str]:
    done = subprocess.run([str(release_bin / "convocate-agent"), "units", "--root", str(root)],
                          capture_output=True, text=True, timeout=60, check=True)
    parsed = json.loads(done.stdout)["units"]
    assert isinstance(parsed, dict)
    return parsed


def _container_id(session_id: str) -> str:
    done = subprocess.run(["docker", "inspect", "--format", "{{.Id}} {{.State.Running}}",
                           f"convocate-session-{session_id}"], capture_output=True, text=True, timeout=30,
                          check=False)
    return done.stdout.strip()


async def test_update_while_a_session_runs_then_a_failed_update_rolls_back(
    sshd: Sshd, release_bundle: bundles.Bundle, offline_image: str,
) -> None:
    """The session keeps running through the update and the rollback; the agent runs each release."""
    with tempfile.TemporaryDirectory(prefix="cvup-") as d:
        root = Path(d)
        from hostctl import logforward  # noqa: PLC0415

        logforward.init_ca(root / "ca")
        h = TestAgentHost(root, HOST, free_port("127.0.0.1"), root / "ca")
        prefix, bin_dir = root / "opt", root / "bin"
        agent_cmd = f"{prefix}/current/venv/bin/convocate-agent"
        v2, v3 = _variant(release_bundle, root, "two"), _variant(release_bundle, root, "three")
        runner = SSHRunner(SSHTarget(sshd.host, sshd.port, sshd.user, sshd.client_key, sshd.known_hosts))
        try:
            await ensure_release(runner, release_bundle, Report("install", HOST), prefix=prefix,
                                 bin_dir=bin_dir)
            custom = "/opt/custom/bin/convocate-agent"     # the unit's path; the test starts the agent itself
            install = (sys.executable, "-m", "agent", "install", "--root", str(h.prefix), "--no-systemctl",
                       "--binary", custom)
            await setup_agent(runner, h.setup(offline_image, agent=agent_cmd, install_argv=install),
                              Report("init-agent", HOST))
            (record,) = load_registry(h.shell.registry_dir)
            async with agent_calls(record) as calls:
                session = await calls.create("upd", 0, "", "", start=True)
            running_in = _container_id(session.id)
            assert running_in.endswith("true"), running_in
            pid = h.pidfile.read_text()

            systemd_dir = h.prefix / "etc/systemd/system"
            reloads, calls_log = root / "reloads", root / "calls"
            timer = systemd_dir / "convocate-image-prune.timer"
            agent_unit = systemd_dir / "convocate-agent.service"
            agent_unit.write_text("# an older unit\n")
            timer.unlink()                                   # a unit the new release adds
            script = root / "fw" / "firewall.sh"
            script.parent.mkdir()
            script.write_text("#!/bin/sh\n# an older script\n")
            (systemd_dir / FIREWALL_UNIT).write_text(render_firewall_unit((22, 222, 223), script) + "# old\n")
            reload = ("sh", "-c", f"echo reload >> {reloads}")
            systemctl = ("sh", "-c", f'echo "$*" >> {calls_log}', "systemctl")
            spec = UpdateSpec(v2, prefix=prefix, bin_dir=bin_dir, restart_argv=h.start_argv(agent_cmd),
                              agent=record, wait_timeout=45, systemd_dir=systemd_dir, reload_argv=reload,
                              rollback_argv=h.start_argv(agent_cmd), host_root=h.prefix, systemctl=systemctl)
            first = Report("update", HOST)
            await update_host(runner, spec, first)
            steps = {s.step: s.changed for s in first.steps}
            want = {"release": True, "units": True, "switch": True, "restart": True, "sessions": False}
            assert steps == want, h.describe()
            rendered = _rendered_units(prefix / "current" / "venv" / "bin", h.prefix)
            assert first.data["units"] == {
                "roles": ["agent"], "changed": ["convocate-agent.service", "convocate-image-prune.timer",
                                                FIREWALL_UNIT, str(script)],
                "enabled": ["convocate-image-prune.timer"]}, first.as_dict()
            assert {p.name: p.read_text() for p in systemd_dir.iterdir()} == {
                **rendered, FIREWALL_UNIT: render_firewall_unit((22, 222, 223), script)}
            assert f"ExecStart={custom} serve" in agent_unit.read_text().splitlines()   # as installed
            assert script.read_text() == FIREWALL_SCRIPT
            assert reloads.read_text() == "reload\n"
            assert calls_log.read_text() == "enable --now convocate-image-prune.timer\n"
            assert (prefix / "current").readlink().name == v2.release
            assert h.pidfile.read_text() != pid                  # the agent was restarted ...
            assert _container_id(session.id) == running_in       # ... the session's container was not
            assert first.data["sessions"]["after"] == {session.id: True}

            again = Report("update", HOST)
            await update_host(runner, spec, again)
            assert not again.changed, again.as_dict()
            assert reloads.read_text() == "reload\n"
            assert calls_log.read_text() == "enable --now convocate-image-prune.timer\n"

            # Someone edited the unit: the next update writes it again, and its rollback puts it back.
            (systemd_dir / "convocate-agent.service").write_text("# edited by hand\n")
            plan = Report("update", HOST, dry_run=True)   # the same release: only the unit differs
            await update_host(runner, spec, plan)
            assert {s.step: s.changed for s in plan.steps} == {"release": False, "units": True,
                                                               "restart": True}, plan.as_dict()
            assert plan.data["units"]["changed"] == ["convocate-agent.service"]
            assert (systemd_dir / "convocate-agent.service").read_text() == "# edited by hand\n"
            assert reloads.read_text() == "reload\n"

            # The restart refuses the third release (a broken unit, from outside the code), which
            # adds the timer again and refreshes the firewall's script: both go back as they were.
            timer.unlink()
            script.write_text("#!/bin/sh\n# edited\n")
            refusing = (f'case "$(readlink {prefix}/current)" in *{v3.release}) '
                        'echo "unit failed to start" >&2; exit 1;; esac; exec "$@"')
            refuse = ("sh", "-c", refusing, "refuse", *h.start_argv(agent_cmd))
            failing = UpdateSpec(v3, prefix=prefix, bin_dir=bin_dir, restart_argv=refuse, agent=record,
                                 wait_timeout=45, systemd_dir=systemd_dir, reload_argv=reload,
                                 rollback_argv=refuse, host_root=h.prefix, systemctl=systemctl)
            back = re.escape(f"is current again with its units (convocate-agent.service, "
                             f"convocate-image-prune.timer, {script}) as they were and answers")
            with pytest.raises(RolledBackError, match=back):
                await update_host(runner, failing, Report("update", HOST))
            assert (prefix / "current").readlink().name == v2.release
            assert (systemd_dir / "convocate-agent.service").read_text() == "# edited by hand\n"
            assert not timer.exists()
            assert script.read_text() == "#!/bin/sh\n# edited\n"
            assert calls_log.read_text().splitlines()[1:] == ["enable --now convocate-image-prune.timer",
                                                             "disable --now convocate-image-prune.timer"]
            assert reloads.read_text() == "reload\n" * 3     # written, then put back
            assert _container_id(session.id) == running_in
            async with agent_calls(record) as calls:
                assert (await calls.ping()).version == release_bundle.version
                assert (await calls.get(session.id)).running
        finally:
            await runner.close()
            h.stop()


def test_cli_update_of_a_host_without_a_release_is_one_line(sshd: Sshd, release_bundle: bundles.Bundle,
                                                             tmp_path: Path) -> None:
    """A host never installed: exit 1 and one line on stderr that says to run install first."""
    argv = [sys.executable, "-m", "hostctl", "update", "--host", sshd.host, "--ssh-port", str(sshd.port),
            "--user", sshd.user, "--key", str(sshd.client_key), "--known-hosts", str(sshd.known_hosts),
            "--bundle", str(release_bundle.directory), "--prefix", str(tmp_path / "opt"),
            "--registry", str(tmp_path / "none"), "--json"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1
    assert done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: ")
    assert "convocate-host install" in line
    plan = subprocess.run([*argv[:-1], "--dry-run", "--json"], capture_output=True, text=True, timeout=120,
                          check=False)
    assert plan.returncode == 1   # a dry run finds the same missing release
    with pytest.raises(json.JSONDecodeError):
        json.loads(plan.stdout)
