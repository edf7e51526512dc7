"""The short text form of objectives, for command lines and the wire.

Grammar (whitespace ignored between tokens)::

    expr   := term (("+" | "-") term)*
    term   := "-" term | NUMBER "*" term | factor ("*" NUMBER | "/" NUMBER)*
    factor := "(" expr ")" | atom
    atom   := LAYER ":" CH [".." CH] ["#" B]        channel (a range: one channel per batch element)
            | "channel:" LAYER ":" CH ["#" B]
            | "neuron:" LAYER ":" CH ["@" X "," Y] ["#" B]
            | "layer:" LAYER ["#" B]                 DeepDream
            | "direction:" LAYER ":" V ("," V)* ["#" B]
            | "cosdir" [POWER] ":" LAYER ":" V ("," V)* ["#" B]
            | "logit:" K ["#" B] | "prob:" K ["#" B]
            | "diversity:" LAYER

Examples: ``blocks.10:17``, ``logit:130``, ``neuron:blocks.10:17@7,7``,
``blocks.10:17 - 0.5*blocks.10:3``, ``blocks.10:0..7 + 100*diversity:blocks.10``.
"""

from __future__ import annotations

import re

from priorviz.errors import InvalidInputError
from priorviz.objectives import (
    Channel,
    ClassLogit,
    ClassProbability,
    Direction,
    Diversity,
    Layer,
    Neuron,
    Objective,
    Scaled,
    Sum,
)

MAX_TEXT_LENGTH = 4096
MAX_CHANNEL_RANGE = 256


class ObjectiveSyntaxError(InvalidInputError):
    """Malformed objective text; the message names the column and what was expected."""

    def __init__(self, text: str, position: int, expected: str) -> None:
        self.text, self.position = text, position
        found = repr(text[position:position + 12]) if position < len(text) else "the end"
        super().__init__(f"objective {text!r}: expected {expected} at column {position + 1}, found {found}")


_LAYER = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*(?:/input)?"
_INT = r"\d+"
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_VECTOR = rf"{_NUMBER}(?:\s*,\s*{_NUMBER})*"
_BATCH = rf"(?:\s*#\s*(?P<batch>{_INT}))?"

_ATOMS: list[tuple[str, re.Pattern[str]]] = [
    ("neuron", re.compile(rf"neuron:(?P<layer>{_LAYER}):(?P<ch>{_INT})(?:@(?P<x>{_INT}),(?P<y>{_INT}))?{_BATCH}")),
    ("channel", re.compile(rf"channel:(?P<layer>{_LAYER}):(?P<ch>{_INT}){_BATCH}")),
    ("layer", re.compile(rf"layer:(?P<layer>{_LAYER}){_BATCH}")),
    ("direction", re.compile(rf"direction:(?P<layer>{_LAYER}):(?P<vector>{_VECTOR}){_BATCH}")),
    ("cosdir", re.compile(rf"cosdir(?P<power>{_NUMBER})?:(?P<layer>{_LAYER}):(?P<vector>{_VECTOR}){_BATCH}")),
    ("logit", re.compile(rf"logit:(?P<index>{_INT}){_BATCH}")),
    ("prob", re.compile(rf"prob:(?P<index>{_INT}){_BATCH}")),
    ("diversity", re.compile(rf"diversity:(?P<layer>{_LAYER})")),
    ("range", re.compile(rf"(?P<layer>{_LAYER}):(?P<ch>{_INT})(?:\.\.(?P<last>{_INT}))?{_BATCH}")),
]
_KEYWORDS = ("neuron", "channel", "layer", "direction", "cosdir", "logit", "prob", "diversity")
_NUMBER_RE = re.compile(_NUMBER.removeprefix("[-+]?"))
_SPACE = re.compile(r"\s*")


def parse_objective(text: str) -> Objective:
    """Parse the text form into an ``Objective``; raises ObjectiveSyntaxError."""
    if len(text) > MAX_TEXT_LENGTH:
        raise ObjectiveSyntaxError(text[:40] + "...", 0, f"at most {MAX_TEXT_LENGTH} characters")
    parser = _Parser(text)
    objective = parser.expr()
    parser.skip_space()
    if parser.pos != len(text):
        parser.fail("'+', '-' or the end")
    return objective


