"""The short text form of objectives, for command lines and the wire: one grammar, built from the kinds.

Grammar (whitespace ignored between tokens)::

    expr   := term (("+" | "-") term)*
    term   := "-" term | NUMBER "*" term | factor ("*" NUMBER | "/" NUMBER)*
    factor := "(" expr ")" | atom
    atom   := LAYER ":" FIRST ".." LAST      channels FIRST..LAST, one per batch image
            | FORM ["#" BATCH]               a form of any kind (``Leaf.forms``); "#" for kinds with a batch

The forms of the built-in kinds: ``LAYER:CHANNEL``, ``channel:LAYER:CHANNEL``,
``neuron:LAYER:CHANNEL[@X,Y]``, ``layer:LAYER``, ``direction:LAYER:V1,V2,...``,
``cosdir[POWER]:LAYER:V1,V2,...``, ``logit:INDEX``, ``prob:INDEX``, ``diversity:LAYER``,
``caricature:LAYER``, ``coscaricature[POWER]:LAYER``.
Examples: ``blocks.10:17``, ``logit:130``, ``neuron:blocks.10:17@7,7``,
``blocks.10:17 - 0.5*blocks.10:3``, ``blocks.10:0..7 + 100*diversity:blocks.10``.
Digits are ASCII digits only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial

from priorviz_objectives.errors import ObjectiveError, clip
from priorviz_objectives.forms import FLAGS, INDEX, LAYER, NUMBER, Form
from priorviz_objectives.kinds import Channel
from priorviz_objectives.tree import Budget, Leaf, Objective, Scaled, Sum, per_batch, value_kinds

MAX_TEXT_LENGTH = 4096
MAX_CHANNEL_RANGE = 256
DEFAULT_MAX_NODES = 100_000
DEFAULT_MAX_DEPTH = 100
"""Default bounds of ``parse_objective``; a server passes its own, smaller ones."""

_BATCH = rf"(?:\s*#\s*(?P<batch>{INDEX}))?"
_RANGE = re.compile(rf"(?P<layer>{LAYER}):(?P<first>{INDEX})\.\.(?P<last>{INDEX}){_BATCH}", FLAGS)
_UNSIGNED = re.compile(NUMBER.removeprefix("[-+]?"), FLAGS)
_SPACE = " \t\n\r\f\v"


@dataclass(frozen=True)
class _Atom:
    """One form of one kind, compiled."""

    kind: type[Leaf]
    form: Form
    pattern: re.Pattern[str]
    lead: re.Pattern[str] | None
    """How the form starts (``neuron:``), for forms that start with a keyword."""


@cache
def _grammar(kinds: tuple[type[Leaf], ...]) -> tuple[_Atom, ...]:
    """The atoms of every kind's forms, keyword forms first (a keyword is never read as a layer name)."""
    atoms = []
    for kind in kinds:
        fields = value_kinds(kind)
        for form in kind.forms:
            pattern = form.pattern(fields) + (_BATCH if kind.has_batch() else "")
            lead = re.compile(form.lead(fields), FLAGS) if form.keyword else None
            atoms.append(_Atom(kind, form, re.compile(pattern, FLAGS), lead))
    return tuple(sorted(atoms, key=lambda atom: atom.lead is None))


