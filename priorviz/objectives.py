"""Objectives: what a visualization maximizes, evaluated on a model's activations.

What an objective *is* (its kinds, algebra, text form and proto tree) is defined once, in the
torch-free ``priorviz_objectives`` package that the client SDK ships too; this module re-exports
it and adds the one thing the engine alone does: one evaluator per kind, mapping a dictionary of
activations to one value per batch element (shape ``(batch,)``). ``evaluate`` sums the terms of a
tree with their weights; the render loop maximizes the sum of its values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor

from priorviz.errors import InvalidInputError, NotFoundError, UnavailableError, clip_text
from priorviz_objectives import (
    LOGITS,
    Channel,
    ClassLogit,
    ClassProbability,
    Direction,
    Diversity,
    Layer,
    Leaf,
    Neuron,
    Objective,
    ObjectiveError,
    Scaled,
    Sum,
    channel,
    channels,
    direction,
    diversity,
    layer,
    leaves,
    logit,
    neuron,
    parse_objective,
    per_batch,
    probability,
    weighted_leaves,
)

__all__ = [
    "Activations",
    "Channel",
    "ClassLogit",
    "ClassProbability",
    "Direction",
    "Diversity",
    "Layer",
    "Neuron",
    "Objective",
    "ObjectiveError",
    "Scaled",
    "Sum",
    "Term",
    "channel",
    "channels",
    "direction",
    "diversity",
    "evaluate",
    "evaluates",
    "gram_matrices",
    "layer",
    "leaves",
    "logit",
    "neuron",
    "parse_objective",
    "per_batch",
    "probability",
    "validate_objective",
    "validate_term",
]

Activations = Mapping[str, Tensor]
Kind = TypeVar("Kind", bound=Leaf)
Evaluator = Callable[[Kind, Activations], Tensor]

_EVALUATORS: dict[type[Leaf], Callable[[Any, Activations], Tensor]] = {}


class Term(Protocol):
    """Something evaluated like an objective that never crosses the wire (e.g. the statistics prior)."""

    def layers(self) -> frozenset[str]: ...

    def __call__(self, acts: Activations) -> Tensor: ...


def evaluates(kind: type[Kind]) -> Callable[[Evaluator[Kind]], Evaluator[Kind]]:
    """Register the evaluator of ``kind``: its values over the whole batch, before ``batch`` restricts them."""

    def register(evaluator: Evaluator[Kind]) -> Evaluator[Kind]:
        _EVALUATORS[kind] = evaluator
        return evaluator

    return register


def evaluate(objective: Objective | Term, acts: Activations) -> Tensor:
    """Values of shape (batch,): the weighted sum of the objective's terms."""
    if not isinstance(objective, Objective):
        return objective(acts)
    total: Tensor | None = None
    for term, weight in weighted_leaves(objective):
        values = _restrict(_evaluator(type(term))(term, acts), getattr(term, "batch", None))
        values = values if weight == 1.0 else weight * values
        total = values if total is None else total + values
    assert total is not None  # a tree has at least one term
    return total


def _evaluator(kind: type[Leaf]) -> Callable[[Any, Activations], Tensor]:
    try:
        return _EVALUATORS[kind]
    except KeyError:
        raise UnavailableError(f"this engine has no evaluator for {kind.proto_field()} objectives") from None


def _restrict(values: Tensor, batch: int | None) -> Tensor:
    """Zero every batch element but ``batch`` (no-op when ``batch`` is None)."""
    if batch is None:
        return values
    if batch >= values.shape[0]:
        raise InvalidInputError(
            f"objective targets batch element {batch} but the batch has {values.shape[0]} images", field="batch"
        )
    mask = torch.zeros_like(values)
    mask[batch] = 1.0
    return values * mask


def _feature_map(acts: Activations, layer: str) -> Tensor:
    act = acts[layer]
    return act if act.dim() == 4 else act[:, :, None, None]


@evaluates(Channel)
def _channel(term: Channel, acts: Activations) -> Tensor:
    return _feature_map(acts, term.layer)[:, term.channel].float().mean(dim=(1, 2))


