"""The dnsmasq hosts file on the shell host: session DNS name → its agent's IP.

After every change to the router's cache the file is rewritten atomically (temp file,
fsync, rename; mode 0644), in the v2.0.0 format (inventory §6.7)::

    # Managed by convocate. Do not edit by hand.
    <ip>\t<dns name>

Decisions on what goes in:

* Only agent sessions with a DNS name. Orphans are excluded: they live on the shell
  host, have no agent and no running container to answer.
* What an agent says is untrusted (a session container can rewrite its own record):
  a row whose name or DNS name breaks :mod:`common.session_rules`, or whose DNS name is
  outside the session zone (``convocate.internal`` by default), gets no record, and
  an error names it (once per bad value). Only ``a-z 0-9 - .`` ever reach the file.
* An agent that becomes unreachable keeps its last known records: its containers are
  most likely still running and answering, and dropping the names would break every
  client of them for the length of a network blip. Its records change only when the
  agent is reachable again and its sessions say otherwise.
* An agent never reached since the shell started contributes no records (nothing is
  known about it).
* A name claimed by two sessions (DNS names are unique per agent only) goes to the
  first by (agent id, session id), with a warning naming both.
* The IP is the agent's address if it is an IP literal, else its first IPv4 address
  (IPv6 as a fallback); an agent whose address does not resolve is skipped, with a
  warning.

The file is written only when its content changes. When ``reload_pidfile`` names
dnsmasq's pid file, dnsmasq gets SIGHUP after each write so it re-reads the file
(v2.0.0 never reloaded it, inventory §9.3 item 15).

On the console's event loop the file is written in a worker thread
(:meth:`DnsHosts.submit`): its two fsyncs would otherwise hold up every key, redraw and
attached session's output behind the disk. The writes stay one at a time and in order; a
burst of changes during one costs one more write, of the latest content.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import signal
import socket
from collections.abc import Iterable, Mapping
from pathlib import Path

from common.errors import InvalidArgumentError
from common.logging import get_logger
from common.paths import atomic_write
from common.session_rules import DEFAULT_DNS_ZONE, in_dns_zone, validate_dns_name, validate_name
from common.text import safe_display
from shell.fleet.model import SessionRow

__all__ = ["HEADER", "DnsHosts", "dns_records", "record_error", "render_hosts", "resolve_address"]

HEADER = "# Managed by convocate. Do not edit by hand."
MAX_REPORTED = 1024
log = get_logger(__name__)
_reported: set[tuple[str, str, str, str]] = set()  # bad values already logged (bounded)


def record_error(row: SessionRow, zone: str) -> str:
    """Why ``row``'s DNS name may not be written ("" if it may)."""
    try:
        validate_name(row.name)
        name = validate_dns_name(row.dns_name)
    except InvalidArgumentError as e:
        return str(e)
    if name != row.dns_name:
        return "DNS name is not in canonical form (trimmed, lowercase)"
    if not in_dns_zone(name, zone):
        return f'DNS name is outside the session zone "{zone}"'
    return ""


def _refuse(row: SessionRow, error: str) -> None:
    key = (row.agent_id, row.id, row.dns_name, row.name)
    if key in _reported:
        return
    if len(_reported) >= MAX_REPORTED:
        _reported.clear()
    _reported.add(key)
    log.error("dns record refused: the agent sent a bad session record", agent=safe_display(row.agent_id),
              session=safe_display(row.id), dns_name=safe_display(row.dns_name), name=safe_display(row.name),
              error=safe_display(error))


def dns_records(rows: Iterable[SessionRow], agent_ips: Mapping[str, str],
                zone: str = DEFAULT_DNS_ZONE) -> list[tuple[str, str]]:
    """The ``(ip, name)`` records for ``rows``, sorted by name.

    Args:
        rows: the router's rows (orphans and placeholders are skipped).
        agent_ips: agent id → IP address (agents missing here are skipped).
        zone: the session DNS zone; names outside it are refused ("": any name).

    Returns:
        One record per distinct DNS name.
    """
    chosen: dict[str, tuple[str, SessionRow]] = {}
    for row in sorted(rows, key=lambda r: (r.agent_id, r.id)):
        if row.orphan or row.placeholder or not row.dns_name or not row.agent_id:
            continue
        ip = agent_ips.get(row.agent_id)
        if ip is None:
            continue
        error = record_error(row, zone)
        if error:
            _refuse(row, error)
            continue
        name = row.dns_name
        if name in chosen:
            first = chosen[name][1]
            log.warning("dns name claimed twice, keeping the first", name=name,
                        kept=f"{first.agent_id}/{first.id}", skipped=f"{row.agent_id}/{row.id}")
            continue
        chosen[name] = (ip, row)
    return [(ip, name) for name, (ip, _row) in sorted(chosen.items())]


