"""Dataset examples (Olah et al. 2017): the photographs of a set that excite a unit most and least, and where.

A unit is one channel, neuron, direction or class (``priorviz_objectives.units``). Its value on a
photograph is its objective's value there, exactly the number a visualization maximizes (a channel's
mean over positions, a class's logit), computed by the same evaluators on the photograph
centre-cropped and resized to the model's input size, as ``Invert`` and ``init_image`` see it.

An example's crop is the unit's receptive field around the position where the unit is highest: the
unit's objective evaluated on each position's activation vector alone (a channel's map, a direction's
per-position dot product). A neuron has its own one position; a class has none, and its crop is the
whole photograph.

The receptive field is measured by gradients, not derived from the architecture: the gradient of the
layer's channels summed at the centre position, in absolute value, summed over four seeded noise
images. Its ``size`` is the side of the smallest square around that position holding 90% of the
gradient's mass (the effective receptive field of Luo et al. 2016); its ``extent`` is where the
gradient is not zero at all, which on EfficientNet-Lite0 covers the whole image from blocks.8 on and
would show nothing.

An image set's activations at a layer go to an ``ActivationStore`` under a key made of the model's
weights, the layer, the input size and the name and SHA-256 of every member, so that the next query
reads them back instead of running the model, and a changed, added or removed file makes a new key.
Uploaded images are computed for each request and never stored (a client could fill the disk).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from priorviz.activation_store import ActivationStore
from priorviz.errors import CancelledError, InvalidInputError, NotFoundError, PriorvizError, UnavailableError
from priorviz.image_input import MAX_INPUT_PIXELS, ImageSet, decode_image
from priorviz.inversion import resize_photograph
from priorviz.models.target import TargetModel
from priorviz.objectives import Neuron, Objective, evaluate
from priorviz.seeding import make_generator
from priorviz_objectives.units import Unit, as_unit, unit_layer

STORE_VERSION = 1
"""Part of every store key: raise it when what is stored under a key changes meaning."""
RECEPTIVE_FIELD_MASS = 0.9
RECEPTIVE_FIELD_PROBES = 4
BATCH = 16
"""Photographs per forward pass when activations are computed."""
CHUNK = 256
"""Images whose activations are reduced at once when ranking (bounds memory on large sets)."""

Photographs = ImageSet | Sequence[tuple[str, Tensor]]
"""An image set (activations stored), or named (3, H, W) images in [0, 1] (computed each time)."""


@dataclass(frozen=True)
class ReceptiveField:
    """A layer's receptive field in the model's input pixels."""

    size: int
    """Side of the square around a position that holds 90% of the input gradient's mass: the crop's side."""
    extent: int
    """Side of the region where the gradient is not zero (cut to the image)."""
    image_size: int
    """The model's input side, in which both are measured."""


@dataclass(frozen=True)
class Example:
    """One photograph, its value, and its most activating crop."""

    name: str
    index: int
    """Its place among the ranked images: the set's members in name order, or the uploads in order."""
    value: float
    """The unit's value on the whole photograph."""
    crop_value: float
    """The unit's value at ``position``: the highest over positions (a neuron's and a class's: ``value``)."""
    position: tuple[int, int] | None
    """(x, y) in the layer's feature map; None for a class."""
    box: tuple[int, int, int]
    """The crop as (left, top, side) in the model's input pixels."""
    image: Tensor
    """The photograph as the model saw it (the centre square), (3, t, t) in [0, 1]."""
    crop: Tensor
    """The crop, cut from the photograph at its own resolution, (3, t, t) in [0, 1]."""


@dataclass(frozen=True)
class ExamplesProgress:
    """Activations of ``done`` of ``total`` photographs are computed."""

    done: int
    total: int


@dataclass(frozen=True)
class ExamplesResult:
    unit: Unit
    layer: str
    count: int
    """Photographs ranked."""
    top: tuple[Example, ...]
    """The highest values, highest first."""
    bottom: tuple[Example, ...]
    """The lowest values, lowest first."""
    receptive_field: ReceptiveField
    stored: bool
    """True when the activations were read from the store, without running the model."""
    unreadable: tuple[str, ...]
    """Members of the set that did not decode (or passed the pixel cap), left out of the ranking."""
    seconds: float


Progress = Callable[[ExamplesProgress], None]
StopCheck = Callable[[], bool]


