"""The ``priorviz`` command: list what a server offers, visualize, and compare priors.

    priorviz models
    priorviz layers efficientnet_lite0
    priorviz priors
    priorviz health --wait 120
    priorviz visualize blocks.10:17 --prior fourier --steps 256 --out out/ch17
    priorviz compare logit:1 blocks.10:17 --steps 128 --size 128 --out out/report
    priorviz visualize blocks.8:40 --prior pixel --tv 0.5 --blur-sigma 0.5 --blur-every 4 --jitter 16 --out out/smooth
    priorviz visualize caricature:blocks.8 --init-image imagenet_samples/chelsea --size 128 --out out/caricature
    priorviz invert imagenet_samples/chelsea --layer blocks.5 --prior fourier --prior gan_faces --out out/cat
    priorviz examples blocks.10:17 --images imagenet_samples --out out/examples
    priorviz compare blocks.10:17 --examples imagenet_samples --out out/report
    priorviz study run study.toml --target 10.0.0.5:50051 --target 10.0.0.6:50051 --db study.db

The server address comes from ``--target`` or $PRIORVIZ_TARGET, the token from ``--token``
or $PRIORVIZ_TOKEN. Errors print one line and exit with status 1 (2 for usage errors).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from priorviz_client._artifacts import save_comparisons, save_examples, save_results
from priorviz_client._client import Client, Job
from priorviz_client._connection import DEFAULT_TARGET, TARGET_ENV, TOKEN_ENV
from priorviz_client._examples import ExamplesOptions, Images
from priorviz_client._exceptions import PriorvizError
from priorviz_client._inversion import ImageInput, InvertOptions, save_inversions
from priorviz_client._metric_labels import format_metric, ordered_metrics
from priorviz_client._progress import ProgressBar
from priorviz_client._requests import RenderOptions, Transforms
from priorviz_client._results import Comparison, DatasetExamples, Progress, Visualization
from priorviz_client._study._cli import add_study_parser, study_main
from priorviz_objectives import ObjectiveError, parse_objective
from priorviz_objectives.units import as_unit

_CLASS_OBJECTIVE = re.compile(r"(?:logit|prob):(\d+)")
_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})


def _key_value(text: str) -> tuple[str, str]:
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _steps_list(text: str) -> list[int]:
    try:
        return [int(step) for step in text.split(",") if step.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated step numbers, got {text!r}") from None


def _add_render_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("render options (left out: the server's defaults)")
    group.add_argument("--model", help="target model (default: the server's default model)")
    group.add_argument("--steps", type=int, help="optimization steps (default: each prior's own; see `priors`)")
    group.add_argument("--size", type=int, help="image side in pixels (default: the model's input size)")
    group.add_argument("--batch", type=int, default=1, help="images per objective (default 1)")
    group.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    group.add_argument("--learning-rate", type=float, help="Adam learning rate (default: the prior's preferred)")
    group.add_argument("--preview-steps", type=_steps_list, default=[], help="steps to stream previews at, e.g. 32,64")
    group.add_argument("--no-transforms", action="store_true", help="optimize without random transforms")
    group.add_argument("--held-out-model", help="model for the transferability metric; 'none' skips it")
    group.add_argument(
        "--statistics-prior-weight",
        type=float,
        help="add the batch-norm statistics prior (DeepInversion) with this weight",
    )
    group.add_argument(
        "--init-image",
        metavar="IMAGE",
        help="start from this PNG/JPEG file or SET/IMAGE of a server's image set instead of noise (DeepDream of a "
        "photograph)",
    )
    group.add_argument("--deadline", type=float, help="seconds after which the server stops the job")
    group.add_argument("--no-progress", action="store_true", help="no progress bars")
    regularizers = parser.add_argument_group("regularizers (left out: off)")
    regularizers.add_argument(
        "--tv",
        "--total-variation-weight",
        dest="total_variation_weight",
        type=float,
        metavar="WEIGHT",
        help="weight of the image's total variation, subtracted from what is maximized (at most 1000)",
    )
    regularizers.add_argument(
        "--l1",
        dest="l1_weight",
        type=float,
        metavar="WEIGHT",
        help="weight of the image's mean distance from mid-grey, subtracted likewise (at most 1000)",
    )
    regularizers.add_argument(
        "--blur-sigma",
        type=float,
        metavar="PIXELS",
        help="Gaussian blur of the image itself every --blur-every steps (at most 8; pixel and fourier priors only)",
    )
    regularizers.add_argument("--blur-every", type=int, metavar="K", help="steps between two blurs (default 1)")
    transforms = parser.add_argument_group(
        "transform parameters (left out: Lucid's standard set: pad 12, jitter 8, scale 0.9 1.1, rotate 10, "
        "final jitter 4)"
    )
    transforms.add_argument("--pad", type=int, metavar="PIXELS", help="mid-grey padding on each side")
    transforms.add_argument("--jitter", type=int, metavar="PIXELS", help="random crop up to this much smaller")
    transforms.add_argument("--scale", type=float, nargs=2, metavar=("MIN", "MAX"), help="random scale range")
    transforms.add_argument("--rotate", type=float, metavar="DEGREES", help="random rotation within +-DEGREES")
    transforms.add_argument("--final-jitter", type=int, metavar="PIXELS", help="random crop after scale and rotation")


_TRANSFORM_FLAGS = {
    "pad": "--pad",
    "jitter": "--jitter",
    "scale": "--scale",
    "rotate": "--rotate",
    "final_jitter": "--final-jitter",
}


def _transforms(args: argparse.Namespace) -> bool | Transforms:
    """Off, the standard set, or the standard set with the parameters given on the command line changed."""
    if args.no_transforms:
        return False
    given = {name: getattr(args, name) for name in _TRANSFORM_FLAGS if getattr(args, name) is not None}
    if not given:
        return True
    scale = given.pop("scale", None)
    return Transforms(scale=None if scale is None else (scale[0], scale[1]), **given)


def _image_argument(text: str) -> ImageInput:
    """A file when one exists at ``text``, else ``SET/IMAGE`` of the server's image sets."""
    path = Path(text)
    return path if path.is_file() else text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="priorviz",
        description="Feature visualizations from a priorviz server: the unconstrained and the prior-constrained "
        "image of the same objective, side by side, with metrics.",
    )
    parser.add_argument("--target", help=f"server address (default: ${TARGET_ENV} or {DEFAULT_TARGET})")
    parser.add_argument("--token", help=f"bearer token (default: ${TOKEN_ENV})")
    parser.add_argument("--tls", action="store_true", help="connect with TLS (system roots unless --ca-cert)")
    parser.add_argument("--ca-cert", type=Path, help="PEM file of the root certificates to trust (implies --tls)")
    parser.add_argument(
        "--server-name", help="TLS name to expect from the server (for certificates made for another name)"
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="deadline in seconds for listing calls (default 30)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    models = commands.add_parser("models", help="list the target models")
    models.add_argument("--json", action="store_true", help="print JSON")

    layers = commands.add_parser("layers", help="list a model's layers (channels, spatial size)")
    layers.add_argument("model", nargs="?", help="model name (default: the server's default model)")
    layers.add_argument("--json", action="store_true", help="print JSON")

    priors = commands.add_parser("priors", help="list the priors (image parameterizations)")
    priors.add_argument("--all", action="store_true", help="include priors whose model is not installed")
    priors.add_argument("--json", action="store_true", help="print JSON")

    health = commands.add_parser("health", help="print the server's health; exit 0 only when SERVING")
    health.add_argument("--wait", type=float, default=0.0, metavar="SECONDS", help="wait up to SECONDS for SERVING")

    visualize = commands.add_parser("visualize", help="visualize one objective under one prior")
    visualize.add_argument("objective", help="objective text, e.g. blocks.10:17 or 'logit:1 - 0.5*logit:2'")
    visualize.add_argument("--prior", default="fourier", help="prior name (default fourier)")
    visualize.add_argument("--prior-option", type=_key_value, action="append", default=[], metavar="KEY=VALUE")
    visualize.add_argument("--out", type=Path, required=True, help="folder for the PNGs and metrics.json")
    _add_render_options(visualize)

    compare = commands.add_parser(
        "compare", help="each objective under the unconstrained and the learned priors: PNGs, contact sheet, JSON, HTML"
    )
    compare.add_argument("objectives", nargs="+", metavar="OBJECTIVE", help="one or more objective texts")
    compare.add_argument(
        "--prior",
        dest="priors",
        action="append",
        metavar="NAME",
        help="a prior to compare (repeat; default: fourier and every available learned prior)",
    )
    compare.add_argument("--out", type=Path, required=True, help="folder for the results")
    compare.add_argument(
        "--examples",
        metavar="SET|DIR",
        help="show each objective's dataset examples from this image set of the server (or a local folder, "
        "uploaded) beside its visualizations; objectives that are no single unit get none",
    )
    compare.add_argument("--examples-k", type=int, metavar="K", help="dataset examples at each end (server default 8)")
    _add_render_options(compare)
    _add_invert_parser(commands)
    _add_examples_parser(commands)
    add_study_parser(commands)
    return parser


def _layer_weight(text: str) -> tuple[str, float]:
    """``blocks.5`` (weight 1) or ``blocks.5=0.5``."""
    name, separator, weight = text.partition("=")
    try:
        return name, float(weight) if separator else 1.0
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LAYER or LAYER=WEIGHT, got {text!r}") from None


def _add_invert_parser(commands: Any) -> None:
    invert = commands.add_parser(
        "invert", help="rebuild a photograph from its activations under each prior: PNGs, contact sheet, JSON, HTML"
    )
    invert.add_argument(
        "image", help="a PNG or JPEG file, or SET/IMAGE from a server's image set (imagenet_samples/chelsea)"
    )
    invert.add_argument(
        "--layer", dest="layers", action="append", type=_layer_weight, required=True, metavar="LAYER[=WEIGHT]"
    )
    invert.add_argument("--prior", dest="priors", action="append", metavar="NAME", help="repeat (default: fourier)")
    invert.add_argument("--out", type=Path, required=True, help="folder for the results")
    group = invert.add_argument_group("inversion options (left out: the server's defaults)")
    group.add_argument("--model", help="target model (default: the server's default model)")
    group.add_argument(
        "--steps", type=int, help="optimization steps per prior (default: each prior's own, at most 128)"
    )
    group.add_argument("--size", type=int, help="image side in pixels (default: the model's input size)")
    group.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    group.add_argument("--learning-rate", type=float, help="Adam learning rate (default: the prior's preferred)")
    group.add_argument(
        "--tv",
        "--total-variation-weight",
        dest="total_variation_weight",
        type=float,
        metavar="WEIGHT",
        help="weight of a total-variation penalty",
    )
    group.add_argument("--transforms", action="store_true", help="random transforms at each step (default off)")
    group.add_argument("--held-out-model", help="model for the transferability metric; 'none' skips it")
    group.add_argument("--deadline", type=float, help="seconds after which the server stops the job")
    group.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_examples_parser(commands: Any) -> None:
    examples = commands.add_parser(
        "examples",
        help="the images where one unit is highest and lowest, each with its most activating crop: PNGs, contact "
        "sheet, JSON, HTML",
    )
    examples.add_argument(
        "unit", help="a channel (blocks.10:17), neuron (neuron:blocks.10:17@7,7), direction or class (logit:130)"
    )
    examples.add_argument(
        "--images",
        nargs="+",
        required=True,
        metavar="SET|FILE|DIR",
        help="an image set the server offers (imagenet_samples), or PNG/JPEG files and folders of them to upload",
    )
    examples.add_argument("--out", type=Path, required=True, help="folder for the results")
    group = examples.add_argument_group("options (left out: the server's defaults)")
    group.add_argument("--k", type=int, help="images at each end (server default 8)")
    group.add_argument("--model", help="target model (default: the server's default model)")
    group.add_argument("--thumbnail-size", type=int, help="side of the returned images and crops (default 128)")
    group.add_argument("--deadline", type=float, help="seconds after which the server stops the job")
    group.add_argument("--no-progress", action="store_true", help="no progress bar")


def _example_images(values: Sequence[str]) -> tuple[Images, list[Path]]:
    """An image set's name, or the files to upload (a folder gives the PNG and JPEG files directly in it)."""
    if len(values) == 1 and not Path(values[0]).exists():
        return values[0], []
    files: list[Path] = []
    for value in values:
        path = Path(value)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES))
        elif path.is_file():
            files.append(path)
        else:
            raise PriorvizError(f"--images: {value!r} is neither a file nor a folder (an image set is given alone)")
    if not files:
        raise PriorvizError(f"--images: no PNG or JPEG files in {', '.join(values)}")
    return files, files


