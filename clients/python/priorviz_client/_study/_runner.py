"""Running a study: every job the store has not finished, spread over the fleet through gRPC's load balancing.

Each server is asked first for its id and worker count; as many jobs run at once as the
servers have workers in all. A job that a server refuses for now (RESOURCE_EXHAUSTED: its
queue is full) or that meets no server (UNAVAILABLE: down, unreachable, shutting down, or
killed in the middle of the job) goes back to pending and is sent again after a backoff;
round_robin then gives it to a server that is still up. Any other error fails the job (it
would fail again), and so does the ``MAX_SENDS``-th refusal. When no server has taken a job
for ``give_up_after`` seconds the run stops; what is pending stays for the next run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from priorviz_client._async_client import AsyncClient
from priorviz_client._connection import RetryPolicy
from priorviz_client._exceptions import ResourceExhaustedError, RpcError, StudyError, UnavailableError
from priorviz_client._study._progress import StudyProgress
from priorviz_client._study._spec import StudyJob, StudySpec
from priorviz_client._study._store import StudyStore
from priorviz_client._study._targets import LOAD_BALANCING, Fleet

RESEND_BACKOFF = RetryPolicy(max_attempts=1, initial_backoff=0.5, max_backoff=30.0)
"""Pauses before a job is sent again: 0.5 s doubling to 30 s, with full jitter."""
MAX_SENDS = 20
"""A job refused this often while other jobs run fails: something other than a busy or dead server is wrong."""
PROBE_TIMEOUT = 10.0


@dataclass(frozen=True)
class Server:
    label: str
    """How the store names it: the target it was reached through."""
    server_id: str
    workers: int


class StudyRunner:
    """One run of a spec against a fleet, writing to a store; ``await run()``."""

    def __init__(
        self,
        spec: StudySpec,
        store: StudyStore,
        fleet: Fleet,
        progress: StudyProgress,
        *,
        connection: Mapping[str, Any] | None = None,
        concurrency: int | None = None,
        retry_failed: bool = False,
        give_up_after: float = 300.0,
    ) -> None:
        self._spec = spec
        self._store = store
        self._fleet = fleet
        self._progress = progress
        self._connection = dict(connection or {})
        self._concurrency = concurrency
        self._retry_failed = retry_failed
        self._give_up_after = give_up_after
        self._labels: dict[str, str] = {}
        self._last_taken = time.monotonic()

    async def run(self) -> dict[str, Any]:
        """Runs what is left of the study; returns the store's status afterwards."""
        self._store.begin(self._spec)
        jobs = self._store.jobs_to_run(retry_failed=self._retry_failed)
        status = self._store.status()
        if not jobs:
            self._progress.log(f"{self._spec.name}: all {status['total']} jobs finished before; nothing to run")
            return status
        servers = await self._probe()
        self._labels = {server.server_id: server.label for server in servers}
        workers = sum(server.workers for server in servers)
        concurrency = self._concurrency or workers
        self._progress.log(
            f"{self._spec.name}: {len(jobs)} jobs to run ({status['done']} of {status['total']} done before) on "
            f"{len(servers)} server(s) with {workers} worker(s) in all; {concurrency} at once"
        )
        async with AsyncClient(self._fleet.channel_target, load_balancing=LOAD_BALANCING, **self._connection) as client:
            await self._record_descriptions(client)
            self._progress.start(status["total"], status["total"] - len(jobs))
            queue: asyncio.Queue[StudyJob] = asyncio.Queue()
            for job in jobs:
                queue.put_nowait(job)
            self._last_taken = time.monotonic()
            try:
                async with asyncio.TaskGroup() as group:
                    for _ in range(min(concurrency, len(jobs))):
                        group.create_task(self._work(client, queue))
            except* StudyError as errors:
                raise errors.exceptions[0] from None
            finally:
                self._progress.close()
        return self._store.status()

    async def _probe(self) -> list[Server]:
        """Asks each server directly (not through the balancer) for its id and workers; those that answer count."""

        async def ask(address: str) -> Server | None:
            settings = {**self._connection, "timeout": PROBE_TIMEOUT, "retry": RetryPolicy(max_attempts=3)}
            try:
                async with AsyncClient(address, **settings) as client:
                    info = await client.server_info()
            except RpcError as error:
                self._progress.log(f"{address}: no answer ({error}); it gets jobs only if it comes up")
                return None
            return Server(address, info.server_id, info.workers)

        answers = await asyncio.gather(*(ask(address) for address in self._fleet.servers))
        servers = [server for server in answers if server is not None]
        if not servers:
            raise StudyError(f"no server answered at {', '.join(self._fleet.servers)}")
        return servers

    async def _record_descriptions(self, client: AsyncClient) -> None:
        """What reports need to say without a server: class names ("logit:836 (sunglasses)"), what each
        metric means, and the licences of the priors (the face GAN's data is for non-commercial research)."""
        for model in self._spec.models:
            try:
                info = await client.describe_model(model)
            except RpcError as error:
                raise StudyError(f"model {model!r}: {error}") from None
            self._store.set_class_names(model, info.class_names)
        self._store.set_note("metric_descriptions", await client.metric_descriptions())
        used = {prior.name for prior in self._spec.priors}
        priors = await client.priors(include_unavailable=True)
        self._store.set_note("licences", {prior.name: prior.licence for prior in priors if prior.name in used})

    async def _work(self, client: AsyncClient, queue: asyncio.Queue[StudyJob]) -> None:
        while not queue.empty():
            await self._run(client, queue.get_nowait())

    async def _run(self, client: AsyncClient, job: StudyJob) -> None:
        """Sends the job until a server finishes it or it fails for good; the store follows every step."""
        attempt = 0
        while True:
            call = client.visualize_stream(
                job.objective,
                prior=job.prior,
                prior_options=dict(job.prior_options),
                timeout=self._spec.deadline,
                **job.render_options(),
            )
            target = "no server"
            try:
                server_id = await call.server_id()
                if server_id:
                    self._last_taken = time.monotonic()
                    target = self._labels.get(server_id, server_id)
                self._store.mark_running(job.id, target, server_id)
                result = await call.result()
            except (UnavailableError, ResourceExhaustedError) as error:
                attempt += 1
                if attempt < MAX_SENDS:
                    self._store.mark_pending(job.id)
                    self._stop_if_stalled(error)
                    self._progress.log(f"sending again: {_describe(job)} ({error.code.name} from {target})")
                    await asyncio.sleep(RESEND_BACKOFF.backoff(attempt))
                    continue
                self._fail(job, f"refused {attempt} times, last: {error}")
                return
            except RpcError as error:
                self._fail(job, str(error))
                return
            except asyncio.CancelledError:
                call.cancel()
                self._store.mark_pending(job.id)
                raise
            self._last_taken = time.monotonic()
            paths = await asyncio.to_thread(self._store.save_images, job.id, result.images)
            self._store.mark_done(job.id, result, paths)
            self._progress.job_done(target)
            return

    def _stop_if_stalled(self, error: RpcError) -> None:
        if time.monotonic() - self._last_taken > self._give_up_after:
            raise StudyError(
                f"no server has taken a job for {self._give_up_after:g} s (last: {error}); "
                "the pending jobs stay for the next run"
            )

    def _fail(self, job: StudyJob, error: str) -> None:
        self._store.mark_failed(job.id, error)
        self._progress.job_failed(_describe(job), error)


def _describe(job: StudyJob) -> str:
    return f"{job.model} {job.objective} / {job.label} / seed {job.seed}"
