"""The engine's one error hierarchy.

Every error the engine raises on purpose is a ``PriorvizError``; its class says whose fault it
is (the caller's input, something missing, something not installed here, a computation that
went wrong), so that a front end (the gRPC service, a CLI) maps classes to answers in one
table instead of guessing from messages. ``field`` names the input at fault when one is known.

Objectives themselves are defined in the standard-library-only ``priorviz_objectives`` package,
shared with the client SDK; a malformed one raises its ``ObjectiveError``, a ValueError with the
same ``field``, which front ends treat as invalid input.
"""

from __future__ import annotations

MAX_ECHO = 200
"""Errors quote user input cut to this many characters, so that hostile input is not echoed whole."""


def clip_text(text: str, limit: int = MAX_ECHO) -> str:
    """``text`` cut to ``limit`` characters, with a marker when it was longer."""
    return text if len(text) <= limit else text[:limit] + f"...({len(text) - limit} more characters)"


class PriorvizError(Exception):
    """Base of every error the engine raises on purpose."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class InvalidInputError(PriorvizError, ValueError):
    """The caller's input is malformed or out of range."""


class NotFoundError(PriorvizError, LookupError):
    """A named thing (model, layer, prior, file) does not exist here."""


class UnavailableError(PriorvizError, RuntimeError):
    """The thing exists but cannot be used here now (weights not installed, no download)."""


class PriorUnusableError(UnavailableError):
    """A registered prior that cannot be used as it stands (a generator folder that failed to load); the message
    says why, so the operator knows what to fix."""


class StoreUnusableError(PriorvizError, OSError):
    """The server's on-disk store cannot be opened (a --store-dir that is not a writable folder); the
    message names the folder, so the operator knows what to fix."""


class ComputationError(PriorvizError, ArithmeticError):
    """A computation failed on valid input, e.g. an objective that became NaN or infinite."""


class CancelledError(PriorvizError):
    """The work was asked to stop."""
