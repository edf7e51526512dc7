"""Between the generated protobuf messages and this package's objectives and records."""

from __future__ import annotations

import io
from collections.abc import Mapping

from PIL import Image

from priorviz_client._proto.priorviz.v1 import priorviz_pb2 as pb
from priorviz_client._results import (
    Comparison,
    Event,
    LayerInfo,
    ModelInfo,
    ModelSummary,
    Preview,
    PriorInfo,
    PriorKind,
    Progress,
    Queued,
    Visualization,
    frozen_mapping,
)
from priorviz_objectives import Objective
from priorviz_objectives.proto import to_proto

_PRIOR_KINDS = {
    pb.PRIOR_KIND_UNSPECIFIED: PriorKind.UNSPECIFIED,
    pb.PRIOR_KIND_UNCONSTRAINED: PriorKind.UNCONSTRAINED,
    pb.PRIOR_KIND_LEARNED: PriorKind.LEARNED,
}


def objective_to_proto(objective: Objective) -> pb.Objective:
    """The objective as the wire's tree (so the server needs no text parsing)."""
    return to_proto(objective, pb.Objective)


def decode_png(image: pb.Image) -> Image.Image:
    decoded = Image.open(io.BytesIO(image.png))
    decoded.load()
    return decoded.convert("RGB")


def model_summary(message: pb.ModelSummary) -> ModelSummary:
    return ModelSummary(message.name, message.description, message.is_default)


def model_info(message: pb.DescribeModelResponse) -> ModelInfo:
    return ModelInfo(
        name=message.name,
        description=message.description,
        input_size=message.input_size,
        num_classes=message.num_classes,
        class_names=tuple(message.class_names),
        layers=tuple(LayerInfo(layer.name, layer.channels, layer.height, layer.width) for layer in message.layers),
    )


def prior_info(message: pb.PriorInfo) -> PriorInfo:
    return PriorInfo(
        name=message.name,
        kind=_PRIOR_KINDS.get(message.kind, PriorKind.UNSPECIFIED),
        description=message.description,
        output_size=message.output_size or None,
        latent_shape=tuple(message.latent_shape),
        licence=message.licence,
        options=frozen_mapping(message.options),
        available=message.available,
        unavailable_reason=message.unavailable_reason,
        default_steps=message.default_steps,
        default_image_size=message.default_image_size,
        default_learning_rate=message.default_learning_rate,
    )


def visualization(message: pb.VisualizeResult, previews: Mapping[int, tuple[Image.Image, ...]]) -> Visualization:
    return Visualization(
        prior=message.prior,
        prior_kind=_PRIOR_KINDS.get(message.prior_kind, PriorKind.UNSPECIFIED),
        model=message.model,
        objective=message.objective_text,
        images=tuple(decode_png(image) for image in message.images),
        objective_values=tuple(message.objective_values),
        traces=tuple(tuple(trace.values) for trace in message.traces),
        metrics=tuple(frozen_mapping(metrics.values) for metrics in message.image_metrics),
        batch_metrics=frozen_mapping(message.batch_metrics),
        steps=message.steps,
        seed=message.seed,
        render_seconds=message.render_seconds,
        metrics_seconds=message.metrics_seconds,
        previews=frozen_mapping(previews),
    )


class VisualizeEvents:
    """Turns a Visualize stream's messages into events, keeping previews for the result."""

    def __init__(self, prior: str) -> None:
        self.prior = prior or "fourier"
        self.previews: dict[int, tuple[Image.Image, ...]] = {}

    def event(self, message: pb.VisualizeEvent) -> Event | Visualization:
        kind = message.WhichOneof("event")
        if kind == "queued":
            return Queued(message.queued.jobs_ahead)
        if kind == "progress":
            return _progress(self.prior, message.progress)
        if kind == "preview":
            preview = _preview(self.prior, message.preview)
            self.previews[preview.step] = preview.images
            return preview
        if kind == "result":
            return visualization(message.result, self.previews)
        raise ValueError(f"unexpected Visualize event {kind!r}")


class CompareEvents:
    """Turns a Compare stream's messages into events, keeping each prior's previews."""

    def __init__(self) -> None:
        self.previews: dict[str, dict[int, tuple[Image.Image, ...]]] = {}

    def event(self, message: pb.CompareEvent) -> Event | Comparison:
        kind = message.WhichOneof("event")
        if kind == "queued":
            return Queued(message.queued.jobs_ahead)
        if kind == "progress":
            wrapper = message.progress
            return _progress(wrapper.prior, wrapper.progress, wrapper.prior_index, wrapper.prior_count)
        if kind == "preview":
            preview = _preview(message.preview.prior, message.preview.preview)
            self.previews.setdefault(preview.prior, {})[preview.step] = preview.images
            return preview
        if kind == "result":
            return Comparison(
                tuple(visualization(result, self.previews.get(result.prior, {})) for result in message.result.results)
            )
        raise ValueError(f"unexpected Compare event {kind!r}")


def _progress(prior: str, message: pb.Progress, index: int = 0, count: int = 1) -> Progress:
    return Progress(prior, message.step, message.total_steps, tuple(message.objective_values), index, count)


def _preview(prior: str, message: pb.Preview) -> Preview:
    return Preview(prior, message.step, tuple(decode_png(image) for image in message.images))
