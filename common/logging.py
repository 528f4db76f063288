"""structlog set-up: JSON lines under systemd, readable lines on a terminal, a file for the TUI.

``configure_logging`` bridges the stdlib loggers of asyncssh, grpc and aiodocker through
structlog so every line has one format. ``merge_contextvars`` comes first, so a server
interceptor can bind ``rpc``/``peer``/``session`` per call (:func:`bind_context`).

This is the one module that imports structlog, and it does so with rich hidden: structlog
imports rich, when it is installed (typer's dependency), for pretty tracebacks on a
terminal, which costs every process about 45 ms of start-up and 5 MiB of memory (issue
13). On a terminal tracebacks are therefore rendered plainly, as Python prints them.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Literal, TextIO

from common.text import safe_display

__all__ = ["Mode", "bind_context", "configure_logging", "escape_strings", "get_logger", "unbind_context"]

_RICH = ("rich", "better_exceptions")  # structlog's optional pretty-printers


def _structlog_without_rich() -> ModuleType:
    """Import structlog while its optional ``import rich`` fails, then put rich back."""
    if "structlog" in sys.modules:
        return sys.modules["structlog"]
    saved = {name: sys.modules.get(name) for name in _RICH}
    for name in _RICH:
        sys.modules[name] = None  # type: ignore[assignment] # None: "import rich" raises ImportError
    try:
        return importlib.import_module("structlog")
    finally:
        for name, module in saved.items():
            if module is None:
                del sys.modules[name]
            else:
                sys.modules[name] = module


if TYPE_CHECKING:
    import structlog
else:
    structlog = _structlog_without_rich()

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
        else structlog.dev.ConsoleRenderer(colors=stream.isatty(),
                                           exception_formatter=structlog.dev.plain_traceback)
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


def bind_context(**values: object) -> None:
    """Add ``values`` to every line this task logs from now on (e.g. ``rpc=...``)."""
    structlog.contextvars.bind_contextvars(**values)


def unbind_context(*keys: str) -> None:
    """Remove ``keys`` bound by :func:`bind_context`."""
    structlog.contextvars.unbind_contextvars(*keys)
