"""Images that come from outside: uploaded bytes and named image sets, read defensively.

Uploaded images are PNG or JPEG only, and their pixel count is read from the header and
checked before anything is decoded, so that a small file declaring a huge image (a
decompression bomb) costs nothing. An image set is a name for a folder of photographs; a
member is looked up by its file stem and never by a path, so no request can leave the folder.
The embedded set ``imagenet_samples`` is foolbox's 20 labelled ImageNet photographs plus
scikit-image's colour photographs.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL
import torch
from PIL import Image
from torch import Tensor

from priorviz.errors import InvalidInputError, NotFoundError, UnavailableError, clip_text
from priorviz.photographs import foolbox_folder

MAX_INPUT_PIXELS = 4096 * 4096
"""Default cap on an input image's width x height."""
INPUT_FORMATS = ("PNG", "JPEG")
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
EMBEDDED_SET = "imagenet_samples"
SKIMAGE_PHOTOGRAPHS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "hubble_deep_field")
"""scikit-image's bundled colour photographs (the others are grey, synthetic or micrographs)."""


def decode_image(data: bytes, *, field: str, max_pixels: int = MAX_INPUT_PIXELS) -> Tensor:
    """PNG or JPEG bytes as a (3, H, W) float tensor in [0, 1]; ``InvalidInputError`` at ``field`` otherwise."""
    if not data:
        raise InvalidInputError("the image is empty", field=field)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            picture = Image.open(io.BytesIO(data), formats=INPUT_FORMATS)
            width, height = picture.size
            if width * height > max_pixels:
                raise InvalidInputError(
                    f"the image is {width}x{height} pixels; at most {max_pixels} pixels are accepted", field=field
                )
            picture.load()
            rgb = picture.convert("RGB")
    except InvalidInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:  # Pillow's own, larger cap
        raise InvalidInputError(f"the image is too large: {clip_text(str(error))}", field=field) from None
    except (PIL.UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise InvalidInputError(f"not a readable PNG or JPEG image: {clip_text(str(error))}", field=field) from None
    return to_tensor(rgb)


def to_tensor(picture: Image.Image) -> Tensor:
    """An RGB PIL image as (3, H, W) in [0, 1]."""
    return torch.from_numpy(np.asarray(picture, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0


FolderSource = tuple[Path, Callable[[str], bool] | None]
"""A resolved folder, and which file stems of it belong to a set (None: all)."""


@dataclass(frozen=True)
class ImageSet:
    """Named photographs: stem -> file, only ever files listed in the set's folders.

    The folders are listed afresh at every look-up, so that a file added to or removed from a
    folder while the server runs is seen (the activation store notices changed contents).
    """

    name: str
    sources: tuple[FolderSource, ...]

    @classmethod
    def from_folders(cls, name: str, folders: list[Path], keep: Callable[[str], bool] | None = None) -> ImageSet:
        """The image files directly inside ``folders`` whose stem ``keep`` accepts (links leading out are left out)."""
        return cls(name, tuple((folder.resolve(), keep) for folder in folders))

    @property
    def files(self) -> dict[str, Path]:
        """The members now, in name order; the first folder holding a stem gives its file."""
        files: dict[str, Path] = {}
        for root, keep in self.sources:
            try:
                listing = sorted(root.iterdir())
            except OSError:  # a folder removed or unreadable since the server started holds nothing now
                continue
            for path in listing:
                inside = path.resolve().parent == root
                is_image = inside and path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
                if is_image and (keep is None or keep(path.stem)):
                    files.setdefault(path.stem, path)
        return dict(sorted(files.items()))

    def load(self, member: str, *, field: str, max_pixels: int = MAX_INPUT_PIXELS) -> Tensor:
        """The member ``member`` (a file stem) as (3, H, W) in [0, 1]."""
        files = self.files
        if member not in files:
            listing = ", ".join(files)
            raise NotFoundError(
                f"image set {self.name!r} has no image {clip_text(member)!r}; it has {clip_text(listing)}", field=field
            )
        return decode_image(files[member].read_bytes(), field=field, max_pixels=max_pixels)


def embedded_image_set() -> ImageSet:
    """``imagenet_samples``: foolbox's ImageNet photographs (``imagenet_03_62``: label 62) and scikit-image's."""
    try:
        import skimage.data
    except ImportError as error:
        raise UnavailableError("the embedded image set needs scikit-image") from error
    skimage_folder = Path(skimage.data.__file__).parent
    foolbox_set = ImageSet.from_folders(EMBEDDED_SET, [foolbox_folder()], lambda stem: stem.startswith("imagenet_"))
    skimage_set = ImageSet.from_folders(EMBEDDED_SET, [skimage_folder], SKIMAGE_PHOTOGRAPHS.__contains__)
    return ImageSet(EMBEDDED_SET, foolbox_set.sources + skimage_set.sources)


def load_named_image(
    reference: str, image_sets: Mapping[str, ImageSet], *, field: str, max_pixels: int = MAX_INPUT_PIXELS
) -> Tensor:
    """``SET/MEMBER`` (e.g. ``imagenet_samples/chelsea``) from the offered ``image_sets``."""
    set_name, separator, member = reference.partition("/")
    if not separator or not member:
        raise InvalidInputError(f"expected SET/IMAGE, got {clip_text(reference)!r}", field=field)
    return offered_set(set_name, image_sets, field=field).load(member, field=field, max_pixels=max_pixels)


def offered_set(name: str, image_sets: Mapping[str, ImageSet], *, field: str) -> ImageSet:
    """The offered image set called ``name``; ``NotFoundError`` at ``field`` listing the offered ones otherwise."""
    if name not in image_sets:
        raise NotFoundError(
            f"no image set {clip_text(name)!r}; offered: {', '.join(sorted(image_sets)) or 'none'}", field=field
        )
    return image_sets[name]
