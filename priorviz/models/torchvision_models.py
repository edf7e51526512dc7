"""Any torchvision classifier by name, with weights through torchvision's own mechanism."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torchvision
from torch import nn

from priorviz.models._api import ModelNotFoundError, ModelResolver, ModelWeightsUnavailableError, register_resolver
from priorviz.models.imagenet import IMAGENET_NORMALIZATION
from priorviz.models.target import LOGITS, TargetModel


def listed_layers(module: nn.Module, input_size: int) -> list[str]:
    """Modules at most two levels deep whose output is a feature map, in execution order.

    Every module name stays usable in objectives; this is only the short list shown to clients.
    """
    order: list[str] = []

    def record(name: str):
        def hook(_module: nn.Module, _inputs: object, output: object) -> None:
            if isinstance(output, torch.Tensor) and output.dim() == 4 and name not in order:
                order.append(name)

        return hook

    handles = [
        child.register_forward_hook(record(name))
        for name, child in module.named_modules()
        if name and name.count(".") <= 1
    ]
    try:
        with torch.no_grad():
            module(torch.zeros(1, 3, input_size, input_size))
    finally:
        for handle in handles:
            handle.remove()
    return [*order, LOGITS]


def _weights_on_disk(weights: torchvision.models.WeightsEnum) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def load_torchvision_model(name: str, *, allow_download: bool) -> TargetModel:
    """Build torchvision's ``name`` with its default weights, read from the torch cache."""
    arch = name.removeprefix("torchvision:")
    try:
        builder_weights = torchvision.models.get_model_weights(arch)
    except ValueError:
        raise ModelNotFoundError(
            f"unknown model {name!r}: not registered, not a checkpoint:PATH and not a torchvision classifier"
        ) from None
    weights = builder_weights.DEFAULT
    if "categories" not in weights.meta or len(weights.meta["categories"]) != 1000:
        raise ModelNotFoundError(f"torchvision model {arch!r} is not an ImageNet classifier")
    path = _weights_on_disk(weights)
    if not path.exists() and not allow_download:
        raise ModelWeightsUnavailableError(
            f"weights for torchvision model {arch!r} are not on disk at {path}; "
            "put them there, or allow the download (allow_download=True / --allow-download) on a machine online"
        )
    try:
        module = torchvision.models.get_model(arch, weights=weights)
    except OSError as error:  # URLError and friends: offline machine, proxy refusal
        raise ModelWeightsUnavailableError(f"could not download weights for {arch!r} to {path}: {error}") from error
    input_size = int(weights.transforms().crop_size[0])
    return TargetModel(
        arch,
        module,
        input_size=input_size,
        normalization=IMAGENET_NORMALIZATION,
        class_names=weights.meta["categories"],
        layer_names=listed_layers(module, input_size),
        description=f"torchvision {arch} ({weights})",
    )


def is_torchvision_name(name: str) -> bool:
    return name.removeprefix("torchvision:") in torchvision.models.list_models()


register_resolver(
    ModelResolver(
        "torchvision",
        is_torchvision_name,
        lambda name, allow: load_torchvision_model(name, allow_download=allow),
        lambda name: name.removeprefix("torchvision:"),
    )
)
