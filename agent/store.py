"""Session directories on disk: ``<root>/<uuid>/session.json`` beside ``<root>/<uuid>/home/``.

Only ``home`` is mounted into the session's container; the record and the directory
holding it are the agent's alone (0700), so a container can neither replace its record
nor reach files planted in its home from other host users (security review, findings 2
and 4). Records are still read as untrusted input (:mod:`agent.records`): a record that
is not a regular file, too large, or breaks a rule is renamed to
``session.json.rejected`` and logged, never served; records that claim the same port or
DNS name as an older session are not served either.

Crash safety: a new or cloned session is assembled in ``<root>/.staging-<uuid>`` and
renamed into place only once ``session.json`` is complete; a deletion first renames the
directory to ``<root>/.deleting-<uuid>``; ``session.json`` is replaced atomically (temp
file, fsync, rename). Listing considers only directories named by a UUID with a valid
``session.json``, so a crash at any point leaves the old or the new session, never a
broken one; :meth:`SessionStore.prepare` at start removes leftovers and moves sessions of
the old layout (:mod:`agent.layout_migration`). All methods block (file I/O); the async
callers run them in a thread.

Reads are cheap when nothing changed: a parsed record is kept in memory and served
while its directory and file are unchanged on disk (:mod:`agent.record_cache`), so a
List costs a ``stat`` of each session's directory and record instead of a parse
(:meth:`SessionStore.list_kept`, the one method that does not block beyond that).
"""

from __future__ import annotations

import builtins
import os
import shutil
from pathlib import Path

from agent.home_copy import copy_home
from agent.layout_migration import HOME, is_new_layout, migrate_sessions
from agent.record_cache import RecordCache, stamp_of
from agent.records import (
    RECORD,
    RecordRefusedError,
    format_time,
    parse_time,
    read_record,
    record_from_json,
    record_to_json,
)
from agent.sessions import SessionRecord, is_session_id
from common.errors import NotFoundError, ResourceExhaustedError, UnavailableError
from common.logging import get_logger
from common.paths import atomic_write
from common.session_rules import printable

__all__ = ["DEFAULT_CLONE_MAX_BYTES", "SHARED_LINKS", "SessionStore", "format_time", "parse_time"]

