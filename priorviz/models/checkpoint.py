"""Local checkpoints: a torchvision architecture name plus a state dict and metadata.

File format (``torch.save`` of a dict, read with ``weights_only=True``)::

    {"arch": "resnet18", "state_dict": {...}, "class_names": [...],
     "input_size": 224, "mean": [...], "std": [...]}   # the last four optional

``class_names`` defaults to ImageNet's when the classifier has 1000 outputs. Every field is
checked before it is used, so that a malformed file is reported as such (``CheckpointError``,
naming the field) instead of failing somewhere inside torch. Every spelling of one file
(relative, ``..``, a symlink) resolves to one model name, ``checkpoint:REALPATH``, so that they
share one cache entry.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import torch
import torchvision

from priorviz.errors import InvalidInputError, clip_text
from priorviz.models._api import ModelNotFoundError, ModelResolver, register_resolver
from priorviz.models.imagenet import IMAGENET_NORMALIZATION, imagenet_class_names
from priorviz.models.target import Normalization, TargetModel
from priorviz.models.torchvision_models import listed_layers

PREFIX = "checkpoint:"
MAX_INPUT_SIZE = 1024


class CheckpointError(InvalidInputError):
    """A checkpoint file that exists but does not hold what priorviz needs."""


def load_checkpoint(path: str | Path) -> TargetModel:
    path = Path(path)
    shown = clip_text(str(path))
    if not _is_file(path):
        raise ModelNotFoundError(f"checkpoint file {shown!r} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt zip, pickle of arbitrary objects, unreadable file, ...
        raise CheckpointError(f"{shown} is not a readable weights-only checkpoint: {clip_text(str(error))}") from error
    if not isinstance(payload, dict) or "arch" not in payload or "state_dict" not in payload:
        raise CheckpointError(f"{shown} must hold a dict with 'arch' and 'state_dict' keys")
    arch = payload["arch"]
    if not isinstance(arch, str):
        raise CheckpointError(f"{shown}: 'arch' must be a torchvision architecture name, got {type(arch).__name__}")
    state = _state_dict(payload["state_dict"], shown)
    input_size = _input_size(payload.get("input_size", 224), shown)
    normalization = (
        Normalization(_channel_values(payload, "mean", shown), _channel_values(payload, "std", shown))
        if "mean" in payload or "std" in payload
        else IMAGENET_NORMALIZATION
    )
    class_names = _class_names(payload.get("class_names"), state, shown)
    try:
        module = torchvision.models.get_model(arch, weights=None, num_classes=len(class_names))
    except (ValueError, TypeError):
        raise CheckpointError(f"{shown}: unknown torchvision architecture {clip_text(arch)!r}") from None
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{shown}: state dict does not fit {arch!r}: {clip_text(str(error))}") from error
    try:
        layers = listed_layers(module, input_size)
    except Exception as error:  # too small for the architecture's downsampling, or not the size a ViT was built for
        raise CheckpointError(
            f"{shown}: {arch!r} does not run at 'input_size' {input_size}: {clip_text(str(error))}"
        ) from error
    return TargetModel(
        f"{PREFIX}{path}",
        module,
        input_size=input_size,
        normalization=normalization,
        class_names=class_names,
        layer_names=layers,
        description=f"local checkpoint {path} ({arch})",
    )


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long, an embedded NUL
        return False


def _state_dict(state: object, shown: str) -> dict[str, torch.Tensor]:
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{shown}: 'state_dict' must be a dict of tensors, got {type(state).__name__}")
    if not state:
        raise CheckpointError(f"{shown}: 'state_dict' is empty")
    bad = next((key for key, value in state.items() if not (isinstance(key, str) and torch.is_tensor(value))), None)
    if bad is not None:
        raise CheckpointError(f"{shown}: 'state_dict' must map names to tensors; entry {clip_text(repr(bad))} does not")
    return dict(state)


def _input_size(value: object, shown: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_INPUT_SIZE:
        raise CheckpointError(
            f"{shown}: 'input_size' must be an integer within 1..{MAX_INPUT_SIZE}, got {clip_text(repr(value))}"
        )
    return value


def _channel_values(payload: dict, key: str, shown: str) -> tuple[float, float, float]:
    """``mean`` or ``std``: three finite numbers, one per RGB channel (a std also positive)."""
    value = payload.get(key)
    numbers = value.tolist() if torch.is_tensor(value) else value
    if (
        not isinstance(numbers, list | tuple)
        or len(numbers) != 3
        or not all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in numbers)
        or (key == "std" and min(numbers) <= 0)
    ):
        need = "three positive finite numbers" if key == "std" else "three finite numbers"
        raise CheckpointError(f"{shown}: {key!r} must be {need} (one per RGB channel), got {clip_text(repr(value))}")
    return (float(numbers[0]), float(numbers[1]), float(numbers[2]))


def _class_names(names: object, state: dict[str, torch.Tensor], shown: str) -> tuple[str, ...]:
    if names is None:
        weights = [value for key, value in state.items() if key.endswith("weight") and value.dim() >= 1]
        classifier_rows = weights[-1].shape[0] if weights else 0
        if classifier_rows != 1000:
            raise CheckpointError(f"{shown}: 'class_names' is required unless the classifier has 1000 outputs")
        return imagenet_class_names()
    if not isinstance(names, list | tuple) or not names or not all(isinstance(name, str) for name in names):
        raise CheckpointError(f"{shown}: 'class_names' must be a non-empty list of strings")
    return tuple(names)


def canonical_name(name: str) -> str:
    """``checkpoint:REALPATH``: one name for every spelling of the same file."""
    try:
        return PREFIX + os.path.realpath(name.removeprefix(PREFIX))
    except (OSError, ValueError):  # a path the system refuses (embedded NUL, ...): loading reports it
        return name


register_resolver(
    ModelResolver(
        "checkpoint",
        lambda name: name.startswith(PREFIX),
        lambda name, _: load_checkpoint(name.removeprefix(PREFIX)),
        canonical_name,
    )
)
