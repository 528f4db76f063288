"""The agent installed on a throwaway host and run by systemd, as an operator installs it.

One host for the whole module: its Docker Engine, this checkout from a wheelhouse (no
package index on the host), ``convocate-agent install``, then what systemd made of it.
"""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from common.ssh_keys import known_hosts_line
from tests.hosts.agent_host import (
    agent_host_key,
    agent_install,
    agent_sessions,
    attach_and_see,
    authorize_on_agent,
    create_session,
    expected_slice_caps,
    install_convocate,
    kill_session,
    load_image,
    slice_caps,
    structured_journal_lines,
    unit_state,
)
from tests.hosts.engine import install_docker
from tests.hosts.machines import Host, HostFleet
from tests.hosts.steps import RUN_LOG
from tests.support.waiting import wait_for_sync


@pytest.fixture(scope="module")
def agent_host(fleet: HostFleet, wheelhouse: Path, session_image: str) -> Host:
    """A host with docker.io, convocate in its venv, the offline image and the agent unit running."""
    wheels, image = wheelhouse, session_image
    (host,) = fleet.start(1, ports=(22, 222))
    with RUN_LOG.step("apt-get install docker.io", host.name):
        install_docker(host)
    with RUN_LOG.step("install convocate from the wheelhouse", host.name):
        install_convocate(host, Path(wheels))
    with RUN_LOG.step("load the session image", host.name):
        load_image(host, image)
    with RUN_LOG.step("convocate-agent install", host.name):
        agent_install(host)
    return host


def test_agent_unit_runs_with_its_slice_and_timer(agent_host: Host) -> None:
    assert unit_state(agent_host, "convocate-agent.service") == "active"
    assert agent_host.run("systemctl show convocate-agent.service -p User --value").stdout.strip() == "claude"
    pid = agent_host.run("systemctl show convocate-agent.service -p MainPID --value").stdout.strip()
    assert agent_host.run(f"stat -c %U /proc/{pid}").stdout.strip() == "claude"
    for needed in ("/etc/convocate-agent/ssh_host_ed25519_key", "/etc/convocate-agent/agent-id",
                   "/etc/convocate-agent/agent.toml"):
        agent_host.sudo(f"sudo -u claude test -r {needed}")
    assert slice_caps(agent_host) == expected_slice_caps(agent_host)
    timers = agent_host.run("systemctl list-timers --all --no-legend --plain").stdout
    assert "convocate-image-prune.timer" in timers, timers
    # The agent serves SSH :222 on every address; the published port reaches it.
    banner = agent_host.run("timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/222 && head -c 7 <&3'")
    assert banner.stdout.startswith("SSH-2.0"), banner.stdout


def test_journal_has_structured_lines(agent_host: Host) -> None:
    lines = wait_for_sync(lambda: structured_journal_lines(agent_host), timeout=30, interval=1.0)
    assert all("event" in line for line in lines), lines[:5]


def test_restart_keeps_a_running_session(agent_host: Host) -> None:
    with RUN_LOG.step("create a session", agent_host.name):
        session = create_session(agent_host, "survivor")
        wait_for_sync(lambda: agent_sessions(agent_host).get(session), timeout=60, interval=1.0)
    container = f"convocate-session-{session}"
    started = agent_host.sudo(f"docker inspect -f '{{{{.State.StartedAt}}}}' {container}").stdout.strip()
    cgroup = agent_host.sudo(f"docker inspect -f '{{{{.HostConfig.CgroupParent}}}}' {container}").stdout
    assert cgroup.strip() == "convocate-sessions.slice"
    # systemd (not the agent's unit) holds the container: its scope sits in the sessions slice.
    full_id = agent_host.sudo(f"docker inspect -f '{{{{.Id}}}}' {container}").stdout.strip()
    scope = agent_host.run(f"systemctl show docker-{full_id}.scope -p Slice -p ActiveState").stdout
    assert "Slice=convocate-sessions.slice" in scope, scope
    assert "ActiveState=active" in scope, scope

    # An attach before the restart leaves a mark on the screen; the one after it sees it again.
    with RUN_LOG.step("attach and type before the restart", agent_host.name):
        attach_and_see(agent_host, session, "echo BEFORE-$((6*7))\r", "BEFORE-42")

    with RUN_LOG.step("systemctl restart convocate-agent", agent_host.name):
        agent_host.sudo("systemctl restart convocate-agent.service", timeout=90)
        wait_for_sync(lambda: unit_state(agent_host, "convocate-agent.service") == "active",
                      timeout=60, interval=0.5)

    fmt = "'{{.State.Running}} {{.State.StartedAt}}'"
    state = agent_host.sudo(f"docker inspect -f {fmt} {container}")
    assert state.stdout.split() == ["true", started], "the session container was restarted or stopped"
    listed = wait_for_sync(lambda: agent_sessions(agent_host), timeout=60, interval=1.0)
    assert listed.get(session) is True, listed
    with RUN_LOG.step("attach again after the restart", agent_host.name):
        attach_and_see(agent_host, session, "", "BEFORE-42")


