"""distilled_imagenet through a real server: listed as learned, in Compare's default list, starts at the class."""

from __future__ import annotations

import pytest
from service_fixtures import result_of, running_server, settings, stub_for, visualize

from priors.distilled_imagenet import WEIGHTS_PATH
from service._proto.priorviz.v1 import priorviz_pb2 as pb


@pytest.fixture(scope="module")
def stub():
    with running_server() as server, stub_for(server) as client:
        yield client


def test_the_shipped_weights_are_listed_as_a_learned_prior(stub) -> None:
    assert WEIGHTS_PATH.is_file(), "priors/weights/distilled_imagenet.safetensors ships with the repository"
    listed = {prior.name: prior for prior in stub.ListPriors(pb.ListPriorsRequest()).priors}
    prior = listed["distilled_imagenet"]
    assert prior.available and prior.kind == pb.PRIOR_KIND_LEARNED and prior.output_size == 128
    assert "Apache-2.0" in prior.licence and set(prior.options) == {"clip", "norm_penalty"}


def test_visualize_raises_the_class_logit_from_the_class_it_starts_at(stub) -> None:
    result = result_of(stub.Visualize(visualize("logit:1", prior="distilled_imagenet", steps=12, seed=0)))
    assert result.prior == "distilled_imagenet" and result.prior_kind == pb.PRIOR_KIND_LEARNED
    trace = result.traces[0].values
    assert sum(trace[-3:]) > sum(trace[:3])


def test_compare_runs_it_by_default(stub) -> None:
    result = result_of(stub.Compare(pb.CompareRequest(settings=settings("logit:1", steps=2))))
    assert [item.prior for item in result.results][:1] == ["fourier"]
    assert "distilled_imagenet" in [item.prior for item in result.results]
