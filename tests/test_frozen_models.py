"""The shared cache of frozen generators: one load per key, even under concurrent requests."""

from __future__ import annotations

import threading
import time

import pytest
from torch import nn

from priors.frozen_models import FrozenModels


def test_concurrent_requests_load_once_and_get_a_frozen_model() -> None:
    models: FrozenModels[nn.Linear] = FrozenModels()
    loads = []

    def load() -> nn.Linear:
        loads.append(1)
        time.sleep(0.05)  # long enough for the other threads to arrive while loading
        return nn.Linear(2, 2)

    got: list[nn.Linear] = []
    threads = [threading.Thread(target=lambda: got.append(models.get("a", load, "cpu"))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(loads) == 1
    assert all(model is got[0] for model in got)
    assert not got[0].training
    assert not any(parameter.requires_grad for parameter in got[0].parameters())
    assert models.get("b", load, "cpu") is not got[0] and len(loads) == 2


def test_a_failed_load_caches_nothing() -> None:
    models: FrozenModels[nn.Linear] = FrozenModels()

    def broken() -> nn.Linear:
        raise FileNotFoundError("weights missing")

    with pytest.raises(FileNotFoundError):
        models.get("a", broken, "cpu")
    assert isinstance(models.get("a", lambda: nn.Linear(1, 1), "cpu"), nn.Linear)
