"""A study's report, read from its store alone: plots, an image grid, a summary table and the CSV.

    OUT/report.html   the page: what ran, the summary per prior, the plots and what they show
    OUT/plots/*.png   each plot as its own file, to put in a paper or a README
    OUT/study.csv     one row per job, batch image and metric (what ``study export`` writes)

The plots are drawn with matplotlib (``pip install 'priorviz-client[study]'``) on its
object interface, without pyplot, so nothing global changes in the caller's process.
"""

from __future__ import annotations

import html
import json
import statistics
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from PIL import Image, ImageDraw, ImageFont

from priorviz_client._metric_labels import METRIC_LABELS, format_metric, ordered_metrics
from priorviz_client._study._spec import StudySpec, parse_spec
from priorviz_client._study._store import DoneJob, StudyStore, class_name

PLOT_FRAME = (59, 74, 107)
"""The colour of the frame around each plot on the page (exact, so a screenshot can find the plots)."""
PLOT_FRAME_WIDTH = 2
DPI = 100
OBJECTIVES_PER_ROW = 20
"""Objectives side by side in one row of a per-class plot; more wrap onto further rows."""
GRID_CELL = 96
TEXT = (20, 20, 20)
MEDIAN = {"color": "black"}
"""Box plots' median line, in no prior's colour."""
PHOTOGRAPHS = "photographs"
BY_PRIOR_CAPTION = (
    "Each box spans the middle half of a prior's images over all objectives and seeds (line: median); the dots are "
    "the images."
)
HELD_OUT_CAPTION = (
    "A cheating image scores high on the target model (right) yet low on the held-out model (bottom); an image that "
    "shows the class to both networks sits top right."
)
SLOPES_CAPTION = (
    "The log-log slope of each image's power spectrum; the last column is foolbox's 20 ImageNet photographs at "
    "{size} px. Photographs fall near -2 (dashed line): flatter is grainier, steeper is smoother."
)

_STYLE = Template("""
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #141414; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; }
p, li { max-width: 62em; }
pre { background: #f4f4f4; padding: 8px; font-size: 12px; max-width: 62em; overflow-x: auto; }
table { border-collapse: collapse; font-size: 13px; }
td, th { padding: 2px 10px 2px 0; text-align: left; }
td.value { text-align: right; font-variant-numeric: tabular-nums; }
figure.plot { margin: 8px 0 20px; }
figure.plot img { display: block; border: $frame solid $colour; max-width: 100%; height: auto; }
figcaption { font-size: 13px; color: #444; margin-top: 4px; max-width: 62em; }
.licence { font-size: 12px; color: #7a4b00; }
""").substitute(frame=f"{PLOT_FRAME_WIDTH}px", colour="#{:02x}{:02x}{:02x}".format(*PLOT_FRAME))


@dataclass(frozen=True)
class Point:
    """One batch image of one finished job, with its metrics."""

    label: str
    model: str
    objective: str
    seed: int
    values: Mapping[str, float]


@dataclass(frozen=True)
class Plot:
    file: str
    title: str
    caption: str
    width: int
    height: int


class _Study:
    """The store's finished jobs arranged for plotting: priors and objectives in the spec's order."""

    def __init__(self, store: StudyStore) -> None:
        self.name = store.name()
        self.spec: StudySpec = parse_spec(store.spec_text(), source=str(store.path))
        self.jobs = store.done_jobs()
        self.failed = store.failed_jobs()
        self.status = store.status()
        self.class_names = store.class_names()
        self.metric_descriptions: dict[str, str] = store.note("metric_descriptions", {})
        self.licences: dict[str, str] = store.note("licences", {})
        self.points = [
            Point(job.label, job.model, job.objective, job.seed, values) for job in self.jobs for values in job.metrics
        ]
        done = {job.label for job in self.jobs}
        in_spec_order = dict.fromkeys([prior.label for prior in self.spec.priors] + [job.label for job in self.jobs])
        self.labels = [label for label in in_spec_order if label in done]
        self.objectives = list(dict.fromkeys((job.model, job.objective) for job in self.jobs))
        present = {key for point in self.points for key in point.values}
        self.metrics = [key for key, _, _ in ordered_metrics(dict.fromkeys(present, 0.0))]
        palette = colormaps["tab10"]
        self.colours = {label: palette(index % 10) for index, label in enumerate(self.labels)}

    def title(self, model: str, objective: str) -> str:
        """``logit:836 sunglasses``; the model too when the study has several."""
        text = f"{objective} {class_name(self.class_names.get(model, []), objective)}".strip()
        return f"{model}: {text}" if len(self.spec.models) > 1 else text

    def values(self, metric: str, label: str, objective: tuple[str, str] | None = None) -> list[float]:
        return [
            point.values[metric]
            for point in self.points
            if point.label == label
            and metric in point.values
            and (objective is None or (point.model, point.objective) == objective)
        ]


