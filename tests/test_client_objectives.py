"""The SDK's objectives are the engine's: one definition, the same text, the same tree over the wire."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import priorviz_client as client
from priorviz import objectives as engine
from priorviz_client._convert import objective_to_proto
from priorviz_objectives import parse_objective
from priorviz_objectives.proto import from_proto
from service._proto.priorviz.v1 import priorviz_pb2 as server_pb

LAYERS = ["blocks.10", "stem", "head", "blocks.3/input", "features.4.0"]
indices = st.integers(0, 300)
batches = st.none() | st.integers(0, 7)
weights = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False) | st.integers(-50, 50)


@st.composite
def leaves(draw: st.DrawFn) -> client.Objective:
    kind = draw(st.sampled_from(["channel", "neuron", "layer", "direction", "logit", "prob", "diversity"]))
    layer, index, batch = draw(st.sampled_from(LAYERS)), draw(indices), draw(batches)
    if kind == "channel":
        return client.channel(layer, index, batch=batch)
    if kind == "neuron":
        x, y = draw(st.none() | st.tuples(indices, indices)) or (None, None)
        return client.neuron(layer, index, x, y, batch=batch)
    if kind == "layer":
        return client.layer(layer, batch=batch)
    if kind == "direction":
        # The wire carries direction components as float32.
        vector = draw(st.lists(st.floats(-10, 10, allow_nan=False, width=32), min_size=1, max_size=4))
        power = draw(st.sampled_from([0.0, 1.0, 2.5, 16.0]))
        return client.direction(layer, vector, cosine_power=power, batch=batch)
    if kind == "logit":
        return client.logit(index, batch=batch)
    if kind == "prob":
        return client.probability(index, batch=batch)
    return client.diversity(layer)


@st.composite
def objectives(draw: st.DrawFn, depth: int = 0) -> client.Objective:
    """A random objective tree built with the SDK's algebra."""
    if depth >= 3 or draw(st.booleans()):
        return draw(leaves())
    operation = draw(st.sampled_from(["add", "sub", "mul", "rmul", "div", "neg"]))
    left = draw(objectives(depth + 1))
    if operation in ("add", "sub"):
        right = draw(objectives(depth + 1))
        return left + right if operation == "add" else left - right
    if operation == "neg":
        return -left
    weight = draw(weights)
    if operation == "mul":
        return left * weight
    if operation == "rmul":
        return weight * left
    return left / draw(weights.filter(lambda value: abs(value) >= 1e-3))


def test_the_sdk_and_the_engine_share_one_definition() -> None:
    assert (
        client.Channel is engine.Channel and client.Sum is engine.Sum and client.ObjectiveError is engine.ObjectiveError
    )
    assert client.channel("blocks.10", 17) == engine.Channel("blocks.10", 17)


@settings(max_examples=150, deadline=None)
@given(objectives())
def test_the_text_form_reads_back(objective: client.Objective) -> None:
    text = objective.to_text()
    assert parse_objective(text).to_text() == text


@settings(max_examples=150, deadline=None)
@given(objectives())
def test_tree_crosses_the_wire_unchanged(objective: client.Objective) -> None:
    """From the SDK's generated stubs, as bytes, into the server's: the same objective comes out."""
    sent = objective_to_proto(objective).SerializeToString()
    received = server_pb.Objective.FromString(sent)
    assert from_proto(received, max_nodes=10_000, max_depth=100) == objective


def test_readme_example() -> None:
    objective = client.channel("blocks.10", 17) - 0.5 * client.channel("blocks.10", 3)
    assert objective.to_text() == "blocks.10:17 - 0.5*blocks.10:3"
    assert str(-client.logit(130) + client.logit(1) / 4) == "-logit:130 + 0.25*logit:1"


def test_channel_range_targets_one_image_each() -> None:
    objective = client.channels("blocks.10", 4, 6) + 100 * client.diversity("blocks.10")
    assert objective == parse_objective("blocks.10:4..6 + 100*diversity:blocks.10")


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: client.channel("blocks 10", 1), "layer name"),
        (lambda: client.channel("blocks.10", -1), "non-negative"),
        (lambda: client.logit(True), "non-negative integer"),
        (lambda: client.logit(2**31), "at most 2147483647"),
        (lambda: client.neuron("blocks.10", 1, x=3), "both x and y"),
        (lambda: client.channel("blocks.10", 1) * math.inf, "finite"),
        (lambda: client.channel("blocks.10", 1) * 1e39, "float32"),
        (lambda: client.channel("blocks.10", 1) * 1e20 * 1e20, "multiply to"),
        (lambda: client.channel("blocks.10", 1) / 0, "divided by zero"),
        (lambda: client.direction("blocks.10", []), "at least one component"),
        (lambda: client.direction("blocks.10", [3e38] * 80), "length"),
        (lambda: client.direction("blocks.10", [1.0], cosine_power=17), "within 0..16"),
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
