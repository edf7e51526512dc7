"""Frozen generators shared by every job: each loaded once per key, under a lock.

A server runs several jobs at once; two that ask for the same generator must neither load it
twice (seconds and hundreds of MB each) nor see a half-built one. A load that raises caches
nothing, so a folder repaired on disk loads on the next request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import torch
from torch import nn

Model = TypeVar("Model", bound=nn.Module)


class FrozenModels(Generic[Model]):
    """Models in eval mode with gradients off, keyed by what identifies them (source, device, dtype)."""

    def __init__(self) -> None:
        self._models: dict[Hashable, Model] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, load: Callable[[], Model], device: torch.device | str) -> Model:
        """The model under ``key``; on first use ``load()`` builds it (on the CPU) and it moves to ``device``."""
        with self._lock:
            if key not in self._models:
                self._models[key] = load().to(device).eval().requires_grad_(False)
            return self._models[key]
