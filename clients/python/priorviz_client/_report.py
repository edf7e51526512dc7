"""A self-contained HTML report of comparisons: one file to open, mail or archive.

Images are inlined as base64 PNG data URIs, the objective's trace is an inline SVG, and the
style sheet is embedded, so the page needs no network and no companion files. Each image
sits in a frame of its prior kind's colour (red: unconstrained, green: learned) with its
metrics in a table beneath; a glossary explains each metric. When dataset examples come
with a comparison, the photographs where the objective's unit is highest and lowest follow
its visualizations, each beside its most activating crop, in blue frames.
"""

from __future__ import annotations

import base64
import html
import io
import string
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from PIL import Image

from priorviz_client._contact_sheet import KIND_COLOURS, KIND_NAMES, MUTED, ordered_results
from priorviz_client._metric_labels import format_metric, ordered_metrics
from priorviz_client._results import Comparison, DatasetExamples, Example, PriorInfo, PriorKind, Visualization

DISPLAY_SIZE = 224
"""CSS pixels per image: the default model's input side."""
FRAME_WIDTH = 3
"""CSS pixels of the kind-coloured frame around each image."""
EXAMPLE_SIZE = 112
"""CSS pixels per dataset example's photograph and crop."""
EXAMPLE_COLOUR = (40, 90, 200)
"""The frame of a dataset example's photograph and crop."""

_STYLE = string.Template("""
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #141414; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; font-family: ui-monospace, monospace; }
p.lead { max-width: 60em; color: #444; }
table.settings td { padding: 1px 12px 1px 0; font-size: 13px; }
.row { display: flex; gap: 16px; flex-wrap: wrap; align-items: flex-start; margin-bottom: 12px; }
figure { margin: 0; width: ${framed}px; }
figure img { display: block; width: ${size}px; height: ${size}px; border: ${frame}px solid; }
figure img.small { image-rendering: pixelated; }
figcaption { font-size: 13px; font-weight: 600; margin-bottom: 4px; }
table.metrics { font-size: 12px; border-collapse: collapse; width: 100%; margin-top: 4px; }
table.metrics td { padding: 1px 0; }
table.metrics td.value { text-align: right; font-variant-numeric: tabular-nums; }
svg.trace { display: block; margin-top: 4px; }
.trace-label { font-size: 11px; color: #666; }
dl.glossary dt { font-family: ui-monospace, monospace; font-size: 13px; margin-top: 6px; }
dl.glossary dd { margin-left: 16px; font-size: 13px; color: #444; }
.licence { font-size: 12px; color: #7a4b00; }
section.examples h3 { font-size: 14px; margin: 12px 0 6px; font-weight: 600; color: ${example_colour}; }
.examples .row { gap: 10px; }
.examples .label { width: 64px; font-size: 12px; color: #444; }
figure.example { width: auto; }
figure.example img { display: inline-block; width: ${example}px; height: ${example}px; margin-right: 2px;
                     border: ${frame}px solid ${example_colour}; }
figure.example figcaption { font-size: 11px; font-weight: 400; margin: 2px 0 0; max-width: ${example_pair}px; }
""").substitute(
    size=DISPLAY_SIZE,
    frame=FRAME_WIDTH,
    framed=DISPLAY_SIZE + 2 * FRAME_WIDTH,
    example=EXAMPLE_SIZE,
    example_pair=2 * (EXAMPLE_SIZE + 2 * FRAME_WIDTH) + 4,
    example_colour="#{:02x}{:02x}{:02x}".format(*EXAMPLE_COLOUR),
)


def _rgb(colour: tuple[int, int, int]) -> str:
    red, green, blue = colour
    return f"#{red:02x}{green:02x}{blue:02x}"


