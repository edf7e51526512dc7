"""Objectives as frozen data: the base class and its algebra, sums and weights, the checks every kind
shares, and the one walker over a tree.

A kind is a ``Leaf`` subclass (a frozen dataclass) whose field types say how each field is checked
and written: ``str`` a layer name, ``int`` a non-negative int32, ``float`` a finite number (inside the
range ``within`` gives it), ``tuple[float, ...]`` a vector; ``X | None`` an optional field. Objectives are
evaluated in float32, so every number, and every product of weights from the root down to a term,
must be a finite float32.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import ClassVar, NamedTuple

from priorviz_objectives.errors import ObjectiveError, clip
from priorviz_objectives.forms import FLAGS, LAYER, Form, ValueKind, format_number

LOGITS = "logits"
"""The classifier's output, as a layer name."""
INT32_MAX = 2**31 - 1
"""Indices cross the wire as int32."""
FLOAT32_MAX = 3.4028234663852886e38
MAX_LAYER_NAME = 256
MAX_VECTOR = 65_536
"""Components of a direction: far more channels than any layer has."""

_LAYER_NAME = re.compile(LAYER, FLAGS)


def within(default: float, low: float, high: float) -> float:
    """A number field with its default and its range, e.g. ``cosine_power: float = within(0.0, 0, 16)``."""
    return field(default=default, metadata={"range": (low, high)})


class Objective(ABC):
    """Something to maximize, one value per batch image; combine with ``+ - * /`` and unary ``-``.

    An objective says what to compute, not how: the engine (``priorviz.objectives``) holds one
    evaluator per kind, and this package reads and writes the text form and the proto tree.
    """

    @abstractmethod
    def layers(self) -> frozenset[str]:
        """Names of the activations the objective reads (layer names, or ``logits``)."""

    @abstractmethod
    def to_text(self) -> str:
        """The short text form, which ``parse_objective`` reads back."""

    def largest_weight(self) -> float:
        """The largest magnitude of a product of weights from here down to a term."""
        return 1.0

    def __str__(self) -> str:
        return self.to_text()

    def __add__(self, other: object) -> Objective:
        if not isinstance(other, Objective):
            return NotImplemented
        return Sum((self, other))

    def __sub__(self, other: object) -> Objective:
        if not isinstance(other, Objective):
            return NotImplemented
        return Sum((self, Scaled(other, -1.0)))

    def __mul__(self, weight: object) -> Objective:
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            return NotImplemented
        return Scaled(self, weight)

    __rmul__ = __mul__

    def __truediv__(self, divisor: object) -> Objective:
        if isinstance(divisor, bool) or not isinstance(divisor, int | float):
            return NotImplemented
        if divisor == 0:
            raise ObjectiveError("objective divided by zero")
        return Scaled(self, 1.0 / divisor)

    def __neg__(self) -> Objective:
        return Scaled(self, -1.0)


@dataclass(frozen=True)
class LeafField:
    """One field of a kind, as its type declares it."""

    name: str
    kind: ValueKind
    optional: bool
    range: tuple[float, float] | None


@dataclass(frozen=True)
class Leaf(Objective):
    """A term the engine evaluates directly. Each subclass, a frozen dataclass, is one kind.

    Field names mean the same in every kind wherever a model is known: ``layer`` is a layer of
    the model, ``channel`` one of that layer's channels, ``index`` a class, ``vector`` has one
    component per channel of ``layer``, and ``batch`` restricts the term to one batch image (a
    kind without ``batch`` is batch-wide). On the wire a kind is the ``Objective.kind`` oneof
    field named after it in snake case (``ClassLogit``: ``class_logit``) holding a message with
    the same field names; ``batch`` is ``Objective.batch_index``.
    """

    forms: ClassVar[tuple[Form, ...]]
    """The kind's text forms; the first that can write an objective writes it."""
    min_batch: ClassVar[int] = 1
    """The fewest batch images for which the term means something."""
    needs_init_image: ClassVar[bool] = False
    """True for a term that compares the image with the request's init_image photograph."""
    _kinds: ClassVar[list[type[Leaf]]] = []

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        Leaf._kinds.append(cls)

    @staticmethod
    def kinds() -> tuple[type[Leaf], ...]:
        """Every kind defined so far, in definition order."""
        return tuple(Leaf._kinds)

    @classmethod
    def proto_field(cls) -> str:
        """The kind's field in the ``Objective.kind`` oneof."""
        return re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()

    @classmethod
    def has_batch(cls) -> bool:
        return any(spec.name == "batch" for spec in leaf_fields(cls))

    def __post_init__(self) -> None:
        for spec in leaf_fields(type(self)):
            value = getattr(self, spec.name)
            if value is None and spec.optional:
                continue
            object.__setattr__(self, spec.name, _checked(spec, value))

    def values(self) -> dict[str, object]:
        """Field name to value, in declaration order."""
        return {spec.name: getattr(self, spec.name) for spec in leaf_fields(type(self))}

    def layers(self) -> frozenset[str]:
        return frozenset(str(getattr(self, spec.name)) for spec in leaf_fields(type(self)) if spec.kind == "layer")

    def to_text(self) -> str:
        values, kinds = self.values(), value_kinds(type(self))
        for form in self.forms:
            text = form.write(values, kinds)
            if text is not None:
                batch = values.get("batch")
                return text if batch is None else f"{text}#{batch}"
        raise ObjectiveError(f"none of {type(self).__name__}'s text forms writes {self!r}")

    def for_batch(self, index: int) -> Leaf:
        """This term restricted to batch image ``index``."""
        if not self.has_batch():
            raise ObjectiveError(f"{self.proto_field()} is a batch-wide term and cannot target one batch element")
        return type(self)(**{**self.values(), "batch": index})


