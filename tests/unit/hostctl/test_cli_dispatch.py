"""convocate-host builds only the command its command line names (issue 13: start-up)."""

from __future__ import annotations

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from hostctl.cli import app, app_for

NAMES = sorted(get_command(app).commands)  # type: ignore[attr-defined] # a group: the top-level commands
ENV = {"COLUMNS": "300", "TERM": "dumb"}


@pytest.mark.parametrize("name", NAMES)
def test_each_command_alone_parses_and_helps_as_in_the_whole_app(name: str) -> None:
    """`convocate-host NAME ...` gets an app holding NAME only, whose help is the whole app's."""
    one = app_for([name, "--help"])
    assert sorted(get_command(one).commands) == [name]  # type: ignore[attr-defined]
    runner = CliRunner()
    alone = runner.invoke(one, [name, "--help"], env=ENV)
    whole = runner.invoke(app, [name, "--help"], env=ENV)
    assert alone.exit_code == whole.exit_code == 0
    assert alone.output == whole.output


@pytest.mark.parametrize("argv", [[], ["--help"], ["no-such-command"]])
def test_no_command_help_or_an_unknown_name_get_the_whole_app(argv: list[str]) -> None:
    """The listing and typer's "No such command" come from the whole app."""
    assert app_for(argv) is app


def test_the_whole_app_is_left_as_it_was() -> None:
    """Choosing one command does not change the app other callers (tests, --help) use."""
    before = sorted(get_command(app).commands)  # type: ignore[attr-defined]
    app_for(["agents", "--json"])
    assert sorted(get_command(app).commands) == before  # type: ignore[attr-defined]
    assert len(before) > 1
