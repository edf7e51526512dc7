"""Each objective against a direct computation on a small model, the algebra and the text form."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from priorviz.errors import InvalidInputError, NotFoundError
from priorviz.models.target import LOGITS, Normalization, TargetModel
from priorviz.objectives import (
    Caricature,
    Channel,
    ClassLogit,
    ClassProbability,
    Direction,
    Diversity,
    Layer,
    Neuron,
    ObjectiveError,
    Scaled,
    Sum,
    evaluate,
    parse_objective,
    per_batch,
    reference_activations,
    reference_layers,
    validate_objective,
)
from priorviz_objectives import Leaf


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.conv2(self.act1(self.conv1(x)))).flatten(1))


@pytest.fixture(scope="module")
def tiny() -> TargetModel:
    torch.manual_seed(0)
    return TargetModel(
        "tiny",
        TinyNet(),
        input_size=8,
        normalization=Normalization((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
        class_names=[f"c{i}" for i in range(5)],
        layer_names=["conv1", "act1", "conv2", LOGITS],
    )


@pytest.fixture(scope="module")
def batch(tiny: TargetModel) -> tuple[dict[str, torch.Tensor], dict[str, np.ndarray]]:
    images = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    acts = tiny.activations(images, ["conv1", "conv2", LOGITS])
    return acts, {name: value.detach().double().numpy() for name, value in acts.items()}


def test_layer_listing(tiny: TargetModel) -> None:
    assert [(layer.name, layer.channels, layer.height) for layer in tiny.layers] == [
        ("conv1", 4, 8),
        ("act1", 4, 8),
        ("conv2", 6, 4),
        (LOGITS, 5, 1),
    ]


def test_channel(batch) -> None:
    acts, ref = batch
    np.testing.assert_allclose(
        evaluate(Channel("conv2", 3), acts).detach().numpy(), ref["conv2"][:, 3].mean(axis=(1, 2)), rtol=1e-5
    )


def test_neuron_explicit_centre_and_clamped(batch) -> None:
    acts, ref = batch
    np.testing.assert_allclose(
        evaluate(Neuron("conv2", 1, x=2, y=0), acts).detach().numpy(), ref["conv2"][:, 1, 0, 2], rtol=1e-5
    )
    np.testing.assert_allclose(evaluate(Neuron("conv2", 1), acts).detach().numpy(), ref["conv2"][:, 1, 2, 2], rtol=1e-5)
    np.testing.assert_allclose(
        evaluate(Neuron("conv2", 1, x=99, y=99), acts).detach().numpy(), ref["conv2"][:, 1, 3, 3], rtol=1e-5
    )


def test_layer_is_mean_square(batch) -> None:
    acts, ref = batch
    np.testing.assert_allclose(
        evaluate(Layer("conv1"), acts).detach().numpy(), (ref["conv1"] ** 2).reshape(3, -1).mean(1), rtol=1e-5
    )


def test_direction_dot_and_cosine(batch) -> None:
    acts, ref = batch
    v = np.array([1.0, -2.0, 0.5, 0.0, 3.0, 1.0])
    dot = np.einsum("bchw,c->bhw", ref["conv2"], v)
    np.testing.assert_allclose(
        evaluate(Direction("conv2", tuple(v)), acts).detach().numpy(), dot.mean(axis=(1, 2)), rtol=1e-5
    )
    cosine = dot / (np.linalg.norm(ref["conv2"], axis=1) * np.linalg.norm(v) + 1e-6)
    expected = (dot * np.maximum(cosine, 0.1) ** 2).mean(axis=(1, 2))
    np.testing.assert_allclose(evaluate(Direction("conv2", tuple(v), 2.0), acts).detach().numpy(), expected, rtol=1e-4)


def test_class_logit_and_probability(batch) -> None:
    acts, ref = batch
    logits = ref[LOGITS]
    np.testing.assert_allclose(evaluate(ClassLogit(2), acts).detach().numpy(), logits[:, 2], rtol=1e-5)
    softmax = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(evaluate(ClassProbability(4), acts).detach().numpy(), softmax[:, 4], rtol=1e-5)


def test_diversity_is_minus_mean_gram_cosine(batch) -> None:
    acts, ref = batch
    flat = ref["conv1"].reshape(3, 4, -1)
    grams = np.einsum("bcn,bdn->bcd", flat, flat).reshape(3, -1)
    grams /= np.linalg.norm(grams, axis=1, keepdims=True)
    similarity = grams @ grams.T
    expected = -(similarity.sum(axis=1) - np.diag(similarity)) / 2
    np.testing.assert_allclose(evaluate(Diversity("conv1"), acts).detach().numpy(), expected, rtol=1e-5)


def test_diversity_of_identical_images_is_minus_one(tiny: TargetModel) -> None:
    images = torch.rand(1, 3, 8, 8).expand(4, 3, 8, 8)
    values = evaluate(Diversity("conv1"), tiny.activations(images, ["conv1"]))
    np.testing.assert_allclose(values.numpy(), -1.0, rtol=1e-5)
    assert evaluate(Diversity("conv1"), tiny.activations(images[:1], ["conv1"])).tolist() == [0.0]


def test_every_kind_has_an_evaluator(batch) -> None:
    acts, _ = batch
    examples = [
        Channel("conv2", 1),
        Neuron("conv2", 1),
        Layer("conv1"),
        Direction("conv2", (1.0,) * 6, 1.0),
        ClassLogit(1),
        ClassProbability(1),
        Diversity("conv1"),
        Caricature("conv2"),
    ]
    assert {type(term) for term in examples} == set(Leaf.kinds())
    acts = {**acts, **reference_activations({"conv2": acts["conv2"]})}
    for term in examples:
        assert evaluate(term, acts).shape == (3,)


def test_caricature_is_the_dot_product_with_the_photographs_activations(batch, tiny: TargetModel) -> None:
    acts, ref = batch
    photograph = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    reference = tiny.activations(photograph, ["conv2"])
    theirs = reference["conv2"].detach().double().numpy()
    assert reference_layers(Caricature("conv2") - 0.5 * Channel("conv1", 0)) == {"conv2"}
    compared = {**acts, **reference_activations(reference)}
    dot = np.einsum("bchw,chw->bhw", ref["conv2"], theirs[0])
    own = (theirs[0] ** 2).sum(axis=0).mean()
    np.testing.assert_allclose(
        evaluate(Caricature("conv2"), compared).detach().numpy(), dot.mean(axis=(1, 2)) / own, rtol=1e-5
    )
    cosine = dot / (np.linalg.norm(ref["conv2"], axis=1) * np.linalg.norm(theirs[0], axis=0) + 1e-6)
    weighted = dot * np.maximum(cosine, 0.1) ** 2
    np.testing.assert_allclose(
        evaluate(Caricature("conv2", 2.0), compared).detach().numpy(), weighted.mean(axis=(1, 2)) / own, rtol=1e-4
    )
    photograph_itself = {**reference, **reference_activations(reference)}
    torch.testing.assert_close(evaluate(Caricature("conv2", 3.0), photograph_itself), torch.ones(1))
    with pytest.raises(InvalidInputError, match="give an init_image") as missing:
        evaluate(Caricature("conv2"), acts)
    assert missing.value.field == "init_image"


def test_a_caricature_of_a_map_of_another_size_compares_with_the_photographs_map_resized(tiny: TargetModel) -> None:
    photograph = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    reference = reference_activations(tiny.activations(photograph, ["conv2"]))
    larger = tiny.activations(torch.rand(2, 3, 12, 12), ["conv2"])  # a padded, transformed image: 6x6, not 4x4
    assert evaluate(Caricature("conv2"), {**larger, **reference}).shape == (2,)


def test_algebra_matches_arithmetic(batch) -> None:
    acts, _ref = batch
    a, b, c = Channel("conv2", 0), Channel("conv1", 1), ClassLogit(0)
    expected = evaluate(a, acts) - 0.5 * evaluate(b, acts) + 2 * evaluate(c, acts)
    combined = a - 0.5 * b + c * 2
    torch.testing.assert_close(evaluate(combined, acts), expected)
    torch.testing.assert_close(evaluate(-a, acts), -evaluate(a, acts))
    torch.testing.assert_close(evaluate(a / 4, acts), evaluate(a, acts) / 4)
    assert combined.layers() == frozenset({"conv2", "conv1", LOGITS})
    assert isinstance(combined, Sum) and len(combined.terms) == 3


def test_algebra_rejects_nonsense() -> None:
    with pytest.raises(TypeError):
        Channel("conv1", 0) * Channel("conv1", 1)  # type: ignore[operator]
    with pytest.raises(TypeError):
        Channel("conv1", 0) + 1  # type: ignore[operator]
    with pytest.raises(ObjectiveError, match="finite"):
        Channel("conv1", 0) * float("nan")
    with pytest.raises(ObjectiveError, match="divided by zero"):
        Channel("conv1", 0) / 0


def test_batch_targets(batch) -> None:
    acts, ref = batch
    values = evaluate(per_batch([Channel("conv2", 0), Channel("conv2", 5), ClassLogit(3)]), acts).detach().numpy()
    expected = [ref["conv2"][0, 0].mean(), ref["conv2"][1, 5].mean(), ref[LOGITS][2, 3]]
    np.testing.assert_allclose(values, expected, rtol=1e-5)
    with pytest.raises(ObjectiveError, match="batch-wide"):
        per_batch([Diversity("conv1")])
    with pytest.raises(InvalidInputError, match="batch element 7"):
        evaluate(Channel("conv2", 0, batch=7), acts)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("blocks.10:17", Channel("blocks.10", 17)),
        ("channel:blocks.10:17#2", Channel("blocks.10", 17, 2)),
        ("logit:130", ClassLogit(130)),
        ("prob:3#1", ClassProbability(3, 1)),
        ("neuron:blocks.10:17@7,6", Neuron("blocks.10", 17, 7, 6)),
        ("neuron:head:3", Neuron("head", 3)),
        ("layer:blocks.3", Layer("blocks.3")),
        ("direction:conv2:1,-2.5,3e-1", Direction("conv2", (1.0, -2.5, 0.3))),
        ("cosdir2:conv2:1,2", Direction("conv2", (1.0, 2.0), 2.0)),
        ("diversity:blocks.8", Diversity("blocks.8")),
        ("caricature:blocks.5", Caricature("blocks.5")),
        ("coscaricature:blocks.5#1", Caricature("blocks.5", 1.0, 1)),
        ("coscaricature2.5:blocks.5", Caricature("blocks.5", 2.5)),
        (
            "blocks.10:17 - 0.5*blocks.10:3",
            Sum((Channel("blocks.10", 17), Scaled(Scaled(Channel("blocks.10", 3), 0.5), -1.0))),
        ),
        ("-logit:1", Scaled(ClassLogit(1), -1.0)),
        ("(logit:1 + logit:2) / 2", Scaled(Sum((ClassLogit(1), ClassLogit(2))), 0.5)),
        ("conv1:0..2", Sum((Channel("conv1", 0, 0), Channel("conv1", 1, 1), Channel("conv1", 2, 2)))),
        ("features.3/input:1", Channel("features.3/input", 1)),
    ],
)
def test_parse(text: str, expected) -> None:
    parsed = parse_objective(text)
    assert parsed == expected
    assert parse_objective(parsed.to_text()) == parsed


def test_text_round_trip_of_built_objectives() -> None:
    built = Channel("blocks.10", 17) - 0.5 * Channel("blocks.10", 3) + 100 * Diversity("blocks.10") - ClassLogit(9, 1)
    assert parse_objective(built.to_text()) == built


@pytest.mark.parametrize(
    "text,column,fragment",
    [
        ("blocks.10", 1, "an objective such as"),
        ("logit:x", 1, "'logit:INDEX[#BATCH]'"),
        ("neuron:blocks.10@3", 1, "'neuron:LAYER:CHANNEL[@X,Y][#BATCH]'"),
        ("blocks.10:17 +", 15, "an objective"),
        ("(logit:1", 9, "')'"),
        ("logit:1 logit:2", 9, "'+', '-' or the end"),
        ("blocks.3:5..2", 1, "a range"),
        ("logit:1 / 0", 11, "non-zero divisor"),
        ("", 1, "an objective"),
    ],
)
def test_parse_errors_name_the_problem(text: str, column: int, fragment: str) -> None:
    with pytest.raises(ObjectiveError) as info:
        parse_objective(text)
    assert f"column {column}" in str(info.value)
    assert fragment in str(info.value)


def test_validate_against_model() -> None:
    layers = {"conv1": 4, "conv2": 6, LOGITS: 5}
    validate_objective(Channel("conv2", 5) + ClassLogit(4), layers, num_classes=5, batch=1)
    with pytest.raises(NotFoundError, match="unknown layer 'conv9'") as unknown:
        validate_objective(Channel("conv9", 0), layers, 5, 1)
    assert unknown.value.field == "layer"
    with pytest.raises(InvalidInputError, match="channel 6 out of range for 'conv2'"):
        validate_objective(Channel("conv2", 6), layers, 5, 1)
    with pytest.raises(InvalidInputError, match="class 5 out of range") as out_of_range:
        validate_objective(ClassLogit(5), layers, 5, 1)
    assert out_of_range.value.field == "index"
    with pytest.raises(InvalidInputError, match="needs 4 components"):
        validate_objective(Direction("conv1", (1.0,)), layers, 5, 1)
    with pytest.raises(InvalidInputError, match="batch element 2"):
        validate_objective(Channel("conv1", 0, batch=2), layers, 5, 2)
    with pytest.raises(InvalidInputError, match="at least 2"):
        validate_objective(Channel("conv1", 0) + Diversity("conv1"), layers, 5, 1)
