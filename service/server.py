"""The priorviz.v1 gRPC server: the Visualizer service, health, reflection, auth, TLS, metrics.

Handlers validate on the gRPC thread, hand work to the ``JobQueue`` and relay its events;
no model runs on gRPC threads: they do only the cheap metadata calls and the dataset examples
that the activation store answers (a few array reductions and PNGs). Readiness: the health
service answers NOT_SERVING until the default model is loaded and a warm-up step ran, and
again from the moment a graceful shutdown begins. A client that stops answering keepalive
pings (frozen, or gone without closing its connection) is dropped within two keepalive
intervals, which cancels its jobs; a second SIGTERM ends the process without waiting.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar, cast

import grpc
import torch
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from priors.base import PriorInfo
from priors.folders import AUTO, FOLDER_KINDS, register_folder_prior
from priorviz import metrics as result_metrics
from priorviz.activation_store import ActivationStore, default_store_dir
from priorviz.errors import CancelledError, UnavailableError, clip_text
from priorviz.image_input import EMBEDDED_SET, ImageSet, embedded_image_set
from priorviz.models._api import (
    ModelNotFoundError,
    default_model_name,
    get_model,
    list_models,
    resolve_device,
    set_model_cache_size,
)
from priorviz.models.checkpoint import PREFIX as CHECKPOINT_PREFIX
from priorviz.models.target import TargetModel
from priorviz.objectives import ClassLogit
from priorviz.render import RenderConfig, render
from service import codec, validation
from service._proto.priorviz.v1 import priorviz_pb2 as pb
from service._proto.priorviz.v1 import priorviz_pb2_grpc as pb_grpc
from service.auth import BearerTokenInterceptor
from service.checkpoints import CheckpointDirectories
from service.config import Limits, ServerConfig
from service.decoding import DecodeGuardInterceptor
from service.errors import CLIENT_FAULTS, status_of
from service.jobs import Job, JobQueue, QueueClosedError, QueueFullError, QueuePositionEvent
from service.observability import ServiceMetrics, configure_json_logging
from service.runner import (
    claim_worker_indices,
    release_worker_indices,
    run_examples,
    run_inversion,
    run_job,
    set_worker_index,
    stored_answer,
)
from service.validation import (
    NO_HELD_OUT,
    ExamplesRequest,
    ExamplesSpec,
    InversionSpec,
    InvertRequest,
    JobSpec,
    RenderRequest,
    load_model,
)

SERVICE_NAME = "priorviz.v1.Visualizer"
WARM_UP_SIZE = 64
SERVER_ID_METADATA = "priorviz-server-id"
"""Initial-metadata key naming the server that runs a Visualize or Compare call (see GetServerInfo)."""
CLIENT_PING_INTERVAL_MS = 10_000
"""The most often a client's keepalive may ping (its ``grpc.keepalive_time_ms`` >= this)."""
MAX_STATUS_DETAILS = 1000
"""Longest status message sent: gRPC answers RESOURCE_EXHAUSTED instead of a status whose
trailing metadata passes the client's limit (16 KiB by default)."""
log = logging.getLogger("priorviz.server")
Event = TypeVar("Event")
"""A stream's event message: ``pb.VisualizeEvent`` or ``pb.CompareEvent``."""


