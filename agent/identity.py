"""The agent's identity: a 12-character id minted once and kept in a file (inventory §2.6)."""

from __future__ import annotations

import secrets
from pathlib import Path

from common.errors import FailedPreconditionError
from common.paths import atomic_write

__all__ = ["AGENT_ID_ALPHABET", "load_or_create_agent_id", "new_agent_id"]

# No 0/1/o/l/i: ids are read aloud and typed.
AGENT_ID_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
AGENT_ID_LENGTH = 12


def new_agent_id() -> str:
    """A fresh random agent id."""
    return "".join(secrets.choice(AGENT_ID_ALPHABET) for _ in range(AGENT_ID_LENGTH))


def load_or_create_agent_id(path: Path) -> str:
    """Return the id stored at ``path``, minting and storing one (0644) if missing or empty.

    Raises:
        FailedPreconditionError: the file cannot be read or written.
    """
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        text = ""
    except OSError as e:
        raise FailedPreconditionError(f"cannot read agent id {path}: {e}") from None
    if text:
        return text
    agent_id = new_agent_id()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, agent_id + "\n", mode=0o644)
    except OSError as e:
        raise FailedPreconditionError(
            f"cannot write agent id {path}: {e} (run `convocate-agent install` first)"
        ) from None
    return agent_id
