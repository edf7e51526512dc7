"""Dataset examples through both clients, ``priorviz examples`` and ``priorviz compare --examples``, against a real
server on loopback; the compare report with its dataset examples in headless Chromium."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import headless_chromium
import numpy as np
import pytest
from blocking_async import Connect
from client_server import SIDE, loopback_config, serving
from headless_chromium import difference, framed_regions
from PIL import Image

from priorviz_client import (
    Client,
    DatasetExamples,
    InvalidArgumentError,
    NotFoundError,
    Progress,
    Queued,
    ReceptiveField,
)
from priorviz_client._cli import main
from priorviz_client._report import EXAMPLE_COLOUR, EXAMPLE_SIZE, FRAME_WIDTH
from service.server import PriorvizServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PriorvizServer]:
    with serving(loopback_config(store_dir=str(tmp_path_factory.mktemp("store")))) as running:
        yield running


@pytest.fixture()
def client(connect: Connect, server: PriorvizServer) -> Iterator[Client]:
    with connect(f"127.0.0.1:{server.port}", timeout=30) as connected:
        yield connected


def test_dataset_examples_of_the_embedded_set(client: Client) -> None:
    job = client.dataset_examples_stream("blocks.8:40", "imagenet_samples", k=3, thumbnail_size=48)
    events = list(job)
    first = job.result()
    again = client.dataset_examples("blocks.8:40", "imagenet_samples", k=3, thumbnail_size=48)
    assert isinstance(first, DatasetExamples) and again.stored
    if not first.stored:  # the other client's run may have filled the store already
        assert isinstance(events[0], Queued) and any(isinstance(event, Progress) for event in events)
    assert (first.unit, first.layer, first.image_set, first.image_count) == (
        "blocks.8:40",
        "blocks.8",
        "imagenet_samples",
        26,
    )
    assert [example.name for example in again.top] == [example.name for example in first.top]
    values = [example.value for example in first.top]
    assert values == sorted(values, reverse=True) and len(first.bottom) == 3
    assert first.top[0].value >= first.bottom[0].value
    assert isinstance(first.receptive_field, ReceptiveField) and first.receptive_field.image_size == 224
    example = first.top[0]
    assert example.image.size == example.crop.size == (48, 48)
    assert example.position is not None and example.box[2] == first.receptive_field.size
    assert example.crop_value >= example.value  # the best position is at least the mean


def test_uploaded_images_and_typed_errors(client: Client, tmp_path: Path) -> None:
    red, blue = Image.new("RGB", (60, 40), (220, 20, 20)), tmp_path / "blue.png"
    Image.new("RGB", (30, 50), (20, 20, 220)).save(blue)
    ranked = client.dataset_examples("logit:1", [red, blue], k=2)
    assert ranked.image_set == "" and ranked.image_count == 2
    assert sorted(example.name for example in ranked.top) == ["images[0]", "images[1]"]
    assert ranked.top[0].position is None and ranked.top[0].box == (0, 0, 224)
    with pytest.raises(NotFoundError, match="image_set"):
        client.dataset_examples("blocks.8:40", "no_such_set")
    with pytest.raises(InvalidArgumentError, match=r"k: must be within 1\.\.32"):
        client.dataset_examples("blocks.8:40", "imagenet_samples", k=100)
    with pytest.raises(InvalidArgumentError, match=r"unit_text: .*not one unit"):
        client.dataset_examples("layer:blocks.8", "imagenet_samples")
    with pytest.raises(InvalidArgumentError, match=r"images\[1\]\.data"):
        client.dataset_examples("blocks.8:40", [red, b"not an image"])


def cli(server: PriorvizServer, *args: str) -> list[str]:
    return ["--target", f"127.0.0.1:{server.port}", *args]


def test_cli_examples_writes_images_crops_a_contact_sheet_and_the_report(
    server: PriorvizServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(cli(server, "examples", "blocks.10:17", "--images", "imagenet_samples", "--k", "4", "--out", str(out)))
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "examples.json").read_text())
    assert (record["unit"], record["image_count"], len(record["examples"])) == ("blocks.10:17", 26, 8)
    for entry in record["examples"]:
        assert Image.open(out / entry["image"]).size == Image.open(out / entry["crop"]).size == (128, 128)
    highest = [entry["value"] for entry in record["examples"] if entry["end"] == "top"]
    assert highest == sorted(highest, reverse=True)
    sheet = Image.open(out / "contact_sheet.png")
    assert sheet.width >= 4 * 128 and sheet.height > 4 * 128  # two bands of photographs over their crops
    report = (out / "report.html").read_text()
    assert report.count('<figure class="example"') == 8 and "data:image/png;base64," in report
    printed = capsys.readouterr().out
    assert printed.startswith("blocks.10:17 on 26 images of imagenet_samples") and "highest: " in printed


def test_cli_examples_uploads_a_folder_and_keeps_the_file_names(
    server: PriorvizServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, colour in (("sky.png", (40, 90, 230)), ("grass.jpg", (30, 200, 40)), ("notes.txt", None)):
        if colour is None:
            (folder / name).write_text("not an image")
        else:
            Image.new("RGB", (64, 48), colour).save(folder / name)
    out = tmp_path / "out"
    code = main(cli(server, "examples", "blocks.5:3", "--images", str(folder), "--no-progress", "--out", str(out)))
    assert code == 0, capsys.readouterr().err
    assert "2 images done" in capsys.readouterr().err  # uploads are never stored: always computed
    record = json.loads((out / "examples.json").read_text())
    assert record["image_set"] == "" and {entry["name"] for entry in record["examples"]} == {"sky.png", "grass.jpg"}
    missing = main(cli(server, "examples", "blocks.5:3", "--images", str(folder), "nowhere", "--out", str(out)))
    assert missing == 1 and "nowhere" in capsys.readouterr().err


def test_compare_report_shows_the_dataset_examples_beside_the_visualizations(
    server: PriorvizServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    code = main(
        cli(
            server,
            "compare",
            "blocks.10:17",
            "layer:blocks.8",
            "--prior",
            "fourier",
            "--steps",
            "2",
            "--size",
            str(SIDE),
            "--examples",
            "imagenet_samples",
            "--examples-k",
            "3",
            "--no-progress",
            "--out",
            str(out),
        )
    )
    assert code == 0, capsys.readouterr().err
    assert "no dataset examples: 'layer:blocks.8' is not one unit" in capsys.readouterr().err
    document = json.loads((out / "metrics.json").read_text())
    channel, dream = document["comparisons"]
    assert "dataset_examples" not in dream and channel["dataset_examples"]["unit"] == "blocks.10:17"
    pngs = sorted((out / "01_blocks.10_17" / "examples").glob("*.png"))
    assert len(pngs) == 2 * 6  # three highest and three lowest, each photograph and crop
    assert {Path(entry["image"]).name for entry in channel["dataset_examples"]["examples"]} <= {p.name for p in pngs}

    screenshot = headless_chromium.screenshot(out / "report.html", tmp_path / "report.png", height=2200)
    picture = np.asarray(Image.open(screenshot).convert("RGB"))
    shown = framed_regions(picture, [EXAMPLE_COLOUR], EXAMPLE_SIZE, FRAME_WIDTH)
    assert len(shown) == len(pngs), f"{len(shown)} framed examples on screen for {len(pngs)} PNGs"
    for png in pngs:
        errors = [difference(region, Image.open(png)) for region in shown]
        assert min(errors) < 12, f"{png.name} is not shown in the report (closest region differs by {min(errors):.1f})"
