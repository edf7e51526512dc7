"""Studies over several real servers on loopback: fan-out, a server killed, the runner killed, and the report.

The servers run in this process (as in the client tests), except the one the kill test
SIGKILLs, which runs in a process of its own; the runner always runs as the ``priorviz``
command in its own process, as a user runs it. Jobs are tiny (64 px, 6-8 steps), so that
the whole file takes seconds of CPU.
"""

from __future__ import annotations

import contextlib
import csv
import json
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import headless_chromium
import numpy as np
import pytest
import torch
from client_server import free_port, loopback_config, serving
from headless_chromium import difference
from PIL import Image
from scipy import ndimage
from service_fixtures import wait_until

from priorviz.errors import UnavailableError
from priorviz.photographs import imagenet_photographs
from priorviz.spectrum import spectral_slope
from priorviz_client import Client, StudyError, StudyStore, load_spec, parse_spec
from priorviz_client._study._report import PLOT_FRAME, PLOT_FRAME_WIDTH, photograph_slopes
from service.server import PriorvizServer

ROOT = Path(__file__).resolve().parents[1]
PRIORVIZ = Path(sys.executable).with_name("priorviz")
SMOKE = """
[study]
name = "smoke"
models = ["efficientnet_lite0"]
objectives = ["logit:1", "logit:948"]
priors = ["fourier", "pixel"]
seeds = [0, 1]
size = 64
steps = 8
"""
"""The issue's minimal spec, as written."""
GRID = """
[study]
name = "{name}"
models = ["efficientnet_lite0"]
objectives = ["logit:1", "blocks.5:3..4"]
priors = ["fourier", "pixel"]
seeds = "0..3"
size = 64
steps = {steps}
{extra}
"""
"""3 objectives x 2 priors x 4 seeds: 24 jobs."""
VICTIM_OPTIONS = ("--held-out-model", "none", "--torch-threads", "1")
"""The server the kill test SIGKILLs runs in its own process, like any server of a fleet."""


@pytest.fixture(scope="module")
def servers() -> Iterator[list[PriorvizServer]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(serving(loopback_config(metric_transform_samples=4))) for _ in range(3)]


def address(server: PriorvizServer) -> str:
    return f"127.0.0.1:{server.port}"


def target_args(*addresses: str) -> list[str]:
    return [argument for target in addresses for argument in ("--target", target)]


def write_grid(directory: Path, name: str, *, steps: int = 6, extra: str = "") -> Path:
    spec = directory / f"{name}.toml"
    spec.write_text(GRID.format(name=name, steps=steps, extra=extra))
    return spec


def study(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PRIORVIZ), "study", *map(str, args)], capture_output=True, text=True, timeout=180, check=False
    )


