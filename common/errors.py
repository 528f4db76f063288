"""The domain errors and the one table that maps them to and from gRPC status codes.

Every package raises these (or subclasses); servers translate them to a status code in
one interceptor (``common.grpc_server``); on the client side status codes become these
errors in :mod:`common.client` only (through ``from_rpc_error``). Messages are written
for the person who reads them.
"""

from __future__ import annotations

import grpc

__all__ = [
    "AlreadyExistsError",
    "ConvocateError",
    "FailedPreconditionError",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "UnavailableError",
    "from_rpc_error",
    "status_code_for",
]


class ConvocateError(Exception):
    """Base of every error convocate raises on purpose. ``str(err)`` is the message."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidArgumentError(ConvocateError):
    """The request is malformed or a value breaks a rule (name, port, DNS name, ...)."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFoundError(ConvocateError):
    """The named session, agent or image does not exist."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(ConvocateError):
    """A unique value (port, DNS name, id) is already taken."""

    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPreconditionError(ConvocateError):
    """The operation is valid but not in the current state (e.g. restart while running)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class PermissionDeniedError(ConvocateError):
    """The caller may not do this (wrong uid, orphan write, forbidden channel)."""

    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhaustedError(ConvocateError):
    """A limit was hit (no free port, a message too large, a full queue)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class UnavailableError(ConvocateError):
    """A peer (agent, Docker Engine, status service) cannot be reached right now."""

    code = grpc.StatusCode.UNAVAILABLE


# The one table, status code -> domain error. Codes not listed map to ConvocateError.
_BY_CODE: dict[grpc.StatusCode, type[ConvocateError]] = {
    cls.code: cls
    for cls in (
        InvalidArgumentError,
        NotFoundError,
        AlreadyExistsError,
        FailedPreconditionError,
        PermissionDeniedError,
        ResourceExhaustedError,
        UnavailableError,
    )
}
# A deadline or a cancelled call on a dead tunnel is, to the caller, an unreachable peer.
_BY_CODE[grpc.StatusCode.DEADLINE_EXCEEDED] = UnavailableError
_BY_CODE[grpc.StatusCode.OUT_OF_RANGE] = InvalidArgumentError


def status_code_for(err: BaseException) -> grpc.StatusCode:
    """Return the gRPC status code a server sends for ``err``."""
    if isinstance(err, ConvocateError):
        return err.code
    return grpc.StatusCode.INTERNAL


def from_rpc_error(err: grpc.RpcError, *, peer: str = "") -> ConvocateError:
    """Translate a failed call into the domain error the caller handles.

    Args:
        err: the error raised by a grpc.aio call (an ``AioRpcError``).
        peer: a name for the other end (agent id), added to unavailability messages.

    Returns:
        The matching ConvocateError subclass, carrying the server's message.
    """
    code_fn = getattr(err, "code", None)
    details_fn = getattr(err, "details", None)
    code = code_fn() if callable(code_fn) else grpc.StatusCode.UNKNOWN
    details = (details_fn() if callable(details_fn) else None) or str(code)
    cls = _BY_CODE.get(code, ConvocateError)
    if cls is UnavailableError and peer:
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            return UnavailableError(f"agent {peer} did not answer in time")
        return UnavailableError(f"agent {peer} is unreachable: {details}")
    return cls(details)