@cache
def leaf_fields(kind: type[Leaf]) -> tuple[LeafField, ...]:
    """The fields of a kind, read from its type hints."""
    hints = typing.get_type_hints(kind)
    found = []
    for spec in dataclasses.fields(kind):
        hint = hints[spec.name]
        arguments = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        types_ = [argument for argument in arguments if argument is not type(None)]
        if len(types_) != 1:
            raise TypeError(f"{kind.__name__}.{spec.name}: a field has one type, optionally with None")
        value_kind = _value_kind(kind, spec.name, types_[0])
        found.append(LeafField(spec.name, value_kind, len(types_) < len(arguments), spec.metadata.get("range")))
    return tuple(found)


def value_kinds(kind: type[Leaf]) -> dict[str, ValueKind]:
    return {spec.name: spec.kind for spec in leaf_fields(kind)}


def _value_kind(kind: type[Leaf], name: str, hint: object) -> ValueKind:
    if hint is str:
        return "layer"
    if hint is int:
        return "index"
    if hint is float:
        return "number"
    if typing.get_origin(hint) is tuple:
        return "vector"
    raise TypeError(f"{kind.__name__}.{name}: fields are str, int, float or tuple[float, ...], not {hint}")


def _checked(spec: LeafField, value: object) -> object:
    """The value normalized (floats as float, vectors as tuples), or ObjectiveError naming the field."""
    name = spec.name
    if spec.kind == "layer":
        if not isinstance(value, str) or not value:
            raise ObjectiveError(f"{name}: a layer name is required, got {clip(repr(value))}", field=name)
        if len(value) > MAX_LAYER_NAME or not _LAYER_NAME.fullmatch(value):
            raise ObjectiveError(
                f"{name} {clip(value)!r} is not a layer name such as 'blocks.10' (at most {MAX_LAYER_NAME} "
                "characters: letters, digits and '_', joined by '.', optionally ending in '/input')",
                field=name,
            )
        return value
    if spec.kind == "index":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ObjectiveError(f"{name} must be a non-negative integer, got {clip(repr(value))}", field=name)
        if value > INT32_MAX:
            raise ObjectiveError(f"{name} must be at most {INT32_MAX}, got {value}", field=name)
        return value
    if spec.kind == "number":
        number = checked_number(name, value)
        if spec.range is not None and not spec.range[0] <= number <= spec.range[1]:
            low, high = (format_number(bound) for bound in spec.range)
            raise ObjectiveError(f"{name} must be within {low}..{high}, got {number!r}", field=name)
        return number
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ObjectiveError(f"{name} must be a sequence of numbers, got {clip(repr(value))}", field=name)
    if not 1 <= len(value) <= MAX_VECTOR:
        raise ObjectiveError(
            f"{name}: a direction needs at least one component and at most {MAX_VECTOR}, got {len(value)}",
            field=name,
        )
    vector = tuple(checked_number(name, component) for component in value)
    length = math.hypot(*vector)
    if length > FLOAT32_MAX:
        raise ObjectiveError(
            f"{name} has length {length:.8g}, more than float32's largest value {FLOAT32_MAX:.8g} "
            "(objectives are evaluated in float32)",
            field=name,
        )
    return vector


