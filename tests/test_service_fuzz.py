"""Property: whatever the request fields hold, the server answers with a deliberate status.

Never UNKNOWN or INTERNAL (an unhandled exception), never OK with a non-finite number, and the
server keeps serving. Limits are
set tiny so that the requests the fuzzer gets accepted finish in a fraction of a second.
"""

from __future__ import annotations

import math

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from service_fixtures import running_server, server_config, stub_for

from service._proto.priorviz.v1 import priorviz_pb2 as pb
from service.config import Limits

LIMITS = Limits(
    max_image_size=48, min_image_size=32, max_steps=3, max_batch=2, max_preview_steps=3, max_compare_priors=2
)
LAYERS = ["blocks.5", "blocks.0", "stem", "logits", "head", "blocks.99", "", "blocks.5/input", "_blocks.1"]
ALLOWED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def mostly(valid: st.SearchStrategy, wild: st.SearchStrategy) -> st.SearchStrategy:
    """``valid`` nine times in ten, else ``wild``: most requests get past the first check."""
    return st.integers(0, 9).flatmap(lambda roll: wild if roll == 9 else valid)


wild_ints = st.integers(min_value=-3, max_value=1100) | st.sampled_from([-(2**31), 2**31 - 1])
layers = mostly(st.sampled_from(["blocks.5", "blocks.0", "stem"]), st.sampled_from(LAYERS) | st.text(max_size=12))
channels = mostly(st.integers(0, 15), wild_ints)
classes = mostly(st.integers(0, 999), wild_ints)
weights = mostly(st.floats(-3, 3, width=32), st.floats(allow_nan=True, allow_infinity=True, width=32))
batch_index = mostly(st.none() | st.integers(0, 1), st.integers(-2, 4))


def _leaf(kind: str, body: object, batch: int | None) -> pb.Objective:
    message = pb.Objective(**{kind: body})
    if batch is not None:
        message.batch_index = batch
    return message


leaves = st.one_of(
    st.builds(
        lambda layer, channel, batch: _leaf("channel", pb.ChannelObjective(layer=layer, channel=channel), batch),
        layers,
        channels,
        batch_index,
    ),
    st.builds(
        lambda layer, channel, x, y, batch: _leaf(
            "neuron", pb.NeuronObjective(layer=layer, channel=channel, x=x, y=y), batch
        ),
        layers,
        channels,
        st.integers(-2, 300),
        st.integers(-2, 300),
        batch_index,
    ),
    st.builds(lambda layer, batch: _leaf("layer", pb.LayerObjective(layer=layer), batch), layers, batch_index),
    st.builds(
        lambda layer, vector, power, batch: _leaf(
            "direction", pb.DirectionObjective(layer=layer, vector=vector, cosine_power=power), batch
        ),
        st.just("blocks.5"),
        mostly(st.just([0.5] * 80), st.lists(weights, max_size=3)),
        mostly(st.sampled_from([0.0, 1.0]), weights),
        batch_index,
    ),
    st.builds(
        lambda index, batch: _leaf("class_logit", pb.ClassLogitObjective(index=index), batch), classes, batch_index
    ),
    st.builds(
        lambda index, batch: _leaf("class_probability", pb.ClassProbabilityObjective(index=index), batch),
        classes,
        batch_index,
    ),
    st.builds(lambda layer: pb.Objective(diversity=pb.DiversityObjective(layer=layer)), layers),
    st.builds(
        lambda layer, batch: _leaf("diversity", pb.DiversityObjective(layer=layer), batch), layers, st.integers(-1, 2)
    ),
    st.just(pb.Objective()),
)
trees = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.builds(
            lambda terms: pb.Objective(sum=pb.SumObjective(terms=terms)),
            mostly(st.lists(children, min_size=1, max_size=3), st.just([])),
        ),
        st.builds(
            lambda inner, weight: pb.Objective(scaled=pb.ScaledObjective(objective=inner, weight=weight)),
            children,
            weights,
        ),
    ),
    max_leaves=6,
)
texts = mostly(
    st.sampled_from(
        [
            "blocks.5:3",
            "logit:1",
            "prob:2#1",
            "blocks.5:0..1",
            "neuron:blocks.5:1@3,3",
            "layer:stem",
            "diversity:blocks.5",
            "cosdir2:blocks.5:" + ",".join(["1"] * 80),
            "blocks.5:1 - 0.5*blocks.5:2",
            "-(logit:3)/2",
            "layer:blocks.0 + 10*diversity:stem",
        ]
    ),
    st.sampled_from(["1e999*logit:1", "((((", "blocks.5:3#9", "blocks.5:0..200", "(" * 900 + "logit:1" + ")" * 900])
    | st.text(max_size=40),
)


