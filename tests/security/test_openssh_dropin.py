"""Security review findings 1 and 7: the service user's OpenSSH login on port 22 gives nothing.

A real OpenSSH sshd on loopback with its own configuration that includes the drop-in
the real installers wrote (``convocate-agent install`` / ``convocate install`` with
``--root``). The agent case authorizes the shell->agent key with the allow-list line
exactly as ``init-agent`` writes it (run for real, locally). The attacker holds that
key (or, for the bare case, any key of the user) and tries what worked in the review:
a shell, an exec, a ``-L`` TCP forward and a streamlocal forward to a stand-in
``docker.sock``. The login user is the one running the tests (the drop-in is rendered
for it), since tests never create users.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest

from agent.config import AgentConfig
from agent.install import InstallOptions, install_agent
from common.deploy_files import deploy_dir
from common.registry import load_registry
from common.ssh_keys import generate_keypair, public_key_text
from common.ssh_server import SSHServerSettings, SSHSocketServer
from common.sshd_dropin import KEY_OPTIONS
from hostctl.peering import AgentHostLayout, ShellHostLayout, init_agent
from hostctl.remote import LocalRunner
from shell.install import InstallOptions as ShellInstallOptions
from shell.install import plan_install
from tests.support.env import require_root, require_tool
from tests.support.net import free_port
from tests.support.processes import stop_process
from tests.support.sshd import run_sshd

HOST = "127.0.0.1"
LOGIN = "root" if os.geteuid() == 0 else getpass.getuser()


@dataclass
class OpenSSH:
    """A running sshd and what the attacker holds."""

    port: int
    client_key: Path
    root: Path
    proc: subprocess.Popen[bytes]
    log: Path


def _start(root: Path, dropin: Path, authorized: Path) -> subprocess.Popen[bytes]:
    port = int((root / "port").read_text())
    host_key = root / "sshd_host_key"
    generate_keypair(host_key, "sshd-host")
    config = root / "sshd_config"
    # Forwarding stays at OpenSSH's defaults (allowed): only the drop-in may take it away.
    config.write_text(
        f"Include {dropin}\n"
        f"ListenAddress {HOST}\nPort {port}\nHostKey {host_key}\nPidFile {root / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {authorized}\nPubkeyAuthentication yes\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nStrictModes no\n"
        "UsePAM no\nPrintMotd no\nLogLevel VERBOSE\n"
    )
    proc, _ = run_sshd(config, HOST, port)
    return proc


@pytest.fixture
def short_root() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="cvo-") as d:
        root = Path(d)
        (root / "port").write_text(str(free_port(HOST)))
        yield root


async def _agent_host(root: Path) -> tuple[Path, Path, Path]:
    """Install an agent host under ``root``, peer it with init-agent; return (drop-in, allow-list, key)."""
    cli = root / "usr/local/bin/claude"
    cli.parent.mkdir(parents=True)
    cli.write_text("#!/bin/sh\n")
    opts = InstallOptions(root=root, units_dir=deploy_dir() / "systemd", binary=sys.executable, user=LOGIN)
    config = AgentConfig(config_dir=root / "etc/convocate-agent", sessions_root=root / "home/claude")
    install_agent(AgentConfig(), opts, lambda _line: None, euid=0)
    agent = AgentHostLayout(config.config_dir, config.sessions_root, owner="", listen_port=222)
    shell = ShellHostLayout(registry_dir=root / "shell/agents", status_host_key=root / "shell/status_key",
                            status_authorized_keys=root / "shell/status_allow", status_address=HOST,
                            owner="")
    await init_agent(LocalRunner(), "127.0.0.9", agent=agent, shell=shell)
    (record,) = load_registry(shell.registry_dir)
    return root / "etc/ssh/sshd_config.d/convocate.conf", agent.authorized_keys, record.client_key


def _shell_host(root: Path) -> tuple[Path, Path, Path]:
    """Install a shell host under ``root`` with a stand-in console; return (drop-in, allow-list, key)."""
    console = root / "console.sh"
    console.write_text("#!/bin/sh\necho CONSOLE\n")
    console.chmod(0o755)
    opts = ShellInstallOptions(root=root, user=LOGIN, exec_path=str(console), build_image=False,
                               start_service=False)
    for step in plan_install(opts, run=lambda _argv: None):
        step.action()
    key = root / "operator_key"
    authorized = root / "operator_authorized_keys"
    authorized.write_text(public_key_text(generate_keypair(key, "operator")) + "\n")
    return root / "etc/ssh/sshd_config.d/convocate.conf", authorized, key


async def _attack(port: int, key: Path, root: Path) -> dict[str, str]:
    """Try a shell, an exec, a TCP forward and a docker.sock forward; return what each got."""
    hits: list[str] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hits.append("connected")
        writer.close()

    tcp = await asyncio.start_server(record, HOST, 0)
    docker_sock = root / "docker.sock"
    unix = await asyncio.start_unix_server(record, str(docker_sock))
    got: dict[str, str] = {}
    try:
        async with asyncssh.connect(HOST, port, username=LOGIN, client_keys=[str(key)], known_hosts=None,
                                    config=[], agent_path=None) as conn:
            ran = await asyncio.wait_for(conn.run("id; echo EXEC-$((40+2))", check=False), 20)
            got["exec"] = f"{ran.exit_status}:{ran.stdout!s}{ran.stderr!s}"
            try:
                typed = "id; echo SHELL-$((40+2))\nexit\n"
                proc = await conn.create_process(term_type="xterm", input=typed)
                out = await asyncio.wait_for(proc.wait(check=False), 20)
                got["shell"] = f"{out.exit_status}:{out.stdout!s}"
            except asyncssh.ChannelOpenError as e:
                got["shell"] = f"refused: {e.reason}"
            tcp_port = tcp.sockets[0].getsockname()[1]
            for what, opener in (("tcp", conn.open_connection(HOST, tcp_port)),
                                 ("docker.sock", conn.open_unix_connection(str(docker_sock)))):
                try:
                    _, writer = await asyncio.wait_for(opener, 20)
                    writer.close()
                    got[what] = "opened"
                except asyncssh.ChannelOpenError as e:
                    got[what] = f"refused: {e.reason}"
    finally:
        tcp.close()
        unix.close()
        await tcp.wait_closed()
        await unix.wait_closed()
    got["reached"] = ",".join(hits)
    return got


def _assert_nothing(got: dict[str, str]) -> None:
    # The markers only appear when a shell evaluated them (a terminal echoes the input).
    for what, marker in (("exec", "EXEC-42"), ("shell", "SHELL-42")):
        assert marker not in got[what], got
        assert "uid=" not in got[what], got
    assert got["tcp"].startswith("refused"), got
    assert got["docker.sock"].startswith("refused"), got
    assert got["reached"] == "", "a forward reached the stand-in listener"


async def test_finding1_init_agent_key_gets_nothing_from_openssh(short_root: Path) -> None:
    """The shell->agent key, authorized exactly as init-agent writes it, gets no shell, exec or forward."""
    dropin, allow_list, key = await _agent_host(short_root)
    lines = [ln for ln in allow_list.read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines
    assert all(ln.startswith(KEY_OPTIONS + " ") for ln in lines)
    proc = _start(short_root, dropin, allow_list)
    try:
        got = await _attack(int((short_root / "port").read_text()), key, short_root)
    finally:
        stop_process(proc)
    _assert_nothing(got)


async def test_finding1_agent_dropin_alone_stops_any_key_of_the_user(short_root: Path) -> None:
    """Even a key without options (an operator's) gets nothing: the drop-in forces /bin/false."""
    dropin, _, _ = await _agent_host(short_root)
    bare_key = short_root / "bare_key"
    bare = short_root / "bare_authorized_keys"
    bare.write_text(public_key_text(generate_keypair(bare_key, "bare")) + "\n")
    proc = _start(short_root, dropin, bare)
    try:
        got = await _attack(int((short_root / "port").read_text()), bare_key, short_root)
    finally:
        stop_process(proc)
    _assert_nothing(got)
    assert got["exec"].startswith("1:"), got   # /bin/false ran instead of the command


async def test_finding7_shell_host_login_runs_only_the_console(short_root: Path) -> None:
    """On the shell host, any command or shell request runs the console; no forward opens."""
    dropin, authorized, key = _shell_host(short_root)
    proc = _start(short_root, dropin, authorized)
    try:
        got = await _attack(int((short_root / "port").read_text()), key, short_root)
    finally:
        stop_process(proc)
    _assert_nothing(got)
    assert "CONSOLE" in got["exec"], got
    assert "CONSOLE" in got["shell"], got


def test_finding7_console_accepts_only_its_own_forced_command(tmp_path: Path) -> None:
    """`convocate -c <convocate>` (sshd's ForceCommand through the login shell) opens the console.

    The console then stops at its uid guard, which shows it started; any other ``-c``
    command is a usage error.
    """
    exe = str(Path(sys.executable).with_name("convocate"))
    env = {**os.environ, "CONVOCATE_SHELL_EXPECTED_UID": str(os.getuid() + 4242), "HOME": str(tmp_path)}
    forced = subprocess.run([exe, "-c", "/usr/local/bin/convocate"], capture_output=True, text=True,
                            env=env, timeout=60, check=False)
    assert forced.returncode == 1, forced.stderr
    assert "uid" in forced.stderr
    other = subprocess.run([exe, "-c", "id"], capture_output=True, text=True, env=env, timeout=60,
                           check=False)
    assert other.returncode == 2
    assert "uid=" not in other.stdout


async def test_finding1_init_agent_line_still_opens_the_agent_tunnel(short_root: Path) -> None:
    """asyncssh parses the ``restrict,command=`` line and lets the key open the gRPC socket."""
    _, allow_list, key = await _agent_host(short_root)
    sock = short_root / "grpc.sock"
    accepted: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append("yes")
        writer.write(await reader.readexactly(4))
        await writer.drain()
        writer.close()

    unix = await asyncio.start_unix_server(serve, str(sock))
    port = free_port(HOST)
    settings = SSHServerSettings(HOST, port, short_root / "asyncssh_host_key", allow_list, sock)
    server = SSHSocketServer(settings)
    try:
        async with server, asyncssh.connect(HOST, port, username="claude", client_keys=[str(key)],
                                            known_hosts=None, config=[], agent_path=None) as conn:
            reader, writer = await conn.open_unix_connection("convocate", encoding=None)
            writer.write(b"ping")
            assert await asyncio.wait_for(reader.readexactly(4), 10) == b"ping"
            writer.close()
    finally:
        unix.close()
        await unix.wait_closed()
    assert accepted == ["yes"]


def test_the_dropin_validates_on_a_host_whose_sshd_has_not_run(tmp_path: Path) -> None:
    """No /run/sshd (ssh.service makes it at each start; none since boot): the install still validates.

    Run where /run is a fresh tmpfs (a mount namespace of its own), as on a host that has
    just installed openssh-server without starting it; ``sshd -t`` alone refuses there with
    "Missing privilege separation directory".
    """
    require_root("a mount namespace with an empty /run")
    unshare = require_tool("unshare")
    require_tool("sshd")
    dropin = tmp_path / "convocate.conf"
    code = ("from pathlib import Path\n"
            "from common.sshd_dropin import AGENT_ROLE, DropIn, PRIVSEP_DIR, install_dropin\n"
            "assert not PRIVSEP_DIR.exists()\n"
            f"print(install_dropin(Path({str(dropin)!r}), DropIn('claude', '/bin/false', False, AGENT_ROLE),"
            " system=False))\n"
            "print(oct(PRIVSEP_DIR.stat().st_mode & 0o7777))\n")
    done = subprocess.run([unshare, "--mount", "--propagation", "private", "sh", "-c",
                           'mount -t tmpfs tmpfs /run && exec "$0" -c "$1"', sys.executable, code],
                          capture_output=True, text=True, timeout=60, check=False, cwd=Path.cwd())
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["written, validated with sshd -t -f (a config that includes it)",
                                        "0o755"]
