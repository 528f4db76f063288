"""structlog set-up: JSON lines under systemd, readable lines on a terminal, a file for the TUI.

``configure_logging`` bridges the stdlib loggers of asyncssh, grpc and aiodocker through
structlog so every line has one format. ``merge_contextvars`` comes first, so a server
interceptor can bind ``rpc``/``peer``/``session`` per call.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Literal, TextIO

import structlog

from common.text import safe_display

__all__ = ["Mode", "configure_logging", "escape_strings", "get_logger"]

Mode = Literal["service", "cli", "tui"]


def _under_systemd() -> bool:
    return bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))


_MULTILINE_KEYS = frozenset({"exception", "stack"})  # our own tracebacks keep their lines


def escape_strings(
    _logger: object, _method: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    """Escape control and bidi characters in every string value (the console renderer prints raw).

    JSON lines need no help: the JSON renderer escapes them itself.
    """
    for key, value in event_dict.items():
        if isinstance(value, str) and key not in _MULTILINE_KEYS:
            event_dict[key] = safe_display(value, limit=1 << 16)
    return event_dict


_log_stream: TextIO | None = None  # a log file configure_logging opened (it closes it)


def configure_logging(
    mode: Mode = "cli",
    *,
    level: str | None = None,
    log_file: Path | None = None,
    json: bool | None = None,
) -> None:
    """Configure structlog and the stdlib bridge once per process.

    Args:
        mode: ``service`` (a daemon: stdout), ``cli`` (stderr), ``tui`` (a file only,
            never the screen).
        level: log level name; defaults to ``$CONVOCATE_LOG_LEVEL`` or INFO.
        log_file: where ``tui`` mode writes (required there), optional elsewhere.
        json: force JSON (True) or console (False); default: JSON when not on a tty or
            under systemd.
    """
    global _log_stream  # noqa: PLW0603 - the one file this process logs to, closed on reconfiguring
    level_name = (level or os.environ.get("CONVOCATE_LOG_LEVEL") or "INFO").upper()
    numeric = logging.getLevelName(level_name)
    if not isinstance(numeric, int):
        numeric = logging.INFO
    if mode == "tui":
        if log_file is None:
            msg = "tui logging needs a log file: the console never logs to the screen"
            raise ValueError(msg)
        log_file.parent.mkdir(parents=True, exist_ok=True)
        stream: TextIO = log_file.open("a", buffering=1, encoding="utf-8")
        use_json = True if json is None else json
    else:
        stream = sys.stdout if mode == "service" else sys.stderr
        if log_file is not None:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            stream = log_file.open("a", buffering=1, encoding="utf-8")
        use_json = (not stream.isatty() or _under_systemd()) if json is None else json

    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            *([] if use_json else [escape_strings]),
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    if _log_stream is not None and _log_stream is not stream:
        _log_stream.close()
    _log_stream = stream if stream not in (sys.stdout, sys.stderr) else None
    root.setLevel(numeric)
    # Chatty libraries: keep their warnings, drop their per-packet info.
    for noisy in ("asyncssh", "aiohttp", "grpc"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """Return a structlog logger named ``name``."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