def render_hosts(records: Iterable[tuple[str, str]]) -> str:
    """The file content for ``records``."""
    return "".join([HEADER + "\n", *(f"{ip}\t{name}\n" for ip, name in records)])


async def resolve_address(address: str) -> str | None:
    """``address`` if it is an IP literal, else its first IPv4 (or IPv6) address; None if unknown."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(address, None, type=socket.SOCK_STREAM)
    except OSError as e:
        log.warning("agent address does not resolve; its sessions get no DNS records",
                    address=address, error=str(e))
        return None
    v4 = [i[4][0] for i in infos if i[0] == socket.AF_INET]
    v6 = [i[4][0] for i in infos if i[0] == socket.AF_INET6]
    found = v4 or v6
    return str(found[0]) if found else None


class DnsHosts:
    """Writes the hosts file when its content changes.

    Args:
        path: the hosts file (``/var/lib/convocate/dnsmasq-hosts``); None disables it.
        reload_pidfile: dnsmasq's pid file, to SIGHUP it after a write (optional).
    """

    def __init__(self, path: Path | None, reload_pidfile: Path | None = None) -> None:
        self.path = path
        self.reload_pidfile = reload_pidfile
        self._written: str | None = None
        self._wanted: str | None = None      # the content submitted last (written, or to be)
        self._pending: str | None = None     # submitted, not yet handed to the writer thread
        self._writer: asyncio.Task[None] | None = None
        self._warned_missing = False
        self.writes = 0

    def write(self, records: list[tuple[str, str]]) -> bool:
        """Rewrite the file with ``records`` if that changes it (blocking); return True if written."""
        if self.path is None:
            return False
        written = self._write_content(render_hosts(records))
        self._wanted = self._written
        return written

    def submit(self, records: list[tuple[str, str]]) -> None:
        """Have the file rewritten with ``records`` if that changes it, in a worker thread when
        called on a running event loop (else at once); :meth:`flush` waits for it."""
        if self.path is None:
            return
        content = render_hosts(records)
        if content == (self._wanted if self._wanted is not None else self._written):
            return
        self._wanted = content
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write_content(content)
            self._wanted = self._written     # not written: the next change tries again
            return
        self._pending = content
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._drain(), name="dns-hosts")

    async def _drain(self) -> None:
        while self._pending is not None:
            content, self._pending = self._pending, None
            if not await asyncio.to_thread(self._write_content, content) and self._wanted == content:
                self._wanted = self._written     # not written: the next change tries again

    async def flush(self) -> None:
        """Wait until everything submitted so far is written (or failed, logged)."""
        while self._writer is not None and not self._writer.done():
            await asyncio.wait({self._writer})   # never cancels the writer

    def _write_content(self, content: str) -> bool:
        """Write ``content`` unless the file has it already (blocking); True if written."""
        if self.path is None or content == self._written:
            return False
        if not self.path.parent.is_dir():
            if not self._warned_missing:
                log.warning("dns sync skipped: directory missing", path=str(self.path))
                self._warned_missing = True
            return False
        try:
            atomic_write(self.path, content, mode=0o644)
        except OSError as e:
            log.warning("dns sync failed", path=str(self.path), error=str(e))
            return False
        self._written = content
        self.writes += 1
        log.info("dns sync: wrote records", records=content.count("\n") - 1, path=str(self.path))
        self._reload()
        return True

    def _reload(self) -> None:
        if self.reload_pidfile is None:
            return
        try:
            pid = int(self.reload_pidfile.read_text().split()[0])
            os.kill(pid, signal.SIGHUP)
        except (OSError, ValueError, IndexError) as e:
            log.warning("dnsmasq reload failed", pidfile=str(self.reload_pidfile), error=str(e))
