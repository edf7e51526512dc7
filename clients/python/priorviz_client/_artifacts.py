"""Writing results to a folder: PNGs, the contact sheet, metrics JSON and the HTML report.

The command line uses this, and so can a script that ran its own comparisons. The layout::

    OUT/01_blocks.10_17/fourier_0.png    one PNG per prior and batch image
    OUT/contact_sheet.png                 every image side by side, labelled, with metrics
    OUT/metrics.json                      every number, with the image files they belong to
    OUT/report.html                       self-contained: open it in any browser
    OUT/01_blocks.10_17/examples/top_01_rocket.png, ..._crop.png    with dataset examples

Dataset examples alone (``priorviz examples``) go flat into OUT: ``top_01_NAME.png`` and its
``_crop.png``, ``bottom_...``, ``contact_sheet.png``, ``examples.json`` and ``report.html``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from priorviz_client._contact_sheet import contact_sheet
from priorviz_client._examples import examples_sheet
from priorviz_client._report import examples_report, html_report
from priorviz_client._results import Comparison, DatasetExamples, PriorInfo, Visualization


@dataclass(frozen=True)
class WrittenFiles:
    images: tuple[Path, ...]
    contact_sheet: Path | None
    metrics: Path
    report: Path | None


def slug(text: str, limit: int = 48) -> str:
    """A file-name-safe version of an objective's text."""
    cleaned = re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_")
    return cleaned[:limit] or "objective"


def _result_record(result: Visualization, files: Sequence[Path], root: Path) -> dict[str, object]:
    return {
        "prior": result.prior,
        "kind": result.prior_kind.value,
        "model": result.model,
        "objective": result.objective,
        "steps": result.steps,
        "seed": result.seed,
        "render_seconds": result.render_seconds,
        "metrics_seconds": result.metrics_seconds,
        "batch_metrics": dict(result.batch_metrics),
        "images": [
            {
                "file": file.relative_to(root).as_posix(),
                "objective_value": result.objective_values[index] if index < len(result.objective_values) else None,
                "metrics": dict(result.metrics[index]) if index < len(result.metrics) else {},
                "trace": list(result.traces[index]) if index < len(result.traces) else [],
            }
            for index, file in enumerate(files)
        ],
    }


def save_results(
    out: Path,
    results: Sequence[Visualization],
    *,
    settings: Mapping[str, object] | None = None,
) -> WrittenFiles:
    """Saves single visualizations (no comparison): their PNGs and metrics.json."""
    out.mkdir(parents=True, exist_ok=True)
    records, written = [], []
    for result in results:
        files = [out / f"{slug(result.prior)}_{index}.png" for index in range(len(result.images))]
        for image, file in zip(result.images, files, strict=True):
            image.save(file)
        written.extend(files)
        records.append(_result_record(result, files, out))
    metrics = out / "metrics.json"
    metrics.write_text(json.dumps({"settings": dict(settings or {}), "results": records}, indent=2) + "\n")
    return WrittenFiles(tuple(written), None, metrics, None)


