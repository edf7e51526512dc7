"""What the gRPC Visualize call costs over the same job run in process.

The server runs in its own process (warm: its default model is loaded before it reports
SERVING); the same job runs in this process through the very code a server worker runs
(``codec.visualize_request``, ``validation.check_request``, then ``run_job`` with its
events encoded by ``codec.visualize_events``), minus the queue and the network. The two
alternate, repeat after repeat, with the same thread count, so that other load on the
machine hits both alike. The held-out-model metric is off in both.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objective", default="blocks.8:17")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    args = parser.parse_args()

    from priorviz.models import get_model
    from priorviz_client import Client
    from service import codec
    from service._proto.priorviz.v1 import priorviz_pb2 as pb
    from service.config import Limits
    from service.runner import run_job
    from service.validation import check_request

    torch.set_num_threads(args.threads)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(args.threads)}
    server = subprocess.Popen(
        [sys.executable, "-m", "service.server", "--port", str(port), "--torch-threads", str(args.threads),
         "--held-out-model", "none", "--log-level", "WARNING"],
        cwd=REPO, env=env,
    )
    try:
        client = Client(f"127.0.0.1:{port}")
        client.wait_until_serving(timeout=300)
        options = {"size": args.size, "steps": args.steps, "seed": args.seed, "held_out_model": "none"}
        request = pb.VisualizeRequest(
            settings=pb.RenderSettings(
                objective_text=args.objective, image_size=args.size, steps=args.steps, seed=args.seed, held_out_model="none",
                transforms=pb.TRANSFORM_MODE_STANDARD,
            ),
            prior="fourier",
        )

        def over_grpc(steps: int) -> tuple[float, float]:
            started = time.perf_counter()
            result = client.visualize(args.objective, **{**options, "steps": steps})
            return time.perf_counter() - started, result.render_seconds + result.metrics_seconds

        def in_process(steps: int) -> tuple[float, float]:
            started = time.perf_counter()
            job = pb.VisualizeRequest()
            job.CopyFrom(request)
            job.settings.steps = steps
            limits = Limits()
            spec = check_request(codec.visualize_request(job, limits), limits, get_model, "efficientnet_lite0", "none")
            events: list[object] = []

            def encode(event: object) -> None:
                events.extend(codec.visualize_events(spec, event))

            run_job(spec, encode, lambda: False, lambda seconds: None, 16)
            result = events[-1].result
            return time.perf_counter() - started, result.render_seconds + result.metrics_seconds

        over_grpc(2), in_process(2)  # warm both sides
        grpc_times, local_times, ratios, outside_compute = [], [], [], []
        for repeat in range(args.repeats):
            pair = {}
            for name, call in (("grpc", over_grpc), ("in_process", in_process))[:: 1 if repeat % 2 == 0 else -1]:
                pair[name] = call(args.steps)
            (grpc_wall, server_compute), (local_wall, _) = pair["grpc"], pair["in_process"]
            grpc_times.append(grpc_wall)
            local_times.append(local_wall)
            ratios.append(grpc_wall / local_wall)
            outside_compute.append(grpc_wall / server_compute)
            print(f"  repeat {repeat + 1}/{args.repeats}: gRPC {grpc_wall:.2f} s (server's render+metrics {server_compute:.2f} s), "
                  f"in process {local_wall:.2f} s; gRPC/in process {ratios[-1]:.3f}", flush=True)
        client.close()
    finally:
        server.terminate()
        server.wait(timeout=60)

    def spread(values: list[float]) -> dict[str, float]:
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    summary = {"grpc_s": spread(grpc_times), "in_process_s": spread(local_times), "grpc_over_in_process": spread(ratios),
               "grpc_over_server_compute": spread(outside_compute),
               "settings": {k: str(v) for k, v in vars(args).items()}}
    print(f"\n== grpc: Visualize {args.objective}, {args.size}px, {args.steps} steps, {args.threads} thread(s)")
    print(f"  gRPC call / same job in process: median {summary['grpc_over_in_process']['median']:.3f} "
          f"[{summary['grpc_over_in_process']['min']:.3f}..{summary['grpc_over_in_process']['max']:.3f}]")
    print(f"  gRPC call / the server's own render+metrics time: median {summary['grpc_over_server_compute']['median']:.3f} "
          f"[{summary['grpc_over_server_compute']['min']:.3f}..{summary['grpc_over_server_compute']['max']:.3f}]")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "grpc.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
