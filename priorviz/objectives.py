"""Objectives: what a visualization maximizes, evaluated on a model's activations.

What an objective *is* (its kinds, algebra, text form and proto tree) is defined once, in the
torch-free ``priorviz_objectives`` package that the client SDK ships too; this module re-exports
it and adds the one thing the engine alone does: one evaluator per kind, mapping a dictionary of
activations to one value per batch element (shape ``(batch,)``). ``evaluate`` sums the terms of a
tree with their weights; the render loop maximizes the sum of its values.

A term that compares with the init_image photograph (``Caricature``) reads the photograph's
activations from the same dictionary, under ``reference_key(layer)``: the render loop computes them
once (``reference_activations``) and adds them to every step's activations.
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
    Caricature,
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
    caricature,
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
    "Caricature",
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
    "caricature",
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
    "reference_activations",
    "reference_key",
    "reference_layers",
    "resized_like",
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


def _cosine_weighted(dot: Tensor, norms: Tensor, power: float) -> Tensor:
    """``dot`` times the cosine similarity (``dot / norms``, floored at 0.1) to ``power``; unchanged for power 0."""
    if not power:
        return dot
    return dot * (dot / (norms + 1e-6)).clamp(min=0.1).pow(power)


@evaluates(Direction)
def _direction(term: Direction, acts: Activations) -> Tensor:
    act = _feature_map(acts, term.layer).float()
    vector = torch.tensor(term.vector, device=act.device, dtype=act.dtype)
    if vector.numel() != act.shape[1]:
        raise InvalidInputError(
            f"direction has {vector.numel()} components but {term.layer} has {act.shape[1]} channels", field="vector"
        )
    dot = torch.einsum("bchw,c->bhw", act, vector)
    return _cosine_weighted(dot, act.norm(dim=1) * vector.norm(), term.cosine_power).mean(dim=(1, 2))


def reference_key(layer: str) -> str:
    """The key of the init_image photograph's activations at ``layer`` in a step's activations."""
    return f"{layer}@init_image"


def reference_layers(objective: Objective) -> frozenset[str]:
    """The layers at which ``objective`` compares with the init_image photograph (empty: it does not)."""
    return frozenset().union(*(term.layers() for term in leaves(objective) if term.needs_init_image))


def reference_activations(acts: Activations) -> dict[str, Tensor]:
    """The photograph's activations (computed once, without gradients) under their ``reference_key``."""
    return {reference_key(layer): act.detach().float() for layer, act in acts.items()}


def resized_like(reference: Tensor, act: Tensor) -> Tensor:
    """``reference`` with ``act``'s spatial size (bilinear), for a map of a transformed image of another size."""
    if reference.dim() != 4 or reference.shape[-2:] == act.shape[-2:]:
        return reference
    return F.interpolate(reference, size=act.shape[-2:], mode="bilinear", align_corners=False)


@evaluates(Caricature)
def _caricature(term: Caricature, acts: Activations) -> Tensor:
    key = reference_key(term.layer)
    if key not in acts:
        raise InvalidInputError(
            f"{term.to_text()} compares with the init_image photograph's activations; give an init_image",
            field="init_image",
        )
    act = _feature_map(acts, term.layer).float()
    photograph = _feature_map(acts, key)
    own = photograph.pow(2).sum(dim=1).mean(dim=(1, 2)).clamp_min(1e-12)  # the photograph scores 1
    reference = resized_like(photograph, act)
    dot = (act * reference).sum(dim=1)
    norms = act.norm(dim=1) * reference.norm(dim=1)
    return _cosine_weighted(dot, norms, term.cosine_power).mean(dim=(1, 2)) / own


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
