"""The batch-norm statistics prior: a distance that ranks photographs above noise, and a usable regularizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from priorviz.models import TargetModel
from priorviz.models.target import Normalization
from priorviz.objectives import ClassLogit
from priorviz.render import RenderConfig, make_generator, render
from priorviz.statistics import (
    BatchNormStatisticsPrior,
    NoBatchNormError,
    batchnorm_statistics_distance,
    running_statistics,
)


def photographs(size: int) -> torch.Tensor:
    from skimage import data

    images = [
        torch.from_numpy(np.asarray(photo)).permute(2, 0, 1)[None].float() / 255
        for photo in (data.chelsea(), data.coffee())
    ]
    return torch.cat([F.interpolate(image, size=(size, size), mode="bilinear", antialias=True) for image in images])


def test_photographs_are_closer_to_the_training_statistics_than_noise(lite0: TargetModel) -> None:
    natural = batchnorm_statistics_distance(lite0, photographs(224))
    noise = batchnorm_statistics_distance(lite0, torch.rand((2, 3, 224, 224), generator=make_generator(0)))
    assert natural.shape == (2,) and noise.shape == (2,)
    assert natural.max() < 0.7 * noise.min()
    assert lite0.hook_count() == 0


def test_distance_is_per_image_and_zero_for_matching_statistics() -> None:
    """A one-layer network whose stored statistics are exactly an image's: distance 0 for it, not for the other."""
    batch_norm = nn.BatchNorm2d(3)
    matching = torch.rand((1, 3, 8, 8), generator=make_generator(1))
    batch_norm.running_mean.copy_(matching.mean(dim=(0, 2, 3)))
    batch_norm.running_var.copy_(matching.var(dim=(0, 2, 3), unbiased=False))
    network = nn.Sequential(nn.Identity(), batch_norm)
    model = TargetModel(
        "one_bn",
        network,
        input_size=8,
        normalization=Normalization((0, 0, 0), (1, 1, 1)),
        class_names=["a", "b", "c"],
        layer_names=["1"],
    )
    assert [s.layer for s in running_statistics(model)] == ["1"]
    other = torch.full((1, 3, 8, 8), 0.5)
    distance = batchnorm_statistics_distance(model, torch.cat([matching, other]))
    assert distance[0] == pytest.approx(0.0, abs=1e-5)
    expected = (0.5 - batch_norm.running_mean).norm() + batch_norm.running_var.norm()
    assert distance[1] == pytest.approx(float(expected), rel=1e-5)


def test_a_model_without_batch_norm_is_refused() -> None:
    model = TargetModel(
        "no_bn",
        nn.Sequential(nn.Conv2d(3, 4, 1)),
        input_size=8,
        normalization=Normalization((0, 0, 0), (1, 1, 1)),
        class_names=["a"] * 4,
        layer_names=["0"],
    )
    with pytest.raises(NoBatchNormError, match="no_bn"):
        BatchNormStatisticsPrior(model)


@pytest.mark.slow
def test_as_a_regularizer_it_lowers_the_distance_of_a_fourier_render(lite0: TargetModel) -> None:
    objective = ClassLogit(836)
    config = RenderConfig(steps=20, seed=3)
    free = render(lite0, objective, "fourier", size=96, config=config)
    prior = BatchNormStatisticsPrior(lite0, weight=0.05)
    held = render(lite0, objective, "fourier", size=96, config=config, regularizer=prior)
    assert float(held.values[0]) > float(held.trace[0, 0])  # the objective still rises
    # seeds 0-3 give ratios 0.84-0.92 here; 0.95 leaves room for another machine's rounding
    assert batchnorm_statistics_distance(lite0, held.images) < 0.95 * batchnorm_statistics_distance(lite0, free.images)
    assert lite0.hook_count() == 0
