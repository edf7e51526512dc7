"""The job queue: a bounded wait list and worker threads that run jobs off the gRPC threads.

A gRPC handler wraps its work in a ``Job``, submits it (refused at once with ``QueueFullError``
when the wait list is full), then relays the job's events to its client until the job ends.
Cancelling a job (client cancel, deadline, disconnect or shutdown) sets a flag that the render
loop checks between steps, so a running job stops within one step and its worker takes the
next one; a job still waiting is withdrawn from the list at once. A job also stops once it has
run for ``max_seconds``. Its events wait in a bounded list: a worker whose client reads slower
than the job produces waits for it, instead of piling events up in memory.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from priorviz.errors import CancelledError

Emit = Callable[[object], None]
StopCheck = Callable[[], bool]
Work = Callable[[Emit, StopCheck], None]


class QueueFullError(Exception):
    """Every worker is busy and the wait list holds its maximum number of jobs."""


class QueueClosedError(Exception):
    """The server is shutting down and takes no new jobs."""


class JobCancelledError(CancelledError):
    """The job was cancelled before it finished (by its client, its deadline or shutdown)."""


@dataclass(frozen=True)
class QueuePositionEvent:
    """The job waits; ``jobs_ahead`` jobs will start before it."""

    jobs_ahead: int


_END = object()
MAX_PENDING_EVENTS = 32
"""Events of one job that may wait for its RPC to send them (previews can be megabytes each)."""
_STOP_POLL_SECONDS = 0.25
"""How often a worker waiting to emit looks at the job's time limit."""


class Job:
    """One unit of work and the channel its events travel through to the waiting RPC."""

    def __init__(
        self,
        work: Work,
        name: str = "job",
        *,
        max_seconds: float | None = None,
        max_pending_events: int = MAX_PENDING_EVENTS,
    ) -> None:
        self.work = work
        self.name = name
        self.max_seconds = max_seconds
        """Running time (from the start on a worker) after which the job is stopped; None: no limit."""
        self.timed_out = False
        self.error: BaseException | None = None
        self.submitted_at = time.monotonic()
        self.started_at: float | None = None
        self._events: collections.deque[object] = collections.deque()
        self._events_changed = threading.Condition()
        self._max_pending_events = max_pending_events
        self._cancelled = threading.Event()
        self._done = threading.Event()
        self._on_cancel: Callable[[Job], None] | None = None

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def stop_requested(self) -> bool:
        """The render loop's stop check: True once the job is cancelled or has used up its time."""
        if self._cancelled.is_set():
            return True
        if (
            self.max_seconds is not None
            and self.started_at is not None
            and time.monotonic() - self.started_at > self.max_seconds
        ):
            self.timed_out = True
        return self.timed_out

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def cancel(self) -> None:
        """Ask the job to stop; safe to call from any thread, any number of times."""
        if self._cancelled.is_set():
            return
        self._cancelled.set()
        with self._events_changed:
            self._events_changed.notify_all()
        if self._on_cancel is not None:
            self._on_cancel(self)

    def emit(self, event: object) -> None:
        """Hand ``event`` to the RPC; waits while the pending list is full, and drops it once the job must stop."""
        with self._events_changed:
            while len(self._events) >= self._max_pending_events:
                if self.stop_requested():
                    return
                self._events_changed.wait(_STOP_POLL_SECONDS)
            self._events.append(event)
            self._events_changed.notify_all()

    def offer(self, event: object) -> None:
        """Hand ``event`` to the RPC unless the pending list is full; never waits.

        For events a later one supersedes (queue positions), sent from under the queue's lock.
        """
        with self._events_changed:
            if len(self._events) < self._max_pending_events:
                self._events.append(event)
                self._events_changed.notify_all()

    def finish(self, error: BaseException | None) -> None:
        if self._done.is_set():
            return
        self.error = error
        self._done.set()
        with self._events_changed:
            self._events.append(_END)
            self._events_changed.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def events(self) -> Iterator[object]:
        """The job's events until it ends; the caller then reads ``error``."""
        while True:
            with self._events_changed:
                while not self._events:
                    self._events_changed.wait()
                event = self._events.popleft()
                self._events_changed.notify_all()
            if event is _END:
                return
            yield event


