"""A fleet provisioned as the README says: a shell host and two agent hosts, then used.

Host 1 is the shell (OpenSSH :22, status :223), hosts 2 and 3 are agents (:22, :222).
Provisioning runs as the operator: ``install`` and ``init-shell`` from the test machine
(stand-ins while they are missing, see :mod:`tests.hosts.provision`), ``init-agent`` on
the shell host for each agent over real SSH with ``sudo -n``. Then what systemd runs, the
logs over rsyslog TLS, the console as ``claude`` over SSH, and the lock-down.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import shlex
import socket
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from common.version import VERSION
from tests.hosts.agent_host import (
    agent_sessions,
    create_session,
    expected_slice_caps,
    kill_session,
    restart_session,
    slice_caps,
    structured_journal_lines,
    unit_state,
)
from tests.hosts.machines import Host, HostFleet
from tests.hosts.provision import (
    HOSTCTL_TIMEOUT,
    KNOWN_HOSTS_ON_SHELL,
    OPERATOR_KEY_ON_SHELL,
    AgentInfo,
    base_install,
    init_agent,
    prepare_operator_on_shell,
    shell_role,
)
from tests.hosts.releases import AGENT_UNIT_TEMPLATE, with_edited_file
from tests.hosts.steps import RUN_LOG
from tests.support.env import require_tool
from tests.support.net import free_port
from tests.support.tmux import TmuxTerminal
from tests.support.waiting import wait_for_sync

CONSOLE_TIMEOUT = 60.0


@dataclass(frozen=True)
class Provisioned:
    """The fleet after provisioning: its shell host and its agents."""

    shell: Host
    agents: list[AgentInfo]


@pytest.fixture(scope="module")
def provisioned(fleet: HostFleet, session_image: str) -> Provisioned:
    (shell,) = fleet.start(1, ports=(22, 223))
    agent_hosts = fleet.start(2, ports=(22, 222))

    def base(host: Host) -> None:
        with RUN_LOG.step("packages, docker.io and convocate (install --host)", host.name):
            base_install(host)

    # The shell first: its `install` builds this checkout's bundle and caches it (a second build
    # of one checkout waits for the first). Then both agents at once.
    base(shell)
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(base, agent_hosts))
    with RUN_LOG.step("shell role (init-shell --host)", shell.name):
        shell_role(shell, session_image)
    prepare_operator_on_shell(shell, agent_hosts)
    agents = []
    for host in agent_hosts:
        with RUN_LOG.step("convocate-host init-agent (on the shell)", host.name):
            agents.append(init_agent(shell, host))
    return Provisioned(shell, agents)


# --- item 2: what systemd runs after the README's procedure -----------------------------------

def test_init_agent_reports_every_step_and_a_second_run_changes_nothing(provisioned: Provisioned) -> None:
    for agent in provisioned.agents:
        steps = {str(s["step"]) for s in agent.report["steps"]}  # type: ignore[attr-defined]
        assert {"role", "keys", "image", "logs", "start"} <= steps, agent.report
    again = init_agent(provisioned.shell, provisioned.agents[0].host)
    assert again.report["changed"] is False, again.report


def test_units_are_active_with_the_slice_caps_and_the_prune_timer(provisioned: Provisioned) -> None:
    for agent in provisioned.agents:
        host = agent.host
        assert unit_state(host, "convocate-agent.service") == "active"
        assert slice_caps(host) == expected_slice_caps(host)
        timers = host.run("systemctl list-timers --all --no-legend --plain").stdout
        assert "convocate-image-prune.timer" in timers, timers
    assert wait_for_sync(lambda: unit_state(provisioned.shell, "convocate-status.service") == "active",
                         timeout=60, interval=1.0)


def test_the_shell_reaches_both_agents(provisioned: Provisioned) -> None:
    out = provisioned.shell.sudo("convocate-host agents --json", timeout=90).stdout
    reports = {r["agent_id"]: r for r in json.loads(out)}
    assert set(reports) == {a.agent_id for a in provisioned.agents}, reports
    assert all(r["reachable"] for r in reports.values()), reports


def test_journal_has_the_services_structured_lines(provisioned: Provisioned) -> None:
    for agent in provisioned.agents:
        lines = wait_for_sync(functools.partial(structured_journal_lines, agent.host),
                              timeout=30, interval=1.0)
        assert any(line.get("event") == "agent serving" for line in lines), lines[-5:]
    status = wait_for_sync(lambda: structured_journal_lines(provisioned.shell, "convocate-status.service"),
                           timeout=30, interval=1.0)
    assert all("event" in line for line in status), status[:5]


def test_agent_logs_reach_the_shells_file_for_each_agent(provisioned: Provisioned) -> None:
    shell = provisioned.shell
    for agent in provisioned.agents:
        path = f"/var/log/convocate-agent/{agent.agent_id}.log"

        def logged(p: str = path) -> str:
            text = shell.sudo(f"cat {p}", check=False).stdout
            return text if "agent serving" in text else ""

        with RUN_LOG.step("agent lines in the shell's file", agent.host.name):
            text = wait_for_sync(logged, timeout=90, interval=2.0)
        assert agent.agent_id in text


# --- item 5: locked down as installed ---------------------------------------------------------

def test_services_run_as_claude_and_read_their_keys(provisioned: Provisioned) -> None:
    shell = provisioned.shell
    for unit, host in [("convocate-status.service", shell)] + [
            ("convocate-agent.service", a.host) for a in provisioned.agents]:
        pid = host.run(f"systemctl show {unit} -p MainPID --value").stdout.strip()
        assert host.run(f"stat -c %U /proc/{pid}").stdout.strip() == "claude", unit
    for agent in provisioned.agents:
        for key in ("ssh_host_ed25519_key", "agent_to_shell_ed25519_key", "authorized_keys", "agent.toml"):
            agent.host.sudo(f"sudo -u claude test -r /etc/convocate-agent/{key}")
        shell.sudo(f"sudo -u claude test -r /etc/convocate/agent-keys/{agent.agent_id}/"
                   "shell_to_agent_ed25519_key")
    for path in ("/etc/convocate/status_host_ed25519_key", "/etc/convocate/status_authorized_keys"):
        shell.sudo(f"sudo -u claude test -r {path}")


def _ssh_with(host: str, key: str, *args: str) -> str:
    """An ssh line (run on a fleet host) with ``key``, no host-key pinning (the login is refused)."""
    return ("timeout 30 ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=no "
            "-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=10 "
            f"-i {key} {' '.join(args)} claude@{host} id")


def test_the_shells_agent_key_gets_nothing_on_22(provisioned: Provisioned) -> None:
    shell = provisioned.shell
    for agent in provisioned.agents:
        key = f"/etc/convocate/agent-keys/{agent.agent_id}/shell_to_agent_ed25519_key"
        for extra in ("", "-N -L 9999:127.0.0.1:22 -o ExitOnForwardFailure=yes"):
            r = shell.sudo(_ssh_with(agent.host.internal_ip, key, "-p 22", extra), check=False, timeout=60)
            assert r.returncode == 255, f"{r.stdout}{r.stderr}"
            assert "uid=" not in r.stdout
            assert "Permission denied" in r.stderr, r.stderr
        # The agent's key to the shell, on the shell's OpenSSH: refused too.
        r = agent.host.sudo(_ssh_with(shell.internal_ip, "/etc/convocate-agent/agent_to_shell_ed25519_key",
                                      "-p 22"), check=False, timeout=60)
        assert r.returncode == 255, f"{r.stdout}{r.stderr}"
        assert "Permission denied" in r.stderr, r.stderr


@pytest.fixture(scope="module")
def console_login(provisioned: Provisioned, tmp_path_factory: pytest.TempPathFactory) -> Host:
    """The shell host as ``claude`` with an operator's console key (as the README's table says)."""
    shell = provisioned.shell
    key = tmp_path_factory.mktemp("console") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                   check=True, capture_output=True, timeout=30)
    public = shlex.quote(key.with_suffix(".pub").read_text().strip())
    shell.sudo(f"install -d -m 700 -o claude -g claude /home/claude/.ssh && "
               f"printf '%s\\n' {public} >> /home/claude/.ssh/authorized_keys && "
               "chown claude:claude /home/claude/.ssh/authorized_keys && "
               "chmod 600 /home/claude/.ssh/authorized_keys")
    return dataclasses.replace(shell, user="claude", key=key)


def test_claude_on_the_shell_gets_no_command_and_no_forward(console_login: Host) -> None:
    r = console_login.run("id; echo SHELL-OPEN", check=False, timeout=60)
    assert "SHELL-OPEN" not in r.stdout, r.stdout
    assert "uid=" not in r.stdout, r.stdout
    # A remote forward is refused at once; a local one opens no channel.
    login = f"claude@{console_login.address}"
    no_forward = ("-p", "22", "-N", "-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:22")
    remote = subprocess.run(["ssh", *console_login.ssh_argv(*no_forward), login],
                            capture_output=True, text=True, timeout=60, check=False)
    assert remote.returncode != 0, remote.stderr
    port = free_port("127.0.0.1")
    forward = f"127.0.0.1:{port}:127.0.0.1:22"
    local = subprocess.Popen(["ssh", *console_login.ssh_argv("-p", "22", "-N", "-L", forward), login],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_sync(lambda: _listening("127.0.0.1", port), timeout=30, interval=0.2)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.settimeout(10)
            try:
                banner = s.recv(64)
            except (TimeoutError, ConnectionResetError):
                banner = b""
        assert not banner.startswith(b"SSH-"), "the forward reached the shell's sshd"
    finally:
        local.terminate()
        local.wait(15)
        if local.stderr is not None:
            local.stderr.close()


def _listening(address: str, port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((address, port)) == 0


# --- item 3: the console as claude, over SSH, in a tmux pane ------------------------------------

@pytest.fixture
def console(console_login: Host) -> Iterator[TmuxTerminal]:
    term = TmuxTerminal(require_tool("tmux"), width=110, height=30)
    argv = ["ssh", "-t", *console_login.ssh_argv("-p", "22"), f"claude@{console_login.address}"]
    term.start(argv, {"TERM": "xterm-256color"})
    try:
        yield term
    finally:
        term.kill()


def _create_on(term: TmuxTerminal, agents: list[AgentInfo], agent: AgentInfo, name: str) -> None:
    term.send_keys("n")
    term.wait_for(r"Select Agent for New Session", timeout=CONSOLE_TIMEOUT)
    addresses = [a.host.internal_ip for a in agents]
    options = [line for line in term.capture().splitlines() if any(ip in line for ip in addresses)]
    index = next(i for i, line in enumerate(options) if agent.host.internal_ip in line)
    term.send_keys(*(["Down"] * index), "Enter")
    term.wait_for(rf"Create on agent {agent.agent_id}", timeout=CONSOLE_TIMEOUT)
    term.type(name)
    term.send_keys("Enter")
    term.wait_for(rf"{name}\s+\|[^|]*\| {agent.agent_id}\s.*\| R\s*$", timeout=CONSOLE_TIMEOUT)


def test_console_over_ssh_lists_both_agents_creates_attaches_types_detaches(
    provisioned: Provisioned, console: TmuxTerminal,
) -> None:
    with RUN_LOG.step("console over ssh: agents up", provisioned.shell.name):
        console.wait_for(r"agents 2 up", timeout=CONSOLE_TIMEOUT)
    for n, agent in enumerate(provisioned.agents, 1):
        with RUN_LOG.step("console: create, attach, type, detach", agent.host.name):
            name = f"fleet-{n}"
            _create_on(console, provisioned.agents, agent, name)
            console.send_keys("Enter")
            console.wait_for(r"\$ ?$", timeout=CONSOLE_TIMEOUT)
            console.type(f"echo hello-{n}-$((6*7))")
            console.send_keys("Enter")
            console.wait_for(rf"^hello-{n}-42\s*$", timeout=CONSOLE_TIMEOUT)
            console.send_keys("C-b", "d")
            console.wait_for(rf'Detached from "{name}"', timeout=CONSOLE_TIMEOUT)


def _image_of(host: Host, session: str) -> tuple[str, str]:
    """(image id, started at) of the session's running container."""
    fmt = shlex.quote("{{.Image}} {{.State.StartedAt}} {{.State.Running}}")
    out = host.sudo(f"docker inspect -f {fmt} convocate-session-{session}").stdout.split()
    assert out[2:] == ["true"], out
    return out[0], out[1]


