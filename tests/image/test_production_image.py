"""The real Claude CLI in a session: the production image, a real agent, the console in tmux.

The CLI has no network to its service here; its welcome screen is enough to prove the path:
image, entrypoint, tmux, attach, resize, detach, kill and restart.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.install import SKEL_README
from agent.layout_migration import HOME as HOME_DIR
from agent.production_image import BuiltImage
from agent.sessions import container_name
from tests.image.conftest import ProdFleet
from tests.support.production import LOGO, REPOSITORY, SHARED_SETTINGS
from tests.support.tmux import TmuxTerminal
from tests.support.waiting import wait_for_sync

pytestmark = [pytest.mark.production_image, pytest.mark.docker, pytest.mark.tmux,
              pytest.mark.timeout(900)]

CLI_UID = 1337
HOME = "/home/claude"


def _exec(ctr: str, script: str, user: str = "root") -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "exec", "-u", user, ctr, "sh", "-c", script],
                          capture_output=True, text=True, timeout=60, check=False)


def _rules(screen: str) -> list[str]:
    """The full-row horizontal rules around the CLI's prompt."""
    return [line for line in screen.splitlines() if len(line) > 40 and set(line) == {"─"}]


def assert_clean_screen(screen: str, width: int, cli_version: str) -> None:
    """The CLI's start screen drawn for ``width`` columns: header and status text once each,
    the prompt's rules exactly as wide as the terminal, any box whole, no escape residue."""
    for text in (LOGO, f"Claude Code v{cli_version}", HOME, "Missing API key"):
        assert screen.count(text) == 1, (text, screen)
    assert [len(rule) for rule in _rules(screen)] == [width, width], screen
    lines = screen.splitlines()
    for line in lines:
        assert len(line) <= width, screen
        assert not re.search(r"\x1b|\ufffd|\[\d+;\d+[A-Za-z]", line), f"escape residue: {line!r}"
    tops = [i for i, line in enumerate(lines) if "╭" in line]
    for top in tops:           # the full welcome box, where this version draws one
        bottom = next(i for i in range(top, len(lines)) if "╰" in lines[i])
        left, right = lines[top].index("╭"), lines[top].index("╮")
        assert (lines[bottom].index("╰"), lines[bottom].index("╯")) == (left, right), screen
        for row in lines[top + 1:bottom]:
            assert (row[left], row[right]) == ("│", "│"), screen


def _wait_settled(term: TmuxTerminal, width: int) -> str:
    """The screen once the prompt's rules span ``width`` and two captures in a row are equal."""
    last = [""]

    def check() -> str:
        screen = term.capture()
        rules = _rules(screen)
        stable = screen == last[0] and LOGO in screen and bool(rules) and all(
            len(rule) == width for rule in rules)
        last[0] = screen
        return screen if stable else ""

    return wait_for_sync(check, timeout=30, interval=0.3)


def _cli_process(ctr: str) -> tuple[int, str, str]:
    """(uid, HOME, cwd) of the process in the session's tmux pane: the CLI."""
    pane = _exec(ctr, "tmux display-message -p -t claude '#{pane_pid}'", user="claude")
    pid = pane.stdout.strip()
    assert pid.isdigit(), (pane.stdout, pane.stderr)
    out = _exec(ctr, f'stat -c %u /proc/{pid}; tr "\\0" "\\n" < /proc/{pid}/environ | grep "^HOME="; '
                     f"readlink /proc/{pid}/cwd", user="claude")   # its own uid may read its environ
    parts = out.stdout.split()
    assert len(parts) == 3, (out.stdout, out.stderr)
    return int(parts[0]), parts[1].removeprefix("HOME="), parts[2]


