"""Measure the distilled ImageNet generator: as a sampler, and as a prior beside the others.

``python -m priorviz.training.evaluate --out docs/priors`` writes ``distilled_imagenet.json``
and two contact sheets:

- samples G(z, y) for the 20 ``SAMPLE_CLASSES`` x 8 values of z: the rate at which Lite0's
  and the held-out Lite1's top-1 is y; batch-norm distance, spectral slope and high-frequency
  share, beside the same numbers for foolbox's 20 photographs and for Fourier renders;
- as a prior, on the 10 ``PRIOR_CLASSES`` (chosen before training and never tuned on): one
  render per prior with the same seed and steps, each image driven by its class logit; the
  held-out probability, spectral slope, high-frequency share and batch-norm distance.

Every image is judged at the judging model's own input size (bilinear), the way the service
judges a render. Lite1 judges only: it never trains or tunes anything.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from priors.distilled_imagenet import WEIGHTS_PATH, load_distilled_generator
from priorviz.images import Cell, contact_sheet
from priorviz.metrics import held_out_probability
from priorviz.models import TargetModel, get_model
from priorviz.objectives import ClassLogit, per_batch
from priorviz.photographs import imagenet_photographs
from priorviz.render import RenderConfig, render
from priorviz.spectrum import high_frequency_energy, spectral_slope
from priorviz.statistics import batchnorm_statistics_distance

PRIOR_CLASSES: tuple[int, ...] = (1, 130, 948, 985, 292, 409, 430, 817, 980, 954)
"""goldfish, flamingo, Granny Smith, daisy, tiger, analog clock, basketball, sports car, volcano, banana."""
SAMPLE_CLASSES: tuple[int, ...] = (*PRIOR_CLASSES, 207, 340, 945, 71, 94, 323, 417, 510, 779, 963)
"""The prior classes, then golden retriever, zebra, bell pepper, scorpion, hummingbird, monarch, balloon,
container ship, school bus, pizza."""
SAMPLES_PER_CLASS = 8
COMPARED_PRIORS: tuple[str, ...] = ("fourier", "gan_faces", "distilled_imagenet")


def judged(model: TargetModel, images: Tensor) -> Tensor:
    """Class probabilities of ``model`` on ``images`` resized to its input size."""
    side = model.input_size
    if images.shape[-1] != side:
        images = F.interpolate(images, size=(side, side), mode="bilinear", align_corners=False, antialias=True)
    return model.predict(images)


def image_statistics(model: TargetModel, images: Tensor) -> dict[str, float]:
    """Mean batch-norm distance (at the model's input size), spectral slope and high-frequency share."""
    side = model.input_size
    resized = F.interpolate(images, size=(side, side), mode="bilinear", align_corners=False, antialias=True)
    return {
        "bn_statistics_distance": float(batchnorm_statistics_distance(model, resized).mean()),
        "spectral_slope": float(spectral_slope(images).mean()),
        "high_frequency_energy": float(high_frequency_energy(images).mean()),
    }


@torch.no_grad()
def sample_images(weights: Path, seed: int) -> tuple[Tensor, Tensor]:
    """G(z, y) for every sample class and ``SAMPLES_PER_CLASS`` seeded z: images and their labels."""
    network = load_distilled_generator("cpu", path=weights)
    labels = torch.tensor(SAMPLE_CLASSES).repeat_interleave(SAMPLES_PER_CLASS)
    latents = torch.randn(len(labels), network.config.latent_size, generator=torch.Generator().manual_seed(seed))
    return network(latents, network.code_of(labels)), labels


def evaluate_samples(lite0: TargetModel, lite1: TargetModel, weights: Path, seed: int) -> tuple[dict, Tensor]:
    images, labels = sample_images(weights, seed)
    numbers: dict[str, object] = {
        "lite0_top1": float((judged(lite0, images).argmax(dim=1) == labels).float().mean()),
        "lite1_top1": float((judged(lite1, images).argmax(dim=1) == labels).float().mean()),
        "lite1_probability": float(judged(lite1, images).gather(1, labels[:, None]).mean()),
        **image_statistics(lite0, images),
    }
    per_class = {
        str(label): float((judged(lite1, images[labels == label]).argmax(dim=1) == label).float().mean())
        for label in SAMPLE_CLASSES
    }
    numbers["lite1_top1_per_class"] = per_class
    numbers["within_class_spread"] = within_class_spread(images, labels)
    return numbers, images


def within_class_spread(images: Tensor, labels: Tensor) -> float:
    """Mean pixel L1 distance between samples of one class over that between samples of different
    classes: 1 when z varies an image as much as the class does, 0 under full mode collapse."""
    distances = torch.cdist(images.flatten(1), images.flatten(1), p=1) / images[0].numel()
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~torch.eye(len(labels), dtype=torch.bool)
    return float(distances[same & off_diagonal].mean() / distances[~same].mean())


def evaluate_photographs(lite0: TargetModel, lite1: TargetModel) -> dict:
    images, labels = imagenet_photographs(224)
    target = torch.tensor(labels)
    return {
        "lite0_top1": float((judged(lite0, images).argmax(dim=1) == target).float().mean()),
        "lite1_top1": float((judged(lite1, images).argmax(dim=1) == target).float().mean()),
        **image_statistics(lite0, images),
    }


def evaluate_as_prior(
    lite0: TargetModel, lite1: TargetModel, prior: str, steps: int, size: int, seed: int
) -> tuple[dict, Tensor]:
    """One batch render of the prior classes (image i driven by class i's logit), measured."""
    objective = per_batch([ClassLogit(label) for label in PRIOR_CLASSES])
    started = time.perf_counter()
    result = render(
        lite0, objective, prior, batch=len(PRIOR_CLASSES), size=size, config=RenderConfig(steps=steps, seed=seed)
    )
    held_out = held_out_probability(lite1, objective, result.images)
    return {
        "held_out_probability": float(held_out.mean()),
        "held_out_probability_per_class": {str(c): float(p) for c, p in zip(PRIOR_CLASSES, held_out, strict=True)},
        "lite0_top1": float((judged(lite0, result.images).argmax(dim=1) == torch.tensor(PRIOR_CLASSES)).float().mean()),
        "seconds": round(time.perf_counter() - started, 1),
        **image_statistics(lite0, result.images),
    }, result.images


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, default=WEIGHTS_PATH)
    parser.add_argument("--out", type=Path, default=Path("docs/priors"))
    parser.add_argument("--steps", type=int, default=128, help="render steps for the prior comparison")
    parser.add_argument("--size", type=int, default=128, help="image side for the prior comparison")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    lite0, lite1 = get_model("efficientnet_lite0", device="cpu"), get_model("efficientnet_lite1", device="cpu")
    names = lite0.class_names

    samples, sample_grid = evaluate_samples(lite0, lite1, args.weights, args.seed)
    report: dict = {"weights": str(args.weights), "samples": samples, "photographs": evaluate_photographs(lite0, lite1)}
    renders: dict[str, Tensor] = {}
    report["as_prior"] = {"steps": args.steps, "size": args.size, "seed": args.seed, "classes": list(PRIOR_CLASSES)}
    for prior in COMPARED_PRIORS:
        report["as_prior"][prior], renders[prior] = evaluate_as_prior(
            lite0, lite1, prior, args.steps, args.size, args.seed
        )
    report["fourier_renders"] = {
        k: report["as_prior"]["fourier"][k]
        for k in ("bn_statistics_distance", "spectral_slope", "high_frequency_energy")
    }
    (args.out / "distilled_imagenet.json").write_text(json.dumps(report, indent=2) + "\n")

    # Samples at half size keep the sheet of 160 images small enough for the repository.
    thumbnails = F.interpolate(sample_grid, scale_factor=0.5, mode="bilinear", antialias=True)
    rows = [
        [Cell(thumbnails[row * SAMPLES_PER_CLASS + column], "") for column in range(SAMPLES_PER_CLASS)]
        for row in range(len(SAMPLE_CLASSES))
    ]
    titles = [names[label].split(",")[0][:14] for label in SAMPLE_CLASSES]
    contact_sheet(rows, titles, [f"z{i}" for i in range(SAMPLES_PER_CLASS)]).save(args.out / "distilled_samples.png")
    prior_rows = [
        [
            Cell(
                renders[prior][index],
                f"p={report['as_prior'][prior]['held_out_probability_per_class'][str(label)]:.2f}",
            )
            for prior in COMPARED_PRIORS
        ]
        for index, label in enumerate(PRIOR_CLASSES)
    ]
    contact_sheet(prior_rows, [names[c].split(",")[0][:14] for c in PRIOR_CLASSES], list(COMPARED_PRIORS)).save(
        args.out / "distilled_as_prior.png"
    )
    print(json.dumps({k: v for k, v in report.items() if k != "as_prior"}, indent=2))
    print(
        json.dumps(
            {
                p: {k: v for k, v in report["as_prior"][p].items() if not k.endswith("per_class")}
                for p in COMPARED_PRIORS
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
