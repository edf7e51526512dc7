"""Dataset examples and the activation store: the engine against a brute-force ranking, then the RPC on loopback."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import torch
from PIL import Image
from service_fixtures import error_of, running_server, server_config, stub_for

from priorviz.activation_store import ActivationStore
from priorviz.errors import NotFoundError
from priorviz.examples import ReceptiveField, dataset_examples, receptive_field, stored_examples
from priorviz.image_input import EMBEDDED_SET, ImageSet, decode_image, embedded_image_set
from priorviz.inversion import resize_photograph
from priorviz.models import TargetModel
from priorviz.objectives import evaluate, parse_objective
from priorviz_objectives import ObjectiveError
from service._proto.priorviz.v1 import priorviz_pb2 as pb
from service.server import PriorvizServer, parse_args

CHANNEL = "blocks.10:17"
DIRECTION = "cosdir2:blocks.5:" + ",".join(str((index % 7) - 3) for index in range(80))
UNITS = (CHANNEL, "neuron:blocks.8:40@3,9", DIRECTION, "logit:281", "prob:281")


def png_bytes(colour: tuple[int, int, int], size: tuple[int, int] = (48, 40)) -> bytes:
    buffer = io.BytesIO()
    picture = Image.new("RGB", size, colour)
    picture.paste((255 - colour[0], 40, 200), (size[0] // 3, size[1] // 4, size[0] // 2, size[1] // 2))
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def embedded() -> ImageSet:
    return embedded_image_set()


@pytest.fixture(scope="module")
def brute_force(lite0: TargetModel, embedded: ImageSet) -> dict[str, dict[str, float]]:
    """Every unit's value on every photograph of the embedded set: the model run over each one here."""
    names = list(embedded.files)
    batch = torch.cat([resize_photograph(embedded.load(name, field="image"), lite0.input_size) for name in names])
    units = [parse_objective(text) for text in UNITS]
    with torch.no_grad():
        acts = lite0.activations(batch, set().union(*(unit.layers() for unit in units)))
    return {
        text: dict(zip(names, evaluate(unit, acts).tolist(), strict=True))
        for text, unit in zip(UNITS, units, strict=True)
    }


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> ActivationStore:
    return ActivationStore(tmp_path_factory.mktemp("store"))


@pytest.mark.parametrize("text", UNITS)
def test_examples_are_sorted_and_equal_a_brute_force_ranking(
    lite0: TargetModel,
    embedded: ImageSet,
    brute_force: dict[str, dict[str, float]],
    shared_store: ActivationStore,
    text: str,
) -> None:
    values = brute_force[text]
    result = dataset_examples(lite0, parse_objective(text), embedded, k=5, store=shared_store)
    assert result.count == len(values) == 26 and not result.unreadable
    expected = sorted(values, key=values.__getitem__)
    assert [example.name for example in result.top] == expected[::-1][:5]
    assert [example.name for example in result.bottom] == expected[:5]
    for example in result.top + result.bottom:
        assert example.value == pytest.approx(values[example.name], rel=1e-5, abs=1e-6)
        assert example.image.shape == example.crop.shape == (3, 128, 128)
    top_values = [example.value for example in result.top]
    assert top_values == sorted(top_values, reverse=True)


def test_a_channels_crop_is_its_receptive_field_around_the_highest_position(
    lite0: TargetModel, embedded: ImageSet, shared_store: ActivationStore
) -> None:
    result = dataset_examples(lite0, parse_objective(CHANNEL), embedded, k=3, store=shared_store)
    field = result.receptive_field
    for example in result.top:
        photograph = resize_photograph(embedded.load(example.name, field="image"), lite0.input_size)
        with torch.no_grad():
            channel_map = lite0.activations(photograph, ["blocks.10"])["blocks.10"][0, 17]
        y, x = divmod(int(channel_map.argmax()), channel_map.shape[1])
        assert example.position == (x, y)
        assert example.crop_value == pytest.approx(float(channel_map.max()), rel=1e-5)
        left, top, side = example.box
        assert side == field.size and 0 <= left <= 224 - side and 0 <= top <= 224 - side
        centre = ((x + 0.5) * 16, (y + 0.5) * 16)  # 224 / 14 input pixels per cell
        assert left <= centre[0] <= left + side and top <= centre[1] <= top + side
    neuron = dataset_examples(lite0, parse_objective("neuron:blocks.8:40@3,9"), embedded, k=1, store=None)
    assert neuron.top[0].position == (3, 9) and neuron.top[0].crop_value == neuron.top[0].value
    cls = dataset_examples(lite0, parse_objective("logit:281"), embedded, k=1, store=shared_store)
    assert cls.top[0].name == "chelsea" and cls.top[0].position is None and cls.top[0].box == (0, 0, 224)


