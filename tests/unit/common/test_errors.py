"""The one table between domain errors and gRPC status codes."""

from __future__ import annotations

import grpc
import pytest

from common import errors


class _FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (errors.InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT),
        (errors.NotFoundError, grpc.StatusCode.NOT_FOUND),
        (errors.AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
        (errors.FailedPreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
        (errors.PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
        (errors.ResourceExhaustedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.UnavailableError, grpc.StatusCode.UNAVAILABLE),
    ],
)
def test_round_trip(cls: type[errors.ConvocateError], code: grpc.StatusCode) -> None:
    """Each domain error maps to its code and back to the same class and message."""
    assert errors.status_code_for(cls("m")) is code
    back = errors.from_rpc_error(_FakeRpcError(code, "the message"))
    assert type(back) is cls
    assert str(back) == "the message"


def test_unexpected_exception_is_internal() -> None:
    """A non-domain exception is INTERNAL."""
    assert errors.status_code_for(ValueError("x")) is grpc.StatusCode.INTERNAL


def test_deadline_names_the_peer() -> None:
    """A deadline on a call to an agent reads as that agent not answering."""
    err = errors.from_rpc_error(_FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline"), peer="a1")
    assert isinstance(err, errors.UnavailableError)
    assert str(err) == "agent a1 did not answer in time"


def test_unknown_code_is_base_error() -> None:
    """Codes outside the table become the base ConvocateError with the server's text."""
    err = errors.from_rpc_error(_FakeRpcError(grpc.StatusCode.DATA_LOSS, "lost"))
    assert type(err) is errors.ConvocateError
    assert str(err) == "lost"
