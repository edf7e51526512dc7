"""The study's store: one SQLite file (WAL) with the spec and every job's status, metrics and trace.

Images go beside it, in ``<stem>-images/``, one PNG per job and batch image. Writes are
ordered so that a kill at any moment leaves a consistent store: a job's PNGs are written
first (under a temporary name, synced, then renamed), and only then is the job marked done,
in one transaction with its metrics. A job that a run finds 'running' was cut off by a
crash: it goes back to 'pending' and runs again, overwriting whatever PNGs it had written.
A 'done' job is never sent again, and the job id is the table's key, so nothing is counted
twice. One runner per database at a time; any number of readers (status, export, report).
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from priorviz_client._exceptions import StudyError
from priorviz_client._results import Visualization
from priorviz_client._study._spec import StudyJob, StudySpec

STATUSES = ("pending", "running", "done", "failed")
CSV_COLUMNS = (
    "job_id",
    "model",
    "objective",
    "class_name",
    "prior",
    "prior_name",
    "seed",
    "server",
    "image",
    "metric",
    "value",
)
CLASS_OBJECTIVE = re.compile(r"(?:logit|prob):(\d+)")
"""An objective that is one class, whose name reports can show beside it."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS study (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS models (name TEXT PRIMARY KEY, class_names TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    label TEXT NOT NULL,
    model TEXT NOT NULL,
    objective TEXT NOT NULL,
    prior TEXT NOT NULL,
    seed INTEGER NOT NULL,
    settings TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    target TEXT,
    server_id TEXT,
    error TEXT,
    started_at REAL,
    finished_at REAL,
    prior_kind TEXT,
    objective_text TEXT,
    render_seconds REAL,
    metrics_seconds REAL,
    objective_values TEXT,
    traces TEXT,
    batch_metrics TEXT,
    images TEXT
);
CREATE TABLE IF NOT EXISTS metrics (
    job_id TEXT NOT NULL REFERENCES jobs(id),
    image INTEGER NOT NULL,
    metric TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (job_id, image, metric)
);
"""


@dataclass(frozen=True)
class DoneJob:
    """A finished job as reports read it: its place in the grid, where it ran, its numbers and image files."""

    id: str
    label: str
    prior: str
    prior_kind: str
    model: str
    objective: str
    seed: int
    target: str
    metrics: tuple[dict[str, float], ...]
    """Per batch image; a metric the server could not compute (NaN) is left out."""
    images: tuple[Path, ...]
    render_seconds: float


@dataclass(frozen=True)
class FailedJob:
    id: str
    label: str
    model: str
    objective: str
    seed: int
    error: str


class StudyStore:
    """A study's SQLite database and its image folder; ``open`` it, use it as a context manager."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self.images_dir = path.with_name(f"{path.stem}-images")
        self._db = connection

    @classmethod
    def open(cls, path: Path, *, create: bool = False) -> StudyStore:
        """Opens ``path``; ``create`` makes the database (and its image folder) when it does not exist."""
        if not create and not path.is_file():
            raise StudyError(f"no study database at {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # Autocommit: every write below is its own explicit transaction.
            connection = sqlite3.connect(path, isolation_level=None, timeout=30.0)
            connection.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk before the next job starts, so even a power cut loses no finished job.
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute("PRAGMA foreign_keys=ON")
            if create:
                connection.executescript(_SCHEMA)
            elif connection.execute("SELECT name FROM sqlite_master WHERE name = 'jobs'").fetchone() is None:
                raise StudyError(f"{path} is not a study database")
        except sqlite3.DatabaseError as error:
            raise StudyError(f"{path}: {error}") from None
        store = cls(path, connection)
        if create:
            store.images_dir.mkdir(exist_ok=True)
        return store

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> StudyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- the runner's writes -----------------------------------------------------------

    def begin(self, spec: StudySpec) -> None:
        """Records the spec and adds its jobs that the store lacks; jobs cut off by a crash become pending.

        A database holds one study: a spec of another name is refused. A changed spec of the same
        name adds its new jobs and keeps every job already there.
        """
        jobs = spec.jobs()
        with self._transaction() as db:
            row = db.execute("SELECT value FROM study WHERE key = 'name'").fetchone()
            if row is not None and row[0] != spec.name:
                raise StudyError(f"{self.path} holds study {row[0]!r}, not {spec.name!r}; use another --db")
            db.executemany(
                "INSERT INTO study (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [("name", spec.name), ("spec", spec.text)],
            )
            db.executemany(
                "INSERT INTO jobs (id, position, label, model, objective, prior, seed, settings)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET position = excluded.position, label = excluded.label",
                [
                    (job.id, position, job.label, job.model, job.objective, job.prior, job.seed, _dumps(job.settings()))
                    for position, job in enumerate(jobs)
                ],
            )
            db.execute("UPDATE jobs SET status = 'pending' WHERE status = 'running'")
        for leftover in self.images_dir.glob("*.tmp"):
            leftover.unlink()

    def set_note(self, key: str, value: object) -> None:
        """Keeps something the servers said that reports need later without a server (as JSON)."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO study (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (f"note:{key}", _dumps(value)),
            )

    def set_class_names(self, model: str, class_names: Sequence[str]) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO models (name, class_names) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET class_names = excluded.class_names",
                (model, _dumps(list(class_names))),
            )

    def jobs_to_run(self, *, retry_failed: bool = False) -> list[StudyJob]:
        """Pending jobs (and failed ones with ``retry_failed``), in grid order."""
        statuses = ("pending", "failed") if retry_failed else ("pending",)
        rows = self._db.execute(
            f"SELECT label, settings FROM jobs WHERE status IN ({','.join('?' * len(statuses))}) ORDER BY position",
            statuses,
        )
        return [StudyJob.from_settings(label, json.loads(settings)) for label, settings in rows]

    def mark_running(self, job_id: str, target: str, server_id: str) -> None:
        """The job was taken by a server: which one, and one attempt more."""
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET status = 'running', attempts = attempts + 1, target = ?, server_id = ?,"
                " started_at = ?, error = NULL WHERE id = ?",
                (target, server_id, time.time(), job_id),
            )

    def mark_pending(self, job_id: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE jobs SET status = 'pending' WHERE id = ? AND status = 'running'", (job_id,))

    def mark_failed(self, job_id: str, error: str) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET status = 'failed', error = ?, finished_at = ? WHERE id = ?",
                (error, time.time(), job_id),
            )

    def save_images(self, job_id: str, images: Sequence[Image.Image]) -> list[str]:
        """Writes the job's PNGs atomically (temporary file, fsync, rename); their paths relative to the database."""
        paths = []
        for index, image in enumerate(images):
            final = self.images_dir / f"{job_id}_{index}.png"
            partial = final.with_name(final.name + ".tmp")
            with open(partial, "wb") as file:
                image.save(file, format="PNG")
                file.flush()
                os.fsync(file.fileno())
            os.replace(partial, final)
            paths.append(final.relative_to(self.path.parent).as_posix())
        return paths

    def mark_done(self, job_id: str, result: Visualization, images: Sequence[str]) -> None:
        """The job's numbers and image paths, and its status, in one transaction: all of it or none."""
        metric_rows = [
            (job_id, index, key, value if math.isfinite(value) else None)
            for index, metrics in enumerate(result.metrics)
            for key, value in metrics.items()
        ]
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET status = 'done', finished_at = ?, prior_kind = ?, objective_text = ?,"
                " render_seconds = ?, metrics_seconds = ?, objective_values = ?, traces = ?, batch_metrics = ?,"
                " images = ? WHERE id = ?",
                (
                    time.time(),
                    result.prior_kind.value,
                    result.objective,
                    result.render_seconds,
                    result.metrics_seconds,
                    _dumps(list(result.objective_values)),
                    _dumps([list(trace) for trace in result.traces]),
                    _dumps(dict(result.batch_metrics)),
                    _dumps(list(images)),
                    job_id,
                ),
            )
            db.execute("DELETE FROM metrics WHERE job_id = ?", (job_id,))
            db.executemany("INSERT INTO metrics (job_id, image, metric, value) VALUES (?, ?, ?, ?)", metric_rows)

    # -- reads -------------------------------------------------------------------------

    def name(self) -> str:
        row = self._db.execute("SELECT value FROM study WHERE key = 'name'").fetchone()
        return str(row[0]) if row else self.path.stem

    def spec_text(self) -> str:
        row = self._db.execute("SELECT value FROM study WHERE key = 'spec'").fetchone()
        return str(row[0]) if row else ""

    def note(self, key: str, default: Any) -> Any:
        row = self._db.execute("SELECT value FROM study WHERE key = ?", (f"note:{key}",)).fetchone()
        return json.loads(row[0]) if row else default

    def status(self) -> dict[str, Any]:
        """Counts by status, and the finished jobs of each server (by the target it was reached through)."""
        counts = dict.fromkeys(STATUSES, 0)
        counts.update(self._db.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall())
        by_target = self._db.execute(
            "SELECT target, COUNT(*) FROM jobs WHERE status = 'done' GROUP BY target ORDER BY target"
        ).fetchall()
        return {
            "study": self.name(),
            "total": sum(counts.values()),
            **counts,
            "by_target": dict(by_target),
        }

    def class_names(self) -> dict[str, list[str]]:
        return {name: json.loads(names) for name, names in self._db.execute("SELECT name, class_names FROM models")}

    def done_jobs(self) -> list[DoneJob]:
        metrics: dict[str, list[dict[str, float]]] = {}
        for job_id, image, metric, value in self._db.execute(
            "SELECT job_id, image, metric, value FROM metrics ORDER BY job_id, image"
        ):
            per_image = metrics.setdefault(job_id, [])
            while len(per_image) <= image:
                per_image.append({})
            if value is not None:
                per_image[image][metric] = value
        rows = self._db.execute(
            "SELECT id, label, prior, prior_kind, model, objective, seed, target, images, render_seconds"
            " FROM jobs WHERE status = 'done' ORDER BY position"
        )
        return [
            DoneJob(
                id=job_id,
                label=label,
                prior=prior,
                prior_kind=kind,
                model=model,
                objective=objective,
                seed=seed,
                target=target,
                metrics=tuple(metrics.get(job_id, ())),
                images=tuple(self.path.parent / image for image in json.loads(images)),
                render_seconds=render_seconds,
            )
            for job_id, label, prior, kind, model, objective, seed, target, images, render_seconds in rows
        ]

    def failed_jobs(self) -> list[FailedJob]:
        rows = self._db.execute(
            "SELECT id, label, model, objective, seed, error FROM jobs WHERE status = 'failed' ORDER BY position"
        )
        return [FailedJob(*row) for row in rows]

    def export_csv(self, path: Path) -> int:
        """One row per finished job, batch image and metric, in grid order; returns the number of rows.

        Written to a temporary file and renamed, so a reader never sees half a file.
        """
        class_names = self.class_names()
        rows = self._db.execute(
            "SELECT jobs.id, jobs.model, jobs.objective, jobs.label, jobs.prior, jobs.seed, jobs.target,"
            " metrics.image, metrics.metric, metrics.value"
            " FROM jobs JOIN metrics ON metrics.job_id = jobs.id"
            " WHERE jobs.status = 'done' ORDER BY jobs.position, metrics.image, metrics.metric"
        )
        partial = path.with_name(path.name + ".tmp")
        count = 0
        with open(partial, "w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(CSV_COLUMNS)
            for job_id, model, objective, label, prior, seed, target, image, metric, value in rows:
                name = class_name(class_names.get(model, []), objective)
                value_text = "nan" if value is None else repr(value)
                writer.writerow([job_id, model, objective, name, label, prior, seed, target, image, metric, value_text])
                count += 1
        os.replace(partial, path)
        return count


def class_name(names: Sequence[str], objective: str) -> str:
    """The class a ``logit:N`` or ``prob:N`` objective names; empty for any other objective."""
    match = CLASS_OBJECTIVE.fullmatch(objective)
    return names[int(match[1])] if match and int(match[1]) < len(names) else ""


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))
