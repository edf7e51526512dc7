"""Local checkpoints: a torchvision architecture name plus a state dict and metadata.

File format (``torch.save`` of a dict, read with ``weights_only=True``)::

    {"arch": "resnet18", "state_dict": {...}, "class_names": [...],
     "input_size": 224, "mean": [...], "std": [...]}   # the last four optional

``class_names`` defaults to ImageNet's when the classifier has 1000 outputs.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision

from priorviz.errors import InvalidInputError
from priorviz.models._api import ModelNotFoundError, ModelResolver, register_resolver
from priorviz.models.imagenet import IMAGENET_NORMALIZATION, imagenet_class_names
from priorviz.models.target import Normalization, TargetModel
from priorviz.models.torchvision_models import listed_layers


class CheckpointError(InvalidInputError):
    """A checkpoint file that exists but does not hold what priorviz needs."""


def load_checkpoint(path: str | Path) -> TargetModel:
    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"checkpoint file {str(path)!r} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt zip, pickle of arbitrary objects, ...
        raise CheckpointError(f"{path} is not a readable weights-only checkpoint: {error}") from error
    if not isinstance(payload, dict) or "arch" not in payload or "state_dict" not in payload:
        raise CheckpointError(f"{path} must hold a dict with 'arch' and 'state_dict' keys")
    arch = payload["arch"]
    state = payload["state_dict"]
    classifier_rows = [value.shape[0] for key, value in state.items() if key.endswith("weight")][-1]
    class_names = payload.get("class_names")
    if class_names is None:
        if classifier_rows != 1000:
            raise CheckpointError(f"{path}: 'class_names' is required for a {classifier_rows}-class model")
        class_names = imagenet_class_names()
    try:
        module = torchvision.models.get_model(arch, weights=None, num_classes=len(class_names))
    except ValueError:
        raise CheckpointError(f"{path}: unknown torchvision architecture {arch!r}") from None
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{path}: state dict does not fit {arch!r}: {error}") from error
    normalization = (
        Normalization(tuple(payload["mean"]), tuple(payload["std"]))
        if "mean" in payload
        else IMAGENET_NORMALIZATION
    )
    input_size = int(payload.get("input_size", 224))
    return TargetModel(
        f"checkpoint:{path}",
        module,
        input_size=input_size,
        normalization=normalization,
        class_names=class_names,
        layer_names=listed_layers(module, input_size),
        description=f"local checkpoint {path} ({arch})",
    )


PREFIX = "checkpoint:"

register_resolver(
    ModelResolver("checkpoint", lambda name: name.startswith(PREFIX), lambda name, _: load_checkpoint(name.removeprefix(PREFIX)))
)