@st.composite
def render_settings(draw: st.DrawFn) -> pb.RenderSettings:
    message = pb.RenderSettings(
        model=draw(
            mostly(
                st.sampled_from(["", "efficientnet_lite0"]),
                st.sampled_from(["no_such", "checkpoint:/etc/hosts", "resnet18"]) | st.text(max_size=8),
            )
        ),
        batch=draw(mostly(st.integers(0, 2), st.integers(-2, 4))),
        image_size=draw(mostly(st.sampled_from([32, 40, 48]), st.sampled_from([0, 16, 49, -1, 2**31 - 1]))),
        steps=draw(mostly(st.integers(1, 3), st.integers(-2, 4))),
        learning_rate=draw(mostly(st.sampled_from([0.0, 0.05, 1.0]), st.floats(allow_nan=True, allow_infinity=True))),
        seed=draw(st.integers(0, 2**64 - 1)),
        preview_steps=draw(mostly(st.sampled_from([[], [1]]), st.lists(st.integers(-1, 4), max_size=4))),
        transforms=draw(mostly(st.integers(0, 2), st.integers(3, 2**31 - 1))),
        held_out_model=draw(mostly(st.sampled_from(["", "none"]), st.sampled_from(["efficientnet_lite0", "nope"]))),
        statistics_prior_weight=draw(
            mostly(st.sampled_from([0.0, 0.5]), st.floats(allow_nan=True, allow_infinity=True))
        ),
    )
    choice = draw(mostly(st.sampled_from(["tree", "text"]), st.sampled_from(["both", "neither"])))
    if choice in ("tree", "both"):
        message.objective.CopyFrom(draw(trees))
    if choice in ("text", "both"):
        message.objective_text = draw(texts)
    return message


options = mostly(
    st.sampled_from([{}, {"decay_power": "0.5"}, {"decorrelate": "false"}]),
    st.dictionaries(
        st.sampled_from(["decay_power", "decorrelate", "bogus"]) | st.text(max_size=5),
        st.sampled_from(["1", "nan", "inf", "-1", "true", "x", "", "1e400"]) | st.text(max_size=5),
        max_size=2,
    ),
)
priors = mostly(st.sampled_from(["", "fourier", "pixel"]), st.sampled_from(["nope"]) | st.text(max_size=6))
requests = st.one_of(
    st.builds(
        lambda s, prior, opts: ("Visualize", pb.VisualizeRequest(settings=s, prior=prior, prior_options=opts)),
        render_settings(),
        priors,
        options,
    ),
    st.builds(
        lambda s, chosen: (
            "Compare",
            pb.CompareRequest(settings=s, priors=[pb.PriorChoice(name=n, options=o) for n, o in chosen]),
        ),
        render_settings(),
        mostly(st.lists(st.tuples(priors, options), max_size=2), st.lists(st.tuples(priors, options), max_size=3)),
    ),
)


@pytest.fixture(scope="module")
def served():
    with (
        running_server(
            server_config(limits=LIMITS, workers=1, max_queue=2, held_out_model="efficientnet_lite0")
        ) as server,
        stub_for(server) as stub,
    ):
        yield server, stub


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(rpc_and_request=requests)
def test_no_request_gets_unknown_or_internal_or_downs_the_server(served, rpc_and_request) -> None:
    server, stub = served
    rpc, request = rpc_and_request
    call = getattr(stub, rpc)(request, timeout=60)
    try:
        events = list(call)
        code = grpc.StatusCode.OK
        assert events and events[-1].WhichOneof("event") == "result"
        results = events[-1].result.results if rpc == "Compare" else [events[-1].result]
        assert all(math.isfinite(value) for result in results for value in result.objective_values)
    except grpc.RpcError as error:
        code = error.code()
        assert "Traceback" not in (error.details() or "")
    assert code in ALLOWED, f"{code}: {call.details()}"
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
    assert status == health_pb2.HealthCheckResponse.SERVING
