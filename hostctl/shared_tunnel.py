"""The status service's standing tunnels, shared with `agents` / `sessions` (like OpenSSH's ControlMaster).

On a shell host the status service keeps one supervised SSH tunnel per registered agent
(:mod:`shell.status.link_prober`), each forwarding a private local socket,
``<probe_sockets>/<agent_id>.sock``, to the agent's gRPC socket: host key pinned, the same
shell → agent key. A command that asks every agent once reaches an agent through that
socket instead of a handshake of its own, and so loads neither asyncssh nor cryptography
when every agent answers there. Every call still goes to the agent; nothing is cached.

The directory is found as the service finds it: its configuration, loaded the way it
loads it (:func:`common.config.load`, the ``[status]`` table of the config file and
``CONVOCATE_STATUS_*``), and used only if the service probes the same registry. A socket
is used only when it is safe and current:

- the directory is a real directory (not a link), owned by us (root: by the registry's
  owner, the user the service runs as), with no access for group or others;
- the socket is a socket (not a link), owned by the same user, with no access for group or
  others, and no older than the agent's registry entry (an agent peered again since the
  service's tunnel connected is not reached over the old record; the service starts a new
  tunnel for a rewritten entry at its next registry sync).

The service's own local socket (``socket`` of the same configuration), when it is a
socket owned by that user, is asked first: one AskAgents call has the service ask every
agent through these tunnels (:mod:`shell.status.ask`, under the entry's write time as
above), where the command would otherwise open a channel per socket; the sockets
themselves remain for an agent it did not answer for, and for an older service.

Whether it answers (Ping within :data:`PING_DEADLINE`, from the agent the entry names) is
for the caller (:mod:`hostctl.fleet`): anything else sends that agent to the command's own
connection, with a debug line only; except an agent that answered Ping there and then used
the command's whole deadline (a List that never returns): its error is the row, as the
command's own connection would have said after a second deadline.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from common.client import PING_DEADLINE
from common.errors import ConvocateError
from common.logging import get_logger

if TYPE_CHECKING:
    from common.registry import AgentRecord

__all__ = ["PING_DEADLINE", "VIA_DIRECT", "VIA_SHARED", "SharedTunnels", "find_shared_tunnels"]

VIA_SHARED = "status-service"   # reached through the status service's tunnel
VIA_DIRECT = "direct"           # reached (or not) through the command's own SSH connection
PRIVATE = stat.S_IRWXG | stat.S_IRWXO

log = get_logger(__name__)


def _private(st: os.stat_result, owner: int) -> str:
    """Why ``st`` is not private to ``owner`` ('' when it is)."""
    if st.st_uid != owner:
        return f"owned by uid {st.st_uid}, not {owner}"
    if st.st_mode & PRIVATE:
        return f"mode {stat.S_IMODE(st.st_mode):04o} gives access to group or others"
    return ""


@dataclass(frozen=True)
class SharedTunnels:
    """The status service's tunnel sockets for the agents of ``registry`` (a checked directory)."""

    directory: Path
    registry: Path
    owner: int        # the uid the directory and the sockets must belong to
    status_socket: Path | None = None   # the service's local socket, for AskAgents (None: not usable)

    def socket_for(self, record: AgentRecord) -> Path | None:
        """The agent's shared socket if it is safe and current, else None (with a debug line why)."""
        from common.registry import entry_written_ns  # noqa: PLC0415 - light; kept with its only use

        path = self.directory / f"{record.agent_id}.sock"
        try:
            st = os.lstat(path)
            written = entry_written_ns(self.registry, record)
        except OSError as e:
            return self._skip(record, f"{path}: {e.strerror}")
        if not stat.S_ISSOCK(st.st_mode):
            return self._skip(record, f"{path} is not a socket")
        why = _private(st, self.owner)
        if why:
            return self._skip(record, f"{path} is {why}")
        if st.st_mtime_ns < written:
            return self._skip(record, f"{path} is older than the agent's registry entry (peered again since)")
        return path

    @staticmethod
    def _skip(record: AgentRecord, why: str) -> None:
        log.debug("status service tunnel not used", agent=record.agent_id, why=why)


def _owner(registry: Path) -> int:
    uid = os.geteuid()
    return os.stat(registry).st_uid if uid == 0 else uid


def find_shared_tunnels(registry: Path) -> SharedTunnels | None:
    """The status service's tunnel sockets, when it probes ``registry`` and their directory is private.

    None (with a debug line why) when there is no such service configuration, it probes
    another registry or none, or the directory is missing, a link, someone else's, or open
    to group or others.
    """
    from common.config import load  # noqa: PLC0415 - tomllib: only when sharing is asked for
    from shell.status.config import StatusConfig  # noqa: PLC0415

    try:
        config = load(StatusConfig, "status")
    except ConvocateError as e:
        log.debug("status service configuration unreadable: no shared tunnels", error=str(e))
        return None
    directory = config.probe_sockets
    try:
        same = config.registry_dir is not None and os.path.samefile(config.registry_dir, registry)
        owner = _owner(registry)
        st = os.lstat(directory)
    except OSError as e:
        log.debug("no shared tunnels", directory=str(directory), error=e.strerror)
        return None
    why = ("the status service probes another registry" if not same
           else "not a directory" if not stat.S_ISDIR(st.st_mode) else _private(st, owner))
    if why:
        log.debug("no shared tunnels", directory=str(directory), why=why)
        return None
    return SharedTunnels(directory, registry, owner, _status_socket(config.socket, owner))


def _status_socket(path: Path, owner: int) -> Path | None:
    """The service's local socket if it is a socket (not a link) of ``owner``: asked for AskAgents."""
    try:
        st = os.lstat(path)
    except OSError as e:
        log.debug("status service socket not used", socket=str(path), error=e.strerror)
        return None
    why = ("not a socket" if not stat.S_ISSOCK(st.st_mode)
           else f"owned by uid {st.st_uid}, not {owner}" if st.st_uid != owner else "")
    if why:
        log.debug("status service socket not used", socket=str(path), why=why)
        return None
    return path
