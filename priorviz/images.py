"""A labelled grid of images: rows are objectives, columns are priors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

LABEL_HEIGHT = 30
MARGIN = 6


@dataclass(frozen=True)
class Cell:
    image: Tensor
    """(3, H, W) in [0, 1]."""
    caption: str


def to_pil(image: Tensor) -> Image.Image:
    """A (3, H, W) tensor in [0, 1] as an 8-bit RGB image (NaN drawn black, values clipped)."""
    array = image.detach().float().cpu().nan_to_num(0.0).clamp(0, 1).mul(255).round().byte()
    return Image.fromarray(np.ascontiguousarray(array.permute(1, 2, 0).numpy()), "RGB")


def contact_sheet(
    rows: Sequence[Sequence[Cell]], row_titles: Sequence[str], column_titles: Sequence[str]
) -> Image.Image:
    """Lay cells out in a grid with a title above each column and before each row."""
    font = ImageFont.load_default()
    side = max(cell.image.shape[-1] for row in rows for cell in row)
    title_width = max(140, 7 * max((len(title) for title in row_titles), default=0))
    width = title_width + len(column_titles) * (side + MARGIN) + MARGIN
    height = LABEL_HEIGHT + len(rows) * (side + LABEL_HEIGHT + MARGIN) + MARGIN
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    for column, title in enumerate(column_titles):
        draw.text((title_width + column * (side + MARGIN), 8), title, fill="black", font=font)
    for row_index, (row, title) in enumerate(zip(rows, row_titles, strict=True)):
        top = LABEL_HEIGHT + row_index * (side + LABEL_HEIGHT + MARGIN)
        draw.text((MARGIN, top + side // 2), title, fill="black", font=font)
        for column, cell in enumerate(row):
            left = title_width + column * (side + MARGIN)
            sheet.paste(to_pil(cell.image).resize((side, side), Image.Resampling.BILINEAR), (left, top))
            for line_index, line in enumerate(cell.caption.splitlines()[:2]):
                draw.text((left, top + side + 2 + 12 * line_index), line, fill="black", font=font)
    return sheet