def test_production_image_cli_in_console(
    production_image: BuiltImage, prod_fleet: ProdFleet, open_console: Callable[[], TmuxTerminal]
) -> None:
    """Create, attach at 110x30, resize to 100x26, detach, re-attach, kill, restart: the CLI each time."""
    agent = prod_fleet.agent
    term = open_console()
    term.wait_for(r"agents 1 up", timeout=30)
    term.send_keys("n")
    term.wait_for(rf"Create on agent {agent.agent_id}")
    term.type("cli-one")
    term.send_keys("Enter")
    term.wait_for(r"cli-one\s+\|.*\| R\s*$", timeout=60)
    term.wait_gone(r"Create on agent")
    session_id = next(p.name for p in agent.sessions_root.iterdir() if (p / "session.json").exists())
    ctr = container_name(session_id)

    # Attach at 110x30: the CLI's welcome screen, whole.
    term.send_keys("Enter")
    term.wait_for(LOGO, timeout=60)
    big = _wait_settled(term, 110)
    assert_clean_screen(big, 110, production_image.cli_version)

    # Resize to 100x26: redrawn to the new width, still whole.
    term.resize(100, 26)
    small = _wait_settled(term, 100)
    assert_clean_screen(small, 100, production_image.cli_version)

    # Detach and re-attach: the same screen again.
    term.send_keys("C-b", "d")
    term.wait_for(r'Detached from "cli-one"', timeout=20)
    term.send_keys("Enter")
    term.wait_for(LOGO, timeout=30)
    assert_clean_screen(_wait_settled(term, 100), 100, production_image.cli_version)
    term.send_keys("C-b", "d")
    term.wait_for(r'Detached from "cli-one"', timeout=20)

    # Inside: uid 1337, home where the session directory is, skel's CLAUDE.md, shared settings read-only.
    uid, home, cwd = _cli_process(ctr)
    assert (uid, home, cwd) == (CLI_UID, HOME, HOME)
    (agent.sessions_root / session_id / HOME_DIR / "host-marker").write_text("from the host\n")
    seen = _exec(ctr, f"cat {HOME}/host-marker {HOME}/CLAUDE.md {HOME}/.claude/settings.json",
                 user="claude")
    assert seen.returncode == 0, seen.stderr
    assert seen.stdout == "from the host\n" + SKEL_README + SHARED_SETTINGS
    assert _exec(ctr, f"echo x >> {HOME}/.claude/settings.json", user="claude").returncode != 0
    mounts = _exec(ctr, "cat /proc/mounts").stdout.splitlines()
    shared = [m.split() for m in mounts if m.split()[1:2] == [f"{HOME}/.claude-shared"]]
    assert shared, mounts
    assert "ro" in shared[0][3].split(","), shared
    for target in (f"{HOME}/.claude-shared/settings.json", f"{HOME}/.claude-shared/new-file"):
        as_root = _exec(ctr, f"echo x >> {target}")   # not even root, owner of these files
        assert "Read-only file system" in as_root.stderr, (target, as_root)
    assert _exec(ctr, "command -v sudo || echo no-sudo", user="claude").stdout.strip() == "no-sudo"

    # Kill, restart: the CLI is back.
    term.send_keys("k")
    term.wait_for(r"Kill session")
    term.send_keys("y")
    term.wait_for(r"Kill initiated", timeout=30)
    term.send_keys("Enter")
    term.wait_for(r"cli-one\s+\|.*\| -\s*$", timeout=60)
    term.send_keys("r")
    term.wait_for(r"Restart session")
    term.send_keys("y")
    term.wait_for(r"Restarting session", timeout=30)
    term.send_keys("Enter")
    term.wait_for(r"cli-one\s+\|.*\| R\s*$", timeout=60)
    term.send_keys("Enter")
    term.wait_for(LOGO, timeout=60)
    assert_clean_screen(_wait_settled(term, 100), 100, production_image.cli_version)
    assert _cli_process(ctr)[0] == CLI_UID
    term.send_keys("C-b", "d")
    term.wait_for(r'Detached from "cli-one"', timeout=20)


def test_build_image_command_on_a_named_base(production_image: BuiltImage, tmp_path: Path) -> None:
    """``convocate-agent build-image --production --base IMAGE``: the same layers, from the cache;
    the tag on stdout, size and build time on stderr."""
    (tmp_path / "empty.toml").write_text("")
    env = {**os.environ, "CONVOCATE_CONFIG": str(tmp_path / "empty.toml")}
    argv = [sys.executable, "-m", "agent", "build-image", "--production", "--repository", REPOSITORY,
            "--base", production_image.base]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False, env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == production_image.tags[0]
    assert re.search(rf"{re.escape(production_image.tags[0])}, .*: \d+ MB, built in [\d.]+ s", run.stderr), (
        run.stderr)

    def image_id(tag: str) -> str:
        return subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", tag], capture_output=True,
                              text=True, timeout=60, check=True).stdout.strip()

    assert image_id(production_image.tags[0]) == image_id(production_image.tags[1])
