"""Jobs under pressure: cancellation, deadlines, overload, graceful shutdown, metrics endpoint, SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from service_fixtures import (
    CHECKOUT_PATH,
    StreamInBackground,
    error_of,
    result_of,
    running_server,
    server_config,
    stub_for,
    visualize,
    wait_until,
)

from service._proto.priorviz.v1 import priorviz_pb2 as pb
from service.jobs import Job, JobQueue, QueueFullError
from service.server import PriorvizServer

ROOT = Path(__file__).resolve().parents[1]


def _health(server) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status


def test_a_cancelled_500_step_job_frees_its_worker_within_a_second() -> None:
    with running_server() as server, stub_for(server) as stub:
        long_job = StreamInBackground(stub.Visualize(visualize(steps=500)))
        assert long_job.first_progress.wait(30)
        time.sleep(1.0)
        steps_done = sum(kind == "progress" for kind in long_job.kinds())
        assert 0 < steps_done < 500
        cancelled_at = time.monotonic()
        long_job.call.cancel()
        freed_after = wait_until(lambda: server.jobs.running_count == 0, timeout=5)
        assert freed_after < 1.0
        assert long_job.join(5) == grpc.StatusCode.CANCELLED
        assert server.load_model("efficientnet_lite0").hook_count() == 0
        started = time.monotonic()
        assert result_of(stub.Visualize(visualize(steps=2))).images
        assert time.monotonic() - started < 5
        assert server.metrics.jobs.labels(rpc="Visualize", outcome="cancelled")._value.get() == 1
        assert server.jobs.running_count == 0 and cancelled_at < time.monotonic()


def test_a_deadline_stops_the_work() -> None:
    with running_server() as server, stub_for(server) as stub:
        started = time.monotonic()
        error = error_of(lambda: stub.Visualize(visualize(steps=500), timeout=1.0))
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        wait_until(lambda: server.jobs.running_count == 0, timeout=2)
        assert time.monotonic() - started < 3
        assert server.metrics.jobs.labels(rpc="Visualize", outcome="cancelled")._value.get() == 1


def test_overload_is_refused_at_once_while_accepted_jobs_finish() -> None:
    with running_server(server_config(workers=1, max_queue=2)) as server, stub_for(server) as stub:
        running = StreamInBackground(stub.Visualize(visualize(steps=25)))
        assert running.first_progress.wait(30)
        first = StreamInBackground(stub.Visualize(visualize(steps=3)))
        wait_until(lambda: server.jobs.queue_length == 1, timeout=5)
        second = StreamInBackground(stub.Visualize(visualize(steps=3)))
        wait_until(lambda: server.jobs.queue_length == 2, timeout=5)
        started = time.monotonic()
        error = error_of(lambda: stub.Visualize(visualize(steps=3)))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert time.monotonic() - started < 0.5
        error = error_of(lambda: stub.Compare(pb.CompareRequest(settings=visualize(steps=3).settings)))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        for accepted in (running, first, second):
            assert accepted.join(60) == grpc.StatusCode.OK and accepted.kinds()[-1] == "result"
        positions = [event.queued.jobs_ahead for event in second.events if event.WhichOneof("event") == "queued"]
        assert positions == [1, 0]
        assert server.metrics.jobs.labels(rpc="Visualize", outcome="rejected")._value.get() == 1
        assert server.metrics.jobs.labels(rpc="Compare", outcome="rejected")._value.get() == 1


def test_graceful_shutdown_stops_serving_and_lets_the_running_job_finish() -> None:
    with running_server(server_config(grace_seconds=30)) as server, stub_for(server) as stub:
        job = StreamInBackground(stub.Visualize(visualize(steps=15)))
        assert job.first_progress.wait(30)
        assert server.stop() is True
        assert job.join(10) == grpc.StatusCode.OK and job.kinds()[-1] == "result"


def test_shutdown_cancels_jobs_that_outlive_the_grace_period() -> None:
    with running_server(server_config(grace_seconds=0.5)) as server, stub_for(server) as stub:
        job = StreamInBackground(stub.Visualize(visualize(steps=500)))
        assert job.first_progress.wait(30)
        started = time.monotonic()
        stopping = threading.Thread(target=server.stop)
        stopping.start()
        wait_until(lambda: _health(server) == health_pb2.HealthCheckResponse.NOT_SERVING, timeout=5)
        error = error_of(lambda: stub.Visualize(visualize(steps=2), timeout=5))
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        stopping.join(15)
        assert job.join(10) == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - started < 5


def test_prometheus_endpoint_counts_jobs_queue_and_step_time() -> None:
    with running_server(server_config(metrics_port=0)) as server, stub_for(server) as stub:
        result_of(stub.Visualize(visualize(steps=3)))
        error_of(lambda: stub.Visualize(visualize(model="nope")))
        text = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5).read().decode()
    assert re.search(r'priorviz_jobs_total\{outcome="succeeded",rpc="Visualize"\} 1\.0', text)
    assert re.search(r'priorviz_jobs_total\{outcome="invalid",rpc="Visualize"\} 1\.0', text)
    assert re.search(r"priorviz_queue_length 0\.0", text)
    assert re.search(r"priorviz_step_seconds_count 3\.0", text)


def test_queue_unit_withdraws_waiting_jobs_and_refuses_beyond_its_limit() -> None:
    queue = JobQueue(workers=1, max_queue=1)
    release = threading.Event()
    blocking = Job(lambda emit, stop: release.wait(10))
    waiting = Job(lambda emit, stop: None)
    queue.start()
    queue.submit(blocking)
    wait_until(lambda: queue.running_count == 1, timeout=5)
    assert queue.submit(waiting) == 0
    with pytest.raises(QueueFullError):
        queue.submit(Job(lambda emit, stop: None))
    waiting.cancel()
    assert waiting.wait(1) and queue.queue_length == 0
    release.set()
    assert blocking.wait(5) and blocking.error is None
    assert queue.drain(1) and queue.stop(5) is None


def test_a_job_whose_client_reads_nothing_holds_a_bounded_number_of_events() -> None:
    job = Job(lambda emit, stop: None, max_pending_events=2)
    emitted: list[int] = []

    def produce() -> None:
        for index in range(5):
            job.emit(index)
            emitted.append(index)

    producer = threading.Thread(target=produce)
    producer.start()
    wait_until(lambda: len(emitted) == 2, timeout=5)
    time.sleep(0.3)
    assert emitted == [0, 1], "the producer waits while two events are unsent"
    events = job.events()
    assert next(events) == 0
    wait_until(lambda: len(emitted) == 3, timeout=5)
    job.cancel()
    producer.join(5)
    assert not producer.is_alive() and emitted == [0, 1, 2, 3, 4], "a cancelled job's events are dropped"
    job.finish(None)
    assert list(events) == [1, 2]


def test_sigterm_shuts_the_server_process_down_gracefully(tmp_path) -> None:
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "service.server",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--held-out-model",
                "none",
                "--torch-threads",
                "1",
                "--grace-seconds",
                "5",
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": CHECKOUT_PATH},
        )
    try:
        wait_until(lambda: '"message": "serving"' in log_path.read_text(), timeout=120, interval=0.2)
        port = int(re.search(r'"message": "listening", "port": (\d+)', log_path.read_text()).group(1))
        probe = subprocess.run(
            [sys.executable, "-m", "service.healthcheck", "--address", f"127.0.0.1:{port}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": CHECKOUT_PATH},
        )
        assert probe.returncode == 0 and probe.stdout.strip() == "SERVING"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert '"message": "stopped"' in log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()


def test_two_workers_run_jobs_at_once_on_one_model_without_mixing_their_hooks() -> None:
    request = visualize("blocks.5:3 + logit:2", steps=12, seed=5)
    with running_server(server_config(workers=1)) as server, stub_for(server) as stub:
        alone = result_of(stub.Visualize(request)).images[0].png
    with running_server(server_config(workers=2)) as server, stub_for(server) as stub:
        first = StreamInBackground(stub.Visualize(request))
        second = StreamInBackground(stub.Visualize(request))
        wait_until(lambda: server.jobs.running_count == 2, timeout=30)
        assert first.join(60) == grpc.StatusCode.OK and second.join(60) == grpc.StatusCode.OK
        assert [stream.events[-1].result.images[0].png for stream in (first, second)] == [alone, alone]
        model = server.load_model("efficientnet_lite0")
        assert model.hook_count() == 0


def test_stopping_a_server_during_its_warm_up() -> None:
    server = PriorvizServer(server_config()).start()
    assert server.stop(grace_seconds=0) is True
    server.warm_up_thread.join(60)
    assert not server.ready.is_set(), "a server that was stopped must not turn ready when its warm-up ends"
