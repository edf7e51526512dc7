"""The one error that malformed objectives raise, wherever they come from (Python, text or a proto tree)."""

from __future__ import annotations

MAX_ECHO = 200
"""Errors quote user input cut to this many characters, so that hostile input is not echoed whole."""


def clip(text: str, limit: int = MAX_ECHO) -> str:
    """``text`` cut to ``limit`` characters, with a marker when it was longer."""
    return text if len(text) <= limit else text[:limit] + f"...({len(text) - limit} more characters)"


class ObjectiveError(ValueError):
    """A malformed objective. ``field`` names the input at fault when one is known.

    A kind's own check names its attribute (``cosine_power``); the text parser names the text's
    field; the proto conversion names the whole path (``settings.objective.sum.terms[1].scaled.weight``).
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

    def at(self, field: str | None) -> ObjectiveError:
        """The same problem reported at ``field``."""
        return ObjectiveError(str(self), field=field)