def _examples_of(
    client: Client, unit: str, sources: Sequence[str], args: argparse.Namespace, options: ExamplesOptions
) -> DatasetExamples:
    """The dataset examples of ``unit`` in ``sources`` (see ``--images``); uploaded files keep their names."""
    images, files = _example_images(sources)
    job = client.dataset_examples_stream(unit, images, timeout=args.deadline, **options)
    ranked: DatasetExamples = _run(job, _progress_bar(args, "activations"), counted="images")
    if not files:
        return ranked

    def named(ends: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(dataclasses.replace(example, name=files[example.index].name) for example in ends)

    return dataclasses.replace(ranked, top=named(ranked.top), bottom=named(ranked.bottom))


def _client(args: argparse.Namespace) -> Client:
    return Client(
        args.target,
        token=args.token,
        tls=args.tls,
        root_certificates=args.ca_cert,
        server_name=args.server_name,
        timeout=args.timeout,
    )


def _render_options(args: argparse.Namespace) -> RenderOptions:
    options: RenderOptions = {"batch": args.batch, "seed": args.seed, "transforms": _transforms(args)}
    for name in ("model", "steps", "size", "learning_rate", "held_out_model", "statistics_prior_weight"):
        value = getattr(args, name)
        if value is not None:
            options[name] = value
    for regularizer in ("total_variation_weight", "l1_weight", "blur_sigma", "blur_every"):
        weight = getattr(args, regularizer)
        if weight is not None:
            options[regularizer] = weight
    if args.preview_steps:
        options["preview_steps"] = args.preview_steps
    if args.init_image:
        options["init_image"] = _image_argument(args.init_image)
    return options


def _progress_bar(args: argparse.Namespace, description: str) -> ProgressBar | None:
    if args.no_progress:
        return None
    try:
        return ProgressBar(description)
    except ImportError:
        return None


def _run(job: Job[Any], bar: ProgressBar | None, counted: str = "steps") -> Any:
    """Drains a job; Ctrl-C leaves the ``with`` block, which cancels the call on the server. Without a
    bar, the end of each prior's work is one line (``counted``: what its progress counts)."""
    with job:
        try:
            for event in job:
                if bar is not None:
                    bar.update(event)
                elif isinstance(event, Progress) and event.step == event.total_steps:
                    print(f"  {event.prior}: {event.total_steps} {counted} done", file=sys.stderr)
        finally:
            if bar is not None:
                bar.close()
        return job.result()


def _print_table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> None:
    cells = [[str(value) for value in row] for row in [header, *rows]]
    widths = [max(len(row[column]) for row in cells) for column in range(len(header))]
    for row in cells:
        print("  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip())


def _summary(result: Visualization) -> str:
    first = ordered_metrics(result.metrics[0]) if result.metrics else []
    numbers = ", ".join(f"{label} {format_metric(value)}" for _, label, value in first[:4])
    return f"{result.prior} ({result.prior_kind.value}): {numbers}"


def _titles(client: Client, comparisons: Sequence[Comparison], model: str | None) -> list[str]:
    """Objective texts, with the class name for a single class objective (``logit:1 (goldfish)``)."""
    class_names: tuple[str, ...] = ()
    if any(_CLASS_OBJECTIVE.fullmatch(c.objective) for c in comparisons):
        class_names = client.describe_model(model).class_names
    titles = []
    for comparison in comparisons:
        match = _CLASS_OBJECTIVE.fullmatch(comparison.objective)
        index = int(match.group(1)) if match else -1
        name = f" ({class_names[index]})" if 0 <= index < len(class_names) else ""
        titles.append(f"{comparison.objective}{name}  on {comparison.model}")
    return titles


def _models(client: Client, args: argparse.Namespace) -> int:
    models = client.models()
    if args.json:
        print(json.dumps([vars(model) for model in models], indent=2))
    else:
        rows = [(model.name, "yes" if model.is_default else "", model.description) for model in models]
        _print_table(rows, ("MODEL", "DEFAULT", "DESCRIPTION"))
    return 0


def _layers(client: Client, args: argparse.Namespace) -> int:
    info = client.describe_model(args.model, class_names=False)
    if args.json:
        layers = [vars(layer) for layer in info.layers]
        print(json.dumps({"model": info.name, "input_size": info.input_size, "layers": layers}, indent=2))
    else:
        print(f"{info.name}: input {info.input_size}x{info.input_size}, {info.num_classes} classes")
        rows = [(layer.name, layer.channels, f"{layer.height}x{layer.width}") for layer in info.layers]
        _print_table(rows, ("LAYER", "CHANNELS", "SIZE"))
    return 0


def _priors(client: Client, args: argparse.Namespace) -> int:
    priors = client.priors(include_unavailable=args.all)
    if args.json:
        print(json.dumps([{**vars(p), "kind": p.kind.value, "options": dict(p.options)} for p in priors], indent=2))
    else:
        rows = [
            (
                p.name,
                p.kind.value,
                p.output_size or "any",
                p.default_steps or "-",
                p.default_image_size or "-",
                f"{p.default_learning_rate:g}" if p.default_learning_rate else "-",
                "yes" if p.available else f"no: {p.unavailable_reason}",
                p.licence or "-",
            )
            for p in priors
        ]
        _print_table(rows, ("PRIOR", "KIND", "SIZE", "STEPS", "AT PX", "LR", "AVAILABLE", "LICENCE"))
    return 0


def _health(client: Client, args: argparse.Namespace) -> int:
    if args.wait > 0:
        client.wait_until_serving(timeout=args.wait)
    status = client.health()
    print(status)
    return 0 if status == "SERVING" else 1


def _visualize(client: Client, args: argparse.Namespace) -> int:
    bar = _progress_bar(args, "")
    job = client.visualize_stream(
        args.objective,
        prior=args.prior,
        prior_options=dict(args.prior_option),
        timeout=args.deadline,
        **_render_options(args),
    )
    result = _run(job, bar)
    files = save_results(args.out, [result], settings=_settings(args, client))
    print(_summary(result))
    print(f"wrote {len(files.images)} images and {files.metrics}")
    return 0


def _settings(args: argparse.Namespace, client: Client) -> dict[str, object]:
    settings: dict[str, object] = {"server": client.connection.target}
    settings.update(_render_options(args))
    transforms = settings["transforms"]
    if isinstance(transforms, Transforms):
        settings["transforms"] = transforms.given()
    if args.init_image:
        settings["init_image"] = args.init_image  # as given: a file name or SET/IMAGE, not the bytes
    return settings


def _compare(client: Client, args: argparse.Namespace) -> int:
    comparisons: list[Comparison] = []
    examples: list[DatasetExamples | None] = []
    try:
        for number, objective in enumerate(args.objectives, start=1):
            print(f"[{number}/{len(args.objectives)}] {objective}", file=sys.stderr)
            ranked = _compare_examples(client, objective, args)  # first: a wrong set fails before any rendering
            bar = _progress_bar(args, f"[{number}/{len(args.objectives)}]")
            job = client.compare_stream(objective, priors=args.priors, timeout=args.deadline, **_render_options(args))
            comparison = _run(job, bar)
            for result in comparison.results:
                print(f"  {_summary(result)}", file=sys.stderr)
            comparisons.append(comparison)
            examples.append(ranked)
    except (PriorvizError, KeyboardInterrupt):
        # A long run that fails or is interrupted late keeps the comparisons it finished.
        if comparisons:
            print(f"priorviz: writing the {len(comparisons)} comparison(s) that finished", file=sys.stderr)
            _save_comparisons(client, args, comparisons, examples)
        raise
    _save_comparisons(client, args, comparisons, examples)
    return 0


def _compare_examples(client: Client, objective: str, args: argparse.Namespace) -> DatasetExamples | None:
    """With ``--examples``: the dataset examples of the objective's unit; None when it is no single unit."""
    if args.examples is None:
        return None
    try:
        as_unit(parse_objective(objective))
    except ObjectiveError as error:
        print(f"  no dataset examples: {error}", file=sys.stderr)
        return None
    options: ExamplesOptions = {"model": args.model} if args.model else {}
    if args.examples_k is not None:
        options["k"] = args.examples_k
    ranked = _examples_of(client, objective, [args.examples], args, options)
    print(f"  dataset examples: highest {_ranking(ranked.top)}", file=sys.stderr)
    return ranked


def _ranking(examples: Sequence[Any]) -> str:
    return ", ".join(f"{example.name} {format_metric(example.value)}" for example in examples)


def _save_comparisons(
    client: Client,
    args: argparse.Namespace,
    comparisons: Sequence[Comparison],
    examples: Sequence[DatasetExamples | None],
) -> None:
    files = save_comparisons(
        args.out,
        comparisons,
        titles=_titles(client, comparisons, args.model),
        metric_descriptions=client.metric_descriptions(),
        priors=client.priors(include_unavailable=True),
        settings=_settings(args, client),
        examples=examples,
    )
    print(f"wrote {len(files.images)} images, {files.contact_sheet}, {files.metrics} and {files.report}")


def _invert(client: Client, args: argparse.Namespace) -> int:
    image = _image_argument(args.image)
    options: InvertOptions = {"seed": args.seed, "transforms": args.transforms}
    for name in ("model", "steps", "size", "learning_rate", "total_variation_weight", "held_out_model"):
        value = getattr(args, name)
        if value is not None:
            options[name] = value
    job = client.invert_stream(image, dict(args.layers), priors=args.priors, timeout=args.deadline, **options)
    inversions = _run(job, _progress_bar(args, ""))
    settings = {"server": client.connection.target, "image": args.image, **options}
    files = save_inversions(args.out, inversions, settings)
    for result in inversions.results:
        print(f"{result.prior} ({result.prior_kind.value}): relative error {result.final_relative_error:.3f}")
    print(f"wrote {len(files.images)} images, {files.contact_sheet}, {files.metrics} and {files.report}")
    return 0


def _examples(client: Client, args: argparse.Namespace) -> int:
    options: ExamplesOptions = {}
    for name in ("model", "k", "thumbnail_size"):
        value = getattr(args, name)
        if value is not None:
            options[name] = value
    ranked = _examples_of(client, args.unit, args.images, args, options)
    settings = {"server": client.connection.target, "unit": args.unit, "images": " ".join(args.images), **options}
    files = save_examples(args.out, ranked, settings)
    print(f"{ranked.unit} on {ranked.image_count} images of {ranked.image_set or 'the uploads'}")
    print(f"highest: {_ranking(ranked.top)}")
    print(f"lowest: {_ranking(ranked.bottom)}")
    source = "read from the server's store" if ranked.stored else "computed"
    print(
        f"activations {source}; wrote {len(files.images)} images, {files.contact_sheet}, {files.record}, {files.report}"
    )
    return 0


_COMMANDS: dict[str, Callable[[Client, argparse.Namespace], int]] = {
    "models": _models,
    "layers": _layers,
    "priors": _priors,
    "health": _health,
    "visualize": _visualize,
    "compare": _compare,
    "invert": _invert,
    "examples": _examples,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "no_transforms", False):
        given = [flag for name, flag in _TRANSFORM_FLAGS.items() if getattr(args, name) is not None]
        if given:
            parser.error(f"--no-transforms turns the transforms off; {', '.join(given)} cannot change them")
    try:
        if args.command == "study":
            return study_main(args)
        with _client(args) as client:
            return _COMMANDS[args.command](client, args)
    except PriorvizError as error:
        print(f"priorviz: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("priorviz: interrupted (the job was cancelled)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
