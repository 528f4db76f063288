"""Security tests: each carries out an attack of the security review against the real
components (a real agent process, the real Docker Engine with the offline image, the real
SessionStore on disk) and shows it no longer works. Test names name the finding."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.integration.agent.conftest import Client, open_client
from tests.support.agent_proc import AgentProcess
from tests.support.images import offline_image  # noqa: F401 - the session fixture, re-exported

HOST = "127.0.0.2"
PIDS_LIMIT = 48


@pytest.fixture(scope="module")
def agent(offline_image: str) -> Iterator[AgentProcess]:  # noqa: F811 - fixture injection
    """One agent process for the module, with a small PID limit (its containers are removed)."""
    with tempfile.TemporaryDirectory(prefix="cvs-") as d:
        proc = AgentProcess(Path(d), host=HOST, image=offline_image, config={"pids_limit": PIDS_LIMIT})
        proc.start()
        try:
            yield proc
        finally:
            proc.close()


@pytest.fixture
async def client(agent: AgentProcess) -> AsyncIterator[Client]:
    """A tunnelled client to the module's agent."""
    c = await open_client(agent)
    try:
        yield c
    finally:
        await c.tunnel.close()


def in_container(session_id: str, script: str, *, user: str = "claude", timeout: float = 20,
                 ) -> tuple[int, str]:
    """Run ``script`` with ``sh -c`` in the session's container (``docker exec``): exit code, output."""
    argv = ["docker", "exec", "-u", user, f"convocate-session-{session_id}", "sh", "-c", script]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    return done.returncode, done.stdout + done.stderr
