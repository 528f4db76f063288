"""Security review findings 9, 10 and 13: temp paths, links in service-owned directories, ownership.

The attacks run as in the review: another user pre-creates the tunnel's socket
directory; links are planted where root's install steps write; and the service user
(``nobody`` here: tests never create users) must read what init-agent wrote for it,
checked by reading the files as that user with ``setpriv``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import AgentConfig
from agent.install import InstallOptions, install_agent
from common.deploy_files import deploy_dir
from common.errors import FailedPreconditionError
from common.paths import chown_tree, private_dir
from common.ssh_keys import generate_keypair, public_key_text
from common.sshd_dropin import KEY_OPTIONS
from hostctl.peering import AgentHostLayout, ShellHostLayout, init_agent
from hostctl.remote import LocalRunner
from shell.install import InstallOptions as ShellInstallOptions
from shell.install import plan_install
from tests.support.env import require_root, require_tool
from tests.support.keys import make_peer_keys
from tests.support.net import free_port

SERVICE = "nobody"   # stands in for claude


def _service_ids() -> tuple[int, int]:
    pw = pwd.getpwnam(SERVICE)
    return pw.pw_uid, pw.pw_gid


def _require_root() -> None:
    require_root("the attacks need a second user")


def _read_as_service(path: Path) -> subprocess.CompletedProcess[str]:
    uid, gid = _service_ids()
    return subprocess.run([require_tool("setpriv"), f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
                           "cat", str(path)], capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture
def open_root() -> Iterator[Path]:
    """A temp root the service user can traverse (like / is)."""
    with tempfile.TemporaryDirectory(prefix="cvi-") as d:
        root = Path(d)
        root.chmod(0o755)
        yield root


def test_finding9_private_dir_refuses_a_directory_another_user_made(tmp_path: Path) -> None:
    """A directory pre-created by another user, or a link, is never adopted."""
    _require_root()
    planted = tmp_path / "planted"
    planted.mkdir(mode=0o777)
    os.chown(planted, *_service_ids())
    with pytest.raises(FailedPreconditionError, match="owned by uid"):
        private_dir(planted)
    assert planted.stat().st_uid == _service_ids()[0]
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(FailedPreconditionError, match="symbolic link"):
        private_dir(link)


def test_finding9_tunnel_socket_is_not_in_a_predictable_temp_dir(tmp_path: Path) -> None:
    """Another user pre-creates the old /tmp/convocate-tunnel-<name>; the tunnel does not use it."""
    _require_root()
    name = f"t{uuid.uuid4().hex[:8]}"
    planted = Path(tempfile.gettempdir()) / f"convocate-tunnel-{name}"
    planted.mkdir(mode=0o777)
    os.chown(planted, *_service_ids())
    port = free_port("127.0.0.1")
    keys = make_peer_keys(tmp_path / "keys", "127.0.0.1", port)
    sock = tmp_path / "srv.sock"
    server = subprocess.Popen([sys.executable, "-m", "tests.support.echo_server", "--host", "127.0.0.1",
                               "--port", str(port), "--host-key", str(keys.host_key), "--authorized-keys",
                               str(keys.authorized_keys), "--socket", str(sock)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert server.stdout is not None
        for _ in range(50):     # its log lines, then "ready"
            line = server.stdout.readline()
            if not line or line.strip() == b"ready":
                break
        env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
        argv = [sys.executable, "-m", "hostctl", "tunnel", "--host", "127.0.0.1", "--port", str(port),
                "--key", str(keys.client_key), "--known-hosts", str(keys.known_hosts),
                "--name", name, "--once"]
        r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)
    finally:
        server.terminate()
        server.wait(20)
        if server.stdout is not None:
            server.stdout.close()
        shutil.rmtree(planted, ignore_errors=True)
    assert r.returncode == 0, r.stderr
    used = Path(r.stdout.split(" is up at ", 1)[1].split()[0])
    assert used.parent != planted
    assert not used.parent.exists(), "the private socket directory is removed afterwards"


def test_finding10_chown_tree_does_not_follow_links(tmp_path: Path) -> None:
    """A link the service user plants in its tree does not hand root's file to it."""
    _require_root()
    victim = tmp_path / "victim"
    victim.write_text("root's\n")
    tree = tmp_path / "skel"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "link").symlink_to(victim)
    (tree / "file").write_text("x")
    chown_tree(tree, *_service_ids())
    assert victim.stat().st_uid == 0
    assert (tree / "file").stat().st_uid == _service_ids()[0]
    assert (tree / "sub" / "link").lstat().st_uid == _service_ids()[0]


