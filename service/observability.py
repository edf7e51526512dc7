"""Operations signals: Prometheus metrics on their own port and structured (JSON) logs.

Each server owns its own metric registry, so several servers in one process (tests) do not
collide, and the endpoint runs in a thread of this process (nothing forks).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

OUTCOMES = ("succeeded", "cancelled", "timed_out", "rejected", "invalid", "failed")
"""Job outcomes: done; stopped by client, deadline or shutdown; past --max-job-seconds; queue full; bad
request (or numbers that made the objective non-finite); server fault."""


class ServiceMetrics:
    """The service's Prometheus instruments."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.jobs = Counter("priorviz_jobs", "Jobs by RPC and outcome", ["rpc", "outcome"], registry=self.registry)
        self.queue_length = Gauge("priorviz_queue_length", "Jobs waiting for a worker", registry=self.registry)
        self.running = Gauge("priorviz_jobs_running", "Jobs running on a worker", registry=self.registry)
        self.step_seconds = Histogram(
            "priorviz_step_seconds",
            "Wall time of one optimization step",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        self.job_seconds = Histogram(
            "priorviz_job_seconds",
            "Wall time of a job from start on a worker to its end",
            buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900),
            registry=self.registry,
        )
        for outcome in OUTCOMES:
            for rpc in ("Visualize", "Compare"):
                self.jobs.labels(rpc=rpc, outcome=outcome)
        self._http: WSGIServer | None = None

    def serve(self, host: str, port: int) -> int:
        """Start the /metrics endpoint; returns the bound port (``port`` 0 picks one)."""
        self._http, _thread = start_http_server(port, addr=host, registry=self.registry)
        return self._http.server_port

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any ``extra`` fields."""

    _STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({key: value for key, value in vars(record).items() if key not in self._STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_json_logging(level: str = "INFO") -> None:
    """Send every log record to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