def start_study(*args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(PRIORVIZ), "study", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def status(db: Path) -> dict[str, Any]:
    shown = study("status", "--db", db, "--json")
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def query(db: Path, sql: str, *parameters: object) -> list[tuple[Any, ...]]:
    """Reads the store as any other reader would, while a runner may be writing it."""
    with contextlib.closing(sqlite3.connect(db, isolation_level=None, timeout=10)) as connection:
        return connection.execute(sql, parameters).fetchall()


def poll(db: Path, sql: str, *parameters: object) -> list[tuple[Any, ...]]:
    """``query`` for a store that a starting runner may not have made yet (no rows until it has)."""
    try:
        return query(db, sql, *parameters) if db.exists() else []
    except sqlite3.OperationalError:
        return []


def succeeded_jobs(servers: list[PriorvizServer]) -> float:
    """Visualize jobs the servers finished, from their own Prometheus counters."""
    labels = {"rpc": "Visualize", "outcome": "succeeded"}
    return sum(server.metrics.registry.get_sample_value("priorviz_jobs_total", labels) or 0 for server in servers)


# -- the spec and the store, without servers ---------------------------------------------


def test_the_issues_minimal_spec_is_a_grid_of_eight_jobs() -> None:
    spec = parse_spec(SMOKE)
    jobs = spec.jobs()
    assert (spec.name, len(jobs), len({job.id for job in jobs})) == ("smoke", 8, 8)
    assert {(job.objective, job.prior, job.seed) for job in jobs} == {
        (objective, prior, seed)
        for objective in ("logit:1", "logit:948")
        for prior in ("fourier", "pixel")
        for seed in (0, 1)
    }
    assert [job.id for job in parse_spec(SMOKE).jobs()] == [job.id for job in jobs], "ids are stable"


def test_ranges_prior_setups_and_what_a_job_id_depends_on() -> None:
    spec = parse_spec("""
        [study]
        name = "grid"
        models = ["efficientnet_lite0"]
        objectives = ["logit:0..2", "blocks.10:0..1 - 0.5*blocks.10:3"]
        priors = ["fourier", { name = "fourier", label = "fourier+statistics", statistics_prior_weight = 0.01 },
                  { name = "gan_faces", options = { clip = 2.0, norm_penalty = 0.5 }, steps = 16 }]
        seeds = "0..1"
        size = 64
        steps = 8
    """)
    assert spec.objectives == (
        "logit:0",
        "logit:1",
        "logit:2",
        "blocks.10:0 - 0.5*blocks.10:3",
        "blocks.10:1 - 0.5*blocks.10:3",
    )
    jobs = spec.jobs()
    assert len(jobs) == 5 * 3 * 2 and len({job.id for job in jobs}) == len(jobs)
    gan = next(job for job in jobs if job.prior == "gan_faces")
    assert (gan.steps, dict(gan.prior_options)) == (16, {"clip": "2.0", "norm_penalty": "0.5"})
    statistics = next(job for job in jobs if job.label == "fourier+statistics")
    assert statistics.render_options()["statistics_prior_weight"] == 0.01
    relabelled = parse_spec(spec.text.replace('label = "fourier+statistics"', 'label = "with statistics"'))
    assert {job.id for job in relabelled.jobs()} == {job.id for job in jobs}, "a label is no setting"
    more_steps = parse_spec(spec.text.replace("steps = 8", "steps = 9"))
    assert not {job.id for job in more_steps.jobs() if job.prior == "fourier"} & {job.id for job in jobs}


def test_the_ported_first_study_is_its_grid() -> None:
    spec = load_spec(ROOT / "studies" / "first_study.toml")
    assert len(spec.objectives) == 8 and [prior.label for prior in spec.priors] == [
        "fourier",
        "fourier+statistics",
        "gan",
    ]
    assert len(spec.jobs()) == 8 * 3 * 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("steps = 8", "stepz = 8"), r"unknown key\(s\) \['stepz'\]"),
        (('"logit:1"', '"logit:3..1"'), r"range 3\.\.1 runs backwards"),
        (('priors = ["fourier", "pixel"]', 'priors = ["fourier", "fourier"]'), "labels must differ"),
        (
            ('priors = ["fourier", "pixel"]', 'priors = ["fourier", { name = "fourier", label = "again" }]'),
            "ask for the same job",
        ),
        (("seeds = [0, 1]", "seeds = [-1]"), r"study\.seeds"),
        (('name = "smoke"\n', ""), r"study\.name is missing"),
    ],
)
def test_a_bad_spec_is_refused_naming_the_key(change: tuple[str, str], message: str) -> None:
    with pytest.raises(StudyError, match=message):
        parse_spec(SMOKE.replace(*change)).jobs()


def test_a_database_holds_one_study(tmp_path: Path) -> None:
    with StudyStore.open(tmp_path / "study.db", create=True) as store:
        store.begin(parse_spec(SMOKE))
        with pytest.raises(StudyError, match="holds study 'smoke'"):
            store.begin(parse_spec(SMOKE.replace('name = "smoke"', 'name = "other"')))
        store.begin(parse_spec(SMOKE.replace("seeds = [0, 1]", "seeds = [0, 1, 2]")))
        assert store.status()["total"] == 12, "a grown spec adds its new jobs and keeps the old ones"
    missing = study("status", "--db", tmp_path / "missing.db")
    assert missing.returncode == 1 and "no study database" in missing.stderr


def test_the_photographs_slopes_are_the_engines() -> None:
    try:
        photographs, _ = imagenet_photographs(64)
    except UnavailableError:
        pytest.skip("foolbox's photographs are not installed")
    size, slopes = photograph_slopes(60)
    assert size == 64
    with torch.no_grad():
        assert slopes == pytest.approx(spectral_slope(photographs).tolist(), abs=1e-3)


# -- fan-out over real servers -----------------------------------------------------------


