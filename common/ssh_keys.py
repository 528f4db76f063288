"""SSH key material: keypairs, host keys, pinned known-hosts and authorized-keys files.

Private keys are written 0600 in OpenSSH format; every file is written atomically.
"""

from __future__ import annotations

from pathlib import Path

import asyncssh

from common.errors import InvalidArgumentError
from common.paths import atomic_write

__all__ = [
    "add_authorized_key",
    "fingerprint",
    "generate_keypair",
    "known_hosts_line",
    "load_or_create_host_key",
    "pin_host_key",
    "public_key_text",
    "read_private_key",
]


def generate_keypair(path: Path, comment: str) -> asyncssh.SSHKey:
    """Mint an ed25519 keypair at ``path`` (0600) and ``path.pub`` (0644)."""
    key = asyncssh.generate_private_key("ssh-ed25519", comment=comment)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, key.export_private_key("openssh"), mode=0o600)
    atomic_write(path.with_name(path.name + ".pub"), key.export_public_key("openssh"), mode=0o644)
    return key


def read_private_key(path: Path) -> asyncssh.SSHKey:
    """Read an unencrypted private key, with a clear error when it is missing or bad."""
    try:
        return asyncssh.read_private_key(str(path))
    except FileNotFoundError:
        raise InvalidArgumentError(f"key file {path} does not exist") from None
    except (asyncssh.KeyImportError, ValueError) as e:
        raise InvalidArgumentError(f"key file {path} is not a usable private key: {e}") from None


def load_or_create_host_key(path: Path, comment: str) -> asyncssh.SSHKey:
    """Return the host key at ``path``, creating an ed25519 one (0600) on first use."""
    if path.exists():
        return read_private_key(path)
    return generate_keypair(path, comment)


def public_key_text(key: asyncssh.SSHKey) -> str:
    """The one-line OpenSSH public key (``ssh-ed25519 AAAA... comment``)."""
    return key.export_public_key("openssh").decode().strip()


def fingerprint(key: asyncssh.SSHKey) -> str:
    """SHA256 fingerprint, as OpenSSH prints it."""
    return str(key.get_fingerprint("sha256"))


def known_hosts_line(host: str, port: int, key: asyncssh.SSHKey | str) -> str:
    """A known_hosts entry pinning ``key`` for ``host:port`` (bracketed when not 22)."""
    text = key if isinstance(key, str) else public_key_text(key)
    parts = text.split()
    if len(parts) < 2:
        raise InvalidArgumentError(f"not an OpenSSH public key: {text!r}")
    pattern = host if port == 22 else f"[{host}]:{port}"
    return f"{pattern} {parts[0]} {parts[1]}"


def pin_host_key(known_hosts: Path, host: str, port: int, key: asyncssh.SSHKey | str) -> None:
    """Add or replace the pinned host key of ``host:port`` in ``known_hosts`` (0600)."""
    line = known_hosts_line(host, port, key)
    pattern = line.split()[0]
    kept: list[str] = []
    if known_hosts.exists():
        kept = [
            old
            for old in known_hosts.read_text().splitlines()
            if old.strip() and old.split()[0] != pattern
        ]
    known_hosts.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(known_hosts, "\n".join([*kept, line]) + "\n", mode=0o600)


def add_authorized_key(authorized_keys: Path, key: asyncssh.SSHKey | str) -> None:
    """Append ``key`` to ``authorized_keys`` (0600) unless it is already there."""
    text = key if isinstance(key, str) else public_key_text(key)
    blob = text.split()[1]
    lines: list[str] = []
    if authorized_keys.exists():
        lines = [ln for ln in authorized_keys.read_text().splitlines() if ln.strip()]
    if any(len(ln.split()) > 1 and ln.split()[1] == blob for ln in lines):
        return
    authorized_keys.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(authorized_keys, "\n".join([*lines, text]) + "\n", mode=0o600)
