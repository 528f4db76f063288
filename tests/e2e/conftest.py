"""End-to-end fixtures: a status service, two real agents, consoles in private tmux servers."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.console_fleet import Fleet, console_fleet, start_console
from tests.support.env import require_docker, require_tool
from tests.support.images import ensure_offline_image
from tests.support.tmux import TmuxTerminal

__all__ = ["Fleet"]


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    """Start the status service and two agents on 127.0.0.2 and 127.0.0.3; stop all afterwards."""
    require_docker()
    require_tool("tmux")
    image = ensure_offline_image()
    with tempfile.TemporaryDirectory(prefix="cve-") as d, \
            console_fleet(Path(d), ("127.0.0.2", "127.0.0.3"), image) as f:
        yield f


@pytest.fixture
def open_console(fleet: Fleet) -> Iterator[Callable[..., TmuxTerminal]]:
    """Start consoles, each in its own private tmux server (110x30 unless told); kill them all afterwards."""
    terms: list[TmuxTerminal] = []

    def start(width: int = 110, height: int = 30) -> TmuxTerminal:
        t = TmuxTerminal(require_tool("tmux"), width=width, height=height)
        terms.append(t)
        return start_console(fleet, t, f"console-{len(terms)}.log")

    try:
        yield start
    finally:
        for t in terms:
            t.kill()
