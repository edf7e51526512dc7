"""A real priorviz server on a loopback port for the client and CLI tests.

The server runs in the test process (its gRPC threads and job workers), and the client
talks to it over real TCP, exactly as it would to a remote server.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from dataclasses import replace

from service.config import ServerConfig
from service.server import PriorvizServer

SIDE = 64
"""Image side for client tests: a step takes tens of milliseconds on one CPU thread."""


def loopback_config(**changes: object) -> ServerConfig:
    """A loopback server on a free port with the held-out model off (unless asked for)."""
    base = ServerConfig(host="127.0.0.1", port=0, held_out_model="none", grace_seconds=1.0, torch_threads=1)
    return replace(base, **changes)


@contextlib.contextmanager
def serving(config: ServerConfig | None = None) -> Iterator[PriorvizServer]:
    """A started server that is SERVING (default model warm) until the block ends."""
    server = PriorvizServer(config or loopback_config()).start(wait_ready=True)
    try:
        yield server
    finally:
        server.stop(grace_seconds=0)


def free_port() -> int:
    """A port nothing listens on right now (for starting a server later, or never)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
