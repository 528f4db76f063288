"""The agent's identity: a 12-character id minted once and kept in a file (inventory §2.6)."""

from __future__ import annotations

from pathlib import Path

from common.agent_id import AGENT_ID_ALPHABET, AGENT_ID_LENGTH, new_agent_id
from common.errors import FailedPreconditionError
from common.paths import atomic_write

__all__ = ["AGENT_ID_ALPHABET", "AGENT_ID_LENGTH", "load_or_create_agent_id", "new_agent_id"]


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
