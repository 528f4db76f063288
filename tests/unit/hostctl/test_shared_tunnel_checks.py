"""Which status service sockets `agents` / `sessions` trust: the checks alone, on real files and sockets.

The whole path (a real status service and agent) is tests/integration/hostctl/test_shared_tunnel.py;
these are the cases it does not build: links, a file that is not a socket, the config file.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.registry import AgentRecord, entry_written_ns, load_registry
from hostctl.shared_tunnel import SharedTunnels, find_shared_tunnels
from tests.support.fleet import prepare_agent


@pytest.fixture
def record(tmp_path: Path) -> Iterator[tuple[Path, AgentRecord]]:
    """A registry of one agent (never started) and its record."""
    registry = tmp_path / "registry"
    agent = prepare_agent(tmp_path / "agents", registry, 0, None)
    try:
        [rec] = load_registry(registry)
        yield registry, rec
    finally:
        agent.close()


def _bind(path: Path) -> None:
    """A socket file at ``path`` (0600), nothing listening."""
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(path))
    finally:
        s.close()
    path.chmod(0o600)


def _shared(tmp_path: Path, registry: Path) -> SharedTunnels:
    directory = tmp_path / "probe"
    directory.mkdir(mode=0o700, exist_ok=True)
    return SharedTunnels(directory, registry, os.geteuid())


def test_a_private_socket_newer_than_the_entry_is_used(tmp_path: Path,
                                                       record: tuple[Path, AgentRecord]) -> None:
    """The service's socket as it makes it: a socket, 0600, ours, bound after the entry was written."""
    registry, rec = record
    shared = _shared(tmp_path, registry)
    sock = shared.directory / f"{rec.agent_id}.sock"
    _bind(sock)
    assert sock.stat().st_mtime_ns >= entry_written_ns(registry, rec)
    assert shared.socket_for(rec) == sock


def test_a_link_or_a_plain_file_or_an_open_socket_is_not_used(tmp_path: Path,
                                                               record: tuple[Path, AgentRecord]) -> None:
    """What lstat says decides: no link is followed, and the socket itself must be private."""
    registry, rec = record
    shared = _shared(tmp_path, registry)
    sock = shared.directory / f"{rec.agent_id}.sock"
    elsewhere = tmp_path / "elsewhere.sock"
    _bind(elsewhere)
    sock.symlink_to(elsewhere)                 # a link to a good socket: not followed
    assert shared.socket_for(rec) is None
    sock.unlink()
    sock.write_text("")
    sock.chmod(0o600)                          # a file, not a socket
    assert shared.socket_for(rec) is None
    sock.unlink()
    _bind(sock)
    sock.chmod(0o666)                          # a socket others may connect to
    assert shared.socket_for(rec) is None
    sock.chmod(0o600)
    assert shared.socket_for(rec) == sock


def test_the_directory_comes_from_the_status_config_and_must_be_a_private_directory(
        tmp_path: Path, record: tuple[Path, AgentRecord], monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe directory beside the status config's socket; missing, a link, group-readable: none."""
    registry, _rec = record
    probe = tmp_path / "run" / "probe"
    toml = tmp_path / "convocate.toml"
    toml.write_text(f'[status]\nsocket = "{tmp_path / "run" / "status.sock"}"\nregistry_dir = "{registry}"\n')
    monkeypatch.setenv("CONVOCATE_CONFIG", str(toml))
    assert find_shared_tunnels(registry) is None            # not there (no service running)
    probe.parent.mkdir()
    real = tmp_path / "real-probe"
    real.mkdir(mode=0o700)
    probe.symlink_to(real)
    assert find_shared_tunnels(registry) is None            # a link where the directory should be
    probe.unlink()
    probe.mkdir(mode=0o700)
    assert find_shared_tunnels(registry) == SharedTunnels(probe, registry, os.geteuid())
    probe.chmod(0o750)
    assert find_shared_tunnels(registry) is None            # the group may enter
    probe.chmod(0o700)
    toml.write_text("[status]\nbogus = 1\n")                # a config it cannot read: no sharing, no error
    assert find_shared_tunnels(registry) is None
    monkeypatch.setenv("CONVOCATE_CONFIG", str(tmp_path / "missing.toml"))
    assert find_shared_tunnels(registry) is None
