"""Cross-channel notices: which direction of a shell <-> agent pair is broken, in words.

The two directions are independent connections: the shell's agent client tunnels
shell → agent (Sessions, Ping heartbeats), the agent's status emitter tunnels
agent → shell (events, heartbeats). When one breaks, the other still carries news:
the shell's client reports its own link and the agent's view of the status link
(from PingResponse) to the status service, and the agent's emitter reports missing
Pings (``link.control_stale``) through the status stream. :func:`link_notices` turns
those facts into the notices every consumer shows.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AGENT_TO_SHELL", "SHELL_TO_AGENT", "LinkFacts", "link_notices"]

SHELL_TO_AGENT = "shell→agent"
AGENT_TO_SHELL = "agent→shell"


@dataclass(frozen=True)
class LinkFacts:
    """What the status service knows about one agent's two directions."""

    status_alive: bool             # the Publish stream is open and heartbeats are fresh
    status_error: str              # why it is not (as the status service sees it)
    control_known: bool            # a local client reported the shell -> agent link
    control_up: bool
    control_error: str
    agent_status_error: str = ""   # the agent's own view of its status link (via Ping), if down
    agent_missing_pings: str = ""  # the agent reported no Ping from the shell (via status)
    events_dropped: int = 0


def link_notices(f: LinkFacts) -> list[str]:
    """The human-readable notices for one agent (empty when both directions are fine).

    Args:
        f: the facts about both directions.

    Returns:
        Notices naming the broken direction and the healthy one that reported it.
    """
    notices: list[str] = []
    status_error = f.agent_status_error or f.status_error or "no status stream"
    control_down = f.control_known and not f.control_up
    if control_down and f.status_alive:
        notices.append(
            f"{SHELL_TO_AGENT} link down: {f.control_error or 'unreachable'} "
            f"({AGENT_TO_SHELL} status stream alive)"
        )
    elif control_down:
        notices.append(
            f"agent unreachable both ways: {SHELL_TO_AGENT}: {f.control_error or 'unreachable'}; "
            f"{AGENT_TO_SHELL}: {status_error}"
        )
    elif not f.status_alive and f.control_known:
        notices.append(
            f"{AGENT_TO_SHELL} status stream down: {status_error} ({SHELL_TO_AGENT} link alive)"
        )
    elif not f.status_alive:
        notices.append(f"{AGENT_TO_SHELL} status stream down: {status_error}")
    if f.agent_missing_pings and f.status_alive and not f.control_known:
        notices.append(
            f"{SHELL_TO_AGENT} heartbeats missing: {f.agent_missing_pings} "
            f"(reported over the {AGENT_TO_SHELL} status stream)"
        )
    if f.events_dropped:
        notices.append(f"agent dropped {f.events_dropped} status event(s): its queue was full")
    return notices
