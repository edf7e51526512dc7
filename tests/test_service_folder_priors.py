"""Generators from folders through a real server: --prior specs, availability with reasons, renders, refusals."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from generator_folders import (
    save_biggan,
    save_class_conditional_ddpm,
    save_consistency_pipeline,
    save_dit_pipeline,
)
from PIL import Image
from service_fixtures import SMALL, error_of, result_of, running_server, settings, stub_for, visualize

from priors import list_priors, unregister_prior
from service._proto.priorviz.v1 import priorviz_pb2 as pb
from service.server import parse_args, register_folder_priors

TAG = uuid.uuid4().hex[:6]
NAMES = ("biggan", "biggan_auto", "cond_unet", "consistency", "dit", "broken")
BIGGAN, BIGGAN_AUTO, CONDITIONAL, CONSISTENCY, DIT, BROKEN = (f"{name}_{TAG}" for name in NAMES)
AVAILABLE = (BIGGAN, BIGGAN_AUTO, CONDITIONAL, CONSISTENCY, DIT)


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    root = tmp_path_factory.mktemp("generators")
    biggan = save_biggan(root / "biggan")
    broken = save_biggan(root / "broken")
    (broken / "pytorch_model.bin").write_bytes(b"not a checkpoint")
    specs = [
        f"{BIGGAN}=biggan:{biggan}",
        f"{BIGGAN_AUTO}=auto:{biggan}",
        f"{CONDITIONAL}=auto:{save_class_conditional_ddpm(root / 'ddpm')}",
        f"{CONSISTENCY}=auto:{save_consistency_pipeline(root / 'cm')}",
        f"{DIT}=latent_diffusion:{save_dit_pipeline(root / 'dit')}",
        f"{BROKEN}=auto:{broken}",
    ]
    register_folder_priors(specs)
    try:
        with running_server() as server, stub_for(server) as client:
            yield client
    finally:
        for name in (*AVAILABLE, BROKEN):
            unregister_prior(name)


def test_the_flag_and_its_alias_take_specs_and_a_malformed_one_is_refused(tmp_path: Path) -> None:
    _, specs = parse_args(["--prior", f"a=auto:{tmp_path}", "--diffusers-prior", f"b=vq:{tmp_path}"])
    assert specs == [f"a=auto:{tmp_path}", f"b=vq:{tmp_path}"]
    with pytest.raises(SystemExit):
        parse_args(["--prior", "no_kind_or_folder"])


def test_listed_with_availability_and_the_reason(stub) -> None:
    listed = {prior.name: prior for prior in stub.ListPriors(pb.ListPriorsRequest(include_unavailable=True)).priors}
    for name in AVAILABLE:
        assert listed[name].available and not listed[name].unavailable_reason
        assert listed[name].kind == pb.PRIOR_KIND_LEARNED
    assert listed[BIGGAN].output_size == 32 and set(listed[BIGGAN].options) == {"truncation", "norm_penalty"}
    assert "class_label" in listed[CONDITIONAL].options
    assert not listed[BROKEN].available
    assert "unreadable pytorch_model.bin" in listed[BROKEN].unavailable_reason
    available = {prior.name for prior in stub.ListPriors(pb.ListPriorsRequest()).priors}
    assert BROKEN not in available and BIGGAN in available


@pytest.mark.parametrize("name", AVAILABLE)
def test_each_available_one_renders_three_steps(stub, name: str) -> None:
    request = visualize("logit:1", prior=name, steps=3, seed=2)
    if name in (CONDITIONAL, DIT):
        request.prior_options["sampling_steps"] = "3"
    result = result_of(stub.Visualize(request))
    assert result.prior == name and result.prior_kind == pb.PRIOR_KIND_LEARNED and result.steps == 3
    assert Image.open(io.BytesIO(result.images[0].png)).size == (SMALL, SMALL)


def test_the_objective_rises_in_biggan_through_the_server(stub) -> None:
    request = visualize("logit:1", prior=BIGGAN, steps=6, seed=1)
    request.settings.learning_rate = 0.1
    (trace,) = result_of(stub.Visualize(request)).traces
    assert trace.values[-1] > trace.values[0]


def test_compare_runs_fourier_and_the_generators(stub) -> None:
    choices = [pb.PriorChoice(name="fourier"), pb.PriorChoice(name=BIGGAN, options={"truncation": "0.7"})]
    result = result_of(stub.Compare(pb.CompareRequest(settings=settings("logit:1", steps=2), priors=choices)))
    assert [item.prior for item in result.results] == ["fourier", BIGGAN]


def test_a_request_for_the_broken_one_is_failed_precondition_with_the_reason(stub) -> None:
    error = error_of(lambda: stub.Visualize(visualize("logit:1", prior=BROKEN, steps=2)))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details().startswith("prior:") and "unreadable pytorch_model.bin" in error.details()
    assert BIGGAN in {info.name for info in list_priors()}  # the others still serve