OnFinished = Callable[[Job, "BaseException | None"], None]


class JobQueue:
    """``workers`` threads taking jobs from a wait list of at most ``max_queue`` jobs."""

    def __init__(
        self,
        workers: int,
        max_queue: int,
        *,
        on_finished: OnFinished | None = None,
        on_queue_length: Callable[[int], None] | None = None,
        worker_setup: Callable[[int], None] | None = None,
    ) -> None:
        if workers < 1 or max_queue < 0:
            raise ValueError(f"need at least one worker and a non-negative queue, got {workers}, {max_queue}")
        self.workers, self.max_queue = workers, max_queue
        self._on_finished = on_finished
        self._on_queue_length = on_queue_length
        self._worker_setup = worker_setup
        self._pending: collections.deque[Job] = collections.deque()
        self._running: set[Job] = set()
        self._condition = threading.Condition()
        self._closed = False
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._work_loop, args=(index,), name=f"priorviz-worker-{index}", daemon=True)
            for index in range(workers)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    @property
    def queue_length(self) -> int:
        with self._condition:
            return len(self._pending)

    @property
    def running_count(self) -> int:
        with self._condition:
            return len(self._running)

    def submit(self, job: Job) -> int:
        """Queue ``job``; returns how many jobs will start before it. Never blocks."""
        with self._condition:
            if self._closed:
                raise QueueClosedError("the server is shutting down")
            idle_workers = self.workers - len(self._running)
            if len(self._pending) - idle_workers >= self.max_queue:
                raise QueueFullError(
                    f"all {self.workers} workers are busy and {len(self._pending)} jobs are waiting "
                    f"(queue limit {self.max_queue})"
                )
            job._on_cancel = self._withdraw
            self._pending.append(job)
            ahead = max(0, len(self._pending) - 1 - idle_workers)
            self._condition.notify()
            self._report_length()
        return ahead

    def _withdraw(self, job: Job) -> None:
        with self._condition:
            if job not in self._pending:
                return
            self._pending.remove(job)
            self._announce_positions()
            self._report_length()
        self._complete(job, JobCancelledError("cancelled while waiting in the queue"))

    def _work_loop(self, index: int) -> None:
        if self._worker_setup is not None:
            self._worker_setup(index)
        while True:
            with self._condition:
                while not self._pending and not self._stopping:
                    self._condition.wait()
                if not self._pending:
                    return
                job = self._pending.popleft()
                self._running.add(job)
                self._announce_positions()
                self._report_length()
            job.started_at = time.monotonic()
            error: BaseException | None = None
            try:
                if job.cancelled:
                    raise JobCancelledError("cancelled before it started")
                job.work(job.emit, job.stop_requested)
            except BaseException as raised:  # the job's outcome travels to its RPC, never up this thread
                error = raised
            with self._condition:
                self._running.discard(job)
                self._condition.notify_all()
            self._complete(job, error)

    def _complete(self, job: Job, error: BaseException | None) -> None:
        job.finish(error)
        if self._on_finished is not None:
            self._on_finished(job, error)

    def _announce_positions(self) -> None:
        idle_workers = self.workers - len(self._running)
        for position, waiting in enumerate(self._pending):
            waiting.offer(QueuePositionEvent(max(0, position - idle_workers)))

    def _report_length(self) -> None:
        if self._on_queue_length is not None:
            self._on_queue_length(len(self._pending))

    def close(self) -> None:
        """Take no new jobs; jobs already accepted still run."""
        with self._condition:
            self._closed = True

    def drain(self, grace_seconds: float) -> bool:
        """Close, wait up to ``grace_seconds`` for accepted jobs, cancel the rest; True if all finished."""
        self.close()
        deadline = time.monotonic() + grace_seconds
        with self._condition:
            while (self._pending or self._running) and time.monotonic() < deadline:
                self._condition.wait(timeout=max(0.0, deadline - time.monotonic()))
            finished = not self._pending and not self._running
            leftover = list(self._pending) + list(self._running)
        for job in leftover:
            job.cancel()
        return finished

    def stop(self, timeout: float | None = None) -> None:
        """End the workers once the wait list is empty (call after ``drain``)."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        for thread in self._threads:
            if thread.ident is not None:  # never started when the server stops during its warm-up
                thread.join(timeout)