def test_the_smoke_spec_runs_on_two_servers(servers: list[PriorvizServer], tmp_path: Path) -> None:
    spec = tmp_path / "smoke.toml"
    spec.write_text(SMOKE)
    done = study("run", spec, *target_args(address(servers[0]), address(servers[1])), "--db", tmp_path / "smoke.db")
    assert done.returncode == 0, done.stderr
    shown = status(tmp_path / "smoke.db")
    assert (shown["total"], shown["done"], shown["failed"]) == (8, 8, 0)
    assert set(shown["by_target"]) == {address(servers[0]), address(servers[1])}


@pytest.fixture(scope="module")
def fanned_out(
    servers: list[PriorvizServer], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    """The 24-job grid run once over the three servers, with the held-out metric (the report plots it)."""
    directory = tmp_path_factory.mktemp("fanout")
    spec = write_grid(directory, "fanout", extra='held_out_model = "efficientnet_lite1"')
    db = directory / "fanout.db"
    return spec, db, study("run", spec, *target_args(*map(address, servers)), "--db", db, "--log-interval", "0.2")


def test_every_server_gets_jobs(
    servers: list[PriorvizServer], fanned_out: tuple[Path, Path, subprocess.CompletedProcess[str]]
) -> None:
    spec, db, run = fanned_out
    assert run.returncode == 0, run.stderr
    shown = status(db)
    assert (shown["total"], shown["done"], shown["failed"], shown["pending"]) == (24, 24, 0, 0)
    by_target = shown["by_target"]
    assert set(by_target) == set(map(address, servers))
    assert all(count > 0 for count in by_target.values()) and sum(by_target.values()) == 24
    assert "3 server(s) with 3 worker(s) in all; 3 at once" in run.stderr
    assert re.search(r"fanout: 24/24 \[#+\] 100% elapsed \S+ ETA ", run.stderr), run.stderr
    summary = run.stderr.strip().splitlines()[-1]
    assert all(re.search(rf"{re.escape(address(server))} \d+ \([\d.]+/min\)", summary) for server in servers), summary
    pngs = sorted((db.parent / "fanout-images").glob("*.png"))
    assert {png.name.split("_")[0] for png in pngs} == {job.id for job in load_spec(spec).jobs()} and len(pngs) == 24


def test_export_writes_one_row_per_job_and_metric(
    fanned_out: tuple[Path, Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    _, db, _ = fanned_out
    exported = study("export", "--db", db, "--csv", tmp_path / "study.csv")
    assert exported.returncode == 0, exported.stderr
    with open(tmp_path / "study.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    metrics = {row["metric"] for row in rows}
    assert {"objective", "robustness", "spectral_slope", "held_out_probability"} <= metrics
    keys = [(row["job_id"], row["image"], row["metric"]) for row in rows]
    assert len(keys) == len(set(keys)) and len({row["job_id"] for row in rows}) == 24
    assert {row["class_name"] for row in rows if row["objective"] == "logit:1"} == {"goldfish"}
    assert all(float(row["value"]) == float(row["value"]) for row in rows if row["metric"] == "objective")


def test_a_server_killed_mid_study_leaves_its_jobs_to_the_others(servers: list[PriorvizServer], tmp_path: Path) -> None:
    port = free_port()
    victim = subprocess.Popen(
        [sys.executable, "-m", "service.server", "--host", "127.0.0.1", "--port", str(port), *VICTIM_OPTIONS],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    runner = None
    try:
        with Client(f"127.0.0.1:{port}") as client:
            client.wait_until_serving(timeout=120)
        db = tmp_path / "killed.db"
        spec = write_grid(tmp_path, "server_killed", steps=8)
        runner = start_study(
            "run", spec, *target_args(address(servers[0]), address(servers[1]), f"127.0.0.1:{port}"), "--db", db
        )
        running_there: list[tuple[Any, ...]] = []

        def victim_runs_a_job() -> bool:
            sql = "SELECT id FROM jobs WHERE status = 'running' AND target = ?"
            running_there.extend(poll(db, sql, f"127.0.0.1:{port}"))
            return bool(running_there)

        wait_until(victim_runs_a_job, timeout=60, interval=0.005)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        _, errors = runner.communicate(timeout=120)
    finally:
        victim.kill()
        if runner is not None and runner.poll() is None:
            runner.kill()
    assert runner.returncode == 0, errors
    assert status(db)["done"] == 24
    [(cut_off,)] = running_there[:1]
    [(target, attempts)] = query(db, "SELECT target, attempts FROM jobs WHERE id = ?", cut_off)
    assert target in {address(servers[0]), address(servers[1])} and attempts >= 2
    assert "sending again" in errors and "UNAVAILABLE" in errors


def test_the_runner_killed_then_rerun_finishes_exactly_the_grid(servers: list[PriorvizServer], tmp_path: Path) -> None:
    spec = write_grid(tmp_path, "runner_killed", steps=8)
    db = tmp_path / "runner_killed.db"
    arguments = ("run", spec, *target_args(*map(address, servers)), "--db", db)
    runner = start_study(*arguments)
    try:
        wait_until(lambda: len(poll(db, "SELECT id FROM jobs WHERE status = 'done'")) >= 6, timeout=60)
    finally:
        runner.send_signal(signal.SIGKILL)
        runner.communicate(timeout=10)
    before = {
        row[0]: row for row in query(db, "SELECT id, finished_at, target, attempts FROM jobs WHERE status = 'done'")
    }
    assert 6 <= len(before) < 24, "the kill came mid-study"
    # What the dead runner had sent ends on the servers (cancelled or finished) before the rerun.
    wait_until(lambda: all(s.jobs.running_count == 0 and s.jobs.queue_length == 0 for s in servers), timeout=30)
    finished_before = succeeded_jobs(servers)

    rerun = study(*arguments)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{24 - len(before)} jobs to run ({len(before)} of 24 done before)" in rerun.stderr
    assert succeeded_jobs(servers) - finished_before == 24 - len(before), "a finished job was sent again"
    rows = query(db, "SELECT id, finished_at, target, attempts, status FROM jobs")
    assert sorted(str(row[0]) for row in rows) == sorted(job.id for job in load_spec(spec).jobs())
    assert all(row[4] == "done" for row in rows)
    assert all(before[row[0]] == row[:4] for row in rows if row[0] in before), "a finished job changed"
    images = sorted(path.name for path in (db.parent / "runner_killed-images").iterdir())
    assert len(images) == 24 and all(name.endswith("_0.png") for name in images)
    again = study("run", spec, "--target", "127.0.0.1:1", "--db", db)
    assert again.returncode == 0 and "nothing to run" in again.stderr, "a finished study needs no server"


# -- the report --------------------------------------------------------------------------


def test_the_report_shows_its_plots_in_chromium(
    fanned_out: tuple[Path, Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    _, db, _ = fanned_out
    out = tmp_path / "report"
    done = study("report", "--db", db, "--out", out)
    assert done.returncode == 0, done.stderr
    plots = sorted((out / "plots").glob("*.png"))
    assert {"metrics_by_prior", "by_class_objective", "held_out_vs_objective", "spectral_slopes", "image_grid"} <= {
        plot.stem for plot in plots
    }
    page = (out / "report.html").read_text(encoding="utf-8")
    assert sorted(re.findall(r'<img src="([^"]+)"', page)) == [f"plots/{plot.name}" for plot in plots]
    assert (out / "study.csv").stat().st_size > 0

    height = sum(Image.open(plot).height for plot in plots) + 3000
    screenshot = headless_chromium.screenshot(out / "report.html", tmp_path / "report.png", height=height)
    shown = _framed(np.asarray(Image.open(screenshot).convert("RGB")))
    assert len(shown) == len(plots), f"{len(shown)} framed plots on screen for {len(plots)} PNGs"
    for plot in plots:
        with Image.open(plot) as image:
            errors = [difference(region, image, side=48) for region in shown if region.shape[:2] == image.size[::-1]]
        assert errors and min(errors) < 8, f"{plot.name} is not shown in the report"


def _framed(picture: np.ndarray) -> list[np.ndarray]:
    """The insides of the plot frames: rectangles drawn exactly in the frame colour."""
    labels, _ = ndimage.label(np.all(picture == PLOT_FRAME, axis=-1))
    border = PLOT_FRAME_WIDTH
    return [
        picture[rows.start + border : rows.stop - border, columns.start + border : columns.stop - border]
        for rows, columns in ndimage.find_objects(labels)
        if rows.stop - rows.start > 4 * border and columns.stop - columns.start > 4 * border
    ]
