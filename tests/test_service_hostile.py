"""Regression tests for the faults that hostile requests found (issue 10): each sends the exact request
to a real server on loopback and checks the status, its message, and that no traceback is logged."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
import torch
import torchvision
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

from priors.base import Parameterization, PriorInfo, PriorKind, register_prior, unregister_prior
from priorviz.models import checkpoint
from priorviz.models._api import DEFAULT_CACHED_MODELS, cached_models, set_model_cache_size
from service import server as server_module
from service._proto.priorviz.v1 import priorviz_pb2 as pb
from service._proto.priorviz.v1 import priorviz_pb2_grpc as pb_grpc
from service.observability import JsonFormatter

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "s3cret"
VISUALIZE = "/priorviz.v1.Visualizer/Visualize"
DESCRIBE = "/priorviz.v1.Visualizer/DescribeModel"


def _tiny_checkpoint(path: Path, **changes: object) -> Path:
    """A 4-class squeezenet checkpoint at input size 32, with ``changes`` applied to its payload."""
    torch.manual_seed(0)
    net = torchvision.models.squeezenet1_1(weights=None, num_classes=4)
    payload = {"arch": "squeezenet1_1", "state_dict": net.state_dict(), "class_names": list("abcd"), "input_size": 32}
    torch.save(payload | changes, path)
    return path


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("checkpoints")
    _tiny_checkpoint(directory / "net.pt")
    (directory / "sub").mkdir()
    return directory


@pytest.fixture(scope="module")
def server(checkpoint_dir: Path):
    with running_server(server_config(checkpoint_dirs=(str(checkpoint_dir),))) as running:
        yield running


@pytest.fixture
def stub(server):
    with stub_for(server) as client:
        yield client


def _errors_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno >= logging.ERROR or record.exc_info]


def _describe(stub, model: str) -> grpc.RpcError | pb.DescribeModelResponse:
    try:
        return stub.DescribeModel(pb.DescribeModelRequest(model=model, omit_class_names=True), timeout=60)
    except grpc.RpcError as error:
        return error


# -- checkpoints -----------------------------------------------------------------------------------

MALFORMED = {
    "empty_state_dict": ({"state_dict": {}}, "'state_dict' is empty"),
    "list_state_dict": ({"state_dict": [torch.zeros(2)]}, "'state_dict' must be a dict of tensors, got list"),
    "input_size_0": ({"input_size": 0}, "'input_size' must be an integer within 1..1024, got 0"),
    "one_element_mean": ({"mean": [0.5], "std": [0.5, 0.5, 0.5]}, "'mean' must be three finite numbers"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_checkpoint_is_invalid_argument_naming_the_problem(
    stub, checkpoint_dir: Path, caplog, case: str
) -> None:
    changes, problem = MALFORMED[case]
    _tiny_checkpoint(checkpoint_dir / f"{case}.pt", **changes)
    error = _describe(stub, f"checkpoint:{case}.pt")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert error.details().startswith("model:") and problem in error.details(), error.details()
    error = error_of(lambda: stub.Visualize(visualize(model=f"checkpoint:{checkpoint_dir / case}.pt")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and problem in error.details()
    assert not _errors_logged(caplog)


def test_checkpoint_paths_outside_the_directories_all_get_the_same_answer(
    stub, checkpoint_dir: Path, tmp_path: Path
) -> None:
    outside = _tiny_checkpoint(tmp_path / "outside.pt")
    (checkpoint_dir / "link_out.pt").symlink_to(outside)
    probes = [
        "checkpoint:missing.pt",
        f"checkpoint:{checkpoint_dir / 'missing.pt'}",
        "checkpoint:/etc/passwd",
        f"checkpoint:{outside}",
        f"checkpoint:{checkpoint_dir}/../{outside.parent.name}/outside.pt",
        f"checkpoint:../{outside.parent.name}/outside.pt",
        "checkpoint:link_out.pt",
        f"checkpoint:{checkpoint_dir}",
        "checkpoint:sub",
        "checkpoint:",
    ]
    answers = set()
    for name in probes:
        error = _describe(stub, name)
        assert error.code() == grpc.StatusCode.NOT_FOUND, (name, error.details())
        answers.add(error.details().replace(repr(name), "NAME"))
    assert answers == {"model: model NAME: no checkpoint file by that name in this server's checkpoint directories"}


def test_checkpoints_are_refused_alike_when_no_directory_is_configured() -> None:
    with running_server() as plain, stub_for(plain) as stub:
        for name in ("checkpoint:/etc/passwd", "checkpoint:/no/such/file.pt"):
            error = _describe(stub, name)
            assert error.code() == grpc.StatusCode.NOT_FOUND
            assert error.details() == f"model: model {name!r}: checkpoint models are disabled on this server"


def test_spellings_of_one_checkpoint_share_one_model_and_the_cache_is_bounded(
    server, stub, checkpoint_dir: Path
) -> None:
    (checkpoint_dir / "alias.pt").symlink_to(checkpoint_dir / "net.pt")
    spellings = [
        "net.pt",
        "./net.pt",
        "sub/../net.pt",
        "alias.pt",
        str(checkpoint_dir / "net.pt"),
        f"{checkpoint_dir}//./sub/../net.pt",
    ]
    names = {_describe(stub, f"checkpoint:{spelling}").name for spelling in spellings}
    assert names == {f"checkpoint:{(checkpoint_dir / 'net.pt').resolve()}"}
    assert sum(name in names for name in cached_models()) == 1
    others = [_tiny_checkpoint(checkpoint_dir / f"other{index}.pt") for index in range(3)]
    try:
        set_model_cache_size(2)
        for path in others:
            assert _describe(stub, f"checkpoint:{path.name}").input_size == 32
        cached = [name for name in cached_models() if name.startswith("checkpoint:")]
        assert cached == [f"checkpoint:{path.resolve()}" for path in others[1:]]
        assert "efficientnet_lite0" in cached_models(), "registered models are never dropped"
    finally:
        set_model_cache_size(DEFAULT_CACHED_MODELS)


def test_loading_a_model_does_not_block_requests_for_other_models(
    server, stub, checkpoint_dir: Path, monkeypatch
) -> None:
    loading, release = threading.Event(), threading.Event()
    loads = []
    original = checkpoint.load_checkpoint

    def slow_load(path):
        if Path(path).name == "slow.pt":
            loads.append(path)
            loading.set()
            assert release.wait(30)
        return original(path)

    monkeypatch.setattr(checkpoint, "load_checkpoint", slow_load)
    _tiny_checkpoint(checkpoint_dir / "slow.pt")
    results: list[object] = []
    waiting = [threading.Thread(target=lambda: results.append(_describe(stub, "checkpoint:slow.pt"))) for _ in "ab"]
    for thread in waiting:
        thread.start()
    try:
        assert loading.wait(30)
        started = time.monotonic()
        assert result_of(stub.Visualize(visualize(steps=1), timeout=30)).images
        assert _describe(stub, "checkpoint:net.pt").input_size == 32
        assert time.monotonic() - started < 10
        assert not results, "the slow model is still loading"
    finally:
        release.set()
        for thread in waiting:
            thread.join(30)
    assert len(loads) == 1, "two requests for one model build it once"
    assert [result.input_size for result in results] == [32, 32]


# -- names, options and bytes -----------------------------------------------------------------------


def test_a_16kb_prior_name_is_not_found_and_echoed_short(stub, caplog) -> None:
    caplog.set_level(logging.INFO)
    name = "p" * 16_500
    error = error_of(lambda: stub.Visualize(visualize(prior=name)))
    assert error.code() == grpc.StatusCode.NOT_FOUND, error.details()
    assert error.details().startswith("prior: unknown prior 'ppp") and len(error.details()) < 600
    compare = pb.CompareRequest(settings=visualize().settings, priors=[pb.PriorChoice(name=name)])
    error = error_of(lambda: stub.Compare(compare))
    assert error.code() == grpc.StatusCode.NOT_FOUND and len(error.details()) < 600
    for options in ({"k" * 16_500: "1"}, {"decay_power": "1" * 16_500}):
        request = pb.VisualizeRequest(settings=visualize().settings, prior="fourier", prior_options=options)
        error = error_of(lambda request=request: stub.Visualize(request))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and len(error.details()) < 600, error.details()
    lines = [JsonFormatter().format(record) for record in caplog.records]
    assert lines and max(map(len, lines)) < 1000


def test_a_decay_power_of_401_digits_is_invalid_argument_without_traceback(stub, caplog) -> None:
    request = pb.VisualizeRequest(
        settings=visualize().settings, prior="fourier", prior_options={"decay_power": "1" + "0" * 400}
    )
    error = error_of(lambda: stub.Visualize(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert error.details().startswith("prior_options:") and "decay_power" in error.details()
    assert not _errors_logged(caplog)


def test_gan_faces_with_an_infinite_norm_penalty_is_refused(stub) -> None:
    request = pb.VisualizeRequest(
        settings=visualize().settings, prior="gan_faces", prior_options={"norm_penalty": "inf"}
    )
    error = error_of(lambda: stub.Visualize(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert error.details().startswith("prior_options:") and "norm_penalty" in error.details()


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field, written by hand: the Python encoder refuses what these tests send."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _nested_objective(levels: int) -> bytes:
    objective = _field(5, b"\x08\x01")  # class_logit {index: 1}
    for _ in range(levels - 1):
        objective = _field(9, _field(1, objective))  # scaled {objective: ...}
    return objective


UNDECODABLE = {
    "invalid_utf8_prior": (VISUALIZE, _field(1, _field(3, b"logit:1")) + _field(2, b"\xff\xfe")),
    "invalid_utf8_model": (DESCRIBE, _field(1, b"efficientnet\xc3")),
    "99_nested_objectives": (VISUALIZE, _field(1, _field(2, _nested_objective(99)))),
}


def _send_raw(channel: grpc.Channel, method: str, body: bytes, metadata=None) -> grpc.RpcError:
    if method == VISUALIZE:
        call = channel.unary_stream(method, response_deserializer=pb.VisualizeEvent.FromString)
        return error_of(lambda: call(body, metadata=metadata, timeout=30))
    call = channel.unary_unary(method, response_deserializer=pb.DescribeModelResponse.FromString)
    return error_of(lambda: call(body, metadata=metadata, timeout=30))


@pytest.mark.parametrize("case", sorted(UNDECODABLE))
def test_bytes_that_do_not_decode_are_invalid_argument_without_traceback(server, caplog, case: str) -> None:
    method, body = UNDECODABLE[case]
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        error = _send_raw(channel, method, body)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert error.details().startswith("the request does not decode")
    assert not _errors_logged(caplog)


# -- authentication ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def token_server():
    with running_server(server_config(token=TOKEN)) as running:
        yield running


def test_the_bearer_scheme_is_case_insensitive(token_server) -> None:
    with stub_for(token_server) as stub:
        for scheme in ("Bearer", "bearer", "BEARER", "bEaReR"):
            metadata = [("authorization", f"{scheme} {TOKEN}")]
            assert stub.ListModels(pb.ListModelsRequest(), metadata=metadata, timeout=10).models
        for value in (f"Basic {TOKEN}", f"Bearer{TOKEN}", f"Bearer {TOKEN}x", TOKEN):
            error = error_of(
                lambda value=value: stub.ListModels(pb.ListModelsRequest(), metadata=[("authorization", value)])
            )
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED, value


def test_unauthenticated_callers_learn_nothing_about_methods_or_bytes(token_server, caplog) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{token_server.port}") as channel:
        unknown = channel.unary_unary("/priorviz.v1.Visualizer/NoSuchMethod")
        assert error_of(lambda: unknown(b"", timeout=10)).code() == grpc.StatusCode.UNAUTHENTICATED
        error = error_of(lambda: unknown(b"", metadata=[("authorization", f"Bearer {TOKEN}")], timeout=10))
        assert error.code() == grpc.StatusCode.UNIMPLEMENTED
        for method, body in UNDECODABLE.values():
            assert _send_raw(channel, method, body).code() == grpc.StatusCode.UNAUTHENTICATED
            authorized = _send_raw(channel, method, body, metadata=[("authorization", f"Bearer {TOKEN}")])
            assert authorized.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert not _errors_logged(caplog)


def test_a_token_without_tls_is_warned_about(caplog) -> None:
    with running_server(server_config(token=TOKEN)):
        pass
    assert any(record.levelno == logging.WARNING and "TLS is off" in record.getMessage() for record in caplog.records)


# -- jobs that outlive their welcome -------------------------------------------------------------------

FROZEN_CLIENT = """
import sys
import grpc
from service._proto.priorviz.v1 import priorviz_pb2 as pb, priorviz_pb2_grpc as pb_grpc

