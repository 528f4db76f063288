"""The Docker runtime's one error table: each Docker or OS failure becomes one domain error."""

from __future__ import annotations

import errno

import pytest
from aiodocker.exceptions import DockerError

from agent.docker_runtime import _docker_errors  # the table is private; its behaviour is the contract
from common.errors import (
    AlreadyExistsError,
    ConvocateError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
    UnavailableError,
)

CASES: list[tuple[Exception, type[ConvocateError], str]] = [
    (DockerError(900, "Cannot connect to Docker Engine via unix:///x [No such file]"), UnavailableError,
     "stop: the Docker Engine does not answer: start it with `systemctl start docker`"),
    (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), UnavailableError,
     "stop: the Docker Engine does not answer: start it with `systemctl start docker`"),
    (OSError(errno.ENOSPC, "No space left on device"), ResourceExhaustedError,
     "stop: the agent host's disk is full: free space under the Docker data root and retry"),
    (DockerError(500, "write /var/lib/docker/x: no space left on device"), ResourceExhaustedError,
     "stop: the agent host's disk is full: free space under the Docker data root and retry"),
    (DockerError(404, "No such image: img:1"), NotFoundError,
     "stop: the image is not loaded: push it with `convocate-host image push`"),
    (DockerError(404, "No such container: c1"), NotFoundError, "stop: No such container: c1"),
    (DockerError(409, "Conflict.\nname in use"), FailedPreconditionError, "stop: Conflict. name in use"),
    (DockerError(400, "invalid reference format"), InvalidArgumentError, "stop: invalid reference format"),
    (DockerError(500, "driver failed: Bind for 0.0.0.0:80 failed: port is already allocated"),
     AlreadyExistsError, "stop: a port it publishes is already in use on this host"),
    (DockerError(500, "oops"), UnavailableError, "stop: the Docker Engine failed (500): oops"),
]


@pytest.mark.parametrize(("raised", "kind", "message"), CASES)
def test_docker_and_os_errors_map_to_one_line_domain_errors(
    raised: Exception, kind: type[ConvocateError], message: str
) -> None:
    """Each failure maps to its domain error with a one-line message and no library text."""
    with pytest.raises(kind) as err, _docker_errors("stop"):
        raise raised
    assert str(err.value) == message
    assert "\n" not in str(err.value)


def test_caller_message_for_missing() -> None:
    """A caller that knows what a 404 means supplies the whole message."""
    with pytest.raises(NotFoundError) as err, _docker_errors("start", missing="push the image"):
        raise DockerError(404, "No such image: x")
    assert str(err.value) == "push the image"