def _container_running(host: Host, session: str) -> bool:
    """The engine's view: a missing container (the agent's are auto-removed) is not running."""
    fmt = "'{{.State.Running}}'"
    out = host.sudo(f"docker inspect -f {fmt} convocate-session-{session}", check=False).stdout
    return out.strip() == "true"


def test_docker_restart_shows_sessions_stopped(agent_host: Host) -> None:
    session = create_session(agent_host, "engine-restart")
    wait_for_sync(lambda: agent_sessions(agent_host).get(session), timeout=60, interval=1.0)
    with RUN_LOG.step("systemctl restart docker", agent_host.name):
        agent_host.sudo("systemctl restart docker.service", timeout=120)
    assert not _container_running(agent_host, session)
    # Listed as stopped, never as running; the agent itself kept running.
    wait_for_sync(lambda: agent_sessions(agent_host).get(session) is False, timeout=60, interval=1.0)
    assert unit_state(agent_host, "convocate-agent.service") == "active"


def test_host_stop_start_brings_back_its_sessions(fleet: HostFleet, agent_host: Host) -> None:
    session = create_session(agent_host, "host-reboot")
    stopped = create_session(agent_host, "stopped-before-reboot")
    kill_session(agent_host, stopped)
    wait_for_sync(lambda: agent_sessions(agent_host).get(session), timeout=60, interval=1.0)
    fleet.reboot(agent_host)
    wait_for_sync(lambda: unit_state(agent_host, "convocate-agent.service") == "active",
                  timeout=120, interval=1.0)
    with RUN_LOG.step("session brought back after the host restart", agent_host.name):
        wait_for_sync(lambda: agent_sessions(agent_host).get(session), timeout=90, interval=1.0)
    # The container went with the host (auto-removed); the agent started the session again,
    # and left alone the one an operator had stopped.
    assert _container_running(agent_host, session)
    listed = agent_sessions(agent_host)
    assert listed.get(stopped) is False, listed
    assert not _container_running(agent_host, stopped)


@pytest.fixture
def agent_key_login(agent_host: Host, tmp_path: Path) -> Host:
    """``agent_host`` as user claude with a fresh key on the agent's allow-list (as init-agent adds)."""
    key = tmp_path / "shell_to_agent"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                   check=True, capture_output=True, timeout=30)
    authorize_on_agent(agent_host, key.with_suffix(".pub").read_text().strip())
    known = tmp_path / "known_hosts"
    known.write_text(known_hosts_line(agent_host.address, 222, agent_host_key(agent_host)) + "\n"
                     + agent_host.known_hosts.read_text())
    return dataclasses.replace(agent_host, user="claude", key=key, known_hosts=known)


def test_agent_key_gets_no_shell_or_exec_on_222(agent_key_login: Host) -> None:
    on_222 = dataclasses.replace(agent_key_login, ssh_port=222).run("id", check=False)
    assert on_222.returncode != 0, on_222.stdout
    assert "uid=" not in on_222.stdout
    assert "Permission denied" not in on_222.stderr, f"the key was not accepted on :222: {on_222.stderr}"


def test_agent_key_gets_nothing_on_22(agent_key_login: Host) -> None:
    on_22 = agent_key_login.run("id", check=False)
    assert on_22.returncode == 255, f"the agent's key logged in on :22: {on_22.stdout}{on_22.stderr}"
    assert "Permission denied" in on_22.stderr, on_22.stderr
