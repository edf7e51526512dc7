"""Text forms of objective kinds: one template per form, read in both directions (parse and write).

A kind declares its forms, e.g. ``Form("neuron:{layer}:{channel}[@{x},{y}]")``; the grammar of the
text form (``priorviz_objectives.text``) is built from them, and ``to_text`` writes with them, so a
new kind brings its own syntax and nothing else changes. ``{name}`` is a field of the kind, read
and written by the field's type (a layer name, a non-negative integer, a number, a vector of
numbers); ``[...]`` is an optional group, written when every field inside it is set.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

ValueKind = Literal["layer", "index", "number", "vector"]

LAYER = r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*(?:/input)?"
"""A module path as torch names it (``blocks.10``, ``features.4.0``), or a module's input (``blocks.3/input``)."""
INDEX = r"[0-9]+"
NUMBER = r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
VECTOR = rf"{NUMBER}(?:\s*,\s*{NUMBER})*"
TOKENS: Mapping[ValueKind, str] = {"layer": LAYER, "index": INDEX, "number": NUMBER, "vector": VECTOR}
FLAGS = re.ASCII
"""ASCII digits only: a digit of another script (which Python's ``int`` would read) is not a digit here."""

_TEMPLATE_PART = re.compile(r"\{(\w+)\}|\[|\]|[^{}\[\]]+")

Part = str | tuple[str] | list["Part"]
"""A literal (str), a field (a 1-tuple holding its name) or an optional group (a list of parts)."""


def format_number(value: float) -> str:
    """Whole numbers below 1e16 without a decimal point, anything else as ``repr`` writes it: both read back exactly."""
    number = float(value)
    return repr(int(number)) if number.is_integer() and abs(number) < 1e16 else repr(number)


def _parse_template(template: str) -> list[Part]:
    parts: list[Part] = []
    group: list[Part] | None = None
    for match in _TEMPLATE_PART.finditer(template):
        token = match.group()
        target = parts if group is None else group
        if token == "[":
            if group is not None:
                raise ValueError(f"form {template!r}: optional groups do not nest")
            group = []
        elif token == "]":
            if group is None:
                raise ValueError(f"form {template!r}: ']' without '['")
            parts.append(group)
            group = None
        elif match.group(1):
            target.append((match.group(1),))
        else:
            target.append(token)
    if group is not None:
        raise ValueError(f"form {template!r}: '[' without ']'")
    return parts


def _names(parts: list[Part]) -> list[str]:
    names: list[str] = []
    for part in parts:
        if isinstance(part, tuple):
            names.append(part[0])
        elif isinstance(part, list):
            names.extend(_names(part))
    return names


class Form:
    """One way to write a kind, e.g. ``Form("cosdir[{cosine_power}]:{layer}:{vector}", cosine_power=1.0)``.

    ``implied`` gives the values of fields that the text leaves out (an optional group not written,
    or a field the template does not mention). A form writes an objective only when the objective
    agrees with the implied values of the fields the template does not mention, so that
    ``Form("direction:{layer}:{vector}", cosine_power=0.0)`` writes plain directions only.
    """

    def __init__(self, template: str, **implied: object) -> None:
        self.template = template
        self.implied = implied
        self._parts = _parse_template(template)
        self.fields = tuple(_names(self._parts))

    @property
    def keyword(self) -> str | None:
        """The literal word the form starts with (``neuron``), or None for a form that starts with a field."""
        first = self._parts[0] if self._parts else None
        word = re.match(r"[A-Za-z_]+", first) if isinstance(first, str) else None
        return word.group() if word else None

    def pattern(self, kinds: Mapping[str, ValueKind]) -> str:
        """The regular expression of the whole form, one named group per field."""
        return self._regex(self._parts, kinds)

    def lead(self, kinds: Mapping[str, ValueKind]) -> str:
        """The regular expression of the form up to its first ':' (``neuron:``, ``cosdir(NUMBER)?:``)."""
        lead: list[Part] = []
        for part in self._parts:
            if isinstance(part, str) and ":" in part:
                lead.append(part[: part.index(":") + 1])
                break
            lead.append(part)
        return self._regex(lead, kinds, named=False)

    def _regex(self, parts: list[Part], kinds: Mapping[str, ValueKind], named: bool = True) -> str:
        pieces = []
        for part in parts:
            if isinstance(part, str):
                pieces.append(re.escape(part))
            elif isinstance(part, tuple):
                token = TOKENS[kinds[part[0]]]
                pieces.append(f"(?P<{part[0]}>{token})" if named else f"(?:{token})")
            else:
                pieces.append(f"(?:{self._regex(part, kinds, named)})?")
        return "".join(pieces)

    def read(self, match: re.Match[str], kinds: Mapping[str, ValueKind]) -> dict[str, object]:
        """Field values from a match of ``pattern``; fields left out take their implied values, if any."""
        values: dict[str, object] = dict(self.implied)
        for name in self.fields:
            text = match.group(name)
            if text is not None:
                values[name] = _read_value(kinds[name], text)
        return values

    def write(self, values: Mapping[str, object], kinds: Mapping[str, ValueKind]) -> str | None:
        """The text of an objective with these field values, or None when this form cannot write it."""
        for name, implied in self.implied.items():
            if name not in self.fields and values[name] != implied:
                return None
        return self._write(self._parts, values, kinds)

    def _write(self, parts: list[Part], values: Mapping[str, object], kinds: Mapping[str, ValueKind]) -> str:
        text = []
        for part in parts:
            if isinstance(part, str):
                text.append(part)
            elif isinstance(part, tuple):
                text.append(_write_value(kinds[part[0]], values[part[0]]))
            elif all(values[name] is not None for name in _names(part)):
                text.append(self._write(part, values, kinds))
        return "".join(text)

    def help(self, kinds: Mapping[str, ValueKind]) -> str:
        """The form as a user reads it: ``neuron:LAYER:CHANNEL[@X,Y]``."""
        return self._help(self._parts, kinds)

    def _help(self, parts: list[Part], kinds: Mapping[str, ValueKind]) -> str:
        text = []
        for part in parts:
            if isinstance(part, str):
                text.append(part)
            elif isinstance(part, tuple):
                text.append("V1,V2,..." if kinds[part[0]] == "vector" else part[0].upper())
            else:
                text.append(f"[{self._help(part, kinds)}]")
        return "".join(text)


def _read_value(kind: ValueKind, text: str) -> object:
    if kind == "layer":
        return text
    if kind == "index":
        return int(text)
    if kind == "number":
        return float(text)
    return tuple(float(component) for component in text.split(","))


def _write_value(kind: ValueKind, value: object) -> str:
    if kind == "number" and isinstance(value, float):
        return format_number(value)
    if kind == "vector" and isinstance(value, tuple):
        return ",".join(format_number(component) for component in value)
    return str(value)
