"""Every RPC of priorviz.v1 against a real server on a loopback port, plus health and reflection."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator

import grpc
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from PIL import Image
from service_fixtures import SMALL, result_of, running_server, server_config, settings, stub_for, visualize

from priors.base import PriorInfo, PriorKind, list_priors, register_prior, unregister_prior
from priors.pixel import PixelImage
from priorviz.metrics import METRIC_DESCRIPTIONS
from service import healthcheck, validation
from service._proto.priorviz.v1 import priorviz_pb2 as pb
from service.server import SERVER_ID_METADATA, register_folder_priors


@pytest.fixture(scope="module")
def server():
    with running_server(server_config(held_out_model="efficientnet_lite1")) as running:
        yield running


@pytest.fixture(scope="module")
def stub(server):
    with stub_for(server) as client:
        yield client


def test_list_models_marks_the_default(stub) -> None:
    models = stub.ListModels(pb.ListModelsRequest()).models
    names = [model.name for model in models]
    assert names[0] == "efficientnet_lite0" and models[0].is_default
    assert "efficientnet_lite1" in names
    assert sum(model.is_default for model in models) == 1


def test_describe_model_lists_layers_and_classes(stub) -> None:
    described = stub.DescribeModel(pb.DescribeModelRequest(model="efficientnet_lite0"))
    assert described.input_size == 224 and described.num_classes == 1000
    assert len(described.class_names) == 1000 and described.class_names[1] == "goldfish"
    layers = {layer.name: layer for layer in described.layers}
    assert (layers["blocks.10"].channels, layers["blocks.10"].height, layers["blocks.10"].width) == (112, 14, 14)
    assert (layers["logits"].channels, layers["logits"].height) == (1000, 1)
    short = stub.DescribeModel(pb.DescribeModelRequest(omit_class_names=True))
    assert short.name == "efficientnet_lite0" and not short.class_names and len(short.layers) == len(described.layers)


def test_list_priors_matches_the_registry(stub) -> None:
    response = stub.ListPriors(pb.ListPriorsRequest())
    listed = {prior.name: prior for prior in response.priors}
    assert set(listed) == {info.name for info in list_priors()}
    assert listed["fourier"].kind == pb.PRIOR_KIND_UNCONSTRAINED and "decay_power" in listed["fourier"].options
    for info in list_priors():
        expected = pb.PRIOR_KIND_LEARNED if info.kind == PriorKind.LEARNED else pb.PRIOR_KIND_UNCONSTRAINED
        assert listed[info.name].kind == expected and listed[info.name].available
    assert dict(response.metric_descriptions) == METRIC_DESCRIPTIONS


def test_list_priors_shows_each_prior_s_declared_defaults(stub) -> None:
    listed = {prior.name: prior for prior in stub.ListPriors(pb.ListPriorsRequest()).priors}
    for info in list_priors():
        shown = listed[info.name]
        declared = (info.default_steps, info.default_image_size, info.default_learning_rate)
        assert (shown.default_steps, shown.default_image_size, shown.default_learning_rate) == declared
    assert (listed["fourier"].default_steps, listed["fourier"].default_image_size) == (512, 224)
    assert listed["fourier"].default_learning_rate == pytest.approx(0.05)
    assert listed["maco"].default_learning_rate == pytest.approx(0.2)
    assert listed["cppn"].default_learning_rate == pytest.approx(0.005)


@pytest.fixture
def short_priors() -> Iterator[tuple[str, str]]:
    """Two priors (raw pixels) that declare 2 and 4 default steps."""
    names = []
    for steps in (2, 4):
        name = f"pixels_{steps}_steps_{uuid.uuid4().hex[:6]}"
        info = PriorInfo(
            name,
            PriorKind.UNCONSTRAINED,
            f"raw pixels, {steps} steps by default",
            default_steps=steps,
            default_image_size=SMALL,
            default_learning_rate=0.05,
        )
        register_prior(info)(
            lambda batch, height, width, *, generator, device: PixelImage(batch, height, width, generator=generator)
        )
        names.append(name)
    yield names[0], names[1]
    for name in names:
        unregister_prior(name)


def test_a_request_without_steps_runs_each_prior_s_own_default(stub, short_priors: tuple[str, str]) -> None:
    two, four = short_priors
    events = list(stub.Visualize(visualize("blocks.5:3", prior=two, steps=0)))
    progress = [event.progress for event in events if event.WhichOneof("event") == "progress"]
    assert [(p.step, p.total_steps) for p in progress] == [(1, 2), (2, 2)]
    result = events[-1].result
    assert result.steps == 2 and [len(trace.values) for trace in result.traces] == [2]

    priors = [pb.PriorChoice(name=two), pb.PriorChoice(name=four)]
    events = list(stub.Compare(pb.CompareRequest(settings=settings(steps=0, preview_steps=[3]), priors=priors)))
    compared = events[-1].result.results
    assert [(item.steps, len(item.traces[0].values)) for item in compared] == [(2, 2), (4, 4)]
    previews = [(event.preview.prior, event.preview.preview.step) for event in events if event.preview.prior]
    assert previews == [(four, 3)]  # the two-step prior never reaches step 3
    given = result_of(stub.Compare(pb.CompareRequest(settings=settings(steps=3), priors=priors))).results
    assert [item.steps for item in given] == [3, 3]

    image = pb.InputImage(named="imagenet_samples/chelsea")
    invert = pb.InvertRequest(image=image, layers=[pb.WeightedLayer(layer="blocks.5")], priors=priors, image_size=SMALL)
    inverted = next(event.result for event in stub.Invert(invert) if event.WhichOneof("event") == "result")
    assert [(item.steps, len(item.relative_errors)) for item in inverted.inversions] == [(2, 2), (4, 4)]
    assert inverted.steps == 4


def test_visualize_streams_queue_progress_previews_then_one_result(stub) -> None:
    request = visualize("blocks.5:3", steps=6, preview_steps=[2, 6], batch=2)
    events = list(stub.Visualize(request))
    kinds = [event.WhichOneof("event") for event in events]
    assert kinds[0] == "queued" and kinds[-1] == "result" and kinds.count("result") == 1
    steps = [event.progress.step for event in events if event.WhichOneof("event") == "progress"]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert all(len(event.progress.objective_values) == 2 for event in events if event.WhichOneof("event") == "progress")
    previews = [event.preview for event in events if event.WhichOneof("event") == "preview"]
    assert [preview.step for preview in previews] == [2, 6] and all(len(p.images) == 2 for p in previews)
    result = events[-1].result
    assert result.prior == "fourier" and result.prior_kind == pb.PRIOR_KIND_UNCONSTRAINED
    assert result.model == "efficientnet_lite0" and result.objective_text == "blocks.5:3" and result.steps == 6
    assert (
        len(result.images) == 2 and len(result.traces) == 2 and all(len(trace.values) == 6 for trace in result.traces)
    )
    for image in result.images:
        decoded = Image.open(io.BytesIO(image.png))
        assert decoded.format == "PNG" and decoded.size == (SMALL, SMALL) and decoded.mode == "RGB"
    assert len(result.image_metrics) == 2
    assert {"objective", "objective_transformed", "total_variation"} <= set(result.image_metrics[0].values)
    assert result.image_metrics[0].values["objective"] == pytest.approx(result.objective_values[0], rel=1e-3, abs=1e-3)
    assert "diversity" in result.batch_metrics
    assert result.render_seconds > 0 and result.metrics_seconds > 0


def test_server_info_reports_the_workers_and_the_id_every_job_carries(server, stub) -> None:
    info = stub.GetServerInfo(pb.GetServerInfoRequest())
    assert (info.workers, info.max_queue) == (server.config.workers, server.config.max_queue)
    assert info.server_id == server.server_id and f":{server.port}/" in info.server_id
    call = stub.Visualize(visualize("blocks.5:3", steps=1))
    assert dict(call.initial_metadata())[SERVER_ID_METADATA] == info.server_id
    assert result_of(call).steps == 1


def test_visualize_takes_the_objective_as_a_tree(stub) -> None:
    objective = pb.Objective(
        sum=pb.SumObjective(
            terms=[
                pb.Objective(class_logit=pb.ClassLogitObjective(index=130)),
                pb.Objective(
                    scaled=pb.ScaledObjective(
                        objective=pb.Objective(channel=pb.ChannelObjective(layer="blocks.3", channel=1)), weight=-0.5
                    )
                ),
            ]
        )
    )
    request = pb.VisualizeRequest(
        settings=pb.RenderSettings(objective=objective, steps=2, image_size=SMALL, held_out_model="efficientnet_lite1")
    )
    result = result_of(stub.Visualize(request))
    assert result.objective_text == "logit:130 - 0.5*blocks.3:1"
    assert 0.0 <= result.image_metrics[0].values["held_out_probability"] <= 1.0


def test_same_seed_same_images_other_seed_other_images(stub) -> None:
    def png(seed: int) -> bytes:
        return result_of(stub.Visualize(visualize("blocks.5:3", steps=3, seed=seed))).images[0].png

    first = png(7)
    assert png(7) == first
    assert png(8) != first


def test_transforms_off_changes_the_run(stub) -> None:
    with_transforms = result_of(stub.Visualize(visualize("blocks.5:3", steps=3, seed=1)))
    without = result_of(stub.Visualize(visualize("blocks.5:3", steps=3, seed=1, transforms=pb.TRANSFORM_MODE_NONE)))
    assert with_transforms.images[0].png != without.images[0].png


BUILT_IN_PRIORS = frozenset(info.name for info in list_priors(only_available=False))
"""Priors registered on import, before any test registers its own (some on purpose broken)."""


@pytest.fixture
def built_in_priors_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide priors that other tests in this process registered, so the default list is the shipped one."""
    every_prior = validation.known_priors
    monkeypatch.setattr(
        validation, "known_priors", lambda: {name: v for name, v in every_prior().items() if name in BUILT_IN_PRIORS}
    )