def test_the_receptive_field_is_measured_and_grows_with_depth(lite0: TargetModel) -> None:
    fields = [receptive_field(lite0, layer) for layer in ("stem", "blocks.2", "blocks.5", "blocks.10")]
    sizes = [field.size for field in fields if field is not None]
    assert sizes == sorted(sizes) and len(set(sizes)) == 4
    assert sizes[0] <= 4  # one 3x3 convolution of stride 2
    assert all(field is not None and field.size <= field.extent <= 224 for field in fields)
    assert receptive_field(lite0, "logits") == ReceptiveField(224, 224, 224)


def test_the_store_answers_a_second_query_without_running_the_model_and_survives_a_restart(
    lite0: TargetModel, embedded: ImageSet, tmp_path: Path
) -> None:
    store = ActivationStore(tmp_path)
    unit = parse_objective(CHANNEL)
    first = dataset_examples(lite0, unit, embedded, store=store)
    second = dataset_examples(lite0, parse_objective("blocks.10:3"), embedded, store=store)  # the same layer
    assert (first.stored, second.stored, store.writes) == (False, True, 1)
    restarted = ActivationStore(tmp_path)
    again = stored_examples(lite0, unit, embedded, restarted)
    assert again is not None and again.stored and restarted.writes == 0
    assert [example.name for example in again.top] == [example.name for example in first.top]
    assert stored_examples(lite0, parse_objective("blocks.5:3"), embedded, restarted) is None  # another layer
    assert again.seconds < first.seconds / 2


def test_a_changed_added_or_corrupt_file_is_noticed(lite0: TargetModel, tmp_path: Path) -> None:
    folder = tmp_path / "set"
    folder.mkdir()
    for index, colour in enumerate([(250, 30, 30), (30, 250, 30), (30, 30, 250)]):
        (folder / f"p{index}.png").write_bytes(png_bytes(colour))
    image_set = ImageSet.from_folders("mine", [folder])
    store = ActivationStore(tmp_path / "store")
    unit = parse_objective("blocks.3:5")
    before = dataset_examples(lite0, unit, image_set, store=store, k=3)
    assert stored_examples(lite0, unit, image_set, store, k=3) is not None

    (folder / "p1.png").write_bytes(png_bytes((250, 250, 250)))  # same name, new content
    assert stored_examples(lite0, unit, image_set, store, k=3) is None
    changed = dataset_examples(lite0, unit, image_set, store=store, k=3)
    old, new = ({e.name: e.value for e in result.top} for result in (before, changed))
    assert old["p0"] == new["p0"] and old["p1"] != new["p1"] and store.writes == 2

    (folder / "p3.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    (folder / "p4.png").write_bytes(png_bytes((120, 60, 0)))
    grown = dataset_examples(lite0, unit, image_set, store=store, k=8)
    assert grown.count == 4 and grown.unreadable == ("p3",) and store.writes == 3
    assert {example.name for example in grown.top} == {"p0", "p1", "p2", "p4"}


def test_the_store_keeps_to_its_size_bound(lite0: TargetModel, embedded: ImageSet, tmp_path: Path) -> None:
    store = ActivationStore(tmp_path, max_bytes=1)
    dataset_examples(lite0, parse_objective("blocks.5:1"), embedded, store=store, k=1)
    dataset_examples(lite0, parse_objective("blocks.10:1"), embedded, store=store, k=1)
    assert len(list((tmp_path / "arrays").iterdir())) == 1  # the older entry went; the newest stays, alone
    assert store.total_bytes() == 26 * 112 * 14 * 14 * 4
    assert stored_examples(lite0, parse_objective("blocks.5:1"), embedded, store) is None


def test_only_single_units_are_accepted(lite0: TargetModel, embedded: ImageSet) -> None:
    for text in ("layer:blocks.10", "blocks.10:1 + blocks.10:2", "2*blocks.10:1", "blocks.10:1#0"):
        with pytest.raises(ObjectiveError) as refused:
            dataset_examples(lite0, parse_objective(text), embedded)
        assert refused.value.field == "unit"
    with pytest.raises(NotFoundError):
        dataset_examples(lite0, parse_objective("blocks.99:1"), embedded)


# -- the RPC ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("mine")
    for index, colour in enumerate([(250, 30, 30), (30, 250, 30), (30, 30, 250)]):
        (folder / f"p{index}.png").write_bytes(png_bytes(colour))
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, image_folder: Path) -> Iterator[PriorvizServer]:
    config = server_config(store_dir=str(tmp_path_factory.mktemp("store")), image_sets=(("mine", str(image_folder)),))
    with running_server(config) as running:
        yield running


