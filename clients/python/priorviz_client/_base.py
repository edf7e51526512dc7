"""What ``Client`` and ``AsyncClient`` share: requests, event translation and the retry decision.

The two clients differ only in I/O (a blocking or an asyncio channel, ``time.sleep`` or
``asyncio.sleep``), as httpx splits its ``BaseClient`` from ``Client`` and ``AsyncClient``.
Everything that decides what to send, what an answer means and whether to try again lives
here once, so the two cannot drift apart.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import grpc

from priorviz_client._connection import DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_UNARY_TIMEOUT, Connection, RetryPolicy
from priorviz_client._convert import CompareEvents, VisualizeEvents, model_info, model_summary, prior_info
from priorviz_client._examples import ExamplesEvents, ExamplesOptions, Images, examples_request
from priorviz_client._exceptions import DeadlineExceededError, RpcError, UnavailableError, from_rpc_error
from priorviz_client._health import CHECK_METHOD, HealthCheckRequest, HealthCheckResponse, status_name
from priorviz_client._inversion import ImageInput, Inversions, InvertEvents, InvertOptions, Layers, invert_request
from priorviz_client._proto.priorviz.v1 import priorviz_pb2 as pb
from priorviz_client._proto.priorviz.v1.priorviz_pb2_grpc import VisualizerStub
from priorviz_client._requests import Priors, RenderOptions, compare_request, visualize_request
from priorviz_client._results import (
    Comparison,
    DatasetExamples,
    Event,
    ModelInfo,
    ModelSummary,
    Preview,
    PriorInfo,
    Progress,
    Queued,
    ServerInfo,
    Visualization,
)
from priorviz_objectives import Objective

T = TypeVar("T")
R = TypeVar("R", Visualization, Comparison, Inversions, DatasetExamples)

HEALTH_CHECK = "Health/Check"
"""The health check's name in errors and in the table of RPCs (it is not a Visualizer method)."""
SERVER_ID_METADATA = "priorviz-server-id"
"""The initial-metadata key under which a server names itself on every Visualize and Compare call."""


@dataclass(frozen=True)
class Unary(Generic[T]):
    """An idempotent call: which RPC, its request, and how its answer becomes this package's record."""

    method: str
    request: Any
    parse: Callable[[Any], T]


@dataclass(frozen=True)
class Stream(Generic[R]):
    """A streaming call: which RPC, its request, and the translator of its messages into events and the result."""

    method: str
    request: Any
    translate: Callable[[Any], Event | R]


class Retry:
    """The retry decision for one idempotent call: UNAVAILABLE is retried with backoff, within one deadline.

    Any other status, the last attempt, or a pause that would pass the deadline ends the
    call with the typed error; the caller only sleeps for what ``pause`` returns.
    """

    def __init__(self, policy: RetryPolicy, budget: float | None, method: str) -> None:
        self._policy = policy
        self._deadline = None if budget is None else time.monotonic() + budget
        self._method = method
        self._attempt = 1

    def timeout(self) -> float | None:
        """The deadline left for the next attempt; None when the call has none."""
        return None if self._deadline is None else max(self._deadline - time.monotonic(), 0.0)

    def pause(self, rpc_error: grpc.RpcError) -> float:
        """Seconds to wait before the next attempt; raises the typed error when there is none."""
        error = from_rpc_error(rpc_error, self._method)
        if not isinstance(error, UnavailableError) or self._attempt >= self._policy.max_attempts:
            raise error from rpc_error
        pause = self._policy.backoff(self._attempt)
        if self._deadline is not None and time.monotonic() + pause >= self._deadline:
            raise error from rpc_error
        self._attempt += 1
        return pause


class ServingWait:
    """The decisions of ``wait_until_serving``: each check's deadline, the last answer, when to give up."""

    def __init__(self, target: str, timeout: float, poll_interval: float) -> None:
        self._target = target
        self._timeout = timeout
        self._poll_interval = poll_interval
        self._deadline = time.monotonic() + timeout
        self._last = "no answer"

    def check_timeout(self) -> float:
        """A check may take what is left of the wait (a little at least, so that it is sent at all)."""
        return max(self._deadline - time.monotonic(), 0.01)

    def serving(self, response: Any) -> bool:
        self._last = status_name(response)
        return self._last == "SERVING"

    def failed(self, rpc_error: grpc.RpcError) -> None:
        self._last = from_rpc_error(rpc_error, HEALTH_CHECK).code.name

    def pause(self) -> float:
        """Seconds until the next check; DeadlineExceededError when that would be past the deadline."""
        if self._deadline - time.monotonic() <= self._poll_interval:
            raise DeadlineExceededError(
                f"server at {self._target} not SERVING after {self._timeout:g} s (last: {self._last})",
                method=HEALTH_CHECK,
            )
        return self._poll_interval


