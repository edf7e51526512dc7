"""The one interface every parameterization implements, and the registry of priors.

A ``Parameterization`` is an ``nn.Module`` whose trainable parameters are what the render
loop optimizes and whose ``forward()`` returns the images, shape (batch, 3, H, W) in [0, 1].
Learned priors add a ``regularization()`` (a latent norm penalty) and/or ``after_step()``
(clipping a latent back into its training range). A sampler that updates its own state
from the gradient instead of through Adam (diffusion guidance) sets ``owns_update`` and
implements ``update()``. One that has more to show than its images (MACO's transparency map)
returns it from ``extra_images()``.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass

import torch
from torch import Tensor, nn

from priors.options import Option, parse_options

DEFAULT_STEPS = 512
"""Render steps of a prior whose job is cheap enough for them (every built-in one)."""
DEFAULT_LEARNING_RATE = 0.05
"""Adam's rate for a parameterization that prefers no other."""


class PriorKind(enum.Enum):
    UNCONSTRAINED = "unconstrained"
    LEARNED = "learned"


class PriorNotFoundError(LookupError):
    """No prior registered under the requested name."""


class Parameterization(nn.Module, ABC):
    """Parameters in, images in [0, 1] NCHW out."""

    owns_update: bool = False
    """True for samplers that step themselves in ``update()`` instead of through Adam."""
    exact_inverse: bool = False
    """True when ``start_from`` draws any image exactly, so that the image itself can be edited between
    steps (the render loop's Gaussian blur); a generator's latent cannot."""

    def __init__(self, batch: int, height: int, width: int) -> None:
        super().__init__()
        if batch < 1 or height < 1 or width < 1:
            raise ValueError(f"batch, height and width must be positive, got {batch}, {height}, {width}")
        self.batch, self.height, self.width = batch, height, width

    @abstractmethod
    def forward(self) -> Tensor:
        """The current images, (batch, 3, height, width), values in [0, 1]."""

    def regularization(self) -> Tensor:
        """A scalar added to the loss, e.g. a latent norm penalty; zero by default."""
        return torch.zeros((), device=self._device())

    def after_step(self) -> None:
        """Called after every optimizer step, e.g. to clip a latent into range."""

    def update(self, step: int, total_steps: int) -> None:
        """For ``owns_update`` samplers: take one step using the gradients just computed."""
        raise NotImplementedError(f"{type(self).__name__} is stepped by the optimizer")

    def start_at_classes(self, classes: Sequence[int | None]) -> None:
        """Called before the first step with the class each image's objective targets (None: no
        class), for class-conditional generators that start at that class; ignored by default."""

    def start_from(self, images: Tensor) -> bool:
        """Set the parameters so that ``forward()`` draws ``images`` ((batch, 3, H, W) in [0, 1]) exactly; False
        when this parameterization has no exact inverse (the engine then fits its parameters to the images)."""
        return False

    def extra_images(self) -> dict[str, Tensor]:
        """Named images that come with the result beside the main ones, read once the run is over (MACO's
        transparency map); each shaped like ``forward()``'s output, (batch, 3, H, W) in [0, 1]. None by default."""
        return {}

    def preferred_learning_rate(self) -> float:
        """Adam's rate in this space: what a job's learning rate 0 means (its ``PriorInfo.default_learning_rate``)."""
        return DEFAULT_LEARNING_RATE

    def _device(self) -> torch.device:
        for tensor in [*self.parameters(), *self.buffers()]:
            return tensor.device
        return torch.device("cpu")


