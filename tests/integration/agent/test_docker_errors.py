"""The Docker runtime's errors, met against a real engine and a missing one, read as one line."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import pytest

from agent.docker_runtime import DockerRuntime
from agent.runtime import ContainerSpec
from common.errors import NotFoundError, UnavailableError
from tests.support.env import require_docker

ENGINE_DOWN = "the Docker Engine does not answer: start it with `systemctl start docker`"


async def test_engine_down_says_how_to_start_it() -> None:
    """An engine socket nobody listens on gives one line naming the fix, no library text."""
    with tempfile.TemporaryDirectory(prefix="cvd-") as d:
        async with DockerRuntime(f"unix://{Path(d) / 'docker.sock'}") as runtime:
            with pytest.raises(UnavailableError) as err:
                await runtime.list_running("a1")
    assert str(err.value) == f"list containers: {ENGINE_DOWN}"


async def test_missing_image_and_missing_container() -> None:
    """A start with an image the engine lacks says to push it; an absent container is None/False."""
    require_docker()
    sid = str(uuid.uuid4())
    image = f"convocate-missing-{uuid.uuid4().hex[:8]}:none"
    spec = ContainerSpec(name=f"convocate-it-{sid[:8]}", session_id=sid, image=image,
                         hostname="h", labels={"convocate.test": "docker-errors"}, command=("true",))
    async with DockerRuntime() as runtime:
        with pytest.raises(NotFoundError) as err:
            await runtime.start(spec)
        assert await runtime.inspect(sid) is None
        assert await runtime.stop(sid, 1) is False
        assert await runtime.image_exists(image) is False
    assert str(err.value) == (f'image "{image}" is not loaded on this agent: push it with '
                              "`convocate-host image push` or fix the current-image pointer")
