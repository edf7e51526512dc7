"""Feature inversion on the client: the Invert request, its events, its records and the files written of them.

An image travels as PNG or JPEG bytes, or as ``SET/IMAGE`` naming a photograph of an image set
the server offers (``imagenet_samples/chelsea``), so that no upload is needed for those.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from PIL import Image, ImageDraw, ImageFont

from priorviz_client._convert import _PRIOR_KINDS, _preview, _progress, decode_png
from priorviz_client._proto.priorviz.v1 import priorviz_pb2 as pb
from priorviz_client._requests import ImageInput, Priors, _prior_choices, input_image
from priorviz_client._results import Event, PriorKind, Queued, frozen_mapping

Layers = str | Iterable[str] | Mapping[str, float]
"""One layer, several (weighed equally), or layers mapped to their weights."""


class InvertOptions(TypedDict, total=False):
    """Options of an inversion; anything left out is the server's default."""

    model: str
    size: int
    """Side of the square images (default: the model's input size); the photograph is centre-cropped to it."""
    steps: int
    """Optimization steps per prior (default: each prior's own ``PriorInfo.default_steps``, at most 128)."""
    learning_rate: float
    seed: int
    preview_steps: Iterable[int]
    total_variation_weight: float
    """Weight of a total-variation penalty on the reconstruction (default 0: off)."""
    transforms: bool
    """Random pad/jitter/scale/rotate at every step (default False, so the error is what is minimized)."""
    held_out_model: str


@dataclass(frozen=True)
class Inversion:
    """One prior's reconstruction of the photograph."""

    prior: str
    prior_kind: PriorKind
    image: Image.Image
    relative_errors: tuple[float, ...]
    """Relative activation error at every step, step 1 first."""
    final_relative_error: float
    metrics: Mapping[str, float]
    render_seconds: float
    metrics_seconds: float
    steps: int = 0
    """Steps this prior ran."""
    previews: Mapping[int, Image.Image] = field(default_factory=frozen_mapping)


@dataclass(frozen=True)
class Inversions:
    """The photograph as the model saw it, and its reconstruction under every prior, same seed."""

    model: str
    target: Image.Image
    layers: Mapping[str, float]
    results: tuple[Inversion, ...]
    steps: int
    """Steps per prior: the most any prior ran when they ran their own defaults (see ``Inversion.steps``)."""
    seed: int

    def __getitem__(self, prior: str) -> Inversion:
        for result in self.results:
            if result.prior == prior:
                return result
        raise KeyError(f"no inversion under prior {prior!r}; there are {[r.prior for r in self.results]}")


def invert_request(
    image: ImageInput, layers: Layers, priors: Priors | None, options: InvertOptions
) -> pb.InvertRequest:
    unknown = set(options) - set(InvertOptions.__annotations__)
    if unknown:
        raise TypeError(f"unknown invert options {sorted(unknown)}; known: {sorted(InvertOptions.__annotations__)}")
    if isinstance(layers, str):
        layers = [layers]
    weighted = layers.items() if isinstance(layers, Mapping) else ((name, 1.0) for name in layers)
    return pb.InvertRequest(
        model=options.get("model") or "",
        image=input_image(image),
        layers=[pb.WeightedLayer(layer=name, weight=weight) for name, weight in weighted],
        priors=_prior_choices(priors),
        image_size=options.get("size") or 0,
        steps=options.get("steps") or 0,
        learning_rate=options.get("learning_rate") or 0.0,
        seed=options.get("seed", 0),
        preview_steps=list(options.get("preview_steps", ())),
        total_variation_weight=options.get("total_variation_weight") or 0.0,
        transforms=pb.TRANSFORM_MODE_STANDARD if options.get("transforms", False) else pb.TRANSFORM_MODE_NONE,
        held_out_model=options.get("held_out_model") or "",
    )


class InvertEvents:
    """Turns an Invert stream's messages into events (progress values are relative errors), keeping previews."""

    def __init__(self) -> None:
        self.previews: dict[str, dict[int, Image.Image]] = {}

    def event(self, message: pb.InvertEvent) -> Event | Inversions:
        kind = message.WhichOneof("event")
        if kind == "queued":
            return Queued(message.queued.jobs_ahead)
        if kind == "progress":
            wrapper = message.progress
            return _progress(wrapper.prior, wrapper.progress, wrapper.prior_index, wrapper.prior_count)
        if kind == "preview":
            preview = _preview(message.preview.prior, message.preview.preview)
            self.previews.setdefault(preview.prior, {})[preview.step] = preview.images[0]
            return preview
        if kind == "result":
            return self._inversions(message.result)
        raise ValueError(f"unexpected Invert event {kind!r}")

    def _inversions(self, message: pb.InvertResult) -> Inversions:
        return Inversions(
            model=message.model,
            target=decode_png(message.target),
            layers=frozen_mapping({layer.layer: layer.weight for layer in message.layers}),
            results=tuple(
                Inversion(
                    prior=result.prior,
                    prior_kind=_PRIOR_KINDS.get(result.prior_kind, PriorKind.UNSPECIFIED),
                    image=decode_png(result.image),
                    relative_errors=tuple(result.relative_errors),
                    final_relative_error=result.final_relative_error,
                    metrics=frozen_mapping(result.metrics.values),
                    render_seconds=result.render_seconds,
                    metrics_seconds=result.metrics_seconds,
                    steps=result.steps,
                    previews=frozen_mapping(self.previews.get(result.prior, {})),
                )
                for result in message.inversions
            ),
            steps=message.steps,
            seed=message.seed,
        )


