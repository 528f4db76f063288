"""Two consoles on one session: the second observes (read-only), then takes over."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.e2e.conftest import Fleet
from tests.support.tmux import TmuxTerminal

pytestmark = [pytest.mark.docker, pytest.mark.tmux]


def test_second_console_observes_then_takes_over(
    fleet: Fleet, open_console: Callable[..., TmuxTerminal]
) -> None:
    """A session in use offers observe (sees output, cannot type) and take over (ends the first)."""
    one, two = open_console(), open_console()
    one.wait_for(r"agents 2 up", timeout=30)
    one.send_keys("n")
    one.wait_for(r"Select Agent for New Session")
    one.send_keys("Enter")
    one.wait_for(r"Create on agent")
    one.type("shared")
    one.send_keys("Enter")
    one.wait_for(r"shared\s+\|.*\| R\s*$", timeout=30)
    one.wait_gone(r"Create on agent")
    one.send_keys("Enter")
    one.wait_for(r"^\$ ?$", timeout=30)

    # The second console sees the session attached (C) and offers observe or take over.
    two.wait_for(r"shared\s+\|.*\| C\s*$", timeout=30)
    two.send_keys("Enter")
    two.wait_for(r"Session In Use")
    two.wait_for(r"attached by 1 viewer")
    two.send_keys("o")
    two.wait_for(r"^\$ ?$", timeout=30)

    # The observer sees what the driver types, and its own keys go nowhere.
    one.type("echo shared-$((2*21))")
    one.send_keys("Enter")
    two.wait_for(r"^shared-42\s*$")
    two.type("echo nope")
    one.type("echo marker-$((6*7))")  # the driver's round trip, after the observer's keys
    one.send_keys("Enter")
    one.wait_for(r"^marker-42\s*$")
    assert "nope" not in one.capture()
    two.send_keys("C-b", "d")
    two.wait_for(r'Detached from "shared"', timeout=20)

    # Take over: the first console is told, the second drives.
    two.send_keys("Enter")
    two.wait_for(r"Session In Use")
    two.send_keys("t")
    two.wait_for(r"^\$ ?$", timeout=30)
    one.wait_for(r'Another operator took over "shared"', timeout=20)
    two.type("echo mine-$((5*5))")
    two.send_keys("Enter")
    two.wait_for(r"^mine-25\s*$")
    two.send_keys("C-b", "d")
    two.wait_for(r'Detached from "shared"', timeout=20)
    for term in (one, two):
        term.send_keys("q")
        term.wait_for(r"CONSOLE-EXIT rc=0", timeout=20)