def examples_request(unit: str = CHANNEL, **fields: object) -> pb.DatasetExamplesRequest:
    if "images" not in fields:
        fields.setdefault("image_set", EMBEDDED_SET)
    return pb.DatasetExamplesRequest(unit_text=unit, **fields)


def test_the_rpc_streams_progress_then_answers_from_the_store_at_once(
    server: PriorvizServer, brute_force: dict[str, dict[str, float]]
) -> None:
    with stub_for(server) as stub:
        started = time.perf_counter()
        first = list(stub.DatasetExamples(examples_request(DIRECTION, k=4, thumbnail_size=64)))
        computed = time.perf_counter() - started
        started = time.perf_counter()
        second = list(stub.DatasetExamples(examples_request(DIRECTION, k=4, thumbnail_size=64)))
        answered = time.perf_counter() - started
    kinds = [event.WhichOneof("event") for event in first]
    assert kinds[0] == "queued" and kinds[-1] == "result" and "progress" in kinds
    assert [event.progress.step for event in first if event.HasField("progress")][-1] == 26
    assert [event.WhichOneof("event") for event in second] == ["result"]  # no job: read from the store
    result = second[0].result
    assert result.stored and not first[-1].result.stored and answered < computed / 2
    values = brute_force[DIRECTION]
    expected = sorted(values, key=values.__getitem__, reverse=True)[:4]
    assert [example.name for example in result.top] == expected
    assert [example.value for example in result.top] == pytest.approx([values[name] for name in expected], rel=1e-5)
    assert (result.layer, result.image_set, result.image_count, result.receptive_field.image_size) == (
        "blocks.5",
        EMBEDDED_SET,
        26,
        224,
    )
    crop = Image.open(io.BytesIO(result.top[0].crop.png))
    assert crop.size == (64, 64) and result.top[0].crop_size == result.receptive_field.size


def test_uploaded_images_are_ranked_and_named_by_their_place(server: PriorvizServer, lite0: TargetModel) -> None:
    colours = [(250, 30, 30), (30, 250, 30), (30, 30, 250)]
    images = [pb.InputImage(data=png_bytes(colour)) for colour in colours] + [pb.InputImage(named="mine/p0")]
    with stub_for(server) as stub:
        result = list(stub.DatasetExamples(examples_request("blocks.3:5", images=images, k=4)))[-1].result
    photographs = [decode_image(png_bytes(colour), field="image") for colour in colours + colours[:1]]
    decoded = torch.cat([resize_photograph(photograph, 224) for photograph in photographs])
    with torch.no_grad():
        expected = evaluate(parse_objective("blocks.3:5"), lite0.activations(decoded, ["blocks.3"])).tolist()
    ranked = sorted(range(4), key=lambda index: -expected[index])
    assert [example.index for example in result.top] == ranked and not result.stored and result.image_set == ""
    assert [example.name for example in result.top] == [f"images[{index}]" for index in ranked]


def test_a_changed_file_of_an_image_set_folder_is_noticed(server: PriorvizServer, image_folder: Path) -> None:
    request = examples_request("blocks.3:5", image_set="mine", k=3)
    with stub_for(server) as stub:
        before = list(stub.DatasetExamples(request))[-1].result
        again = list(stub.DatasetExamples(request))
        (image_folder / "p2.png").write_bytes(png_bytes((240, 240, 20)))
        changed = list(stub.DatasetExamples(request))
    assert [event.WhichOneof("event") for event in again] == ["result"] and again[0].result.stored
    assert not changed[-1].result.stored and changed[0].WhichOneof("event") == "queued"
    value = {example.name: example.value for example in changed[-1].result.top}
    assert value["p2"] != {example.name: example.value for example in before.top}["p2"]


def _refusal(server: PriorvizServer, request: pb.DatasetExamplesRequest) -> tuple[grpc.StatusCode, str]:
    with stub_for(server) as stub:
        error = error_of(lambda: stub.DatasetExamples(request))
    return error.code(), error.details()


