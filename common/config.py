"""Configuration: frozen dataclasses loaded from defaults, a TOML file, env and flags.

Precedence, highest first::

    command-line flags  >  environment  >  TOML file  >  defaults

* The TOML file is ``--config PATH``, else ``$CONVOCATE_CONFIG``, else
  ``/etc/convocate/convocate.toml`` if it exists. Each component reads its own table
  (``[agent]``, ``[shell]``, ``[status]``, ``[hostctl]``); keys are the dataclass field
  names.
* Environment variables are ``CONVOCATE_<TABLE>_<FIELD>`` in upper case, for example
  ``CONVOCATE_AGENT_STATE_ROOT=/tmp/a``.
* Flags are passed to :func:`load` as ``overrides``; ``None`` means "not given".

Values are coerced to the field's type (``Path``, ``int``, ``float``, ``bool``,
``str``, ``X | None``); a value that does not coerce is an error naming its source.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from common.defaults import CONFIG_FILE
from common.errors import InvalidArgumentError

__all__ = ["DEFAULT_CONFIG_PATH", "config_path", "load", "read_toml"]

DEFAULT_CONFIG_PATH = CONFIG_FILE
T = TypeVar("T")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def config_path(explicit: Path | str | None = None, env: Mapping[str, str] | None = None) -> Path | None:
    """Return the TOML file to read, or None when there is none."""
    env = os.environ if env is None else env
    if explicit:
        return Path(explicit)
    if env.get("CONVOCATE_CONFIG"):
        return Path(env["CONVOCATE_CONFIG"])
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None


def read_toml(path: Path | None) -> dict[str, Any]:
    """Read ``path`` (an explicitly named missing file is an error)."""
    if path is None:
        return {}
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise InvalidArgumentError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise InvalidArgumentError(f"config file {path} is not valid TOML: {e}") from None


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value == "" and len(args) == 1):
            return None
        return _coerce(value, args[0], where)
    if origin in (tuple, list):
        (item,) = typing.get_args(tp)[:1]
        items = value.split(",") if isinstance(value, str) else list(value)
        out = [_coerce(v.strip() if isinstance(v, str) else v, item, where) for v in items if v != ""]
        return tuple(out) if origin is tuple else out
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            s = str(value).strip().lower()
            if s in _TRUE:
                return True
            if s in _FALSE:
                return False
            raise ValueError(value)
        if tp is Path:
            return Path(str(value)).expanduser()
        if tp in (int, float, str):
            if tp is int and isinstance(value, bool):
                raise ValueError(value)
            return tp(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{where}: {value!r} is not a valid {tp.__name__}") from None
    return value


def load(
    cls: type[T],
    table: str,
    *,
    config_file: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> T:
    """Build ``cls`` (a dataclass) from defaults, the TOML ``[table]``, env and overrides.

    Args:
        cls: the frozen dataclass to build.
        table: the TOML table and env prefix (``agent`` -> ``CONVOCATE_AGENT_*``).
        config_file: explicit TOML path (``--config``).
        env: the environment (defaults to ``os.environ``).
        overrides: flag values; keys are field names, None values are ignored.

    Returns:
        The populated instance.

    Raises:
        InvalidArgumentError: unknown keys in the TOML table, or a value of the wrong type.
    """
    env = os.environ if env is None else env
    path = config_path(config_file, env)
    data = read_toml(path).get(table, {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - names
    if unknown:
        raise InvalidArgumentError(
            f"config file {path}: unknown key(s) in [{table}]: {', '.join(sorted(unknown))}"
        )
    values: dict[str, Any] = {}
    prefix = f"CONVOCATE_{table.upper()}_"
    for name in names:
        tp = hints[name]
        if overrides and overrides.get(name) is not None:
            values[name] = _coerce(overrides[name], tp, f"--{name.replace('_', '-')}")
        elif prefix + name.upper() in env:
            values[name] = _coerce(env[prefix + name.upper()], tp, prefix + name.upper())
        elif name in data:
            values[name] = _coerce(data[name], tp, f"{path} [{table}] {name}")
    return cls(**values)
