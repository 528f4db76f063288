"""The on-disk agent registry: one library function writes it, strict validation reads it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from common.errors import InvalidArgumentError
from common.registry import (
    AGENT_FILE,
    RegistryScanner,
    load_registry,
    read_agent,
    register_agent,
    scan_registry,
    unregister_agent,
)
from common.ssh_keys import generate_keypair


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    """A shell -> agent private key and an agent host key (private; .pub beside it)."""
    client = tmp_path / "client_key"
    host = tmp_path / "host_key"
    generate_keypair(client, "client")
    generate_keypair(host, "host")
    return client, host


def test_register_then_load_round_trips_sorted(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    """Registered agents load back sorted by id with private files and a pinned host key."""
    client, _host = keys
    registry = tmp_path / "registry"
    host_pub = (tmp_path / "host_key.pub").read_text()
    register_agent(registry, "zeta", "10.0.0.9", 222, client, host_pub)
    rec = register_agent(registry, "alpha", "127.0.0.2", 2222, client, host_pub)
    assert [r.agent_id for r in load_registry(registry)] == ["alpha", "zeta"]
    assert rec.known_hosts.read_text().startswith("[127.0.0.2]:2222 ssh-ed25519 ")
    assert rec.client_key.stat().st_mode & 0o777 == 0o600
    assert (registry / "alpha").stat().st_mode & 0o777 == 0o700
    # Idempotent: registering again replaces, never duplicates the pin.
    register_agent(registry, "alpha", "127.0.0.2", 2222, client, host_pub)
    assert len(rec.known_hosts.read_text().splitlines()) == 1


def test_incomplete_directory_is_skipped_and_missing_root_is_empty(tmp_path: Path) -> None:
    """A directory without agent.toml (init in progress) is skipped; no registry means no agents."""
    assert load_registry(tmp_path / "none") == []
    (tmp_path / "reg" / "half").mkdir(parents=True)
    assert load_registry(tmp_path / "reg") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('id = "other"\naddress = "h"\nport = 22\n', "must equal the directory name"),
        ('id = "a"\naddress = "h"\nport = 70000\n', "not a TCP port"),
        ('id = "a"\naddress = "h"\nport = 22\nextra = 1\n', "unknown key(s) ['extra']"),
        ('id = "a"\nport = 22\n', "missing key(s) ['address']"),
        ('id = "a"\naddress = "h"\nport = 22\n', "client_key file"),
        ("id = [", "not valid TOML"),
    ],
)
def test_malformed_entries_fail_with_the_file_and_the_fix(tmp_path: Path, text: str, message: str) -> None:
    """Every malformed agent.toml is an error naming the file and what is wrong."""
    directory = tmp_path / "a"
    directory.mkdir()
    (directory / AGENT_FILE).write_text(text)
    with pytest.raises(InvalidArgumentError, match=re.escape(message)) as e:
        read_agent(directory)
    assert str(directory / AGENT_FILE) in str(e.value)


@pytest.mark.parametrize("bad", ["", "Upper", "-lead", "a b", "x" * 64, "../x"])
def test_bad_ids_and_addresses_are_refused(tmp_path: Path, keys: tuple[Path, Path], bad: str) -> None:
    """Ids outside [a-z0-9._-] and addresses with spaces are refused before anything is written."""
    client, _host = keys
    with pytest.raises(InvalidArgumentError):
        register_agent(tmp_path / "r", bad, "h", 22, client, (tmp_path / "host_key.pub").read_text())
    with pytest.raises(InvalidArgumentError, match="address"):
        register_agent(tmp_path / "r", "ok", "a b", 22, client, (tmp_path / "host_key.pub").read_text())
    assert load_registry(tmp_path / "r") == []


def test_unregister_removes_the_agent(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    """Unregistering deletes the agent's directory and it no longer loads."""
    client, _host = keys
    register_agent(tmp_path / "r", "a", "h", 22, client, (tmp_path / "host_key.pub").read_text())
    unregister_agent(tmp_path / "r", "a")
    assert load_registry(tmp_path / "r") == []


def test_scan_keeps_good_agents_and_names_bad_entries(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    """scan_registry returns the valid agents and, separately, each invalid entry with its error."""
    client, _host = keys
    registry = tmp_path / "r"
    register_agent(registry, "good", "h", 22, client, (tmp_path / "host_key.pub").read_text())
    (registry / "bad").mkdir()
    (registry / "bad" / AGENT_FILE).write_text('id = "bad"\naddress = "h"\nport = "22"\n')
    records, broken = scan_registry(registry)
    assert [r.agent_id for r in records] == ["good"]
    assert list(broken) == ["bad"]
    assert "not a TCP port" in broken["bad"]
    with pytest.raises(InvalidArgumentError, match="not a TCP port"):
        load_registry(registry)


def test_a_rescan_reads_only_entries_that_changed(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    """The router's scanner keeps an unchanged entry's record, reads a rewritten one and sees a lost key."""
    client, _host = keys
    registry = tmp_path / "registry"
    host_pub = (tmp_path / "host_key.pub").read_text()
    register_agent(registry, "alpha", "127.0.0.2", 2222, client, host_pub)
    register_agent(registry, "beta", "127.0.0.3", 2222, client, host_pub)
    scanner = RegistryScanner(registry)
    first, broken = scanner.scan()
    assert ([r.agent_id for r in first], broken) == (["alpha", "beta"], {})
    again, _ = scanner.scan()
    assert all(a is b for a, b in zip(first, again, strict=True))   # not parsed again
    register_agent(registry, "beta", "127.0.0.3", 2200, client, host_pub)
    changed, _ = scanner.scan()
    assert changed[0] is first[0]
    assert changed[1].port == 2200
    changed[1].client_key.unlink()
    records, broken = scanner.scan()
    assert [r.agent_id for r in records] == ["alpha"]
    assert "client_key file" in broken["beta"]
    assert (records, broken) == scan_registry(registry)
