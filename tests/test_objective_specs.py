"""priorviz_objectives: one definition per kind, one grammar, one walker, and the proto tree both ways.

The text form and the tree accept the same ranges, numbers are finite float32s (and so is every
product of weights down to a term), sizes are bounded while input is read, and errors name the
field path.
"""

from __future__ import annotations

import pytest

from priorviz_objectives import (
    Caricature,
    Channel,
    ClassLogit,
    Diversity,
    Leaf,
    Neuron,
    ObjectiveError,
    Scaled,
    Sum,
    leaves,
    map_leaves,
    parse_objective,
    weighted_leaves,
)
from priorviz_objectives.proto import from_proto, to_proto
from priorviz_objectives.tree import leaf_fields
from service._proto.priorviz.v1 import priorviz_pb2 as pb


def test_every_kind_is_a_field_of_the_objective_oneof_and_every_field_a_kind() -> None:
    oneof = {field.name for field in pb.Objective.DESCRIPTOR.oneofs_by_name["kind"].fields}
    assert oneof == {kind.proto_field() for kind in Leaf.kinds()} | {"sum", "scaled"}


@pytest.mark.parametrize("kind", Leaf.kinds(), ids=lambda kind: kind.__name__)
def test_each_kinds_fields_are_its_messages_fields(kind: type[Leaf]) -> None:
    message = pb.Objective.DESCRIPTOR.fields_by_name[kind.proto_field()].message_type
    for spec in leaf_fields(kind):
        if spec.name == "batch":
            assert pb.Objective.DESCRIPTOR.fields_by_name["batch_index"].has_presence
            continue
        field = message.fields_by_name[spec.name]
        assert (spec.kind == "vector") == field.is_repeated, spec.name
        assert spec.optional == field.has_presence, spec.name


TEXT_AND_TREE = [
    # (text, tree, field of the tree's error)
    (
        "cosdir99:blocks.5:1",
        pb.Objective(direction=pb.DirectionObjective(layer="blocks.5", vector=[1.0], cosine_power=99)),
        "settings.objective.direction.cosine_power",
    ),
    (
        "cosdir-5:blocks.5:1",
        pb.Objective(direction=pb.DirectionObjective(layer="blocks.5", vector=[1.0], cosine_power=-5)),
        "settings.objective.direction.cosine_power",
    ),
    (
        "cosdir1e308:blocks.5:1",
        pb.Objective(direction=pb.DirectionObjective(layer="blocks.5", vector=[1.0], cosine_power=float("inf"))),
        "settings.objective.direction.cosine_power",
    ),
    (
        "1e308*logit:1",
        pb.Objective(
            scaled=pb.ScaledObjective(objective=pb.Objective(class_logit=pb.ClassLogitObjective(index=1)), weight=1e308)
        ),
        "settings.objective.scaled.weight",
    ),
    (
        "logit:2147483648",
        pb.Objective(class_logit=pb.ClassLogitObjective(index=-1)),
        "settings.objective.class_logit.index",
    ),
    (
        "direction:blocks.5:" + ",".join(["3e38"] * 80),
        pb.Objective(direction=pb.DirectionObjective(layer="blocks.5", vector=[3e38] * 80)),
        "settings.objective.direction.vector",
    ),
]


@pytest.mark.parametrize(("text", "tree", "field"), TEXT_AND_TREE, ids=[text[:24] for text, _, _ in TEXT_AND_TREE])
def test_text_and_tree_refuse_the_same_values(text: str, tree: pb.Objective, field: str) -> None:
    with pytest.raises(ObjectiveError) as from_text:
        parse_objective(text, field="settings.objective_text")
    assert from_text.value.field == "settings.objective_text"
    with pytest.raises(ObjectiveError) as from_tree:
        from_proto(tree, field="settings.objective")
    assert from_tree.value.field == field


@pytest.mark.parametrize(
    "text", ["logit:\u0661", "blocks.5:\u0663", "neuron:blocks.5:1@\u0663,\u0663", "2\u0660*logit:1"]
)
def test_only_ascii_digits_are_digits(text: str) -> None:
    with pytest.raises(ObjectiveError, match="expected"):
        parse_objective(text)


def test_a_product_of_weights_beyond_float32_is_refused_where_it_overflows() -> None:
    with pytest.raises(ObjectiveError, match="multiply to 1e\\+40"):
        parse_objective("1e20*1e20*logit:1")
    with pytest.raises(ObjectiveError, match="1e\\+308"):
        parse_objective("1e308*1e308*logit:1")
    logit = pb.Objective(class_logit=pb.ClassLogitObjective(index=1))
    inner = pb.Objective(scaled=pb.ScaledObjective(objective=logit, weight=1e20))
    outer = pb.Objective(scaled=pb.ScaledObjective(objective=inner, weight=1e20))
    tree = pb.Objective(sum=pb.SumObjective(terms=[logit, outer]))
    with pytest.raises(ObjectiveError, match="multiply to") as error:
        from_proto(tree, field="settings.objective")
    assert error.value.field == "settings.objective.sum.terms[1].scaled.weight"


