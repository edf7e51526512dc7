"""Shared fixtures: the embedded models are built once per test session."""

from __future__ import annotations

import pytest
import torch

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