with grpc.insecure_channel(f"127.0.0.1:{sys.argv[1]}") as channel:
    request = pb.VisualizeRequest(settings=pb.RenderSettings(objective_text="blocks.0:1", steps=2000, image_size=64))
    for event in pb_grpc.VisualizerStub(channel).Visualize(request):
        if event.WhichOneof("event") == "progress":
            print(event.progress.step, flush=True)
"""


def test_a_frozen_client_loses_its_job_within_the_keepalive_timeout(tmp_path: Path) -> None:
    script = tmp_path / "frozen_client.py"
    script.write_text(FROZEN_CLIENT)
    keepalive = 1
    with running_server(server_config(keepalive_seconds=keepalive)) as server:
        client = subprocess.Popen(
            [sys.executable, str(script), str(server.port)],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": CHECKOUT_PATH},
        )
        try:
            for line in client.stdout:
                if int(line) >= 20:
                    break
            client.send_signal(signal.SIGSTOP)
            freed_after = wait_until(lambda: server.jobs.running_count == 0, timeout=30, interval=0.1)
        finally:
            client.kill()
            client.wait(10)
        assert freed_after < 3 * keepalive + 2
        assert server.metrics.jobs.labels(rpc="Visualize", outcome="cancelled")._value.get() == 1
        assert server.metrics.jobs.labels(rpc="Visualize", outcome="succeeded")._value.get() == 0


def test_a_job_past_max_job_seconds_is_stopped_with_deadline_exceeded() -> None:
    with running_server(server_config(max_job_seconds=0.5)) as server, stub_for(server) as stub:
        started = time.monotonic()
        error = error_of(lambda: stub.Visualize(visualize(steps=2000), timeout=60))
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert error.details() == "the job ran past this server's limit of 0.5 s per job"
        assert time.monotonic() - started < 10
        wait_until(lambda: server.jobs.running_count == 0, timeout=5)
        assert server.metrics.jobs.labels(rpc="Visualize", outcome="timed_out")._value.get() == 1


class _GoesNaN(Parameterization):
    """Pixels that turn NaN after the first step, as a diverging optimization would."""

    def __init__(self, batch: int, height: int, width: int) -> None:
        super().__init__(batch, height, width)
        self.pixels = torch.nn.Parameter(torch.zeros(batch, 3, height, width))
        self.register_buffer("poison", torch.zeros(()))

    def forward(self) -> torch.Tensor:
        return torch.sigmoid(self.pixels) + self.poison

    def after_step(self) -> None:
        self.poison.fill_(float("nan"))


@pytest.fixture
def nan_prior():
    name = "test_goes_nan"
    info = PriorInfo(
        name,
        PriorKind.UNCONSTRAINED,
        "turns NaN after one step",
        default_steps=4,
        default_image_size=64,
        default_learning_rate=0.05,
    )
    register_prior(info)(lambda batch, height, width, *, generator, device: _GoesNaN(batch, height, width).to(device))
    yield name
    unregister_prior(name)


def test_a_job_whose_objective_turns_non_finite_is_never_ok(stub, nan_prior: str, caplog) -> None:
    error = error_of(lambda: stub.Visualize(visualize(prior=nan_prior, steps=4)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert "became nan at step 2" in error.details()
    assert not _errors_logged(caplog)


def test_a_second_sigterm_ends_the_server_without_waiting(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    log_path = tmp_path / "server.log"
    command = [sys.executable, "-m", "service.server", "--port", "0", "--held-out-model", "none"]
    command += ["--torch-threads", "1", "--grace-seconds", "60", "--token-file", str(token_file)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": CHECKOUT_PATH}
        )
    try:
        wait_until(lambda: '"message": "serving"' in log_path.read_text(), timeout=120, interval=0.2)
        text = log_path.read_text()
        assert "TLS is off" in text and TOKEN not in " ".join(command)
        port = int(text.split('"message": "listening", "port": ')[1].split(",")[0])
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.VisualizerStub(channel)
            job = StreamInBackground(
                stub.Visualize(visualize(steps=2000), metadata=[("authorization", f"bearer {TOKEN}")])
            )
            assert job.first_progress.wait(60) and job.kinds()[-1] == "progress"
            process.send_signal(signal.SIGTERM)
            wait_until(lambda: '"message": "shutting down"' in log_path.read_text(), timeout=10, interval=0.1)
            assert process.poll() is None, "the first SIGTERM waits for the running job"
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 128 + signal.SIGTERM
        assert "second stop signal" in log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()


def test_token_and_checkpoint_flags_are_checked_at_startup(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(server_module, "configure_json_logging", lambda level: None)
    empty = tmp_path / "empty"
    empty.write_text("\n")
    for argv in (
        ["--token-file", str(empty)],
        ["--token-file", str(tmp_path / "missing")],
        ["--token", "a", "--token-file", str(empty)],
        ["--checkpoint-dir", str(tmp_path / "missing")],
        ["--max-job-seconds", "0"],
    ):
        with pytest.raises(SystemExit):
            server_module.parse_args(argv)
    (tmp_path / "token").write_text(" s3cret \n")
    config, _ = server_module.parse_args(["--token-file", str(tmp_path / "token"), "--checkpoint-dir", str(tmp_path)])
    assert config.token == "s3cret" and config.checkpoint_dirs == (str(tmp_path),)