def test_compare_defaults_to_fourier_and_every_learned_prior(stub, built_in_priors_only) -> None:
    events = list(stub.Compare(pb.CompareRequest(settings=settings("logit:1", steps=2, preview_steps=[1]))))
    learned = [info.name for info in list_priors() if info.kind == PriorKind.LEARNED and info.name in BUILT_IN_PRIORS]
    expected = ["fourier", *learned]
    result = events[-1].result
    assert [item.prior for item in result.results] == expected
    tagged = [
        (event.progress.prior, event.progress.prior_index, event.progress.progress.step)
        for event in events
        if event.WhichOneof("event") == "progress"
    ]
    assert tagged == [(name, index, step) for index, name in enumerate(expected) for step in (1, 2)]
    assert all(
        event.progress.prior_count == len(expected) for event in events if event.WhichOneof("event") == "progress"
    )
    assert [event.preview.prior for event in events if event.WhichOneof("event") == "preview"] == expected
    assert all(item.seed == 0 and len(item.images) == 1 and item.image_metrics for item in result.results)


def test_compare_runs_the_requested_priors_in_order_with_the_same_seed(stub) -> None:
    priors = [pb.PriorChoice(name="pixel"), pb.PriorChoice(name="fourier", options={"decay_power": "1.5"})]
    request = pb.CompareRequest(settings=settings("blocks.5:3", steps=2, seed=11), priors=priors)
    result = result_of(stub.Compare(request))
    assert [item.prior for item in result.results] == ["pixel", "fourier"]
    alone = result_of(
        stub.Visualize(pb.VisualizeRequest(settings=settings("blocks.5:3", steps=2, seed=11), prior="pixel"))
    )
    assert result.results[0].images[0].png == alone.images[0].png


