"""The CLI settings the agent writes into a session home: merged, never overwriting, never following links."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.cli_settings import (
    HOOK_COMMAND,
    HOOK_EVENTS,
    HOOK_SPOOL,
    SETTINGS_FILE,
    CliSettingsError,
    merge_settings,
    write_cli_settings,
)

OPERATOR: dict[str, Any] = {"model": "opus", "permissions": {"allow": ["Bash(git status)"]},
            "hooks": {"Stop": [{"hooks": [{"type": "command", "command": "notify-send done"}]}]}}


def _ours(settings: dict[str, object], event: str) -> list[str]:
    hooks = settings["hooks"]
    assert isinstance(hooks, dict)
    return [h["command"] for g in hooks[event] for h in g["hooks"] if HOOK_SPOOL in h["command"]]


def test_merge_keeps_every_operator_and_cli_key_and_adds_our_hooks_once() -> None:
    """Operator keys win and stay, keys the CLI saved stay, lists are joined, our hooks appear once."""
    saved_by_cli = {"model": "haiku", "permissions": {"allow": ["Read"]}, "theme": "dark"}
    merged = merge_settings(saved_by_cli, OPERATOR)
    assert merged["model"] == "opus"
    assert merged["theme"] == "dark"
    assert merged["permissions"] == {"allow": ["Read", "Bash(git status)"]}
    assert merged["hooks"]["Stop"][0]["hooks"][0]["command"] == "notify-send done"
    for event in HOOK_EVENTS:
        assert _ours(merged, event) == [HOOK_COMMAND]
    again = merge_settings(merged, OPERATOR)  # every start merges again: nothing doubles
    assert again == merged
    assert OPERATOR["hooks"]["Stop"] == [{"hooks": [{"type": "command", "command": "notify-send done"}]}]


def test_written_file_replaces_the_shared_link_and_leaves_the_shared_file_alone(tmp_path: Path) -> None:
    """The home's link to the shared settings.local.json becomes a file; the shared file is untouched."""
    shared, home = tmp_path / "shared", tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    shared.mkdir()
    (shared / SETTINGS_FILE).write_text(json.dumps(OPERATOR))
    (home / ".claude" / SETTINGS_FILE).symlink_to(shared / SETTINGS_FILE)
    before = (shared / SETTINGS_FILE).read_bytes()
    path = write_cli_settings(home, shared)
    assert not path.is_symlink()
    written = json.loads(path.read_text())
    assert written["model"] == "opus"
    assert _ours(written, "Notification") == [HOOK_COMMAND]
    assert (shared / SETTINGS_FILE).read_bytes() == before
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_invalid_file_is_set_aside_not_lost(tmp_path: Path) -> None:
    """A settings file that is not JSON is renamed to .invalid and a good one written."""
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    (home / ".claude" / SETTINGS_FILE).write_text("{ not json")
    write_cli_settings(home, tmp_path / "no-shared")
    assert (home / ".claude" / f"{SETTINGS_FILE}.invalid").read_text() == "{ not json"
    assert _ours(json.loads((home / ".claude" / SETTINGS_FILE).read_text()), "Stop") == [HOOK_COMMAND]


def test_a_planted_claude_link_is_never_followed(tmp_path: Path) -> None:
    """A container that makes .claude a link to somewhere else gets an error, and nothing is written there."""
    home, elsewhere = tmp_path / "home", tmp_path / "agent-only"
    home.mkdir()
    elsewhere.mkdir()
    (home / ".claude").symlink_to(elsewhere)
    with pytest.raises(CliSettingsError, match=r"\.claude"):
        write_cli_settings(home, tmp_path / "no-shared")
    assert not list(elsewhere.iterdir())