class VisualizerServicer(pb_grpc.VisualizerServicer):
    """The RPCs of priorviz.v1."""

    def __init__(self, server: PriorvizServer) -> None:
        self._server = server
        self._config = server.config

    def ListModels(self, request: pb.ListModelsRequest, context: grpc.ServicerContext) -> pb.ListModelsResponse:
        return codec.model_list(list_models(), self._server.default_model)

    def DescribeModel(
        self, request: pb.DescribeModelRequest, context: grpc.ServicerContext
    ) -> pb.DescribeModelResponse:
        try:
            model = load_model(self._server.load_model, request.model or self._server.default_model, "model")
        except Exception as error:
            self._server.refuse("DescribeModel", error, context)
        return codec.model_description(model, request.omit_class_names)

    def ListPriors(self, request: pb.ListPriorsRequest, context: grpc.ServicerContext) -> pb.ListPriorsResponse:
        return codec.prior_list(
            validation.known_priors().values(), request.include_unavailable, result_metrics.METRIC_DESCRIPTIONS
        )

    def GetServerInfo(
        self, request: pb.GetServerInfoRequest, context: grpc.ServicerContext
    ) -> pb.GetServerInfoResponse:
        return pb.GetServerInfoResponse(
            server_id=self._server.server_id, workers=self._config.workers, max_queue=self._config.max_queue
        )

    def Visualize(self, request: pb.VisualizeRequest, context: grpc.ServicerContext) -> Iterator[pb.VisualizeEvent]:
        context.send_initial_metadata(((SERVER_ID_METADATA, self._server.server_id),))
        limits = self._server.config.limits
        return self._server.stream_job(
            "Visualize",
            lambda: codec.visualize_request(request, limits),
            codec.visualize_events,
            pb.VisualizeEvent,
            context,
        )

    def Compare(self, request: pb.CompareRequest, context: grpc.ServicerContext) -> Iterator[pb.CompareEvent]:
        context.send_initial_metadata(((SERVER_ID_METADATA, self._server.server_id),))
        limits = self._server.config.limits
        return self._server.stream_job(
            "Compare", lambda: codec.compare_request(request, limits), codec.compare_events, pb.CompareEvent, context
        )

    def Invert(self, request: pb.InvertRequest, context: grpc.ServicerContext) -> Iterator[pb.InvertEvent]:
        context.send_initial_metadata(((SERVER_ID_METADATA, self._server.server_id),))
        return self._server.stream_job(
            "Invert",
            lambda: codec.invert_request(request),
            codec.invert_events,
            pb.InvertEvent,
            context,
            check=self._server.check_invert,
            run=run_inversion,
        )

    def DatasetExamples(
        self, request: pb.DatasetExamplesRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.DatasetExamplesEvent]:
        context.send_initial_metadata(((SERVER_ID_METADATA, self._server.server_id),))
        limits = self._server.config.limits
        return self._server.stream_job(
            "DatasetExamples",
            lambda: codec.examples_request(request, limits),
            codec.examples_events,
            pb.DatasetExamplesEvent,
            context,
            check=self._server.check_examples,
            run=run_examples,
            answer_now=stored_answer,
        )


