"""Every help text of the three commands prints as written, brackets included."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from agent.main import app as agent_app
from hostctl.cli import app as host_app
from shell.main import app as shell_app


def _commands(cmd: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    out = [(path, cmd)]
    if hasattr(cmd, "commands"):  # a group (typer vendors click; only typer is imported)
        for name, sub in cmd.commands.items():
            out += _commands(sub, (*path, name))
    return out


@pytest.mark.parametrize("app", [agent_app, shell_app, host_app], ids=["agent", "shell", "host"])
def test_help_texts_keep_brackets(app: typer.Typer) -> None:
    """Each bracketed word of a command's or option's help appears in its --help output."""
    runner = CliRunner()
    checked = 0
    for path, cmd in _commands(get_command(app)):
        texts = [cmd.help or ""] + [getattr(p, "help", None) or "" for p in cmd.params]
        words = [w for t in texts for w in t.split() if "[" in w or "]" in w]
        if not words:
            continue
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "300", "TERM": "dumb"})
        assert result.exit_code == 0, result.output
        flat = " ".join(result.output.split())
        for word in words:
            assert word.strip(".,;:") in flat, (path, word)
        checked += 1
    assert app is not agent_app or checked >= 1  # agent install/serve say "[agent]"


def test_agent_install_help_names_the_agent_table() -> None:
    """`convocate-agent install --help` says "TOML file with an [agent] table"."""
    result = CliRunner().invoke(agent_app, ["install", "--help"], env={"COLUMNS": "300"})
    assert "TOML file with an [agent] table" in " ".join(result.output.split())
