"""Check the engine on a CUDA machine: every prior that needs no optional package renders there,
its objective rises and its images stay finite; an inversion runs too.

    python scripts/cuda_check.py [DEVICE] [STEPS]     # DEVICE defaults to cuda

It prints one line per prior and exits 1 if any failed. The test suite pins its models to the
CPU (bit-for-bit reproducibility), so this is where the CUDA code path is exercised.
"""

from __future__ import annotations

import sys
import time

import torch

import priorviz
from priorviz.inversion import invert
from priorviz.models import get_model

PRIORS = ("fourier", "pixel", "maco", "cppn", "deep_image_prior", "distilled_imagenet")


def check_prior(model: priorviz.TargetModel, prior: str, steps: int) -> str:
    """One render of ``logit:1``; a line saying how the objective moved, or what went wrong."""
    started = time.perf_counter()
    result = priorviz.render(model, "logit:1", prior=prior, steps=steps, size=128, seed=0)
    first, last = float(result.trace[0, 0]), float(result.trace[-1, 0])
    if not (torch.isfinite(result.images).all() and torch.isfinite(result.trace).all()):
        raise FloatingPointError("images or objective not finite")
    if last <= first:
        raise AssertionError(f"the objective did not rise ({first:.3f} -> {last:.3f})")
    return f"objective {first:.3f} -> {last:.3f} in {time.perf_counter() - started:.2f} s"


def main() -> int:
    device = sys.argv[1] if len(sys.argv) > 1 else "cuda"
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    model = get_model("efficientnet_lite0", device=device)
    print(model)
    failed = 0
    for prior in PRIORS:
        try:
            print(f"{prior}: {check_prior(model, prior, steps)}", flush=True)
        except Exception as error:  # every prior is reported, then the exit status says it failed
            failed += 1
            print(f"{prior}: FAILED {type(error).__name__}: {error}", flush=True)
    inversion = invert(model, torch.rand(3, 128, 128), {"blocks.5": 1.0}, "fourier", steps=steps, size=128)
    print(f"invert: relative error {inversion.final_error:.3f} after {steps} steps")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
