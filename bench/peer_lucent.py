"""Run Lucent (torch-lucent) on priorviz's EfficientNet-Lite0 and time it; runs in Lucent's own venv.

Lucent is not a project dependency: ``bench/setup_lucent.sh`` installs it into
``bench/.venv-lucent``. This script must not import priorviz's packages (their dependencies
are not in that venv), so it loads the one file that defines the network,
``priorviz/models/efficientnet_lite.py`` (plain torch), by path, and the same weights file
that priorviz loads (its path comes from the command line). The network is frozen and in
eval mode, exactly as priorviz's ``TargetModel`` holds it, so both peers optimize the same
function; Lucent gets it behind a [0, 1] -> [-1, 1] input layer because its own
preprocessing assumes torchvision's ImageNet normalization.

Each job is ``lucent.optvis.render.render_vis`` with Lucent's defaults for everything the
issue fixes: Fourier parameterization with decorrelated colour, Adam at 0.05, Lucent's
standard transforms. Several channels run one after the other, as a Lucent user would.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

REPO = Path(__file__).resolve().parent.parent


def load_architecture():
    """Import priorviz's EfficientNet-Lite definition by file path (it needs only torch)."""
    spec = importlib.util.spec_from_file_location("efficientnet_lite", REPO / "priorviz" / "models" / "efficientnet_lite.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


class MinusOneToOne(nn.Module):
    """Lite0's input scaling in front of the network; Lucent names its layers ``net_<module>``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images * 2.0 - 1.0)


LUCENT_FLOOR_SIDE = 255
"""Mean side of what Lucent's standard transforms feed the network from a 224 image: pad 12
gives 248, its jitter translates without cropping, and its random scale pads back to 248
below 1 and grows the image above 1 (up to 273)."""


def floor_seconds(model: nn.Module, layer_module: nn.Module, channel: int, repeats: int) -> list[float]:
    """What one Lucent step cannot beat: the whole forward pass (Lucent never stops it
    early) and the backward pass from the hooked layer to the image."""
    captured: list[Tensor] = []
    handle = layer_module.register_forward_hook(lambda _module, _inputs, output: captured.append(output))
    images = torch.rand(1, 3, LUCENT_FLOOR_SIDE, LUCENT_FLOOR_SIDE, generator=torch.Generator().manual_seed(0))
    times = []
    try:
        for _ in range(repeats):
            captured.clear()
            started = time.perf_counter()
            model(images.detach().requires_grad_(True))
            captured[0][:, channel].mean().backward()
            times.append(time.perf_counter() - started)
    finally:
        handle.remove()
    return times


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", required=True, help="the Lite0 .pth that priorviz loads")
    parser.add_argument("--layer", required=True)
    parser.add_argument("--channels", required=True, help="comma-separated; one Lucent run per channel")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--floor-repeats", type=int, default=12)
    parser.add_argument("--images-out", required=True, help="where the final images go (.pt, NCHW in [0, 1])")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    from lucent.optvis import objectives, param, render, transform

    lite = load_architecture()
    net = lite.load_efficientnet_lite("lite0", args.weights).eval().requires_grad_(False)
    model = MinusOneToOne(net).eval()
    layer = "net_" + args.layer.replace(".", "_")
    channels = [int(c) for c in args.channels.split(",")]
    baseline_rss = peak_rss_mb()

    def job(channel: int, steps: int) -> np.ndarray:
        images = render.render_vis(
            model,
            objectives.channel(layer, channel),
            param_f=lambda: param.image(args.size, fft=True, decorrelate=True),
            transforms=transform.standard_transforms,
            thresholds=(steps,),
            preprocess=False,
            progress=False,
            show_image=False,
        )
        return images[-1]

    torch.manual_seed(args.seed + 1000)
    np.random.seed(args.seed + 1000)
    job(channels[0], 2)  # warm-up: allocator and kernels, as in a long-running process

    finals = []
    started_wall, started_cpu = time.perf_counter(), time.process_time()
    for index, channel in enumerate(channels):
        torch.manual_seed(args.seed + index)
        np.random.seed(args.seed + index)
        finals.append(job(channel, args.steps))
    wall, cpu = time.perf_counter() - started_wall, time.process_time() - started_cpu

    job_rss = peak_rss_mb()
    images = torch.from_numpy(np.concatenate(finals)).permute(0, 3, 1, 2).contiguous()
    torch.save(images, args.images_out)
    floor = floor_seconds(model, net.get_submodule(args.layer), channels[0], args.floor_repeats)
    json.dump(
        {
            "peer": "lucent",
            "wall_s": wall,
            "cpu_s": cpu,
            "steps": args.steps * len(channels),
            "peak_rss_mb": job_rss,
            "baseline_rss_mb": baseline_rss,
            "threads": torch.get_num_threads(),
            "floor_step_s_median": statistics.median(floor),
            "floor_step_s_min": min(floor),
            "floor_side": LUCENT_FLOOR_SIDE,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
