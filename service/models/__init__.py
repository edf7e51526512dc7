"""Target models: the registry, the embedded EfficientNet-Lite defaults and user models."""

from service.models import embedded as _embedded  # noqa: F401  (registers the defaults)
from service.models.registry import (
    ModelEntry,
    ModelNotFoundError,
    ModelWeightsUnavailableError,
    default_model_name,
    get_model,
    list_models,
    register_model,
    resolve_device,
)
from service.models.target import LOGITS, LayerInfo, Normalization, TargetModel, UnknownLayerError

__all__ = [
    "LOGITS",
    "LayerInfo",
    "ModelEntry",
    "ModelNotFoundError",
    "ModelWeightsUnavailableError",
    "Normalization",
    "TargetModel",
    "UnknownLayerError",
    "default_model_name",
    "get_model",
    "list_models",
    "register_model",
    "resolve_device",
]
