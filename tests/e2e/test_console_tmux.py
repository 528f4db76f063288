"""The console in a real terminal: tmux at 110x30, two real agents, a real status service."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable

import pytest

from tests.e2e.conftest import Fleet
from tests.support.tmux import TmuxTerminal
from tests.support.waiting import wait_for_sync

pytestmark = [pytest.mark.docker, pytest.mark.tmux]


def _wait_inner_size(term: TmuxTerminal, size: str, attempts: int = 10) -> None:
    """Ask ``stty size`` until it reports ``size`` (the agent applies a resize asynchronously)."""
    for _ in range(attempts):
        term.type("clear; stty size")
        term.send_keys("Enter")
        try:
            term.wait_for(rf"^{size}\s*$", timeout=1.5)
        except AssertionError:
            continue
        return
    raise AssertionError(f"the session never reported {size}:\n{term.capture()}")


def _title_clock(screen: str) -> str:
    match = re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", screen.splitlines()[0])
    assert match, screen
    return match.group(0)


def test_console_create_attach_resize_detach_and_agent_down(
    fleet: Fleet, open_console: Callable[..., TmuxTerminal]
) -> None:
    """Create on a chosen agent, attach, type, resize, detach; a killed agent is marked live."""
    started = time.monotonic()
    term = open_console()
    a1, a2 = fleet.agents
    term.wait_for(r"agents 2 up", timeout=30)

    # New: the selector lists both agents; pick the one on 127.0.0.3.
    term.send_keys("n")
    term.wait_for(r"Select Agent for New Session")
    options = [line for line in term.capture().splitlines() if "127.0.0." in line]
    index = next(i for i, line in enumerate(options) if "127.0.0.3" in line)
    term.send_keys(*(["Down"] * index), "Enter")
    term.wait_for(rf"Create on agent {a2.agent_id}")
    term.type("e2e-one")
    term.send_keys("Enter")
    term.wait_for(rf"e2e-one\s+\|[^|]*\| {a2.agent_id}\s.*\| R\s*$", timeout=30)
    term.wait_gone(r"Create on agent")

    # Attach, type, see the output, see the size, resize, see the new size.
    term.send_keys("Enter")
    term.wait_for(r"^\$ ?$", timeout=30)
    t0 = time.monotonic()
    term.type("echo hello-$((6*7))")
    term.send_keys("Enter")
    term.wait_for(r"^hello-42\s*$")
    echo_seconds = time.monotonic() - t0
    term.type("stty size")
    term.send_keys("Enter")
    term.wait_for(r"^30 110\s*$")
    term.resize(100, 26)
    _wait_inner_size(term, "26 100")

    # Detach with Ctrl-B d: the table is back, current, with the session running.
    term.send_keys("C-b", "d")
    term.wait_for(r'Detached from "e2e-one"', timeout=20)
    term.wait_for(r"e2e-one\s+\|.*\| R\s*$")

    # Typeahead: Enter and a command in one write reach the session's shell.
    term.type("\recho ahead-$((3*3))\r")
    term.wait_for(r"^ahead-9\s*$", timeout=30)
    term.type("echo still-$((4*4))\r")  # a second round trip: the attach is still live
    term.wait_for(r"^still-16\s*$", timeout=30)
    assert "(N)ew" not in term.capture(), "the attach ended on its own"
    term.send_keys("C-b", "d")
    term.wait_for(r'Detached from "e2e-one"', timeout=20)

    # Edit the running session: saved, then restarted (stopped first) under the new name.
    term.send_keys("e")
    term.wait_for(r"Edit Session")
    term.type("-x")
    term.send_keys("Enter")
    term.wait_for(r"it is running: Y stops it first")
    term.send_keys("y")
    term.wait_gone(r"Restart Session", timeout=60)
    term.wait_for(rf"e2e-one-x\s+\|[^|]*\| {a2.agent_id}\s.*\| R\s*$", timeout=60)

    # Freeze the other agent (SIGSTOP): the screen keeps ticking and keys still work.
    assert a1.proc is not None
    a1.proc.send_signal(signal.SIGSTOP)
    frozen = _title_clock(term.capture())
    wait_for_sync(lambda: _title_clock(term.capture()) != frozen, timeout=5)
    term.send_keys("?")
    term.wait_for(r"Ctrl-B d detaches")
    term.send_keys("Escape")
    term.wait_for(rf"e2e-one-x\s+\|[^|]*\| {a2.agent_id}")

    # Kill it: its row is marked, the clock keeps ticking, keys still work.
    a1.kill()
    term.wait_for(r"agents 1 up, 1 DOWN", timeout=20)
    term.wait_for(rf"\[agent unreachable\]\s+\| {a1.agent_id}")
    first = _title_clock(term.capture())
    wait_for_sync(lambda: _title_clock(term.capture()) != first, timeout=5)
    term.send_keys("?")
    term.wait_for(r"Ctrl-B d detaches")
    term.send_keys("Escape")
    term.wait_for(rf"e2e-one-x\s+\|[^|]*\| {a2.agent_id}")

    # Kill the session's agent mid-attach: the terminal is restored and a dialog says why.
    number = term.wait_for(r"^\s+(\d)\s+\| e2e-one-x").group(1)
    before = term.stty()
    term.send_keys(number)
    term.wait_for(r"^\$ ?$", timeout=30)
    term.type("echo alive-$((5*5))\r")  # a round trip: the attach is live before the kill
    term.wait_for(r"^alive-25\s*$", timeout=30)
    assert "(N)ew" not in term.capture(), "the attach ended on its own"
    a2.kill()
    term.wait_for(r"Connection Lost", timeout=20)
    term.wait_for(r"The terminal was restored")
    assert term.stty() == before
    term.send_keys("Space")
    term.wait_for(r"agents 0 up, 2 DOWN", timeout=20)

    term.send_keys("q")
    term.wait_for(r"CONSOLE-EXIT rc=0", timeout=20)
    elapsed = time.monotonic() - started
    print(f"console e2e: {elapsed:.1f} s, echo round trip seen in {echo_seconds:.2f} s")
    assert elapsed < 180
