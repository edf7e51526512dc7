"""Conversions between priorviz.v1 messages and engine objects (objectives, images, infos).

Objective trees are converted with their size and depth bounded, and every number checked
for finiteness, so that no request can make the server recurse without end or compute NaN
weights. A malformed node raises ``WireFieldError`` naming the field path inside the request.
"""

from __future__ import annotations

import io
import math

from torch import Tensor

from priors.base import PriorInfo, PriorKind
from priorviz.images import to_pil
from priorviz.models.target import LayerInfo
from priorviz.objective_text import parse_objective
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
from service._proto.priorviz.v1 import priorviz_pb2 as pb

PRIOR_KINDS = {PriorKind.UNCONSTRAINED: pb.PRIOR_KIND_UNCONSTRAINED, PriorKind.LEARNED: pb.PRIOR_KIND_LEARNED}


class WireFieldError(ValueError):
    """A malformed field of a request; ``field`` is its path, e.g. ``settings.objective.sum.terms[1]``."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(problem)


class ObjectiveTooLargeError(ValueError):
    """An objective with more nodes or deeper nesting than the server accepts."""


class _Budget:
    """Counts nodes while an objective is converted, failing once the limit is passed."""

    def __init__(self, max_nodes: int, max_depth: int) -> None:
        self.left, self.max_depth = max_nodes, max_depth
        self.max_nodes = max_nodes

    def take(self, depth: int) -> None:
        self.left -= 1
        if self.left < 0:
            raise ObjectiveTooLargeError(f"objective has more than {self.max_nodes} nodes")
        if depth > self.max_depth:
            raise ObjectiveTooLargeError(f"objective is nested deeper than {self.max_depth} levels")


def _layer(name: str, field: str) -> str:
    if not name:
        raise WireFieldError(field, "a layer name is required")
    if len(name) > 256:
        raise WireFieldError(field, "layer names are at most 256 characters")
    return name


def _finite(value: float, field: str) -> float:
    if not math.isfinite(value):
        raise WireFieldError(field, f"must be finite, got {value}")
    return float(value)


def objective_from_proto(message: pb.Objective, max_nodes: int, max_depth: int) -> Objective:
    """The engine objective for a message tree (field paths start at ``settings.objective``)."""
    return _convert(message, "settings.objective", _Budget(max_nodes, max_depth), 1)


def _convert(message: pb.Objective, path: str, budget: _Budget, depth: int) -> Objective:
    budget.take(depth)
    kind = message.WhichOneof("kind")
    batch = message.batch_index if message.HasField("batch_index") else None
    if batch is not None and batch < 0:
        raise WireFieldError(f"{path}.batch_index", f"must not be negative, got {batch}")
    field = f"{path}.{kind}"
    if kind is None:
        raise WireFieldError(path, "no objective kind is set")
    if kind == "sum":
        if not message.sum.terms:
            raise WireFieldError(f"{field}.terms", "a sum needs at least one term")
        terms = [_convert(term, f"{field}.terms[{i}]", budget, depth + 1) for i, term in enumerate(message.sum.terms)]
        return Sum(tuple(terms))
    if kind == "scaled":
        if not message.scaled.HasField("objective"):
            raise WireFieldError(f"{field}.objective", "the objective to scale is required")
        weight = _finite(message.scaled.weight, f"{field}.weight")
        return Scaled(_convert(message.scaled.objective, f"{field}.objective", budget, depth + 1), weight)
    if kind == "channel":
        return Channel(_layer(message.channel.layer, f"{field}.layer"), message.channel.channel, batch)
    if kind == "neuron":
        neuron = message.neuron
        if neuron.HasField("x") != neuron.HasField("y"):
            raise WireFieldError(f"{field}.x", "give both x and y, or neither")
        if (neuron.HasField("x") and neuron.x < 0) or (neuron.HasField("y") and neuron.y < 0):
            raise WireFieldError(f"{field}.x", "positions must not be negative")
        x = neuron.x if neuron.HasField("x") else None
        y = neuron.y if neuron.HasField("y") else None
        return Neuron(_layer(neuron.layer, f"{field}.layer"), neuron.channel, x, y, batch)
    if kind == "layer":
        return Layer(_layer(message.layer.layer, f"{field}.layer"), batch)
    if kind == "direction":
        direction = message.direction
        if not direction.vector:
            raise WireFieldError(f"{field}.vector", "a direction needs at least one component")
        vector = tuple(_finite(value, f"{field}.vector") for value in direction.vector)
        power = _finite(direction.cosine_power, f"{field}.cosine_power")
        if not 0 <= power <= 16:
            raise WireFieldError(f"{field}.cosine_power", f"must be within 0..16, got {power}")
        return Direction(_layer(direction.layer, f"{field}.layer"), vector, power, batch)
    if kind == "class_logit":
        return ClassLogit(message.class_logit.index, batch)
    if kind == "class_probability":
        return ClassProbability(message.class_probability.index, batch)
    if batch is not None:
        raise WireFieldError(f"{path}.batch_index", "diversity is batch-wide and cannot target one image")
    return Diversity(_layer(message.diversity.layer, f"{field}.layer"))


def objective_from_text(text: str, max_nodes: int, max_depth: int) -> Objective:
    """Parse the text form, then bound it like a tree and check its numbers."""
    try:
        objective = parse_objective(text)
    except RecursionError:
        raise ObjectiveTooLargeError(f"objective text is nested deeper than {max_depth} levels") from None
    _check_parsed(objective, _Budget(max_nodes, max_depth), 1)
    return objective


def _check_parsed(objective: Objective, budget: _Budget, depth: int) -> None:
    budget.take(depth)
    if isinstance(objective, Sum):
        for term in objective.terms:
            _check_parsed(term, budget, depth + 1)
    elif isinstance(objective, Scaled):
        _finite(objective.weight, "settings.objective_text")
        _check_parsed(objective.objective, budget, depth + 1)
    elif isinstance(objective, Direction):
        for value in (*objective.vector, objective.cosine_power):
            _finite(value, "settings.objective_text")


def encode_png(image: Tensor) -> pb.Image:
    """One (3, H, W) image in [0, 1] as an 8-bit RGB PNG (NaN drawn black, values clipped)."""
    picture = to_pil(image)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=3)
    return pb.Image(png=buffer.getvalue(), width=picture.width, height=picture.height)


def encode_images(images: Tensor) -> list[pb.Image]:
    return [encode_png(image) for image in images]


def layer_to_proto(layer: LayerInfo) -> pb.LayerInfo:
    return pb.LayerInfo(name=layer.name, channels=layer.channels, height=layer.height, width=layer.width)


def prior_to_proto(info: PriorInfo, available: bool) -> pb.PriorInfo:
    return pb.PriorInfo(
        name=info.name,
        kind=PRIOR_KINDS[info.kind],
        description=info.description,
        output_size=info.output_size or 0,
        latent_shape=list(info.latent_shape),
        licence=info.licence,
        options=info.option_help(),
        available=available,
    )
