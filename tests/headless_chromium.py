"""A screenshot of a local page in Debian's headless Chromium, as a person would see it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


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