@dataclass(frozen=True)
class PriorInfo:
    """What a client needs to choose a prior."""

    name: str
    kind: PriorKind
    description: str
    output_size: int | None = None
    """Native output side in pixels, or None when the prior draws at any requested size."""
    latent_shape: tuple[int, ...] = ()
    """Shape of one image's latent (empty for pixel-space parameterizations)."""
    licence: str = ""
    options: tuple[Option, ...] = ()
    """The options a builder accepts, each with its type, range, default and meaning."""
    unavailable_reason: str = ""
    """Why a registered prior cannot be used here (a user's folder that failed to load); empty when it can."""
    _: KW_ONLY
    default_steps: int
    """Render steps of a job that asks for none: as many as finish within about 5 minutes on a 2-core CPU at
    ``default_image_size`` (see ``priors.costs``); 0 for an unavailable prior, whose cost is unknown."""
    default_image_size: int
    """The image side ``default_steps`` is planned for: the native side of a generator (which draws there and
    resizes, so a step costs about the same at any requested size), else the side its job was timed at."""
    default_learning_rate: float
    """Adam's rate when a job gives none (the parameterization's ``preferred_learning_rate()``); 0 for a sampler
    that steps itself (``owns_update``), which no rate affects."""

    def __post_init__(self) -> None:
        least = 0 if self.unavailable_reason else 1
        if self.default_steps < least or self.default_image_size < least or self.default_learning_rate < 0:
            raise ValueError(
                f"prior {self.name!r}: default steps {self.default_steps}, image size {self.default_image_size} "
                f"and learning rate {self.default_learning_rate} must be positive"
            )

    def option_help(self) -> dict[str, str]:
        """Option name -> the one line that ListPriors shows."""
        return {option.name: option.describe() for option in self.options}

    def parse_options(self, given: Mapping[str, object]) -> dict[str, bool | int | float | str]:
        """Every option typed and checked (defaults filled in); raises ``OptionError``."""
        return parse_options(self.options, given)


PriorBuilder = Callable[..., Parameterization]
"""``builder(batch, height, width, *, generator, device, **options) -> Parameterization``; the
options arrive parsed, typed and complete (see ``priors.options``)."""

_PRIORS: dict[str, tuple[PriorInfo, PriorBuilder, Callable[[], bool]]] = {}


def _always() -> bool:
    return True


def register_prior(info: PriorInfo, available: Callable[[], bool] = _always) -> Callable[[PriorBuilder], PriorBuilder]:
    """Decorator registering a builder; ``available`` says whether its weights are here."""

    def decorate(builder: PriorBuilder) -> PriorBuilder:
        if info.name in _PRIORS:
            raise ValueError(f"prior {info.name!r} is already registered")
        _PRIORS[info.name] = (info, builder, available)
        return builder

    return decorate


def unregister_prior(name: str) -> None:
    """Forget a registered prior (a user's diffusers directory that went away, a test's temporary one)."""
    if name not in _PRIORS:
        raise PriorNotFoundError(f"prior {name!r} is not registered")
    del _PRIORS[name]


def list_priors(*, only_available: bool = True) -> list[PriorInfo]:
    """Registered priors: fourier, the other unconstrained ones, then the learned ones, by name."""
    infos = [info for info, _, available in _PRIORS.values() if available() or not only_available]
    # Fourier, the unconstrained space every comparison starts from, comes first.
    return sorted(infos, key=lambda info: (info.kind != PriorKind.UNCONSTRAINED, info.name != "fourier", info.name))


def prior_info(name: str) -> PriorInfo:
    """The registered prior's info, available here or not; raises ``PriorNotFoundError``."""
    if name not in _PRIORS:
        raise PriorNotFoundError(f"unknown prior {name[:200]!r}; available: {', '.join(sorted(_PRIORS))}")
    return _PRIORS[name][0]


def get_prior(
    name: str,
    batch: int,
    height: int,
    width: int,
    *,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    **options: object,
) -> Parameterization:
    """Build the prior ``name``; its random initial state comes from ``generator`` (a CPU generator)."""
    info = prior_info(name)
    _, builder, available = _PRIORS[name]
    if not available():
        raise PriorNotFoundError(
            f"prior {name!r} is unavailable here: {info.unavailable_reason or 'its model is not installed'}"
        )
    parsed = info.parse_options(options)
    return builder(batch, height, width, generator=generator, device=torch.device(device), **parsed)