def save_comparisons(
    out: Path,
    comparisons: Sequence[Comparison],
    *,
    titles: Sequence[str] | None = None,
    metric_descriptions: Mapping[str, str] | None = None,
    priors: Sequence[PriorInfo] = (),
    settings: Mapping[str, object] | None = None,
    examples: Sequence[DatasetExamples | None] | None = None,
) -> WrittenFiles:
    """Saves comparisons: each image as PNG, the contact sheet, metrics.json and report.html.

    ``examples`` holds each comparison's dataset examples (None where there are none): their images
    go to the comparison's ``examples/`` folder, their numbers to metrics.json, and they are shown in
    the report beside the visualizations.
    """
    out.mkdir(parents=True, exist_ok=True)
    titles = list(titles) if titles is not None else [comparison.objective for comparison in comparisons]
    examples = list(examples) if examples is not None else [None] * len(comparisons)
    records, written = [], []
    for number, (comparison, title, ranked) in enumerate(zip(comparisons, titles, examples, strict=True), start=1):
        folder = out / f"{number:02d}_{slug(comparison.objective)}"
        folder.mkdir(exist_ok=True)
        result_records = []
        for result in comparison.results:
            files = [folder / f"{slug(result.prior)}_{index}.png" for index in range(len(result.images))]
            for image, file in zip(result.images, files, strict=True):
                image.save(file)
            written.extend(files)
            result_records.append(_result_record(result, files, out))
        record: dict[str, object] = {
            "title": title,
            "objective": comparison.objective,
            "model": comparison.model,
            "results": result_records,
        }
        if ranked is not None:
            images = save_example_images(folder / "examples", ranked)
            for entry in images:
                entry["image"], entry["crop"] = (f"{folder.name}/examples/{entry[key]}" for key in ("image", "crop"))
            record["dataset_examples"] = examples_record(ranked, images)
        records.append(record)

    sheet = out / "contact_sheet.png"
    contact_sheet(comparisons, titles=titles).save(sheet)
    metrics = out / "metrics.json"
    document = {
        "settings": dict(settings or {}),
        "metric_descriptions": dict(metric_descriptions or {}),
        "comparisons": records,
    }
    metrics.write_text(json.dumps(document, indent=2) + "\n")
    report = out / "report.html"
    report.write_text(
        html_report(
            comparisons,
            titles=titles,
            metric_descriptions=metric_descriptions,
            priors=priors,
            settings=settings,
            examples=examples,
        ),
        encoding="utf-8",
    )
    return WrittenFiles(tuple(written), sheet, metrics, report)


# -- dataset examples ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ExamplesFiles:
    images: tuple[Path, ...]
    """Each example's photograph and crop."""
    contact_sheet: Path
    record: Path
    report: Path


def save_example_images(folder: Path, examples: DatasetExamples) -> list[dict[str, object]]:
    """Write ``top_01_NAME.png`` and ``top_01_NAME_crop.png`` (and ``bottom_...``) into ``folder``; their records."""
    folder.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, object]] = []
    for end, ranked in (("top", examples.top), ("bottom", examples.bottom)):
        for rank, example in enumerate(ranked, start=1):
            stem = f"{end}_{rank:02d}_{slug(example.name)}"
            example.image.save(folder / f"{stem}.png")
            example.crop.save(folder / f"{stem}_crop.png")
            records.append(
                {
                    "end": end,
                    "rank": rank,
                    "name": example.name,
                    "index": example.index,
                    "value": example.value,
                    "crop_value": example.crop_value,
                    "position": list(example.position) if example.position is not None else None,
                    "crop_box": list(example.box),
                    "image": f"{stem}.png",
                    "crop": f"{stem}_crop.png",
                }
            )
    return records


def examples_record(examples: DatasetExamples, images: list[dict[str, object]]) -> dict[str, object]:
    """Every number of a ranking, with the files of its images."""
    field = examples.receptive_field
    return {
        "model": examples.model,
        "unit": examples.unit,
        "layer": examples.layer,
        "image_set": examples.image_set,
        "image_count": examples.image_count,
        "receptive_field": {"size": field.size, "extent": field.extent, "image_size": field.image_size},
        "stored": examples.stored,
        "unreadable": list(examples.unreadable),
        "examples": images,
    }


def save_examples(out: Path, examples: DatasetExamples, settings: Mapping[str, object]) -> ExamplesFiles:
    """Write each photograph and crop, ``contact_sheet.png``, ``examples.json`` and ``report.html`` into ``out``."""
    records = save_example_images(out, examples)
    sheet = out / "contact_sheet.png"
    examples_sheet(examples).save(sheet)
    record = out / "examples.json"
    record.write_text(json.dumps({"settings": dict(settings), **examples_record(examples, records)}, indent=2) + "\n")
    report = out / "report.html"
    report.write_text(examples_report(examples, settings), encoding="utf-8")
    images = tuple(out / str(entry[key]) for entry in records for key in ("image", "crop"))
    return ExamplesFiles(images, sheet, record, report)
