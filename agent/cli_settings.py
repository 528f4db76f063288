"""What the agent writes for the CLI: its hooks, in the session's ``settings.local.json``.

Where: the CLI runs with its working directory at the session home, so
``~/.claude/settings.local.json`` is the file the CLI documents as the *local project*
settings. It is read after the user and project settings (``~/.claude/settings.json``,
which stays a link to the operator's shared, read-only settings) and the CLI merges the
scopes: a scalar key set in a higher scope wins, and hook lists of every scope run. So
the operator's hooks keep running and ours are added; nothing shared is written.

The file used to be a link to the shared ``settings.local.json`` too. At every start the
agent replaces it with a regular file that merges, in this order: what the file holds
now (keys the CLI itself saved there, e.g. "always allow" rules), then the operator's
shared ``settings.local.json`` on top (the operator's keys win and are never dropped;
lists are joined), then our hook entries (earlier entries of ours are replaced, never
duplicated). A file there that is not valid JSON is set aside as ``.invalid``, not lost.

The home is the container's, so everything in it is untrusted: ``.claude`` and the file
are opened relative to directory descriptors without following links, read bounded, and
written atomically (temp file, fsync, rename) inside that directory.

The hook itself is a POSIX sh one-liner (:data:`HOOK_COMMAND`, no quotes, so any JSON
reader of the file sees it verbatim). It copies the hook's JSON stdin (at most
:data:`HOOK_MAX_BYTES`) to a fresh file in the session's spool directory, mounted at
:data:`HOOK_SPOOL` (see :mod:`agent.hook_spool` for why a spool), renames it into place,
and exits 0 at once: it never waits for the agent, so a stopped or slow agent cannot
block or fail the CLI. With :data:`HOOK_BACKLOG` events already waiting it drops the new
one (the agent is not reading; the state is corrected by the next event it does read).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from common.logging import get_logger

__all__ = [
    "HOOK_BACKLOG",
    "HOOK_COMMAND",
    "HOOK_EVENTS",
    "HOOK_MAX_BYTES",
    "HOOK_SPOOL",
    "SETTINGS_FILE",
    "CliSettingsError",
    "hooks_config",
    "merge_settings",
    "write_cli_settings",
]

log = get_logger(__name__)
SETTINGS_FILE = "settings.local.json"
HOOK_SPOOL = "/run/convocate-hooks"     # the session's spool directory inside the container
HOOK_MAX_BYTES = 16384
HOOK_BACKLOG = 64
HOOK_TIMEOUT = 5                        # seconds the CLI gives the hook (it returns at once)
# The events the agent turns into the session's activity (see agent.activity).
HOOK_EVENTS = ("SessionStart", "UserPromptSubmit", "PostToolUse", "Notification", "PermissionRequest",
               "Stop", "SessionEnd")
HOOK_COMMAND = (
    f"d={HOOK_SPOOL}; f=$d/.$$; "
    f"if [ $(ls $d 2>/dev/null | wc -l) -lt {HOOK_BACKLOG} ] && head -c {HOOK_MAX_BYTES} >$f 2>/dev/null; "
    "then mv -f $f $d/$(date +%s)-$$.json; else cat >/dev/null; fi 2>/dev/null; rm -f $f; exit 0"
)
MAX_SETTINGS_BYTES = 256 * 1024
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class CliSettingsError(Exception):
    """The settings could not be written (the message says why); the session starts without hooks."""


def hooks_config() -> dict[str, list[dict[str, Any]]]:
    """Our ``hooks`` entries: one command hook per event in :data:`HOOK_EVENTS`."""
    hook = {"type": "command", "command": HOOK_COMMAND, "timeout": HOOK_TIMEOUT}
    return {event: [{"hooks": [dict(hook)]}] for event in HOOK_EVENTS}


def _ours(group: Any) -> bool:
    """A hook group that only holds hooks of ours (their command names the spool)."""
    hooks = group.get("hooks") if isinstance(group, dict) else None
    return isinstance(hooks, list) and bool(hooks) and all(
        isinstance(h, dict) and HOOK_SPOOL in str(h.get("command", "")) for h in hooks)


def _merge(base: Any, top: Any) -> Any:
    """``top`` over ``base``: objects merged key by key, lists joined (no duplicates), else ``top``."""
    if isinstance(base, dict) and isinstance(top, dict):
        out = dict(base)
        for key, value in top.items():
            out[key] = _merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(top, list):
        out_list = list(base)
        out_list += [copy.deepcopy(v) for v in top if v not in base]
        return out_list
    return copy.deepcopy(top)


def merge_settings(current: dict[str, Any] | None, operator: dict[str, Any] | None) -> dict[str, Any]:
    """The settings to write: ``current`` (what the file holds), the operator's over it, then our hooks.

    Earlier hook entries of ours are removed first, so a changed command replaces them.
    """
    base = copy.deepcopy(current) if current else {}
    hooks = base.get("hooks")
    if isinstance(hooks, dict):
        for event in list(hooks):
            groups = hooks[event]
            if isinstance(groups, list):
                hooks[event] = [g for g in groups if not _ours(g)]
                if not hooks[event]:
                    del hooks[event]
    merged: dict[str, Any] = _merge(base, operator or {})
    if not isinstance(merged.get("hooks"), dict):
        merged["hooks"] = {}
    for event, groups in hooks_config().items():
        mine = merged["hooks"].get(event)
        merged["hooks"][event] = ([*mine] if isinstance(mine, list) else []) + groups
    return merged


def _read_json(dir_fd: int, name: str) -> tuple[dict[str, Any] | None, str]:
    """The JSON object in ``name`` (no link followed, bounded); (None, why) when there is none."""
    try:
        fd = os.open(name, _READ, dir_fd=dir_fd)
    except FileNotFoundError:
        return None, ""
    except OSError as e:   # a link (ELOOP), a FIFO without writer, ...
        return None, f"cannot be opened safely: {e.strerror}"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None, "not a regular file"
        data = os.read(fd, MAX_SETTINGS_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_SETTINGS_BYTES:
        return None, f"larger than {MAX_SETTINGS_BYTES} bytes"
    try:
        value = json.loads(data.decode())
    except (UnicodeDecodeError, ValueError) as e:
        return None, f"not valid JSON: {e}"
    if not isinstance(value, dict):
        return None, "not a JSON object"
    return value, ""


def _operator_settings(shared_dir: Path) -> dict[str, Any] | None:
    try:
        fd = os.open(shared_dir, _DIR & ~os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        value, why = _read_json(fd, SETTINGS_FILE)
    finally:
        os.close(fd)
    if why:
        log.warning("the shared CLI settings are not merged into sessions",
                    file=str(shared_dir / SETTINGS_FILE), reason=why)
    return value


def write_cli_settings(home: Path, shared_dir: Path, owner: tuple[int, int] | None = None) -> Path:
    """Write ``<home>/.claude/settings.local.json`` with our hooks (see the module docstring).

    Args:
        home: the session home on the host.
        shared_dir: the operator's shared CLI settings directory on the host.
        owner: (uid, gid) to give a created ``.claude`` and the file; None keeps the agent's.

    Returns:
        The path written.

    Raises:
        CliSettingsError: the home or its ``.claude`` cannot be used safely.
    """
    operator = _operator_settings(shared_dir)
    try:
        home_fd = os.open(home, _DIR)
    except OSError as e:
        raise CliSettingsError(f"session home {home} cannot be opened: {e.strerror}") from None
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(".claude", 0o700, dir_fd=home_fd)
            if owner is not None:
                os.chown(".claude", *owner, dir_fd=home_fd, follow_symlinks=False)
        try:
            cfd = os.open(".claude", _DIR, dir_fd=home_fd)
        except OSError as e:
            raise CliSettingsError(
                f"{home}/.claude is not a directory the agent can use: {e.strerror}") from None
    finally:
        os.close(home_fd)
    try:
        _write(cfd, operator, owner)
    finally:
        os.close(cfd)
    return home / ".claude" / SETTINGS_FILE


def _write(cfd: int, operator: dict[str, Any] | None, owner: tuple[int, int] | None) -> None:
    try:
        st = os.stat(SETTINGS_FILE, dir_fd=cfd, follow_symlinks=False)
    except FileNotFoundError:
        st = None
    current: dict[str, Any] | None = None
    if st is not None and stat.S_ISREG(st.st_mode):
        current, why = _read_json(cfd, SETTINGS_FILE)
        if why:
            aside = f"{SETTINGS_FILE}.invalid"
            os.replace(SETTINGS_FILE, aside, src_dir_fd=cfd, dst_dir_fd=cfd)
            log.warning("CLI settings in a session set aside", file=SETTINGS_FILE, renamed_to=aside,
                        reason=why)
    elif st is not None and stat.S_ISDIR(st.st_mode):
        raise CliSettingsError(f"{SETTINGS_FILE} in the session's .claude is a directory")
    data = (json.dumps(merge_settings(current, operator), indent=2) + "\n").encode()
    tmp = f".{SETTINGS_FILE}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=cfd)
    try:
        if owner is not None:
            os.fchown(fd, *owner)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        os.replace(tmp, SETTINGS_FILE, src_dir_fd=cfd, dst_dir_fd=cfd)  # a link there is replaced
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=cfd)
        raise
    finally:
        os.close(fd)
    os.fsync(cfd)