def write_report(store: StudyStore, out: Path) -> Path:
    """Writes ``report.html``, its plots and ``study.csv`` into ``out``; returns the page's path."""
    study = _Study(store)
    plots_dir = out / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    store.export_csv(out / "study.csv")
    plots: list[Plot] = []
    if study.points:
        plots = [
            _save(figure, plots_dir / f"{name}.png", title, caption) for name, figure, title, caption in _plots(study)
        ]
        plots.append(_image_grid(study, plots_dir / "image_grid.png"))
    page = out / "report.html"
    page.write_text(_page(study, plots), encoding="utf-8")
    return page


def _plots(study: _Study) -> Iterator[tuple[str, Figure, str, str]]:
    """Each plot as (file stem, figure, title, what it shows)."""
    yield "metrics_by_prior", _by_prior(study), "Every metric by prior", BY_PRIOR_CAPTION
    for metric in study.metrics:
        caption = f"One dot per seed and batch image; the bar is the mean. {study.metric_descriptions.get(metric, '')}"
        yield f"by_class_{metric}", _by_class(study, metric), f"{_label(metric)} by prior, per objective", caption
    held_out = _held_out(study)
    if held_out is not None:
        yield "held_out_vs_objective", held_out, "Held-out probability against the objective", HELD_OUT_CAPTION
    slopes = _slopes(study)
    if slopes is not None:
        figure, size = slopes
        caption = SLOPES_CAPTION.format(size=size)
        yield "spectral_slopes", figure, "Spectral slopes beside the photographs'", caption


# -- plots ------------------------------------------------------------------------------


def _label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric.replace("_", " "))


def _save(figure: Figure, path: Path, title: str, caption: str) -> Plot:
    figure.savefig(path, dpi=DPI)
    with Image.open(path) as image:
        width, height = image.size
    return Plot(f"plots/{path.name}", title, caption, width, height)


def _strip(axes: Axes, position: float, values: Sequence[float], colour: object, spread: float) -> None:
    """Dots side by side around ``position`` (a fixed, not random, jitter: the plot is the same every time)."""
    count = len(values)
    offsets = [spread * ((index + 0.5) / count - 0.5) for index in range(count)]
    axes.scatter([position + offset for offset in offsets], values, s=12, color=colour, alpha=0.8, linewidths=0)


