"""The ``priorviz`` command end to end against a loopback server, and its report in headless Chromium."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import headless_chromium
import numpy as np
import pytest
from client_server import SIDE, serving
from headless_chromium import difference, framed_regions
from PIL import Image, ImageDraw

from priorviz_client import Client, PriorKind
from priorviz_client._contact_sheet import KIND_COLOURS, _font, column_label
from priorviz_client._report import DISPLAY_SIZE, FRAME_WIDTH
from service.server import PriorvizServer

PRIORVIZ = Path(sys.executable).with_name("priorviz")
CONTACT_CELL = 192
"""Side of each image on the contact sheet (its default), inside a one-pixel frame."""
KIND_FRAMES = (KIND_COLOURS[PriorKind.UNCONSTRAINED], KIND_COLOURS[PriorKind.LEARNED])


@pytest.fixture(scope="module")
def server() -> Iterator[PriorvizServer]:
    with serving() as running:
        yield running


def run_cli(server: PriorvizServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PRIORVIZ), "--target", f"127.0.0.1:{server.port}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def compared(server: PriorvizServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """One ``priorviz compare`` run: a class and a channel under every unconstrained and learned prior."""
    with Client(f"127.0.0.1:{server.port}") as client:
        priors = [prior.name for prior in client.priors()]
    out = tmp_path_factory.mktemp("compare")
    prior_args = [argument for name in priors for argument in ("--prior", name)]
    done = run_cli(
        server,
        "compare",
        "logit:1",
        "blocks.5:3",
        *prior_args,
        "--steps",
        "4",
        "--size",
        str(SIDE),
        "--no-progress",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    return out, priors


def test_listing_commands(server: PriorvizServer) -> None:
    models = run_cli(server, "models", "--json")
    assert models.returncode == 0 and json.loads(models.stdout)[0]["name"] == "efficientnet_lite0"
    layers = run_cli(server, "layers", "efficientnet_lite0")
    assert re.search(r"^blocks\.10\s+112\s+14x14$", layers.stdout, re.MULTILINE), layers.stdout
    priors = run_cli(server, "priors")
    assert re.search(r"^PRIOR\s+KIND\s+SIZE\s+STEPS\s+AT PX\s+LR\s+AVAILABLE", priors.stdout), priors.stdout
    assert re.search(r"^fourier\s+unconstrained\s+any\s+512\s+224\s+0\.05\s+yes", priors.stdout, re.MULTILINE)
    assert re.search(r"^maco\s+unconstrained\s+any\s+512\s+224\s+0\.2\s+yes", priors.stdout, re.MULTILINE)
    health = run_cli(server, "health")
    assert (health.returncode, health.stdout.strip()) == (0, "SERVING")


def test_errors_exit_with_one_line(server: PriorvizServer, tmp_path: Path) -> None:
    done = run_cli(server, "visualize", "no_such_layer:1", "--steps", "2", "--out", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.strip().startswith("priorviz: Visualize: NOT_FOUND") and "no_such_layer" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_failing_objective_keeps_the_finished_comparisons(server: PriorvizServer, tmp_path: Path) -> None:
    done = run_cli(
        server,
        "compare",
        "blocks.5:3",
        "no_such_layer:1",
        "--prior",
        "fourier",
        "--steps",
        "2",
        "--size",
        str(SIDE),
        "--no-progress",
        "--out",
        str(tmp_path),
    )
    assert done.returncode == 1 and "NOT_FOUND" in done.stderr
    document = json.loads((tmp_path / "metrics.json").read_text())
    assert [comparison["objective"] for comparison in document["comparisons"]] == ["blocks.5:3"]
    assert (tmp_path / "report.html").exists()


def test_visualize_writes_images_and_metrics(server: PriorvizServer, tmp_path: Path) -> None:
    done = run_cli(
        server,
        "visualize",
        "blocks.5:3 - 0.5*blocks.5:4",
        "--prior",
        "pixel",
        "--batch",
        "2",
        "--steps",
        "3",
        "--size",
        str(SIDE),
        "--no-progress",
        "--out",
        str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "metrics.json").read_text())["results"][0]
    assert (record["prior"], record["kind"], record["steps"]) == ("pixel", "unconstrained", 3)
    assert [Image.open(tmp_path / image["file"]).size for image in record["images"]] == [(SIDE, SIDE)] * 2


def test_compare_writes_pngs_sheet_json_and_report(compared: tuple[Path, list[str]]) -> None:
    out, priors = compared
    document = json.loads((out / "metrics.json").read_text())
    assert [c["objective"] for c in document["comparisons"]] == ["logit:1", "blocks.5:3"]
    assert "(goldfish)" in document["comparisons"][0]["title"]
    assert {"objective", "robustness", "spectral_slope"} <= set(document["metric_descriptions"])
    for comparison in document["comparisons"]:
        assert [result["prior"] for result in comparison["results"]] == priors
        for result in comparison["results"]:
            image = result["images"][0]
            assert Image.open(out / image["file"]).size == (SIDE, SIDE)
            assert image["metrics"]["objective"] == pytest.approx(image["objective_value"], rel=1e-4)
            assert len(image["trace"]) == 4
    sheet = np.asarray(Image.open(out / "contact_sheet.png").convert("RGB"))
    cells = framed_regions(sheet, KIND_FRAMES, inner=CONTACT_CELL, border=1)
    pngs = sorted(out.glob("*/*.png"))
    assert len(cells) == len(pngs) == 2 * len(priors)
    for png in pngs:
        assert min(difference(cell, Image.open(png)) for cell in cells) < 6, f"{png.name} is not on the contact sheet"


def test_report_is_self_contained(compared: tuple[Path, list[str]]) -> None:
    out, _ = compared
    page = (out / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"""(?:src|href)\s*=\s*["'](?!data:)""", page), "the report refers to outside files"
    inlined = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    pngs = sorted(out.glob("*/*.png"))
    assert len(inlined) == len(pngs)
    decoded = {Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB").tobytes() for data in inlined}
    assert decoded == {Image.open(png).convert("RGB").tobytes() for png in pngs}


def test_report_shows_every_image_in_chromium(compared: tuple[Path, list[str]], tmp_path: Path) -> None:
    out, _ = compared
    screenshot = headless_chromium.screenshot(out / "report.html", tmp_path / "report.png", height=2400)
    shown = framed_regions(np.asarray(Image.open(screenshot).convert("RGB")), KIND_FRAMES, DISPLAY_SIZE, FRAME_WIDTH)
    pngs = sorted(out.glob("*/*.png"))
    assert len(shown) == len(pngs), f"{len(shown)} framed images on screen for {len(pngs)} PNGs"
    for png in pngs:
        errors = [difference(region, Image.open(png)) for region in shown]
        assert min(errors) < 12, f"{png.name} is not shown in the report (closest region differs by {min(errors):.1f})"


def test_column_labels_fit_their_column() -> None:
    draw = ImageDraw.Draw(Image.new("RGB", (10, 10)))
    font = _font(14)
    assert column_label(draw, "fourier", "unconstrained", font, 192) == "fourier · unconstrained"
    assert column_label(draw, "distilled_imagenet", "learned prior", font, 192) == "distilled_imagenet"
    shortened = column_label(draw, "a_very_long_generator_folder_name_from_a_user", "learned prior", font, 192)
    assert shortened.endswith("…") and draw.textlength(shortened, font=font) <= 192
