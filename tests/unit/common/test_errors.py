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


def test_error_status_is_what_both_transports_send() -> None:
    """A domain error keeps its message; anything else is INTERNAL naming only its type."""
    assert errors.error_status(errors.NotFoundError("gone"), "/m") == ("NOT_FOUND", "gone")
    unexpected = errors.error_status(KeyError("secret detail"), "/m")
    assert unexpected == ("INTERNAL", "internal error in /m: KeyError")


def test_from_status_is_the_same_table_as_from_rpc_error() -> None:
    """A status name and message become the error a failed gRPC call with that code becomes."""
    for code in grpc.StatusCode:
        by_name = errors.from_status(code.name, "m", peer="a1")
        by_rpc = errors.from_rpc_error(_FakeRpcError(code, "m"), peer="a1")
        assert (type(by_name), str(by_name)) == (type(by_rpc), str(by_rpc))
