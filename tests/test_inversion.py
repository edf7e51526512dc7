"""Feature inversion and images in requests: the engine, then the Invert RPC on a real server on loopback."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
from PIL import Image
from service_fixtures import SMALL, error_of, running_server, server_config, stub_for

from priorviz.errors import InvalidInputError, NotFoundError
from priorviz.image_input import EMBEDDED_SET, ImageSet, decode_image, embedded_image_set, load_named_image
from priorviz.inversion import invert, resize_photograph
from priorviz.models import get_model
from priorviz.render import RenderConfig, render
from priorviz.transforms import NO_TRANSFORMS, standard_transforms
from service._proto.priorviz.v1 import priorviz_pb2 as pb
from service.config import Limits
from service.server import PriorvizServer, parse_args

STEPS = 24


def png_bytes(width: int, height: int, color: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels but carries almost no data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"")
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def chelsea() -> torch.Tensor:
    return embedded_image_set().load("chelsea", field="image")


# -- engine ----------------------------------------------------------------------------------


def test_inverting_chelsea_at_blocks_5_brings_the_activation_error_well_below_its_start(chelsea: torch.Tensor) -> None:
    model = get_model("efficientnet_lite0")
    result = invert(model, chelsea, ["blocks.5"], "fourier", size=SMALL, steps=STEPS, seed=3)
    assert result.errors.shape == (STEPS,)
    assert result.errors[0] > 1.0  # a random Fourier image shares little with the cat's activations
    assert result.final_error < 0.6 * float(result.errors[0])
    assert result.images.shape == result.target.shape == (1, 3, SMALL, SMALL)
    again = invert(model, chelsea, {"blocks.5": 2.0}, "fourier", size=SMALL, steps=STEPS, seed=3)
    assert torch.equal(again.images, result.images)  # one layer's weight does not change its relative error


def test_inverting_through_random_transforms_compares_with_the_photographs_maps_resized(chelsea: torch.Tensor) -> None:
    # A padded, jittered, scaled image has maps of another size than the photograph's (this once crashed).
    model = get_model("efficientnet_lite0")
    result = invert(model, chelsea, ["blocks.5"], "fourier", size=SMALL, steps=STEPS, transforms=standard_transforms())
    assert torch.isfinite(result.errors).all()
    assert result.final_error < 0.8 * float(result.errors[0])


@pytest.mark.slow
def test_inverting_chelsea_at_128_px_reaches_the_issues_bar_within_128_steps(chelsea: torch.Tensor) -> None:
    result = invert(get_model("efficientnet_lite0"), chelsea, ["blocks.5"], "fourier", size=128, steps=128)
    assert result.final_error <= 0.2  # measured 0.196 (64 steps: 0.28)


def test_resize_photograph_centre_crops_to_a_square() -> None:
    wide = torch.zeros(3, 10, 30)
    wide[:, :, 10:20] = 1.0  # the centre square is white, the sides black
    assert torch.allclose(resize_photograph(wide, 5), torch.ones(1, 3, 5, 5))


def test_decode_image_refuses_corrupt_bytes_and_too_many_pixels_naming_the_field() -> None:
    with pytest.raises(InvalidInputError) as corrupt:
        decode_image(b"\x89PNG\r\n\x1a\nnot really", field="image.data")
    assert corrupt.value.field == "image.data"
    for width, height in ((5000, 4000), (100_000, 100_000)):  # over our cap; over Pillow's own too
        with pytest.raises(InvalidInputError, match=r"too large|at most") as bomb:
            decode_image(bomb_header(width, height), field="image.data", max_pixels=4000 * 4000)
        assert bomb.value.field == "image.data"
    assert decode_image(png_bytes(7, 5), field="x").shape == (3, 5, 7)


def test_embedded_set_holds_foolbox_imagenet_photographs_and_scikit_image_photographs() -> None:
    offered = embedded_image_set()
    assert sum(name.startswith("imagenet_") for name in offered.files) == 20
    assert {"chelsea", "coffee", "astronaut"} <= set(offered.files)
    assert not any(name.startswith(("mnist", "cifar")) for name in offered.files)


def test_image_set_members_cannot_leave_their_folder(tmp_path: Path) -> None:
    folder = tmp_path / "set"
    folder.mkdir()
    (folder / "inside.png").write_bytes(png_bytes(4, 4))
    (tmp_path / "secret.png").write_bytes(png_bytes(4, 4))
    (folder / "link.png").symlink_to(tmp_path / "secret.png")
    offered = {"mine": ImageSet.from_folders("mine", [folder])}
    assert set(offered["mine"].files) == {"inside"}
    assert load_named_image("mine/inside", offered, field="image.named").shape == (3, 4, 4)
    for hostile in ("mine/../secret", "mine/link", "mine/" + str(tmp_path / "secret")):
        with pytest.raises(NotFoundError):
            load_named_image(hostile, offered, field="image.named")


def test_image_set_flag_is_parsed_and_checked(tmp_path: Path) -> None:
    config, _ = parse_args(["--image-set", f"mine={tmp_path}"])
    assert config.image_sets == (("mine", str(tmp_path)),)
    with pytest.raises(SystemExit):
        parse_args(["--image-set", f"{EMBEDDED_SET}={tmp_path}"])
    with pytest.raises(SystemExit):
        parse_args(["--image-set", f"mine={tmp_path / 'missing'}"])


# -- the Invert RPC --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[PriorvizServer]:
    with running_server(server_config(limits=Limits(max_input_pixels=512 * 512))) as running:
        yield running


def invert_request(image: pb.InputImage, **fields: object) -> pb.InvertRequest:
    fields.setdefault("layers", [pb.WeightedLayer(layer="blocks.5")])
    fields.setdefault("steps", STEPS)
    return pb.InvertRequest(image=image, image_size=SMALL, **fields)


def test_invert_streams_progress_then_one_reconstruction_per_prior(server: PriorvizServer) -> None:
    request = invert_request(
        pb.InputImage(named="imagenet_samples/chelsea"),
        priors=[pb.PriorChoice(name="fourier"), pb.PriorChoice(name="gan_faces")],
        preview_steps=[STEPS],
        seed=1,
    )
    with stub_for(server) as stub:
        events = list(stub.Invert(request))
    kinds = [event.WhichOneof("event") for event in events]
    assert kinds[0] == "queued" and kinds[-1] == "result" and kinds.count("preview") == 2
    progress = [event.progress for event in events if event.WhichOneof("event") == "progress"]
    assert [p.prior for p in progress] == ["fourier"] * STEPS + ["gan_faces"] * STEPS
    result = events[-1].result
    assert [inversion.prior for inversion in result.inversions] == ["fourier", "gan_faces"]
    assert result.target.width == SMALL and list(result.layers) == [pb.WeightedLayer(layer="blocks.5", weight=1.0)]
    fourier, faces = result.inversions
    assert fourier.prior_kind == pb.PRIOR_KIND_UNCONSTRAINED and faces.prior_kind == pb.PRIOR_KIND_LEARNED
    assert len(fourier.relative_errors) == STEPS
    assert fourier.final_relative_error < 0.6 * fourier.relative_errors[0]
    assert progress[STEPS - 1].progress.objective_values[0] == pytest.approx(fourier.relative_errors[-1])
    assert {"spectral_slope", "total_variation", "objective"} <= set(fourier.metrics.values)
    assert Image.open(io.BytesIO(fourier.image.png)).size == (SMALL, SMALL)


def test_invert_accepts_uploaded_bytes(server: PriorvizServer) -> None:
    with stub_for(server) as stub:
        events = list(stub.Invert(invert_request(pb.InputImage(data=png_bytes(80, 60)), steps=2)))
    assert events[-1].result.inversions[0].prior == "fourier"


@pytest.mark.parametrize(
    ("image", "code", "field"),
    [
        (pb.InputImage(data=b"\xff\xd8\xff\xe0 truncated jpeg"), grpc.StatusCode.INVALID_ARGUMENT, "image.data"),
        (pb.InputImage(data=bomb_header(600, 600)), grpc.StatusCode.INVALID_ARGUMENT, "image.data"),
        (pb.InputImage(), grpc.StatusCode.INVALID_ARGUMENT, "image"),
        (pb.InputImage(named="imagenet_samples/../../etc/passwd"), grpc.StatusCode.NOT_FOUND, "image.named"),
        (pb.InputImage(named="elsewhere/chelsea"), grpc.StatusCode.NOT_FOUND, "image.named"),
    ],
)
def test_invert_refuses_bad_images_naming_the_field(
    server: PriorvizServer, image: pb.InputImage, code: grpc.StatusCode, field: str
) -> None:
    with stub_for(server) as stub:
        error = error_of(lambda: stub.Invert(invert_request(image)))
    assert error.code() == code
    assert error.details().startswith(f"{field}:")


def test_invert_refuses_unknown_layers_and_bad_weights(server: PriorvizServer) -> None:
    chelsea = pb.InputImage(named="imagenet_samples/chelsea")
    with stub_for(server) as stub:
        unknown = error_of(lambda: stub.Invert(invert_request(chelsea, layers=[pb.WeightedLayer(layer="nope")])))
        negative = error_of(
            lambda: stub.Invert(invert_request(chelsea, layers=[pb.WeightedLayer(layer="blocks.5", weight=-1)]))
        )
        none = error_of(lambda: stub.Invert(invert_request(chelsea, layers=[])))
    assert unknown.code() == grpc.StatusCode.NOT_FOUND and unknown.details().startswith("layers[0].layer:")
    assert negative.code() == grpc.StatusCode.INVALID_ARGUMENT and negative.details().startswith("layers[0].weight:")
    assert none.code() == grpc.StatusCode.INVALID_ARGUMENT and none.details().startswith("layers:")


# -- starting from a photograph ---------------------------------------------------------------


@pytest.mark.parametrize("prior", ["pixel", "fourier"])
def test_pixel_and_fourier_start_exactly_from_the_init_image(chelsea: torch.Tensor, prior: str) -> None:
    photograph = resize_photograph(chelsea, SMALL).expand(2, -1, -1, -1)
    config = RenderConfig(steps=2, snapshot_steps=(1,), transforms=NO_TRANSFORMS)
    result = render(
        get_model("efficientnet_lite0"),
        "layer:blocks.8",
        prior,
        batch=2,
        size=SMALL,
        config=config,
        init_images=photograph,
    )
    assert (result.snapshots[1] - photograph).abs().max() < 1e-3
    assert (result.images - photograph).abs().mean() > 1e-4  # and DeepDream moved it from there


def test_a_learned_prior_starts_from_its_latent_fitted_to_the_init_image(chelsea: torch.Tensor) -> None:
    model = get_model("efficientnet_lite0")
    photograph = resize_photograph(chelsea, SMALL)
    config = RenderConfig(steps=1, snapshot_steps=(1,), transforms=NO_TRANSFORMS)
    fitted = render(model, "layer:blocks.8", "gan_faces", size=SMALL, config=config, init_images=photograph)
    random = render(model, "layer:blocks.8", "gan_faces", size=SMALL, config=config)
    fitted_distance = (fitted.snapshots[1] - photograph).pow(2).mean()
    assert fitted_distance < 0.7 * (random.snapshots[1] - photograph).pow(2).mean()


def test_visualize_with_an_init_image_previews_the_photograph_at_step_1(server: PriorvizServer) -> None:
    request = pb.VisualizeRequest(
        settings=pb.RenderSettings(
            objective_text="layer:blocks.8",
            steps=3,
            image_size=SMALL,
            preview_steps=[1],
            init_image=pb.InputImage(named="imagenet_samples/chelsea"),
        ),
        prior="pixel",
    )
    with stub_for(server) as stub:
        events = list(stub.Visualize(request))
    preview = next(event.preview for event in events if event.WhichOneof("event") == "preview")
    shown = torch.from_numpy(np.array(Image.open(io.BytesIO(preview.images[0].png)))).permute(2, 0, 1) / 255.0
    expected = resize_photograph(embedded_image_set().load("chelsea", field="image"), SMALL)[0]
    assert (shown - expected).abs().max() <= 1 / 255 + 1e-4  # the photograph, to within 8-bit quantization


def test_a_corrupt_init_image_is_refused_naming_it(server: PriorvizServer) -> None:
    request = pb.CompareRequest(
        settings=pb.RenderSettings(
            objective_text="layer:blocks.8", steps=2, image_size=SMALL, init_image=pb.InputImage(data=b"\x89PNG...")
        ),
        priors=[pb.PriorChoice(name="fourier")],
    )
    with stub_for(server) as stub:
        error = error_of(lambda: stub.Compare(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("settings.init_image.data:")


def test_a_server_offers_the_image_sets_it_is_given(tmp_path: Path) -> None:
    (tmp_path / "red.jpg").write_bytes(png_bytes(40, 40))  # named .jpg, holding a PNG: decoded by content
    with running_server(server_config(image_sets=(("mine", str(tmp_path)),))) as own, stub_for(own) as stub:
        events = list(stub.Invert(invert_request(pb.InputImage(named="mine/red"), steps=1)))
        missing = error_of(lambda: stub.Invert(invert_request(pb.InputImage(named="mine/blue"), steps=1)))
    target = Image.open(io.BytesIO(events[-1].result.target.png)).convert("RGB")
    assert target.getpixel((10, 10)) == (200, 40, 40)
    assert missing.code() == grpc.StatusCode.NOT_FOUND and "red" in missing.details()
