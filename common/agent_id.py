"""Agent ids: 12 characters from an alphabet that reads aloud well.

The agent mints its own on first start (``agent.identity``); ``convocate-host init-agent``
mints one for a host it peers when the host has none yet.
"""

from __future__ import annotations

import secrets

__all__ = ["AGENT_ID_ALPHABET", "AGENT_ID_LENGTH", "new_agent_id"]

# No 0/1/o/l/i: ids are read aloud and typed.
AGENT_ID_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
AGENT_ID_LENGTH = 12


def new_agent_id() -> str:
    """A fresh random agent id."""
    return "".join(secrets.choice(AGENT_ID_ALPHABET) for _ in range(AGENT_ID_LENGTH))
