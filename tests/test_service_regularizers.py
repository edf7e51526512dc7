"""Regularizers, transform parameters and caricatures over the wire, against a real server on loopback.

Each parameter is shown to reach the engine by what it does to the image (measured), and each
bad value is refused with INVALID_ARGUMENT naming its field before the job is queued.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from PIL import Image
from service_fixtures import SMALL, error_of, result_of, running_server, server_config, settings, stub_for

from service._proto.priorviz.v1 import priorviz_pb2 as pb
from service._proto.priorviz.v1 import priorviz_pb2_grpc as pb_grpc

CHELSEA = pb.InputImage(named="imagenet_samples/chelsea")


@pytest.fixture(scope="module")
def stub() -> Iterator[pb_grpc.VisualizerStub]:
    with running_server(server_config()) as server, stub_for(server) as client:
        yield client


def pixels(image: pb.Image) -> np.ndarray:
    """(H, W, 3) in [0, 1]."""
    return np.asarray(Image.open(io.BytesIO(image.png)), dtype=np.float64) / 255.0


def roughness(image: pb.Image) -> float:
    """Total variation as the engine measures it: mean absolute neighbour difference, x plus y."""
    values = pixels(image)
    return float(np.abs(np.diff(values, axis=0)).mean() + np.abs(np.diff(values, axis=1)).mean())


def run(stub: pb_grpc.VisualizerStub, prior: str = "fourier", **fields: object) -> list[pb.VisualizeEvent]:
    fields.setdefault("objective_text", "blocks.5:3")
    fields.setdefault("steps", 16)
    request = pb.VisualizeRequest(settings=pb.RenderSettings(image_size=SMALL, **fields), prior=prior)
    return list(stub.Visualize(request, timeout=120))


def previews(events: list[pb.VisualizeEvent]) -> dict[int, pb.Image]:
    return {event.preview.step: event.preview.images[0] for event in events if event.WhichOneof("event") == "preview"}


def test_total_variation_and_l1_weights_reach_the_engine(stub: pb_grpc.VisualizerStub) -> None:
    plain = result_of(iter(run(stub)))
    smooth = result_of(iter(run(stub, regularizers=pb.Regularizers(total_variation_weight=1000))))
    grey = result_of(iter(run(stub, regularizers=pb.Regularizers(l1_weight=1000))))
    tv = {name: r.image_metrics[0].values["total_variation"] for name, r in (("plain", plain), ("tv", smooth))}
    assert tv["tv"] < 0.5 * tv["plain"], tv
    assert tv["plain"] == pytest.approx(roughness(plain.images[0]), abs=0.01)  # the panel measures what we see
    distance = {name: np.abs(pixels(r.images[0]) - 0.5).mean() for name, r in (("plain", plain), ("l1", grey))}
    assert distance["l1"] < 0.6 * distance["plain"], distance


def test_the_blur_acts_every_k_steps(stub: pb_grpc.VisualizerStub) -> None:
    fields = {"steps": 6, "preview_steps": [3, 4, 6], "transforms": pb.TRANSFORM_MODE_NONE}
    plain = previews(run(stub, "pixel", **fields))
    blurred = previews(run(stub, "pixel", regularizers=pb.Regularizers(blur_sigma=1.5, blur_every=3), **fields))
    # A preview is the image a step starts from: step 3 comes before the first blur, step 4 after it.
    assert blurred[3].png == plain[3].png
    assert roughness(blurred[4]) < 0.5 * roughness(plain[4])
    assert roughness(blurred[6]) > roughness(blurred[4])  # two steps without a blur roughen it again


def test_transform_parameters_reach_the_engine(stub: pb_grpc.VisualizerStub) -> None:
    def image(**fields: object) -> bytes:
        return result_of(iter(run(stub, steps=4, **fields))).images[0].png

    standard, none = image(), image(transforms=pb.TRANSFORM_MODE_NONE)
    assert standard != none
    lucid = pb.TransformParameters(pad=12, jitter=8, scale_min=0.9, scale_max=1.1, rotate_degrees=10, final_jitter=4)
    assert image(transform_parameters=lucid) == standard
    identity = pb.TransformParameters(pad=0, jitter=0, scale_min=1, scale_max=1, rotate_degrees=0, final_jitter=0)
    assert image(transform_parameters=identity) == none
    for changed in (
        pb.TransformParameters(jitter=16),
        pb.TransformParameters(pad=0),
        pb.TransformParameters(scale_min=1.2, scale_max=1.4),
        pb.TransformParameters(rotate_degrees=45),
    ):
        assert image(transform_parameters=changed) not in (standard, none), changed


def test_a_caricature_of_chelsea_raises_its_objective(stub: pb_grpc.VisualizerStub) -> None:
    events = run(stub, objective_text="caricature:blocks.5", init_image=CHELSEA, steps=12)
    values = [event.progress.objective_values[0] for event in events if event.WhichOneof("event") == "progress"]
    assert values[-1] > 1.3 * values[0]
    result = result_of(iter(events))
    assert result.objective_text == "caricature:blocks.5"
    assert result.objective_values[0] > 1.0  # the photograph itself scores 1
    assert result.image_metrics[0].values["objective"] == pytest.approx(result.objective_values[0], rel=1e-4)
    tree = pb.RenderSettings(
        objective=pb.Objective(caricature=pb.CaricatureObjective(layer="blocks.8", cosine_power=1)),
        init_image=CHELSEA,
        steps=2,
        image_size=SMALL,
    )
    compared = list(stub.Compare(pb.CompareRequest(settings=tree, priors=[pb.PriorChoice(name="pixel")])))
    assert compared[-1].result.results[0].objective_text == "coscaricature1:blocks.8"


def _visualize(prior: str = "fourier", **fields: object) -> pb.VisualizeRequest:
    return pb.VisualizeRequest(settings=settings(steps=4, **fields), prior=prior)


def _compare(*priors: str, **fields: object) -> pb.CompareRequest:
    return pb.CompareRequest(settings=settings(steps=4, **fields), priors=[pb.PriorChoice(name=p) for p in priors])


REGULARIZERS = "settings.regularizers"
TRANSFORMS = "settings.transform_parameters"
NAN, INF = float("nan"), float("inf")
INVALID = [
    (f"{REGULARIZERS}.total_variation_weight", _visualize(regularizers=pb.Regularizers(total_variation_weight=-1))),
    (f"{REGULARIZERS}.total_variation_weight", _visualize(regularizers=pb.Regularizers(total_variation_weight=NAN))),
    (f"{REGULARIZERS}.total_variation_weight", _visualize(regularizers=pb.Regularizers(total_variation_weight=1e4))),
    (f"{REGULARIZERS}.l1_weight", _visualize(regularizers=pb.Regularizers(l1_weight=-0.5))),
    (f"{REGULARIZERS}.l1_weight", _visualize(regularizers=pb.Regularizers(l1_weight=INF))),
    (f"{REGULARIZERS}.blur_sigma", _visualize(regularizers=pb.Regularizers(blur_sigma=-1))),
    (f"{REGULARIZERS}.blur_sigma", _visualize(regularizers=pb.Regularizers(blur_sigma=9))),
    (f"{REGULARIZERS}.blur_sigma", _visualize(regularizers=pb.Regularizers(blur_sigma=NAN))),
    (f"{REGULARIZERS}.blur_every", _visualize(regularizers=pb.Regularizers(blur_sigma=1, blur_every=-2))),
    (f"{REGULARIZERS}.blur_every", _visualize(regularizers=pb.Regularizers(blur_sigma=1, blur_every=5))),
    (f"{REGULARIZERS}.blur_every", _visualize(regularizers=pb.Regularizers(blur_every=2))),
    (f"{REGULARIZERS}.blur_sigma", _visualize("gan_faces", regularizers=pb.Regularizers(blur_sigma=1))),
    (f"{REGULARIZERS}.blur_sigma", _visualize("cppn", regularizers=pb.Regularizers(blur_sigma=1))),
    (TRANSFORMS, _visualize(transforms=pb.TRANSFORM_MODE_NONE, transform_parameters=pb.TransformParameters(pad=4))),
    (f"{TRANSFORMS}.pad", _visualize(transform_parameters=pb.TransformParameters(pad=-1))),
    (f"{TRANSFORMS}.pad", _visualize(transform_parameters=pb.TransformParameters(pad=65))),
    (f"{TRANSFORMS}.jitter", _visualize(transform_parameters=pb.TransformParameters(jitter=33))),
    (f"{TRANSFORMS}.jitter", _visualize(transform_parameters=pb.TransformParameters(jitter=30))),  # + 4 > 64 / 2
    (f"{TRANSFORMS}.final_jitter", _visualize(transform_parameters=pb.TransformParameters(final_jitter=-4))),
    (f"{TRANSFORMS}.scale_min", _visualize(transform_parameters=pb.TransformParameters(scale_min=0.4))),
    (f"{TRANSFORMS}.scale_min", _visualize(transform_parameters=pb.TransformParameters(scale_min=NAN))),
    (f"{TRANSFORMS}.scale_min", _visualize(transform_parameters=pb.TransformParameters(scale_min=1.5, scale_max=1.2))),
    (f"{TRANSFORMS}.scale_min", _visualize(transform_parameters=pb.TransformParameters(scale_min=1.2))),  # > 1.1
    (f"{TRANSFORMS}.scale_max", _visualize(transform_parameters=pb.TransformParameters(scale_max=INF))),
    (f"{TRANSFORMS}.rotate_degrees", _visualize(transform_parameters=pb.TransformParameters(rotate_degrees=-5))),
    (f"{TRANSFORMS}.rotate_degrees", _visualize(transform_parameters=pb.TransformParameters(rotate_degrees=181))),
    ("settings.init_image", _visualize(objective_text="caricature:blocks.5")),
    ("settings.init_image", _visualize(objective_text="blocks.5:1 + 0.1*coscaricature2:blocks.8")),
    ("settings.objective_text", _visualize(objective_text="coscaricature99:blocks.5", init_image=CHELSEA)),
]


@pytest.mark.parametrize(("field", "request_"), INVALID, ids=[f"{field}-{i}" for i, (field, _) in enumerate(INVALID)])
def test_bad_values_are_refused_naming_the_field(
    stub: pb_grpc.VisualizerStub, field: str, request_: pb.VisualizeRequest
) -> None:
    error = error_of(lambda: stub.Visualize(request_, timeout=60))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert error.details().startswith(field + ":"), error.details()


def test_compare_refuses_a_blur_with_a_learned_prior_and_a_caricature_without_a_photograph(
    stub: pb_grpc.VisualizerStub,
) -> None:
    for request, field in (
        (_compare("fourier", "gan_faces", regularizers=pb.Regularizers(blur_sigma=1)), f"{REGULARIZERS}.blur_sigma"),
        (_compare(regularizers=pb.Regularizers(blur_sigma=1)), f"{REGULARIZERS}.blur_sigma"),  # default: learned too
        (_compare("pixel", objective_text="caricature:blocks.5"), "settings.init_image"),
    ):
        error = error_of(lambda request=request: stub.Compare(request, timeout=60))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
        assert error.details().startswith(field + ":"), error.details()
