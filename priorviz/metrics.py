"""The metric panel: numbers that say how much a visualization "cheats".

An unconstrained (Fourier/pixel) visualization can drive a unit with a pattern that only
works for the exact pixels the optimizer found; a prior-constrained one has to look like
something the generator can draw. Each metric here measures one symptom of the former:

- ``objective`` / ``objective_transformed`` / ``robustness``: adversarial patterns lose
  their effect when the image is jittered, scaled and rotated a little.
- ``held_out_probability``: a class visualization that transfers to a second network
  shows the class, not a weakness of the first network.
- ``spectral_slope`` / ``high_frequency_energy``: photographs fall near -2 with little
  energy in the top frequencies; cheating patterns are grainier (see ``priorviz.spectrum``).
- ``total_variation``: high-frequency noise is also rough in pixel space.
- ``bn_statistics_distance``: how far the feature statistics the image induces are from
  those the network saw in training (DeepInversion's prior, ``priorviz.statistics``).
- ``diversity`` (batch): whether a batch found different patterns or the same one.

Every measurement runs under ``torch.no_grad`` and draws its randomness from a generator
seeded by ``seed``, so the panel of one image is the same on every call.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from priorviz.models.target import TargetModel
from priorviz.objectives import Activations, Objective, evaluate, gram_matrices, weighted_leaves
from priorviz.regularizers import total_variation
from priorviz.seeding import make_generator
from priorviz.spectrum import ImageTooSmallError, high_frequency_energy, spectral_slope
from priorviz.statistics import NoBatchNormError, batchnorm_statistics_distance
from priorviz.transforms import standard_transforms

DEFAULT_TRANSFORM_SAMPLES = 16

ROBUSTNESS_MIN_CLEAN = 1e-6
"""Robustness is a ratio to the clean value; below this clean value the ratio means nothing and is left out."""

METRIC_DESCRIPTIONS: dict[str, str] = {
    "objective": "objective value on the clean image (as the render loop reports it)",
    "objective_transformed": "mean objective value under random pad/jitter/scale/rotate (Lucid's standard set)",
    "robustness": "objective_transformed / objective: near 1 survives small transforms, near 0 or below is fragile "
    "(left out when the clean value is not positive)",
    "held_out_probability": "probability of the objective's class on the held-out model (transferability); "
    "class objectives only",
    "spectral_slope": "log-log slope of the radially averaged luminance power spectrum, 4 cycles/image to "
    "0.25 cycles/pixel: photographs about -2 to -3, white noise 0",
    "high_frequency_energy": "share of luminance power above 0.25 cycles/pixel: photographs a few percent, "
    "white noise about 0.8",
    "total_variation": "mean absolute difference between neighbouring pixels (x plus y), images in [0, 1]",
    "bn_statistics_distance": "sum over batch-norm layers of the L2 distances between the image's per-channel "
    "feature mean/variance and the stored running ones (lower: more in distribution; compare at equal image size)",
    "diversity": "1 - mean pairwise cosine similarity of the images' Gram matrices at a middle layer: "
    "0 for identical images, higher for a varied batch (batch-level)",
}


@dataclass(frozen=True)
class MetricPanel:
    per_image: list[dict[str, float]]
    """One dict per batch image; a missing key means the metric does not apply."""
    batch: dict[str, float]
    """Batch-level numbers, e.g. ``diversity`` (absent for a batch of one)."""


def measure(
    model: TargetModel,
    objective: Objective,
    images: Tensor,
    *,
    held_out: TargetModel | None = None,
    seed: int = 0,
    transform_samples: int = DEFAULT_TRANSFORM_SAMPLES,
    references: Activations | None = None,
) -> MetricPanel:
    """Measure ``images`` ((batch, 3, H, W) in [0, 1]) rendered for ``objective`` on ``model``.

    ``references`` are the photograph's activations a caricature objective compares with (``RenderResult.references``).
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (batch, 3, H, W), got {tuple(images.shape)}")
    if transform_samples < 1:
        raise ValueError(f"transform_samples must be at least 1, got {transform_samples}")
    images = images.detach().float().cpu().clamp(0.0, 1.0)
    with torch.no_grad():
        columns: dict[str, Tensor] = {}
        clean = objective_values(model, objective, images, references)
        transformed = transformed_objective_values(model, objective, images, seed, transform_samples, references)
        columns["objective"] = clean
        columns["objective_transformed"] = transformed
        columns["robustness"] = torch.where(clean > ROBUSTNESS_MIN_CLEAN, transformed / clean, torch.nan)
        if held_out is not None:
            columns["held_out_probability"] = held_out_probability(held_out, objective, images)
        with contextlib.suppress(ImageTooSmallError):
            columns["spectral_slope"] = spectral_slope(images)
        columns["high_frequency_energy"] = high_frequency_energy(images)
        columns["total_variation"] = total_variation(images)
        with contextlib.suppress(NoBatchNormError):
            columns["bn_statistics_distance"] = batchnorm_statistics_distance(model, images).float()
        batch_metrics: dict[str, float] = {}
        if images.shape[0] > 1:
            batch_metrics["diversity"] = batch_diversity(model, images)
    per_image = [
        {key: float(values[index]) for key, values in columns.items() if torch.isfinite(values[index])}
        for index in range(images.shape[0])
    ]
    return MetricPanel(per_image=per_image, batch=batch_metrics)


