"""Writing results to a folder: PNGs, the contact sheet, metrics JSON and the HTML report.

The command line uses this, and so can a script that ran its own comparisons. The layout::

    OUT/01_blocks.10_17/fourier_0.png    one PNG per prior and batch image
    OUT/contact_sheet.png                 every image side by side, labelled, with metrics
    OUT/metrics.json                      every number, with the image files they belong to
    OUT/report.html                       self-contained: open it in any browser
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from priorviz_client._contact_sheet import contact_sheet
from priorviz_client._report import html_report
from priorviz_client._results import Comparison, PriorInfo, Visualization


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
) -> WrittenFiles:
    """Saves comparisons: each image as PNG, the contact sheet, metrics.json and report.html."""
    out.mkdir(parents=True, exist_ok=True)
    titles = list(titles) if titles is not None else [comparison.objective for comparison in comparisons]
    records, written = [], []
    for number, (comparison, title) in enumerate(zip(comparisons, titles, strict=True), start=1):
        folder = out / f"{number:02d}_{slug(comparison.objective)}"
        folder.mkdir(exist_ok=True)
        result_records = []
        for result in comparison.results:
            files = [folder / f"{slug(result.prior)}_{index}.png" for index in range(len(result.images))]
            for image, file in zip(result.images, files, strict=True):
                image.save(file)
            written.extend(files)
            result_records.append(_result_record(result, files, out))
        records.append(
            {"title": title, "objective": comparison.objective, "model": comparison.model, "results": result_records}
        )

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
            comparisons, titles=titles, metric_descriptions=metric_descriptions, priors=priors, settings=settings
        ),
        encoding="utf-8",
    )
    return WrittenFiles(tuple(written), sheet, metrics, report)
