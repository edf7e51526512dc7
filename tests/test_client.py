"""Both clients against a real server on loopback: listings, results, events, errors, cancel, retry, TLS.

Every test that takes ``connect`` runs twice: with ``Client``, and with ``AsyncClient``
driven from this synchronous code through ``Blocking`` (an event loop in its own thread).
The two share one surface, so one suite checks both. The tests at the end check what only
asyncio has: concurrent calls, and cancelling the caller's task.
"""

from __future__ import annotations

import asyncio
import pickle
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from blocking_async import Connect
from client_server import SIDE, free_port, loopback_config, serving

from priorviz_client import (
    AsyncClient,
    CancelledError,
    Client,
    Comparison,
    DeadlineExceededError,
    InvalidArgumentError,
    NotFoundError,
    Preview,
    PriorKind,
    Progress,
    Queued,
    ResourceExhaustedError,
    RetryPolicy,
    RpcError,
    ServerInfo,
    UnauthenticatedError,
    UnavailableError,
    channel,
    logit,
)
from service.server import PriorvizServer

LONG = 2000
"""Steps of a job that would run for minutes: it only ends early if cancellation works."""


@pytest.fixture(scope="module")
def server() -> Iterator[PriorvizServer]:
    with serving() as running:
        yield running


@pytest.fixture(scope="module")
def single_worker() -> Iterator[PriorvizServer]:
    """One worker and no queue: while a job runs, any other is refused, which shows whether it still runs."""
    with serving(loopback_config(workers=1, max_queue=0)) as running:
        yield running


@pytest.fixture()
def client(connect: Connect, server: PriorvizServer) -> Iterator[Client]:
    with connect(f"127.0.0.1:{server.port}", timeout=30) as connected:
        yield connected


def test_listings_describe_the_embedded_defaults(client: Client) -> None:
    assert client.health() == "SERVING"
    models = client.models()
    assert models[0].is_default
    assert [model.name for model in models if model.is_default] == ["efficientnet_lite0"]
    info = client.describe_model()
    assert (info.name, info.input_size, info.num_classes, len(info.class_names)) == (
        "efficientnet_lite0",
        224,
        1000,
        1000,
    )
    assert info.layer("blocks.10").channels == 112
    assert client.layers("efficientnet_lite0") == info.layers
    assert info.layers[0].name == "stem"
    priors = client.priors()
    assert priors[0].name == "fourier" and priors[0].kind is PriorKind.UNCONSTRAINED
    defaults = (priors[0].default_steps, priors[0].default_image_size, priors[0].default_learning_rate)
    assert defaults == (512, 224, pytest.approx(0.05))
    assert {"objective", "robustness", "spectral_slope"} <= set(client.metric_descriptions())


def test_visualize_returns_images_traces_metrics_and_previews(client: Client) -> None:
    objective = channel("blocks.5", 3) - 0.5 * channel("blocks.5", 4)
    job = client.visualize_stream(objective, steps=6, size=SIDE, batch=2, seed=3, preview_steps=[2, 6])
    events = list(job)
    result = job.result()

    assert isinstance(events[0], Queued)
    steps = [event.step for event in events if isinstance(event, Progress)]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert [event.step for event in events if isinstance(event, Preview)] == [2, 6]
    assert result.objective == objective.to_text()
    assert (result.prior, result.prior_kind, result.steps, result.seed) == ("fourier", PriorKind.UNCONSTRAINED, 6, 3)
    assert [image.size for image in result.images] == [(SIDE, SIDE)] * 2
    assert [len(trace) for trace in result.traces] == [6, 6]
    assert result.metrics[0]["objective"] == pytest.approx(result.objective_values[0], rel=1e-4)
    assert sorted(result.previews) == [2, 6] and len(result.previews[6]) == 2
    assert "diversity" in result.batch_metrics
    with pytest.raises(TypeError):
        result.metrics[0]["objective"] = 0.0  # type: ignore[index]
    assert pickle.loads(pickle.dumps(result)).metrics == result.metrics


