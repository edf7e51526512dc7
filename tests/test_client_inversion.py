"""Feature inversion through both clients and the ``priorviz invert`` command, against a real server on loopback."""

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
)
from priorviz_client._cli import main
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