def parse_objective(
    text: str,
    *,
    field: str | None = None,
    max_nodes: int = DEFAULT_MAX_NODES,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> Objective:
    """Read the text form; raises ObjectiveError naming ``field``, the column and what was expected."""
    if not isinstance(text, str):
        raise ObjectiveError(f"objective text must be a string, got {clip(repr(text))}", field=field)
    if len(text) > MAX_TEXT_LENGTH:
        raise ObjectiveError(f"objective text is longer than {MAX_TEXT_LENGTH} characters ({len(text)})", field=field)
    parser = _Parser(text, field, max_depth)
    objective = parser.expr(1)
    parser.skip_space()
    if parser.pos != len(text):
        raise parser.expected("'+', '-' or the end")
    Budget(max_nodes, max_depth, field).check(objective)
    return objective


class _Parser:
    def __init__(self, text: str, field: str | None, max_depth: int) -> None:
        self.text, self.field, self.max_depth = text, field, max_depth
        self.pos = 0

    def expected(self, what: str, position: int | None = None) -> ObjectiveError:
        """The error saying what was expected at ``position`` (the current one by default)."""
        position = self.pos if position is None else position
        found = repr(self.text[position : position + 12]) if position < len(self.text) else "the end"
        return ObjectiveError(
            f"objective {clip(self.text)!r}: expected {what} at column {position + 1}, found {found}",
            field=self.field,
        )

    def build(self, position: int, make: Callable[[], Objective]) -> Objective:
        """``make()``, its ObjectiveError reported at ``position`` of the text."""
        try:
            return make()
        except ObjectiveError as error:
            raise ObjectiveError(
                f"objective {clip(self.text)!r}: {error} (column {position + 1})", field=self.field
            ) from None

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _SPACE:
            self.pos += 1

    def peek(self) -> str:
        self.skip_space()
        return self.text[self.pos : self.pos + 1]

    def deeper(self, depth: int) -> int:
        if depth >= self.max_depth:
            raise ObjectiveError(f"the objective is nested deeper than {self.max_depth} levels", field=self.field)
        return depth + 1

    def expr(self, depth: int) -> Objective:
        start = self.pos
        terms = [self.term(depth)]
        while self.peek() in ("+", "-") and self.peek():
            sign, at = self.text[self.pos], self.pos
            self.pos += 1
            term = self.term(depth)
            terms.append(term if sign == "+" else self.build(at, partial(Scaled, term, -1.0)))
        return terms[0] if len(terms) == 1 else self.build(start, partial(Sum, tuple(terms)))

    def term(self, depth: int) -> Objective:
        start = self.pos
        if self.peek() == "-":
            self.pos += 1
            inner = self.term(self.deeper(depth))
            return self.build(start, partial(Scaled, inner, -1.0))
        weight = self.number_prefix()
        if weight is not None:
            inner = self.term(self.deeper(depth))
            return self.build(start, partial(Scaled, inner, weight))
        objective = self.factor(depth)
        while self.peek() in ("*", "/") and self.peek():
            operator, at = self.text[self.pos], self.pos
            self.pos += 1
            self.skip_space()
            number_at = self.pos
            value = self.number()
            if operator == "/" and value == 0:
                raise self.expected("a non-zero divisor", number_at)
            scale = value if operator == "*" else 1.0 / value
            objective = self.build(at, partial(Scaled, objective, scale))
        return objective

    def number_prefix(self) -> float | None:
        """A leading ``NUMBER *``, or None (leaving the position untouched)."""
        start = self.pos
        match = _UNSIGNED.match(self.text, self.pos)
        if not match:
            return None
        self.pos = match.end()
        if self.peek() != "*":
            self.pos = start
            return None
        self.pos += 1
        return float(match.group())

    def number(self) -> float:
        match = _UNSIGNED.match(self.text, self.pos)
        if not match:
            raise self.expected("a number")
        self.pos = match.end()
        return float(match.group())

    def factor(self, depth: int) -> Objective:
        if self.peek() == "(":
            self.pos += 1
            inner = self.expr(self.deeper(depth))
            if self.peek() != ")":
                raise self.expected("')'")
            self.pos += 1
            return inner
        return self.atom()

    def atom(self) -> Objective:
        self.skip_space()
        start = self.pos
        grammar = _grammar(Leaf.kinds())
        keyworded = [atom for atom in grammar if atom.lead is not None and atom.lead.match(self.text, start)]
        if not keyworded:
            ranged = _RANGE.match(self.text, start)
            if ranged:
                return self.channel_range(ranged)
        for atom in keyworded or [atom for atom in grammar if atom.lead is None]:
            match = atom.pattern.match(self.text, start)
            if match:
                self.pos = match.end()
                values = atom.form.read(match, value_kinds(atom.kind))
                batch = match.group("batch") if atom.kind.has_batch() else None
                if batch is not None:
                    values["batch"] = int(batch)
                return self.build(start, partial(atom.kind, **values))
        if keyworded:
            forms = " or ".join(repr(_help(atom)) for atom in keyworded)
            raise self.expected(forms)
        raise self.expected("an objective such as 'blocks.10:17', 'logit:130' or 'neuron:blocks.10:17@7,7'")

    def channel_range(self, match: re.Match[str]) -> Objective:
        first, last = int(match.group("first")), int(match.group("last"))
        if last < first or last - first >= MAX_CHANNEL_RANGE or match.group("batch") is not None:
            raise self.expected(
                f"a range FIRST..LAST of at most {MAX_CHANNEL_RANGE} channels, without '#'", match.start()
            )
        self.pos = match.end()
        layer = match.group("layer")
        return self.build(
            match.start(), lambda: per_batch([Channel(layer, channel) for channel in range(first, last + 1)])
        )


def _help(atom: _Atom) -> str:
    return atom.form.help(value_kinds(atom.kind)) + ("[#BATCH]" if atom.kind.has_batch() else "")
