"""The asyncio client against a real server on loopback: the same surface as the sync client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from client_server import SIDE, loopback_config, serving

from priorviz_client import (
    AsyncClient,
    CancelledError,
    DeadlineExceededError,
    NotFoundError,
    Preview,
    PriorKind,
    Progress,
    ResourceExhaustedError,
    channel,
)
from service.server import PriorvizServer

LONG = 2000


@pytest.fixture(scope="module")
def server() -> Iterator[PriorvizServer]:
    with serving(loopback_config(workers=1, max_queue=0)) as running:
        yield running


def test_listings_and_visualize(server: PriorvizServer) -> None:
    async def scenario() -> None:
        async with AsyncClient(f"127.0.0.1:{server.port}") as client:
            assert await client.health() == "SERVING"
            models, layers, priors = await asyncio.gather(client.models(), client.layers(), client.priors())
            assert models[0].is_default and layers[0].name == "stem" and priors[0].kind is PriorKind.UNCONSTRAINED

            objective = channel("blocks.5", 3) + channel("blocks.5", 7)
            job = client.visualize_stream(objective, steps=4, size=SIDE, preview_steps=[2])
            events = [event async for event in job]
            result = await job.result()
            assert [event.step for event in events if isinstance(event, Progress)] == [1, 2, 3, 4]
            assert [event.step for event in events if isinstance(event, Preview)] == [2]
            assert result.objective == objective.to_text() and result.images[0].size == (SIDE, SIDE)

            comparison = await client.compare("logit:1", priors=["fourier", "pixel"], steps=2, size=SIDE)
            assert [r.prior for r in comparison.results] == ["fourier", "pixel"]

    asyncio.run(scenario())


def test_errors_and_deadline(server: PriorvizServer) -> None:
    async def scenario() -> None:
        async with AsyncClient(f"127.0.0.1:{server.port}") as client:
            with pytest.raises(NotFoundError, match="no_such_layer"):
                await client.visualize("no_such_layer:1", steps=2, size=SIDE)
            started = time.monotonic()
            with pytest.raises(DeadlineExceededError):
                await client.visualize("blocks.5:3", steps=LONG, size=SIDE, timeout=1.0)
            assert time.monotonic() - started < 5
            assert await _runs_within(client, 5.0)
            # Cancelling the caller's task (here by wait_for) cancels the call, and the server stops.
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(client.visualize("blocks.5:3", steps=LONG, size=SIDE), 1.0)
            assert await _runs_within(client, 5.0), "the job went on after its task was cancelled"

    asyncio.run(scenario())


def test_leaving_the_job_block_cancels(server: PriorvizServer) -> None:
    async def scenario() -> None:
        async with AsyncClient(f"127.0.0.1:{server.port}") as client:
            async with client.visualize_stream("blocks.5:3", steps=LONG, size=SIDE) as job:
                async for event in job:
                    if isinstance(event, Progress):
                        with pytest.raises(ResourceExhaustedError):
                            await client.visualize("blocks.5:3", steps=2, size=SIDE)
                        break
            with pytest.raises(CancelledError):
                await job.result()
            assert await _runs_within(client, 5.0), "the cancelled job kept the only worker busy"

            handle = client.visualize_stream("blocks.5:3", steps=LONG, size=SIDE)
            with pytest.raises(CancelledError):
                async for event in handle:
                    if isinstance(event, Progress):
                        assert handle.cancel()
            assert handle.done
            assert await _runs_within(client, 5.0)

    asyncio.run(scenario())


async def _runs_within(client: AsyncClient, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            return (await client.visualize("blocks.5:3", steps=2, size=SIDE)).steps == 2
        except ResourceExhaustedError:
            await asyncio.sleep(0.05)
    return False
