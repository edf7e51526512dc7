"""Run priorviz's render loop on EfficientNet-Lite0 and time it, plus the floor it cannot beat.

One process per measurement, so that the peak resident memory is this job's alone. Several
channels run as ONE batched job (``per_batch``: channel i drives image i), the way a study
of many channels would use the service. The floor is the forward and backward pass of the
truncated network alone, timed in the same process on an input of the size the standard
transforms produce on average.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time

import torch

from priorviz.models import get_model
from priorviz.objectives import Channel, Objective, evaluate, per_batch
from priorviz.render import RenderConfig, render
from priorviz.transforms import standard_transforms

PAD, JITTER, FINAL_JITTER = 12, 8, 4
"""The standard transforms' sizes: their output is ``size + 2*PAD - JITTER - FINAL_JITTER`` on average."""


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def channel_objective(layer: str, channels: list[int]) -> Objective:
    if len(channels) == 1:
        return Channel(layer, channels[0])
    return per_batch([Channel(layer, channel) for channel in channels])


def floor_seconds(model, objective: Objective, batch: int, side: int, repeats: int) -> list[float]:
    """Forward (stopped at the objective's deepest layer) plus backward to the image, per step."""
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, side, side, generator=generator).to(model.device)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        seen = images.detach().requires_grad_(True)
        evaluate(objective, model.activations(seen, objective.layers())).sum().backward()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--layer", required=True)
    parser.add_argument("--channels", required=True, help="comma-separated; one batched job for all")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--floor-repeats", type=int, default=12)
    parser.add_argument("--images-out", required=True, help="where the final images go (.pt, NCHW in [0, 1])")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model = get_model("efficientnet_lite0")
    channels = [int(c) for c in args.channels.split(",")]
    objective = channel_objective(args.layer, channels)
    batch = len(channels)
    baseline_rss = peak_rss_mb()

    transforms = standard_transforms(pad=PAD, jitter=JITTER, final_jitter=FINAL_JITTER)
    render(model, objective, batch=batch, size=args.size, config=RenderConfig(steps=2, seed=args.seed + 1000, transforms=transforms))

    started_cpu = time.process_time()
    result = render(
        model, objective, batch=batch, size=args.size, config=RenderConfig(steps=args.steps, seed=args.seed, transforms=transforms)
    )
    cpu = time.process_time() - started_cpu
    job_rss = peak_rss_mb()
    torch.save(result.images, args.images_out)

    side = args.size + 2 * PAD - JITTER - FINAL_JITTER
    floor = floor_seconds(model, objective, batch, side, args.floor_repeats)
    json.dump(
        {
            "peer": "priorviz",
            "wall_s": result.seconds,
            "cpu_s": cpu,
            "steps": args.steps,
            "peak_rss_mb": job_rss,
            "baseline_rss_mb": baseline_rss,
            "threads": torch.get_num_threads(),
            "engine_values": result.values.tolist(),
            "floor_step_s_median": statistics.median(floor),
            "floor_step_s_min": min(floor),
            "floor_side": side,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