def test_tree_errors_name_the_path() -> None:
    neuron = pb.Objective(neuron=pb.NeuronObjective(layer="blocks.5", channel=1, x=3), batch_index=0)
    diversity = pb.Objective(diversity=pb.DiversityObjective(layer="blocks.5"), batch_index=1)
    unnamed = pb.Objective(channel=pb.ChannelObjective(channel=1))
    cases = [
        (pb.Objective(sum=pb.SumObjective(terms=[unnamed, neuron])), "settings.objective.sum.terms[0].channel.layer"),
        (pb.Objective(sum=pb.SumObjective(terms=[neuron])), "settings.objective.sum.terms[0].neuron.x"),
        (
            pb.Objective(scaled=pb.ScaledObjective(objective=diversity, weight=2)),
            "settings.objective.scaled.objective.batch_index",
        ),
        (pb.Objective(scaled=pb.ScaledObjective(weight=2)), "settings.objective.scaled.objective"),
        (pb.Objective(sum=pb.SumObjective()), "settings.objective.sum.terms"),
        (pb.Objective(), "settings.objective"),
    ]
    for tree, field in cases:
        with pytest.raises(ObjectiveError) as error:
            from_proto(tree, field="settings.objective")
        assert error.value.field == field


def test_sizes_are_bounded_while_reading_without_recursion_errors() -> None:
    deep_text = "logit:1" + "*1" * 2000
    with pytest.raises(ObjectiveError, match="deeper than 32 levels") as error:
        parse_objective(deep_text, field="settings.objective_text", max_depth=32)
    assert error.value.field == "settings.objective_text"
    with pytest.raises(ObjectiveError, match="deeper than 32 levels"):
        parse_objective("(" * 1200 + "logit:1" + ")" * 1200, max_depth=32)
    with pytest.raises(ObjectiveError, match="more than 256 nodes"):
        parse_objective("blocks.5:0..255", max_nodes=256)
    tree = pb.Objective(class_logit=pb.ClassLogitObjective(index=1))
    for _ in range(40):
        tree = pb.Objective(scaled=pb.ScaledObjective(objective=tree, weight=1.0))
    with pytest.raises(ObjectiveError, match="deeper than 32 levels") as error:
        from_proto(tree, field="settings.objective", max_depth=32)
    assert error.value.field == "settings.objective"
    wide = pb.Objective(sum=pb.SumObjective(terms=[pb.Objective(class_logit=pb.ClassLogitObjective(index=1))] * 300))
    with pytest.raises(ObjectiveError, match="more than 256 nodes"):
        from_proto(wide, max_nodes=256)


def test_the_walker_sees_every_term_with_its_weight() -> None:
    objective = parse_objective("2*(logit:1 - 0.5*blocks.5:3) + neuron:blocks.5:1@2,2#1")
    assert list(weighted_leaves(objective)) == [
        (ClassLogit(1), 2.0),
        (Channel("blocks.5", 3), -1.0),
        (Neuron("blocks.5", 1, 2, 2, 1), 1.0),
    ]
    moved = map_leaves(objective, lambda term: term.for_batch(0))
    assert [term.values()["batch"] for term in leaves(moved)] == [0, 0, 0]
    assert moved.to_text() == "2*(logit:1#0 - 0.5*blocks.5:3#0) + neuron:blocks.5:1@2,2#0"


def test_forms_write_what_they_read() -> None:
    assert parse_objective("cosdir:blocks.5:1,2").to_text() == "cosdir1:blocks.5:1,2"
    assert parse_objective("cosdir0:blocks.5:1,2").to_text() == "direction:blocks.5:1,2"
    assert parse_objective("coscaricature:blocks.5").to_text() == "coscaricature1:blocks.5"
    assert parse_objective("coscaricature0:blocks.5").to_text() == "caricature:blocks.5"
    assert parse_objective("channel:layer1.0:3").to_text() == "layer1.0:3"
    assert parse_objective("layer1:3") == Channel("layer1", 3)  # a layer named like a keyword is still a layer
    assert parse_objective("0.5:3 + 2*logit:1") == Sum((Channel("0.5", 3), Scaled(ClassLogit(1), 2.0)))


def test_the_tree_round_trip_keeps_optional_fields_and_batch_targets() -> None:
    objective = Neuron("blocks.5", 0, 0, 0, 0) + 3 * Diversity("blocks.5") - Neuron("blocks.5", 2)
    message = to_proto(objective, pb.Objective)
    assert message.sum.terms[0].neuron.HasField("x") and message.sum.terms[0].HasField("batch_index")
    assert not message.sum.terms[2].scaled.objective.neuron.HasField("x")
    assert from_proto(message) == objective


def test_a_caricature_travels_in_text_and_tree_and_needs_the_init_image() -> None:
    objective = Caricature("blocks.5") - 0.5 * Caricature("blocks.8", 2.0, 1)
    assert parse_objective(objective.to_text()) == objective
    assert objective.to_text() == "caricature:blocks.5 - 0.5*coscaricature2:blocks.8#1"
    message = to_proto(objective, pb.Objective)
    assert message.sum.terms[0].caricature.layer == "blocks.5"
    assert from_proto(message) == objective
    assert all(term.needs_init_image for term in leaves(objective))
    assert not Channel("blocks.5", 1).needs_init_image
    with pytest.raises(ObjectiveError) as error:
        from_proto(pb.Objective(caricature=pb.CaricatureObjective(layer="blocks.5", cosine_power=17)), field="o")
    assert error.value.field == "o.caricature.cosine_power"