log = get_logger(__name__)
SHARED_LINKS = ("settings.json", "settings.local.json", ".credentials.json", "plugins")
SHARED_TARGET = "/home/claude/.claude-shared"   # where the shared config is mounted in-container
DEFAULT_CLONE_MAX_BYTES = 10 * 1024**3
_STAGING = ".staging-"
_DELETING = ".deleting-"
_REJECTED = f"{RECORD}.rejected"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class SessionStore:
    """The session directories under ``root``.

    Args:
        root: the sessions root.
        skel: the skeleton copied into every new home.
        owner: (uid, gid) the homes are given (the session user's); None keeps the agent's.
        clone_max_bytes: the most file content a clone (or skeleton copy) copies.
    """

    def __init__(self, root: Path, skel: Path, *, owner: tuple[int, int] | None = None,
                 clone_max_bytes: int = DEFAULT_CLONE_MAX_BYTES) -> None:
        self.root = root
        self.skel = skel
        self.owner = owner if owner is not None and owner != (os.geteuid(), os.getegid()) else None
        self.clone_max_bytes = clone_max_bytes
        self._reported: set[tuple[str, str]] = set()
        self._cache = RecordCache()

    def session_dir(self, session_id: str) -> Path:
        """``<root>/<uuid>``: the record and the home (the agent's only)."""
        return self.root / session_id

    def home_dir(self, session_id: str) -> Path:
        """``<root>/<uuid>/home``: what the container mounts as its home."""
        return self.root / session_id / HOME

    # --- start -------------------------------------------------------------------------
    def prepare(self) -> list[str]:
        """At start: remove crash leftovers, then move old-layout sessions; return what changed."""
        changed = self.remove_leftovers()
        changed += [f"migrated {sid}" for sid in migrate_sessions(self.root)]
        return changed

    def remove_leftovers(self) -> list[str]:
        """Remove half-made and half-deleted directories from an earlier crash."""
        removed: list[str] = []
        if not self.root.is_dir():
            return removed
        for entry in self.root.iterdir():
            if entry.name.startswith((_STAGING, _DELETING)) and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry.name)
        return removed

    # --- reads -------------------------------------------------------------------------
    def _refuse(self, session_id: str, reason: str, *, quarantine: bool) -> None:
        """Log a refused record once per reason; rename a bad record out of the way."""
        if quarantine:
            try:
                os.rename(self.session_dir(session_id) / RECORD, self.session_dir(session_id) / _REJECTED)
            except OSError as e:
                reason = f"{reason} (could not set it aside: {e.strerror})"
            else:
                reason = f"{reason}; renamed to {_REJECTED}"
        if (session_id, reason) not in self._reported:
            self._reported.add((session_id, reason))
            log.error("session record refused", session=session_id, reason=printable(reason))

    def _read(self, session_id: str) -> SessionRecord | None:
        """The record of ``session_id``: the kept one while its files are unchanged, else read."""
        stamp = stamp_of(self.session_dir(session_id), RECORD)   # before the read: see agent.record_cache
        kept = self._cache.get(session_id, stamp)
        if kept is not None:
            return kept
        record = self._read_file(session_id)
        self._cache.put(session_id, stamp, record)
        return record

    def _read_file(self, session_id: str) -> SessionRecord | None:
        try:
            dir_fd = os.open(self.session_dir(session_id), _DIR_FLAGS)
        except FileNotFoundError:
            return None
        except OSError as e:
            self._refuse(session_id, f"session directory cannot be opened: {e.strerror}", quarantine=False)
            return None
        try:
            if not is_new_layout(dir_fd):  # not moved yet: its record may be in the container's reach
                self._refuse(session_id, "session directory is in the old layout (not moved at start)",
                             quarantine=False)
                return None
            data = read_record(dir_fd)
            return None if data is None else record_from_json(data, session_id)
        except RecordRefusedError as e:
            self._refuse(session_id, str(e), quarantine=True)
        except OSError as e:
            self._refuse(session_id, f"{RECORD} cannot be read: {e.strerror}", quarantine=False)
        finally:
            os.close(dir_fd)
        return None

    def list(self) -> list[SessionRecord]:
        """Every valid session, newest ``last_accessed`` first.

        A record claiming the port/protocol or DNS name of an older session is not served.
        """
        found = self._scan(read=True)
        return [] if found is None else found

    def list_kept(self) -> builtins.list[SessionRecord] | None:
        """:meth:`list` if every record is kept in memory and unchanged on disk, else None.

        It only lists the root and takes an ``lstat`` of each session's directory and record
        (no file is opened): cheap enough for the event loop, so a List needs no worker thread.
        """
        return self._scan(read=False)

    def _scan(self, *, read: bool) -> builtins.list[SessionRecord] | None:
        """The sessions' records (read from their files where needed, unless ``read`` is False:
        then None as soon as one would have to be), under :meth:`list`'s rules."""
        try:
            ids = [name for name in os.listdir(self.root) if is_session_id(name)]
        except (FileNotFoundError, NotADirectoryError):
            return []
        self._cache.keep_only(set(ids))
        found: builtins.list[SessionRecord] = []
        for sid in ids:
            rec: SessionRecord | None
            if read:
                rec = self._read(sid)
            elif (rec := self._cache.get(sid, stamp_of(self.session_dir(sid), RECORD))) is None:
                return None
            if rec is not None:
                found.append(rec)
        return self._unique(found)

    def _unique(self, found: builtins.list[SessionRecord]) -> builtins.list[SessionRecord]:
        """``found`` without the records that claim an older session's port or DNS name, newest first."""
        out: builtins.list[SessionRecord] = []
        ports: dict[tuple[int, str], str] = {}
        names: dict[str, str] = {}
        for rec in sorted(found, key=lambda r: (r.created_at, r.id)):
            owner = (ports.get((rec.port, rec.protocol)) if rec.port else None) or (
                names.get(rec.dns_name) if rec.dns_name else None)
            if owner is not None:
                self._refuse(rec.id, f"its port or DNS name belongs to session {owner}", quarantine=False)
                continue
            if rec.port:
                ports[(rec.port, rec.protocol)] = rec.id
            if rec.dns_name:
                names[rec.dns_name] = rec.id
            out.append(rec)
        out.sort(key=lambda r: r.last_accessed, reverse=True)
        return out

    def get(self, session_id: str) -> SessionRecord:
        """The record of ``session_id`` (under the same rules as :meth:`list`).

        Raises:
            NotFoundError: no such session (v2.0.0 message).
        """
        if is_session_id(session_id) and self.session_dir(session_id).is_dir():
            for rec in self.list():
                if rec.id == session_id:
                    return rec
        raise NotFoundError(f'session "{printable(session_id)}" does not exist')

    # --- writes ------------------------------------------------------------------------
    def write(self, record: SessionRecord) -> None:
        """Replace ``session.json`` atomically (0644)."""
        self._cache.forget(record.id)
        atomic_write(self.session_dir(record.id) / RECORD, record_to_json(record), mode=0o644)

    def create(self, record: SessionRecord) -> None:
        """Make the session directory: the home from the skeleton, with the shared-config links.

        Raises:
            UnavailableError: the directory could not be made (disk full, permissions).
            ResourceExhaustedError: the skeleton is over the copy limit.
        """
        stage = self._stage(record.id)
        try:
            if self.skel.is_dir():
                copy_home(self.skel, stage / HOME, max_bytes=self.clone_max_bytes, owner=self.owner)
            else:
                (stage / HOME).mkdir(mode=0o750)
                self._give(stage / HOME)
            self._link_shared(stage / HOME)
            self._finish(stage, record)
        except ResourceExhaustedError as e:
            shutil.rmtree(stage, ignore_errors=True)
            raise ResourceExhaustedError(f"could not create session directory: skeleton: {e}") from None
        except OSError as e:
            shutil.rmtree(stage, ignore_errors=True)
            raise UnavailableError(f"could not create session directory: {e}") from None

    def clone(self, source_id: str, record: SessionRecord) -> None:
        """Copy the home of ``source_id`` (also while it runs) into a new session.

        Regular files, directories and links that stay inside the home are copied;
        FIFOs, devices, sockets and escaping links are left out (logged).

        Raises:
            NotFoundError: the source does not exist.
            ResourceExhaustedError: the home is over the copy limit.
            UnavailableError: the copy failed.
        """
        self.get(source_id)
        stage = self._stage(record.id)
        try:
            report = copy_home(self.home_dir(source_id), stage / HOME,
                               max_bytes=self.clone_max_bytes, owner=self.owner)
            self._finish(stage, record)
        except ResourceExhaustedError as e:
            shutil.rmtree(stage, ignore_errors=True)
            raise ResourceExhaustedError(f"clone of session {source_id} refused: {e} "
                                         f"(the limit is clone_max_bytes = {self.clone_max_bytes})") from None
        except OSError as e:
            shutil.rmtree(stage, ignore_errors=True)
            raise UnavailableError(f"could not copy session {source_id}: {e}") from None
        if report.skipped:
            log.warning("clone left out entries that are not regular files, directories or inner links",
                        source=source_id, session=record.id, count=len(report.skipped),
                        first=report.skipped[:10])

    def delete(self, session_id: str) -> None:
        """Remove the session directory (renamed away first, so it never half-exists).

        Raises:
            NotFoundError: no such session.
        """
        self.get(session_id)
        self._cache.forget(session_id)
        doomed = self.root / f"{_DELETING}{session_id}"
        os.replace(self.session_dir(session_id), doomed)
        shutil.rmtree(doomed, ignore_errors=True)

    def _stage(self, session_id: str) -> Path:
        stage = self.root / f"{_STAGING}{session_id}"
        try:
            stage.mkdir(mode=0o700, parents=True)
        except OSError as e:
            raise UnavailableError(f"could not create session directory: {e}") from None
        return stage

    def _give(self, path: Path) -> None:
        if self.owner is not None:
            os.chown(path, *self.owner, follow_symlinks=False)

    def _finish(self, stage: Path, record: SessionRecord) -> None:
        atomic_write(stage / RECORD, record_to_json(record), mode=0o644)
        os.replace(stage, self.session_dir(record.id))

    def _link_shared(self, home: Path) -> None:
        claude = home / ".claude"
        claude.mkdir(mode=0o700, exist_ok=True)
        claude.chmod(0o700)
        self._give(claude)
        for name in SHARED_LINKS:
            link = claude / name
            if not link.is_symlink() and not link.exists():
                link.symlink_to(f"{SHARED_TARGET}/{name}")
                self._give(link)
