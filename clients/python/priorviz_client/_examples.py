"""Dataset examples on the client: the request, its events, and the contact sheet of a ranking.

The images are an image set the server offers (its name) or images to upload (PNG/JPEG bytes,
files, PIL images or ``SET/IMAGE`` members). The unit is an objective of one term: a channel,
neuron, direction or class (``priorviz_objectives.units`` says which, for the server too).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

from PIL import Image, ImageDraw

from priorviz_client._contact_sheet import BACKGROUND, MUTED, PAD, TEXT, _font
from priorviz_client._convert import _progress, decode_png
from priorviz_client._metric_labels import format_metric
from priorviz_client._proto.priorviz.v1 import priorviz_pb2 as pb
from priorviz_client._report import EXAMPLE_COLOUR
from priorviz_client._requests import ImageInput, input_image, set_objective
from priorviz_client._results import DatasetExamples, Event, Example, Queued, ReceptiveField
from priorviz_objectives import Objective

Images = str | Sequence[ImageInput]
"""The name of an image set the server offers (``"imagenet_samples"``), or images to upload."""


class ExamplesOptions(TypedDict, total=False):
    """Options of a dataset-examples query; anything left out is the server's default."""

    model: str
    k: int
    """Images at each end, highest and lowest (default 8; the server allows up to 32)."""
    thumbnail_size: int
    """Side of the returned photographs and crops in pixels (default 128)."""


def examples_request(unit: Objective | str, images: Images, options: ExamplesOptions) -> pb.DatasetExamplesRequest:
    unknown = set(options) - set(ExamplesOptions.__annotations__)
    if unknown:
        raise TypeError(f"unknown examples options {sorted(unknown)}; known: {sorted(ExamplesOptions.__annotations__)}")
    request = pb.DatasetExamplesRequest(
        model=options.get("model") or "", k=options.get("k") or 0, thumbnail_size=options.get("thumbnail_size") or 0
    )
    if isinstance(images, str):
        request.image_set = images
    else:
        request.images.extend(input_image(image) for image in images)
    set_objective(request, unit, "unit", "unit_text")
    return request


class ExamplesEvents:
    """Turns a DatasetExamples stream's messages into events (progress counts images) and the result."""

    def event(self, message: pb.DatasetExamplesEvent) -> Event | DatasetExamples:
        kind = message.WhichOneof("event")
        if kind == "queued":
            return Queued(message.queued.jobs_ahead)
        if kind == "progress":
            return _progress("images", message.progress)
        if kind == "result":
            return dataset_examples(message.result)
        raise ValueError(f"unexpected DatasetExamples event {kind!r}")


def dataset_examples(message: pb.DatasetExamplesResult) -> DatasetExamples:
    field = message.receptive_field
    return DatasetExamples(
        model=message.model,
        unit=message.unit_text,
        layer=message.layer,
        image_set=message.image_set,
        image_count=message.image_count,
        top=tuple(map(_example, message.top)),
        bottom=tuple(map(_example, message.bottom)),
        receptive_field=ReceptiveField(field.size, field.extent, field.image_size),
        stored=message.stored,
        unreadable=tuple(message.unreadable),
        seconds=message.seconds,
    )


def _example(message: pb.DatasetExample) -> Example:
    return Example(
        name=message.name,
        index=message.index,
        value=message.value,
        image=decode_png(message.image),
        crop=decode_png(message.crop),
        crop_value=message.crop_value,
        position=(message.x, message.y) if message.x >= 0 else None,
        box=(message.crop_left, message.crop_top, message.crop_size),
    )


# -- the contact sheet --------------------------------------------------------------------------

SHEET_CELL = 128
LINE = 14


def examples_sheet(examples: DatasetExamples, cell_size: int = SHEET_CELL) -> Image.Image:
    """Two bands, highest then lowest: each photograph with its crop's box drawn, the crop beneath, the values."""
    title_font, label_font, text_font = _font(17), _font(14), _font(12)
    columns = max(len(examples.top), len(examples.bottom), 1)
    cell_height = 2 * cell_size + 4 + 3 * LINE
    band_height = LINE + 6 + cell_height + PAD
    width = max(PAD + columns * (cell_size + PAD), 640)
    sheet = Image.new("RGB", (width, PAD + 2 * LINE + 8 + 2 * band_height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    source = examples.image_set or "uploaded images"
    draw.text((PAD, PAD), f"{examples.unit} on {examples.model}", fill=TEXT, font=title_font)
    field = examples.receptive_field
    note = f"{examples.image_count} images of {source}; crops: the {field.size}-px receptive field of {examples.layer}"
    draw.text((PAD, PAD + LINE + 6), note, fill=MUTED, font=text_font)
    top = PAD + 2 * LINE + 8
    for label, ranked in (("highest", examples.top), ("lowest", examples.bottom)):
        draw.text((PAD, top), label, fill=EXAMPLE_COLOUR, font=label_font)
        image_top = top + LINE + 6
        for column, example in enumerate(ranked):
            left = PAD + column * (cell_size + PAD)
            sheet.paste(example.image.convert("RGB").resize((cell_size, cell_size)), (left, image_top))
            box_left, box_top, side = example.box
            if side < field.image_size:
                scale = cell_size / field.image_size
                corners = (box_left * scale, box_top * scale, (box_left + side) * scale, (box_top + side) * scale)
                draw.rectangle(
                    (left + corners[0], image_top + corners[1], left + corners[2] - 1, image_top + corners[3] - 1),
                    outline=(255, 220, 0),
                    width=2,
                )
            sheet.paste(example.crop.convert("RGB").resize((cell_size, cell_size)), (left, image_top + cell_size + 4))
            lines = (example.name, f"value {format_metric(example.value)}", f"crop {format_metric(example.crop_value)}")
            for number, line in enumerate(lines):
                y = image_top + 2 * cell_size + 6 + number * LINE
                draw.text((left, y), line[:22], fill=TEXT if number == 0 else MUTED, font=text_font)
        top += band_height
    return sheet
