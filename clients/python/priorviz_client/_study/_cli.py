"""``priorviz study``: run a spec over many servers into a SQLite store, and read the store back.

    priorviz study run SPEC.toml --target HOST:PORT [--target HOST:PORT ...] --db study.db
    priorviz study run SPEC.toml --target dns:///priorviz.NAMESPACE.svc.cluster.local:50051 --db study.db
    priorviz study status --db study.db [--json]
    priorviz study export --db study.db --csv study.csv
    priorviz study report --db study.db --out report/

Running the same ``run`` again resumes: finished jobs are kept, interrupted ones run again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from priorviz_client._connection import DEFAULT_TARGET, TARGET_ENV
from priorviz_client._exceptions import StudyError
from priorviz_client._study import run_study
from priorviz_client._study._spec import load_spec
from priorviz_client._study._store import StudyStore


def add_study_parser(commands: Any) -> None:
    """The ``study`` command and its four subcommands, on the main parser's subcommands."""
    study = commands.add_parser("study", help="run a grid of jobs over many servers into SQLite; status, CSV, report")
    actions = study.add_subparsers(dest="study_command", required=True, metavar="ACTION")

    run = actions.add_parser("run", help="run (or resume) a study spec over one or more servers")
    run.add_argument("spec", type=Path, help="the study's TOML spec")
    run.add_argument(
        "--target",
        dest="study_targets",
        action="append",
        metavar="HOST:PORT",
        help=f"a server (repeat for several), or one dns:///NAME:PORT naming them all (default: ${TARGET_ENV} or "
        f"{DEFAULT_TARGET})",
    )
    _add_db(run)
    run.add_argument("--concurrency", type=int, help="jobs at once (default: the servers' workers in all)")
    run.add_argument("--retry-failed", action="store_true", help="send the jobs that failed in earlier runs again")
    run.add_argument(
        "--give-up-after",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="stop when no server has taken a job for this long (default 300); pending jobs stay for the next run",
    )
    run.add_argument(
        "--log-interval", type=float, default=60.0, metavar="SECONDS", help="seconds between throughput lines"
    )

    status = actions.add_parser("status", help="jobs done, failed and pending, and each server's finished jobs")
    _add_db(status)
    status.add_argument("--json", action="store_true", help="print JSON")

    export = actions.add_parser("export", help="write one CSV row per job, image and metric")
    _add_db(export)
    export.add_argument("--csv", type=Path, required=True, metavar="OUT.csv")

    report = actions.add_parser("report", help="write an HTML report with plots, and the CSV (needs [study])")
    _add_db(report)
    report.add_argument("--out", type=Path, required=True, metavar="DIR")


def _add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", type=Path, required=True, metavar="FILE", help="the study's SQLite database")


def study_main(args: argparse.Namespace) -> int:
    command = {"run": _run, "status": _status, "export": _export, "report": _report}[args.study_command]
    return command(args)


def _run(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    targets = args.study_targets or [args.target or os.environ.get(TARGET_ENV) or DEFAULT_TARGET]
    if args.concurrency is not None and args.concurrency < 1:
        raise StudyError("--concurrency must be at least 1")
    status = asyncio.run(
        run_study(
            spec,
            args.db,
            targets,
            concurrency=args.concurrency,
            retry_failed=args.retry_failed,
            give_up_after=args.give_up_after,
            log_interval=args.log_interval,
            token=args.token,
            tls=args.tls,
            root_certificates=args.ca_cert,
            server_name=args.server_name,
            timeout=args.timeout,
        )
    )
    if status["failed"]:
        print(
            f"priorviz: {status['failed']} of {status['total']} jobs failed (`priorviz study report` lists them; "
            "--retry-failed sends them again)",
            file=sys.stderr,
        )
        return 1
    return 0


def _status(args: argparse.Namespace) -> int:
    with StudyStore.open(args.db) as store:
        status = store.status()
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(
        f"{status['study']}: {status['done']}/{status['total']} done, {status['failed']} failed, "
        f"{status['pending']} pending, {status['running']} running"
    )
    for target, count in status["by_target"].items():
        print(f"  {target}: {count} done")
    return 0


def _export(args: argparse.Namespace) -> int:
    with StudyStore.open(args.db) as store:
        rows = store.export_csv(args.csv)
    print(f"wrote {rows} rows to {args.csv}")
    return 0


def _report(args: argparse.Namespace) -> int:
    try:
        from priorviz_client._study._report import write_report
    except ImportError as error:
        raise StudyError(f"the report needs matplotlib: pip install 'priorviz-client[study]' ({error})") from None
    with StudyStore.open(args.db) as store:
        page = write_report(store, args.out)
    print(f"wrote {page}")
    return 0
