"""Units: the objectives that name one thing a network computes, whose dataset examples can be ranked.

A unit is a single term with one value per image: a channel (``blocks.10:17``), a neuron
(``neuron:blocks.10:17@7,7``), a direction (``direction:blocks.10:...``) or a class (``logit:130``,
``prob:130``). Sums, weights, DeepDream's whole layer and batch-wide terms describe an optimization,
not a unit, and are refused, as is a ``#i`` batch target (there is no batch). The server and the SDK
decide with this one function.
"""

from __future__ import annotations

from priorviz_objectives.errors import ObjectiveError
from priorviz_objectives.kinds import Channel, ClassLogit, ClassProbability, Direction, Neuron
from priorviz_objectives.tree import Objective

Unit = Channel | Neuron | Direction | ClassLogit | ClassProbability
UNIT_KINDS: tuple[type[Unit], ...] = (Channel, Neuron, Direction, ClassLogit, ClassProbability)


def as_unit(objective: Objective, *, field: str | None = None) -> Unit:
    """``objective`` as a unit; ``ObjectiveError`` at ``field`` when it is none."""
    if not isinstance(objective, UNIT_KINDS):
        raise ObjectiveError(
            f"{objective.to_text()[:80]!r} is not one unit: give a channel, neuron, direction or class "
            "(logit or prob), without weights or sums",
            field=field,
        )
    if objective.batch is not None:
        raise ObjectiveError("a unit has no batch target (#i): its examples are ranked over images", field=field)
    return objective


def unit_layer(unit: Unit) -> str:
    """The one activation a unit reads: its layer, or ``logits`` for a class."""
    (layer,) = unit.layers()
    return layer
