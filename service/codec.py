"""Every conversion between priorviz.v1 messages and the engine, each in one direction.

Requests are decoded into ``service.validation``'s plain records: objectives are read from
their tree or their text with their size bounded and their numbers checked as they are read,
and a malformed field raises an error naming its path (``settings.objective.sum.terms[1].scaled.weight``).
Nothing here judges a request against limits or models; that is validation's job. The other
way, the runner's engine events become stream events, and models and priors their descriptions.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from torch import Tensor

from priors.base import PriorInfo, PriorKind
from priorviz.errors import InvalidInputError
from priorviz.examples import Example, ExamplesProgress, ExamplesResult
from priorviz.images import to_pil
from priorviz.models import ModelEntry, TargetModel
from priorviz.render import StepEvent
from priorviz_objectives import Leaf, parse_objective
from priorviz_objectives.proto import from_proto
from service._proto.priorviz.v1 import priorviz_pb2 as pb
from service.config import Limits
from service.runner import InversionEvent, InversionJobResult, JobEvent, JobResult, PriorResult
from service.validation import (
    ExamplesRequest,
    ExamplesSpec,
    ImageRequest,
    InversionSpec,
    InvertRequest,
    JobSpec,
    ObjectiveRequest,
    PriorRequest,
    RegularizerRequest,
    RenderRequest,
    TransformRequest,
)

Event = TypeVar("Event")
INIT_IMAGE_FIELD = "settings.init_image"
PRIOR_KINDS = {PriorKind.UNCONSTRAINED: pb.PRIOR_KIND_UNCONSTRAINED, PriorKind.LEARNED: pb.PRIOR_KIND_LEARNED}


# -- requests ------------------------------------------------------------------------------


def visualize_request(request: pb.VisualizeRequest, limits: Limits) -> RenderRequest:
    prior = PriorRequest(request.prior or "fourier", dict(request.prior_options), "prior", "prior_options")
    return render_request(request.settings, (prior,), limits)


def compare_request(request: pb.CompareRequest, limits: Limits) -> RenderRequest:
    priors = tuple(
        PriorRequest(choice.name, dict(choice.options), f"priors[{index}].name", f"priors[{index}].options")
        for index, choice in enumerate(request.priors)
    )
    return render_request(request.settings, priors, limits)


def render_request(settings: pb.RenderSettings, priors: tuple[PriorRequest, ...], limits: Limits) -> RenderRequest:
    if settings.transforms not in pb.TransformMode.values():
        raise InvalidInputError(f"unknown transform mode {settings.transforms}", field="settings.transforms")
    return RenderRequest(
        objective=objective_request(settings, limits),
        priors=priors,
        model=settings.model,
        held_out_model=settings.held_out_model,
        batch=settings.batch,
        image_size=settings.image_size,
        steps=settings.steps,
        learning_rate=settings.learning_rate,
        seed=settings.seed,
        preview_steps=tuple(settings.preview_steps),
        transforms=settings.transforms != pb.TRANSFORM_MODE_NONE,
        statistics_prior_weight=settings.statistics_prior_weight,
        init_image=image_request(settings.init_image, "settings.init_image")
        if settings.HasField("init_image")
        else None,
        regularizers=regularizer_request(settings.regularizers),
        transform_parameters=transform_request(settings.transform_parameters)
        if settings.HasField("transform_parameters")
        else None,
    )


def regularizer_request(message: pb.Regularizers) -> RegularizerRequest:
    return RegularizerRequest(message.total_variation_weight, message.l1_weight, message.blur_sigma, message.blur_every)


def transform_request(message: pb.TransformParameters) -> TransformRequest:
    """The parameters the message sets; a field left unset is None (the standard set's value)."""

    def given(name: str) -> Any:
        return getattr(message, name) if message.HasField(name) else None

    return TransformRequest(
        pad=given("pad"),
        jitter=given("jitter"),
        scale_min=given("scale_min"),
        scale_max=given("scale_max"),
        rotate_degrees=given("rotate_degrees"),
        final_jitter=given("final_jitter"),
    )


def objective_request(settings: pb.RenderSettings, limits: Limits) -> ObjectiveRequest:
    """Exactly one of the tree and the text form, read within the limits' node and depth bounds."""
    tree = settings.objective if settings.HasField("objective") else None
    return read_objective(tree, settings.objective_text, "settings.objective", "settings.objective_text", limits)


def read_objective(
    tree: pb.Objective | None, text: str, tree_field: str, text_field: str, limits: Limits
) -> ObjectiveRequest:
    """The objective of a request that has a tree field and a text field: exactly one, within the limits' bounds."""
    if (tree is None) == (not text):
        names = " and ".join(field.rsplit(".", 1)[-1] for field in (tree_field, text_field))
        raise InvalidInputError(f"give exactly one of {names}", field=tree_field)
    bounds = {"max_nodes": limits.max_objective_nodes, "max_depth": limits.max_objective_depth}
    if tree is None:
        return ObjectiveRequest(parse_objective(text, field=text_field, **bounds), text_field)
    paths: list[str] = []

    def record(_term: Leaf, path: str) -> None:
        paths.append(path)

    objective = from_proto(tree, field=tree_field, on_leaf=record, **bounds)
    return ObjectiveRequest(objective, tree_field, tuple(paths))


# -- job events ----------------------------------------------------------------------------


def visualize_events(spec: JobSpec, event: JobEvent) -> list[pb.VisualizeEvent]:
    """The stream events of a Visualize job for one engine event."""
    if isinstance(event, JobResult):
        return [pb.VisualizeEvent(result=visualize_result(spec, event.results[0]))]
    messages = [pb.VisualizeEvent(progress=progress(event.step))]
    if event.step.images is not None:
        messages.append(pb.VisualizeEvent(preview=preview(event.step)))
    return messages


def compare_events(spec: JobSpec, event: JobEvent) -> list[pb.CompareEvent]:
    """The stream events of a Compare job for one engine event."""
    if isinstance(event, JobResult):
        results = [visualize_result(spec, result) for result in event.results]
        return [pb.CompareEvent(result=pb.CompareResult(results=results))]
    prior = spec.priors[event.prior_index].name
    messages = [
        pb.CompareEvent(
            progress=pb.PriorProgress(
                prior=prior,
                prior_index=event.prior_index,
                prior_count=len(spec.priors),
                progress=progress(event.step),
            )
        )
    ]
    if event.step.images is not None:
        messages.append(pb.CompareEvent(preview=pb.PriorPreview(prior=prior, preview=preview(event.step))))
    return messages


def progress(event: StepEvent) -> pb.Progress:
    return pb.Progress(step=event.step, total_steps=event.total_steps, objective_values=event.values.tolist())


def preview(event: StepEvent) -> pb.Preview:
    assert event.images is not None  # only snapshot steps have a preview
    return pb.Preview(step=event.step, images=encode_images(event.images))


def visualize_result(spec: JobSpec, result: PriorResult) -> pb.VisualizeResult:
    prior, rendered, panel = spec.priors[result.prior_index], result.rendered, result.panel
    return pb.VisualizeResult(
        prior=prior.name,
        prior_kind=PRIOR_KINDS[prior.kind],
        model=spec.model.name,
        objective_text=spec.objective.to_text(),
        images=encode_images(rendered.images),
        objective_values=rendered.values.tolist(),
        traces=[pb.Trace(values=column.tolist()) for column in rendered.trace.T],
        image_metrics=[pb.ImageMetrics(values=values) for values in panel.per_image],
        batch_metrics=panel.batch,
        steps=prior.steps,
        seed=spec.config.seed,
        render_seconds=rendered.seconds,
        metrics_seconds=result.metrics_seconds,
    )


def encode_png(image: Tensor) -> pb.Image:
    """One (3, H, W) image in [0, 1] as an 8-bit RGB PNG (NaN drawn black, values clipped)."""
    picture = to_pil(image)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=3)
    return pb.Image(png=buffer.getvalue(), width=picture.width, height=picture.height)


