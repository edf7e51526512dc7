"""First study: how much do Fourier visualizations cheat, next to a statistics prior and a face GAN?

For a handful of ImageNet classes the face GAN can plausibly draw (sunglasses, cowboy hat,
ski mask, wig, lipstick) and a few middle-layer channels of EfficientNet-Lite0, render
the same objectives under three setups:

- ``fourier``: the unconstrained space (1/f-scaled spectrum, decorrelated colour);
- ``fourier+statistics``: the same space with DeepInversion's batch-norm statistics prior
  added to what is maximized (``priorviz.statistics.BatchNormStatisticsPrior``);
- ``gan``: the latent of the embedded DCGAN face generator (``gan_faces``).

Each (setup, objective group, seed) is one render with one batch element per objective
(``per_batch``), measured with ``priorviz.metrics.measure`` (held-out model: Lite1). Every
render's images (PNG) and metrics (JSON) go to ``--out``/runs and are reused when the
script runs again, so the table and figures can be rebuilt without rendering anything.

    python -m studies.first_study --seeds 0 1 --steps 128 --size 128
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from priors import gan
from priors.base import get_prior
from priorviz.images import to_pil
from priorviz.metrics import METRIC_DESCRIPTIONS, batch_diversity, measure
from priorviz.models import TargetModel, get_model
from priorviz.objectives import Channel, ClassLogit, Objective, per_batch
from priorviz.regularizers import total_variation
from priorviz.render import RenderConfig, make_generator, render
from priorviz.spectrum import high_frequency_energy, spectral_slope
from priorviz.statistics import BatchNormStatisticsPrior, batchnorm_statistics_distance

CLASSES = {836: "sunglasses", 515: "cowboy hat", 796: "ski mask", 903: "wig", 629: "lipstick"}
CHANNEL_LAYER = "blocks.8"
CHANNELS = (3, 20, 57)
SETUPS = ("fourier", "fourier+statistics", "gan")
TABLE_METRICS = (
    "objective",
    "robustness",
    "held_out_probability",
    "spectral_slope",
    "high_frequency_energy",
    "total_variation",
    "bn_statistics_distance",
)


@dataclass(frozen=True)
class Group:
    """Objectives rendered together, one per batch element."""

    name: str
    labels: tuple[str, ...]
    objectives: tuple[Objective, ...]


def groups() -> tuple[Group, ...]:
    return (
        Group("classes", tuple(CLASSES.values()), tuple(ClassLogit(index) for index in CLASSES)),
        Group(
            "channels",
            tuple(f"{CHANNEL_LAYER}:{channel}" for channel in CHANNELS),
            tuple(Channel(CHANNEL_LAYER, channel) for channel in CHANNELS),
        ),
    )


def run_one(
    model: TargetModel, held_out: TargetModel, setup: str, group: Group, seed: int, args: argparse.Namespace, runs: Path
) -> dict:
    """Render and measure one (setup, group, seed), or load it if it is already on disk."""
    stem = f"{group.name}_{setup}_seed{seed}"
    record_path, image_path = runs / f"{stem}.json", runs / f"{stem}.png"
    if record_path.exists() and image_path.exists():
        return json.loads(record_path.read_text())
    objective = per_batch(list(group.objectives))
    regularizer = BatchNormStatisticsPrior(model, weight=args.statistics_weight) if setup == "fourier+statistics" else None
    prior = "gan_faces" if setup == "gan" else "fourier"
    started = time.perf_counter()
    result = render(
        model, objective, prior, batch=len(group.objectives), size=args.size,
        config=RenderConfig(steps=args.steps, seed=seed), regularizer=regularizer,
    )
    panel = measure(model, objective, result.images, held_out=held_out, seed=seed)
    record = {
        "setup": setup, "group": group.name, "seed": seed, "labels": list(group.labels),
        "objective_text": objective.to_text(), "steps": args.steps, "size": args.size,
        "statistics_weight": args.statistics_weight if regularizer is not None else None,
        "gan_settings": {"learning_rate": gan.LEARNING_RATE, "norm_penalty": gan.DEFAULT_NORM_PENALTY, "clip": gan.DEFAULT_CLIP}
        if setup == "gan" else None,
        "seconds": round(time.perf_counter() - started, 1), "per_image": panel.per_image,
    }
    save_strip(result.images, image_path)
    record_path.write_text(json.dumps(record, indent=1))
    print(f"{stem}: {record['seconds']} s", flush=True)
    return record


def save_strip(images: torch.Tensor, path: Path) -> None:
    """A batch side by side as one PNG, at its own pixel size."""
    strip = torch.cat(list(images), dim=2).permute(1, 2, 0).clamp(0, 1).mul(255).round().byte().numpy()
    Image.fromarray(strip).save(path)


def load_strip(path: Path, count: int) -> torch.Tensor:
    array = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).reshape(3, array.shape[0], count, -1).permute(2, 0, 1, 3)


def mean_spread(values: list[float]) -> str:
    if not values:
        return "–"
    mean = statistics.fmean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    digits = 3 if max(abs(mean), spread) < 10 else 1
    return f"{mean:.{digits}f} ± {spread:.{digits}f}"


def seed_diversity(model: TargetModel, group: Group, setup: str, seeds: list[int], runs: Path) -> list[float]:
    """Per objective, the diversity of its images across seeds: does the result depend on the start?"""
    strips = [load_strip(runs / f"{group.name}_{setup}_seed{seed}.png", len(group.objectives)) for seed in seeds]
    with torch.no_grad():
        return [batch_diversity(model, torch.stack([strip[index] for strip in strips])) for index in range(len(group.objectives))]


IMAGE_METRICS = ("spectral_slope", "high_frequency_energy", "total_variation", "bn_statistics_distance")
"""The metrics that need no objective, for the reference rows."""


def foolbox_photographs(size: int) -> torch.Tensor:
    """Foolbox's 20 ImageNet photographs, resized to ``size``: what natural looks like."""
    spec = importlib.util.find_spec("foolbox")
    assert spec is not None and spec.submodule_search_locations, "foolbox's data is installed by make setup"
    paths = sorted((Path(next(iter(spec.submodule_search_locations))) / "data").glob("imagenet_*.jpg"))
    arrays = [np.asarray(Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR)) for path in paths]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0


