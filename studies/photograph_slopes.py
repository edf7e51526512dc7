"""Write the spectral slopes of foolbox's 20 ImageNet photographs, at each image size a study may use.

A study's report draws its images' slopes beside the photographs' at the study's size, but
the client that writes it has neither torch nor the photographs; this file carries the
numbers, measured by the engine's own ``spectral_slope`` on the photographs resized as
``priorviz.photographs`` resizes them. ``tests/test_study.py`` checks them against the engine.

    .venv/bin/python -m studies.photograph_slopes
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from priorviz.photographs import imagenet_photographs
from priorviz.spectrum import spectral_slope

SIZES = (32, 48, 64, 96, 128, 160, 192, 224, 256, 320, 384, 448, 512)
OUT = Path(__file__).resolve().parents[1] / "clients/python/priorviz_client/_study/photograph_slopes.json"


def slopes(size: int) -> list[float]:
    with torch.no_grad():
        return [round(float(value), 4) for value in spectral_slope(imagenet_photographs(size)[0])]


def main() -> None:
    source = "foolbox 3.3.4 data/imagenet_*.jpg (20 photographs), bilinear resize, priorviz.spectrum.spectral_slope"
    rows = ",\n".join(f'  "{size}": {json.dumps(slopes(size))}' for size in SIZES)
    OUT.write_text(f'{{\n "source": {json.dumps(source)},\n "slopes": {{\n{rows}\n }}\n}}\n')
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
