"""The render loop: optimize a parameterization so that an objective on a model goes up.

One call is one job: it seeds its own generator (parameters and transforms draw from it),
runs Adam for ``steps`` steps through random transforms, reports progress and snapshots
through a callback, checks for cancellation between any two steps, and returns the final
images with the objective's trace. Hooks live only inside ``TargetModel.activations``, so
none survives a job, whether it ends, fails or is cancelled.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from priors.base import DEFAULT_STEPS, Parameterization, PriorNotFoundError, get_prior
from priorviz.errors import CancelledError, ComputationError, InvalidInputError, NotFoundError, clip_text
from priorviz.metrics import target_classes
from priorviz.models import get_model
from priorviz.models.target import TargetModel
from priorviz.objectives import (
    Objective,
    Term,
    evaluate,
    parse_objective,
    reference_activations,
    reference_layers,
)
from priorviz.regularizers import gaussian_blur, image_penalty
from priorviz.seeding import make_generator
from priorviz.transforms import Transform, standard_transforms


class RenderCancelled(CancelledError):
    """The job was asked to stop; ``step`` is the last step that completed."""

    def __init__(self, step: int) -> None:
        self.step = step
        super().__init__(f"render cancelled after step {step}")


@dataclass(frozen=True)
class RenderConfig:
    steps: int = DEFAULT_STEPS
    learning_rate: float | None = None
    """None: the parameterization's own (``preferred_learning_rate()``, its prior's declared default)."""
    seed: int = 0
    transforms: Transform = field(default_factory=standard_transforms)
    snapshot_steps: Sequence[int] = ()
    total_variation_weight: float = 0.0
    l1_weight: float = 0.0
    blur_weight: float = 0.0
    """Weight of the pull towards a 3x3 box blur (Lucid's ``blur_input_each_step``), a penalty."""
    blur_sigma: float = 0.0
    """Gaussian blur of the image itself every ``blur_every`` steps, in pixels; 0: none. Needs a prior with
    an exact inverse (pixel, fourier)."""
    blur_every: int = 1

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise InvalidInputError(f"steps must be at least 1, got {self.steps}", field="steps")
        if self.learning_rate is not None and not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise InvalidInputError(f"learning_rate must be positive, got {self.learning_rate}", field="learning_rate")
        bad = [step for step in self.snapshot_steps if not 1 <= step <= self.steps]
        if bad:
            raise InvalidInputError(f"snapshot steps {bad[:5]} are outside 1..{self.steps}", field="snapshot_steps")
        for name in ("total_variation_weight", "l1_weight", "blur_weight", "blur_sigma"):
            weight = getattr(self, name)
            if not (math.isfinite(weight) and weight >= 0):
                raise InvalidInputError(f"{name} must be finite and non-negative, got {weight}", field=name)
        if self.blur_every < 1:
            raise InvalidInputError(f"blur_every must be at least 1, got {self.blur_every}", field="blur_every")


@dataclass(frozen=True)
class StepEvent:
    """Progress after one step; ``images`` is set (CPU, [0, 1]) at snapshot steps only."""

    step: int
    total_steps: int
    values: Tensor
    """Objective value per batch element at this step (under transforms), on the CPU."""
    images: Tensor | None = None


@dataclass(frozen=True)
class RenderResult:
    images: Tensor
    """Final images on the CPU, (batch, 3, H, W) in [0, 1], float32."""
    values: Tensor
    """Objective per batch element on the final images without transforms."""
    trace: Tensor
    """Objective per step and batch element under transforms, (steps, batch)."""
    snapshots: dict[int, Tensor]
    seconds: float
    extra_images: dict[str, Tensor] = field(default_factory=dict)
    """The parameterization's named extra images after the run (e.g. MACO's ``transparency``), on the CPU."""
    references: dict[str, Tensor] = field(default_factory=dict)
    """The init_image photograph's activations that the objective compares with (see ``reference_activations``),
    for measuring the result against the same objective; empty for most objectives."""


ProgressCallback = Callable[[StepEvent], None]
StopCheck = Callable[[], bool]


def build_prior(
    name: str, batch: int, size: int, *, generator: torch.Generator, device: torch.device, options: Mapping[str, object]
) -> Parameterization:
    """A registered prior, with the priors package's errors turned into the engine's."""
    try:
        return get_prior(name, batch, size, size, generator=generator, device=device, **options)
    except PriorNotFoundError as error:
        raise NotFoundError(str(error), field="prior") from error
    except (ValueError, TypeError) as error:  # an option the prior's builder refuses
        raise InvalidInputError(clip_text(str(error)), field="prior_options") from error


INIT_FIT_STEPS = 200
"""Adam steps a prior without an exact inverse takes to draw an initial image (pixel-space mean squared error)."""


def start_from_images(param: Parameterization, images: Tensor, fit_steps: int = INIT_FIT_STEPS) -> None:
    """Make ``param`` draw ``images`` ((batch, 3, H, W) in [0, 1]) before the first step.

    Pixel and Fourier parameterizations are inverted exactly; any other (a generator's latent) is
    fitted by Adam on the pixel-space mean squared error, keeping to its latent penalty and range.
    """
    if param.start_from(images):
        return
    with torch.no_grad():
        images = images.to(param())  # the device and dtype the prior draws in
    trainable = [p for p in param.parameters() if p.requires_grad]
    if not trainable or param.owns_update:
        raise InvalidInputError(f"{type(param).__name__} cannot start from an image", field="init_image")
    optimizer = torch.optim.Adam(trainable, lr=param.preferred_learning_rate())
    for _ in range(fit_steps):
        optimizer.zero_grad(set_to_none=True)
        loss = (param() - images).pow(2).mean() + param.regularization()
        loss.backward()
        optimizer.step()
        param.after_step()


def render(
    model: TargetModel | str,
    objective: Objective | str,
    prior: str | Parameterization = "fourier",
    *,
    batch: int = 1,
    size: int | None = None,
    config: RenderConfig | None = None,
    steps: int | None = None,
    seed: int | None = None,
    prior_options: Mapping[str, object] | None = None,
    regularizer: Objective | Term | None = None,
    progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
    keep_snapshots: bool = True,
    init_images: Tensor | None = None,
) -> RenderResult:
    """Maximize ``objective`` on ``model`` by optimizing the images of ``prior``.

    ``model`` is a ``TargetModel`` or a registered name; ``objective`` an ``Objective`` or its
    text form (``"logit:130"``). ``prior`` is a registered prior's name (built here from the
    job's seed) or a ready parameterization. ``steps`` and ``seed`` override ``config``'s.
    ``regularizer`` is added to what is maximized but left out of the reported values (e.g.
    the batch-norm statistics prior). Snapshots go to ``progress`` and, with ``keep_snapshots``,
    into the result; a caller that streams them (a server: up to hundreds of MB of float images
    per job at its limits) keeps none. ``init_images`` ((batch, 3, size, size) in [0, 1]) are where
    the optimization starts (DeepDream from a photograph; see ``start_from_images``), and the photograph
    a caricature objective compares with (its activations computed once, here). Raises
    ``ComputationError`` when the objective stops being finite, ``RenderCancelled`` when
    ``should_stop`` says so.
    """
    if isinstance(model, str):
        model = get_model(model)
    if isinstance(objective, str):
        objective = parse_objective(objective)
    config = config or RenderConfig()
    if steps is not None or seed is not None:
        config = replace(
            config, steps=config.steps if steps is None else steps, seed=config.seed if seed is None else seed
        )
    started = time.perf_counter()
    generator = make_generator(config.seed)
    size = size or model.input_size
    if isinstance(prior, str):
        param = build_prior(prior, batch, size, generator=generator, device=model.device, options=prior_options or {})
    else:
        param = prior
    param.start_at_classes([targets[0] if targets else None for targets in target_classes(objective, batch)])
    references = photograph_references(model, objective, init_images)
    if init_images is not None:
        start_from_images(param, init_images)
    if config.blur_sigma and not param.exact_inverse:
        raise InvalidInputError(
            f"{type(param).__name__} cannot be blurred in place (no exact inverse); the blur needs pixel or fourier",
            field="blur_sigma",
        )
    learning_rate = config.learning_rate or param.preferred_learning_rate()
    trainable = [p for p in param.parameters() if p.requires_grad]
    if not trainable and not param.owns_update:
        raise InvalidInputError(f"{type(param).__name__} has no trainable parameters", field="prior")
    optimizer = torch.optim.Adam(trainable, lr=learning_rate) if trainable and not param.owns_update else None
    layers = objective.layers() | (regularizer.layers() if regularizer is not None else frozenset())
    snapshot_steps = set(config.snapshot_steps)
    trace: list[Tensor] = []
    snapshots: dict[int, Tensor] = {}

    for step in range(1, config.steps + 1):
        if should_stop is not None and should_stop():
            raise RenderCancelled(step - 1)
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
        images = param()
        seen = config.transforms(images, generator).to(model.dtype)
        acts = {**model.activations(seen, layers), **references}
        values = evaluate(objective, acts)
        loss = -values.sum() + param.regularization()
        if regularizer is not None:
            loss = loss - evaluate(regularizer, acts).sum()
        loss = loss + image_penalty(images, config.total_variation_weight, config.l1_weight, config.blur_weight)
        if not torch.isfinite(loss):
            raise ComputationError(
                f"the objective {clip_text(objective.to_text())!r} became {loss.item()} at step {step} under prior "
                f"{type(param).__name__}: lower its weights or the learning rate"
            )
        loss.backward()
        if optimizer is not None:
            optimizer.step()
        else:
            param.update(step, config.steps)
        param.after_step()
        if config.blur_sigma and step % config.blur_every == 0:
            with torch.no_grad():
                param.start_from(gaussian_blur(param(), config.blur_sigma))
        trace.append(values.detach())
        snapshot = None
        if step in snapshot_steps:
            snapshot = images.detach().float().cpu()
            if keep_snapshots:
                snapshots[step] = snapshot
        if progress is not None:
            progress(StepEvent(step, config.steps, values.detach().float().cpu(), snapshot))

    with torch.no_grad():
        final = param()
        final_acts = model.activations(final.to(model.dtype), objective.layers())
        final_values = evaluate(objective, {**final_acts, **references})
    if not torch.isfinite(final_values).all():
        raise ComputationError(f"the objective {clip_text(objective.to_text())!r} is not finite on the final images")
    return RenderResult(
        images=final.detach().float().cpu(),
        values=final_values.float().cpu(),
        trace=torch.stack(trace).float().cpu(),
        snapshots=snapshots,
        seconds=time.perf_counter() - started,
        extra_images={name: image.detach().float().cpu() for name, image in param.extra_images().items()},
        references=references,
    )


def photograph_references(model: TargetModel, objective: Objective, init_images: Tensor | None) -> dict[str, Tensor]:
    """The init_image photograph's activations that ``objective`` compares with, computed once per job."""
    layers = reference_layers(objective)
    if not layers:
        return {}
    if init_images is None:
        raise InvalidInputError(
            f"{clip_text(objective.to_text())!r} compares with the photograph's activations; give an init_image",
            field="init_image",
        )
    with torch.no_grad():
        return reference_activations(model.activations(init_images.to(model.device, model.dtype), layers))