def random_faces(size: int, count: int = 20) -> torch.Tensor:
    """Unoptimized draws of the face GAN (z ~ N(0, I)), resized as the study's GAN images are."""
    with torch.no_grad():
        return get_prior("gan_faces", count, size, size, generator=make_generator(1234), device=torch.device("cpu"))()


def reference_values(model: TargetModel, images: torch.Tensor) -> dict[str, list[float]]:
    with torch.no_grad():
        columns = {
            "spectral_slope": spectral_slope(images),
            "high_frequency_energy": high_frequency_energy(images),
            "total_variation": total_variation(images),
            "bn_statistics_distance": batchnorm_statistics_distance(model, images),
        }
    return {key: [float(v) for v in values] for key, values in columns.items()}


def summary_tables(records: list[dict], model: TargetModel, seeds: list[int], runs: Path) -> tuple[str, dict]:
    """Markdown tables (mean ± sd over objectives and seeds) and the same numbers as JSON."""
    lines, numbers = [], {}
    size = records[0]["size"]
    references = {
        "photographs (foolbox, 20)": reference_values(model, foolbox_photographs(size)),
        "face GAN samples (20, not optimized)": reference_values(model, random_faces(size)),
    }
    header = ["reference", *IMAGE_METRICS]
    lines += [f"\n**references** (no objective; {size} px)\n", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, values in references.items():
        lines.append("| " + " | ".join([name, *(mean_spread(values[m]) for m in IMAGE_METRICS)]) + " |")
        numbers[f"reference/{name}"] = values
    for group in groups():
        header = ["setup", *TABLE_METRICS, "seed_diversity"]
        lines += [f"\n**{group.name}** ({', '.join(group.labels)}; n = {len(group.labels)} objectives x {len(seeds)} seeds)\n"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for setup in SETUPS:
            chosen = [r for r in records if r["group"] == group.name and r["setup"] == setup]
            row, numbers[f"{group.name}/{setup}"] = [setup], {}
            for metric in TABLE_METRICS:
                values = [image[metric] for r in chosen for image in r["per_image"] if metric in image]
                row.append(mean_spread(values))
                numbers[f"{group.name}/{setup}"][metric] = values
            diversity = seed_diversity(model, group, setup, seeds, runs) if len(seeds) > 1 else []
            row.append(mean_spread(diversity))
            numbers[f"{group.name}/{setup}"]["seed_diversity"] = diversity
            lines.append("| " + " | ".join(row) + " |")
    lines.append("\n**per class** (mean ± sd over seeds): objective (Lite0 logit) / robustness / held-out probability\n")
    lines += ["| class | " + " | ".join(SETUPS) + " |", "|" + "---|" * (len(SETUPS) + 1)]
    for index, label in enumerate(CLASSES.values()):
        row = [label]
        for setup in SETUPS:
            chosen = [r["per_image"][index] for r in records if r["group"] == "classes" and r["setup"] == setup]
            cells = [mean_spread([c[m] for c in chosen if m in c]) for m in ("objective", "robustness", "held_out_probability")]
            row.append(" / ".join(cells))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines), numbers


def contact_sheet(group: Group, seeds: list[int], runs: Path, path: Path) -> None:
    """Rows: setup x seed; columns: objectives; labelled; images at their own pixel size."""
    margin, label_width = 18, 130
    rows = [(setup, seed) for setup in SETUPS for seed in seeds]
    cell = load_strip(runs / f"{group.name}_{rows[0][0]}_seed{rows[0][1]}.png", len(group.labels)).shape[-1]
    sheet = Image.new("RGB", (label_width + cell * len(group.labels), margin + cell * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    for column, label in enumerate(group.labels):
        draw.text((label_width + column * cell + 4, 3), label, fill="black")
    for row, (setup, seed) in enumerate(rows):
        draw.text((4, margin + row * cell + cell // 2 - 6), f"{setup}\nseed {seed}", fill="black")
        strip = load_strip(runs / f"{group.name}_{setup}_seed{seed}.png", len(group.labels))
        for column, image in enumerate(strip):
            sheet.paste(to_pil(image), (label_width + column * cell, margin + row * cell))
    sheet.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--statistics-weight", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--setups", nargs="+", choices=SETUPS, default=list(SETUPS))
    parser.add_argument("--out", type=Path, default=Path("docs/study"))
    parser.add_argument("--render-only", action="store_true", help="render and measure, skip the tables and figures")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runs = args.out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    model, held_out = get_model("efficientnet_lite0"), get_model("efficientnet_lite1")
    records = [
        run_one(model, held_out, setup, group, seed, args, runs)
        for setup in args.setups for group in groups() for seed in args.seeds
    ]
    if args.render_only or set(args.setups) != set(SETUPS):
        return
    table, numbers = summary_tables(records, model, args.seeds, runs)
    (args.out / "table.md").write_text(table + "\n")
    (args.out / "numbers.json").write_text(json.dumps({"metrics": METRIC_DESCRIPTIONS, "values": numbers}, indent=1))
    for group in groups():
        contact_sheet(group, args.seeds, runs, args.out / f"{group.name}.png")
    total = sum(r["seconds"] for r in records)
    print(table)
    print(f"\nrender+measure time: {total:.0f} s ({math.ceil(total / 60)} min)")


if __name__ == "__main__":
    main()
