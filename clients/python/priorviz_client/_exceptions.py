"""Typed errors: one class per gRPC status a caller would handle differently.

Callers catch ``NotFoundError`` to offer another layer name or ``UnavailableError`` to
retry later, rather than inspecting ``grpc.RpcError`` codes themselves. Every server-side
error keeps its status ``code`` and the server's ``details`` message.
"""

from __future__ import annotations

import grpc


class PriorvizError(Exception):
    """Base class of every error this package raises for a call.

    An objective built in Python that is malformed raises ``priorviz_objectives.ObjectiveError``
    (a ValueError, exported here as ``ObjectiveError``) before anything is sent.
    """


class StudyError(PriorvizError):
    """A study cannot run: its spec is malformed, its database holds another study, or no server answers."""


class RpcError(PriorvizError):
    """The server (or the transport) answered with a non-OK status."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, details: str, *, code: grpc.StatusCode | None = None, method: str = "") -> None:
        if code is not None:
            self.code = code
        self.details = details
        self.method = method
        where = f"{method}: " if method else ""
        super().__init__(f"{where}{self.code.name}: {details}")


class InvalidArgumentError(RpcError, ValueError):
    """The request was malformed; the message names the offending field."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFoundError(RpcError, LookupError):
    """An unknown model, layer or prior."""

    code = grpc.StatusCode.NOT_FOUND


class ResourceExhaustedError(RpcError):
    """The server's job queue is full or a size limit was exceeded; try again later or ask for less."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class DeadlineExceededError(RpcError, TimeoutError):
    """The call ran past its deadline; the server stopped the job."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class CancelledError(RpcError):
    """The call was cancelled, by this client or by the server shutting down."""

    code = grpc.StatusCode.CANCELLED


class UnauthenticatedError(RpcError):
    """The server wants a bearer token (``token=``) and got none or a wrong one."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDeniedError(RpcError):
    code = grpc.StatusCode.PERMISSION_DENIED


class UnavailableError(RpcError, ConnectionError):
    """The server cannot be reached or is not serving yet; idempotent calls retry on it."""

    code = grpc.StatusCode.UNAVAILABLE


class FailedPreconditionError(RpcError):
    """The server is in no state to do this (e.g. a prior whose weights are not installed)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class UnimplementedError(RpcError):
    """The server does not offer this method (an older or newer server)."""

    code = grpc.StatusCode.UNIMPLEMENTED


class InternalError(RpcError):
    """The server failed; the details carry its message."""

    code = grpc.StatusCode.INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[RpcError]] = {
    cls.code: cls
    for cls in (
        InvalidArgumentError,
        NotFoundError,
        ResourceExhaustedError,
        DeadlineExceededError,
        CancelledError,
        UnauthenticatedError,
        PermissionDeniedError,
        UnavailableError,
        FailedPreconditionError,
        UnimplementedError,
        InternalError,
    )
}


def error_for_status(code: grpc.StatusCode, details: str, method: str = "") -> RpcError:
    """The typed error for a status code; codes without their own class give ``RpcError``."""
    cls = _BY_CODE.get(code, RpcError)
    return cls(details, code=code, method=method)


def from_rpc_error(error: grpc.RpcError, method: str = "") -> RpcError:
    """Translate what grpc raised (sync or aio) into this package's hierarchy."""
    code = error.code() if callable(getattr(error, "code", None)) else grpc.StatusCode.UNKNOWN
    details = error.details() if callable(getattr(error, "details", None)) else str(error)
    return error_for_status(code or grpc.StatusCode.UNKNOWN, details or "", method)
