"""Files on a host behind a :class:`~hostctl.remote.Runner`: read, write atomically, ensure.

Writes go through ``mktemp`` in the target directory and a rename (never a predictable
temp name, never half a file); :func:`ensure_file` writes only when the content, mode
or owner differ, so every provisioning step can say whether it changed anything.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from common.errors import ConvocateError
from hostctl.remote import Runner

__all__ = ["ensure_file", "read_file", "run_checked", "write_file"]

_WRITE = (
    'set -e; umask 077; mkdir -p "$(dirname "$0")"; t=$(mktemp "$0.XXXXXX"); trap \'rm -f "$t"\' EXIT; '
    'cat > "$t"; chmod "$1" "$t"; if [ -n "$2" ]; then chown "$2": "$t"; fi; mv -fT "$t" "$0"'
)
# Prints "<mode> <owner>" then the content, or exits 3 when there is no regular file.
_READ = '[ -f "$0" ] && [ ! -L "$0" ] || exit 3; stat -c "%a %U" "$0"; cat "$0"'
_ABSENT = 3


async def run_checked(runner: Runner, argv: list[str], what: str, *, root: bool = True,
                      timeout: float = 600) -> str:
    """Run ``argv``; return its stdout (stripped); raise naming ``what`` and the host if it fails."""
    result = await runner.run(argv, root=root, timeout=timeout)
    if result.status != 0:
        detail = (result.stderr or result.stdout).decode(errors="replace").strip().splitlines()[-3:]
        raise ConvocateError(f"{what} on {runner.name} failed (exit {result.status}): {' '.join(detail)}")
    return result.text()


async def write_file(runner: Runner, path: Path, data: bytes | str, mode: str = "644",
                     owner: str = "") -> None:
    """Write ``path`` atomically with ``mode`` (octal text) and ``owner`` ("" = root's)."""
    raw = data.encode() if isinstance(data, str) else data

    async def body() -> AsyncIterator[bytes]:
        yield raw

    result = await runner.run(["sh", "-c", _WRITE, str(path), mode, owner], root=True, stdin=body())
    if result.status != 0:
        raise ConvocateError(f"writing {path} on {runner.name} failed: "
                             f"{result.stderr.decode(errors='replace').strip()}")


async def read_file(runner: Runner, path: Path) -> tuple[str, str, bytes] | None:
    """``(mode, owner, content)`` of the regular file ``path``, or None if there is none."""
    result = await runner.run(["sh", "-c", _READ, str(path)], root=True)
    if result.status == _ABSENT:
        return None
    if result.status != 0:
        raise ConvocateError(f"reading {path} on {runner.name} failed: "
                             f"{result.stderr.decode(errors='replace').strip()}")
    head, _, content = result.stdout.partition(b"\n")
    mode, _, user = head.decode().partition(" ")
    return mode, user, content


async def ensure_file(runner: Runner, path: Path, data: bytes | str, mode: str = "644",
                      owner: str = "", *, dry_run: bool = False) -> bool:
    """Make ``path`` hold ``data`` with ``mode``/``owner``; True if it had to change (or would)."""
    raw = data.encode() if isinstance(data, str) else data
    current = await read_file(runner, path)
    if current is not None:
        cur_mode, cur_owner, content = current
        if content == raw and cur_mode == mode.lstrip("0") and (not owner or cur_owner == owner):
            return False
    if not dry_run:
        await write_file(runner, path, raw, mode, owner)
    return True
