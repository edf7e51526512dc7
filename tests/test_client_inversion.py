"""Real images in through both clients and the ``priorviz`` command, against a real server on loopback: feature
inversion, starting from a photograph and its caricature, and the regularizers and transform parameters."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from blocking_async import Connect
from client_server import SIDE, serving
from PIL import Image

from priorviz_client import (
    Client,
    InvalidArgumentError,
    Inversions,
    NotFoundError,
    PriorKind,
    Progress,
    Queued,
    Transforms,
    caricature,
)
from priorviz_client._cli import main
from priorviz_client._proto.priorviz.v1 import priorviz_pb2 as pb
from priorviz_client._requests import render_settings
from service.server import PriorvizServer

STEPS = 16


@pytest.fixture(scope="module")
def server() -> Iterator[PriorvizServer]:
    with serving() as running:
        yield running


@pytest.fixture()
def client(connect: Connect, server: PriorvizServer) -> Iterator[Client]:
    with connect(f"127.0.0.1:{server.port}", timeout=30) as connected:
        yield connected


def test_invert_a_photograph_of_the_embedded_set_under_two_priors(client: Client) -> None:
    job = client.invert_stream(
        "imagenet_samples/chelsea", "blocks.5", priors=["fourier", "pixel"], steps=STEPS, size=SIDE, seed=2
    )
    events = list(job)
    result = job.result()
    assert isinstance(result, Inversions)
    assert isinstance(events[0], Queued)
    errors = [event.objective_values[0] for event in events if isinstance(event, Progress)]
    assert len(errors) == 2 * STEPS
    assert [inversion.prior for inversion in result.results] == ["fourier", "pixel"]
    fourier = result["fourier"]
    assert fourier.prior_kind is PriorKind.UNCONSTRAINED
    assert fourier.relative_errors == pytest.approx(errors[:STEPS])
    assert fourier.final_relative_error < 0.7 * fourier.relative_errors[0]
    assert fourier.image.size == result.target.size == (SIDE, SIDE)
    assert dict(result.layers) == {"blocks.5": 1.0}


def test_invert_uploads_a_pil_image_and_refuses_corrupt_bytes(client: Client) -> None:
    result = client.invert(Image.new("RGB", (90, 70), (10, 200, 30)), {"blocks.3": 2.0}, steps=2, size=SIDE)
    assert result.results[0].prior == "fourier" and dict(result.layers) == {"blocks.3": 2.0}
    with pytest.raises(InvalidArgumentError, match=r"image\.data"):
        client.invert(b"GIF89a not an image", "blocks.5", steps=2, size=SIDE)


def test_compare_starts_from_an_init_image(client: Client) -> None:
    photograph = Image.new("RGB", (SIDE, SIDE), (30, 90, 200))
    comparison = client.compare(
        "layer:blocks.8", priors=["pixel"], steps=2, size=SIDE, preview_steps=[1], init_image=photograph
    )
    start = comparison["pixel"].previews[1][0]
    assert max(abs(a - b) for a, b in zip(start.getpixel((5, 5)), (30, 90, 200), strict=True)) <= 1
    with pytest.raises(NotFoundError, match=r"settings\.init_image\.named"):
        client.compare("layer:blocks.8", priors=["pixel"], steps=2, size=SIDE, init_image="imagenet_samples/nothing")


def test_cli_invert_writes_images_a_contact_sheet_and_the_report(
    server: PriorvizServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photograph = tmp_path / "coffee.png"
    Image.new("RGB", (120, 100), (120, 70, 30)).save(photograph)
    out = tmp_path / "out"
    code = main(
        [
            "--target",
            f"127.0.0.1:{server.port}",
            "invert",
            str(photograph),
            "--layer",
            "blocks.5",
            "--prior",
            "fourier",
            "--prior",
            "gan_faces",
            "--steps",
            "3",
            "--size",
            str(SIDE),
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert {"target.png", "fourier.png", "gan_faces.png", "contact_sheet.png", "inversion.json", "report.html"} <= {
        path.name for path in out.iterdir()
    }
    record = json.loads((out / "inversion.json").read_text())
    assert [entry["prior"] for entry in record["inversions"]] == ["fourier", "gan_faces"]
    assert all(len(entry["relative_errors"]) == 3 for entry in record["inversions"])
    sheet = Image.open(io.BytesIO((out / "contact_sheet.png").read_bytes()))
    assert sheet.width > 3 * 192  # the photograph and two reconstructions
    assert "gan_faces.png" in (out / "report.html").read_text()
    assert "relative error" in capsys.readouterr().out


def test_regularizers_and_transform_parameters_are_keyword_arguments() -> None:
    settings = render_settings(
        "blocks.5:1",
        {
            "total_variation_weight": 2.0,
            "l1_weight": 0.5,
            "blur_sigma": 1.0,
            "blur_every": 4,
            "transforms": Transforms(pad=0, scale=(0.8, 1.2), rotate=5.0),
        },
    )
    assert (settings.regularizers.total_variation_weight, settings.regularizers.l1_weight) == (2.0, 0.5)
    assert (settings.regularizers.blur_sigma, settings.regularizers.blur_every) == (1.0, 4)
    parameters = settings.transform_parameters
    assert (parameters.pad, parameters.scale_min, parameters.scale_max, parameters.rotate_degrees) == (0, 0.8, 1.2, 5)
    assert not parameters.HasField("jitter") and not parameters.HasField("final_jitter")  # the server's standard
    assert not render_settings("blocks.5:1", {}).HasField("transform_parameters")
    assert render_settings("blocks.5:1", {"transforms": False}).transforms == pb.TRANSFORM_MODE_NONE


def test_a_caricature_with_regularizers_and_transform_parameters(client: Client) -> None:
    common = {"prior": "fourier", "steps": 4, "size": SIDE, "init_image": "imagenet_samples/chelsea"}
    result = client.visualize(
        caricature("blocks.5"),
        total_variation_weight=10.0,
        l1_weight=1.0,
        transforms=Transforms(jitter=4, scale=(0.95, 1.05)),
        **common,
    )
    assert result.objective == "caricature:blocks.5" and result.objective_values[0] > 1.0
    identity = Transforms(pad=0, jitter=0, scale=(1.0, 1.0), rotate=0.0, final_jitter=0)
    unmoved = client.visualize("caricature:blocks.5", transforms=identity, **common)
    untransformed = client.visualize("caricature:blocks.5", transforms=False, **common)
    assert unmoved.images[0].tobytes() == untransformed.images[0].tobytes()
    blurred = client.visualize("caricature:blocks.5", transforms=False, blur_sigma=2.0, **common)
    assert blurred.metrics[0]["total_variation"] < untransformed.metrics[0]["total_variation"]
    with pytest.raises(InvalidArgumentError, match=r"settings\.regularizers\.blur_sigma"):
        client.compare("blocks.5:1", priors=["gan_faces"], steps=2, size=SIDE, blur_sigma=1.0)
    with pytest.raises(InvalidArgumentError, match=r"settings\.transform_parameters\.scale_min"):
        client.visualize("blocks.5:1", steps=2, size=SIDE, transforms=Transforms(scale=(1.5, 1.2)))
    with pytest.raises(InvalidArgumentError, match=r"settings\.init_image"):
        client.visualize("caricature:blocks.5", steps=2, size=SIDE)


def test_cli_visualize_takes_regularizer_and_transform_flags(
    server: PriorvizServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = ["--target", f"127.0.0.1:{server.port}"]
    flags = ["--steps", "3", "--size", str(SIDE), "--no-progress", "--prior", "pixel"]
    regularizers = ["--tv", "5", "--l1", "0.5", "--blur-sigma", "1", "--blur-every", "2"]
    transforms = ["--pad", "4", "--jitter", "2", "--scale", "0.9", "1.2", "--rotate", "5", "--final-jitter", "1"]
    out = tmp_path / "smooth"
    code = main([*target, "visualize", "blocks.5:1", *flags, *regularizers, *transforms, "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    recorded = json.loads((out / "metrics.json").read_text())["settings"]
    assert recorded["transforms"] == {"pad": 4, "jitter": 2, "scale": [0.9, 1.2], "rotate": 5.0, "final_jitter": 1}
    assert (recorded["total_variation_weight"], recorded["blur_every"]) == (5.0, 2)
    assert (out / "pixel_0.png").is_file()
    code = main([*target, "visualize", "blocks.5:1", *flags, "--scale", "1.3", "1.2", "--out", str(out)])
    assert code == 1 and "settings.transform_parameters.scale_min" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main([*target, "visualize", "blocks.5:1", "--no-transforms", "--pad", "4", "--out", str(out)])
    assert usage.value.code == 2 and "--pad" in capsys.readouterr().err


def test_cli_compare_draws_a_caricature_of_a_photograph(
    server: PriorvizServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "caricature"
    command = ["--target", f"127.0.0.1:{server.port}", "compare", "caricature:blocks.8", "--prior", "fourier"]
    options = ["--init-image", "imagenet_samples/chelsea", "--steps", "3", "--size", str(SIDE), "--no-progress"]
    assert main([*command, *options, "--out", str(out)]) == 0, capsys.readouterr().err
    assert {"fourier_0.png", "contact_sheet.png", "report.html"} <= {path.name for path in out.rglob("*")}
    assert main([*command, "--steps", "2", "--no-progress", "--out", str(out)]) == 1
    assert "settings.init_image" in capsys.readouterr().err