def test_server_info_and_the_server_that_runs_a_job(client: Client, server: PriorvizServer) -> None:
    info = client.server_info()
    assert info == ServerInfo(server.server_id, server.config.workers, server.config.max_queue)
    job = client.visualize_stream("blocks.5:3", steps=1, size=SIDE)
    assert job.server_id() == server.server_id
    assert job.result().steps == 1


def test_round_robin_spreads_jobs_over_every_server(connect: Connect, server: PriorvizServer) -> None:
    with serving() as other:
        target = f"ipv4:127.0.0.1:{server.port},127.0.0.1:{other.port}"
        with connect(target, load_balancing="round_robin") as client:
            ran_on: list[str] = []
            # The first calls may all meet the one server that connected first; then they alternate.
            while len(ran_on) < 12 and set(ran_on) != {server.server_id, other.server_id}:
                job = client.visualize_stream("blocks.5:3", steps=1, size=SIDE)
                ran_on.append(job.server_id())
                job.result()
    assert set(ran_on) == {server.server_id, other.server_id}


def test_progress_bar(client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    client.compare("blocks.5:3", priors=["fourier", "pixel"], steps=3, size=SIDE, progress=True)
    shown = capsys.readouterr().err
    assert "fourier (1/2)" in shown and "pixel (2/2)" in shown and "3/3" in shown


def test_same_seed_gives_the_same_images(client: Client) -> None:
    first = client.visualize("blocks.5:3", steps=3, size=SIDE, seed=11)
    second = client.visualize("blocks.5:3", steps=3, size=SIDE, seed=11)
    assert first.images[0].tobytes() == second.images[0].tobytes()


def test_compare_puts_priors_side_by_side_with_one_seed(client: Client) -> None:
    comparison = client.compare(logit(1), priors=["fourier", "pixel"], steps=3, size=SIDE, seed=5)
    assert isinstance(comparison, Comparison)
    assert [result.prior for result in comparison.results] == ["fourier", "pixel"]
    assert comparison["pixel"].seed == comparison["fourier"].seed == 5
    assert comparison.objective == "logit:1" and len(comparison.unconstrained) == 2


def test_compare_defaults_to_unconstrained_and_every_learned_prior(client: Client) -> None:
    available = client.priors()
    comparison = client.compare("logit:1", steps=2, size=SIDE)
    expected = {"fourier"} | {prior.name for prior in available if prior.kind is PriorKind.LEARNED}
    assert {result.prior for result in comparison.results} == expected


def test_prior_options_reach_the_server_as_each_prior_declares_them(client: Client) -> None:
    declared = {prior.name: prior.options for prior in client.priors()}
    assert {"clip", "norm_penalty"} <= set(declared["gan_faces"])
    assert {"decay_power", "decorrelate"} <= set(declared["fourier"])
    priors = {"fourier": {"decay_power": 1.5, "decorrelate": False}, "gan_faces": {"clip": 2.0, "norm_penalty": 0.5}}
    comparison = client.compare("logit:1", priors=priors, steps=2, size=SIDE)
    assert [result.prior for result in comparison.results] == ["fourier", "gan_faces"]
    # The option changes the image: the same seed with the default decay draws another one.
    plain = client.visualize("logit:1", prior_options={"decorrelate": False}, steps=2, size=SIDE)
    assert plain.images[0].tobytes() != comparison["fourier"].images[0].tobytes()


@pytest.mark.parametrize(
    "call, error, fragment",
    [
        (lambda c: c.visualize(channel("no_such_layer", 1), steps=2, size=SIDE), NotFoundError, "no_such_layer"),
        (lambda c: c.visualize("no_such_layer:1", steps=2, size=SIDE), NotFoundError, "no_such_layer"),
        (lambda c: c.visualize("blocks.5:", steps=2, size=SIDE), InvalidArgumentError, "objective"),
        (lambda c: c.visualize("blocks.5:3", steps=10**6, size=SIDE), InvalidArgumentError, "steps"),
        (lambda c: c.visualize("blocks.5:3", prior="no_such_prior", steps=2), NotFoundError, "no_such_prior"),
        (lambda c: c.describe_model("no_such_model"), NotFoundError, "no_such_model"),
        (
            lambda c: c.compare("logit:1", priors={"gan_faces": {"latent_clip": 2}}, steps=2, size=SIDE),
            InvalidArgumentError,
            "latent_clip",
        ),
        (lambda c: c.visualize("logit:1", prior="gan_face", steps=2, size=SIDE), NotFoundError, "gan_face"),
    ],
)
def test_status_codes_become_typed_errors(
    client: Client, call: Callable[[Client], object], error: type[RpcError], fragment: str
) -> None:
    with pytest.raises(error, match=fragment) as raised:
        call(client)
    assert raised.value.details and raised.value.method


def test_message_limit_is_the_clients_option(connect: Connect, server: PriorvizServer, client: Client) -> None:
    with (
        connect(f"127.0.0.1:{server.port}", max_message_bytes=1024) as small,
        pytest.raises(ResourceExhaustedError, match="larger than max"),
    ):
        small.visualize("blocks.5:3", steps=1, size=SIDE)
    # The default (64 MiB) takes a batch of images in one result message.
    assert len(client.visualize("blocks.5:3", steps=1, size=SIDE, batch=4).images) == 4


def test_deadline_stops_a_long_job(client: Client) -> None:
    started = time.monotonic()
    with pytest.raises(DeadlineExceededError):
        client.visualize("blocks.5:3", steps=LONG, size=SIDE, timeout=1.0)
    assert time.monotonic() - started < 5
    # The worker is free again: a short job starts at once rather than behind the long one.
    assert client.visualize("blocks.5:3", steps=2, size=SIDE, timeout=20).steps == 2


def test_breaking_out_of_the_events_cancels_the_job(connect: Connect, single_worker: PriorvizServer) -> None:
    with connect(f"127.0.0.1:{single_worker.port}") as client:
        job = client.visualize_stream("blocks.5:3", steps=LONG, size=SIDE)
        for event in job:
            if isinstance(event, Progress):
                # While it runs, the only worker is busy and the queue holds nothing more.
                with pytest.raises(ResourceExhaustedError):
                    client.visualize("blocks.5:3", steps=2, size=SIDE)
                break
        with pytest.raises(CancelledError):
            job.result()
        assert _runs_within(client, seconds=5.0), "the cancelled job kept the only worker busy"


def test_leaving_the_job_block_cancels(connect: Connect, single_worker: PriorvizServer) -> None:
    with connect(f"127.0.0.1:{single_worker.port}") as client:
        with client.visualize_stream("blocks.5:3", steps=LONG, size=SIDE) as job:
            events = iter(job)  # kept open: only leaving the block ends the call
            next(event for event in events if isinstance(event, Progress))
            with pytest.raises(ResourceExhaustedError):
                client.visualize("blocks.5:3", steps=2, size=SIDE)
        with pytest.raises(CancelledError):
            job.result()
        assert _runs_within(client, seconds=5.0), "the cancelled job kept the only worker busy"


def test_cancel_through_the_handle(connect: Connect, single_worker: PriorvizServer) -> None:
    with connect(f"127.0.0.1:{single_worker.port}") as client:
        # From inside the loop over its events:
        job = client.visualize_stream("blocks.5:3", steps=LONG, size=SIDE)
        with pytest.raises(CancelledError):
            for event in job:
                if isinstance(event, Progress):
                    assert job.cancel()
        assert job.done
        assert _runs_within(client, seconds=5.0)

        # From another thread while result() waits:
        job = client.visualize_stream("blocks.5:3", steps=LONG, size=SIDE)
        events = iter(job)  # kept open, so that only cancel() can end the call
        next(event for event in events if isinstance(event, Progress))
        threading.Timer(0.2, job.cancel).start()
        with pytest.raises(CancelledError):
            job.result()
        assert job.done
        assert _runs_within(client, seconds=5.0)


def _runs_within(client: Client, seconds: float) -> bool:
    """Whether a short job is accepted within ``seconds`` (the server frees a cancelled job's worker)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            return client.visualize("blocks.5:3", steps=2, size=SIDE).steps == 2
        except ResourceExhaustedError:
            time.sleep(0.05)
    return False


def test_listings_retry_until_a_late_server_is_up(connect: Connect) -> None:
    port = free_port()
    holder: dict[str, PriorvizServer] = {}
    starter = threading.Timer(
        0.5, lambda: holder.setdefault("server", PriorvizServer(loopback_config(port=port)).start())
    )
    starter.start()
    try:
        with connect(
            f"127.0.0.1:{port}", retry=RetryPolicy(max_attempts=20, initial_backoff=0.2, max_backoff=1.0)
        ) as client:
            assert client.models()[0].name == "efficientnet_lite0"
    finally:
        starter.join()
        holder["server"].stop(grace_seconds=0)


def test_long_work_is_not_retried(connect: Connect) -> None:
    with connect(f"127.0.0.1:{free_port()}", retry=RetryPolicy(max_attempts=10, initial_backoff=1.0)) as client:
        started = time.monotonic()
        with pytest.raises(UnavailableError):
            client.visualize("blocks.5:3", steps=2, size=SIDE)
        assert time.monotonic() - started < 1.0
        with pytest.raises(UnavailableError):
            client.models(timeout=0.5)


def test_wait_until_serving(connect: Connect, server: PriorvizServer) -> None:
    with connect(f"127.0.0.1:{server.port}") as client:
        started = time.monotonic()
        client.wait_until_serving(timeout=5)
        assert time.monotonic() - started < 1.0
    with connect(f"127.0.0.1:{free_port()}") as client:
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError, match=r"not SERVING after 1 s \(last: UNAVAILABLE\)"):
            client.wait_until_serving(timeout=1, poll_interval=0.1)
        assert 0.8 < time.monotonic() - started < 3.0


def test_token_and_tls(connect: Connect, tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    try:
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=DNS:localhost",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
    except FileNotFoundError:
        pytest.skip("openssl is not installed")
    config = loopback_config(token="s3cret", tls_cert=str(cert), tls_key=str(key))
    with serving(config) as server:
        target = f"127.0.0.1:{server.port}"
        with connect(target, token="s3cret", root_certificates=cert, server_name="localhost") as client:
            assert client.models()[0].is_default
            assert client.visualize("logit:1", steps=2, size=SIDE).images[0].size == (SIDE, SIDE)
        with (
            connect(target, token="wrong", root_certificates=cert, server_name="localhost") as client,
            pytest.raises(UnauthenticatedError),
        ):
            client.models()
        with (
            connect(target, token="s3cret", retry=RetryPolicy(max_attempts=1)) as plaintext,
            pytest.raises(UnavailableError),
        ):
            plaintext.models(timeout=2)


# -- what only asyncio has ------------------------------------------------------------------


def test_async_calls_run_concurrently(server: PriorvizServer) -> None:
    async def scenario() -> None:
        async with AsyncClient(f"127.0.0.1:{server.port}") as client:
            models, layers, priors = await asyncio.gather(client.models(), client.layers(), client.priors())
            assert models[0].is_default and layers[0].name == "stem" and priors[0].kind is PriorKind.UNCONSTRAINED

    asyncio.run(scenario())


def test_cancelling_the_callers_task_cancels_the_call(single_worker: PriorvizServer) -> None:
    async def scenario() -> None:
        async with AsyncClient(f"127.0.0.1:{single_worker.port}") as client:
            # wait_for cancels the task; the task's cancellation must propagate (not become the
            # job's CancelledError) for wait_for to answer TimeoutError, and the server must stop.
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(client.visualize("blocks.5:3", steps=LONG, size=SIDE), 1.0)
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline:
                try:
                    assert (await client.visualize("blocks.5:3", steps=2, size=SIDE)).steps == 2
                    return
                except ResourceExhaustedError:
                    await asyncio.sleep(0.05)
            pytest.fail("the job went on after its task was cancelled")

    asyncio.run(scenario())
