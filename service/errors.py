"""The one table from the engine's errors to gRPC status codes.

Validation, the codec and the engine raise ``priorviz.errors`` exceptions (and objectives
``priorviz_objectives.ObjectiveError``) whose class says whose fault an error is and whose
``field`` says where; the server answers every one of them through ``status_of``. An error
that is in no row is a fault of the server: it is logged with its traceback and answered
INTERNAL without its text.
"""

from __future__ import annotations

import grpc

from priorviz.errors import (
    CancelledError,
    ComputationError,
    InvalidInputError,
    NotFoundError,
    PriorUnusableError,
    StoreUnusableError,
    UnavailableError,
)
from priorviz_objectives import ObjectiveError

STATUS_CODES: tuple[tuple[type[Exception], grpc.StatusCode, str | None], ...] = (
    # (error class, status, the field named when the error names none)
    (InvalidInputError, grpc.StatusCode.INVALID_ARGUMENT, None),
    (ObjectiveError, grpc.StatusCode.INVALID_ARGUMENT, None),
    (NotFoundError, grpc.StatusCode.NOT_FOUND, None),
    # A prior the operator registered from a folder that failed to load: the reason says what to fix.
    (PriorUnusableError, grpc.StatusCode.FAILED_PRECONDITION, None),
    # The server's own store folder is unusable: the operator must fix --store-dir.
    (StoreUnusableError, grpc.StatusCode.FAILED_PRECONDITION, None),
    # Weights or packages missing on this server: for its callers the thing is not to be found here.
    (UnavailableError, grpc.StatusCode.NOT_FOUND, None),
    # The request's numbers drove the optimization to NaN or infinity: the caller can change them.
    (ComputationError, grpc.StatusCode.INVALID_ARGUMENT, "settings"),
    (CancelledError, grpc.StatusCode.CANCELLED, None),
)

CLIENT_FAULTS = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND})


def status_of(error: BaseException) -> tuple[grpc.StatusCode, str] | None:
    """The status and details (``field: message``) for an error raised on purpose; None for a server fault."""
    for kind, code, default_field in STATUS_CODES:
        if isinstance(error, kind):
            field = getattr(error, "field", None) or default_field
            return code, f"{field}: {error}" if field else str(error)
    return None
