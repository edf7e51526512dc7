"""Objectives to and from the ``priorviz.v1.Objective`` message, written against the message class
that the caller passes in: the service and the SDK each generate their own stubs from the same
``.proto``, and nothing here imports protobuf, so the engine can import this module freely.

A kind's message is the ``Objective.kind`` oneof field named by ``Leaf.proto_field()``, with the
kind's field names; ``batch`` travels as ``Objective.batch_index``, optional fields as proto3
``optional`` fields and vectors as repeated fields. Errors name the path inside the request, e.g.
``settings.objective.sum.terms[1].scaled.weight``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from priorviz_objectives.errors import ObjectiveError
from priorviz_objectives.text import DEFAULT_MAX_DEPTH, DEFAULT_MAX_NODES
from priorviz_objectives.tree import Budget, Leaf, Objective, Scaled, Sum, leaf_fields

Message = TypeVar("Message")
LeafObserver = Callable[[Leaf, str], None]


def to_proto(objective: Objective, message_type: Callable[[], Message]) -> Message:
    """``objective`` as a new ``message_type`` (the caller's generated ``Objective`` class)."""
    message = message_type()
    _fill(message, objective)
    return message


def _fill(message: Any, objective: Objective) -> None:
    if isinstance(objective, Sum):
        message.sum.SetInParent()
        for term in objective.terms:
            _fill(message.sum.terms.add(), term)
    elif isinstance(objective, Scaled):
        message.scaled.SetInParent()
        _fill(message.scaled.objective, objective.objective)
        message.scaled.weight = objective.weight
    elif isinstance(objective, Leaf):
        body = getattr(message, objective.proto_field())
        body.SetInParent()
        for name, value in objective.values().items():
            if value is None:
                continue
            if name == "batch":
                message.batch_index = value
            elif isinstance(value, tuple):
                getattr(body, name).extend(value)
            else:
                setattr(body, name, value)
    else:
        raise ObjectiveError(f"cannot send an objective of type {type(objective).__name__}")


def from_proto(
    message: Any,
    *,
    field: str = "objective",
    max_nodes: int = DEFAULT_MAX_NODES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    on_leaf: LeafObserver | None = None,
) -> Objective:
    """The objective a message holds, its size bounded while it is read; errors name the path from ``field``.

    ``on_leaf(leaf, path)`` is called for every term, left to right, with the path of its
    ``Objective`` message, so that later checks (against a model) can name the term's fields.
    """
    return _read(message, field, Budget(max_nodes, max_depth, field), 1, on_leaf)


def field_path(message_path: str, kind: type[Leaf], name: str | None) -> str:
    """Where field ``name`` of a ``kind`` term read from the message at ``message_path`` is in the request."""
    if name == "batch":
        return f"{message_path}.batch_index"
    body = f"{message_path}.{kind.proto_field()}"
    return body if name is None else f"{body}.{name}"


def _read(message: Any, path: str, budget: Budget, depth: int, on_leaf: LeafObserver | None) -> Objective:
    budget.take(depth)
    kind = message.WhichOneof("kind")
    if kind is None:
        raise ObjectiveError("no objective kind is set", field=path)
    body = getattr(message, kind)
    if kind == "sum":
        if not body.terms:
            raise ObjectiveError("a sum needs at least one term", field=f"{path}.sum.terms")
        terms = [_read(term, f"{path}.sum.terms[{i}]", budget, depth + 1, on_leaf) for i, term in enumerate(body.terms)]
        return Sum(tuple(terms))
    if kind == "scaled":
        if not body.HasField("objective"):
            raise ObjectiveError("the objective to scale is required", field=f"{path}.scaled.objective")
        inner = _read(body.objective, f"{path}.scaled.objective", budget, depth + 1, on_leaf)
        try:
            return Scaled(inner, body.weight)
        except ObjectiveError as error:
            raise error.at(f"{path}.scaled.{error.field or 'weight'}") from None
    leaf_type = next((known for known in Leaf.kinds() if known.proto_field() == kind), None)
    if leaf_type is None:
        raise ObjectiveError(f"objective kind {kind!r} is not supported here", field=f"{path}.{kind}")
    leaf = _leaf(leaf_type, message, body, path)
    if on_leaf is not None:
        on_leaf(leaf, path)
    return leaf


def _leaf(kind: type[Leaf], message: Any, body: Any, path: str) -> Leaf:
    values: dict[str, object] = {}
    for spec in leaf_fields(kind):
        if spec.name == "batch":
            values["batch"] = message.batch_index if message.HasField("batch_index") else None
        elif spec.kind == "vector":
            values[spec.name] = tuple(getattr(body, spec.name))
        elif spec.optional and not body.HasField(spec.name):
            values[spec.name] = None
        else:
            values[spec.name] = getattr(body, spec.name)
    if message.HasField("batch_index") and not kind.has_batch():
        raise ObjectiveError(
            f"{kind.proto_field()} is batch-wide and cannot target one batch element", field=f"{path}.batch_index"
        )
    try:
        return kind(**values)
    except ObjectiveError as error:
        raise error.at(field_path(path, kind, error.field)) from None