def test_finding10_shell_install_does_not_write_through_a_planted_link(open_root: Path) -> None:
    """A dangling link at the dnsmasq hosts file (a service-owned dir): root does not create its target."""
    target = open_root / "etc" / "planted-by-claude"
    hosts = open_root / "var/lib/convocate/dnsmasq-hosts"
    hosts.parent.mkdir(parents=True)
    hosts.symlink_to(target)
    opts = ShellInstallOptions(root=open_root, build_image=False, start_service=False)
    for step in plan_install(opts, run=lambda _argv: None):
        step.action()
    assert not target.exists()


async def test_finding10_init_agent_does_not_write_through_a_predictable_temp_name(open_root: Path) -> None:
    """init-agent's remote writes used ``<file>.tmp``: a link planted there no longer receives the key."""
    _require_root()
    root, _, _ = await _peer(open_root, plant=True)
    assert (root / "victim").read_text() == "untouched\n"


async def _peer(root: Path, *, plant: bool = False) -> tuple[Path, AgentHostLayout, ShellHostLayout]:
    cli = root / "usr/local/bin/claude"
    cli.parent.mkdir(parents=True)
    cli.write_text("#!/bin/sh\n")
    install_agent(AgentConfig(), InstallOptions(root=root, units_dir=deploy_dir() / "systemd",
                                                binary=sys.executable), lambda _line: None, euid=0)
    agent = AgentHostLayout(root / "etc/convocate-agent", root / "home/claude", owner=SERVICE)
    shell_etc = root / "shell-etc"
    shell_etc.mkdir(mode=0o755)
    shell = ShellHostLayout(registry_dir=shell_etc / "agent-keys", status_host_key=shell_etc / "status_key",
                            status_authorized_keys=shell_etc / "status_allow", status_address="127.0.0.1",
                            owner=SERVICE)
    if plant:
        (root / "victim").write_text("untouched\n")
        (agent.config_dir / "ssh_host_ed25519_key.tmp").symlink_to(root / "victim")
    await init_agent(LocalRunner(), "127.0.0.9", agent=agent, shell=shell)
    return root, agent, shell


async def test_finding13_keys_and_registry_are_readable_by_the_service_user(open_root: Path) -> None:
    """After init-agent, the service user reads each file it needs; others stay private."""
    _require_root()
    _, agent, shell = await _peer(open_root)
    agent_id = (agent.config_dir / "agent-id").read_text().strip()
    needed = [
        agent.config_dir / "ssh_host_ed25519_key", agent.config_dir / "agent_to_shell_ed25519_key",
        agent.config_dir / "status_known_hosts", agent.authorized_keys,
        shell.status_host_key, shell.status_authorized_keys,
        *(shell.registry_dir / agent_id / name
          for name in ("agent.toml", "shell_to_agent_ed25519_key", "known_hosts")),
    ]
    for path in needed:
        r = _read_as_service(path)
        assert r.returncode == 0, f"{SERVICE} cannot read {path}: {r.stderr}"
        assert path.stat().st_mode & 0o007 == 0, f"{path} is readable by everyone"
    for allow_list in (agent.authorized_keys, shell.status_authorized_keys):
        st = allow_list.stat()
        # The service reads its allow-list and cannot write it.
        assert (st.st_uid, st.st_mode & 0o777) == (0, 0o640)


def test_finding1_upgrade_moves_the_shell_key_out_of_openssh_s_file(open_root: Path) -> None:
    """An install over a v2.0 agent moves init-agent's line from ~/.ssh (restricted); other lines stay."""
    cli = open_root / "usr/local/bin/claude"
    cli.parent.mkdir(parents=True)
    cli.write_text("#!/bin/sh\n")
    legacy = open_root / "home/claude/.ssh/authorized_keys"
    legacy.parent.mkdir(parents=True)
    key = public_key_text(generate_keypair(open_root / "k", "x")).rsplit(None, 1)[0]
    old_line = f"{key} convocate:shell-to-agent:agent-a"
    legacy.write_text(f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOperator operator@laptop\n{old_line}\n")
    install_agent(AgentConfig(), InstallOptions(root=open_root, units_dir=deploy_dir() / "systemd",
                                                binary=sys.executable), lambda _line: None, euid=0)
    assert legacy.read_text() == "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOperator operator@laptop\n"
    allow_list = (open_root / "etc/convocate-agent/authorized_keys").read_text().splitlines()
    assert f"{KEY_OPTIONS} {old_line}" in allow_list