class PriorvizServer:
    """One running service: gRPC server, job queue, health, metrics endpoint."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        self.default_model = config.default_model or default_model_name()
        self.default_held_out = config.held_out_model
        self.metrics = ServiceMetrics()
        self.checkpoints = CheckpointDirectories(config.checkpoint_dirs)
        self.image_sets = offered_image_sets(config.image_sets)
        self.activation_store = ActivationStore(
            Path(config.store_dir) if config.store_dir else default_store_dir(), config.store_max_bytes
        )
        set_model_cache_size(config.max_cached_models)
        self.health = health.HealthServicer()
        self._worker_indices = claim_worker_indices(config.workers)
        self.jobs = JobQueue(
            config.workers,
            config.max_queue,
            on_finished=self._job_finished,
            on_queue_length=self.metrics.queue_length.set,
            worker_setup=self._worker_setup,
        )
        self.port = 0
        self.metrics_port: int | None = None
        self.ready = threading.Event()
        self.warm_up_thread: threading.Thread | None = None
        self.startup_error: BaseException | None = None
        self._shutting_down = threading.Event()
        self._stopped = threading.Event()
        self._grpc = self._build_grpc_server()
        # Unique even for servers that share a host name and port (pods, restarts).
        self.server_id = f"{socket.gethostname()}:{self.port}/{uuid.uuid4().hex[:8]}"

    # -- lifecycle -------------------------------------------------------------------------

    def _build_grpc_server(self) -> grpc.Server:
        config = self.config
        options = [
            ("grpc.max_send_message_length", config.max_message_bytes),
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.keepalive_time_ms", config.keepalive_seconds * 1000),
            # A client that leaves a ping unanswered this long is gone or frozen: its connection is
            # closed, which cancels its jobs. gRPC 1.85 reads the ping timeout from
            # grpc.http2.ping_timeout_ms; the keepalive one is set too for older cores.
            ("grpc.keepalive_timeout_ms", config.keepalive_seconds * 1000),
            ("grpc.http2.ping_timeout_ms", config.keepalive_seconds * 1000),
            ("grpc.keepalive_permit_without_calls", 1),
            # Clients may ping to keep a silent stream open through proxies: accept one ping
            # per CLIENT_PING_INTERVAL_MS without counting it as abuse (the default is 5 min).
            ("grpc.http2.min_recv_ping_interval_without_data_ms", CLIENT_PING_INTERVAL_MS),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.so_reuseport", 0),
        ]
        # The token is checked first: an unauthenticated caller gets UNAUTHENTICATED whatever its bytes.
        interceptors: list[grpc.ServerInterceptor] = [BearerTokenInterceptor(config.token)] if config.token else []
        interceptors.append(DecodeGuardInterceptor())
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=config.grpc_threads, thread_name_prefix="priorviz-grpc"),
            interceptors=interceptors,
            options=options,
            maximum_concurrent_rpcs=config.grpc_threads,
        )
        pb_grpc.add_VisualizerServicer_to_server(VisualizerServicer(self), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        names = (
            pb.DESCRIPTOR.services_by_name["Visualizer"].full_name,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        )
        reflection.enable_server_reflection(names, server)
        address = f"{config.host}:{config.port}"
        if config.tls_cert or config.tls_key:
            if not (config.tls_cert and config.tls_key):
                raise ValueError("TLS needs both a certificate and a key file")
            with open(config.tls_key, "rb") as key, open(config.tls_cert, "rb") as cert:
                credentials = grpc.ssl_server_credentials([(key.read(), cert.read())])
            self.port = server.add_secure_port(address, credentials)
        else:
            self.port = server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"could not bind {address}")
        return server

    def start(self, *, wait_ready: bool = False) -> PriorvizServer:
        """Start serving; the warm-up runs in the background unless ``wait_ready``."""
        torch.set_num_threads(self.config.torch_threads)
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        if self.config.metrics_port is not None:
            self.metrics_port = self.metrics.serve(self.config.host, self.config.metrics_port)
        self._grpc.start()
        log.info("listening", extra={"port": self.port, "device": str(self.device), "tls": bool(self.config.tls_cert)})
        if self.config.token and not self.config.tls_cert:
            log.warning(
                "a bearer token is required but TLS is off: the token crosses the network in clear text; "
                "serve TLS (--tls-cert/--tls-key) or keep the server behind a TLS-terminating proxy"
            )
        self.warm_up_thread = threading.Thread(target=self._warm_up, name="priorviz-warm-up", daemon=True)
        self.warm_up_thread.start()
        if wait_ready:
            self.warm_up_thread.join()
            if self.startup_error is not None:
                raise self.startup_error
        return self

    def _warm_up(self) -> None:
        """Load the default (and held-out) model and run one optimization step, then go SERVING."""
        started = time.perf_counter()
        try:
            model = self.load_model(self.default_model)
            render(model, ClassLogit(0), "fourier", size=WARM_UP_SIZE, config=RenderConfig(steps=1))
            if self.default_held_out != NO_HELD_OUT:
                try:
                    self.load_model(self.default_held_out)
                except (ModelNotFoundError, RuntimeError) as error:
                    log.warning(
                        "held-out model unavailable; transferability is off by default", extra={"error": str(error)}
                    )
                    self.default_held_out = NO_HELD_OUT
            self.jobs.start()
        except BaseException as error:  # reported through health (never SERVING) and the log
            self.startup_error = error
            log.exception("warm-up failed; the server stays NOT_SERVING")
            return
        if self._shutting_down.is_set():
            return
        self._set_health(health_pb2.HealthCheckResponse.SERVING)
        self.ready.set()
        log.info(
            "serving", extra={"model": self.default_model, "warm_up_seconds": round(time.perf_counter() - started, 3)}
        )

    def stop(self, grace_seconds: float | None = None) -> bool:
        """Graceful shutdown: NOT_SERVING, no new jobs, accepted jobs finish within the grace or are cancelled."""
        if self._shutting_down.is_set():
            self._stopped.wait()
            return True
        grace = self.config.grace_seconds if grace_seconds is None else grace_seconds
        self._shutting_down.set()
        self.health.enter_graceful_shutdown()
        log.info(
            "shutting down",
            extra={"grace_seconds": grace, "queued": self.jobs.queue_length, "running": self.jobs.running_count},
        )
        finished = self.jobs.drain(grace)
        self.jobs.stop(timeout=10.0)
        release_worker_indices(self._worker_indices)
        self._grpc.stop(grace=1.0).wait()
        self.metrics.close()
        self._stopped.set()
        log.info("stopped", extra={"all_jobs_finished": finished})
        return finished

    def wait_for_termination(self) -> None:
        self._stopped.wait()

    def _set_health(self, status: int) -> None:
        self.health.set("", status)
        self.health.set(SERVICE_NAME, status)

    # -- jobs ------------------------------------------------------------------------------

    def load_model(self, name: str) -> TargetModel:
        """A model by name; ``checkpoint:PATH`` only for files under the configured checkpoint directories."""
        if name.startswith(CHECKPOINT_PREFIX):
            name = self.checkpoints.model_name(name)
        return get_model(name, device=self.device)

    def check(self, request: RenderRequest) -> JobSpec:
        """The job a decoded request asks for, checked against this server's limits and models."""
        return validation.check_request(
            request, self.config.limits, self.load_model, self.default_model, self.default_held_out, self.image_sets
        )

    def check_invert(self, request: InvertRequest) -> InversionSpec:
        """The inversion a decoded Invert request asks for, checked against this server's limits and image sets."""
        return validation.check_invert(
            request, self.config.limits, self.load_model, self.default_model, self.default_held_out, self.image_sets
        )

    def check_examples(self, request: ExamplesRequest) -> ExamplesSpec:
        """The ranking a decoded DatasetExamples request asks for, checked against this server's limits and sets."""
        return validation.check_examples(
            request, self.config.limits, self.load_model, self.default_model, self.image_sets, self.activation_store
        )

    def _worker_setup(self, index: int) -> None:
        set_worker_index(self._worker_indices[index])

    def refuse(self, rpc: str, error: Exception, context: grpc.ServicerContext) -> None:
        """Answer a request the server will not run (``context.abort`` raises): its error's status, or
        INTERNAL for a server fault."""
        status = status_of(error)
        if status is not None:
            code, details = status
            log.info("request refused", extra={"rpc": rpc, "code": code.name, "error": clip_text(details)})
            abort(context, code, details)
        log.error("request failed", extra={"rpc": rpc}, exc_info=(type(error), error, error.__traceback__))
        context.abort(grpc.StatusCode.INTERNAL, f"internal error in {rpc}; the server log has the details")

    def stream_job(
        self,
        rpc: str,
        decode: Callable[[], Any],
        encode: Callable[[Any, Any], list[Event]],
        event_type: Callable[..., Event],
        context: grpc.ServicerContext,
        *,
        check: Callable[[Any], Any] | None = None,
        run: Callable[..., None] = run_job,
        answer_now: Callable[[Any], object | None] | None = None,
    ) -> Iterator[Event]:
        """Decode and validate, queue, then relay the job's events; ends with the job's status.

        ``check`` turns the decoded request into a job spec (default: Visualize and Compare's) and
        ``run(spec, send, should_stop, on_step, transform_samples)`` runs it on a worker.
        ``answer_now(spec)``, when given, may answer without a job (cheap work, no model run): its
        engine event, if not None, is the whole stream.
        """
        try:
            spec = (check or self.check)(decode())
            answer = answer_now(spec) if answer_now is not None else None
        except Exception as refused:
            status = status_of(refused)
            outcome = "invalid" if status is not None and status[0] in CLIENT_FAULTS else "failed"
            self.metrics.jobs.labels(rpc=rpc, outcome=outcome).inc()
            self.refuse(rpc, refused, context)
        if answer is not None:
            self.metrics.jobs.labels(rpc=rpc, outcome="succeeded").inc()
            log.info("answered without a job", extra={"rpc": rpc} | _job_details(spec))
            yield from encode(spec, answer)
            return

        def work(emit: Callable[[object], None], should_stop: Callable[[], bool]) -> None:
            # The thread count is process-wide and anything in the process may change it;
            # set it for every job so a job never runs oversubscribed.
            torch.set_num_threads(self.config.torch_threads)

            def send(event: object) -> None:
                for message in encode(spec, event):
                    emit(message)

            run(spec, send, should_stop, self.metrics.step_seconds.observe, self.config.metric_transform_samples)

        job = Job(work, name=f"{rpc}:{uuid.uuid4().hex[:12]}", max_seconds=self.config.max_job_seconds)
        if not context.add_callback(job.cancel):
            return
        try:
            ahead = self.jobs.submit(job)
        except QueueFullError as error:
            self.metrics.jobs.labels(rpc=rpc, outcome="rejected").inc()
            log.info("job refused: queue full", extra={"rpc": rpc, "job": job.name})
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(error))
        except QueueClosedError as error:
            context.abort(grpc.StatusCode.UNAVAILABLE, str(error))
        log.info("job accepted", extra={"job": job.name, "jobs_ahead": ahead} | _job_details(spec))
        yield codec.queued(event_type, ahead)
        for event in job.events():
            if isinstance(event, QueuePositionEvent):
                yield codec.queued(event_type, event.jobs_ahead)
            else:
                yield cast(Event, event)  # the job emits only what ``encode`` made
        failure = job.error
        if failure is None:
            return
        if job.timed_out:
            abort(
                context,
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"the job ran past this server's limit of {self.config.max_job_seconds:g} s per job",
            )
        if isinstance(failure, CancelledError):
            if self._shutting_down.is_set():
                context.abort(grpc.StatusCode.UNAVAILABLE, "the server shut down before the job finished")
            context.abort(grpc.StatusCode.CANCELLED, "the job was cancelled")
        status = status_of(failure)
        if status is not None:
            abort(context, *status)
        context.abort(grpc.StatusCode.INTERNAL, f"internal error in job {job.name}; the server log has the details")

    def _job_finished(self, job: Job, error: BaseException | None) -> None:
        rpc = job.name.split(":", 1)[0]
        status = status_of(error) if error is not None else None
        if error is None:
            outcome = "succeeded"
        elif job.timed_out:
            outcome = "timed_out"
        elif isinstance(error, CancelledError):
            outcome = "cancelled"
        elif status is not None and status[0] in CLIENT_FAULTS:
            outcome = "invalid"
        else:
            outcome = "failed"
        self.metrics.jobs.labels(rpc=rpc, outcome=outcome).inc()
        seconds = time.monotonic() - (job.started_at or job.submitted_at)
        self.metrics.job_seconds.observe(seconds)
        extra = {"job": job.name, "outcome": outcome, "seconds": round(seconds, 3)}
        if job.started_at is not None:
            extra["queue_seconds"] = round(job.started_at - job.submitted_at, 3)
        if error is not None and status is None:
            log.error("job failed", extra=extra, exc_info=(type(error), error, error.__traceback__))
        else:
            log.info("job finished", extra=extra | ({"error": clip_text(status[1])} if status else {}))