def png_data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _trace_svg(values: Sequence[float], colour: str, width: int = DISPLAY_SIZE, height: int = 40) -> str:
    """The objective per step as a sparkline, so a flat or collapsing run shows at a glance."""
    if len(values) < 2:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    points = " ".join(
        f"{index * (width - 1) / (len(values) - 1):.1f},{height - 1 - (value - low) * (height - 2) / span:.1f}"
        for index, value in enumerate(values)
    )
    label = f"objective per step: {format_metric(values[0])} to {format_metric(values[-1])}"
    return (
        f'<svg class="trace" width="{width}" height="{height}" role="img" aria-label="{html.escape(label)}">'
        f"<title>{html.escape(label)}</title>"
        f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{points}"/></svg>'
        f'<div class="trace-label">{html.escape(label)}</div>'
    )


def _figure(result: Visualization, index: int) -> str:
    colour = _rgb(KIND_COLOURS.get(result.prior_kind, MUTED))
    kind = KIND_NAMES.get(result.prior_kind, "")
    image = result.images[index]
    small = ' class="small"' if max(image.size) < DISPLAY_SIZE else ""
    values = dict(result.metrics[index]) if index < len(result.metrics) else {}
    if "objective" not in values and index < len(result.objective_values):
        values["objective"] = result.objective_values[index]
    rows = "".join(
        f'<tr><td title="{html.escape(key)}">{html.escape(label)}</td>'
        f'<td class="value">{format_metric(value)}</td></tr>'
        for key, label, value in ordered_metrics(values)
    )
    trace = _trace_svg(result.traces[index], colour) if index < len(result.traces) else ""
    alt = f"{result.prior} ({kind}) image {index} for {result.objective}"
    return (
        f'<figure data-prior="{html.escape(result.prior)}" data-kind="{result.prior_kind.value}">'
        f'<figcaption style="color:{colour}">{html.escape(result.prior)} · {html.escape(kind)}</figcaption>'
        f'<img{small} src="{png_data_uri(image)}" alt="{html.escape(alt)}" style="border-color:{colour}"'
        f' width="{DISPLAY_SIZE}" height="{DISPLAY_SIZE}">'
        f"{trace}"
        f'<table class="metrics">{rows}</table>'
        "</figure>"
    )


def _example_figure(example: Example, unit: str) -> str:
    where = f" at {example.position}" if example.position is not None else ""
    return (
        f'<figure class="example" data-name="{html.escape(example.name)}">'
        f'<img src="{png_data_uri(example.image)}" alt="{html.escape(example.name)}, value {example.value:.4g}"'
        f' width="{EXAMPLE_SIZE}" height="{EXAMPLE_SIZE}">'
        f'<img src="{png_data_uri(example.crop)}" alt="crop of {html.escape(example.name)} where {html.escape(unit)}'
        f' is highest" width="{EXAMPLE_SIZE}" height="{EXAMPLE_SIZE}">'
        f"<figcaption>{html.escape(example.name)}: {format_metric(example.value)}; "
        f"crop {format_metric(example.crop_value)}{html.escape(where)}</figcaption></figure>"
    )


def examples_section(examples: DatasetExamples) -> str:
    """The photographs where the unit is highest, then lowest, each beside its most activating crop."""
    source = examples.image_set or "uploaded images"
    rows = "".join(
        f'<div class="row"><div class="label">{label}</div>'
        + "".join(_example_figure(example, examples.unit) for example in ranked)
        + "</div>"
        for label, ranked in (("highest", examples.top), ("lowest", examples.bottom))
    )
    return (
        f'<section class="examples"><h3>Dataset examples of {html.escape(examples.unit)} in '
        f"{html.escape(source)} ({examples.image_count} images; crops: the {examples.receptive_field.size}-pixel "
        f"receptive field of {html.escape(examples.layer)} around the highest position)</h3>{rows}</section>"
    )


