"""Pre-v2 sessions left on the shell host: listed as orphans, deletable, never changed.

v2 moved sessions to the agents. A ``<orphans_root>/<uuid>/session.json`` on the shell
host is a v1 session that was not migrated yet: the console lists it with status ``O``;
every write is refused with the command that migrates it; delete removes the directory.
"""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import datetime
from pathlib import Path

from common.errors import FailedPreconditionError, NotFoundError
from common.logging import get_logger
from shell.fleet.model import SessionRow

__all__ = ["delete_orphan", "orphan_refusal", "scan_orphans"]

log = get_logger(__name__)


def _is_uuid(name: str) -> bool:
    try:
        return str(uuid.UUID(name)) == name
    except ValueError:
        return False


def _time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def scan_orphans(root: Path | None) -> list[SessionRow]:
    """Every ``<root>/<uuid>/session.json`` as an orphan row (unreadable ones are logged).

    Args:
        root: the pre-v2 sessions directory (``/home/claude``); None or missing = none.

    Returns:
        Orphan rows (``agent_id`` empty, ``orphan`` True), sorted by name.
    """
    if root is None or not root.is_dir():
        return []
    rows: list[SessionRow] = []
    for record in root.glob("*/session.json"):
        if not _is_uuid(record.parent.name):
            continue
        try:
            data = json.loads(record.read_text())
            if not isinstance(data, dict):
                raise TypeError("not an object")
        except (OSError, ValueError, TypeError) as e:
            log.warning("orphan session unreadable", path=str(record), error=str(e))
            continue
        port = data.get("port", 0)
        rows.append(SessionRow(
            id=record.parent.name, name=str(data.get("name", "")), agent_id="",
            created_at=_time(data.get("created_at")), last_accessed=_time(data.get("last_accessed")),
            port=port if isinstance(port, int) else 0, protocol=str(data.get("protocol") or "tcp"),
            dns_name=str(data.get("dns_name", "")), orphan=True,
        ))
    return sorted(rows, key=lambda r: (r.name, r.id))


def orphan_refusal(row: SessionRow, operation: str) -> FailedPreconditionError:
    """The error for any write to an orphan, with the command that migrates it."""
    return FailedPreconditionError(
        f'cannot {operation} session "{row.name}" ({row.id}): it is a pre-v2 local orphan on the '
        "shell host; migrate it to an agent first: convocate-host migrate-session --agent "
        f"<agent-id> --session {row.id} (delete is still allowed)"
    )


def delete_orphan(root: Path, session_id: str) -> None:
    """Remove an orphan's directory.

    Raises:
        NotFoundError: there is no such orphan under ``root``.
    """
    directory = root / session_id
    if not _is_uuid(session_id) or not (directory / "session.json").is_file():
        raise NotFoundError(f'session "{session_id}" does not exist')
    shutil.rmtree(directory)
    log.info("orphan session deleted", session=session_id, path=str(directory))