def dataset_examples(
    model: TargetModel,
    unit: Objective,
    photographs: Photographs,
    *,
    k: int = 8,
    thumbnail_size: int = 128,
    store: ActivationStore | None = None,
    max_pixels: int = MAX_INPUT_PIXELS,
    progress: Progress | None = None,
    should_stop: StopCheck | None = None,
) -> ExamplesResult:
    """The ``k`` photographs where ``unit`` is highest and the ``k`` where it is lowest, with their crops.

    An image set's activations are read from ``store`` when it holds them, else computed and kept
    there; ``progress`` hears about each batch computed and ``should_stop`` cancels between batches.
    """
    result = _examples(model, unit, photographs, k, thumbnail_size, store, max_pixels, progress, should_stop, True)
    assert result is not None  # computing is allowed
    return result


def stored_examples(
    model: TargetModel,
    unit: Objective,
    image_set: ImageSet,
    store: ActivationStore,
    *,
    k: int = 8,
    thumbnail_size: int = 128,
    max_pixels: int = MAX_INPUT_PIXELS,
) -> ExamplesResult | None:
    """``dataset_examples`` without running the model: None unless ``store`` holds everything it needs."""
    return _examples(model, unit, image_set, k, thumbnail_size, store, max_pixels, None, None, False)


def _examples(
    model: TargetModel,
    objective: Objective,
    photographs: Photographs,
    k: int,
    thumbnail_size: int,
    store: ActivationStore | None,
    max_pixels: int,
    progress: Progress | None,
    should_stop: StopCheck | None,
    compute: bool,
) -> ExamplesResult | None:
    started = time.perf_counter()
    unit = as_unit(objective, field="unit")
    layer = unit_layer(unit)
    try:
        model.layer(layer)
    except PriorvizError as error:
        error.field = "unit"
        raise
    if k < 1:
        raise InvalidInputError(f"k must be at least 1, got {k}", field="k")
    field = receptive_field(model, layer, store, compute=compute)
    if field is None:
        return None
    if isinstance(photographs, ImageSet):
        found = _set_activations(model, layer, photographs, store, max_pixels, progress, should_stop, compute)
        if found is None:
            return None
        acts, names, unreadable, stored = found
        files = photographs.files

        def load(name: str) -> Tensor:
            return decode_image(files[name].read_bytes(), field="image_set", max_pixels=max_pixels)

    else:
        uploads = dict(photographs)
        loaders = [(name, _constant(image)) for name, image in photographs]
        acts, names, unreadable = _computed(model, layer, loaders, progress, should_stop, field="images")
        stored = False

        def load(name: str) -> Tensor:
            return uploads[name]

    values, maps = _unit_values(unit, layer, acts)
    ranked = np.argsort(-values, kind="stable")
    lowest = np.argsort(values, kind="stable")

    def example(row: int) -> Example:
        position, crop_value = _position(unit, acts, maps, row, float(values[row]))
        box = _box(position, acts.shape[2:] if acts.ndim == 4 else (1, 1), field)
        photograph = load(names[row])
        return Example(
            name=names[row],
            index=row,
            value=float(values[row]),
            crop_value=crop_value,
            position=position,
            box=box,
            image=resize_photograph(photograph, thumbnail_size)[0],
            crop=_crop(photograph, box, model.input_size, thumbnail_size),
        )

    return ExamplesResult(
        unit=unit,
        layer=layer,
        count=len(names),
        top=tuple(example(int(row)) for row in ranked[:k]),
        bottom=tuple(example(int(row)) for row in lowest[:k]),
        receptive_field=field,
        stored=stored,
        unreadable=tuple(unreadable),
        seconds=time.perf_counter() - started,
    )


def _constant(image: Tensor) -> Callable[[], Tensor]:
    return lambda: image


# -- activations ---------------------------------------------------------------------------


