"""Log output: JSON under systemd, readable on a terminal, the TUI only to its file."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.logging import configure_logging, get_logger


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    yield
    configure_logging("cli", level="DEBUG", json=False)  # as tests/conftest.py sets it


def test_json_lines_under_systemd(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With JOURNAL_STREAM set, a service logs one JSON object per line with its fields."""
    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    configure_logging("service", level="INFO")
    get_logger("t").info("session started", session="abc")
    logging.getLogger("asyncssh").warning("from the stdlib")
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert lines[0]["event"] == "session started"
    assert lines[0]["session"] == "abc"
    assert lines[0]["level"] == "info"
    assert "timestamp" in lines[0]
    assert lines[1]["event"] == "from the stdlib"
    assert lines[1]["logger"] == "asyncssh"


def test_tui_logs_only_to_its_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The console's logging writes to its file and never to stdout or stderr."""
    log_file = tmp_path / "console.log"
    configure_logging("tui", log_file=log_file)
    get_logger("t").warning("agent unreachable", agent="a1")
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == ""
    record = json.loads(log_file.read_text().splitlines()[-1])
    assert record["event"] == "agent unreachable"
    assert record["agent"] == "a1"


def test_tui_without_file_is_refused() -> None:
    """Asking for TUI logging without a file is a programming error, said plainly."""
    with pytest.raises(ValueError, match="never logs to the screen"):
        configure_logging("tui")
