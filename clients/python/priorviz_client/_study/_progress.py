"""What a study run tells a person: one bar (jobs done of total, ETA) and log lines with each server's throughput.

On a terminal the bar is redrawn in place and log lines appear above it; into a file or a
pipe the bar is written as a line at every tenth of the study and at most every
``log_interval`` seconds otherwise, so a log stays readable.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import TextIO

BAR_WIDTH = 30


def duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class StudyProgress:
    """Counts the run's finished jobs per server and shows them; the ETA comes from this run's own pace."""

    def __init__(self, name: str, *, stream: TextIO | None = None, log_interval: float = 60.0) -> None:
        self._name = name
        self._stream = stream or sys.stderr
        self._live = self._stream.isatty()
        self._log_interval = log_interval
        self._total = 0
        self._done_before = 0
        self._done = 0
        self._failed = 0
        self._started = time.monotonic()
        self._by_target: Counter[str] = Counter()
        self._window: Counter[str] = Counter()
        self._window_started = self._started
        self._last_line = self._started
        self._last_tenth = 0

    def start(self, total: int, done_before: int) -> None:
        self._total, self._done_before = total, done_before
        self._started = self._window_started = self._last_line = time.monotonic()
        self._last_tenth = 10 * done_before // max(total, 1)
        self._draw(force=True)

    def log(self, message: str) -> None:
        if self._live:
            self._stream.write("\r\033[K")
        self._stream.write(f"{message}\n")
        self._draw(force=self._live)

    def job_done(self, target: str) -> None:
        self._done += 1
        self._by_target[target] += 1
        self._window[target] += 1
        if time.monotonic() - self._window_started >= self._log_interval:
            self._log_throughput()
        self._draw()

    def job_failed(self, description: str, error: str) -> None:
        self._failed += 1
        self.log(f"failed: {description}: {error}")

    def close(self) -> None:
        """Ends the bar's line, then each server's jobs over the whole run."""
        if self._live:
            self._stream.write("\n")
        elapsed = time.monotonic() - self._started
        per_server = ", ".join(
            f"{target} {count} ({count / max(elapsed, 1e-9) * 60:.1f}/min)"
            for target, count in sorted(self._by_target.items())
        )
        self._stream.write(f"{self._name}: {self._done} jobs done in {duration(elapsed)}; {per_server or 'none'}\n")
        self._stream.flush()

    def _log_throughput(self) -> None:
        now = time.monotonic()
        minutes = max(now - self._window_started, 1e-9) / 60
        rates = ", ".join(f"{target} {count / minutes:.1f}/min" for target, count in sorted(self._window.items()))
        self._window.clear()
        self._window_started = now
        self.log(f"throughput over the last {duration(minutes * 60)}: {rates}")

    def _draw(self, force: bool = False) -> None:
        finished = self._done_before + self._done + self._failed
        tenth = 10 * finished // max(self._total, 1)
        now = time.monotonic()
        if not (force or self._live or tenth > self._last_tenth or now - self._last_line >= self._log_interval):
            return
        self._last_tenth, self._last_line = tenth, now
        share = finished / max(self._total, 1)
        filled = round(BAR_WIDTH * share)
        elapsed = now - self._started
        remaining = self._total - finished
        pace = elapsed / self._done if self._done else None
        eta = duration(pace * remaining) if pace is not None else "--:--:--"
        failed = f", {self._failed} failed" if self._failed else ""
        line = (
            f"{self._name}: {finished}/{self._total} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {share:4.0%}"
            f" elapsed {duration(elapsed)} ETA {eta}{failed}"
        )
        self._stream.write(f"\r\033[K{line}" if self._live else f"{line}\n")
        self._stream.flush()
