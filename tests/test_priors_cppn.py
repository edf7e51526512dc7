"""Lucid's CPPN against NumPy: the coordinate grid, the composite activation, the whole network; it renders."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from priors import PriorKind, get_prior, list_priors
from priors.cppn import CppnImage, composite_activation, coordinate_grid
from priorviz.models import TargetModel
from priorviz.render import RenderConfig, render
from priorviz.seeding import make_generator


def numpy_grid(height: int, width: int) -> np.ndarray:
    """x and y a common step apart, the longer side from -sqrt(3) to sqrt(3), centred; r their radius."""
    step = 2 * math.sqrt(3) / (max(height, width) - 1)
    y = (np.arange(height) - (height - 1) / 2) * step
    x = (np.arange(width) - (width - 1) / 2) * step
    yy, xx = np.meshgrid(y, x, indexing="ij")
    return np.stack([xx, yy, np.hypot(xx, yy)])


@pytest.mark.parametrize(("height", "width"), [(5, 5), (4, 7), (9, 6)])
def test_coordinate_grid_matches_numpy(height: int, width: int) -> None:
    np.testing.assert_allclose(coordinate_grid(height, width).numpy(), numpy_grid(height, width), atol=1e-6)


def test_longer_axis_has_unit_variance_over_a_fine_grid() -> None:
    grid = coordinate_grid(512, 256).double()
    assert float(grid[1, :, 0].var(correction=0)) == pytest.approx(1.0, rel=1e-2)
    assert float(grid[0, 0].abs().max()) == pytest.approx(math.sqrt(3) * 255 / 511, rel=1e-6)


def test_composite_activation_matches_numpy() -> None:
    features = torch.randn((2, 5, 7), generator=make_generator(0), dtype=torch.float64)
    angle = np.arctan(features.numpy())
    expected = np.concatenate([angle / 0.67, angle**2 / 0.6], axis=1)
    np.testing.assert_allclose(composite_activation(features).numpy(), expected, rtol=1e-12)
    # The scaling keeps a unit Gaussian's activations near unit RMS, as Lucid intended.
    rms = composite_activation(torch.randn((1, 1, 200_000), generator=make_generator(1))).pow(2).mean(-1).sqrt()
    torch.testing.assert_close(rms.flatten(), torch.ones(2), atol=0.03, rtol=0)


def test_network_matches_numpy_and_starts_grey() -> None:
    param = CppnImage(2, 6, 8, generator=make_generator(0), layers=3, hidden=5)
    assert float((param().detach() - 0.5).abs().max()) == 0.0  # the output layer starts at zero
    with torch.no_grad():
        for weight in param.weights:
            weight.normal_(generator=make_generator(3))
        for bias in param.biases:
            bias.normal_(generator=make_generator(4))
        images = param().double().numpy()
    features = np.broadcast_to(numpy_grid(6, 8).reshape(3, -1), (2, 3, 48))
    weights = [w.detach().double().numpy() for w in param.weights]
    biases = [b.detach().double().numpy() for b in param.biases]
    for weight, bias in zip(weights[:-1], biases[:-1], strict=True):
        angle = np.arctan(weight @ features + bias)
        features = np.concatenate([angle / 0.67, angle**2 / 0.6], axis=1)
    expected = 1 / (1 + np.exp(-(weights[-1] @ features + biases[-1])))
    np.testing.assert_allclose(images, expected.reshape(2, 3, 6, 8), rtol=1e-5, atol=1e-6)
    assert [tuple(w.shape) for w in param.weights] == [(2, 5, 3), (2, 5, 10), (2, 5, 10), (2, 3, 10)]


def test_each_batch_element_has_its_own_network() -> None:
    param = CppnImage(2, 8, 8, generator=make_generator(0))
    with torch.no_grad():
        param.weights[-1].normal_(generator=make_generator(1))
    param()[0].sum().backward()
    assert all(float(p.grad[1].abs().max()) == 0.0 for p in param.parameters())
    assert all(float(p.grad[0].abs().max()) > 0.0 for p in param.parameters())


def test_render_raises_a_mid_layer_channel(lite0: TargetModel) -> None:
    result = render(lite0, "blocks.8:17", "cppn", size=64, config=RenderConfig(steps=32, seed=0))
    first, final = result.trace[0].item(), result.values.item()
    assert final > first + 2.0 and final > 3.0, f"{first:.3f} -> {final:.3f}"
    assert float(result.images.std()) > 0.05  # no longer the grey it starts as


def test_listed_as_unconstrained_with_lucids_defaults() -> None:
    (info,) = [info for info in list_priors() if info.name == "cppn"]
    assert info.kind is PriorKind.UNCONSTRAINED
    assert info.parse_options({}) == {"layers": 8, "hidden": 24}
    param = get_prior("cppn", 1, 32, 32, generator=make_generator(0), layers="2", hidden="6")
    assert isinstance(param, CppnImage) and len(param.weights) == 3 and param.weights[0].shape == (1, 6, 3)