class _Parser:
    def __init__(self, text: str) -> None:
        self.text, self.pos = text, 0

    def fail(self, expected: str) -> None:
        raise ObjectiveSyntaxError(self.text, self.pos, expected)

    def skip_space(self) -> None:
        self.pos = _SPACE.match(self.text, self.pos).end()

    def peek(self) -> str:
        self.skip_space()
        return self.text[self.pos:self.pos + 1]

    def expr(self) -> Objective:
        terms = [self.term()]
        while self.peek() in ("+", "-") and self.peek():
            sign = self.text[self.pos]
            self.pos += 1
            term = self.term()
            terms.append(term if sign == "+" else Scaled(term, -1.0))
        return terms[0] if len(terms) == 1 else Sum(tuple(terms))

    def term(self) -> Objective:
        if self.peek() == "-":
            self.pos += 1
            return Scaled(self.term(), -1.0)
        weight = self.number_prefix()
        if weight is not None:
            return Scaled(self.term(), weight)
        objective = self.factor()
        while self.peek() in ("*", "/") and self.peek():
            operator = self.text[self.pos]
            self.pos += 1
            self.skip_space()
            start = self.pos
            value = self.number()
            if operator == "/" and value == 0:
                self.pos = start
                self.fail("a non-zero divisor")
            objective = Scaled(objective, value if operator == "*" else 1.0 / value)
        return objective

    def number_prefix(self) -> float | None:
        """A leading ``NUMBER *``, or None (leaving the position untouched)."""
        start = self.pos
        match = _NUMBER_RE.match(self.text, self.pos)
        if not match:
            return None
        self.pos = match.end()
        if self.peek() != "*":
            self.pos = start
            return None
        self.pos += 1
        return float(match.group())

    def number(self) -> float:
        match = _NUMBER_RE.match(self.text, self.pos)
        if not match:
            self.fail("a number")
        self.pos = match.end()
        return float(match.group())

    def factor(self) -> Objective:
        if self.peek() == "(":
            self.pos += 1
            inner = self.expr()
            if self.peek() != ")":
                self.fail("')'")
            self.pos += 1
            return inner
        return self.atom()

    def atom(self) -> Objective:
        self.skip_space()
        for kind, pattern in _ATOMS:
            if kind == "range" and self._starts_with_keyword():
                break
            match = pattern.match(self.text, self.pos)
            if match:
                self.pos = match.end()
                return _build(kind, match)
        keyword = self._starts_with_keyword()
        if keyword:
            self.fail(_ATOM_HELP[keyword])
        self.fail("an objective such as 'blocks.10:17', 'logit:130' or 'neuron:blocks.10:17@7,7'")
        raise AssertionError("unreachable")

    def _starts_with_keyword(self) -> str | None:
        for keyword in _KEYWORDS:
            if re.match(rf"{keyword}(?:{_NUMBER})?:", self.text[self.pos:]):
                return keyword
        return None


_ATOM_HELP = {
    "neuron": "'neuron:LAYER:CHANNEL[@X,Y][#BATCH]'",
    "channel": "'channel:LAYER:CHANNEL[#BATCH]'",
    "layer": "'layer:LAYER[#BATCH]'",
    "direction": "'direction:LAYER:V1,V2,...[#BATCH]'",
    "cosdir": "'cosdir[POWER]:LAYER:V1,V2,...[#BATCH]'",
    "logit": "'logit:CLASS[#BATCH]'",
    "prob": "'prob:CLASS[#BATCH]'",
    "diversity": "'diversity:LAYER'",
}


def _build(kind: str, match: re.Match[str]) -> Objective:
    groups = match.groupdict()
    batch = int(groups["batch"]) if groups.get("batch") is not None else None
    if kind == "neuron":
        x = int(groups["x"]) if groups["x"] is not None else None
        y = int(groups["y"]) if groups["y"] is not None else None
        return Neuron(groups["layer"], int(groups["ch"]), x, y, batch)
    if kind == "channel":
        return Channel(groups["layer"], int(groups["ch"]), batch)
    if kind == "layer":
        return Layer(groups["layer"], batch)
    if kind in ("direction", "cosdir"):
        vector = tuple(float(v) for v in groups["vector"].split(","))
        power = 0.0 if kind == "direction" else float(groups["power"] or 1.0)
        return Direction(groups["layer"], vector, power, batch)
    if kind == "logit":
        return ClassLogit(int(groups["index"]), batch)
    if kind == "prob":
        return ClassProbability(int(groups["index"]), batch)
    if kind == "diversity":
        return Diversity(groups["layer"])
    first = int(groups["ch"])
    if groups["last"] is None:
        return Channel(groups["layer"], first, batch)
    last = int(groups["last"])
    if last < first or last - first >= MAX_CHANNEL_RANGE or batch is not None:
        raise ObjectiveSyntaxError(match.string, match.start(), f"a range FIRST..LAST of at most {MAX_CHANNEL_RANGE} channels, without '#'")
    return Sum(tuple(Channel(groups["layer"], channel, index) for index, channel in enumerate(range(first, last + 1))))