def _section(comparison: Comparison, title: str, examples: DatasetExamples | None = None) -> str:
    results = ordered_results(comparison)
    rows = []
    for index in range(max(len(result.images) for result in results)):
        figures = "".join(_figure(result, index) for result in results if index < len(result.images))
        rows.append(f'<div class="row">{figures}</div>')
    batch = [
        f"{html.escape(result.prior)}: "
        + ", ".join(f"{label} {format_metric(value)}" for _, label, value in ordered_metrics(result.batch_metrics))
        for result in results
        if result.batch_metrics
    ]
    batch_line = f'<p class="batch">Batch metrics — {"; ".join(batch)}</p>' if batch else ""
    timing = ", ".join(
        f"{html.escape(result.prior)} {result.steps} steps in {result.render_seconds:.1f} s" for result in results
    )
    shown_examples = examples_section(examples) if examples is not None else ""
    return (
        f"<section><h2>{html.escape(title)}</h2>{''.join(rows)}{batch_line}"
        f'<p class="timing" style="font-size:12px;color:#666">{timing}; seed {results[0].seed}</p>'
        f"{shown_examples}</section>"
    )


def _lead() -> str:
    unconstrained = _rgb(KIND_COLOURS[PriorKind.UNCONSTRAINED])
    learned = _rgb(KIND_COLOURS[PriorKind.LEARNED])
    return (
        f'<p class="lead">For each objective, the <b style="color:{unconstrained}">unconstrained</b> image was'
        " optimized freely in Fourier or pixel space, where the optimizer may find patterns that drive the network"
        f' without looking like anything; the <b style="color:{learned}">learned-prior</b> images were optimized in'
        " the latent space of a generator, so they can only be what it can draw. The numbers below each image say"
        " how they differ.</p>"
    )


def html_report(
    comparisons: Comparison | Sequence[Comparison],
    *,
    titles: Sequence[str] | None = None,
    metric_descriptions: Mapping[str, str] | None = None,
    priors: Sequence[PriorInfo] = (),
    settings: Mapping[str, object] | None = None,
    heading: str = "priorviz: unconstrained versus prior-constrained feature visualizations",
    examples: Sequence[DatasetExamples | None] | None = None,
) -> str:
    """The report as one HTML string; ``priors`` supplies licence notes, ``settings`` a table of the run's settings,
    ``examples`` each comparison's dataset examples (None where there are none)."""
    if isinstance(comparisons, Comparison):
        comparisons = [comparisons]
    if not comparisons:
        raise ValueError("a report needs at least one comparison")
    titles = list(titles) if titles is not None else [c.objective for c in comparisons]
    if len(titles) != len(comparisons):
        raise ValueError(f"{len(titles)} titles for {len(comparisons)} comparisons")
    examples = list(examples) if examples is not None else [None] * len(comparisons)
    if len(examples) != len(comparisons):
        raise ValueError(f"{len(examples)} dataset examples for {len(comparisons)} comparisons")

    shown = {result.prior for comparison in comparisons for result in comparison.results}
    licences = "".join(
        f'<p class="licence">{html.escape(info.name)}: {html.escape(info.licence)}</p>'
        for info in priors
        if info.name in shown and info.licence
    )
    glossary = "".join(
        f"<dt>{html.escape(key)}</dt><dd>{html.escape(text)}</dd>" for key, text in (metric_descriptions or {}).items()
    )
    return _page(
        heading,
        _lead()
        + _settings_table(settings)
        + licences
        + "".join(
            _section(comparison, title, shown_examples)
            for comparison, title, shown_examples in zip(comparisons, titles, examples, strict=True)
        )
        + (f'<h2>Metrics</h2><dl class="glossary">{glossary}</dl>' if glossary else ""),
    )


def examples_report(examples: DatasetExamples, settings: Mapping[str, object] | None = None) -> str:
    """One unit's dataset examples as a page, self-contained like the comparison report."""
    heading = f"priorviz: dataset examples of {examples.unit} on {examples.model}"
    return _page(heading, _settings_table(settings) + examples_section(examples))


def _settings_table(settings: Mapping[str, object] | None) -> str:
    """The run's settings, and when the page was made."""
    rows = "".join(
        f"<tr><td>{html.escape(str(key))}</td><td>{html.escape(str(value))}</td></tr>"
        for key, value in (settings or {}).items()
    )
    created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f'<table class="settings">{rows}<tr><td>created</td><td>{created}</td></tr></table>'


def _page(heading: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(heading)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(heading)}</h1>{body}</body></html>\n"
    )