def test_health_serves_the_whole_server_and_the_service(server) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", "priorviz.v1.Visualizer"):
            status = health.Check(health_pb2.HealthCheckRequest(service=name)).status
            assert status == health_pb2.HealthCheckResponse.SERVING
    assert healthcheck.main(["--address", f"127.0.0.1:{server.port}"]) == 0


def test_reflection_lists_the_services(server) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {service.name for response in responses for service in response.list_services_response.service}
    assert {"priorviz.v1.Visualizer", "grpc.health.v1.Health"} <= names


def test_healthcheck_reports_a_server_that_is_not_there() -> None:
    assert healthcheck.main(["--address", "127.0.0.1:1", "--timeout", "0.5"]) == 1


def test_statistics_prior_weight_changes_the_images_but_not_the_reported_objective(stub) -> None:
    plain = result_of(stub.Visualize(visualize("blocks.5:3", steps=3, seed=2)))
    regularized = result_of(stub.Visualize(visualize("blocks.5:3", steps=3, seed=2, statistics_prior_weight=1.0)))
    assert regularized.images[0].png != plain.images[0].png
    assert regularized.image_metrics[0].values["objective"] == pytest.approx(
        regularized.objective_values[0], rel=1e-3, abs=1e-3
    )


def test_a_diffusers_model_given_on_the_command_line_is_offered_and_renders(stub, tmp_path) -> None:
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    AutoencoderTiny(
        encoder_block_out_channels=(8, 8),
        decoder_block_out_channels=(8, 8),
        num_encoder_blocks=(1, 1),
        num_decoder_blocks=(1, 1),
        latent_channels=4,
    ).save_pretrained(tmp_path / "tiny")
    name = f"tiny_vae_{uuid.uuid4().hex[:8]}"
    (info,) = register_folder_priors([f"{name}=autoencoder_tiny:{tmp_path / 'tiny'}"])
    assert info.name == name and not info.unavailable_reason
    listed = {prior.name: prior for prior in stub.ListPriors(pb.ListPriorsRequest()).priors}
    assert listed[name].kind == pb.PRIOR_KIND_LEARNED
    result = result_of(stub.Visualize(visualize("logit:1", prior=name, steps=2)))
    assert result.prior == name and result.prior_kind == pb.PRIOR_KIND_LEARNED and len(result.images) == 1
    for bad in ("no_equals_sign", f"{name}=autoencoder_tiny:{tmp_path}"):  # malformed, or the name is taken
        with pytest.raises(ValueError, match="--prior"):
            register_folder_priors([bad])