def encode_images(images: Tensor) -> list[pb.Image]:
    return [encode_png(image) for image in images]


# -- descriptions --------------------------------------------------------------------------


def model_list(entries: Iterable[ModelEntry], default_model: str) -> pb.ListModelsResponse:
    return pb.ListModelsResponse(
        models=[
            pb.ModelSummary(name=entry.name, description=entry.description, is_default=entry.name == default_model)
            for entry in entries
        ]
    )


def model_description(model: TargetModel, omit_class_names: bool) -> pb.DescribeModelResponse:
    return pb.DescribeModelResponse(
        name=model.name,
        description=model.description,
        input_size=model.input_size,
        num_classes=model.num_classes,
        class_names=[] if omit_class_names else list(model.class_names),
        layers=[
            pb.LayerInfo(name=layer.name, channels=layer.channels, height=layer.height, width=layer.width)
            for layer in model.layers
        ],
    )


def prior_list(
    priors: Iterable[tuple[PriorInfo, bool]], include_unavailable: bool, metric_descriptions: Mapping[str, str]
) -> pb.ListPriorsResponse:
    return pb.ListPriorsResponse(
        priors=[prior_description(info, available) for info, available in priors if available or include_unavailable],
        metric_descriptions=metric_descriptions,
    )


def prior_description(info: PriorInfo, available: bool) -> pb.PriorInfo:
    return pb.PriorInfo(
        name=info.name,
        kind=PRIOR_KINDS[info.kind],
        description=info.description,
        output_size=info.output_size or 0,
        latent_shape=list(info.latent_shape),
        licence=info.licence,
        options=info.option_help(),
        available=available,
        unavailable_reason="" if available else info.unavailable_reason or "its model is not installed on this server",
        default_steps=info.default_steps,
        default_image_size=info.default_image_size,
        default_learning_rate=info.default_learning_rate,
    )