class BaseJob(Generic[R]):
    """A running Visualize or Compare call, apart from how its messages are read (blocking or async)."""

    def __init__(self, call: Any, stream: Stream[R]) -> None:
        self._call = call
        self._stream: Stream[R] = stream
        self._result: R | None = None

    def cancel(self) -> bool:
        """Cancels the call; False when it had already finished."""
        return bool(self._call.cancel())

    @property
    def done(self) -> bool:
        return self._result is not None or bool(self._call.done())

    @staticmethod
    def _server_id(metadata: Any) -> str:
        """The id the server sent in its initial metadata; empty when the call failed before it answered."""
        return next((value for key, value in metadata or () if key == SERVER_ID_METADATA), "")

    def _take(self, message: Any) -> Event | None:
        """The event a stream message carries; the final message is kept as the result (None returned)."""
        item = self._stream.translate(message)
        if isinstance(item, Queued | Progress | Preview):
            return item
        self._result = item
        return None

    def _error(self, rpc_error: grpc.RpcError) -> RpcError:
        return from_rpc_error(rpc_error, self._stream.method)

    def _outcome(self) -> R:
        """The result once the stream has ended; a stream that ended without one is the server's fault."""
        if self._result is None:
            raise RpcError(
                "the stream ended without a result", code=grpc.StatusCode.INTERNAL, method=self._stream.method
            )
        return self._result

    def _release(self) -> None:
        """Cancels the call unless it finished: the server stops the work within one step."""
        if self._result is None:
            self._call.cancel()


class BaseClient(abc.ABC):
    """The connection settings and every call's request and translation; subclasses do the I/O."""

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
        load_balancing: str | None = None,
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
            load_balancing=load_balancing,
        )
        self._metadata = self.connection.metadata()
        self._channel = self._open_channel()
        self._calls = self._rpcs(self._channel)

    @abc.abstractmethod
    def _open_channel(self) -> Any:
        """A blocking or an asyncio channel to ``self.connection``."""

    def _rpcs(self, channel: grpc.Channel | grpc.aio.Channel) -> dict[str, Any]:
        """Each RPC's callable by name; a blocking and an asyncio channel make them alike."""
        stub = VisualizerStub(channel)
        return {
            "ListModels": stub.ListModels,
            "DescribeModel": stub.DescribeModel,
            "ListPriors": stub.ListPriors,
            "Visualize": stub.Visualize,
            "Compare": stub.Compare,
            "GetServerInfo": stub.GetServerInfo,
            "Invert": stub.Invert,
            "DatasetExamples": stub.DatasetExamples,
            HEALTH_CHECK: channel.unary_unary(
                CHECK_METHOD,
                request_serializer=HealthCheckRequest.SerializeToString,
                response_deserializer=HealthCheckResponse.FromString,
            ),
        }

    def _retry(self, method: str, timeout: float | None) -> Retry:
        return Retry(self.connection.retry, self.connection.unary_timeout(timeout), method)

    def _serving_wait(self, timeout: float, poll_interval: float) -> ServingWait:
        return ServingWait(self.connection.target, timeout, poll_interval)

    # -- requests and how their answers read -------------------------------------------

    @staticmethod
    def _list_models() -> Unary[tuple[ModelSummary, ...]]:
        return Unary("ListModels", pb.ListModelsRequest(), lambda response: tuple(map(model_summary, response.models)))

    @staticmethod
    def _describe_model(model: str | None, class_names: bool) -> Unary[ModelInfo]:
        request = pb.DescribeModelRequest(model=model or "", omit_class_names=not class_names)
        return Unary("DescribeModel", request, model_info)

    @staticmethod
    def _list_priors(include_unavailable: bool) -> Unary[tuple[PriorInfo, ...]]:
        request = pb.ListPriorsRequest(include_unavailable=include_unavailable)
        return Unary("ListPriors", request, lambda response: tuple(map(prior_info, response.priors)))

    @staticmethod
    def _metric_descriptions() -> Unary[dict[str, str]]:
        return Unary(
            "ListPriors", pb.ListPriorsRequest(), lambda response: dict(sorted(response.metric_descriptions.items()))
        )

    @staticmethod
    def _server_info() -> Unary[ServerInfo]:
        return Unary(
            "GetServerInfo",
            pb.GetServerInfoRequest(),
            lambda response: ServerInfo(response.server_id, response.workers, response.max_queue),
        )

    @staticmethod
    def _health() -> Unary[str]:
        return Unary(HEALTH_CHECK, HealthCheckRequest(), status_name)

    @staticmethod
    def _visualize(
        objective: Objective | str, prior: str, prior_options: Mapping[str, object] | None, options: RenderOptions
    ) -> Stream[Visualization]:
        request = visualize_request(objective, prior, prior_options, options)
        return Stream("Visualize", request, VisualizeEvents(prior).event)

    @staticmethod
    def _compare(objective: Objective | str, priors: Priors | None, options: RenderOptions) -> Stream[Comparison]:
        return Stream("Compare", compare_request(objective, priors, options), CompareEvents().event)

    @staticmethod
    def _invert(image: ImageInput, layers: Layers, priors: Priors | None, options: InvertOptions) -> Stream[Inversions]:
        return Stream("Invert", invert_request(image, layers, priors, options), InvertEvents().event)

    @staticmethod
    def _dataset_examples(unit: Objective | str, images: Images, options: ExamplesOptions) -> Stream[DatasetExamples]:
        return Stream("DatasetExamples", examples_request(unit, images, options), ExamplesEvents().event)
