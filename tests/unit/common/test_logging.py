"""Log output: JSON under systemd, readable on a terminal, the TUI only to its file."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
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


# A command line's logging set up on first use, in a fresh interpreter (structlog not loaded yet).
_ON_FIRST_USE = """
import logging, sys
from common.logging import configure_logging_on_first_use, get_logger
configure_logging_on_first_use("cli", level="WARNING")
log = get_logger("t")
log.info("below the level")
logging.getLogger("asyncssh").info("below its level")
print("structlog after quiet calls:", "structlog" in sys.modules)
{first}
print("structlog after a warning:", "structlog" in sys.modules)
log.warning("second", n=2)
"""


@pytest.mark.parametrize("first", ['log.warning("first", n=1)',
                                   'logging.getLogger("asyncssh").warning("first")'])
def test_command_line_logging_loads_structlog_only_to_log(first: str) -> None:
    """Calls below the level load nothing; the first that logs (ours or a library's) sets structlog up."""
    done = subprocess.run([sys.executable, "-c", _ON_FIRST_USE.format(first=first)], capture_output=True,
                          text=True, timeout=60, check=True, env={**os.environ, "CONVOCATE_LOG_LEVEL": ""})
    assert done.stdout.splitlines() == ["structlog after quiet calls: False",
                                        "structlog after a warning: True"]
    lines = [json.loads(x) for x in done.stderr.splitlines()]
    assert [(x["event"], x["level"]) for x in lines] == [("first", "warning"), ("second", "warning")]
    assert lines[1]["n"] == 2
