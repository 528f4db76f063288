"""A real agent on 127.0.0.2 with one started session, reached through the SSH tunnel."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from common.client.calls import AgentCalls
from common.domain import Session
from common.tunnel import Tunnel
from tests.support.agent_proc import AgentProcess
from tests.support.images import ensure_offline_image

PROTO = Path(__file__).resolve().parent.parent / "proto"

__all__ = ["agent_session", "environ", "python_path"]


@contextmanager
def python_path(code: Path | None) -> Iterator[None]:
    """Child processes started inside import ``code`` first (the generated protobuf stays ours).

    They also start without this process's GRPC_EXPERIMENTS, so ``code`` configures gRPC
    core its own way (common.grpc_options), as it would on its own.
    """
    if code is None:
        yield
        return
    # PYTHONSAFEPATH: `python -m` would otherwise put the working directory (this checkout)
    # ahead of PYTHONPATH.
    with environ({"PYTHONPATH": os.pathsep.join([str(code), str(PROTO)]), "PYTHONSAFEPATH": "1"},
                 unset=("GRPC_EXPERIMENTS",)):
        yield


@contextmanager
def environ(values: dict[str, str], unset: tuple[str, ...] = ()) -> Iterator[None]:
    """Set ``values`` and remove ``unset`` in this process's environment (children inherit it);
    restore both after."""
    saved = {k: os.environ.get(k) for k in (*values, *unset)}
    os.environ.update(values)
    for key in unset:
        os.environ.pop(key, None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@asynccontextmanager
async def agent_session(name: str, host: str = "127.0.0.2", code: Path | None = None,
                        ) -> AsyncIterator[tuple[AgentProcess, Tunnel, Session]]:
    """Start an agent with the offline image, open a tunnel, create and start a session.

    ``code``: run the agent from this source tree (an older revision, for before/after
    runs) instead of the installed one. Yields the agent process, the open tunnel and the
    session; stops and cleans up after.
    """
    image = ensure_offline_image()
    with tempfile.TemporaryDirectory(prefix="cvb-") as d:
        agent = AgentProcess(Path(d) / "a", host=host, image=image, name=name)
        with python_path(code):
            agent.start()
        try:
            async with Tunnel(agent.tunnel_settings()) as tunnel:
                await tunnel.wait_up(15)
                calls = AgentCalls(agent.agent_id, lambda: tunnel.channel, call_timeout=60)
                session = await calls.create(name, 0, "tcp", "", start=True)
                yield agent, tunnel, session
        finally:
            agent.close()
