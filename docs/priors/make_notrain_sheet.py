"""Make docs/priors/notrain_contact_sheet.png: the priors that need no training beside Fourier.

Rows are two objectives of EfficientNet-Lite0 (the goldfish logit and channel 17 of blocks.10);
columns are the Fourier render, the MACO render and its transparency map (the accumulated
gradient magnitude), the CPPN render and the deep-image-prior render, each 224 pixels, 256
steps, seed 0, each prior at its own preferred learning rate. Captions give the objective on the
clean image, the goldfish probability on the held-out EfficientNet-Lite1 (class objectives only),
the spectral slope and the high-frequency energy share; every number of the metric panel goes
to the .json beside the sheet. Run from the repository root:

    .venv/bin/python docs/priors/make_notrain_sheet.py [--out docs/priors/notrain_contact_sheet.png]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from priorviz.images import Cell, contact_sheet
from priorviz.metrics import measure
from priorviz.models import get_model
from priorviz.objective_text import parse_objective
from priorviz.render import render

OBJECTIVES = {"logit:1": "goldfish logit (logit:1)", "blocks.10:17": "channel blocks.10:17"}
PRIORS = ("fourier", "maco", "cppn", "deep_image_prior")
STEPS = 256
SIDE = 224


def caption(metrics: dict[str, float]) -> str:
    first = f"obj {metrics['objective']:.1f}"
    if "held_out_probability" in metrics:
        first += f"  lite1 p {metrics['held_out_probability']:.3f}"
    return f"{first}\nslope {metrics['spectral_slope']:.2f}  hf {metrics['high_frequency_energy']:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/priors/notrain_contact_sheet.png"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = get_model("efficientnet_lite0", device="cpu")
    held_out = get_model("efficientnet_lite1", device="cpu")

    rows, numbers = [], []
    for text in OBJECTIVES:
        objective = parse_objective(text)
        row = []
        for prior in PRIORS:
            result = render(model, objective, prior, size=SIDE, steps=STEPS, seed=0)
            metrics = measure(model, objective, result.images, held_out=held_out).per_image[0]
            numbers.append({"objective": text, "prior": prior, "steps": STEPS, "seconds": round(result.seconds, 1),
                            "metrics": {key: round(value, 4) for key, value in metrics.items()}})
            print(json.dumps(numbers[-1]), flush=True)
            row.append(Cell(result.images[0], caption(metrics)))
            if prior == "maco":
                row.append(Cell(result.extra_images["transparency"][0], "maco transparency\n(accumulated |gradient|)"))
        rows.append(row)
    columns = ["fourier", "maco", "maco transparency", "cppn", "deep_image_prior"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(rows, list(OBJECTIVES.values()), columns).save(args.out, optimize=True)
    args.out.with_suffix(".json").write_text(json.dumps(numbers, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
