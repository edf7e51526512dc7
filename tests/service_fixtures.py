"""Helpers for the service tests: a real server on a loopback port, and small requests."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import grpc

from service._proto.priorviz.v1 import priorviz_pb2 as pb
from service._proto.priorviz.v1 import priorviz_pb2_grpc as pb_grpc
from service.config import Limits, ServerConfig
from service.server import PriorvizServer

ROOT = Path(__file__).resolve().parents[1]
CHECKOUT_PATH = os.pathsep.join([str(ROOT), str(ROOT / "clients" / "python")])
"""PYTHONPATH for a server process run from this checkout: the server, and the objective
specifications it imports (``priorviz_objectives``, shipped by the client distribution)."""

SMALL = 64
"""Image side used by the tests: a step takes tens of milliseconds on one CPU thread."""


def server_config(**changes: object) -> ServerConfig:
    """A loopback server on a free port; the held-out model is skipped unless asked for."""
    base = ServerConfig(host="127.0.0.1", port=0, held_out_model="none", grace_seconds=5.0, torch_threads=1)
    limits = changes.pop("limits", None)
    config = replace(base, **changes)
    return replace(config, limits=limits) if isinstance(limits, Limits) else config


@contextlib.contextmanager
def running_server(config: ServerConfig | None = None) -> Iterator[PriorvizServer]:
    server = PriorvizServer(config or server_config()).start(wait_ready=True)
    try:
        yield server
    finally:
        server.stop(grace_seconds=0)


@contextlib.contextmanager
def stub_for(server: PriorvizServer) -> Iterator[pb_grpc.VisualizerStub]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield pb_grpc.VisualizerStub(channel)


def settings(
    objective_text: str = "blocks.5:3", *, steps: int = 3, size: int = SMALL, **fields: object
) -> pb.RenderSettings:
    return pb.RenderSettings(objective_text=objective_text, steps=steps, image_size=size, **fields)


def visualize(
    objective_text: str = "blocks.5:3", *, prior: str = "", steps: int = 3, **fields: object
) -> pb.VisualizeRequest:
    return pb.VisualizeRequest(settings=settings(objective_text, steps=steps, **fields), prior=prior)


def result_of(events: Iterator[pb.VisualizeEvent]) -> pb.VisualizeResult:
    results = [event.result for event in events if event.WhichOneof("event") == "result"]
    assert len(results) == 1
    return results[0]


def error_of(call: Callable[[], object]) -> grpc.RpcError:
    """The RpcError a call ends with (consuming a stream when the call returns one)."""
    try:
        outcome = call()
        if isinstance(outcome, Iterator):
            for _ in outcome:
                pass
    except grpc.RpcError as error:
        return error
    raise AssertionError("the call succeeded")


class StreamInBackground:
    """Consume a server stream on a thread, recording events and the final status."""

    def __init__(self, call: grpc.Call) -> None:
        self.call = call
        self.events: list[object] = []
        self.code: grpc.StatusCode | None = None
        self.first_progress = threading.Event()
        self.ended_at: float | None = None
        self._thread = threading.Thread(target=self._consume, daemon=True)
        self._thread.start()

    def _consume(self) -> None:
        try:
            for event in self.call:
                self.events.append(event)
                if event.WhichOneof("event") == "progress":
                    self.first_progress.set()
            self.code = grpc.StatusCode.OK
        except grpc.RpcError as error:
            self.code = error.code()
        finally:
            self.ended_at = time.monotonic()
            self.first_progress.set()

    def join(self, timeout: float) -> grpc.StatusCode | None:
        self._thread.join(timeout)
        return self.code

    def kinds(self) -> list[str]:
        return [event.WhichOneof("event") for event in self.events]


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.01) -> float:
    """Seconds it took ``condition`` to hold; raises AssertionError after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
    return time.monotonic() - started
