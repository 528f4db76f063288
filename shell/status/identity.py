"""Which agent is publishing: the status service binds each Publish stream to its SSH key.

Every line of the status allow-list names its agent in the key comment,
``convocate:agent-to-shell:<agent id>`` (what ``convocate-host init-agent`` writes;
OpenSSH options such as ``restrict,command="/bin/false"`` may precede the key). When
an agent's SSH connection opens its channel, :class:`PublishGate` looks its key up in
that file, connects to the publish socket from a fresh, unguessable abstract UNIX
address, and records address → agent id. The Publish handler reads the caller's
address (gRPC's ``context.peer()``) and so knows, without trusting the events, which
agent is on the other end: events naming any other agent are refused.

A key whose line names no agent opens nothing: it is refused at channel open.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from pathlib import Path

import asyncssh

from common.errors import InvalidArgumentError
from common.logging import get_logger
from common.registry import validate_agent_id

__all__ = ["AGENT_KEY_TAG", "AgentKeys", "PublishGate", "agent_key_comment"]

AGENT_KEY_TAG = "convocate:agent-to-shell:"
MAX_LINKS = 4096  # bound on open agent connections the gate tracks
log = get_logger(__name__)


def agent_key_comment(agent_id: str) -> str:
    """The allow-list comment that names ``agent_id`` (``convocate:agent-to-shell:<id>``)."""
    return AGENT_KEY_TAG + validate_agent_id(agent_id)


class AgentKeys:
    """The status allow-list read as key → agent id (re-read on every look-up)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def agent_ids(self) -> list[str]:
        """Every agent id the allow-list names (unreadable file: none)."""
        try:
            lines = self.path.read_text().splitlines()
        except OSError:
            return []
        return [line.rsplit(None, 1)[-1][len(AGENT_KEY_TAG):] for line in lines
                if line.strip() and line.rsplit(None, 1)[-1].startswith(AGENT_KEY_TAG)]

    def agent_for(self, key: asyncssh.SSHKey) -> str | None:
        """The agent id the allow-list line of ``key`` names; None if no valid line names one."""
        try:
            text = self.path.read_text()
        except OSError:
            return None
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            comment = line.rsplit(None, 1)[-1]
            if not comment.startswith(AGENT_KEY_TAG):
                continue
            try:
                allowed = asyncssh.import_authorized_keys(line)
            except (ValueError, asyncssh.KeyImportError):
                continue
            if allowed.validate(key, "", "") is None:
                continue
            try:
                return validate_agent_id(comment[len(AGENT_KEY_TAG):])
            except InvalidArgumentError:
                return None
        return None


class PublishGate:
    """Connects agents' channels to the publish socket and remembers who is behind each one.

    Args:
        keys: the status allow-list.
        publish_socket: the gRPC socket that serves Publish only.
    """

    def __init__(self, keys: AgentKeys, publish_socket: Path) -> None:
        self.keys = keys
        self.publish_socket = publish_socket
        # gRPC peer string -> (agent id, our side of that connection)
        self._links: dict[str, tuple[str, socket.socket]] = {}

    def agent_of(self, peer: str) -> str | None:
        """The agent behind a gRPC peer string (``unix-abstract:...``); None if none (or closed)."""
        link = self._links.get(peer)
        if link is None or link[1].fileno() < 0:
            return None
        return link[0]

    def _purge(self) -> None:
        """Forget connections whose socket is closed (the transport closes it when the channel ends)."""
        for peer in [p for p, (_, sock) in self._links.items() if sock.fileno() < 0]:
            del self._links[peer]

    def links(self) -> int:
        """Open agent connections the gate tracks."""
        self._purge()
        return len(self._links)

    async def open(self, key: asyncssh.SSHKey) -> socket.socket:
        """Connect an authenticated key's channel to the publish socket, bound to its agent id.

        Returns:
            The connected socket (the SSH server's forwarder takes it over).

        Raises:
            asyncssh.ChannelOpenError: the key names no agent, too many links, or the
                socket is not there.
        """
        agent_id = self.keys.agent_for(key)
        if agent_id is None:
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                f"this key's allow-list line names no agent (comment {AGENT_KEY_TAG}<agent id>)")
        self._purge()
        if len(self._links) >= MAX_LINKS:
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_RESOURCE_SHORTAGE, "too many agent connections")
        address = f"convocate-status/{secrets.token_hex(16)}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.bind("\0" + address)
            await asyncio.get_running_loop().sock_connect(sock, str(self.publish_socket))
        except OSError as e:
            sock.close()
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, str(e)) from None
        self._links[f"unix-abstract:{address}"] = (agent_id, sock)
        return sock
