"""A screenshot of a local page in Debian's headless Chromium, as a person would see it, and how to find the
images a page shows in it: inside frames of a known colour."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage


def screenshot(page: Path, out: Path, *, height: int, width: int = 1400) -> Path:
    """Render ``page`` (an HTML file) to the PNG ``out``; skips the test where Chromium is absent.

    The flags keep Chromium off the network (this machine has none) and give it a fresh profile.
    """
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("headless Chromium is not installed (.ci/run installs Debian's chromium)")
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={out.parent / (out.stem + '-profile')}",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            f"--window-size={width},{height}",
            f"--screenshot={out}",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=90,
        check=True,
    )
    return out


def framed_regions(
    picture: np.ndarray, colours: Iterable[tuple[int, int, int]], inner: int, border: int
) -> list[np.ndarray]:
    """The insides of image frames: rectangles drawn exactly in one of ``colours`` around ``inner`` pixels."""
    regions = []
    side = inner + 2 * border
    for colour in colours:
        mask = np.all(picture == colour, axis=-1)
        labels, _ = ndimage.label(mask)
        for rows, columns in ndimage.find_objects(labels):
            if abs(rows.stop - rows.start - side) <= 1 and abs(columns.stop - columns.start - side) <= 1:
                regions.append(
                    picture[rows.start + border : rows.stop - border, columns.start + border : columns.stop - border]
                )
    return regions


def difference(region: np.ndarray, image: Image.Image, side: int = 32) -> float:
    """Mean absolute difference (0..255) after both are reduced to ``side`` x ``side``."""
    shown = Image.fromarray(np.ascontiguousarray(region)).resize((side, side), Image.Resampling.BOX)
    source = image.convert("RGB").resize((side, side), Image.Resampling.BOX)
    return float(np.abs(np.asarray(shown, dtype=float) - np.asarray(source, dtype=float)).mean())