def _shell_hostctl(p: Provisioned, command: str) -> dict[str, object]:
    out = p.shell.sudo(f"convocate-host {command} --json", timeout=HOSTCTL_TIMEOUT).stdout
    parsed = json.loads(out.strip().splitlines()[-1])
    assert isinstance(parsed, dict), out
    return parsed


UNIT_MARK = "Environment=CONVOCATE_E2E_RELEASE=unit-two"
AGENT_UNIT = "convocate-agent.service"


@dataclass(frozen=True)
class Releases:
    """Two more releases of this checkout: its agent unit changed, and changed so it cannot start."""

    changed_unit: Path
    broken_unit: Path


@pytest.fixture(scope="module")
def releases(wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Releases:
    root = tmp_path_factory.mktemp("releases")

    def mark(text: str, extra: str = "") -> str:
        return text.replace("[Service]\n", f"[Service]\n{UNIT_MARK}\n{extra}", 1)

    return Releases(
        with_edited_file(wheelhouse, root / "changed", AGENT_UNIT_TEMPLATE, mark),
        with_edited_file(wheelhouse, root / "broken", AGENT_UNIT_TEMPLATE,
                         lambda t: mark(t, "ExecStartPre=/bin/false\n")),
    )


@dataclass(frozen=True)
class UnitView:
    """The agent's unit as systemd runs it, and its file."""

    environment: str
    exec_start_pre: str
    need_daemon_reload: str
    process_environment: str
    file: str


def _agent_unit(host: Host) -> UnitView:
    props = ("Environment", "ExecStartPre", "NeedDaemonReload", "MainPID")
    out = host.run(f"systemctl show {AGENT_UNIT} " + " ".join(f"-p {p}" for p in props)).stdout
    values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    environ = host.sudo(f"tr '\\0' '\\n' < /proc/{values['MainPID']}/environ").stdout
    file = host.run(f"cat /etc/systemd/system/{AGENT_UNIT}").stdout
    return UnitView(values["Environment"], values.get("ExecStartPre", ""),  # absent when there is none
                    values["NeedDaemonReload"], environ, file)


def _current_release(host: Host) -> str:
    return host.run("readlink /opt/convocate/current").stdout.strip()


def test_update_keeps_a_running_session_on_its_image_until_restart(
    provisioned: Provisioned, releases: Releases,
) -> None:
    """The new release changes the agent's unit: the update writes it and the agent runs with it."""
    agent = provisioned.agents[0]
    host = agent.host
    session = create_session(host, "before-update")
    wait_for_sync(lambda: agent_sessions(host).get(session), timeout=60, interval=1.0)
    old_image, started = _image_of(host, session)
    # A new image under the same tag on the shell (a label layer: no registry needed).
    tag = f"convocate:{VERSION}"
    provisioned.shell.sudo(f"printf 'FROM {tag}\\nLABEL convocate.e2e.update=1\\n' | "
                           f"docker build -q -t {tag} -", timeout=120)
    # The release as a wheelhouse on the shell (`--bundle`: the shell host has no checkout).
    provisioned.shell.run("rm -rf /tmp/convocate-bundle")
    provisioned.shell.put(releases.changed_unit, "/tmp/convocate-bundle")
    with RUN_LOG.step("convocate-host update", host.name):
        report = _shell_hostctl(provisioned, f"update --host {host.internal_ip} --user {host.user} "
                                f"--key {OPERATOR_KEY_ON_SHELL} --known-hosts {KNOWN_HOSTS_ON_SHELL} "
                                f"--bundle /tmp/convocate-bundle --image-tag {tag}")
    assert unit_state(host, "convocate-agent.service") == "active"
    assert report["units"] == {"roles": ["agent"], "changed": [AGENT_UNIT], "enabled": []}, report
    # The units were rendered with the options install recorded (the firewall's were current already).
    recorded = json.loads(host.run("cat /etc/convocate-agent/install-options.json").stdout)
    assert recorded == {"format": 1, "role": "agent", "options": {"binary": "/usr/local/bin/convocate-agent"}}
    unit = _agent_unit(host)
    assert UNIT_MARK in unit.file.splitlines()
    assert "CONVOCATE_E2E_RELEASE=unit-two" in unit.environment.split(), unit
    assert "CONVOCATE_E2E_RELEASE=unit-two" in unit.process_environment.splitlines(), "not restarted on it"
    assert unit.need_daemon_reload == "no"
    assert _image_of(host, session) == (old_image, started), "the update touched a running session"
    assert agent_sessions(host).get(session) is True
    new_image = host.sudo(f"docker image inspect -f '{{{{.Id}}}}' {tag}").stdout.strip()
    assert new_image != old_image
    kill_session(host, session)
    restart_session(host, session)
    assert _image_of(host, session)[0] == new_image


def test_a_failed_update_puts_back_the_release_and_its_units(
    provisioned: Provisioned, releases: Releases,
) -> None:
    """A release whose agent unit cannot start: exit 4, the running release and its unit as they were."""
    agent = provisioned.agents[0]
    host = agent.host
    before, release = _agent_unit(host), _current_release(host)
    provisioned.shell.run("rm -rf /tmp/convocate-bundle-broken")
    provisioned.shell.put(releases.broken_unit, "/tmp/convocate-bundle-broken")
    with RUN_LOG.step("convocate-host update, rolled back", host.name):
        done = provisioned.shell.sudo(
            f"convocate-host update --host {host.internal_ip} --user {host.user} "
            f"--key {OPERATOR_KEY_ON_SHELL} --known-hosts {KNOWN_HOSTS_ON_SHELL} "
            "--bundle /tmp/convocate-bundle-broken --wait 30 --json",
            check=False, timeout=HOSTCTL_TIMEOUT)
    assert done.returncode == 4, f"{done.stdout}{done.stderr}"
    assert f"with its units ({AGENT_UNIT}) as they were and answers" in done.stderr, done.stderr
    assert _current_release(host) == release
    assert unit_state(host, AGENT_UNIT) == "active"
    after = _agent_unit(host)
    assert after.file == before.file
    assert (after.environment, after.exec_start_pre, after.need_daemon_reload) == (
        before.environment, before.exec_start_pre, "no"), after
    out = provisioned.shell.sudo("convocate-host agents --json", timeout=90).stdout
    assert {r["agent_id"]: r["reachable"] for r in json.loads(out)}[agent.agent_id] is True


def test_migrate_session_moves_it_with_its_files(provisioned: Provisioned) -> None:
    source, target = provisioned.agents
    session = create_session(source.host, "migrant")
    wait_for_sync(lambda: agent_sessions(source.host).get(session), timeout=60, interval=1.0)
    marker = f"/home/claude/{session}/home/migrated.txt"
    source.host.sudo(f"printf 'files travel\\n' > {marker} && chown 1337:1337 {marker}")
    with RUN_LOG.step("convocate-host migrate-session", f"{source.host.name}->{target.host.name}"):
        _shell_hostctl(provisioned, f"migrate-session --session {session} --from {source.agent_id} "
                                    f"--to {target.agent_id} --user {source.host.user} "
                                    f"--key {OPERATOR_KEY_ON_SHELL} --known-hosts {KNOWN_HOSTS_ON_SHELL}")
    assert wait_for_sync(lambda: agent_sessions(target.host).get(session), timeout=90, interval=1.0)
    assert session not in agent_sessions(source.host)
    assert target.host.sudo(f"cat {marker}").stdout == "files travel\n"


# --- the firewall's accept rules, at every boot ----------------------------------------------

def _accepted_ports(host: Host) -> list[int]:
    """The ports of convocate's accept rules in INPUT, one entry per rule."""
    out = host.sudo("iptables -S INPUT").stdout
    return sorted(int(line.split("--dport ")[1].split()[0]) for line in out.splitlines()
                  if "--comment convocate" in line)


def test_the_boot_unit_puts_flushed_rules_back_exactly_once(provisioned: Provisioned) -> None:
    for host in (provisioned.shell, provisioned.agents[1].host):
        assert host.run("systemctl is-enabled convocate-firewall.service").stdout.strip() == "enabled"
        assert unit_state(host, "convocate-firewall.service") == "active"
        assert _accepted_ports(host) == [22, 222, 223]
        host.sudo("iptables -F INPUT")
        assert _accepted_ports(host) == []
        for _ in range(2):   # a second run adds nothing
            host.sudo("systemctl restart convocate-firewall.service")
            assert _accepted_ports(host) == [22, 222, 223]


def test_the_rules_are_back_after_a_reboot(fleet: HostFleet, provisioned: Provisioned) -> None:
    """A restart of the host starts its network afresh (no rules): the boot unit applies them again."""
    agent = provisioned.agents[1]
    marker = "INPUT -p tcp --dport 9 -m comment --comment e2e-not-saved -j ACCEPT"
    agent.host.sudo(f"iptables -A {marker}")
    fleet.reboot(agent.host)
    wait_for_sync(lambda: unit_state(agent.host, "convocate-firewall.service") == "active",
                  timeout=120, interval=1.0)
    # A rule nobody re-applies is gone (the boot started from an empty rule set); ours are back, once.
    assert agent.host.sudo(f"iptables -C {marker}", check=False).returncode != 0
    assert _accepted_ports(agent.host) == [22, 222, 223]
    wait_for_sync(lambda: unit_state(agent.host, AGENT_UNIT) == "active", timeout=120, interval=1.0)

    def reachable() -> bool:
        out = provisioned.shell.sudo("convocate-host agents --json", timeout=90).stdout
        return {r["agent_id"]: r["reachable"] for r in json.loads(out)}.get(agent.agent_id) is True

    assert wait_for_sync(reachable, timeout=90, interval=2.0)