def _set_activations(
    model: TargetModel,
    layer: str,
    image_set: ImageSet,
    store: ActivationStore | None,
    max_pixels: int,
    progress: Progress | None,
    should_stop: StopCheck | None,
    compute: bool,
) -> tuple[np.ndarray, Sequence[str], Sequence[str], bool] | None:
    """The set's activations at ``layer`` (from the store when it has them), row names, unreadable members, stored."""
    files = image_set.files

    def loader(path: Path) -> Callable[[], Tensor]:
        return lambda: decode_image(path.read_bytes(), field="image_set", max_pixels=max_pixels)

    if store is None:
        loaders = [(name, loader(path)) for name, path in files.items()]
        return *_computed(model, layer, loaders, progress, should_stop, field="image_set"), False
    digests = store.file_digests(files)
    if not digests:
        raise NotFoundError(f"image set {image_set.name!r} holds no PNG or JPEG files", field="image_set")
    members = sorted(digests.items())
    key = _digest("activations", STORE_VERSION, model_fingerprint(model), layer, model.input_size, members)
    entry = store.load(key)
    if entry is None:
        if not compute:
            return None
        with store.writing(key) as writer:
            loaders = [(name, loader(files[name])) for name, _ in members]
            names, unreadable = _compute(model, layer, loaders, writer.append, progress, should_stop)
            if not names:
                raise NotFoundError(f"no image of set {image_set.name!r} is readable", field="image_set")
            writer.meta.update(names=names, unreadable=unreadable)
        entry = store.load(key)
        if entry is None:
            raise UnavailableError("the activation store dropped the entry just written: it is too small")
        return entry.array, entry.meta["names"], entry.meta["unreadable"], False
    return entry.array, entry.meta["names"], entry.meta["unreadable"], True


def _computed(
    model: TargetModel,
    layer: str,
    loaders: Sequence[tuple[str, Callable[[], Tensor]]],
    progress: Progress | None,
    should_stop: StopCheck | None,
    field: str,
) -> tuple[np.ndarray, list[str], list[str]]:
    """Activations computed in memory, with the names of their rows and of the photographs that did not decode."""
    rows: list[np.ndarray] = []
    names, unreadable = _compute(model, layer, loaders, rows.append, progress, should_stop)
    if not names:
        raise NotFoundError("no image is readable", field=field)
    return np.concatenate(rows), names, unreadable


def _compute(
    model: TargetModel,
    layer: str,
    loaders: Sequence[tuple[str, Callable[[], Tensor]]],
    append: Callable[[np.ndarray], None],
    progress: Progress | None,
    should_stop: StopCheck | None,
) -> tuple[list[str], list[str]]:
    """Run the model over the photographs in batches, appending their activations; returns (names, unreadable)."""
    names: list[str] = []
    unreadable: list[str] = []
    for start in range(0, len(loaders), BATCH):
        if should_stop is not None and should_stop():
            raise CancelledError(f"dataset examples cancelled after {start} of {len(loaders)} images")
        batch = []
        for name, load in loaders[start : start + BATCH]:
            try:
                batch.append(resize_photograph(load(), model.input_size))
            except (InvalidInputError, OSError):  # a member that does not decode, or went away
                unreadable.append(name)
                continue
            names.append(name)
        if batch:
            with torch.no_grad():
                images = torch.cat(batch).to(model.device, model.dtype)
                append(model.activations(images, [layer])[layer].float().cpu().numpy())
        if progress is not None:
            progress(ExamplesProgress(min(start + BATCH, len(loaders)), len(loaders)))
    return names, unreadable


# -- values, positions and crops -------------------------------------------------------------


