"""The render step's floor (forward to the layer + backward to the image) of two engine revisions.

Keeps engine performance changes honest: the revision given by ``--before`` is exported
with ``git archive`` into a scratch folder, and the two trees are timed in alternating fresh
processes on the same inputs, so that other load on the machine hits both alike.

    PYTHONPATH=. .venv/bin/python bench/floor_ab.py --before 06c03dc
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

MEASURE = r"""
import json, sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
from priorviz.models import get_model
model = get_model("efficientnet_lite0")
out = {}
for batch, layer in ((1, "blocks.8"), (8, "blocks.10")):
    images = torch.rand(batch, 3, 236, 236, generator=torch.Generator().manual_seed(0))
    times = []
    for _ in range(int(sys.argv[2])):
        started = time.process_time()
        seen = images.clone().requires_grad_(True)
        model.activations(seen, [layer])[layer][:, 17].mean().backward()
        times.append(time.process_time() - started)
    out[f"{layer} batch {batch}"] = min(times[1:])
print(json.dumps(out))
"""


def export(revision: str, into: Path) -> None:
    archive = subprocess.run(["git", "archive", revision, "service", "priors"], cwd=REPO, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    # Generated stubs are not in git; the model code does not need them, the package may import them.
    stubs = REPO / "service" / "_proto"
    if stubs.exists() and not (into / "service" / "_proto").exists():
        (into / "service" / "_proto").symlink_to(stubs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--before", required=True, help="git revision of the engine to compare with the working tree")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--inner", type=int, default=8, help="timed passes per process (the minimum is kept)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as scratch:
        before = Path(scratch)
        export(args.before, before)
        for repeat in range(args.repeats):
            for name, tree in (("before", before), ("after", REPO))[:: 1 if repeat % 2 == 0 else -1]:
                env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(args.threads)}
                done = subprocess.run([sys.executable, "-c", MEASURE, str(args.threads), str(args.inner)],
                                      cwd=tree, env=env, check=True, capture_output=True, text=True)
                results[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"floor, CPU ms per forward+backward (min per process; median [min..max] over {args.repeats} processes)")
    for key in results["before"][0]:
        cells = []
        for name in ("before", "after"):
            values = [run[key] * 1000 for run in results[name]]
            cells.append(f"{name} {statistics.median(values):6.1f} [{min(values):.1f}..{max(values):.1f}]")
        ratios = [b[key] / a[key] for b, a in zip(results["before"], results["after"])]
        print(f"  {key:18s} " + "  ".join(cells) + f"  before/after {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