def checked_number(name: str, value: object) -> float:
    """A finite float32 value as a float, or ObjectiveError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ObjectiveError(f"{name} must be a finite number, got {clip(repr(value))}", field=name)
    if abs(value) > FLOAT32_MAX:
        raise ObjectiveError(
            f"{name} must be within +-{FLOAT32_MAX:.8g} (objectives are evaluated in float32), got {value!r}",
            field=name,
        )
    return float(value)


@dataclass(frozen=True)
class Scaled(Objective):
    """``weight * objective``."""

    objective: Objective
    weight: float
    _largest_weight: float = field(default=1.0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.objective, Objective):
            raise ObjectiveError(f"expected an objective, got {clip(repr(self.objective))}", field="objective")
        weight = checked_number("weight", self.weight)
        largest = abs(weight) * self.objective.largest_weight()
        if largest > FLOAT32_MAX:
            raise ObjectiveError(
                f"the weights on the way to a term multiply to {largest:.8g}, more than float32's largest value "
                f"{FLOAT32_MAX:.8g} (objectives are evaluated in float32)",
                field="weight",
            )
        object.__setattr__(self, "weight", weight)
        object.__setattr__(self, "_largest_weight", largest)

    def largest_weight(self) -> float:
        return self._largest_weight

    def layers(self) -> frozenset[str]:
        return self.objective.layers()

    def to_text(self) -> str:
        inner = self.objective.to_text()
        if isinstance(self.objective, Sum):
            inner = f"({inner})"
        if self.weight == -1.0:
            return f"-{inner}"
        return f"{format_number(self.weight)}*{inner}"


@dataclass(frozen=True)
class Sum(Objective):
    """The sum of several objectives (nested sums are flattened)."""

    terms: tuple[Objective, ...]
    _largest_weight: float = field(default=1.0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.terms, Objective) or not isinstance(self.terms, Sequence):
            raise ObjectiveError(f"a sum takes a sequence of objectives, got {clip(repr(self.terms))}", field="terms")
        flat: list[Objective] = []
        for term in self.terms:
            if not isinstance(term, Objective):
                raise ObjectiveError(f"expected an objective, got {clip(repr(term))}", field="terms")
            flat.extend(term.terms if isinstance(term, Sum) else (term,))
        if not flat:
            raise ObjectiveError("a sum needs at least one objective", field="terms")
        object.__setattr__(self, "terms", tuple(flat))
        object.__setattr__(self, "_largest_weight", max(term.largest_weight() for term in flat))

    def largest_weight(self) -> float:
        return self._largest_weight

    def layers(self) -> frozenset[str]:
        return frozenset().union(*(term.layers() for term in self.terms))

    def to_text(self) -> str:
        text = self.terms[0].to_text()
        for term in self.terms[1:]:
            if isinstance(term, Scaled) and term.weight < 0:
                text += " - " + Scaled(term.objective, -term.weight).to_text().removeprefix("1*")
            else:
                text += " + " + term.to_text()
        return text


class Visit(NamedTuple):
    """One node of a tree as ``walk`` meets it."""

    node: Objective
    depth: int
    """1 at the root."""
    weight: float
    """The product of the weights above the node (and of its own, for a ``Scaled`` node)."""


def walk(objective: Objective) -> Iterator[Visit]:
    """Every node, parents before children, left to right; iterative, so any depth is safe."""
    stack = [Visit(objective, 1, 1.0)]
    while stack:
        visit = stack.pop()
        yield visit
        node, depth, weight = visit
        if isinstance(node, Sum):
            stack.extend(Visit(term, depth + 1, weight) for term in reversed(node.terms))
        elif isinstance(node, Scaled):
            stack.append(Visit(node.objective, depth + 1, weight * node.weight))


def weighted_leaves(objective: Objective) -> Iterator[tuple[Leaf, float]]:
    """Every term with the product of the weights above it, left to right."""
    for node, _, weight in walk(objective):
        if isinstance(node, Leaf):
            yield node, weight


def leaves(objective: Objective) -> list[Leaf]:
    """Every term, left to right."""
    return [leaf for leaf, _ in weighted_leaves(objective)]


def map_leaves(objective: Objective, change: Callable[[Leaf], Objective]) -> Objective:
    """The same tree with each term replaced by ``change(term)``."""
    if isinstance(objective, Sum):
        return Sum(tuple(map_leaves(term, change) for term in objective.terms))
    if isinstance(objective, Scaled):
        return Scaled(map_leaves(objective.objective, change), objective.weight)
    if isinstance(objective, Leaf):
        return change(objective)
    raise ObjectiveError(f"expected an objective, got {clip(repr(objective))}")


def per_batch(objectives: Sequence[Objective]) -> Objective:
    """Objective ``i`` drives batch image ``i`` only: several targets in one job."""
    if not objectives:
        raise ObjectiveError("per_batch needs at least one objective")
    return Sum(tuple(_targeting(objective, index) for index, objective in enumerate(objectives)))


def _targeting(objective: Objective, index: int) -> Objective:
    return map_leaves(objective, lambda leaf: leaf.for_batch(index))


@dataclass
class Budget:
    """How many nodes and levels a tree may have, counted while it is read, so that no input makes a
    reader recurse without end or build an unbounded tree. Errors name ``field``."""

    max_nodes: int
    max_depth: int
    field: str | None = None
    used: int = 0

    def take(self, depth: int) -> None:
        """Count one node at ``depth`` (1: the root)."""
        self.used += 1
        if self.used > self.max_nodes:
            raise ObjectiveError(f"the objective has more than {self.max_nodes} nodes", field=self.field)
        if depth > self.max_depth:
            raise ObjectiveError(f"the objective is nested deeper than {self.max_depth} levels", field=self.field)

    def check(self, objective: Objective) -> None:
        """Count every node of a built tree."""
        for visit in walk(objective):
            self.take(visit.depth)
