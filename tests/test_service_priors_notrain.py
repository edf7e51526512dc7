"""maco, cppn and deep_image_prior through a real server: listed, chosen in Visualize and in Compare."""

from __future__ import annotations

import io

import grpc
import pytest
from PIL import Image
from service_fixtures import SMALL, error_of, result_of, running_server, settings, stub_for, visualize

from service._proto.priorviz.v1 import priorviz_pb2 as pb

NO_TRAINING = ("maco", "cppn", "deep_image_prior")


@pytest.fixture(scope="module")
def stub():
    with running_server() as server, stub_for(server) as client:
        yield client


def test_listed_as_unconstrained_with_their_options(stub) -> None:
    listed = {prior.name: prior for prior in stub.ListPriors(pb.ListPriorsRequest()).priors}
    for name in NO_TRAINING:
        assert listed[name].kind == pb.PRIOR_KIND_UNCONSTRAINED and listed[name].available
    assert set(listed["cppn"].options) == {"layers", "hidden"}
    assert set(listed["deep_image_prior"].options) == {"depth", "channels"}
    assert "transparency" in listed["maco"].description


@pytest.mark.parametrize("name", NO_TRAINING)
def test_visualize_renders_and_reproduces(stub, name: str) -> None:
    first = result_of(stub.Visualize(visualize("blocks.5:3", prior=name, steps=3, seed=4)))
    assert first.prior == name and first.prior_kind == pb.PRIOR_KIND_UNCONSTRAINED and first.steps == 3
    (image,) = first.images
    assert Image.open(io.BytesIO(image.png)).size == (SMALL, SMALL)
    assert len(first.traces[0].values) == 3 and first.image_metrics[0].values["objective"] == first.objective_values[0]
    again = result_of(stub.Visualize(visualize("blocks.5:3", prior=name, steps=3, seed=4)))
    assert again.images[0].png == image.png


def test_compare_runs_all_three_with_options(stub) -> None:
    choices = [
        pb.PriorChoice(name="maco"),
        pb.PriorChoice(name="cppn", options={"layers": "4"}),
        pb.PriorChoice(name="deep_image_prior", options={"depth": "4", "channels": "8"}),
    ]
    result = result_of(stub.Compare(pb.CompareRequest(settings=settings("logit:1", steps=2), priors=choices)))
    assert [item.prior for item in result.results] == list(NO_TRAINING)
    assert all(len(item.images) == 1 and item.image_metrics for item in result.results)


def test_an_hourglass_too_deep_for_the_image_is_invalid_argument(stub) -> None:
    request = pb.VisualizeRequest(settings=settings(steps=2), prior="deep_image_prior", prior_options={"depth": "6"})
    error = error_of(lambda: stub.Visualize(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("prior_options:")
    assert "128 pixels" in error.details()
