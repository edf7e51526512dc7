"""Objective specifications shared by the priorviz engine, its server and its client SDK.

Standard library only (no torch, no protobuf), so the SDK stays light and the engine and the SDK
agree by construction: one frozen dataclass per kind (``kinds``), one text grammar built from the
kinds' forms (``text``), one walker (``walk``, ``leaves``, ``map_leaves``), and the conversion to
and from the ``priorviz.v1.Objective`` message (``proto``), which takes the caller's generated
message class. Evaluating an objective is the engine's business (``priorviz.objectives``).

    from priorviz_objectives import channel, parse_objective
    objective = channel("blocks.10", 17) - 0.5 * channel("blocks.10", 3)
    assert parse_objective(objective.to_text()) == objective
"""

from priorviz_objectives.errors import ObjectiveError
from priorviz_objectives.forms import Form
from priorviz_objectives.kinds import (
    Caricature,
    Channel,
    ClassLogit,
    ClassProbability,
    Direction,
    Diversity,
    Layer,
    Neuron,
    caricature,
    channel,
    channels,
    direction,
    diversity,
    layer,
    logit,
    neuron,
    probability,
)
from priorviz_objectives.text import MAX_TEXT_LENGTH, parse_objective
from priorviz_objectives.tree import (
    FLOAT32_MAX,
    LOGITS,
    Budget,
    Leaf,
    Objective,
    Scaled,
    Sum,
    leaves,
    map_leaves,
    per_batch,
    walk,
    weighted_leaves,
    within,
)

__all__ = [
    "FLOAT32_MAX",
    "LOGITS",
    "MAX_TEXT_LENGTH",
    "Budget",
    "Caricature",
    "Channel",
    "ClassLogit",
    "ClassProbability",
    "Direction",
    "Diversity",
    "Form",
    "Layer",
    "Leaf",
    "Neuron",
    "Objective",
    "ObjectiveError",
    "Scaled",
    "Sum",
    "caricature",
    "channel",
    "channels",
    "direction",
    "diversity",
    "layer",
    "leaves",
    "logit",
    "map_leaves",
    "neuron",
    "parse_objective",
    "per_batch",
    "probability",
    "walk",
    "weighted_leaves",
    "within",
]
