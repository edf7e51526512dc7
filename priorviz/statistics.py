"""The statistics prior: how far an image's batch-norm statistics are from the training data's.

Every batch-norm layer of a trained classifier stores the running mean and variance of its
input over the training set. An image that looks "in distribution" to the network induces
feature statistics close to those; adversarial, high-frequency patterns do not. DeepInversion
(Yin et al. 2020) adds this distance to the loss as a prior that needs no generator:

    R(x) = sum over batch-norm layers l of  ||mu_l(x) - running_mean_l||_2 + ||var_l(x) - running_var_l||_2

DeepInversion takes mu and var over the whole batch; here they are taken per image (over
its spatial positions), so the distance is one number per image and a batch of several
visualizations does not average its members' statistics together.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from priorviz.errors import InvalidInputError
from priorviz.models.target import INPUT_SUFFIX, TargetModel
from priorviz.objectives import Activations


class NoBatchNormError(InvalidInputError):
    """The model has no batch-norm layer with running statistics, so the prior is undefined."""


@dataclass(frozen=True)
class RunningStatistics:
    """One batch-norm layer's stored input statistics."""

    layer: str
    mean: Tensor
    variance: Tensor


def running_statistics(model: TargetModel) -> tuple[RunningStatistics, ...]:
    """The running statistics of every 2-d batch-norm layer of ``model``, in network order."""
    found = tuple(
        RunningStatistics(name, module.running_mean.detach().float(), module.running_var.detach().float())
        for name, module in model.module.named_modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm)
        and module.track_running_stats
        and module.running_mean is not None
        and module.running_var is not None
    )
    if not found:
        raise NoBatchNormError(f"model {model.name!r} has no batch-norm layer with running statistics")
    return found


def statistics_distance(acts: Activations, stored: tuple[RunningStatistics, ...]) -> Tensor:
    """Sum over layers of the L2 distances of per-image mean and variance to the stored ones: (batch,)."""
    total: Tensor | None = None
    for layer in stored:
        features = acts[layer.layer + INPUT_SUFFIX].float().flatten(2)
        mean = features.mean(dim=2)
        variance = features.var(dim=2, unbiased=False)
        distance = (mean - layer.mean).norm(dim=1) + (variance - layer.variance).norm(dim=1)
        total = distance if total is None else total + distance
    assert total is not None  # running_statistics never returns an empty tuple
    return total


class BatchNormStatisticsPrior:
    """``-weight * R(x)``: add it as ``render(..., regularizer=...)`` to keep images in distribution.

    It is a regularizer built for one model (a ``priorviz.objectives.Term``), not an objective
    kind: it has no text form and never crosses the wire.
    """

    def __init__(self, model: TargetModel, weight: float = 0.01) -> None:
        if not weight >= 0:
            raise ValueError(f"the statistics prior's weight must be non-negative, got {weight}")
        self.weight = float(weight)
        self.stored = tuple(
            RunningStatistics(s.layer, s.mean.to(model.device), s.variance.to(model.device))
            for s in running_statistics(model)
        )

    def layers(self) -> frozenset[str]:
        return frozenset(layer.layer + INPUT_SUFFIX for layer in self.stored)

    def __call__(self, acts: Activations) -> Tensor:
        return -self.weight * statistics_distance(acts, self.stored)


def batchnorm_statistics_distance(model: TargetModel, images: Tensor) -> Tensor:
    """DeepInversion's feature-statistics distance R(x) of each image to ``model``'s training data: (batch,).

    ``images`` are (batch, 3, H, W) in [0, 1]; lower means more in distribution. Values are
    comparable between images of the same size on the same model only.
    """
    stored = BatchNormStatisticsPrior(model, weight=1.0).stored
    with torch.no_grad():
        acts = model.activations(images.to(model.device, model.dtype), [s.layer + INPUT_SUFFIX for s in stored])
    return statistics_distance(acts, stored).cpu()
