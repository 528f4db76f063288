"""The agent registry on the shell host: which agents exist and how to reach them.

Format (written by :func:`register_agent`, later by ``convocate-host init-agent``)::

    <registry_dir>/                      0700, owned by the claude user
      <agent-id>/                        0700, one directory per agent
        agent.toml                       0600, written last (its presence = complete)
        shell_to_agent_ed25519_key       0600, the shell's private key for this agent
        shell_to_agent_ed25519_key.pub   0644
        known_hosts                      0600, the agent's pinned SSH host key

``agent.toml`` holds::

    id = "agent-a"                       # must equal the directory name
    address = "10.0.0.7"                 # IP or host name of the agent's SSH server
    port = 222                           # its SSH port
    client_key = "shell_to_agent_ed25519_key"   # relative to the agent's directory
    known_hosts = "known_hosts"                 # relative to the agent's directory

A directory without ``agent.toml`` is an ``init-agent`` in progress and is skipped with
a log line; anything else that is wrong (bad id, bad port, missing key file, unknown
key) is an error naming the file and the fix. Every file is written atomically.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from common.defaults import AGENT_KEYS_DIR
from common.errors import InvalidArgumentError, NotFoundError
from common.logging import get_logger
from common.paths import atomic_write, private_dir

if TYPE_CHECKING:
    import asyncssh

__all__ = [
    "AGENT_FILE",
    "CLIENT_KEY_NAME",
    "DEFAULT_REGISTRY_DIR",
    "KNOWN_HOSTS_NAME",
    "AgentRecord",
    "RegistryScanner",
    "entry_written_ns",
    "load_registry",
    "read_agent",
    "register_agent",
    "scan_registry",
    "unregister_agent",
    "validate_agent_id",
]

# The production location (v2.0.0's path; `convocate install` creates it 0700 for claude).
DEFAULT_REGISTRY_DIR = AGENT_KEYS_DIR
AGENT_FILE = "agent.toml"
CLIENT_KEY_NAME = "shell_to_agent_ed25519_key"
KNOWN_HOSTS_NAME = "known_hosts"
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_KEYS = {"id", "address", "port", "client_key", "known_hosts"}

log = get_logger(__name__)


@dataclass(frozen=True)
class AgentRecord:
    """One registered agent: where it listens and the key material to reach it."""

    agent_id: str
    address: str
    port: int
    client_key: Path
    known_hosts: Path


def validate_agent_id(agent_id: str) -> str:
    """Return ``agent_id`` if it is a valid id (lowercase letters, digits, ``._-``).

    Raises:
        InvalidArgumentError: the id is empty, too long or has other characters.
    """
    if not _ID_RE.match(agent_id):
        raise InvalidArgumentError(
            f"agent id {agent_id!r} is not valid: use 1-63 lowercase letters, digits, '.', '_' "
            "or '-', starting with a letter or digit"
        )
    return agent_id


def _check_port(port: object, where: str) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidArgumentError(f"{where}: port {port!r} is not a TCP port (1-65535)")
    return port


def register_agent(
    registry_dir: Path,
    agent_id: str,
    address: str,
    port: int,
    client_key: Path | asyncssh.SSHKey,
    host_key: asyncssh.SSHKey | str,
    owner: tuple[int, int] | None = None,
) -> AgentRecord:
    """Add or replace one agent in the registry (idempotent).

    Args:
        registry_dir: the registry root (created 0700 if missing).
        agent_id: the agent's id (also its directory name).
        address: IP or host name of the agent's SSH server.
        port: the agent's SSH port.
        client_key: the shell -> agent private key (a file to copy, or a key object).
        host_key: the agent's public host key to pin (key object or OpenSSH line).
        owner: (uid, gid) that must read the registry (the console and status service's
            user); None keeps this process's. Root writes into the directory that user
            owns without following any link there.

    Returns:
        The record as :func:`load_registry` will read it.

    Raises:
        InvalidArgumentError: a bad id, address, port or key.
    """
    # Keys need asyncssh; reading the registry does not (issue 13: `agents` start-up).
    from common.ssh_keys import pin_host_key, public_key_text, read_private_key  # noqa: PLC0415

    validate_agent_id(agent_id)
    if not address or any(c.isspace() for c in address):
        raise InvalidArgumentError(f"agent {agent_id}: address {address!r} is not a host name or IP")
    _check_port(port, f"agent {agent_id}")
    key = read_private_key(client_key) if isinstance(client_key, Path) else client_key
    uid, gid = owner or (-1, -1)
    want = None if owner is None else uid
    directory = private_dir(private_dir(registry_dir, owner=want) / agent_id, owner=want)
    key_path = directory / CLIENT_KEY_NAME
    atomic_write(key_path, key.export_private_key("openssh"), mode=0o600, uid=uid, gid=gid)
    atomic_write(key_path.with_name(CLIENT_KEY_NAME + ".pub"), public_key_text(key) + "\n", mode=0o644,
                 uid=uid, gid=gid)
    known = directory / KNOWN_HOSTS_NAME
    known.unlink(missing_ok=True)
    pin_host_key(known, address, port, host_key)
    if owner is not None:
        os.chown(known, uid, gid, follow_symlinks=False)
    # json.dumps yields valid TOML basic strings for the values we allow.
    text = (
        f"id = {json.dumps(agent_id)}\n"
        f"address = {json.dumps(address)}\n"
        f"port = {port}\n"
        f"client_key = {json.dumps(CLIENT_KEY_NAME)}\n"
        f"known_hosts = {json.dumps(KNOWN_HOSTS_NAME)}\n"
    )
    atomic_write(directory / AGENT_FILE, text, mode=0o600, uid=uid, gid=gid)
    log.info("agent registered", agent=agent_id, address=address, port=port, registry=str(registry_dir))
    return read_agent(directory)


def read_agent(directory: Path) -> AgentRecord:
    """Read and validate one agent directory.

    Raises:
        NotFoundError: the directory has no ``agent.toml``.
        InvalidArgumentError: the file is malformed or names missing key files.
    """
    path = directory / AGENT_FILE
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise NotFoundError(f"{path} does not exist (agent registration incomplete)") from None
    except tomllib.TOMLDecodeError as e:
        raise InvalidArgumentError(f"{path} is not valid TOML: {e}") from None
    unknown = set(data) - _KEYS
    missing = {"id", "address", "port"} - set(data)
    if unknown or missing:
        problems = [f"{what} key(s) {sorted(keys)}" for what, keys in (("unknown", unknown),
                                                                       ("missing", missing)) if keys]
        raise InvalidArgumentError(f"{path}: {', '.join(problems)}; the keys are {sorted(_KEYS)}")
    agent_id = data["id"]
    if not isinstance(agent_id, str) or agent_id != directory.name:
        raise InvalidArgumentError(
            f"{path}: id {agent_id!r} must equal the directory name {directory.name!r}"
        )
    validate_agent_id(agent_id)
    address = data["address"]
    if not isinstance(address, str) or not address.strip():
        raise InvalidArgumentError(f"{path}: address must be a non-empty string")
    port = _check_port(data["port"], str(path))
    files: dict[str, Path] = {}
    for name, default in (("client_key", CLIENT_KEY_NAME), ("known_hosts", KNOWN_HOSTS_NAME)):
        value = data.get(name, default)
        if not isinstance(value, str) or not value:
            raise InvalidArgumentError(f"{path}: {name} must be a file name")
        file = directory / value
        if not file.is_file():
            raise InvalidArgumentError(
                f"{path}: {name} file {file} is missing: re-run `convocate-host init-agent` for {agent_id}"
            )
        files[name] = file
    return AgentRecord(agent_id, address.strip(), port, files["client_key"], files["known_hosts"])


def scan_registry(registry_dir: Path, read: Callable[[Path], AgentRecord] = read_agent,
                  ) -> tuple[list[AgentRecord], dict[str, str]]:
    """Every complete agent in ``registry_dir``, and the malformed entries with their errors.

    For long-running readers (the router) that must keep serving the good agents and
    show the bad entries instead of refusing to start.

    Args:
        registry_dir: the registry.
        read: reads one agent directory (:func:`read_agent`, or a :class:`RegistryScanner`'s).

    Returns:
        (records sorted by id, directory name -> error message).
    """
    records: list[AgentRecord] = []
    broken: dict[str, str] = {}
    if not registry_dir.is_dir():
        return records, broken
    for directory in sorted(p for p in registry_dir.iterdir() if p.is_dir()):
        try:
            records.append(read(directory))
        except NotFoundError as e:
            log.info("agent registration incomplete, skipped", directory=str(directory), reason=str(e))
        except InvalidArgumentError as e:
            log.warning("agent registration invalid", directory=str(directory), error=str(e))
            broken[directory.name] = str(e)
    return records, broken


# A scan's entries: directory -> (agent.toml's inode, size, mtime; the record read from it).
_Seen = dict[Path, tuple[tuple[int, int, int], AgentRecord]]


class RegistryScanner:
    """:func:`scan_registry` for a reader that scans again and again (the router, at every refresh).

    An entry whose ``agent.toml`` is the same file as at the last scan (inode, size,
    modification time: every write replaces the file) and whose key files are still there
    is not parsed and validated again; anything else is read as :func:`read_agent` reads it.
    """

    def __init__(self, registry_dir: Path) -> None:
        self.registry_dir = registry_dir
        self._seen: _Seen = {}

    def scan(self) -> tuple[list[AgentRecord], dict[str, str]]:
        """What :func:`scan_registry` returns for the registry now."""
        seen: _Seen = {}
        try:
            return scan_registry(self.registry_dir, lambda directory: self._read(directory, seen))
        finally:
            self._seen = seen

    def _read(self, directory: Path, seen: _Seen) -> AgentRecord:
        """One entry, from the last scan when its file is unchanged; noted in ``seen`` for the next."""
        try:
            st = (directory / AGENT_FILE).stat()
        except OSError:
            return read_agent(directory)   # says what is wrong
        signature = (st.st_ino, st.st_size, st.st_mtime_ns)
        last = self._seen.get(directory)
        if last is not None and last[0] == signature and last[1].client_key.is_file() \
                and last[1].known_hosts.is_file():
            record = last[1]
        else:
            record = read_agent(directory)
        seen[directory] = (signature, record)
        return record


def entry_written_ns(registry_dir: Path, record: AgentRecord) -> int:
    """When ``record``'s entry was last written: the newest modification time (ns) of its files.

    ``agent.toml`` and both key files; every write replaces a file (:func:`register_agent`),
    so a re-peer moves it forward even when the record reads the same.

    Raises:
        OSError: a file of the entry is gone.
    """
    files = (registry_dir / record.agent_id / AGENT_FILE, record.client_key, record.known_hosts)
    return max(f.stat().st_mtime_ns for f in files)


def load_registry(registry_dir: Path) -> list[AgentRecord]:
    """Every complete agent in ``registry_dir``, sorted by id (missing dir = no agents).

    Raises:
        InvalidArgumentError: an agent directory is malformed (with the file to fix).
    """
    records, broken = scan_registry(registry_dir)
    if broken:
        raise InvalidArgumentError(next(iter(broken.values())))
    return records


def unregister_agent(registry_dir: Path, agent_id: str) -> None:
    """Remove an agent's directory from the registry (missing = nothing to do)."""
    validate_agent_id(agent_id)
    shutil.rmtree(registry_dir / agent_id, ignore_errors=True)
