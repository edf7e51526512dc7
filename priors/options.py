"""Prior options declared once: type, default, range and help, parsed strictly.

A prior declares its options as ``Option`` values in its ``PriorInfo``. The same declaration
gives the help text that ListPriors shows and the parser that turns a request's text (or a
Python caller's values) into typed values before any job starts: a bool is ``true`` or
``false``, a number is finite and inside its range, text is one of its choices, and an
unknown key is an error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

MAX_OPTION_TEXT = 64
"""Longest option value accepted as text: no number needs more."""

_INTEGER = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class OptionError(ValueError):
    """A prior option that is unknown or whose value does not parse or is out of range."""

    def __init__(self, option: str, problem: str) -> None:
        self.option = option
        super().__init__(f"option {option[:64]!r}: {problem}")


@dataclass(frozen=True)
class Option:
    """One option of a prior. ``kind`` is bool, int, float or str."""

    name: str
    kind: type
    default: bool | int | float | str
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()

    def describe(self) -> str:
        """The one line ListPriors shows: meaning, type, range and default."""
        if self.kind is bool:
            kind = "true or false"
        elif self.choices:
            kind = "one of " + ", ".join(self.choices)
        else:
            kind = f"{self.kind.__name__} in [{_number(self.minimum)}, {_number(self.maximum)}]"
        default = str(self.default).lower() if self.kind is bool else str(self.default)
        return f"{self.help} ({kind}; default {default})"

    def parse(self, value: object) -> bool | int | float | str:
        """``value`` (text from the wire, or a Python value) as this option's type, checked."""
        if isinstance(value, str):
            value = self._from_text(value)
        if self.kind is bool:
            if not isinstance(value, bool):
                raise OptionError(self.name, f"must be true or false, got {_shown(value)}")
            return value
        if self.kind is str:
            if not isinstance(value, str) or (self.choices and value not in self.choices):
                raise OptionError(self.name, f"must be one of {', '.join(self.choices)}, got {_shown(value)}")
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise OptionError(self.name, f"must be a number, got {_shown(value)}")
        if self.kind is int and not float(value).is_integer():
            raise OptionError(self.name, f"must be an integer, got {_shown(value)}")
        number = float(value)
        if not math.isfinite(number):
            raise OptionError(self.name, f"must be finite, got {_shown(value)}")
        if (self.minimum is not None and number < self.minimum) or (self.maximum is not None and number > self.maximum):
            raise OptionError(
                self.name, f"must be within [{_number(self.minimum)}, {_number(self.maximum)}], got {_shown(value)}"
            )
        return int(number) if self.kind is int else number

    def _from_text(self, text: str) -> object:
        if len(text) > MAX_OPTION_TEXT:
            raise OptionError(self.name, f"values are at most {MAX_OPTION_TEXT} characters, got {len(text)}")
        if self.kind is str:
            return text
        stripped = text.strip()
        if self.kind is bool:
            if stripped.lower() not in ("true", "false"):
                raise OptionError(self.name, f"must be true or false, got {_shown(text)}")
            return stripped.lower() == "true"
        pattern = _INTEGER if self.kind is int else _FLOAT
        if not pattern.fullmatch(stripped):
            raise OptionError(
                self.name, f"must be {'an integer' if self.kind is int else 'a number'}, got {_shown(text)}"
            )
        return int(stripped) if self.kind is int else float(stripped)


def parse_options(declared: Sequence[Option], given: Mapping[str, object]) -> dict[str, bool | int | float | str]:
    """Every declared option, typed: the given value parsed, or the default. Unknown keys are refused."""
    by_name = {option.name: option for option in declared}
    unknown = sorted(set(given) - set(by_name))
    if unknown:
        takes = ", ".join(sorted(by_name)) or "no options"
        raise OptionError(unknown[0], f"unknown option; this prior takes {takes}")
    return {name: option.parse(given[name]) if name in given else option.default for name, option in by_name.items()}


def _number(value: float | None) -> str:
    if value is None:
        return "any"
    return str(int(value)) if float(value).is_integer() else repr(value)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."
