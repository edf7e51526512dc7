"""Objectives: what a visualization maximizes, and their algebra.

Every objective maps a dictionary of activations to one value per batch element
(shape ``(batch,)``); the render loop maximizes their sum. Objectives compose with
``+``, ``-``, scalar ``*`` and ``/`` and unary ``-``, and every objective has a text form
(``blocks.10:17``, ``logit:130``, ``neuron:blocks.10:17@7,7``) that ``priorviz.objective_text``
parses back. ``batch=i`` restricts a term to batch element ``i`` so that one job can
visualize several targets at once.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from priorviz.models.target import LOGITS

Activations = Mapping[str, Tensor]


def _number(value: float) -> str:
    return repr(int(value)) if float(value).is_integer() else repr(float(value))


class Objective(ABC):
    """A differentiable quantity to maximize, one value per batch element."""

    @abstractmethod
    def layers(self) -> frozenset[str]:
        """Names of the activations this objective reads (module names or ``logits``)."""

    @abstractmethod
    def __call__(self, acts: Activations) -> Tensor:
        """Values of shape (batch,)."""

    @abstractmethod
    def to_text(self) -> str:
        """The short text form, parseable by ``priorviz.objective_text.parse_objective``."""

    def __str__(self) -> str:
        return self.to_text()

    def __add__(self, other: Objective) -> Objective:
        if not isinstance(other, Objective):
            return NotImplemented
        return Sum((self, other))

    def __sub__(self, other: Objective) -> Objective:
        if not isinstance(other, Objective):
            return NotImplemented
        return Sum((self, Scaled(other, -1.0)))

    def __mul__(self, weight: float) -> Objective:
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            return NotImplemented
        if not math.isfinite(weight):
            raise ValueError(f"objective weights must be finite, got {weight}")
        return Scaled(self, float(weight))

    __rmul__ = __mul__

    def __truediv__(self, divisor: float) -> Objective:
        if isinstance(divisor, bool) or not isinstance(divisor, int | float):
            return NotImplemented
        if divisor == 0:
            raise ZeroDivisionError("objective divided by zero")
        return self * (1.0 / divisor)

    def __neg__(self) -> Objective:
        return Scaled(self, -1.0)


def _restrict(values: Tensor, batch: int | None) -> Tensor:
    """Zero every batch element but ``batch`` (no-op when ``batch`` is None)."""
    if batch is None:
        return values
    if batch >= values.shape[0]:
        raise ValueError(f"objective targets batch element {batch} but the batch has {values.shape[0]} images")
    mask = torch.zeros_like(values)
    mask[batch] = 1.0
    return values * mask


def _batch_suffix(batch: int | None) -> str:
    return "" if batch is None else f"#{batch}"


def _feature_map(acts: Activations, layer: str) -> Tensor:
    act = acts[layer]
    return act if act.dim() == 4 else act[:, :, None, None]


@dataclass(frozen=True)
class Channel(Objective):
    """Mean activation of one channel over all positions."""

    layer: str
    channel: int
    batch: int | None = None

    def layers(self) -> frozenset[str]:
        return frozenset({self.layer})

    def __call__(self, acts: Activations) -> Tensor:
        return _restrict(_feature_map(acts, self.layer)[:, self.channel].float().mean(dim=(1, 2)), self.batch)

    def to_text(self) -> str:
        return f"{self.layer}:{self.channel}{_batch_suffix(self.batch)}"


@dataclass(frozen=True)
class Neuron(Objective):
    """One channel at one position; ``x``/``y`` default to the centre and are clamped to the map."""

    layer: str
    channel: int
    x: int | None = None
    y: int | None = None
    batch: int | None = None

    def layers(self) -> frozenset[str]:
        return frozenset({self.layer})

    def __call__(self, acts: Activations) -> Tensor:
        act = _feature_map(acts, self.layer)
        height, width = act.shape[-2:]
        x = width // 2 if self.x is None else min(self.x, width - 1)
        y = height // 2 if self.y is None else min(self.y, height - 1)
        return _restrict(act[:, self.channel, y, x].float(), self.batch)

    def to_text(self) -> str:
        position = "" if self.x is None else f"@{self.x},{self.y}"
        return f"neuron:{self.layer}:{self.channel}{position}{_batch_suffix(self.batch)}"


@dataclass(frozen=True)
class Layer(Objective):
    """DeepDream: the mean square of the whole layer."""

    layer: str
    batch: int | None = None

    def layers(self) -> frozenset[str]:
        return frozenset({self.layer})

    def __call__(self, acts: Activations) -> Tensor:
        act = acts[self.layer].float()
        return _restrict(act.pow(2).flatten(1).mean(dim=1), self.batch)

    def to_text(self) -> str:
        return f"layer:{self.layer}{_batch_suffix(self.batch)}"


@dataclass(frozen=True)
class Direction(Objective):
    """A direction in activation space, averaged over positions.

    With ``cosine_power`` 0 it is the plain dot product; above 0 the dot product is weighted
    by the cosine similarity (floored at 0.1) to that power, which rewards pointing along
    the direction rather than only growing large (Olah et al. 2018's cossim objective).
    """

    layer: str
    vector: tuple[float, ...]
    cosine_power: float = 0.0
    batch: int | None = None

    def layers(self) -> frozenset[str]:
        return frozenset({self.layer})

    def __call__(self, acts: Activations) -> Tensor:
        act = _feature_map(acts, self.layer).float()
        vector = torch.tensor(self.vector, device=act.device, dtype=act.dtype)
        if vector.numel() != act.shape[1]:
            raise ValueError(f"direction has {vector.numel()} components but {self.layer} has {act.shape[1]} channels")
        dot = torch.einsum("bchw,c->bhw", act, vector)
        if self.cosine_power:
            cosine = dot / (act.norm(dim=1) * vector.norm() + 1e-6)
            dot = dot * cosine.clamp(min=0.1).pow(self.cosine_power)
        return _restrict(dot.mean(dim=(1, 2)), self.batch)

    def to_text(self) -> str:
        kind = "direction" if not self.cosine_power else f"cosdir{_number(self.cosine_power)}"
        return f"{kind}:{self.layer}:{','.join(_number(v) for v in self.vector)}{_batch_suffix(self.batch)}"


@dataclass(frozen=True)
class ClassLogit(Objective):
    """The pre-softmax score of one class."""

    index: int
    batch: int | None = None

    def layers(self) -> frozenset[str]:
        return frozenset({LOGITS})

    def __call__(self, acts: Activations) -> Tensor:
        return _restrict(acts[LOGITS][:, self.index].float(), self.batch)

    def to_text(self) -> str:
        return f"logit:{self.index}{_batch_suffix(self.batch)}"


@dataclass(frozen=True)
class ClassProbability(Objective):
    """The softmax probability of one class (saturates; logits usually optimize better)."""

    index: int
    batch: int | None = None

    def layers(self) -> frozenset[str]:
        return frozenset({LOGITS})

    def __call__(self, acts: Activations) -> Tensor:
        return _restrict(acts[LOGITS].float().softmax(dim=1)[:, self.index], self.batch)

    def to_text(self) -> str:
        return f"prob:{self.index}{_batch_suffix(self.batch)}"


def gram_matrices(act: Tensor) -> Tensor:
    """Per-image Gram matrices of a feature map, flattened: (batch, channels*channels)."""
    flat = act.float().flatten(2)
    return torch.bmm(flat, flat.transpose(1, 2)).flatten(1)


@dataclass(frozen=True)
class Diversity(Objective):
    """Minus the mean cosine similarity of each image's Gram matrix to the others'.

    Higher is more diverse, so add it (with a weight) to push a batch apart. A batch of
    one image scores 0.
    """

    layer: str

    def layers(self) -> frozenset[str]:
        return frozenset({self.layer})

    def __call__(self, acts: Activations) -> Tensor:
        grams = F.normalize(gram_matrices(_feature_map(acts, self.layer)), dim=1)
        batch = grams.shape[0]
        if batch < 2:
            return grams.new_zeros(batch)
        similarity = grams @ grams.T
        others = similarity.sum(dim=1) - similarity.diagonal()
        return -others / (batch - 1)

    def to_text(self) -> str:
        return f"diversity:{self.layer}"


@dataclass(frozen=True)
class Scaled(Objective):
    """``weight * objective``."""

    objective: Objective
    weight: float

    def layers(self) -> frozenset[str]:
        return self.objective.layers()

    def __call__(self, acts: Activations) -> Tensor:
        return self.weight * self.objective(acts)

    def to_text(self) -> str:
        inner = self.objective.to_text()
        if isinstance(self.objective, Sum):
            inner = f"({inner})"
        if self.weight == -1.0:
            return f"-{inner}"
        return f"{_number(self.weight)}*{inner}"


@dataclass(frozen=True)
class Sum(Objective):
    """The sum of several objectives."""

    terms: tuple[Objective, ...]

    def __post_init__(self) -> None:
        flat: list[Objective] = []
        for term in self.terms:
            flat.extend(term.terms if isinstance(term, Sum) else (term,))
        if not flat:
            raise ValueError("a sum needs at least one objective")
        object.__setattr__(self, "terms", tuple(flat))

    def layers(self) -> frozenset[str]:
        return frozenset().union(*(term.layers() for term in self.terms))

    def __call__(self, acts: Activations) -> Tensor:
        total = self.terms[0](acts)
        for term in self.terms[1:]:
            total = total + term(acts)
        return total

    def to_text(self) -> str:
        text = self.terms[0].to_text()
        for term in self.terms[1:]:
            if isinstance(term, Scaled) and term.weight < 0:
                text += " - " + Scaled(term.objective, -term.weight).to_text().removeprefix("1*")
            else:
                text += " + " + term.to_text()
        return text


def per_batch(objectives: Sequence[Objective]) -> Objective:
    """Objective ``i`` drives batch element ``i`` only: one job, several targets."""
    terms = [_with_batch(objective, index) for index, objective in enumerate(objectives)]
    return Sum(tuple(terms))


def _with_batch(objective: Objective, index: int) -> Objective:
    if isinstance(objective, Sum):
        return Sum(tuple(_with_batch(term, index) for term in objective.terms))
    if isinstance(objective, Scaled):
        return Scaled(_with_batch(objective.objective, index), objective.weight)
    if isinstance(objective, Diversity):
        raise ValueError("diversity is a batch-wide term and cannot target one batch element")
    return replace(objective, batch=index)  # type: ignore[type-var]


def validate_objective(objective: Objective, model_layers: Mapping[str, int], num_classes: int, batch: int) -> None:
    """Check layer names, channel and class indices and batch targets against a model.

    ``model_layers`` maps each valid layer name to its channel count. Raises ValueError
    or KeyError with a message naming what is wrong.
    """
    for term in _leaves(objective):
        layer = getattr(term, "layer", None)
        if layer is not None and layer not in model_layers:
            raise KeyError(f"unknown layer {layer!r}")
        channel = getattr(term, "channel", None)
        if channel is not None and not 0 <= channel < model_layers[layer]:
            raise ValueError(f"channel {channel} out of range for {layer!r} ({model_layers[layer]} channels)")
        if isinstance(term, Direction) and len(term.vector) != model_layers[term.layer]:
            raise ValueError(
                f"direction on {term.layer!r} needs {model_layers[term.layer]} components, got {len(term.vector)}"
            )
        index = getattr(term, "index", None)
        if index is not None and not 0 <= index < num_classes:
            raise ValueError(f"class {index} out of range (the model has {num_classes} classes)")
        target = getattr(term, "batch", None)
        if target is not None and not 0 <= target < batch:
            raise ValueError(f"objective targets batch element {target} but the batch has {batch} images")


def _leaves(objective: Objective) -> list[Objective]:
    if isinstance(objective, Sum):
        return [leaf for term in objective.terms for leaf in _leaves(term)]
    if isinstance(objective, Scaled):
        return _leaves(objective.objective)
    return [objective]
