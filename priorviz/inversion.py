"""Feature inversion (Mahendran & Vedaldi 2015): the image a prior draws whose activations match a photograph's.

What a layer keeps of a photograph shows in what can be rebuilt from its activations alone;
rebuilding it under each prior with the same seed shows how much of the answer the prior
supplies. The loss is the relative L2 distance between the reconstruction's activations and
the photograph's at one or more weighted layers, plus an optional total-variation penalty.
It reports the relative error after every step through the same ``StepEvent`` as ``render``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from priors.base import Parameterization
from priorviz.errors import ComputationError, InvalidInputError
from priorviz.models.target import TargetModel
from priorviz.objectives import resized_like
from priorviz.regularizers import total_variation
from priorviz.render import ProgressCallback, RenderCancelled, StepEvent, StopCheck, build_prior
from priorviz.seeding import make_generator
from priorviz.transforms import NO_TRANSFORMS, Transform

DEFAULT_INVERSION_STEPS = 128


@dataclass(frozen=True)
class InversionResult:
    target: Tensor
    """The photograph as the model saw it, (1, 3, size, size) in [0, 1] on the CPU."""
    images: Tensor
    """The reconstruction, (1, 3, size, size) in [0, 1] on the CPU."""
    errors: Tensor
    """Relative activation error at every step (before that step's update), shape (steps,)."""
    final_error: float
    """Relative activation error of the final reconstruction."""
    seconds: float


def resize_photograph(photograph: Tensor, size: int) -> Tensor:
    """A (3, H, W) photograph as a (1, 3, size, size) batch: centre-cropped to a square, then resized."""
    if photograph.dim() != 3 or photograph.shape[0] != 3:
        raise InvalidInputError(f"expected a (3, H, W) image, got {tuple(photograph.shape)}", field="image")
    height, width = photograph.shape[1:]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = photograph[:, top : top + side, left : left + side].unsqueeze(0).float()
    return F.interpolate(square, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def relative_error(acts: Mapping[str, Tensor], targets: Mapping[str, Tensor], weights: Mapping[str, float]) -> Tensor:
    """Weighted mean over layers of ||a - t|| / ||t|| per image: shape (batch,).

    A transformed image's maps have another size than the photograph's; ``t`` is then resized to them.
    """
    total = sum(weights.values())
    error: Tensor | None = None
    for layer, weight in weights.items():
        target = resized_like(targets[layer], acts[layer])
        difference = (acts[layer].float() - target).flatten(1).norm(dim=1)
        term = weight / total * difference / target.flatten(1).norm(dim=1).clamp_min(1e-12)
        error = term if error is None else error + term
    assert error is not None  # invert refuses an empty layer list
    return error


def invert(
    model: TargetModel,
    photograph: Tensor,
    layers: Mapping[str, float] | Sequence[str],
    prior: str | Parameterization = "fourier",
    *,
    size: int | None = None,
    steps: int = DEFAULT_INVERSION_STEPS,
    learning_rate: float | None = None,
    seed: int = 0,
    total_variation_weight: float = 0.0,
    transforms: Transform = NO_TRANSFORMS,
    prior_options: Mapping[str, object] | None = None,
    snapshot_steps: Sequence[int] = (),
    progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> InversionResult:
    """Rebuild ``photograph`` ((3, H, W) in [0, 1]) from its activations at ``layers`` under ``prior``.

    ``layers`` maps layer names to weights (a plain list weighs them equally). Transforms are off
    by default: the error is then exactly what is minimized. ``progress`` gets the relative error
    as each step's values; ``should_stop`` cancels between steps (``RenderCancelled``).
    """
    weights = dict.fromkeys(layers, 1.0) if not isinstance(layers, Mapping) else dict(layers)
    if not weights:
        raise InvalidInputError("at least one layer is needed", field="layers")
    bad = [name for name, weight in weights.items() if not (math.isfinite(weight) and weight > 0)]
    if bad:
        raise InvalidInputError(f"layer weights must be positive and finite; {bad[:3]} are not", field="layers")
    if steps < 1:
        raise InvalidInputError(f"steps must be at least 1, got {steps}", field="steps")
    if not (math.isfinite(total_variation_weight) and total_variation_weight >= 0):
        raise InvalidInputError(
            f"total_variation_weight must be finite and non-negative, got {total_variation_weight}",
            field="total_variation_weight",
        )
    started = time.perf_counter()
    size = size or model.input_size
    target = resize_photograph(photograph, size)
    with torch.no_grad():
        targets = {
            name: act.float() for name, act in model.activations(target.to(model.device, model.dtype), weights).items()
        }
    generator = make_generator(seed)
    if isinstance(prior, str):
        param = build_prior(prior, 1, size, generator=generator, device=model.device, options=prior_options or {})
    else:
        param = prior
    trainable = [p for p in param.parameters() if p.requires_grad]
    if not trainable or param.owns_update:
        raise InvalidInputError(f"{type(param).__name__} cannot be inverted into by gradient descent", field="prior")
    rate = learning_rate or param.preferred_learning_rate()
    optimizer = torch.optim.Adam(trainable, lr=rate)
    snapshots = set(snapshot_steps)
    errors: list[Tensor] = []
    for step in range(1, steps + 1):
        if should_stop is not None and should_stop():
            raise RenderCancelled(step - 1)
        optimizer.zero_grad(set_to_none=True)
        images = param()
        seen = transforms(images, generator).to(model.dtype)
        error = relative_error(model.activations(seen, weights), targets, weights)
        loss = error.sum() + param.regularization()
        if total_variation_weight:
            loss = loss + total_variation_weight * total_variation(images).sum()
        if not torch.isfinite(loss):
            raise ComputationError(f"the inversion loss became {loss.item()} at step {step}")
        loss.backward()
        optimizer.step()
        param.after_step()
        errors.append(error.detach().float().cpu())
        if progress is not None:
            snapshot = images.detach().float().cpu() if step in snapshots else None
            progress(StepEvent(step, steps, error.detach().float().cpu(), snapshot))
    with torch.no_grad():
        final = param().float()
        final_error = relative_error(model.activations(final.to(model.dtype), weights), targets, weights)
    return InversionResult(
        target=target.cpu(),
        images=final.cpu(),
        errors=torch.cat(errors),
        final_error=float(final_error[0]),
        seconds=time.perf_counter() - started,
    )