def _by_prior(study: _Study) -> Figure:
    columns = min(4, len(study.metrics))
    rows = -(-len(study.metrics) // columns)
    figure = Figure(figsize=(3.2 * columns, 2.9 * rows), layout="constrained")
    for index, metric in enumerate(study.metrics):
        axes = figure.add_subplot(rows, columns, index + 1)
        shown = [(label, study.values(metric, label)) for label in study.labels]
        shown = [(label, values) for label, values in shown if values]
        axes.boxplot(
            [values for _, values in shown],
            positions=range(len(shown)),
            widths=0.6,
            showfliers=False,
            medianprops=MEDIAN,
        )
        for position, (label, values) in enumerate(shown):
            _strip(axes, position, values, study.colours[label], 0.4)
        axes.set_xticks(range(len(shown)), [label for label, _ in shown], rotation=20, ha="right", fontsize=8)
        axes.set_title(_label(metric), fontsize=10)
        axes.tick_params(axis="y", labelsize=8)
    return figure


def _by_class(study: _Study, metric: str) -> Figure:
    """Objectives without the metric (held-out probability on a channel) are left out."""
    measured = [o for o in study.objectives if any(study.values(metric, label, o) for label in study.labels)]
    chunks = [measured[start : start + OBJECTIVES_PER_ROW] for start in range(0, len(measured), OBJECTIVES_PER_ROW)]
    per_objective = 0.3 + 0.15 * len(study.labels)
    width = max(7.0, 1.5 + per_objective * max(len(chunk) for chunk in chunks))
    figure = Figure(figsize=(width, 3.0 * len(chunks) + 0.4), layout="constrained")
    band = 0.8 / max(len(study.labels), 1)
    for row, chunk in enumerate(chunks):
        axes = figure.add_subplot(len(chunks), 1, row + 1)
        for column, objective in enumerate(chunk):
            for offset, label in enumerate(study.labels):
                values = study.values(metric, label, objective)
                if not values:
                    continue
                position = column - 0.4 + band * (offset + 0.5)
                _strip(axes, position, values, study.colours[label], band * 0.7)
                axes.hlines(
                    statistics.fmean(values),
                    position - band * 0.4,
                    position + band * 0.4,
                    color=study.colours[label],
                    linewidth=2,
                )
        axes.set_xticks(
            range(len(chunk)), [study.title(*objective) for objective in chunk], rotation=30, ha="right", fontsize=8
        )
        axes.set_xlim(-0.6, len(chunk) - 0.4)
        axes.set_ylabel(_label(metric), fontsize=9)
        axes.grid(axis="y", alpha=0.3)
    handles = [
        Line2D([], [], marker="o", linestyle="", color=study.colours[label], label=label) for label in study.labels
    ]
    figure.legend(handles=handles, loc="outside upper center", ncols=min(len(handles), 6), fontsize=8, frameon=False)
    return figure


def _held_out(study: _Study) -> Figure | None:
    pairs = {
        label: [
            (point.values["objective"], point.values["held_out_probability"])
            for point in study.points
            if point.label == label and "objective" in point.values and "held_out_probability" in point.values
        ]
        for label in study.labels
    }
    if not any(pairs.values()):
        return None
    figure = Figure(figsize=(6.4, 4.4), layout="constrained")
    axes = figure.add_subplot()
    for label, points in pairs.items():
        if points:
            objectives, probabilities = zip(*points, strict=True)
            axes.scatter(objectives, probabilities, s=18, color=study.colours[label], label=label, alpha=0.8)
    axes.set_xlabel("objective on the target model (clean image)")
    axes.set_ylabel("class probability on the held-out model")
    axes.set_ylim(-0.03, 1.03)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return figure


def photograph_slopes(size: int) -> tuple[int, list[float]]:
    """The photographs' slopes at the tabulated size nearest ``size``, and that size."""
    table = json.loads(resources.files(__package__).joinpath("photograph_slopes.json").read_text())["slopes"]
    nearest = min((int(key) for key in table), key=lambda key: abs(key - size))
    return nearest, table[str(nearest)]


def _slopes(study: _Study) -> tuple[Figure, int] | None:
    columns = [(label, study.values("spectral_slope", label)) for label in study.labels]
    columns = [(label, values) for label, values in columns if values]
    if not columns:
        return None
    size, reference = photograph_slopes(study.spec.size)
    columns.append((PHOTOGRAPHS, reference))
    figure = Figure(figsize=(max(5.0, 1.2 * len(columns) + 1.5), 4.0), layout="constrained")
    axes = figure.add_subplot()
    axes.boxplot(
        [values for _, values in columns],
        positions=range(len(columns)),
        widths=0.6,
        showfliers=False,
        medianprops=MEDIAN,
    )
    for position, (label, values) in enumerate(columns):
        _strip(axes, position, values, study.colours.get(label, "black"), 0.4)
    axes.axhline(-2.0, color="grey", linestyle="--", linewidth=1)
    axes.set_xticks(range(len(columns)), [label for label, _ in columns], rotation=20, ha="right", fontsize=9)
    axes.set_ylabel("spectral slope (log power / log frequency)")
    axes.grid(axis="y", alpha=0.3)
    return figure, size


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _wrapped(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: int) -> list[str]:
    """``text`` broken into lines no wider than ``width`` pixels (anywhere: labels have few spaces)."""
    lines = [""]
    for character in text:
        if lines[-1] and font.getlength(lines[-1] + character) > width:
            lines.append("")
        lines[-1] += character
    return lines


def _image_grid(study: _Study, path: Path) -> Plot:
    """Objectives down, priors across: each cell the first image of the lowest seed that finished."""
    first: dict[tuple[str, str, str], DoneJob] = {}
    for job in sorted(study.jobs, key=lambda job: job.seed):
        first.setdefault((job.model, job.objective, job.label), job)
    font, pad, line = _font(12), 4, 15
    titles = [study.title(*objective) for objective in study.objectives]
    headers = [_wrapped(label, font, GRID_CELL + pad) for label in study.labels]
    left = 2 * pad + max(int(font.getlength(title)) for title in titles)
    top = pad + line * max(len(header) for header in headers)
    width = left + len(study.labels) * (GRID_CELL + pad)
    height = top + len(study.objectives) * (GRID_CELL + pad)
    grid = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(grid)
    for column, header in enumerate(headers):
        draw.multiline_text((left + column * (GRID_CELL + pad), 2), "\n".join(header), fill=TEXT, font=font, spacing=2)
    for row, ((model, objective), title) in enumerate(zip(study.objectives, titles, strict=True)):
        y = top + row * (GRID_CELL + pad)
        draw.text((pad, y + GRID_CELL // 2 - line // 2), title, fill=TEXT, font=font)
        for column, label in enumerate(study.labels):
            x = left + column * (GRID_CELL + pad)
            shown = first.get((model, objective, label))
            if shown is None or not shown.images:
                draw.rectangle((x, y, x + GRID_CELL - 1, y + GRID_CELL - 1), fill=(235, 235, 235))
                continue
            with Image.open(shown.images[0]) as image:
                resample = Image.Resampling.NEAREST if image.width < GRID_CELL else Image.Resampling.LANCZOS
                grid.paste(image.convert("RGB").resize((GRID_CELL, GRID_CELL), resample), (x, y))
    grid.save(path)
    return Plot(
        f"plots/{path.name}",
        "Images: objectives by prior",
        "For each objective (rows) and prior (columns), the first image of the lowest seed; grey: not finished.",
        width,
        height,
    )


# -- the page ---------------------------------------------------------------------------


def _mean_spread(values: Sequence[float]) -> str:
    if not values:
        return "-"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{format_metric(statistics.fmean(values))} ± {format_metric(spread)}"


def _summary_table(study: _Study) -> str:
    header = "".join(f"<th>{html.escape(_label(metric))}</th>" for metric in study.metrics)
    rows = []
    for label in study.labels:
        jobs = sum(job.label == label for job in study.jobs)
        cells = "".join(
            f'<td class="value">{_mean_spread(study.values(metric, label))}</td>' for metric in study.metrics
        )
        rows.append(f'<tr><td>{html.escape(label)}</td><td class="value">{jobs}</td>{cells}</tr>')
    return f"<table><tr><th>prior</th><th>jobs</th>{header}</tr>{''.join(rows)}</table>"


def _plot_html(plot: Plot) -> str:
    return (
        f'<figure class="plot"><h2>{html.escape(plot.title)}</h2>'
        f'<img src="{plot.file}" width="{plot.width}" height="{plot.height}" alt="{html.escape(plot.title)}">'
        f"<figcaption>{html.escape(plot.caption)}</figcaption></figure>"
    )


def _page(study: _Study, plots: Sequence[Plot]) -> str:
    status = study.status
    counts = ", ".join(f"{status[key]} {key}" for key in ("done", "failed", "pending", "running") if status[key])
    servers = ", ".join(f"{html.escape(str(target))}: {count}" for target, count in status["by_target"].items())
    failed = "".join(
        f"<tr><td>{html.escape(job.objective)}</td><td>{html.escape(job.label)}</td><td>{job.seed}</td>"
        f"<td>{html.escape(job.error)}</td></tr>"
        for job in study.failed
    )
    licences = "".join(
        f'<p class="licence">{html.escape(name)}: {html.escape(text)}</p>'
        for name, text in study.licences.items()
        if text
    )
    glossary = "".join(
        f"<dt><code>{html.escape(key)}</code></dt><dd>{html.escape(study.metric_descriptions[key])}</dd>"
        for key in study.metrics
        if key in study.metric_descriptions
    )
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>study {html.escape(study.name)}</title>'
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>Study {html.escape(study.name)}</h1>"
        f"<p>{status['total']} jobs: {counts}. Finished jobs per server: {servers or 'none'}.</p>"
        f"{licences}"
        f"<h2>Summary (mean ± sd over objectives, seeds and images)</h2>{_summary_table(study)}"
        + "".join(_plot_html(plot) for plot in plots)
        + (f"<h2>Failed jobs</h2><table>{failed}</table>" if failed else "")
        + (f"<h2>Metrics</h2><dl>{glossary}</dl>" if glossary else "")
        + f"<h2>Spec</h2><pre>{html.escape(study.spec.text)}</pre>"
        + "</body></html>\n"
    )
