"""One PNG that shows a comparison at a glance: each prior's image side by side, with numbers.

Each objective gets a band with its title; each batch image gets a row; each prior a
column, unconstrained first, labelled with its name and kind, and the image's metrics
printed under it. The images are scaled to one cell size (nearest-neighbour when enlarged,
so a 64-pixel generator image shows its real pixels rather than an invented smoothness).
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

from priorviz_client._metric_labels import format_metric, ordered_metrics
from priorviz_client._results import Comparison, PriorKind, Visualization

BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)
MUTED = (100, 100, 100)
KIND_COLOURS = {PriorKind.UNCONSTRAINED: (180, 40, 40), PriorKind.LEARNED: (30, 120, 60)}
KIND_NAMES = {PriorKind.UNCONSTRAINED: "unconstrained", PriorKind.LEARNED: "learned prior"}
PAD = 12
LINE = 16
TITLE_LINE = 22


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def ordered_results(comparison: Comparison) -> tuple[Visualization, ...]:
    """Unconstrained results first, then learned ones, each group in request order."""
    return comparison.unconstrained + tuple(r for r in comparison.results if not r.is_unconstrained)


def _fit(image: Image.Image, side: int) -> Image.Image:
    resample = Image.Resampling.NEAREST if max(image.size) < side else Image.Resampling.LANCZOS
    return image.convert("RGB").resize((side, side), resample)


def column_label(
    draw: ImageDraw.ImageDraw, prior: str, kind: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: int
) -> str:
    """ "prior · kind" when it fits the column, else the prior alone (the frame's colour still says
    the kind), shortened with an ellipsis if even that is too wide: labels never run into the next."""
    for label in (f"{prior} · {kind}" if kind else prior, prior):
        if draw.textlength(label, font=font) <= width:
            return label
    while prior and draw.textlength(prior + "…", font=font) > width:
        prior = prior[:-1]
    return prior + "…"


def _metric_lines(result: Visualization, index: int) -> list[str]:
    values = dict(result.metrics[index]) if index < len(result.metrics) else {}
    if "objective" not in values and index < len(result.objective_values):
        values["objective"] = result.objective_values[index]
    return [f"{label}: {format_metric(value)}" for _, label, value in ordered_metrics(values)]


def contact_sheet(
    comparisons: Comparison | Sequence[Comparison],
    *,
    titles: Sequence[str] | None = None,
    cell_size: int = 192,
) -> Image.Image:
    """The contact sheet of one or several comparisons; ``titles`` default to the objectives' text."""
    if isinstance(comparisons, Comparison):
        comparisons = [comparisons]
    if not comparisons:
        raise ValueError("a contact sheet needs at least one comparison")
    titles = list(titles) if titles is not None else [f"{c.objective}  ({c.model})" for c in comparisons]
    if len(titles) != len(comparisons):
        raise ValueError(f"{len(titles)} titles for {len(comparisons)} comparisons")

    label_font, text_font, title_font = _font(14), _font(12), _font(17)
    columns = max(len(c.results) for c in comparisons)
    metric_rows = max(
        len(_metric_lines(result, index))
        for c in comparisons
        for result in c.results
        for index in range(len(result.images))
    )
    cell_height = LINE + 4 + cell_size + 4 + metric_rows * LINE
    width = PAD + columns * (cell_size + PAD)
    band_heights = [TITLE_LINE + PAD + max(len(r.images) for r in c.results) * (cell_height + PAD) for c in comparisons]
    sheet = Image.new("RGB", (width, PAD + sum(band_heights)), BACKGROUND)
    draw = ImageDraw.Draw(sheet)

    top = PAD
    for comparison, title, band_height in zip(comparisons, titles, band_heights, strict=True):
        draw.text((PAD, top), title, fill=TEXT, font=title_font)
        row_top = top + TITLE_LINE + PAD
        for index in range(max(len(r.images) for r in comparison.results)):
            for column, result in enumerate(ordered_results(comparison)):
                if index >= len(result.images):
                    continue
                left = PAD + column * (cell_size + PAD)
                colour = KIND_COLOURS.get(result.prior_kind, MUTED)
                kind = KIND_NAMES.get(result.prior_kind, "")
                label = column_label(draw, result.prior, kind, label_font, cell_size)
                draw.text((left, row_top), label, fill=colour, font=label_font)
                image_top = row_top + LINE + 4
                sheet.paste(_fit(result.images[index], cell_size), (left, image_top))
                draw.rectangle(
                    (left - 1, image_top - 1, left + cell_size, image_top + cell_size), outline=colour, width=1
                )
                for line_number, line in enumerate(_metric_lines(result, index)):
                    y = image_top + cell_size + 4 + line_number * LINE
                    draw.text((left, y), line, fill=TEXT if line_number == 0 else MUTED, font=text_font)
            row_top += cell_height + PAD
        top += band_height
    return sheet