def _unit_values(unit: Unit, layer: str, acts: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The unit's value per image, and per position (N, H, W) where it has positions to choose from."""
    spatial = acts.ndim == 4 and not isinstance(unit, Neuron)
    values, maps = [], []
    for start in range(0, acts.shape[0], CHUNK):
        chunk = torch.from_numpy(np.asarray(acts[start : start + CHUNK]))
        values.append(evaluate(unit, {layer: chunk}).numpy())
        if spatial:
            count, channels, height, width = chunk.shape
            each = chunk.permute(0, 2, 3, 1).reshape(count * height * width, channels, 1, 1)
            maps.append(evaluate(unit, {layer: each}).view(count, height, width).numpy())
    return np.concatenate(values), np.concatenate(maps) if spatial else None


def _position(
    unit: Unit, acts: np.ndarray, maps: np.ndarray | None, row: int, value: float
) -> tuple[tuple[int, int] | None, float]:
    """Where the crop goes in the feature map, and the unit's value there."""
    if maps is not None:
        best_y, best_x = np.unravel_index(int(np.argmax(maps[row])), maps.shape[1:])
        return (int(best_x), int(best_y)), float(maps[row, best_y, best_x])
    if isinstance(unit, Neuron) and acts.ndim == 4:
        height, width = acts.shape[2:]
        x = width // 2 if unit.x is None else min(unit.x, width - 1)
        y = height // 2 if unit.y is None else min(unit.y, height - 1)
        return (x, y), value
    return None, value


def _centre(index: int, cells: int, size: int) -> float:
    """The centre of a feature-map cell, in input pixels."""
    return (index + 0.5) * size / cells


def _box(position: tuple[int, int] | None, map_size: tuple[int, ...], field: ReceptiveField) -> tuple[int, int, int]:
    """The receptive field around ``position`` as (left, top, side), moved inside the image; all of it for None."""
    size = field.image_size
    if position is None:
        return 0, 0, size
    side = field.size
    x, y = position
    height, width = map_size
    left = min(max(round(_centre(x, width, size) - side / 2), 0), size - side)
    top = min(max(round(_centre(y, height, size) - side / 2), 0), size - side)
    return left, top, side


def _crop(photograph: Tensor, box: tuple[int, int, int], size: int, thumbnail_size: int) -> Tensor:
    """``box`` (in the model's ``size`` pixels) cut from the photograph's centre square at its own resolution."""
    height, width = photograph.shape[1:]
    side = min(height, width)
    top0, left0 = (height - side) // 2, (width - side) // 2
    scale = side / size
    left, top, extent = box
    rows = slice(top0 + round(top * scale), top0 + max(round((top + extent) * scale), round(top * scale) + 1))
    columns = slice(left0 + round(left * scale), left0 + max(round((left + extent) * scale), round(left * scale) + 1))
    return resize_photograph(photograph[:, rows, columns], thumbnail_size)[0]


# -- receptive fields and keys ---------------------------------------------------------------

_fields: dict[str, ReceptiveField] = {}
_fingerprints: weakref.WeakKeyDictionary[TargetModel, str] = weakref.WeakKeyDictionary()
_fingerprints_lock = threading.Lock()


def receptive_field(
    model: TargetModel, layer: str, store: ActivationStore | None = None, *, compute: bool = True
) -> ReceptiveField | None:
    """The layer's measured receptive field (kept in memory and in ``store``); None when unknown and not ``compute``."""
    key = _digest("receptive-field", STORE_VERSION, model_fingerprint(model), layer, model.input_size)
    known = _fields.get(key)
    if known is None and store is not None:
        record = store.record(key)
        known = ReceptiveField(**record) if record is not None else None
    if known is None:
        if not compute:
            return None
        known = _measure_receptive_field(model, layer)
        if store is not None:
            store.keep_record(key, asdict(known))
    _fields[key] = known
    return known


def _measure_receptive_field(model: TargetModel, layer: str) -> ReceptiveField:
    size = model.input_size
    probes = torch.rand(RECEPTIVE_FIELD_PROBES, 3, size, size, generator=make_generator(0))
    probes = probes.to(model.device, model.dtype).requires_grad_(True)
    with torch.enable_grad():
        act = model.activations(probes, [layer])[layer]
        if act.dim() != 4:  # a vector (logits): every output sees the whole image
            return ReceptiveField(size, size, size)
        height, width = act.shape[-2:]
        act[:, :, height // 2, width // 2].float().sum().backward()
    assert probes.grad is not None  # the input requires grad
    weight = probes.grad.float().abs().sum(dim=(0, 1)).cpu()
    total = float(weight.sum())
    if not total > 0:  # no gradient reaches the input: nothing to measure
        return ReceptiveField(size, size, size)
    coordinates = torch.arange(size, dtype=torch.float32) + 0.5
    distance = torch.maximum(
        (coordinates[:, None] - _centre(height // 2, height, size)).abs(),
        (coordinates[None, :] - _centre(width // 2, width, size)).abs(),
    ).flatten()
    order = distance.argsort()
    mass = weight.flatten()[order].cumsum(0)
    index = min(int(torch.searchsorted(mass, RECEPTIVE_FIELD_MASS * mass[-1])), len(order) - 1)
    reach = float(distance[order][index])
    nonzero = weight.nonzero()
    spans = nonzero.max(dim=0).values - nonzero.min(dim=0).values + 1
    extent = int(spans.max())
    return ReceptiveField(min(max(1, math.ceil(2 * reach)), extent, size), extent, size)


def model_fingerprint(model: TargetModel) -> str:
    """SHA-256 of the model's name, dtype, input size, normalization and weights (once per model object)."""
    with _fingerprints_lock:
        known = _fingerprints.get(model)
        if known is not None:
            return known
        digest = hashlib.sha256(
            json.dumps([model.name, str(model.dtype), model.input_size, asdict(model.normalization)]).encode()
        )
        for name, tensor in model.module.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        _fingerprints[model] = digest.hexdigest()
        return _fingerprints[model]


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()