@evaluates(Neuron)
def _neuron(term: Neuron, acts: Activations) -> Tensor:
    act = _feature_map(acts, term.layer)
    height, width = act.shape[-2:]
    x = width // 2 if term.x is None else min(term.x, width - 1)
    y = height // 2 if term.y is None else min(term.y, height - 1)
    return act[:, term.channel, y, x].float()


@evaluates(Layer)
def _layer(term: Layer, acts: Activations) -> Tensor:
    return acts[term.layer].float().pow(2).flatten(1).mean(dim=1)


@evaluates(Direction)
def _direction(term: Direction, acts: Activations) -> Tensor:
    act = _feature_map(acts, term.layer).float()
    vector = torch.tensor(term.vector, device=act.device, dtype=act.dtype)
    if vector.numel() != act.shape[1]:
        raise InvalidInputError(
            f"direction has {vector.numel()} components but {term.layer} has {act.shape[1]} channels", field="vector"
        )
    dot = torch.einsum("bchw,c->bhw", act, vector)
    if term.cosine_power:
        cosine = dot / (act.norm(dim=1) * vector.norm() + 1e-6)
        dot = dot * cosine.clamp(min=0.1).pow(term.cosine_power)
    return dot.mean(dim=(1, 2))


@evaluates(ClassLogit)
def _class_logit(term: ClassLogit, acts: Activations) -> Tensor:
    return acts[LOGITS][:, term.index].float()


@evaluates(ClassProbability)
def _class_probability(term: ClassProbability, acts: Activations) -> Tensor:
    return acts[LOGITS].float().softmax(dim=1)[:, term.index]


def gram_matrices(act: Tensor) -> Tensor:
    """Per-image Gram matrices of a feature map, flattened: (batch, channels*channels)."""
    flat = act.float().flatten(2)
    return torch.bmm(flat, flat.transpose(1, 2)).flatten(1)


@evaluates(Diversity)
def _diversity(term: Diversity, acts: Activations) -> Tensor:
    """A batch of one image scores 0."""
    grams = F.normalize(gram_matrices(_feature_map(acts, term.layer)), dim=1)
    batch = grams.shape[0]
    if batch < 2:
        return grams.new_zeros(batch)
    similarity = grams @ grams.T
    others = similarity.sum(dim=1) - similarity.diagonal()
    return -others / (batch - 1)


def validate_term(term: Leaf, model_layers: Mapping[str, int], num_classes: int, batch: int) -> None:
    """Check one term against a model: its layer, channel, class, vector length and batch target.

    ``model_layers`` maps each layer the model lists to its channel count. Field names mean the
    same in every kind (see ``priorviz_objectives.Leaf``), so this reads them, not the kind.
    Raises NotFoundError (an unknown layer) or InvalidInputError, with ``field`` the term's field.
    """
    _evaluator(type(term))
    values = term.values()
    layer_name = values.get("layer")
    if isinstance(layer_name, str):
        if layer_name not in model_layers:
            known = list(model_layers)
            listing = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
            raise NotFoundError(f"unknown layer {clip_text(layer_name)!r} (layers: {listing})", field="layer")
        width = model_layers[layer_name]
        channel_index = values.get("channel")
        if isinstance(channel_index, int) and channel_index >= width:
            raise InvalidInputError(
                f"channel {channel_index} out of range for {layer_name!r} ({width} channels)", field="channel"
            )
        vector = values.get("vector")
        if isinstance(vector, tuple) and len(vector) != width:
            raise InvalidInputError(
                f"direction on {layer_name!r} needs {width} components, got {len(vector)}", field="vector"
            )
    class_index = values.get("index")
    if isinstance(class_index, int) and class_index >= num_classes:
        raise InvalidInputError(
            f"class {class_index} out of range (the model has {num_classes} classes)", field="index"
        )
    target = values.get("batch")
    if isinstance(target, int) and target >= batch:
        raise InvalidInputError(
            f"objective targets batch element {target} but the batch has {batch} images", field="batch"
        )
    if batch < term.min_batch:
        raise InvalidInputError(
            f"{term.proto_field()} compares the images of a batch; it needs a batch of at least {term.min_batch}"
        )


def validate_objective(objective: Objective, model_layers: Mapping[str, int], num_classes: int, batch: int) -> None:
    """``validate_term`` for every term of ``objective``."""
    for term in leaves(objective):
        validate_term(term, model_layers, num_classes, batch)