def queued(event_type: Callable[..., Event], jobs_ahead: int) -> Event:
    """A stream event (``pb.VisualizeEvent`` or ``pb.CompareEvent``) saying how many jobs wait ahead."""
    return event_type(queued=pb.QueuePosition(jobs_ahead=jobs_ahead))


# -- Invert --------------------------------------------------------------------------------


def invert_request(request: pb.InvertRequest) -> InvertRequest:
    if request.transforms not in pb.TransformMode.values():
        raise InvalidInputError(f"unknown transform mode {request.transforms}", field="transforms")
    priors = tuple(
        PriorRequest(choice.name, dict(choice.options), f"priors[{index}].name", f"priors[{index}].options")
        for index, choice in enumerate(request.priors)
    )
    return InvertRequest(
        image=image_request(request.image, "image"),
        layers=tuple((layer.layer, layer.weight) for layer in request.layers),
        priors=priors,
        model=request.model,
        held_out_model=request.held_out_model,
        image_size=request.image_size,
        steps=request.steps,
        learning_rate=request.learning_rate,
        seed=request.seed,
        preview_steps=tuple(request.preview_steps),
        total_variation_weight=request.total_variation_weight,
        transforms=request.transforms == pb.TRANSFORM_MODE_STANDARD,
    )


def image_request(image: pb.InputImage, field: str) -> ImageRequest:
    return ImageRequest(image.data, image.named, field)


def invert_events(spec: InversionSpec, event: InversionEvent) -> list[pb.InvertEvent]:
    """The stream events of an Invert job for one engine event."""
    if isinstance(event, InversionJobResult):
        return [pb.InvertEvent(result=invert_result(spec, event))]
    prior = spec.priors[event.prior_index].name
    progress_message = pb.PriorProgress(
        prior=prior, prior_index=event.prior_index, prior_count=len(spec.priors), progress=progress(event.step)
    )
    messages = [pb.InvertEvent(progress=progress_message)]
    if event.step.images is not None:
        messages.append(pb.InvertEvent(preview=pb.PriorPreview(prior=prior, preview=preview(event.step))))
    return messages


def invert_result(spec: InversionSpec, event: InversionJobResult) -> pb.InvertResult:
    inversions = []
    for result in event.results:
        prior, inversion = spec.priors[result.prior_index], result.inversion
        inversions.append(
            pb.PriorInversion(
                prior=prior.name,
                prior_kind=PRIOR_KINDS[prior.kind],
                image=encode_png(inversion.images[0]),
                relative_errors=inversion.errors.tolist(),
                final_relative_error=inversion.final_error,
                metrics=pb.ImageMetrics(values=result.panel.per_image[0]),
                render_seconds=inversion.seconds,
                metrics_seconds=result.metrics_seconds,
                steps=prior.steps,
            )
        )
    target = event.results[0].inversion.target[0]
    return pb.InvertResult(
        model=spec.model.name,
        target=encode_png(target),
        layers=[pb.WeightedLayer(layer=name, weight=weight) for name, weight in spec.layers.items()],
        inversions=inversions,
        steps=spec.steps,
        seed=spec.seed,
    )


# -- DatasetExamples -----------------------------------------------------------------------


def examples_request(request: pb.DatasetExamplesRequest, limits: Limits) -> ExamplesRequest:
    unit = request.unit if request.HasField("unit") else None
    return ExamplesRequest(
        unit=read_objective(unit, request.unit_text, "unit", "unit_text", limits),
        model=request.model,
        image_set=request.image_set,
        images=tuple(image_request(image, f"images[{index}]") for index, image in enumerate(request.images)),
        k=request.k,
        thumbnail_size=request.thumbnail_size,
    )


def examples_events(spec: ExamplesSpec, event: ExamplesProgress | ExamplesResult) -> list[pb.DatasetExamplesEvent]:
    """The stream events of a DatasetExamples job for one engine event."""
    if isinstance(event, ExamplesProgress):
        return [pb.DatasetExamplesEvent(progress=pb.Progress(step=event.done, total_steps=event.total))]
    field = event.receptive_field
    result = pb.DatasetExamplesResult(
        model=spec.model.name,
        unit_text=event.unit.to_text(),
        layer=event.layer,
        image_set=spec.image_set.name if spec.image_set is not None else "",
        image_count=event.count,
        top=[dataset_example(example) for example in event.top],
        bottom=[dataset_example(example) for example in event.bottom],
        receptive_field=pb.ReceptiveField(size=field.size, extent=field.extent, image_size=field.image_size),
        stored=event.stored,
        unreadable=event.unreadable,
        seconds=event.seconds,
    )
    return [pb.DatasetExamplesEvent(result=result)]


def dataset_example(example: Example) -> pb.DatasetExample:
    x, y = example.position if example.position is not None else (-1, -1)
    left, top, side = example.box
    return pb.DatasetExample(
        name=example.name,
        index=example.index,
        value=example.value,
        image=encode_png(example.image),
        crop=encode_png(example.crop),
        crop_value=example.crop_value,
        x=x,
        y=y,
        crop_left=left,
        crop_top=top,
        crop_size=side,
    )
