"""ImageNet facts shared by the models trained on it."""

from __future__ import annotations

from functools import cache

from priorviz.models.target import Normalization

IMAGENET_NORMALIZATION = Normalization(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
MINUS_ONE_TO_ONE = Normalization(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


@cache
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet class names in the standard order; they ship inside torchvision."""
    from torchvision.models import ResNet18_Weights

    return tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
