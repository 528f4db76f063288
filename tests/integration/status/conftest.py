"""A real status service (SSH + gRPC on loopback) and key material for its agents."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from shell.status_server import StatusServer
from tests.support.status_stack import StatusStack, start_status_stack


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short temp directory (UNIX socket paths must stay under 107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="cvs-") as d:
        yield Path(d)


@pytest.fixture
async def status(short_tmp: Path) -> AsyncIterator[StatusStack]:
    """An in-process status service on 127.0.0.1 with a 0.5 s heartbeat interval."""
    stack = await start_status_stack(short_tmp / "shell", heartbeat_interval=0.5)
    try:
        yield stack
    finally:
        await stack.server.stop(grace=0)


__all__ = ["StatusServer"]
