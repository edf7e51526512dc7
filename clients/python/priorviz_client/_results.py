"""What the client returns: frozen, typed records holding PIL images, traces and metrics.

They are plain data, decoupled from the generated protobuf classes, so that user code,
the contact sheet and the report never touch the wire format.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from PIL import Image


class PriorKind(enum.Enum):
    """Whether a prior lets the optimizer cheat or keeps images to what a learned model draws."""

    UNSPECIFIED = "unspecified"
    UNCONSTRAINED = "unconstrained"
    LEARNED = "learned"


K = TypeVar("K", str, int)
V = TypeVar("V")


class FrozenMap(Mapping[K, V]):
    """A read-only mapping, sorted by key, so a frozen record cannot be changed through it (and still pickles)."""

    __slots__ = ("_items",)

    def __init__(self, values: Mapping[K, V] | None = None) -> None:
        self._items: dict[K, V] = dict(sorted((values or {}).items()))

    def __getitem__(self, key: K) -> V:
        return self._items[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"FrozenMap({self._items!r})"

    def __getstate__(self) -> dict[K, V]:
        return self._items

    def __setstate__(self, state: dict[K, V]) -> None:
        self._items = state


def frozen_mapping(values: Mapping[K, V] | None = None) -> FrozenMap[K, V]:
    return FrozenMap(values)


@dataclass(frozen=True)
class ModelSummary:
    name: str
    description: str
    is_default: bool


@dataclass(frozen=True)
class LayerInfo:
    """A layer objectives can name, with the shape of its output at the model's input size."""

    name: str
    channels: int
    height: int
    width: int


@dataclass(frozen=True)
class ModelInfo:
    name: str
    description: str
    input_size: int
    num_classes: int
    class_names: tuple[str, ...]
    """Empty when the caller asked to omit them."""
    layers: tuple[LayerInfo, ...]

    def layer(self, name: str) -> LayerInfo:
        """The layer called ``name``; KeyError listing the valid names otherwise."""
        for info in self.layers:
            if info.name == name:
                return info
        raise KeyError(f"{self.name} has no layer {name!r}; it has {', '.join(info.name for info in self.layers)}")


@dataclass(frozen=True)
class PriorInfo:
    name: str
    kind: PriorKind
    description: str
    output_size: int | None
    """Native side in pixels, or None when the prior draws at any size."""
    latent_shape: tuple[int, ...]
    licence: str
    options: Mapping[str, str]
    available: bool
    unavailable_reason: str = ""
    """Why an unavailable prior cannot be used on that server; empty when available."""
    default_steps: int = 0
    """Steps a job runs when it gives none: as many as finish within about 5 minutes on a 2-core CPU at
    ``default_image_size`` (0: unknown, for an unavailable prior)."""
    default_image_size: int = 0
    """The side ``default_steps`` is planned for: a generator's native side, else where its default job was timed
    (leaving ``size`` out still means the model's input size)."""
    default_learning_rate: float = 0.0
    """Adam's rate when a job gives none (0 for a diffusion sampler, which uses none)."""


@dataclass(frozen=True)
class ServerInfo:
    """One server process: its unique id and how many jobs it runs at once (and lets wait)."""

    server_id: str
    workers: int
    max_queue: int


@dataclass(frozen=True)
class Queued:
    """The job waits behind ``jobs_ahead`` others."""

    jobs_ahead: int


@dataclass(frozen=True)
class Progress:
    """One optimization step done; in a comparison, of prior ``prior_index`` of ``prior_count``."""

    prior: str
    step: int
    total_steps: int
    objective_values: tuple[float, ...]
    prior_index: int = 0
    prior_count: int = 1


@dataclass(frozen=True)
class Preview:
    """The images after ``step``, at a step the request asked to preview."""

    prior: str
    step: int
    images: tuple[Image.Image, ...]


Event = Queued | Progress | Preview


@dataclass(frozen=True)
class Visualization:
    """The images one prior produced for one objective, with their trace and metrics."""

    prior: str
    prior_kind: PriorKind
    model: str
    objective: str
    """The objective's text form as the server parsed it."""
    images: tuple[Image.Image, ...]
    objective_values: tuple[float, ...]
    """Per image, on the final images without transforms."""
    traces: tuple[tuple[float, ...], ...]
    """Per image, the objective at every step (under transforms)."""
    metrics: tuple[Mapping[str, float], ...]
    """Per image; missing keys mean "not applicable"."""
    batch_metrics: Mapping[str, float]
    steps: int
    seed: int
    render_seconds: float
    metrics_seconds: float
    previews: Mapping[int, tuple[Image.Image, ...]] = field(default_factory=frozen_mapping)
    """Step -> images, for the steps the request asked to preview."""

    @property
    def is_unconstrained(self) -> bool:
        return self.prior_kind is PriorKind.UNCONSTRAINED


@dataclass(frozen=True)
class Comparison:
    """The same objective under several priors with the same seed, in request order."""

    results: tuple[Visualization, ...]

    @property
    def model(self) -> str:
        return self.results[0].model

    @property
    def objective(self) -> str:
        return self.results[0].objective

    @property
    def unconstrained(self) -> tuple[Visualization, ...]:
        """The "cheating" images: Fourier or pixel space."""
        return tuple(result for result in self.results if result.is_unconstrained)

    @property
    def learned(self) -> tuple[Visualization, ...]:
        """The prior-constrained, "natural" images."""
        return tuple(result for result in self.results if result.prior_kind is PriorKind.LEARNED)

    def __getitem__(self, prior: str) -> Visualization:
        for result in self.results:
            if result.prior == prior:
                return result
        raise KeyError(f"no result for prior {prior!r}; the comparison has {[r.prior for r in self.results]}")


@dataclass(frozen=True)
class ReceptiveField:
    """A layer's receptive field in the model's input pixels, measured by gradients on the server."""

    size: int
    """Side of the square around a position that holds 90% of the input gradient's mass: every crop's side."""
    extent: int
    """Side of the region where the gradient is not zero, cut to the image."""
    image_size: int
    """The model's input side: images are centre-cropped and resized to it."""


@dataclass(frozen=True)
class Example:
    """One photograph of a ranking: the unit's value on it, and its most activating crop."""

    name: str
    """The set member's name, or ``images[i]`` for an upload."""
    index: int
    """Its place among the ranked images (the set's members in name order, or the uploads in order)."""
    value: float
    """The unit's value on the whole photograph."""
    image: Image.Image
    """The photograph as the model saw it: its centre square."""
    crop: Image.Image
    """The receptive field around the position where the unit is highest, at the photograph's own resolution."""
    crop_value: float
    """The unit's value at that position."""
    position: tuple[int, int] | None
    """(x, y) in the layer's feature map; None for a class."""
    box: tuple[int, int, int]
    """The crop as (left, top, side) in the model's input pixels."""


@dataclass(frozen=True)
class DatasetExamples:
    """The photographs where one unit is highest and lowest (Olah et al. 2017)."""

    model: str
    unit: str
    """The unit's text form as the server parsed it."""
    layer: str
    """The layer the unit reads ("logits" for a class)."""
    image_set: str
    """The image set ranked, or "" for uploaded images."""
    image_count: int
    top: tuple[Example, ...]
    """The highest values, highest first."""
    bottom: tuple[Example, ...]
    """The lowest values, lowest first."""
    receptive_field: ReceptiveField
    stored: bool
    """True when the server read the activations from its store instead of running the model."""
    unreadable: tuple[str, ...]
    """Members of the set that did not decode, left out."""
    seconds: float
