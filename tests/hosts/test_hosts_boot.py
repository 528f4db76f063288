"""Two throwaway hosts boot with systemd, reach each other, and one runs its own Docker Engine."""

from __future__ import annotations

import json

from tests.hosts.engine import install_docker, system_state
from tests.hosts.machines import HostFleet
from tests.hosts.steps import RUN_LOG


def test_two_hosts_boot_and_one_runs_docker(fleet: HostFleet) -> None:
    first, second = fleet.start(2)
    for host in (first, second):
        with RUN_LOG.step("systemctl is-system-running", host.name) as step:
            state = system_state(host)
            step.text += f": {state.state} {' '.join(state.failed)}".rstrip()
        assert state.state in {"running", "degraded"}, state
        assert state.state == "running" or state.failed, f"degraded but no failed unit listed: {state}"
        assert host.run("cat /proc/1/comm").stdout.strip() == "systemd"
        assert host.run("sudo -n id -u").stdout.strip() == "0"
        assert host.run("cat /proc/sys/kernel/hostname").stdout.strip() == host.name

    # Hosts talk to each other on the fleet's network, by name.
    reach = first.run(f"timeout 5 bash -c 'exec 3<>/dev/tcp/{second.name}/22 && head -c 7 <&3'")
    assert reach.stdout.startswith("SSH-2.0"), reach.stdout

    with RUN_LOG.step("apt-get install docker.io", first.name):
        version = install_docker(first)
    assert version
    info = json.loads(first.sudo("docker info --format '{{json .}}'").stdout)
    assert info["Driver"] == "vfs", info["Driver"]
    assert info["ServerVersion"] == version
    assert first.sudo("systemctl is-active docker.service").stdout.strip() == "active"
    # The other host was left alone: no engine there.
    assert second.run("command -v dockerd", check=False).returncode != 0
