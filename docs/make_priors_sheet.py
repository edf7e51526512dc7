"""Make docs/priors_contact_sheet.png: face-related classes optimized freely (Fourier) and under the face GAN.

Each row is one class of EfficientNet-Lite0; the left image is the Fourier render (512
steps at 224, the unconstrained space), the right one the GAN-latent render (200 steps).
Labels give the class probability on Lite0, on the held-out Lite1, and the batch-norm
statistics distance (lower: more in distribution). Run from the repository root:

    .venv/bin/python docs/make_priors_sheet.py [--out docs/priors_contact_sheet.png]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from priors.statistics import batchnorm_statistics_distance
from service.models import get_model
from service.objectives import ClassLogit
from service.render import RenderConfig, render

CLASSES = {836: "sunglasses", 515: "cowboy hat", 796: "ski mask"}
RUNS = {"fourier": 512, "gan_faces": 200}
SIDE = 224
LABEL_HEIGHT = 44


def held_out_probability(model, images: torch.Tensor, index: int) -> float:
    resized = F.interpolate(images, size=(model.input_size, model.input_size), mode="bilinear", antialias=True)
    return float(model.predict(resized)[0, index])


def to_pil(image: torch.Tensor) -> Image.Image:
    array = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array)


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
        for column, (prior, steps) in enumerate(RUNS.items()):
            result = render(model, ClassLogit(index), prior, size=SIDE, config=RenderConfig(steps=steps, seed=args.seed))
            entry = {
                "class": index, "label": label, "prior": prior, "steps": steps, "seconds": round(result.seconds, 1),
                "probability": round(float(model.predict(result.images)[0, index]), 4),
                "held_out_probability": round(held_out_probability(held_out, result.images, index), 4),
                "bn_statistics_distance": round(float(batchnorm_statistics_distance(model, result.images)[0]), 1),
            }
            numbers.append(entry)
            print(json.dumps(entry), flush=True)
            top = row * (SIDE + LABEL_HEIGHT)
            sheet.paste(to_pil(result.images[0]), (column * SIDE, top + LABEL_HEIGHT))
            draw.text((column * SIDE + 4, top + 3), f"{label} ({index}) - {prior}, {steps} steps", fill="black")
            draw.text((column * SIDE + 4, top + 16),
                      f"p={entry['probability']:.3f}  lite1 p={entry['held_out_probability']:.3f}", fill="black")
            draw.text((column * SIDE + 4, top + 29),
                      f"bn dist={entry['bn_statistics_distance']:.0f}  {entry['seconds']:.0f} s", fill="black")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    args.out.with_suffix(".json").write_text(json.dumps(numbers, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
