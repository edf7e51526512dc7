"""The client's torch-free objectives against the server's: same text, same tree over the wire."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import priorviz_client as client
from priorviz import objectives as engine
from priorviz.objective_text import parse_objective
from priorviz_client._convert import objective_to_proto
from service.wire import objective_from_proto

LAYERS = ["blocks.10", "stem", "head", "blocks.3/input", "features.4.0"]
indices = st.integers(0, 300)
batches = st.none() | st.integers(0, 7)
weights = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False) | st.integers(-50, 50)


def _leaf(kind: str, layer: str, index: int, batch: int | None, draw: st.DrawFn) -> tuple[object, object]:
    """The same leaf built by the client and by the engine."""
    if kind == "channel":
        return client.channel(layer, index, batch=batch), engine.Channel(layer, index, batch)
    if kind == "neuron":
        x, y = draw(st.none() | st.tuples(indices, indices)) or (None, None)
        return client.neuron(layer, index, x, y, batch=batch), engine.Neuron(layer, index, x, y, batch)
    if kind == "layer":
        return client.layer(layer, batch=batch), engine.Layer(layer, batch)
    if kind == "direction":
        # The wire carries direction components as float32.
        vector = tuple(draw(st.lists(st.floats(-10, 10, allow_nan=False, width=32), min_size=1, max_size=4)))
        power = draw(st.sampled_from([0.0, 1.0, 2.5]))
        return (
            client.direction(layer, vector, cosine_power=power, batch=batch),
            engine.Direction(layer, vector, power, batch),
        )
    if kind == "logit":
        return client.logit(index, batch=batch), engine.ClassLogit(index, batch)
    if kind == "prob":
        return client.probability(index, batch=batch), engine.ClassProbability(index, batch)
    return client.diversity(layer), engine.Diversity(layer)


@st.composite
def objective_pairs(draw: st.DrawFn, depth: int = 0) -> tuple[object, object]:
    """A random objective tree, built twice: with the client's algebra and with the engine's."""
    if depth >= 3 or draw(st.booleans()):
        kind = draw(st.sampled_from(["channel", "neuron", "layer", "direction", "logit", "prob", "diversity"]))
        return _leaf(kind, draw(st.sampled_from(LAYERS)), draw(indices), draw(batches), draw)
    operation = draw(st.sampled_from(["add", "sub", "mul", "rmul", "div", "neg"]))
    left_client, left_engine = draw(objective_pairs(depth + 1))
    if operation in ("add", "sub"):
        right_client, right_engine = draw(objective_pairs(depth + 1))
        if operation == "add":
            return left_client + right_client, left_engine + right_engine
        return left_client - right_client, left_engine - right_engine
    if operation == "neg":
        return -left_client, -left_engine
    weight = draw(weights)
    if operation == "mul":
        return left_client * weight, left_engine * weight
    if operation == "rmul":
        return weight * left_client, weight * left_engine
    divisor = draw(weights.filter(lambda value: value != 0))
    return left_client / divisor, left_engine / divisor


@settings(max_examples=150, deadline=None)
@given(objective_pairs())
def test_text_form_is_the_servers(pair: tuple[client.Objective, engine.Objective]) -> None:
    client_objective, engine_objective = pair
    text = client_objective.to_text()
    assert text == engine_objective.to_text()
    assert parse_objective(text).to_text() == text


@settings(max_examples=150, deadline=None)
@given(objective_pairs())
def test_tree_crosses_the_wire_unchanged(pair: tuple[client.Objective, engine.Objective]) -> None:
    client_objective, engine_objective = pair
    received = objective_from_proto(objective_to_proto(client_objective), max_nodes=10_000, max_depth=100)
    assert received == engine_objective


def test_readme_example() -> None:
    objective = client.channel("blocks.10", 17) - 0.5 * client.channel("blocks.10", 3)
    assert objective.to_text() == "blocks.10:17 - 0.5*blocks.10:3"
    assert str(-client.logit(130) + client.logit(1) / 4) == "-logit:130 + 0.25*logit:1"


def test_channel_range_targets_one_image_each() -> None:
    objective = client.channels("blocks.10", 4, 6) + 100 * client.diversity("blocks.10")
    assert objective.to_text() == parse_objective("blocks.10:4..6 + 100*diversity:blocks.10").to_text()


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: client.channel("blocks 10", 1), "layer name"),
        (lambda: client.channel("blocks.10", -1), "non-negative"),
        (lambda: client.logit(True), "non-negative integer"),
        (lambda: client.neuron("blocks.10", 1, x=3), "both x and y"),
        (lambda: client.channel("blocks.10", 1) * math.inf, "finite"),
        (lambda: client.channel("blocks.10", 1) / 0, "divided by zero"),
        (lambda: client.direction("blocks.10", []), "at least one component"),
        (lambda: client.per_batch([client.diversity("blocks.10")]), "batch-wide"),
        (lambda: client.channels("blocks.10", 5, 4), "empty"),
    ],
)
def test_malformed_objectives_fail_before_sending(build: object, message: str) -> None:
    with pytest.raises(client.ObjectiveError, match=message):
        build()  # type: ignore[operator]


def test_objectives_do_not_mix_with_numbers_by_addition() -> None:
    with pytest.raises(TypeError):
        client.channel("blocks.10", 1) + 1  # type: ignore[operator]


def test_the_client_package_does_not_import_torch() -> None:
    probe = "import sys, priorviz_client, priorviz_client._cli; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "False"