# -- files: images, a contact sheet and the report -------------------------------------------

SHEET_CELL = 192
SHEET_PAD = 12
SHEET_LINE = 16


@dataclass(frozen=True)
class InversionFiles:
    images: tuple[Path, ...]
    contact_sheet: Path
    metrics: Path
    report: Path


def inversion_sheet(inversions: Inversions, cell_size: int = SHEET_CELL) -> Image.Image:
    """The photograph, then each prior's reconstruction, captioned with the prior and its final error."""
    font = _font()
    cells = [(inversions.target, "photograph", f"layers: {', '.join(inversions.layers)}")]
    for result in inversions.results:
        caption = f"{result.prior} ({result.prior_kind.value})"
        cells.append((result.image, caption, f"relative error {result.final_relative_error:.3f}"))
    width = SHEET_PAD + len(cells) * (cell_size + SHEET_PAD)
    height = SHEET_PAD + cell_size + 2 * SHEET_LINE + SHEET_PAD
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for index, (image, title, subtitle) in enumerate(cells):
        left = SHEET_PAD + index * (cell_size + SHEET_PAD)
        resample = Image.Resampling.NEAREST if max(image.size) < cell_size else Image.Resampling.LANCZOS
        sheet.paste(image.convert("RGB").resize((cell_size, cell_size), resample), (left, SHEET_PAD))
        draw.text((left, SHEET_PAD + cell_size + 2), title, fill=(20, 20, 20), font=font)
        draw.text((left, SHEET_PAD + cell_size + 2 + SHEET_LINE), subtitle, fill=(100, 100, 100), font=font)
    return sheet


def save_inversions(out: Path, inversions: Inversions, settings: Mapping[str, object]) -> InversionFiles:
    """Write ``target.png``, one ``<prior>.png`` each, ``contact_sheet.png``, ``inversion.json`` and ``report.html``."""
    out.mkdir(parents=True, exist_ok=True)
    inversions.target.save(out / "target.png")
    images = [out / "target.png"]
    for result in inversions.results:
        path = out / f"{_file_stem(result.prior)}.png"
        result.image.save(path)
        images.append(path)
    sheet = out / "contact_sheet.png"
    inversion_sheet(inversions).save(sheet)
    record = {
        "model": inversions.model,
        "layers": dict(inversions.layers),
        "steps": inversions.steps,
        "seed": inversions.seed,
        "settings": dict(settings),
        "target": "target.png",
        "inversions": [
            {
                "prior": result.prior,
                "prior_kind": result.prior_kind.value,
                "image": path.name,
                "final_relative_error": result.final_relative_error,
                "relative_errors": list(result.relative_errors),
                "steps": result.steps,
                "metrics": dict(result.metrics),
                "render_seconds": result.render_seconds,
            }
            for result, path in zip(inversions.results, images[1:], strict=True)
        ],
    }
    metrics = out / "inversion.json"
    metrics.write_text(json.dumps(record, indent=2))
    report = out / "report.html"
    report.write_text(_html(record))
    return InversionFiles(tuple(images), sheet, metrics, report)


def _file_stem(prior: str) -> str:
    return "".join(character if character.isalnum() or character in "-_" else "_" for character in prior)


def _html(record: Mapping[str, Any]) -> str:
    """A page with the photograph and each reconstruction, its final error and its metric panel."""
    layers = ", ".join(f"{name} (weight {weight:g})" for name, weight in record["layers"].items())
    figures = ['<figure><img src="target.png" width="192"><figcaption>photograph</figcaption></figure>']
    for inversion in record["inversions"]:
        rows = "".join(
            f"<tr><td>{html.escape(key)}</td><td>{value:.4g}</td></tr>" for key, value in inversion["metrics"].items()
        )
        figures.append(
            f'<figure><img src="{html.escape(inversion["image"])}" width="192">'
            f"<figcaption>{html.escape(inversion['prior'])} ({inversion['prior_kind']}): relative error "
            f"{inversion['final_relative_error']:.3f} after {inversion['steps']} steps</figcaption>"
            f"<table>{rows}</table></figure>"
        )
    return (
        "<!doctype html><meta charset='utf-8'><title>priorviz inversion</title>"
        "<style>body{font-family:sans-serif}figure{display:inline-block;vertical-align:top;margin:8px}"
        "td{font-size:12px;padding-right:8px}</style>"
        f"<h1>Feature inversion on {html.escape(record['model'])}</h1>"
        f"<p>Layers: {html.escape(layers)}; seed {record['seed']}.</p>" + "".join(figures)
    )


def _font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=13)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()
