"""structlog set-up: JSON lines under systemd, readable lines on a terminal, a file for the TUI.

``configure_logging`` bridges the stdlib loggers of asyncssh, grpc and aiodocker through
structlog so every line has one format. ``merge_contextvars`` comes first, so a server
interceptor can bind ``rpc``/``peer``/``session`` per call (:func:`bind_context`).

This is the one module that imports structlog, and it does so with rich hidden: structlog
imports rich, when it is installed (typer's dependency), for pretty tracebacks on a
terminal, which costs every process about 45 ms of start-up and 5 MiB of memory (issue
13). On a terminal tracebacks are therefore rendered plainly, as Python prints them.

structlog itself (with the asyncio it imports) is loaded when first needed, not with this
module: a command line calls :func:`configure_logging_on_first_use`, and a command that
never logs nor loads a module that logs never pays for it.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Literal, TextIO, cast

from common.text import safe_display

__all__ = [
    "Mode", "bind_context", "configure_logging", "configure_logging_on_first_use", "escape_strings",
    "get_logger", "unbind_context",
]

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
_pending: tuple[Mode, str | None] | None = None   # configure_logging_on_first_use's arguments


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
    global _log_stream, _pending  # noqa: PLW0603 - this process's one logging set-up
    _pending = None
    sl = _structlog_without_rich()
    numeric = _numeric_level(level)
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
        sl.contextvars.merge_contextvars,
        sl.stdlib.add_log_level,
        sl.stdlib.add_logger_name,
        sl.processors.TimeStamper(fmt="iso", utc=True),
        sl.processors.StackInfoRenderer(),
    ]
    renderer: structlog.types.Processor = (
        sl.processors.JSONRenderer()
        if use_json
        else sl.dev.ConsoleRenderer(colors=stream.isatty(), exception_formatter=sl.dev.plain_traceback)
    )
    sl.configure(
        processors=[*shared, sl.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=sl.stdlib.LoggerFactory(),
        wrapper_class=sl.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = sl.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            sl.stdlib.ProcessorFormatter.remove_processors_meta,
            sl.processors.format_exc_info,
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
    _set_levels(numeric)


def _numeric_level(level: str | None) -> int:
    numeric = logging.getLevelName((level or os.environ.get("CONVOCATE_LOG_LEVEL") or "INFO").upper())
    return numeric if isinstance(numeric, int) else logging.INFO


def _set_levels(numeric: int) -> None:
    logging.getLogger().setLevel(numeric)
    # Chatty libraries: keep their warnings, drop their per-packet info.
    for noisy in ("asyncssh", "aiohttp", "grpc"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))


class _ConfigureOnFirstRecord(logging.Handler):
    """The root logger's handler until a stdlib logger first emits: configures, then passes it on."""

    def emit(self, record: logging.LogRecord) -> None:
        _configure_pending()
        for handler in logging.getLogger().handlers:
            if handler is not self and record.levelno >= handler.level:
                handler.handle(record)


def configure_logging_on_first_use(mode: Mode = "cli", *, level: str | None = None) -> None:
    """:func:`configure_logging` (``mode``, ``level``), done when first needed.

    That is, when a logger from :func:`get_logger` or a stdlib logger (asyncssh, grpc) is
    first called at ``level`` or above. Levels apply at once; a command that logs nothing
    at its level never loads structlog.
    """
    global _pending  # noqa: PLW0603 - this process's one logging set-up
    _pending = (mode, level)
    logging.getLogger().handlers[:] = [_ConfigureOnFirstRecord()]
    _set_levels(_numeric_level(level))


def _configure_pending() -> None:
    if _pending is not None:
        mode, level = _pending
        configure_logging(mode, level=level)


_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "warn": logging.WARNING,
           "error": logging.ERROR, "exception": logging.ERROR, "critical": logging.CRITICAL,
           "fatal": logging.CRITICAL}


def _dropped(*_args: object, **_kwargs: object) -> None:
    """A log call below the logger's level."""


class _LoggerOnFirstUse:
    """What :func:`get_logger` returns while logging waits for its first use: a call at a level
    the stdlib logger drops is dropped here; anything else loads structlog and goes to the
    real logger (structlog's own filtering goes through the same stdlib logger)."""

    __slots__ = ("_name", "_real")

    def __init__(self, name: str) -> None:
        self._name = name
        self._real: structlog.stdlib.BoundLogger | None = None

    def __getattr__(self, attr: str) -> object:
        level = _LEVELS.get(attr)
        if level is not None and not logging.getLogger(self._name).isEnabledFor(level):
            return _dropped
        if self._real is None:
            _configure_pending()
            self._real = _structlog_without_rich().stdlib.get_logger(self._name)
        return getattr(self._real, attr)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """Return a structlog logger named ``name``.

    While :func:`configure_logging_on_first_use` waits, a stand-in that loads structlog
    only for a call that logs.
    """
    if _pending is not None:
        return cast("structlog.stdlib.BoundLogger", _LoggerOnFirstUse(name))
    logger: structlog.stdlib.BoundLogger = _structlog_without_rich().stdlib.get_logger(name)
    return logger


def bind_context(**values: object) -> None:
    """Add ``values`` to every line this task logs from now on (e.g. ``rpc=...``)."""
    _structlog_without_rich().contextvars.bind_contextvars(**values)


def unbind_context(*keys: str) -> None:
    """Remove ``keys`` bound by :func:`bind_context`."""
    _structlog_without_rich().contextvars.unbind_contextvars(*keys)
