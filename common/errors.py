"""The domain errors and the one table that maps them to and from gRPC status codes.

Every package raises these (or subclasses); servers translate them to a status name and
message here (``error_status``: the gRPC interceptor in ``common.grpc_server`` and the agent's
attach channel both send that pair), and on the client side a status becomes one of these
errors here too (``from_status``; ``from_rpc_error`` for a failed gRPC call), called from
:mod:`common.client` only. Messages are written for the person who reads them.

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
    "error_status",
    "from_rpc_error",
    "from_status",
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


def error_status(err: BaseException, where: str) -> tuple[str, str]:
    """The status name and message a server sends for ``err``, raised while serving ``where``.

    A domain error keeps its own message; anything else is ``INTERNAL`` naming only its
    type (its details and traceback stay in the server's log, for the server to write).
    """
    if isinstance(err, ConvocateError):
        return err.status, str(err)
    return "INTERNAL", f"internal error in {where}: {type(err).__name__}"


def status_code_for(err: BaseException) -> grpc.StatusCode:
    """Return the gRPC status code a server sends for ``err``."""
    import grpc  # noqa: PLC0415 - see the module docstring

    return grpc.StatusCode[err.status if isinstance(err, ConvocateError) else "INTERNAL"]


def from_status(name: str, details: str, *, peer: str = "") -> ConvocateError:
    """The domain error a client raises for a call that failed with status ``name``.

    Args:
        name: the status code's name (``NOT_FOUND``; unknown names give the base error).
        details: the server's message.
        peer: a name for the other end (agent id), added to unavailability messages.
    """
    details = details or f"StatusCode.{name}"
    cls = _BY_STATUS.get(name, ConvocateError)
    if cls is UnavailableError and peer:
        if name == "DEADLINE_EXCEEDED":
            return UnavailableError(f"agent {peer} did not answer in time")
        return UnavailableError(f"agent {peer} is unreachable: {details}")
    return cls(details)


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
    return from_status(name, (details_fn() if callable(details_fn) else None) or "", peer=peer)
