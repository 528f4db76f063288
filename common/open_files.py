"""The open-files limit of a process that holds a socket or more per agent.

A login session gives its processes a soft ``RLIMIT_NOFILE`` of 1024 (systemd's
``DefaultLimitNOFILE=1024:524288``: the soft limit is kept low only for programs that
still use ``select()``), while the console holds about four descriptors per agent (its
SSH connection, the tunnel's socket, gRPC's connection, a watch) and ``convocate-host``
one or more per agent it asks at once. At the soft limit a fleet of about 250 agents
would fail with "Too many open files". Neither uses ``select()`` (asyncio's epoll, gRPC's
epoll poller), so, as Go's runtime does for every program since 1.19, each raises its
soft limit to the hard limit at start. Services get theirs from their unit's
``LimitNOFILE=`` instead.
"""

from __future__ import annotations

import resource

__all__ = ["raise_open_files_limit"]


def raise_open_files_limit() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; returns the soft limit now in force.

    A limit that cannot be raised (a sandbox that refuses) is logged and left as it was.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard in (resource.RLIM_INFINITY, soft):   # unlimited hard (cannot be a soft limit), or no need
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as e:
        from common.logging import get_logger  # noqa: PLC0415 - a command's start-up loads no logging

        get_logger(__name__).warning("open-files limit not raised", soft=soft, hard=hard, error=str(e))
        return soft
    return hard
