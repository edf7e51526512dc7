"""The synchronous client: listings, visualize and compare, with typed results and errors."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, TypeVar, Unpack

import grpc

from priorviz_client._connection import DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_UNARY_TIMEOUT, Connection, RetryPolicy
from priorviz_client._convert import (
    CompareEvents,
    VisualizeEvents,
    model_info,
    model_summary,
    prior_info,
)
from priorviz_client._exceptions import DeadlineExceededError, RpcError, UnavailableError, from_rpc_error
from priorviz_client._health import CHECK_METHOD, HealthCheckRequest, HealthCheckResponse, status_name
from priorviz_client._objectives import Objective
from priorviz_client._progress import ProgressBar
from priorviz_client._proto.priorviz.v1 import priorviz_pb2 as pb
from priorviz_client._proto.priorviz.v1.priorviz_pb2_grpc import VisualizerStub
from priorviz_client._requests import Priors, RenderOptions, compare_request, visualize_request
from priorviz_client._results import Comparison, Event, LayerInfo, ModelInfo, ModelSummary, PriorInfo, Visualization

R = TypeVar("R", Visualization, Comparison)


class Job(Generic[R]):
    """A running Visualize or Compare call: iterate it for events, then ask for ``result()``.

    Breaking out of a ``for event in job`` loop, leaving a ``with job:`` block early or
    calling ``cancel()`` cancels the call, and the server stops the work within one step.
    """

    def __init__(self, call: Any, translate: Callable[[Any], Event | R], method: str) -> None:
        self._call = call
        self._translate = translate
        self._method = method
        self._result: R | None = None

    def __iter__(self) -> Iterator[Event]:
        try:
            for message in self._call:
                item = self._translate(message)
                if isinstance(item, Visualization | Comparison):
                    self._result = item  # type: ignore[assignment]
                else:
                    yield item
        except grpc.RpcError as error:
            raise from_rpc_error(error, self._method) from error
        finally:
            if self._result is None:
                self._call.cancel()

    def result(self) -> R:
        """Waits for the end of the stream (skipping remaining events) and returns the result."""
        for _ in self:
            pass
        if self._result is None:
            raise RpcError("the stream ended without a result", code=grpc.StatusCode.INTERNAL, method=self._method)
        return self._result

    def cancel(self) -> bool:
        """Cancels the call; False when it had already finished."""
        return self._call.cancel()

    @property
    def done(self) -> bool:
        return self._result is not None or self._call.done()

    def __enter__(self) -> Job[R]:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._result is None:
            self._call.cancel()


class Client:
    """A connection to a priorviz server; use it as a context manager or call ``close()``.

    ``timeout`` is the default deadline in seconds for the listing calls (long work has
    none unless a call passes ``timeout=``). Listing calls are retried with backoff while
    the server is UNAVAILABLE; Visualize and Compare are never retried.
    """

    def __init__(
        self,
        target: str | None = None,
        *,
        token: str | None = None,
        tls: bool = False,
        root_certificates: bytes | str | Path | None = None,
        private_key: bytes | str | Path | None = None,
        certificate_chain: bytes | str | Path | None = None,
        server_name: str | None = None,
        timeout: float | None = DEFAULT_UNARY_TIMEOUT,
        retry: RetryPolicy | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.connection = Connection.create(
            target,
            token=token,
            tls=tls,
            root_certificates=root_certificates,
            private_key=private_key,
            certificate_chain=certificate_chain,
            server_name=server_name,
            max_message_bytes=max_message_bytes,
            timeout=timeout,
            retry=retry,
        )
        credentials = self.connection.credentials()
        options = self.connection.channel_options()
        if credentials is None:
            self._channel = grpc.insecure_channel(self.connection.target, options=options)
        else:
            self._channel = grpc.secure_channel(self.connection.target, credentials, options=options)
        self._stub = VisualizerStub(self._channel)
        self._health_check = self._channel.unary_unary(
            CHECK_METHOD,
            request_serializer=HealthCheckRequest.SerializeToString,
            response_deserializer=HealthCheckResponse.FromString,
        )

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
        response = self._idempotent("ListModels", self._stub.ListModels, pb.ListModelsRequest(), timeout)
        return tuple(model_summary(model) for model in response.models)

    def describe_model(
        self, model: str | None = None, *, class_names: bool = True, timeout: float | None = None
    ) -> ModelInfo:
        """Input size, class names and layers of ``model`` (the server's default when None)."""
        request = pb.DescribeModelRequest(model=model or "", omit_class_names=not class_names)
        return model_info(self._idempotent("DescribeModel", self._stub.DescribeModel, request, timeout))

    def layers(self, model: str | None = None, *, timeout: float | None = None) -> tuple[LayerInfo, ...]:
        """The layers objectives can name on ``model``, from the input towards the output."""
        return self.describe_model(model, class_names=False, timeout=timeout).layers

    def priors(self, *, include_unavailable: bool = False, timeout: float | None = None) -> tuple[PriorInfo, ...]:
        """The priors, unconstrained first; ``include_unavailable`` adds those not installed."""
        request = pb.ListPriorsRequest(include_unavailable=include_unavailable)
        response = self._idempotent("ListPriors", self._stub.ListPriors, request, timeout)
        return tuple(prior_info(prior) for prior in response.priors)

    def metric_descriptions(self, *, timeout: float | None = None) -> dict[str, str]:
        """What each metric key in results means, one line each."""
        response = self._idempotent("ListPriors", self._stub.ListPriors, pb.ListPriorsRequest(), timeout)
        return dict(sorted(response.metric_descriptions.items()))

    def health(self, *, timeout: float | None = None) -> str:
        """The server's health status: ``SERVING`` once the default model is loaded and warm."""
        return status_name(self._idempotent("Health/Check", self._health_check, HealthCheckRequest(), timeout))

    def wait_until_serving(self, timeout: float = 120.0, poll_interval: float = 0.5) -> None:
        """Blocks until health is SERVING; DeadlineExceededError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            remaining = deadline - time.monotonic()
            try:
                last = status_name(self._health_check(HealthCheckRequest(), timeout=max(remaining, 0.01)))
                if last == "SERVING":
                    return
            except grpc.RpcError as error:
                last = from_rpc_error(error, "Health/Check").code.name
            if remaining <= poll_interval:
                raise DeadlineExceededError(
                    f"server at {self.connection.target} not SERVING after {timeout:g} s (last: {last})"
                )
            time.sleep(poll_interval)

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
        request = visualize_request(objective, prior, prior_options, options)
        call = self._stub.Visualize(request, timeout=timeout, metadata=self.connection.metadata())
        return Job(call, VisualizeEvents(prior).event, "Visualize")

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
        request = compare_request(objective, priors, options)
        call = self._stub.Compare(request, timeout=timeout, metadata=self.connection.metadata())
        return Job(call, CompareEvents().event, "Compare")

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

    # -- internals ---------------------------------------------------------------------

    def _idempotent(self, method: str, function: Callable[..., Any], request: Any, timeout: float | None) -> Any:
        """Calls ``function``, retrying with backoff on UNAVAILABLE within one overall deadline."""
        budget = self.connection.unary_timeout(timeout)
        deadline = None if budget is None else time.monotonic() + budget
        policy = self.connection.retry
        for attempt in range(1, policy.max_attempts + 1):
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                return function(request, timeout=remaining, metadata=self.connection.metadata())
            except grpc.RpcError as rpc_error:
                error = from_rpc_error(rpc_error, method)
                if not isinstance(error, UnavailableError) or attempt == policy.max_attempts:
                    raise error from rpc_error
                pause = policy.backoff(attempt)
                if deadline is not None and time.monotonic() + pause >= deadline:
                    raise error from rpc_error
                time.sleep(pause)
        raise AssertionError("unreachable: the last attempt returns or raises")


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
