"""The render loop: optimize a parameterization so that an objective on a model goes up.

One call is one job: it seeds its own generator (parameters and transforms draw from it),
runs Adam for ``steps`` steps through random transforms, reports progress and snapshots
through a callback, checks for cancellation between any two steps, and returns the final
images with the objective's trace. Hooks live only inside ``TargetModel.activations``, so
none survives a job, whether it ends, fails or is cancelled.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from priors.base import Parameterization, get_prior
from service.models.target import TargetModel
from service.objectives import Objective
from service.penalties import image_penalty
from service.transforms import Transform, standard_transforms

DEFAULT_LEARNING_RATE = 0.05
DEFAULT_STEPS = 512


class RenderCancelled(Exception):
    """The job was asked to stop; ``step`` is the last step that completed."""

    def __init__(self, step: int) -> None:
        self.step = step
        super().__init__(f"render cancelled after step {step}")


@dataclass(frozen=True)
class RenderConfig:
    steps: int = DEFAULT_STEPS
    learning_rate: float | None = None
    """None: the parameterization's preferred rate, else 0.05."""
    seed: int = 0
    transforms: Transform = field(default_factory=standard_transforms)
    snapshot_steps: Sequence[int] = ()
    total_variation_weight: float = 0.0
    l1_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        bad = [step for step in self.snapshot_steps if not 1 <= step <= self.steps]
        if bad:
            raise ValueError(f"snapshot steps {bad} are outside 1..{self.steps}")


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


ProgressCallback = Callable[[StepEvent], None]
StopCheck = Callable[[], bool]


def make_generator(seed: int) -> torch.Generator:
    """The CPU generator every random draw of a job comes from."""
    return torch.Generator(device="cpu").manual_seed(seed)


def render(
    model: TargetModel,
    objective: Objective,
    prior: str | Parameterization = "fourier",
    *,
    batch: int = 1,
    size: int | None = None,
    config: RenderConfig | None = None,
    prior_options: dict[str, object] | None = None,
    regularizer: Objective | None = None,
    progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
) -> RenderResult:
    """Maximize ``objective`` on ``model`` by optimizing the images of ``prior``.

    ``prior`` is a registered prior's name (built here from the job's seed) or a ready
    parameterization. ``regularizer`` is added to what is maximized but left out of the
    reported values (e.g. the batch-norm statistics prior).
    """
    config = config or RenderConfig()
    started = time.perf_counter()
    generator = make_generator(config.seed)
    size = size or model.input_size
    if isinstance(prior, str):
        param = get_prior(prior, batch, size, size, generator=generator, device=model.device, **(prior_options or {}))
    else:
        param = prior
    learning_rate = config.learning_rate or param.preferred_learning_rate() or DEFAULT_LEARNING_RATE
    trainable = [p for p in param.parameters() if p.requires_grad]
    if not trainable and not param.owns_update:
        raise ValueError(f"{type(param).__name__} has no trainable parameters")
    optimizer = torch.optim.Adam(trainable, lr=learning_rate) if trainable and not param.owns_update else None
    goal = objective if regularizer is None else objective + regularizer
    layers = goal.layers()
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
        acts = model.activations(seen, layers)
        values = objective(acts)
        loss = -values.sum() + param.regularization()
        if regularizer is not None:
            loss = loss - regularizer(acts).sum()
        loss = loss + image_penalty(images, config.total_variation_weight, config.l1_weight)
        loss.backward()
        if optimizer is not None:
            optimizer.step()
        else:
            param.update(step, config.steps)
        param.after_step()
        trace.append(values.detach())
        snapshot = None
        if step in snapshot_steps:
            snapshot = images.detach().float().cpu()
            snapshots[step] = snapshot
        if progress is not None:
            progress(StepEvent(step, config.steps, values.detach().float().cpu(), snapshot))

    with torch.no_grad():
        final = param()
        final_values = objective(model.activations(final.to(model.dtype), objective.layers()))
    return RenderResult(
        images=final.detach().float().cpu(),
        values=final_values.float().cpu(),
        trace=torch.stack(trace).float().cpu(),
        snapshots=snapshots,
        seconds=time.perf_counter() - started,
    )
