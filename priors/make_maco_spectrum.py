"""Compute MACO's magnitude template, ``priors/data/maco_spectrum.npy``, from the embedded photographs.

MACO fixes an image's amplitude spectrum to that of natural photographs. No ImageNet can be had
offline, so the template is the mean amplitude spectrum of the photographs that ship in packages:
foolbox's 20 ImageNet photographs and scikit-image's four colour photographs (astronaut,
chelsea, coffee, rocket). Each is centre-cropped to a square, resized to ``SIZE`` pixels and
mapped into the decorrelated colour space that ``MacoImage`` draws in, so that the template
describes the channels MACO actually generates. Run ``python -m priors.make_maco_spectrum``
(scikit-image and foolbox come with ``make setup``); the result is committed, so the prior itself
needs neither.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

from priors.color import COLOR_CORRELATION_NORMALIZED

SIZE = 224
"""Side of the template: foolbox's photographs' own size; ``MacoImage`` resamples it to any size."""
SKIMAGE_PHOTOGRAPHS = ("astronaut", "chelsea", "coffee", "rocket")
OUTPUT = Path(__file__).with_name("data") / "maco_spectrum.npy"


def embedded_photographs() -> list[Image.Image]:
    """Foolbox's 20 ImageNet photographs, then scikit-image's colour photographs, as RGB images."""
    import skimage.data

    spec = importlib.util.find_spec("foolbox")  # its data only: importing foolbox needs eagerpy
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("foolbox is not installed (make setup installs it without dependencies)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    paths = sorted(folder.glob("imagenet_*.jpg"))
    if len(paths) != 20:
        raise RuntimeError(f"expected foolbox's 20 ImageNet photographs in {folder}, found {len(paths)}")
    photographs = [Image.open(path).convert("RGB") for path in paths]
    photographs += [Image.fromarray(getattr(skimage.data, name)()).convert("RGB") for name in SKIMAGE_PHOTOGRAPHS]
    return photographs


def square(photograph: Image.Image, size: int) -> np.ndarray:
    """The centred square crop, resized to ``size`` (antialiased), as (3, size, size) floats in [0, 1]."""
    side = min(photograph.size)
    left, top = (photograph.width - side) // 2, (photograph.height - side) // 2
    cropped = photograph.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(cropped, dtype=np.float64).transpose(2, 0, 1) / 255.0


def mean_amplitude_spectrum(photographs: list[np.ndarray]) -> np.ndarray:
    """Mean |rfft2| of the photographs in decorrelated colour, rows centred: (3, size, size // 2 + 1).

    Colours are taken about mid-grey (the sigmoid's midpoint), so the zero frequency's amplitude is
    how far a photograph's mean colour strays from grey. Rows are stored with the zero frequency in
    the middle (``fftshift`` on the row axis) so that resampling interpolates across it.
    """
    to_decorrelated = np.linalg.inv(COLOR_CORRELATION_NORMALIZED.double().numpy())
    amplitudes = []
    for rgb in photographs:
        channels = np.einsum("kc,chw->khw", to_decorrelated, rgb - 0.5)
        amplitudes.append(np.abs(np.fft.rfft2(channels, norm="ortho")))
    return np.fft.fftshift(np.mean(amplitudes, axis=0), axes=-2).astype(np.float32)


def main() -> None:
    spectrum = mean_amplitude_spectrum([square(photograph, SIZE) for photograph in embedded_photographs()])
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    np.save(OUTPUT, spectrum)
    print(f"wrote {OUTPUT} {spectrum.shape} {spectrum.dtype}, {OUTPUT.stat().st_size} bytes")


if __name__ == "__main__":
    main()
