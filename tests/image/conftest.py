"""The production image under test: built (or reused) once, run by a real agent, seen in a console.

Everything here is marked ``production_image``: the default ``tests`` session deselects it
(``-m "not production_image"``); ``nox -s image-production`` runs it. A cold build takes
minutes (debootstrap, the Debian toolset, the Claude CLI from npm); a cached one seconds.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.identity import new_agent_id
from agent.production_image import BuiltImage
from common.registry import register_agent
from tests.support.agent_proc import AgentProcess
from tests.support.console_fleet import start_console, start_status
from tests.support.env import require_tool
from tests.support.processes import stop_process
from tests.support.production import ensure_production_image, lay_out_cli_home
from tests.support.status_stack import agent_status_keys
from tests.support.tmux import TmuxTerminal
from tests.support.waiting import wait_for_sync


@pytest.fixture(scope="session")
def production_image() -> BuiltImage:
    """The production image, built from the Debian archive and npm (or reused from the cache)."""
    return ensure_production_image()


@dataclass
class ProdFleet:
    """One agent running sessions on the production image, the status service, the registry."""

    root: Path
    agent: AgentProcess
    registry: Path
    status_socket: Path


@pytest.fixture
def prod_fleet(production_image: BuiltImage) -> Iterator[ProdFleet]:
    """An agent on 127.0.0.4 whose session image is the production image; skel and shared settings
    laid out as ``convocate-agent install`` does (readable by uid 1337: the agent runs as root here)."""
    require_tool("tmux")
    with tempfile.TemporaryDirectory(prefix="cvp-") as d:
        root = Path(d)
        status, socket, config = start_status(root)
        agent: AgentProcess | None = None
        try:
            wait_for_sync(socket.exists, timeout=20)
            aroot = root / "a1"
            lay_out_cli_home(aroot)
            agent_id = new_agent_id()
            key, known = agent_status_keys(config, aroot, agent_id)
            agent = AgentProcess(aroot, host="127.0.0.4", image=production_image.tags[0], name="p1",
                                 agent_id=agent_id, config={
                "status_host": "127.0.0.1", "status_port": config.port,
                "status_client_key": key, "status_known_hosts": known, "heartbeat_interval": 1.0,
                "stop_timeout": 5})
            agent.start()
            registry = root / "registry"
            host_pub = Path(str(agent.keys.host_key) + ".pub").read_text()
            register_agent(registry, agent.agent_id, agent.host, agent.port, agent.keys.client_key, host_pub)
            yield ProdFleet(root, agent, registry, socket)
        finally:
            if agent is not None:
                agent.close()
            stop_process(status)


@pytest.fixture
def open_console(prod_fleet: ProdFleet) -> Iterator[Callable[[], TmuxTerminal]]:
    """Start consoles in private tmux servers at 110x30; kill them all afterwards."""
    terms: list[TmuxTerminal] = []

    def start() -> TmuxTerminal:
        t = TmuxTerminal(require_tool("tmux"), width=110, height=30)
        terms.append(t)
        return start_console(prod_fleet, t, f"console-{len(terms)}.log")

    try:
        yield start
    finally:
        for t in terms:
            t.kill()
