"""Objectives built in Python, without torch: what to maximize, and their algebra.

These mirror the server's objectives term for term, so that
``channel("blocks.10", 17) - 0.5 * channel("blocks.10", 3)`` is checked here (names,
indices, finite weights) and crosses the wire as the same tree; ``to_text()`` gives the
short text form of the server's grammar (``blocks.10:17 - 0.5*blocks.10:3``), and
anywhere an objective is accepted its text may be given instead.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from priorviz_client._exceptions import ObjectiveError

LOGITS = "logits"
_LAYER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*(?:/input)?")


def _number(value: float) -> str:
    """The server's number format: integers without a decimal point, else ``repr``."""
    return repr(int(value)) if float(value).is_integer() else repr(float(value))


def _check_layer(layer: str) -> str:
    if not isinstance(layer, str) or not _LAYER.fullmatch(layer):
        raise ObjectiveError(f"layer name {layer!r} is not a dotted module name such as 'blocks.10'")
    return layer


def _check_index(what: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ObjectiveError(f"{what} must be a non-negative integer, got {value!r}")
    return value


def _check_weight(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ObjectiveError(f"objective weights must be finite numbers, got {value!r}")
    return float(value)


def _batch_suffix(batch: int | None) -> str:
    return "" if batch is None else f"#{batch}"


class Objective:
    """Something to maximize, one value per batch image; combine with ``+ - * /`` and ``-x``."""

    def to_text(self) -> str:
        """The short text form the server parses (``blocks.10:17``, ``logit:130`` ...)."""
        raise NotImplementedError

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
class Channel(Objective):
    """Mean activation of one channel over all positions."""

    layer: str
    channel: int
    batch: int | None = None

    def __post_init__(self) -> None:
        _check_layer(self.layer)
        _check_index("channel", self.channel)
        _check_index("batch", self.batch)

    def to_text(self) -> str:
        return f"{self.layer}:{self.channel}{_batch_suffix(self.batch)}"


@dataclass(frozen=True)
class Neuron(Objective):
    """One channel at one position (``x``, ``y``); the centre when they are left out."""

    layer: str
    channel: int
    x: int | None = None
    y: int | None = None
    batch: int | None = None

    def __post_init__(self) -> None:
        _check_layer(self.layer)
        _check_index("channel", self.channel)
        _check_index("x", self.x)
        _check_index("y", self.y)
        _check_index("batch", self.batch)
        if (self.x is None) != (self.y is None):
            raise ObjectiveError("a neuron's position needs both x and y, or neither (the centre)")

    def to_text(self) -> str:
        position = "" if self.x is None else f"@{self.x},{self.y}"
        return f"neuron:{self.layer}:{self.channel}{position}{_batch_suffix(self.batch)}"


@dataclass(frozen=True)
class Layer(Objective):
    """DeepDream: the mean square of a whole layer."""

    layer: str
    batch: int | None = None

    def __post_init__(self) -> None:
        _check_layer(self.layer)
        _check_index("batch", self.batch)

    def to_text(self) -> str:
        return f"layer:{self.layer}{_batch_suffix(self.batch)}"


@dataclass(frozen=True)
class Direction(Objective):
    """A direction in a layer's activation space; ``cosine_power`` > 0 weights it by cosine similarity."""

    layer: str
    vector: tuple[float, ...]
    cosine_power: float = 0.0
    batch: int | None = None

    def __post_init__(self) -> None:
        _check_layer(self.layer)
        _check_index("batch", self.batch)
        vector = tuple(_check_weight(value) for value in self.vector)
        if not vector:
            raise ObjectiveError("a direction needs at least one component")
        object.__setattr__(self, "vector", vector)
        power = _check_weight(self.cosine_power)
        if power < 0:
            raise ObjectiveError(f"cosine_power must be >= 0, got {power}")
        object.__setattr__(self, "cosine_power", power)

    def to_text(self) -> str:
        kind = "direction" if not self.cosine_power else f"cosdir{_number(self.cosine_power)}"
        return f"{kind}:{self.layer}:{','.join(_number(v) for v in self.vector)}{_batch_suffix(self.batch)}"


@dataclass(frozen=True)
class ClassLogit(Objective):
    """The pre-softmax score of one class."""

    index: int
    batch: int | None = None

    def __post_init__(self) -> None:
        _check_index("class index", self.index)
        _check_index("batch", self.batch)

    def to_text(self) -> str:
        return f"logit:{self.index}{_batch_suffix(self.batch)}"


@dataclass(frozen=True)
class ClassProbability(Objective):
    """The softmax probability of one class (saturates; logits usually optimize better)."""

    index: int
    batch: int | None = None

    def __post_init__(self) -> None:
        _check_index("class index", self.index)
        _check_index("batch", self.batch)

    def to_text(self) -> str:
        return f"prob:{self.index}{_batch_suffix(self.batch)}"


@dataclass(frozen=True)
class Diversity(Objective):
    """Rewards a batch whose images differ in style (Gram matrices) at ``layer``; add it with a weight."""

    layer: str

    def __post_init__(self) -> None:
        _check_layer(self.layer)

    def to_text(self) -> str:
        return f"diversity:{self.layer}"


@dataclass(frozen=True)
class Scaled(Objective):
    """``weight * objective``."""

    objective: Objective
    weight: float

    def __post_init__(self) -> None:
        if not isinstance(self.objective, Objective):
            raise ObjectiveError(f"expected an objective, got {self.objective!r}")
        object.__setattr__(self, "weight", _check_weight(self.weight))

    def to_text(self) -> str:
        inner = self.objective.to_text()
        if isinstance(self.objective, Sum):
            inner = f"({inner})"
        if self.weight == -1.0:
            return f"-{inner}"
        return f"{_number(self.weight)}*{inner}"


@dataclass(frozen=True)
class Sum(Objective):
    """The sum of several objectives (nested sums are flattened)."""

    terms: tuple[Objective, ...]

    def __post_init__(self) -> None:
        flat: list[Objective] = []
        for term in self.terms:
            if not isinstance(term, Objective):
                raise ObjectiveError(f"expected an objective, got {term!r}")
            flat.extend(term.terms if isinstance(term, Sum) else (term,))
        if not flat:
            raise ObjectiveError("a sum needs at least one objective")
        object.__setattr__(self, "terms", tuple(flat))

    def to_text(self) -> str:
        text = self.terms[0].to_text()
        for term in self.terms[1:]:
            if isinstance(term, Scaled) and term.weight < 0:
                text += " - " + Scaled(term.objective, -term.weight).to_text().removeprefix("1*")
            else:
                text += " + " + term.to_text()
        return text


def channel(layer: str, index: int, *, batch: int | None = None) -> Channel:
    """Mean activation of channel ``index`` of ``layer``."""
    return Channel(layer, index, batch)


def channels(layer: str, first: int, last: int) -> Objective:
    """Channels ``first..last`` (inclusive), one per batch image: visualize a layer's channels in one job."""
    if last < first:
        raise ObjectiveError(f"channel range {first}..{last} is empty")
    return per_batch([Channel(layer, index) for index in range(first, last + 1)])


def neuron(layer: str, index: int, x: int | None = None, y: int | None = None, *, batch: int | None = None) -> Neuron:
    """Channel ``index`` of ``layer`` at position (``x``, ``y``), the centre by default."""
    return Neuron(layer, index, x, y, batch)


def layer(name: str, *, batch: int | None = None) -> Layer:
    """DeepDream on a whole layer."""
    return Layer(name, batch)


def direction(layer: str, vector: Iterable[float], *, cosine_power: float = 0.0, batch: int | None = None) -> Direction:
    """Dot product with ``vector`` in ``layer``'s channel space (cosine-weighted when ``cosine_power`` > 0)."""
    return Direction(layer, tuple(vector), cosine_power, batch)


def logit(index: int, *, batch: int | None = None) -> ClassLogit:
    """The logit of class ``index`` (ImageNet order for the embedded models)."""
    return ClassLogit(index, batch)


def probability(index: int, *, batch: int | None = None) -> ClassProbability:
    """The softmax probability of class ``index``."""
    return ClassProbability(index, batch)


def diversity(layer: str) -> Diversity:
    """A batch-wide diversity term at ``layer``; weight it, e.g. ``+ 100 * diversity("blocks.10")``."""
    return Diversity(layer)


def per_batch(objectives: Sequence[Objective]) -> Objective:
    """Objective ``i`` drives batch image ``i`` only: several targets in one job."""
    if not objectives:
        raise ObjectiveError("per_batch needs at least one objective")
    return Sum(tuple(_with_batch(objective, index) for index, objective in enumerate(objectives)))


def _with_batch(objective: Objective, index: int) -> Objective:
    if isinstance(objective, Sum):
        return Sum(tuple(_with_batch(term, index) for term in objective.terms))
    if isinstance(objective, Scaled):
        return Scaled(_with_batch(objective.objective, index), objective.weight)
    if isinstance(objective, Diversity):
        raise ObjectiveError("diversity is a batch-wide term and cannot target one batch image")
    return replace(objective, batch=index)  # type: ignore[type-var]


def objective_text(objective: Objective | str) -> str:
    """The text form of an objective, or the text itself (stripped) when given text."""
    if isinstance(objective, Objective):
        return objective.to_text()
    if isinstance(objective, str) and objective.strip():
        return objective.strip()
    raise ObjectiveError(f"expected an Objective or its text form, got {objective!r}")
