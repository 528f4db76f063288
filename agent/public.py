"""What the shell host's set-up code (``convocate install``, ``convocate demo``) may use of the agent.

Everything else in ``agent`` is internal: the import-linter contract in ``pyproject.toml``
lets ``shell`` import this module only, and ``hostctl`` nothing of the agent.
"""

from __future__ import annotations

from agent.docker_runtime import DockerRuntime
from agent.image_build import build_context, offline_image_tag

__all__ = ["offline_image_context", "stop_agent_sessions"]


def offline_image_context(repository: str = "convocate") -> tuple[bytes, str]:
    """The offline session image's build context (a tar) and its tag (a hash of the context)."""
    context = build_context()
    return context, offline_image_tag(context, repository)


async def stop_agent_sessions(agent_id: str, timeout: int = 5) -> int:
    """Stop every running session container of ``agent_id`` on the local Docker Engine.

    Returns:
        How many were stopped.
    """
    async with DockerRuntime() as runtime:
        running = await runtime.list_running(agent_id)
        for session_id in running:
            await runtime.stop(session_id, timeout)
        return len(running)
