"""Target models: the registry, the embedded EfficientNet-Lite defaults and user models.

Importing this package registers the embedded models and the resolvers for
``checkpoint:PATH`` and torchvision classifier names.
"""

from priorviz.models import checkpoint as _checkpoint  # noqa: F401  (registers its resolver)
from priorviz.models import embedded as _embedded  # noqa: F401  (registers the defaults)
from priorviz.models import torchvision_models as _torchvision  # noqa: F401  (registers its resolver)
from priorviz.models._api import (
    ModelEntry,
    ModelNotFoundError,
    ModelResolver,
    ModelWeightsUnavailableError,
    default_model_name,
    get_model,
    list_models,
    register_model,
    register_resolver,
    resolve_device,
)
from priorviz.models.target import LOGITS, LayerInfo, Normalization, TargetModel, UnknownLayerError

__all__ = [
    "LOGITS",
    "LayerInfo",
    "ModelEntry",
    "ModelNotFoundError",
    "ModelResolver",
    "ModelWeightsUnavailableError",
    "Normalization",
    "TargetModel",
    "UnknownLayerError",
    "default_model_name",
    "get_model",
    "list_models",
    "register_model",
    "register_resolver",
    "resolve_device",
]