def _on_model(model: TargetModel, images: Tensor) -> Tensor:
    return images.to(model.device, model.dtype)


def objective_values(
    model: TargetModel, objective: Objective, images: Tensor, references: Activations | None = None
) -> Tensor:
    """The objective per image on the clean images, float32 on the CPU."""
    acts = model.activations(_on_model(model, images), objective.layers())
    return evaluate(objective, {**acts, **(references or {})}).float().cpu()


def transformed_objective_values(
    model: TargetModel,
    objective: Objective,
    images: Tensor,
    seed: int,
    samples: int,
    references: Activations | None = None,
) -> Tensor:
    """Mean objective per image over ``samples`` draws of the standard transforms."""
    generator = make_generator(seed)
    transforms = standard_transforms()
    total = torch.zeros(images.shape[0])
    for _ in range(samples):
        seen = transforms(images, generator)
        total += objective_values(model, objective, seen, references)
    return total / samples


def target_classes(objective: Objective, batch: int) -> list[list[int]]:
    """Per image, the classes the objective pushes up on it (terms with a class ``index`` and a positive weight)."""
    classes: list[list[int]] = [[] for _ in range(batch)]
    for term, weight in weighted_leaves(objective):
        values = term.values()
        index, target = values.get("index"), values.get("batch")
        if not isinstance(index, int) or weight <= 0:
            continue
        for image in [target] if isinstance(target, int) else range(batch):
            if image < batch and index not in classes[image]:
                classes[image].append(index)
    return classes


def held_out_probability(held_out: TargetModel, objective: Objective, images: Tensor) -> Tensor:
    """Per image, the held-out model's probability of the classes the objective pushes up.

    Images are resized to the held-out model's input size. With several target classes
    on one image the probabilities are summed (the chance the held-out model names any
    of them); images without a class target (or a class the model lacks) get NaN.
    """
    classes = target_classes(objective, images.shape[0])
    result = torch.full((images.shape[0],), torch.nan)
    if not any(classes):
        return result
    size = held_out.input_size
    resized = images
    if images.shape[-2:] != (size, size):
        resized = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    probabilities = held_out.predict(resized).cpu()
    for image, indices in enumerate(classes):
        valid = [index for index in indices if index < probabilities.shape[1]]
        if valid:
            result[image] = probabilities[image, valid].sum()
    return result


def diversity_layer(model: TargetModel) -> str:
    """The middle one of the model's spatial layers: textures, not pixels nor classes."""
    spatial = [layer.name for layer in model.layers if layer.height > 1 and layer.width > 1]
    if not spatial:
        raise ValueError(f"model {model.name!r} lists no spatial layer to measure diversity on")
    return spatial[len(spatial) // 2]


def batch_diversity(model: TargetModel, images: Tensor, layer: str | None = None) -> float:
    """1 - mean pairwise cosine similarity of the images' Gram matrices at ``layer``.

    The same quantity the ``Diversity`` objective optimizes (shifted by one), at the
    model's middle spatial layer unless ``layer`` is given. Needs at least two images.
    """
    if images.shape[0] < 2:
        raise ValueError("diversity needs at least two images")
    layer = layer or diversity_layer(model)
    act = model.activations(_on_model(model, images), [layer])[layer]
    grams = F.normalize(gram_matrices(act.float()), dim=1)
    similarity = grams @ grams.T
    count = images.shape[0]
    mean_similarity = (similarity.sum() - similarity.diagonal().sum()) / (count * (count - 1))
    return max(0.0, 1.0 - float(mean_similarity))  # rounding can leave -1e-7 for identical images
