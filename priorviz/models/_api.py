"""A registry of target models in the style of torchvision's ``register_model``/``get_model``.

Registered builders make an ``nn.Module`` plus metadata on the CPU in float32; ``get_model``
moves it to the job's device and dtype and caches the result per (canonical name, device,
dtype). Names that are not registered go to the first registered *resolver* that claims them
(``checkpoint:PATH``, torchvision classifiers); a resolver may map several spellings of one
model to one canonical name (a checkpoint's resolved path), so that they share one cache
entry. Of the models resolvers build, the cache keeps the most recently used only
(``set_model_cache_size``). A model is built under a lock of its own, so that loading one
never blocks the use of another.
This module imports no model file: model files import it and register themselves, so no
import cycle can form.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
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
    canonical: Callable[[str], str] = lambda name: name
    """The one name of every spelling of a model (e.g. a checkpoint's resolved path); the cache key."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    description: str
    builder: Callable[[], TargetModel]
    default: bool = False


DEFAULT_CACHED_MODELS = 8

CacheKey = tuple[str, str, torch.dtype]
_REGISTRY: dict[str, ModelEntry] = {}
_RESOLVERS: list[ModelResolver] = []
_CACHE: OrderedDict[CacheKey, TargetModel] = OrderedDict()
"""Least recently used first."""
_cache_size = DEFAULT_CACHED_MODELS
_LOADING: dict[CacheKey, threading.Lock] = {}
"""One lock per model being built, so that two threads asking for it build it once."""
_LOCK = threading.Lock()
"""Guards the dictionaries above; never held while a model is built."""


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


def set_model_cache_size(models: int) -> None:
    """Keep at most ``models`` resolver-built models (per device and dtype), dropping the least recently used.

    Registered models are few and always kept; checkpoints and torchvision classifiers are
    what a stream of requests could pile up without end.
    """
    global _cache_size
    if models < 1:
        raise ValueError(f"the model cache needs room for at least one model, got {models}")
    with _LOCK:
        _cache_size = models
        _evict()


def cached_models() -> list[str]:
    """The canonical names of the cached models, least recently used first (one per device and dtype)."""
    with _LOCK:
        return [name for name, _device, _dtype in _CACHE]


def canonical_model_name(name: str) -> str:
    """The name ``name`` is cached under: itself for registered models, else its resolver's canonical form."""
    if name in _REGISTRY:
        return name
    resolver = next((r for r in _RESOLVERS if r.claims(name)), None)
    return resolver.canonical(name) if resolver is not None else name


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
    key = (canonical_model_name(name), str(device), dtype)
    model = _cached(key)
    if model is not None:
        return model
    with _LOCK:
        building = _LOADING.setdefault(key, threading.Lock())
    with building:
        try:
            model = _cached(key)
            if model is None:
                model = _build(key[0], device, dtype, allow_download)
                with _LOCK:
                    _CACHE[key] = model
                    _evict()
            return model
        finally:
            with _LOCK:
                _LOADING.pop(key, None)


def _cached(key: CacheKey) -> TargetModel | None:
    with _LOCK:
        model = _CACHE.get(key)
        if model is not None:
            _CACHE.move_to_end(key)
        return model


def _evict() -> None:
    """Drop the least recently used resolver-built models beyond the cache size (registered ones stay)."""
    resolved = [key for key in _CACHE if key[0] not in _REGISTRY]
    for key in resolved[: max(0, len(resolved) - _cache_size)]:
        del _CACHE[key]


def _build(name: str, device: torch.device, dtype: torch.dtype, allow_download: bool) -> TargetModel:
    if device.type != "cpu" or dtype != torch.float32:
        return get_model(name, device="cpu", allow_download=allow_download).replicate(device, dtype)
    if name in _REGISTRY:
        model = _REGISTRY[name].builder()
        model.description = _REGISTRY[name].description
        return model
    resolver = next((r for r in _RESOLVERS if r.claims(name)), None)
    if resolver is None:
        raise ModelNotFoundError(
            f"unknown model {clip_text(name)!r}: not registered, not a checkpoint:PATH and not a torchvision classifier"
        )
    return resolver.build(name, allow_download)