def _job_details(spec: JobSpec | InversionSpec | ExamplesSpec) -> dict[str, object]:
    """What the log says of an accepted job."""
    if isinstance(spec, ExamplesSpec):
        images = spec.image_set.name if spec.image_set is not None else f"{len(spec.uploads)} uploaded"
        return {"unit": spec.unit.to_text()[:200], "images": images, "k": spec.k}
    priors = {"priors": [prior.name for prior in spec.priors], "size": spec.size}
    if isinstance(spec, InversionSpec):
        return priors | {"layers": dict(spec.layers), "steps": [prior.steps for prior in spec.priors]}
    return priors | {
        "objective": spec.objective.to_text()[:200],
        "steps": [prior.steps for prior in spec.priors],
        "batch": spec.batch,
    }


def abort(context: grpc.ServicerContext, code: grpc.StatusCode, details: str) -> None:
    """End the call with ``code``; details are cut so that the status always reaches the client."""
    context.abort(code, clip_text(details, MAX_STATUS_DETAILS))


def parse_args(argv: list[str] | None = None) -> tuple[ServerConfig, list[str]]:
    """The server's configuration, and the diffusers priors to register before it starts."""
    defaults, limits = ServerConfig(), Limits()
    parser = argparse.ArgumentParser(prog="priorviz-server", description="Serve priorviz.v1 over gRPC.")
    parser.add_argument(
        "--host", default=defaults.host, help="address to listen on (default %(default)s; 0.0.0.0: every interface)"
    )
    parser.add_argument(
        "--port", type=int, default=defaults.port, help="gRPC port (default %(default)s; 0: any free port)"
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda when present, else cpu)")
    parser.add_argument("--workers", type=int, default=defaults.workers, help="jobs run at once (default %(default)s)")
    parser.add_argument(
        "--max-queue", type=int, default=defaults.max_queue, help="jobs that may wait (default %(default)s)"
    )
    parser.add_argument(
        "--torch-threads", type=int, default=defaults.torch_threads, help="torch intra-op threads (default %(default)s)"
    )
    parser.add_argument(
        "--max-image-size",
        type=int,
        default=limits.max_image_size,
        help="largest image side in pixels (default %(default)s)",
    )
    parser.add_argument(
        "--max-steps",
        type=int,
        default=limits.max_steps,
        help="most optimization steps per prior (default %(default)s)",
    )
    parser.add_argument(
        "--max-batch", type=int, default=limits.max_batch, help="most images per job (default %(default)s)"
    )
    parser.add_argument(
        "--max-preview-steps",
        type=int,
        default=limits.max_preview_steps,
        help="most preview steps per job (default %(default)s)",
    )
    parser.add_argument(
        "--max-compare-priors",
        type=int,
        default=limits.max_compare_priors,
        help="most priors per Compare (default %(default)s)",
    )
    parser.add_argument("--default-model", default=None, help="model loaded and warmed before SERVING")
    parser.add_argument("--held-out-model", default=defaults.held_out_model, help="transferability model ('none': off)")
    parser.add_argument(
        "--checkpoint-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="let requests load checkpoint:PATH models from files under DIR (repeatable; a relative PATH is looked "
        "up in each DIR; default: no checkpoints)",
    )
    parser.add_argument(
        "--image-set",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help=f"offer the PNG and JPEG files directly inside DIR as image set NAME to requests (repeatable; "
        f"{EMBEDDED_SET!r} is always offered)",
    )
    parser.add_argument(
        "--store-dir",
        metavar="DIR",
        default=None,
        help="folder where DatasetExamples keeps image sets' activations across restarts "
        f"(default: {default_store_dir()})",
    )
    parser.add_argument(
        "--store-max-mb",
        type=int,
        metavar="MB",
        default=defaults.store_max_bytes // 2**20,
        help="MiB of activations the store keeps, least recently used removed first (default %(default)s)",
    )
    parser.add_argument(
        "--max-cached-models",
        type=int,
        metavar="N",
        default=defaults.max_cached_models,
        help="checkpoint and torchvision models kept loaded, least recently used dropped first (default %(default)s)",
    )
    parser.add_argument(
        "--prior",
        "--diffusers-prior",
        dest="priors",
        action="append",
        default=[],
        metavar="NAME=KIND:DIR",
        help=f"offer the generator saved in the local folder DIR as learned prior NAME; KIND: {AUTO} (read from the "
        f"folder's files) or one of {', '.join(FOLDER_KINDS)}; a folder that fails to load is listed as unavailable "
        "with the reason (repeatable; nothing is downloaded)",
    )
    token_source = parser.add_mutually_exclusive_group()
    token_source.add_argument(
        "--token",
        default=None,
        help="bearer token required on every call (env PRIORVIZ_TOKEN); visible to other users in the process "
        "list: prefer --token-file or the environment",
    )
    token_source.add_argument(
        "--token-file", default=None, metavar="FILE", help="file whose content (one line) is the bearer token"
    )
    parser.add_argument("--tls-cert", default=None, help="PEM certificate chain; with --tls-key serves TLS")
    parser.add_argument("--tls-key", default=None, help="PEM private key")
    parser.add_argument("--metrics-port", type=int, default=None, help="Prometheus endpoint port (default: off)")
    parser.add_argument(
        "--grace-seconds", type=float, default=defaults.grace_seconds, help="shutdown grace (default %(default)s)"
    )
    parser.add_argument(
        "--max-message-mb",
        type=int,
        default=defaults.max_message_bytes // 2**20,
        help="gRPC message size limit in MiB (default %(default)s)",
    )
    parser.add_argument(
        "--keepalive-seconds",
        type=int,
        default=defaults.keepalive_seconds,
        help="interval of server keepalive pings, and how long a client may leave one unanswered before its "
        "connection is closed and its jobs cancelled (default %(default)s)",
    )
    parser.add_argument(
        "--max-job-seconds",
        type=float,
        metavar="SECONDS",
        default=defaults.max_job_seconds,
        help="running time after which a job is stopped with DEADLINE_EXCEEDED; time queued not counted "
        "(default %(default)s)",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    for name in (
        "workers",
        "torch_threads",
        "max_image_size",
        "max_steps",
        "max_batch",
        "max_compare_priors",
        "keepalive_seconds",
        "max_message_mb",
        "max_cached_models",
        "store_max_mb",
    ):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not args.max_job_seconds > 0:
        parser.error("--max-job-seconds must be positive")
    missing = [directory for directory in args.checkpoint_dir if not os.path.isdir(directory)]
    if missing:
        parser.error(f"--checkpoint-dir {missing[0]!r} is not a directory")
    image_sets = [spec.partition("=") for spec in args.image_set]
    for name, separator, folder in image_sets:
        if not (separator and name and folder) or "/" in name or name == EMBEDDED_SET:
            parser.error(f"--image-set expects NAME=DIR with a NAME other than {EMBEDDED_SET!r} and without '/'")
        if not os.path.isdir(folder):
            parser.error(f"--image-set {name}: {folder!r} is not a directory")
    configure_json_logging(args.log_level)
    config = ServerConfig(
        host=args.host,
        port=args.port,
        device=args.device,
        workers=args.workers,
        max_queue=args.max_queue,
        torch_threads=args.torch_threads,
        limits=replace(
            limits,
            max_image_size=args.max_image_size,
            max_steps=args.max_steps,
            max_batch=args.max_batch,
            max_preview_steps=args.max_preview_steps,
            max_compare_priors=args.max_compare_priors,
        ),
        default_model=args.default_model,
        held_out_model=args.held_out_model,
        checkpoint_dirs=tuple(args.checkpoint_dir),
        image_sets=tuple((name, folder) for name, _, folder in image_sets),
        max_cached_models=args.max_cached_models,
        store_dir=args.store_dir,
        store_max_bytes=args.store_max_mb * 2**20,
        token=_token(parser, args),
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        metrics_port=args.metrics_port,
        grace_seconds=args.grace_seconds,
        max_message_bytes=args.max_message_mb * 2**20,
        keepalive_seconds=args.keepalive_seconds,
        max_job_seconds=args.max_job_seconds,
    )
    for spec in args.priors:
        try:
            parse_prior_spec(spec)
        except ValueError as error:
            parser.error(str(error))
    return config, args.priors


def _token(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str | None:
    """The bearer token from --token-file, --token or PRIORVIZ_TOKEN, in that order; None: no auth."""
    if args.token_file is None:
        return args.token or os.environ.get("PRIORVIZ_TOKEN") or None
    try:
        with open(args.token_file, encoding="utf-8") as file:
            token = file.read().strip()
    except (OSError, UnicodeDecodeError) as error:
        parser.error(f"--token-file: {error}")
    if not token or any(character.isspace() for character in token):
        parser.error("--token-file must hold one token: not empty, no spaces")
    return token


def offered_image_sets(folders: tuple[tuple[str, str], ...]) -> dict[str, ImageSet]:
    """The embedded set (when foolbox and scikit-image are installed) and each ``--image-set NAME=DIR``."""
    offered: dict[str, ImageSet] = {}
    try:
        offered[EMBEDDED_SET] = embedded_image_set()
    except UnavailableError as error:
        log.warning("the embedded image set is unavailable", extra={"error": str(error)})
    for name, folder in folders:
        offered[name] = ImageSet.from_folders(name, [Path(folder)])
    return offered


def parse_prior_spec(spec: str) -> tuple[str, str, str]:
    """``NAME=KIND:DIR`` as (name, kind, folder); raises ValueError naming the flag when malformed."""
    name, _, rest = spec.partition("=")
    kind, _, folder = rest.partition(":")
    if not (name and kind and folder):
        raise ValueError(f"--prior {spec!r}: expected NAME=KIND:DIR")
    return name, kind, folder


def register_folder_priors(specs: list[str]) -> list[PriorInfo]:
    """Register each ``NAME=KIND:DIR``; a folder that fails to load is registered as unavailable, with the reason.

    Raises ValueError only for a malformed spec or a name already taken.
    """
    infos = []
    for spec in specs:
        name, kind, folder = parse_prior_spec(spec)
        try:
            infos.append(register_folder_prior(name, kind, folder))
        except ValueError as error:
            raise ValueError(f"--prior {spec!r}: {error}") from None
    return infos


def main(argv: list[str] | None = None) -> None:
    config, prior_specs = parse_args(argv)
    try:
        registered = register_folder_priors(prior_specs)
    except ValueError as error:
        raise SystemExit(f"priorviz-server: {error}") from None
    for info in registered:
        if info.unavailable_reason:
            log.warning("prior unavailable", extra={"prior": info.name, "reason": info.unavailable_reason})
        else:
            log.info("prior registered", extra={"prior": info.name})
    server = PriorvizServer(config).start()
    stop_requested = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        if stop_requested.is_set():
            log.warning("second stop signal: exiting without waiting for jobs", extra={"signal": signum})
            os._exit(128 + signum)
        stop_requested.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    while not stop_requested.wait(timeout=1.0):
        if server.startup_error is not None:
            server.stop(grace_seconds=0)
            raise SystemExit(1)
    server.stop()


if __name__ == "__main__":
    main()
