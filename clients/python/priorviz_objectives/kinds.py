"""The objective kinds, and the functions that build them.

A new kind is one frozen dataclass here (its fields, its checks and its text forms), one evaluator
in the engine (``priorviz/objectives.py``) and one field of the ``Objective.kind`` oneof in
``protos/priorviz/v1/priorviz.proto``: the text grammar, the proto conversion both ways, the tree
walker and the SDK all work from the dataclass.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from priorviz_objectives.errors import ObjectiveError
from priorviz_objectives.forms import Form
from priorviz_objectives.tree import LOGITS, Leaf, Objective, per_batch, within


@dataclass(frozen=True)
class Channel(Leaf):
    """Mean activation of one channel over all positions."""

    forms = (Form("{layer}:{channel}"), Form("channel:{layer}:{channel}"))
    layer: str
    channel: int
    batch: int | None = None


@dataclass(frozen=True)
class Neuron(Leaf):
    """One channel at one position; ``x``/``y`` default to the centre and are clamped to the map."""

    forms = (Form("neuron:{layer}:{channel}[@{x},{y}]"),)
    layer: str
    channel: int
    x: int | None = None
    y: int | None = None
    batch: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.x is None) != (self.y is None):
            raise ObjectiveError("a neuron's position needs both x and y, or neither (the centre)", field="x")


@dataclass(frozen=True)
class Layer(Leaf):
    """DeepDream: the mean square of the whole layer."""

    forms = (Form("layer:{layer}"),)
    layer: str
    batch: int | None = None


@dataclass(frozen=True)
class Direction(Leaf):
    """A direction in activation space, averaged over positions.

    With ``cosine_power`` 0 it is the plain dot product; above 0 the dot product is weighted
    by the cosine similarity (floored at 0.1) to that power, which rewards pointing along
    the direction rather than only growing large (Olah et al. 2018's cossim objective).
    """

    forms = (
        Form("direction:{layer}:{vector}", cosine_power=0.0),
        Form("cosdir[{cosine_power}]:{layer}:{vector}", cosine_power=1.0),
    )
    layer: str
    vector: tuple[float, ...]
    cosine_power: float = within(0.0, 0, 16)
    batch: int | None = None


@dataclass(frozen=True)
class ClassLogit(Leaf):
    """The pre-softmax score of one class."""

    forms = (Form("logit:{index}"),)
    index: int
    batch: int | None = None

    def layers(self) -> frozenset[str]:
        return frozenset({LOGITS})


@dataclass(frozen=True)
class ClassProbability(Leaf):
    """The softmax probability of one class (saturates; logits usually optimize better)."""

    forms = (Form("prob:{index}"),)
    index: int
    batch: int | None = None

    def layers(self) -> frozenset[str]:
        return frozenset({LOGITS})


@dataclass(frozen=True)
class Diversity(Leaf):
    """Minus the mean cosine similarity of each image's Gram matrix at ``layer`` to the others'.

    Higher is more diverse, so add it (with a weight) to push a batch apart; it compares the
    images of a batch, so it is batch-wide and needs two images or more.
    """

    forms = (Form("diversity:{layer}"),)
    min_batch = 2
    layer: str


@dataclass(frozen=True)
class Caricature(Leaf):
    """A caricature of the request's init_image photograph (Lucid's ``dot_compare``).

    The dot product between the image's activations at ``layer`` and the photograph's own there,
    per position, averaged over positions, and divided by the photograph's own mean squared norm
    there (so the photograph itself scores 1): maximizing it exaggerates what the layer sees in the
    photograph. ``cosine_power`` weights it by the cosine similarity as for ``Direction``. The
    engine computes the photograph's activations once, when the job starts.
    """

    forms = (
        Form("caricature:{layer}", cosine_power=0.0),
        Form("coscaricature[{cosine_power}]:{layer}", cosine_power=1.0),
    )
    needs_init_image = True
    layer: str
    cosine_power: float = within(0.0, 0, 16)
    batch: int | None = None


def channel(layer: str, index: int, *, batch: int | None = None) -> Channel:
    """Mean activation of channel ``index`` of ``layer``."""
    return Channel(layer, index, batch)


def channels(layer: str, first: int, last: int) -> Objective:
    """Channels ``first..last`` (inclusive), one per batch image: a layer's channels in one job."""
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


def caricature(layer: str, *, cosine_power: float = 0.0, batch: int | None = None) -> Caricature:
    """The init_image photograph's activations at ``layer``, exaggerated (cosine-weighted when ``cosine_power`` > 0)."""
    return Caricature(layer, cosine_power, batch)


def diversity(layer: str) -> Diversity:
    """A batch-wide diversity term at ``layer``; weight it, e.g. ``+ 100 * diversity("blocks.10")``."""
    return Diversity(layer)
