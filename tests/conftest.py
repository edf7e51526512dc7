"""Shared fixtures: the embedded models are built once per test session; client tests run against both clients."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from blocking_async import Connect, connections

from priors import list_priors, unregister_prior
from priorviz.models import TargetModel, get_model


@pytest.fixture(scope="session")
def lite0() -> TargetModel:
    return get_model("efficientnet_lite0", device="cpu")


@pytest.fixture(scope="session")
def lite1() -> TargetModel:
    return get_model("efficientnet_lite1", device="cpu")


@pytest.fixture(autouse=True)
def _fixed_threads() -> None:
    """Bit-for-bit reproducibility on one machine assumes a fixed thread count."""
    torch.set_num_threads(2)


@pytest.fixture
def forget_registered_priors() -> Iterator[None]:
    """Priors a test registers point at temporary folders: drop them so later tests see the built-in set."""
    before = {info.name for info in list_priors(only_available=False)}
    yield
    for info in list_priors(only_available=False):
        if info.name not in before:
            unregister_prior(info.name)


@pytest.fixture(scope="module", params=["Client", "AsyncClient"])
def connect(request: pytest.FixtureRequest) -> Iterator[Connect]:
    """Opens a client: each test that asks for it runs once with ``Client`` and once with ``AsyncClient``."""
    yield from connections(request.param)
