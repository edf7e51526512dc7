"""A registry of target models in the style of torchvision's ``register_model``/``get_model``.

Registered builders make an ``nn.Module`` plus metadata on the CPU in float32; ``get_model``
moves it to the job's device and dtype and caches the result per (name, device, dtype).
Names that are not registered go to the first registered *resolver* that claims them
(``checkpoint:PATH``, torchvision classifiers). This module imports no model file: model
files import it and register themselves, so no import cycle can form.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch

from priorviz.errors import NotFoundError, UnavailableError, clip_text
from priorviz.models.target import TargetModel


class ModelNotFoundError(NotFoundError):
    """No registered model, torchvision classifier or checkpoint answers to the name."""


class ModelWeightsUnavailableError(UnavailableError):
    """The model exists but its weights are neither on disk nor downloadable here."""


@dataclass(frozen=True)
class ModelResolver:
    """Builds models for names outside the registry that ``claims`` accepts (e.g. ``checkpoint:PATH``)."""

    name: str
    claims: Callable[[str], bool]
    build: Callable[[str, bool], TargetModel]
    """``build(name, allow_download)``: a CPU float32 model."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    description: str
    builder: Callable[[], TargetModel]
    default: bool = False


_REGISTRY: dict[str, ModelEntry] = {}
_RESOLVERS: list[ModelResolver] = []
_CACHE: dict[tuple[str, str, torch.dtype], TargetModel] = {}
_LOCK = threading.Lock()


def register_model(
    name: str, *, description: str, default: bool = False
) -> Callable[[Callable[[], TargetModel]], Callable[[], TargetModel]]:
    """Decorator that registers a builder returning a CPU float32 ``TargetModel``."""

    def decorate(builder: Callable[[], TargetModel]) -> Callable[[], TargetModel]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = ModelEntry(name, description, builder, default)
        return builder

    return decorate


def register_resolver(resolver: ModelResolver) -> None:
    """Add a resolver, consulted in registration order for names outside the registry."""
    if any(known.name == resolver.name for known in _RESOLVERS):
        raise ValueError(f"model resolver {resolver.name!r} is already registered")
    _RESOLVERS.append(resolver)


def list_models() -> list[ModelEntry]:
    """The registered models, default first. Any torchvision classifier name also works."""
    return sorted(_REGISTRY.values(), key=lambda entry: (not entry.default, entry.name))


def default_model_name() -> str:
    return next(entry.name for entry in list_models() if entry.default)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` means CUDA when present, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def get_model(
    name: str,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    allow_download: bool = False,
) -> TargetModel:
    """The target model called ``name`` on ``device`` in ``dtype``, built once and cached.

    Resolution order: registered names, then the resolvers (``checkpoint:PATH``; torchvision
    classifiers, whose weights are read from the torch cache, downloaded only with
    ``allow_download``).
    """
    device = resolve_device(device)
    key = (name, str(device), dtype)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        base = _build_cpu(name, allow_download)
        model = base if (device.type == "cpu" and dtype == torch.float32) else base.replicate(device, dtype)
        _CACHE[key] = model
        return model


def _build_cpu(name: str, allow_download: bool) -> TargetModel:
    cpu_key = (name, "cpu", torch.float32)
    if cpu_key in _CACHE:
        return _CACHE[cpu_key]
    if name in _REGISTRY:
        model = _REGISTRY[name].builder()
        model.description = _REGISTRY[name].description
    else:
        resolver = next((r for r in _RESOLVERS if r.claims(name)), None)
        if resolver is None:
            raise ModelNotFoundError(f"unknown model {clip_text(name)!r}: not registered, not a checkpoint:PATH and not a torchvision classifier")
        model = resolver.build(name, allow_download)
    _CACHE[cpu_key] = model
    return model

