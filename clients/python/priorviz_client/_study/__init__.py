"""Studies: a TOML grid of jobs run over many servers into a SQLite store that loses nothing, then reported.

import asyncio
from priorviz_client import load_spec, run_study

status = asyncio.run(run_study(load_spec("first_study.toml"), "study.db", ["10.0.0.5:50051", "10.0.0.6:50051"]))
print(status["done"], "of", status["total"], "done")
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from priorviz_client._study._progress import StudyProgress
from priorviz_client._study._runner import StudyRunner
from priorviz_client._study._spec import PriorSetup, StudyJob, StudySpec, load_spec, parse_spec
from priorviz_client._study._store import StudyStore
from priorviz_client._study._targets import fleet


async def run_study(
    spec: StudySpec,
    db: str | Path,
    targets: Sequence[str],
    *,
    concurrency: int | None = None,
    retry_failed: bool = False,
    give_up_after: float = 300.0,
    log_interval: float = 60.0,
    **connection: Any,
) -> dict[str, Any]:
    """Runs (or resumes) ``spec`` over ``targets`` into the database ``db``; returns its status afterwards.

    ``connection`` takes the clients' keywords (``token``, ``tls``, ``root_certificates``,
    ``server_name``, ``timeout``). Progress and each server's throughput go to stderr.
    """
    with StudyStore.open(Path(db), create=True) as store:
        runner = StudyRunner(
            spec,
            store,
            fleet(targets),
            StudyProgress(spec.name, log_interval=log_interval),
            connection=connection,
            concurrency=concurrency,
            retry_failed=retry_failed,
            give_up_after=give_up_after,
        )
        return await runner.run()


__all__ = ["PriorSetup", "StudyJob", "StudySpec", "StudyStore", "load_spec", "parse_spec", "run_study"]
