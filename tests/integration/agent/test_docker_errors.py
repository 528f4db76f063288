"""The Docker runtime's errors, met against a real engine and a missing one, read as one line."""

from __future__ import annotations

import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from agent.container_spec import SESSION_CAPABILITIES
from agent.docker_runtime import DockerRuntime
from agent.runtime import ContainerInfo, ContainerSpec
from agent.sessions import container_name
from common.errors import FailedPreconditionError, NotFoundError, UnavailableError
from tests.support.agent_proc import remove_labelled_containers
from tests.support.env import require_docker
from tests.support.images import offline_image  # noqa: F401 - the session fixture

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
    readied: list[bool] = []

    async def ready() -> None:
        readied.append(True)

    async with DockerRuntime() as runtime:
        with pytest.raises(NotFoundError) as err:
            await runtime.start(spec, ready())
        assert readied == [True]            # awaited even though the create failed
        assert await runtime.inspect(sid) is None
        assert await runtime.stop(sid, 1) is False
        assert await runtime.image_exists(image) is False
    assert str(err.value) == (f'image "{image}" is not loaded on this agent: push it with '
                              "`convocate-host image push` or fix the current-image pointer")


async def test_start_awaits_ready_between_the_create_and_the_start(offline_image: str) -> None:  # noqa: F811
    """What ``ready`` prepares runs while the container exists, created and not yet running."""
    require_docker()
    sid = str(uuid.uuid4())
    label = f"convocate.test=ready-{sid[:8]}"
    spec = ContainerSpec(name=container_name(sid), session_id=sid, image=offline_image, hostname="h",
                         labels={"convocate.test": f"ready-{sid[:8]}"}, command=("sleep", "30"),
                         cap_add=SESSION_CAPABILITIES)   # it becomes the session user and stays up
    async with DockerRuntime() as runtime:
        seen: list[ContainerInfo | None] = []

        async def ready() -> None:
            seen.append(await runtime.inspect(sid))

        try:
            info = await runtime.start(spec, ready())
            assert len(seen) == 1
            assert seen[0] is not None
            assert not seen[0].running                     # created, not started yet
            assert info.running
            assert info.container_id == seen[0].container_id   # the one started after
            assert info == await runtime.inspect(sid)          # the start's answer, no inspect needed
        finally:
            remove_labelled_containers(label)


async def test_an_exec_in_a_container_not_running_or_missing_says_not_running(
    offline_image: str,  # noqa: F811 - fixture injection
) -> None:
    """The engine's own refusal of the exec (no inspect before it) reads "not running", as before."""
    require_docker()
    created, missing = str(uuid.uuid4()), str(uuid.uuid4())
    label = f"convocate.test=exec-{created[:8]}"
    subprocess.run(["docker", "create", "--name", container_name(created), "--label", label, offline_image],
                   capture_output=True, timeout=60, check=True)
    try:
        async with DockerRuntime() as runtime:
            for sid in (created, missing):
                with pytest.raises(FailedPreconditionError) as run_err:
                    await runtime.exec_run(sid, ["true"], "claude")
                with pytest.raises(FailedPreconditionError) as term_err:
                    await runtime.exec_terminal(sid, ["sh"], "claude", {})
                assert str(run_err.value) == str(term_err.value) == f"session {sid} is not running"
    finally:
        remove_labelled_containers(label)
