"""The synchronous client: the I/O of ``BaseClient``'s calls on a blocking gRPC channel."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Unpack

import grpc

from priorviz_client._base import HEALTH_CHECK, BaseClient, BaseJob, R, Stream, T, Unary
from priorviz_client._examples import ExamplesOptions, Images
from priorviz_client._health import HealthCheckRequest
from priorviz_client._inversion import ImageInput, Inversions, InvertOptions, Layers
from priorviz_client._progress import ProgressBar
from priorviz_client._requests import Priors, RenderOptions
from priorviz_client._results import (
    Comparison,
    DatasetExamples,
    Event,
    LayerInfo,
    ModelInfo,
    ModelSummary,
    PriorInfo,
    ServerInfo,
    Visualization,
)
from priorviz_objectives import Objective


class Job(BaseJob[R]):
    """A running Visualize or Compare call: iterate it for events, then ask for ``result()``.

    Breaking out of a ``for event in job`` loop, leaving a ``with job:`` block early or
    calling ``cancel()`` cancels the call, and the server stops the work within one step.
    """

    def __iter__(self) -> Iterator[Event]:
        try:
            for message in self._call:
                event = self._take(message)
                if event is not None:
                    yield event
        except grpc.RpcError as error:
            raise self._error(error) from error
        finally:
            self._release()

    def server_id(self) -> str:
        """Which server runs the job (its ``ServerInfo.server_id``), once it has taken the call; "" if it failed first.

        Behind a load-balanced target this is the only way to know where a job went.
        """
        return self._server_id(self._call.initial_metadata())

    def result(self) -> R:
        """Waits for the end of the stream (skipping remaining events) and returns the result."""
        for _ in self:
            pass
        return self._outcome()

    def __enter__(self) -> Job[R]:
        return self

    def __exit__(self, *exc: object) -> None:
        self._release()


class Client(BaseClient):
    """A connection to a priorviz server; use it as a context manager or call ``close()``.

    ``timeout`` is the default deadline in seconds for the listing calls (long work has
    none unless a call passes ``timeout=``). Listing calls are retried with backoff while
    the server is UNAVAILABLE; Visualize and Compare are never retried. ``load_balancing=
    "round_robin"`` spreads calls over every server a target names (``ipv4:HOST:PORT,HOST:PORT``
    or a ``dns:///`` name); ``Job.server_id()`` then tells where a job went.
    """

    def _open_channel(self) -> grpc.Channel:
        credentials, options = self.connection.credentials(), self.connection.channel_options()
        if credentials is None:
            return grpc.insecure_channel(self.connection.target, options=options)
        return grpc.secure_channel(self.connection.target, credentials, options=options)

    # -- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- listings (idempotent: retried on UNAVAILABLE) ---------------------------------

    def models(self, *, timeout: float | None = None) -> tuple[ModelSummary, ...]:
        """The models the server can load by name, default first."""
        return self._unary(self._list_models(), timeout)

    def describe_model(
        self, model: str | None = None, *, class_names: bool = True, timeout: float | None = None
    ) -> ModelInfo:
        """Input size, class names and layers of ``model`` (the server's default when None)."""
        return self._unary(self._describe_model(model, class_names), timeout)

    def layers(self, model: str | None = None, *, timeout: float | None = None) -> tuple[LayerInfo, ...]:
        """The layers objectives can name on ``model``, from the input towards the output."""
        return self.describe_model(model, class_names=False, timeout=timeout).layers

    def priors(self, *, include_unavailable: bool = False, timeout: float | None = None) -> tuple[PriorInfo, ...]:
        """The priors, unconstrained first; ``include_unavailable`` adds those not installed."""
        return self._unary(self._list_priors(include_unavailable), timeout)

    def metric_descriptions(self, *, timeout: float | None = None) -> dict[str, str]:
        """What each metric key in results means, one line each."""
        return self._unary(self._metric_descriptions(), timeout)

    def server_info(self, *, timeout: float | None = None) -> ServerInfo:
        """The server's id and worker count (behind a load balancer: of whichever server answers)."""
        return self._unary(self._server_info(), timeout)

    def health(self, *, timeout: float | None = None) -> str:
        """The server's health status: ``SERVING`` once the default model is loaded and warm."""
        return self._unary(self._health(), timeout)

    def wait_until_serving(self, timeout: float = 120.0, poll_interval: float = 0.5) -> None:
        """Blocks until health is SERVING; DeadlineExceededError after ``timeout`` seconds."""
        wait = self._serving_wait(timeout, poll_interval)
        check = self._calls[HEALTH_CHECK]
        while True:
            try:
                if wait.serving(check(HealthCheckRequest(), timeout=wait.check_timeout(), metadata=self._metadata)):
                    return
            except grpc.RpcError as error:
                wait.failed(error)
            time.sleep(wait.pause())

    # -- long work (never retried) -----------------------------------------------------

    def visualize_stream(
        self,
        objective: Objective | str,
        *,
        prior: str = "fourier",
        prior_options: Mapping[str, object] | None = None,
        timeout: float | None = None,
        **options: Unpack[RenderOptions],
    ) -> Job[Visualization]:
        """Starts a visualization; iterate the job for Queued/Progress/Preview events."""
        return self._start(self._visualize(objective, prior, prior_options, options), timeout)

    def visualize(
        self,
        objective: Objective | str,
        *,
        prior: str = "fourier",
        prior_options: Mapping[str, object] | None = None,
        timeout: float | None = None,
        progress: bool = False,
        **options: Unpack[RenderOptions],
    ) -> Visualization:
        """Optimizes images for ``objective`` under one prior; ``progress=True`` shows a bar."""
        bar = ProgressBar() if progress else None
        job = self.visualize_stream(objective, prior=prior, prior_options=prior_options, timeout=timeout, **options)
        return _finish(job, bar)

    def compare_stream(
        self,
        objective: Objective | str,
        *,
        priors: Priors | None = None,
        timeout: float | None = None,
        **options: Unpack[RenderOptions],
    ) -> Job[Comparison]:
        """Starts a comparison; iterate the job for events (Progress carries the prior)."""
        return self._start(self._compare(objective, priors, options), timeout)

    def compare(
        self,
        objective: Objective | str,
        *,
        priors: Priors | None = None,
        timeout: float | None = None,
        progress: bool = False,
        **options: Unpack[RenderOptions],
    ) -> Comparison:
        """The same objective under several priors (default: Fourier and every learned prior), same seed."""
        bar = ProgressBar() if progress else None
        return _finish(self.compare_stream(objective, priors=priors, timeout=timeout, **options), bar)

    def invert_stream(
        self,
        image: ImageInput,
        layers: Layers,
        *,
        priors: Priors | None = None,
        timeout: float | None = None,
        **options: Unpack[InvertOptions],
    ) -> Job[Inversions]:
        """Starts an inversion; iterate the job for events (Progress values are relative activation errors)."""
        return self._start(self._invert(image, layers, priors, options), timeout)

    def invert(
        self,
        image: ImageInput,
        layers: Layers,
        *,
        priors: Priors | None = None,
        timeout: float | None = None,
        progress: bool = False,
        **options: Unpack[InvertOptions],
    ) -> Inversions:
        """Rebuilds ``image`` from its activations at ``layers`` under each prior (default fourier), same seed.

        ``image``: PNG/JPEG bytes, a file, a PIL image or ``"imagenet_samples/chelsea"`` (a server's image set).
        """
        bar = ProgressBar() if progress else None
        return _finish(self.invert_stream(image, layers, priors=priors, timeout=timeout, **options), bar)

    def dataset_examples_stream(
        self,
        unit: Objective | str,
        images: Images,
        *,
        timeout: float | None = None,
        **options: Unpack[ExamplesOptions],
    ) -> Job[DatasetExamples]:
        """Starts a dataset-examples query; iterate the job for events (Progress counts the images whose
        activations the server computes; an answer from its store comes without any)."""
        return self._start(self._dataset_examples(unit, images, options), timeout)

    def dataset_examples(
        self,
        unit: Objective | str,
        images: Images,
        *,
        timeout: float | None = None,
        progress: bool = False,
        **options: Unpack[ExamplesOptions],
    ) -> DatasetExamples:
        """The images where ``unit`` (a channel, neuron, direction or class) is highest and lowest, with crops.

        ``images``: the name of an image set the server offers (``"imagenet_samples"``), or images to upload
        (bytes, files, PIL images, ``SET/IMAGE``). The server keeps a set's activations, so asking again is fast.
        """
        bar = ProgressBar() if progress else None
        return _finish(self.dataset_examples_stream(unit, images, timeout=timeout, **options), bar)

    # -- I/O -----------------------------------------------------------------------------

    def _unary(self, call: Unary[T], timeout: float | None) -> T:
        """Sends ``call``, sleeping between attempts for as long as the retry decision says."""
        retry = self._retry(call.method, timeout)
        while True:
            try:
                response = self._calls[call.method](call.request, timeout=retry.timeout(), metadata=self._metadata)
            except grpc.RpcError as error:
                time.sleep(retry.pause(error))
            else:
                return call.parse(response)

    def _start(self, stream: Stream[R], timeout: float | None) -> Job[R]:
        return Job(self._calls[stream.method](stream.request, timeout=timeout, metadata=self._metadata), stream)


def _finish(job: Job[R], bar: ProgressBar | None) -> R:
    """Drains the job, feeding a progress bar when there is one (made before the call started)."""
    if bar is None:
        return job.result()
    try:
        for event in job:
            bar.update(event)
    finally:
        bar.close()
    return job.result()