@pytest.mark.parametrize(
    ("request_fields", "code", "field"),
    [
        ({"image_set": "nothing"}, grpc.StatusCode.NOT_FOUND, "image_set"),
        ({"k": 33}, grpc.StatusCode.INVALID_ARGUMENT, "k"),
        ({"k": -1}, grpc.StatusCode.INVALID_ARGUMENT, "k"),
        ({"thumbnail_size": 4096}, grpc.StatusCode.INVALID_ARGUMENT, "thumbnail_size"),
        ({"unit": "blocks.99:1"}, grpc.StatusCode.NOT_FOUND, "unit_text"),
        ({"unit": "blocks.10:500"}, grpc.StatusCode.INVALID_ARGUMENT, "unit_text"),
        ({"unit": "layer:blocks.10"}, grpc.StatusCode.INVALID_ARGUMENT, "unit_text"),
        ({"unit": "blocks.10:1 - blocks.10:2"}, grpc.StatusCode.INVALID_ARGUMENT, "unit_text"),
        ({"unit": "diversity:blocks.10"}, grpc.StatusCode.INVALID_ARGUMENT, "unit_text"),
        ({"unit": ""}, grpc.StatusCode.INVALID_ARGUMENT, "unit"),
        ({"model": "no_such_model"}, grpc.StatusCode.NOT_FOUND, "model"),
        ({"image_set": ""}, grpc.StatusCode.INVALID_ARGUMENT, "image_set"),
        ({"images": [pb.InputImage(data=png_bytes((1, 2, 3)))]}, grpc.StatusCode.INVALID_ARGUMENT, "image_set"),
        (
            {"image_set": "", "images": [pb.InputImage(data=png_bytes((1, 2, 3))), pb.InputImage(data=b"\x89PNG..")]},
            grpc.StatusCode.INVALID_ARGUMENT,
            "images[1].data",
        ),
        (
            {"image_set": "", "images": [pb.InputImage(named="mine/../../etc/passwd")]},
            grpc.StatusCode.NOT_FOUND,
            "images[0].named",
        ),
        ({"image_set": "", "images": [pb.InputImage()] * 65}, grpc.StatusCode.INVALID_ARGUMENT, "images"),
    ],
)
def test_hostile_requests_are_refused_naming_the_field(
    server: PriorvizServer, request_fields: dict[str, object], code: grpc.StatusCode, field: str
) -> None:
    fields = dict(request_fields)
    unit = fields.pop("unit", CHANNEL)
    assert isinstance(unit, str)
    fields.setdefault("image_set", EMBEDDED_SET)
    if not fields["image_set"]:
        del fields["image_set"]
    got, details = _refusal(server, pb.DatasetExamplesRequest(unit_text=unit, **fields))
    assert (got, details.split(":", 1)[0]) == (code, field), details


def test_a_unit_tree_is_read_and_checked_like_an_objective(server: PriorvizServer) -> None:
    tree = pb.Objective(neuron=pb.NeuronObjective(layer="blocks.10", channel=200, x=1, y=2))
    got, details = _refusal(server, pb.DatasetExamplesRequest(unit=tree, image_set=EMBEDDED_SET))
    assert (got, details.split(":", 1)[0]) == (grpc.StatusCode.INVALID_ARGUMENT, "unit.neuron.channel")
    logit = pb.Objective(class_logit=pb.ClassLogitObjective(index=1))
    scaled = pb.Objective(scaled=pb.ScaledObjective(objective=logit, weight=2.0))
    got, details = _refusal(server, pb.DatasetExamplesRequest(unit=scaled, image_set=EMBEDDED_SET))
    assert (got, details.split(":", 1)[0]) == (grpc.StatusCode.INVALID_ARGUMENT, "unit")


def test_store_flags_are_parsed(tmp_path: Path) -> None:
    config, _ = parse_args(["--store-dir", str(tmp_path), "--store-max-mb", "64"])
    assert (config.store_dir, config.store_max_bytes) == (str(tmp_path), 64 * 2**20)
    with pytest.raises(SystemExit):
        parse_args(["--store-max-mb", "0"])


def test_images_of_any_shape_are_ranked_without_a_store(lite0: TargetModel) -> None:
    images = [("wide", torch.rand(3, 30, 50)), ("tall", torch.rand(3, 50, 30)), ("small", torch.rand(3, 9, 9))]
    result = dataset_examples(lite0, parse_objective("neuron:blocks.10:3"), images, k=3, thumbnail_size=32)
    assert result.count == 3 and not result.stored
    assert {example.name for example in result.top} == {"wide", "tall", "small"}
    assert all(example.image.shape == example.crop.shape == (3, 32, 32) for example in result.top)


def test_an_unusable_store_folder_is_failed_precondition_naming_it(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "store"
    not_a_folder.write_text("a file where the store's folder should be")
    with running_server(server_config(store_dir=str(not_a_folder))) as running, stub_for(running) as stub:
        error = error_of(lambda: stub.DatasetExamples(examples_request()))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert str(not_a_folder) in error.details() and "--store-dir" in error.details()
        # The rest of the server still serves.
        assert stub.ListPriors(pb.ListPriorsRequest()).priors
