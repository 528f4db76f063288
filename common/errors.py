"""The domain errors and the one table that maps them to and from gRPC status codes.

Every package raises these (or subclasses); servers translate them to a status code in
one interceptor (``common.grpc_server``); on the client side status codes become these
errors in :mod:`common.client` only (through ``from_rpc_error``). Messages are written
for the person who reads them.

gRPC is imported only where a status code object is needed (``status_code_for``): a
command that raises or catches these errors without making a call stays free of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
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

    status: ClassVar[str] = "INTERNAL"  # the name of its gRPC status code


class InvalidArgumentError(ConvocateError):
    """The request is malformed or a value breaks a rule (name, port, DNS name, ...)."""

    status = "INVALID_ARGUMENT"


class NotFoundError(ConvocateError):
    """The named session, agent or image does not exist."""

    status = "NOT_FOUND"


class AlreadyExistsError(ConvocateError):
    """A unique value (port, DNS name, id) is already taken."""

    status = "ALREADY_EXISTS"


class FailedPreconditionError(ConvocateError):
    """The operation is valid but not in the current state (e.g. restart while running)."""

    status = "FAILED_PRECONDITION"


class PermissionDeniedError(ConvocateError):
    """The caller may not do this (wrong uid, orphan write, forbidden channel)."""

    status = "PERMISSION_DENIED"


class ResourceExhaustedError(ConvocateError):
    """A limit was hit (no free port, a message too large, a full queue)."""

    status = "RESOURCE_EXHAUSTED"


class UnavailableError(ConvocateError):
    """A peer (agent, Docker Engine, status service) cannot be reached right now."""

    status = "UNAVAILABLE"


# The one table, status code name -> domain error. Codes not listed map to ConvocateError.
_BY_STATUS: dict[str, type[ConvocateError]] = {
    cls.status: cls
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
_BY_STATUS["DEADLINE_EXCEEDED"] = UnavailableError
_BY_STATUS["OUT_OF_RANGE"] = InvalidArgumentError


def status_code_for(err: BaseException) -> grpc.StatusCode:
    """Return the gRPC status code a server sends for ``err``."""
    import grpc  # noqa: PLC0415 - see the module docstring

    return grpc.StatusCode[err.status if isinstance(err, ConvocateError) else "INTERNAL"]


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
    code = code_fn() if callable(code_fn) else None
    name = getattr(code, "name", "UNKNOWN")  # a grpc.StatusCode member
    details = (details_fn() if callable(details_fn) else None) or f"StatusCode.{name}"
    cls = _BY_STATUS.get(name, ConvocateError)
    if cls is UnavailableError and peer:
        if name == "DEADLINE_EXCEEDED":
            return UnavailableError(f"agent {peer} did not answer in time")
        return UnavailableError(f"agent {peer} is unreachable: {details}")
    return cls(details)
