"""How a role was installed, as far as its systemd files go: recorded by the installer, read back.

The role installers (``convocate-agent install``, ``convocate install``) take options
that end up in the unit files (the command's path, the service user, the templates).
Each writes them here, one small root-owned JSON file per role (atomically, with a
format version); the roles' ``units`` commands read it, so ``convocate-host update``
renders a new release's units for the host as it was installed, not with the
defaults. A host installed before the file existed has none: the role derives the
options from its installed unit, or refuses (exit :data:`OPTIONS_UNKNOWN`) and update
leaves the units as they are.

The ``units`` commands print one JSON object (:func:`units_document`): the files by
name under ``/etc/systemd/system``, the ones the installer enables, and of those the
ones it also starts.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path

from common.errors import FailedPreconditionError
from common.paths import atomic_write

__all__ = [
    "FORMAT",
    "OPTIONS_UNKNOWN",
    "exec_start",
    "read_options",
    "unit_setting",
    "units_document",
    "write_options",
]

FORMAT = 1
OPTIONS_UNKNOWN = 3     # a `units` command's exit status: it cannot tell how the role was installed
MAX_BYTES = 64 * 1024


def write_options(path: Path, role: str, options: Mapping[str, str]) -> str:
    """Record ``options`` of ``role`` in ``path`` (0644, this process's owner: root on a host)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"format": FORMAT, "role": role, "options": dict(sorted(options.items()))}
    atomic_write(path, json.dumps(document, indent=2) + "\n", mode=0o644)
    return "done"


def read_options(path: Path, role: str) -> dict[str, str] | None:
    """What :func:`write_options` recorded for ``role`` in ``path``; None if there is no such file.

    Raises:
        FailedPreconditionError: the file is there but is not such a record (named, with why).
    """
    try:
        raw = path.read_bytes()[:MAX_BYTES + 1]
    except FileNotFoundError:
        return None
    except OSError as e:
        raise FailedPreconditionError(f"cannot read {path}: {e.strerror}") from None
    try:
        document = json.loads(raw) if len(raw) <= MAX_BYTES else None
    except ValueError:
        document = None
    if not isinstance(document, dict) or document.get("format") != FORMAT or document.get("role") != role:
        raise FailedPreconditionError(f"{path} is no format-{FORMAT} record of the {role} role's install "
                                      "options: re-run its install to write it again")
    options = document.get("options")
    if not isinstance(options, dict) or not all(isinstance(v, str) for v in options.values()):
        raise FailedPreconditionError(f"{path}: 'options' is no object of texts")
    return dict(options)


def unit_setting(text: str, key: str) -> str | None:
    """The value of the first ``key=`` line of a unit's text (None: there is none)."""
    for line in text.splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name.strip() == key:
            return value.strip()
    return None


def exec_start(text: str) -> list[str]:
    """The first ``ExecStart=``'s words, without systemd's prefixes (``-@:+!``); [] if none or unparsable."""
    value = unit_setting(text, "ExecStart")
    if not value:
        return []
    try:
        words = shlex.split(value.lstrip("-@:+!"))
    except ValueError:
        return []
    return words


def units_document(units: Mapping[str, str], enable: Iterable[str], start: Iterable[str]) -> str:
    """What a ``units`` command prints: the files, those the installer enables, those it also starts."""
    return json.dumps({"units": dict(units), "enable": list(enable), "start": list(start)}, sort_keys=True)
