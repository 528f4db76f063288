"""``session.json``: its encoding, and reading it back as untrusted input.

A record on disk is never trusted (security review, findings 2 and 3). It is opened
without following links and without blocking (a FIFO or a device never hangs the agent),
must be a regular file of at most :data:`MAX_RECORD_BYTES`, and its fields must pass the
same rules the RPCs enforce (:mod:`common.session_rules`). Anything else raises
:class:`RecordRefusedError` with the reason; the store logs it and never serves the record.
"""

from __future__ import annotations

import json
import os
import re
import stat
from datetime import UTC, datetime
from typing import Any

from agent.sessions import SessionRecord
from common.errors import InvalidArgumentError
from common.session_rules import printable, validate_dns_name, validate_name, validate_protocol

__all__ = [
    "MAX_RECORD_BYTES",
    "RECORD",
    "RecordRefusedError",
    "format_time",
    "parse_time",
    "read_record",
    "record_from_json",
    "record_to_json",
]

RECORD = "session.json"
MAX_RECORD_BYTES = 64 * 1024
DESIRED_RUNNING, DESIRED_STOPPED = "running", "stopped"  # an older record without the field: stopped
_FRACTION = re.compile(r"\.(\d+)")
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class RecordRefusedError(Exception):
    """A record that is not served: the message says why."""


def format_time(t: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` suffix (microseconds)."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    """Parse RFC 3339 (also Go's nanosecond form) into an aware UTC datetime."""
    s = text.strip().replace("Z", "+00:00")
    s = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], s, count=1)
    t = datetime.fromisoformat(s)
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC)


def record_to_json(r: SessionRecord) -> str:
    """The pretty-printed record (inventory §2.1)."""
    data: dict[str, Any] = {
        "uuid": r.id,
        "name": r.name,
        "created_at": format_time(r.created_at),
        "last_accessed": format_time(r.last_accessed),
    }
    if r.port:
        data["port"] = r.port
    data["protocol"] = r.protocol
    if r.dns_name:
        data["dns_name"] = r.dns_name
    data["desired_state"] = DESIRED_RUNNING if r.desired_running else DESIRED_STOPPED
    return json.dumps(data, indent=2) + "\n"


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISLNK, "a symbolic link"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def read_record(dir_fd: int) -> bytes | None:
    """The bytes of ``session.json`` in the directory ``dir_fd``, or None if there is none.

    Never follows a link, never blocks, never reads more than :data:`MAX_RECORD_BYTES` + 1.
    A record replaced by another regular file while it is opened (an atomic write racing
    the read) is read as the file that was opened: never refused for that alone.

    Raises:
        RecordRefusedError: it is not a regular file, or too large.
        OSError: it could not be read (permissions, I/O).
    """
    try:
        before = os.stat(RECORD, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(before.st_mode):
        raise RecordRefusedError(f"{RECORD} is {_kind(before.st_mode)}, not a regular file")
    try:
        fd = os.open(RECORD, _OPEN_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise RecordRefusedError(f"{RECORD} could not be opened safely: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        # Replaced between the stat and the open (the store's own atomic write does that): what
        # was opened is read if it is a regular file too, the newer record; anything else is refused.
        if not stat.S_ISREG(st.st_mode):
            raise RecordRefusedError(f"{RECORD} was replaced by {_kind(st.st_mode)} while it was opened")
        if st.st_size > MAX_RECORD_BYTES:
            raise RecordRefusedError(f"{RECORD} is {st.st_size} bytes (at most {MAX_RECORD_BYTES})")
        data = b""
        while len(data) <= MAX_RECORD_BYTES:  # each read returns data or ends the loop at EOF
            chunk = os.read(fd, MAX_RECORD_BYTES + 1 - len(data))
            if not chunk:
                break
            data += chunk
        if len(data) > MAX_RECORD_BYTES:
            raise RecordRefusedError(f"{RECORD} grew beyond {MAX_RECORD_BYTES} bytes while read")
        return data
    finally:
        os.close(fd)


def _field(d: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    value = d.get(key, default)
    if value is None:
        value = default
    if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
        raise RecordRefusedError(f"{key} must be a {kind.__name__}, got {type(value).__name__}")
    return value


def record_from_json(data: bytes, session_id: str) -> SessionRecord:
    """Decode and re-validate a record with the rules of the RPCs.

    Raises:
        RecordRefusedError: not JSON, not this session's record, or a field breaks a rule.
    """
    try:
        d = json.loads(data.decode())
    except (UnicodeDecodeError, ValueError) as e:
        raise RecordRefusedError(f"{RECORD} is not valid JSON: {e}") from None
    if not isinstance(d, dict):
        raise RecordRefusedError(f"{RECORD} is not a JSON object")
    if d.get("uuid") != session_id:
        raise RecordRefusedError("uuid does not match the directory")
    name = _field(d, "name", str, "")
    port = _field(d, "port", int, 0)
    protocol = _field(d, "protocol", str, "") or "tcp"
    dns_name = _field(d, "dns_name", str, "")
    desired = _field(d, "desired_state", str, "") or DESIRED_STOPPED
    if desired not in (DESIRED_RUNNING, DESIRED_STOPPED):
        raise RecordRefusedError(f'desired_state must be "running" or "stopped", got "{printable(desired)}"')
    try:
        if validate_name(name) != name:
            raise InvalidArgumentError("session name has leading or trailing blanks")
        if validate_protocol(protocol) != protocol:
            raise InvalidArgumentError(f'protocol must be "tcp" or "udp", got "{printable(protocol)}"')
        if validate_dns_name(dns_name) != dns_name:
            raise InvalidArgumentError("DNS name is not in its canonical form")
        if not 0 <= port <= 65535:
            raise InvalidArgumentError(f"invalid port: {port}")
        created = parse_time(_field(d, "created_at", str, ""))
        accessed = parse_time(_field(d, "last_accessed", str, "") or format_time(created))
    except (InvalidArgumentError, ValueError) as e:
        raise RecordRefusedError(str(e)) from None
    return SessionRecord(session_id, name, created, accessed, port, protocol, dns_name,
                         desired_running=desired == DESIRED_RUNNING)
