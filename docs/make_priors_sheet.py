"""Make docs/priors_contact_sheet.png: face-related classes optimized freely (Fourier) and under the face GAN.

Each row is one class of EfficientNet-Lite0; the left image is the Fourier render (512
steps at 224, the unconstrained space), the right cell the GAN-latent render (200 steps)
of a batch of four latents, all four shown (2x2, each tile with its own probability),
because under the GAN the outcome depends much more on the starting latent. Labels give
the class probability on Lite0 (best and mean of the batch), on the held-out Lite1, and
the batch-norm statistics distance (lower: closer to the training statistics). Run from
the repository root:

    .venv/bin/python docs/make_priors_sheet.py [--out docs/priors_contact_sheet.png]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from priorviz.images import to_pil
from priorviz.models import get_model
from priorviz.objectives import ClassLogit
from priorviz.render import RenderConfig, render
from priorviz.statistics import batchnorm_statistics_distance

CLASSES = {836: "sunglasses", 515: "cowboy hat", 796: "ski mask"}
RUNS = {"fourier": (512, 1), "gan_faces": (200, 4)}
"""prior -> (steps, batch); a batch of 4 is shown as a 2x2 grid of half-size tiles."""
SIDE = 224
LABEL_HEIGHT = 44


def held_out_probabilities(model, images: torch.Tensor, index: int) -> list[float]:
    resized = F.interpolate(images, size=(model.input_size, model.input_size), mode="bilinear", antialias=True)
    return [round(float(p), 4) for p in model.predict(resized)[:, index]]


def cell(images: torch.Tensor, probabilities: list[float]) -> Image.Image:
    """One image at full size, or four as a 2x2 grid of tiles each marked with its probability."""
    if images.shape[0] == 1:
        return to_pil(images[0])
    half = SIDE // 2
    grid = Image.new("RGB", (SIDE, SIDE), "white")
    draw = ImageDraw.Draw(grid)
    for position, (image, probability) in enumerate(zip(images[:4], probabilities)):
        x, y = (position % 2) * half, (position // 2) * half
        grid.paste(to_pil(image).resize((half, half), Image.BILINEAR), (x, y))
        draw.rectangle((x, y, x + 40, y + 12), fill="black")
        draw.text((x + 2, y), f"{probability:.2f}", fill="white")
    return grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/priors_contact_sheet.png"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = get_model("efficientnet_lite0", device=device)
    held_out = get_model("efficientnet_lite1", device=device)

    sheet = Image.new("RGB", (SIDE * len(RUNS), (SIDE + LABEL_HEIGHT) * len(CLASSES)), "white")
    draw = ImageDraw.Draw(sheet)
    numbers = []
    for row, (index, label) in enumerate(CLASSES.items()):
        for column, (prior, (steps, batch)) in enumerate(RUNS.items()):
            config = RenderConfig(steps=steps, seed=args.seed)
            result = render(model, ClassLogit(index), prior, batch=batch, size=SIDE, config=config)
            probabilities = [round(float(p), 4) for p in model.predict(result.images)[:, index]]
            held = held_out_probabilities(held_out, result.images, index)
            distances = [round(float(d), 1) for d in batchnorm_statistics_distance(model, result.images)]
            entry = {
                "class": index, "label": label, "prior": prior, "steps": steps, "batch": batch,
                "seconds": round(result.seconds, 1), "probability": probabilities,
                "held_out_probability": held, "bn_statistics_distance": distances,
            }
            numbers.append(entry)
            print(json.dumps(entry), flush=True)
            top = row * (SIDE + LABEL_HEIGHT)
            sheet.paste(cell(result.images, probabilities), (column * SIDE, top + LABEL_HEIGHT))
            draw.text((column * SIDE + 4, top + 3), f"{label} ({index}) - {prior}, {steps} steps", fill="black")
            if batch > 1:
                lines = (f"p best={max(probabilities):.3f} mean={sum(probabilities) / batch:.3f} ({batch} latents)",
                         f"lite1 best={max(held):.3f}  bn dist={sum(distances) / batch:.0f}  {result.seconds:.0f} s")
            else:
                lines = (f"p={probabilities[0]:.3f}  lite1 p={held[0]:.3f}",
                         f"bn dist={distances[0]:.0f}  {result.seconds:.0f} s")
            for number, line in enumerate(lines):
                draw.text((column * SIDE + 4, top + 16 + 13 * number), line, fill="black")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    args.out.with_suffix(".json").write_text(json.dumps(numbers, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
