"""Key material for a loopback peer pair, laid out the way production lays it out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.ssh_keys import add_authorized_key, generate_keypair, pin_host_key

__all__ = ["PeerKeys", "make_peer_keys"]


@dataclass(frozen=True)
class PeerKeys:
    """Files for one SSH server and one authorized client of it."""

    host_key: Path          # server's private host key
    authorized_keys: Path   # server's allow-list
    client_key: Path        # client's private key
    known_hosts: Path       # client's pinned host keys


def make_peer_keys(root: Path, host: str, port: int, name: str = "peer") -> PeerKeys:
    """Mint a host key and a client key under ``root`` and pin/authorize them both ways."""
    root.mkdir(parents=True, exist_ok=True)
    host_key_path = root / f"{name}_host_ed25519_key"
    client_key_path = root / f"{name}_client_ed25519_key"
    host_key = generate_keypair(host_key_path, f"{name}-host")
    client_key = generate_keypair(client_key_path, f"{name}-client")
    authorized = root / f"{name}_authorized_keys"
    add_authorized_key(authorized, client_key)
    known = root / f"{name}_known_hosts"
    pin_host_key(known, host, port, host_key)
    return PeerKeys(host_key_path, authorized, client_key_path, known)
