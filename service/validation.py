"""Request validation: a wire request becomes a checked ``JobSpec`` or a typed error naming the field.

Everything a job could trip over is checked here, on the calling thread and before the job
takes a queue slot: sizes against the configured limits, the objective against the model's
layers, channels and classes, prior names and option names. Engine exceptions that still
escape (a prior's builder rejecting an option value) are mapped by ``engine_error``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import grpc

from priors.base import PriorInfo, PriorKind, PriorNotFoundError, list_priors
from priors.options import OptionError
from priorviz.errors import clip_text
from priorviz.models._api import ModelNotFoundError, ModelWeightsUnavailableError
from priorviz.models.checkpoint import CheckpointError
from priorviz.models.target import TargetModel, UnknownLayerError
from priorviz.objective_text import ObjectiveSyntaxError
from priorviz.objectives import Diversity, Objective, Scaled, Sum, validate_objective
from priorviz.render import RenderConfig
from priorviz.statistics import BatchNormStatisticsPrior, NoBatchNormError
from priorviz.transforms import NO_TRANSFORMS, standard_transforms
from service._proto.priorviz.v1 import priorviz_pb2 as pb
from service.config import Limits
from service.wire import ObjectiveTooLargeError, objective_from_proto, objective_from_text

NO_HELD_OUT = "none"
MAX_STATISTICS_PRIOR_WEIGHT = 1000.0


class RequestError(Exception):
    """A request the server refuses; ``code`` is the gRPC status, the message names the field."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f"{field}: {problem}")


class InvalidArgument(RequestError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(RequestError):
    code = grpc.StatusCode.NOT_FOUND


@dataclass(frozen=True)
class PriorRun:
    """One prior of a job, with its options already converted from text."""

    name: str
    kind: PriorKind
    options: Mapping[str, object]
    name_field: str = "prior"
    """The request field the prior's name came from, for error messages."""
    options_field: str = "prior_options"


@dataclass(frozen=True)
class JobSpec:
    """A checked request: everything a worker needs to run it."""

    model: TargetModel
    held_out: TargetModel | None
    objective: Objective
    batch: int
    size: int
    config: RenderConfig
    priors: tuple[PriorRun, ...]
    regularizer: Objective | None = None
    """The statistics prior, when the request gives it a weight."""

    @property
    def total_steps(self) -> int:
        return self.config.steps * len(self.priors)


ModelLoader = Callable[[str], TargetModel]


def load_model(loader: ModelLoader, name: str, field: str) -> TargetModel:
    """Resolve a model name; an unknown name or missing weights is NOT_FOUND."""
    if len(name) > 512:
        raise InvalidArgument(field, "model names are at most 512 characters")
    try:
        return loader(name)
    except (ModelNotFoundError, ModelWeightsUnavailableError) as error:
        raise NotFound(field, str(error)) from None
    except CheckpointError as error:
        raise InvalidArgument(field, str(error)) from None


def check_settings(
    settings: pb.RenderSettings,
    limits: Limits,
    loader: ModelLoader,
    default_model: str,
    default_held_out: str,
) -> JobSpec:
    """Check the settings shared by Visualize and Compare; the caller fills in the priors."""
    batch = settings.batch or 1
    if not 1 <= batch <= limits.max_batch:
        raise InvalidArgument("settings.batch", f"must be within 1..{limits.max_batch}, got {settings.batch}")
    steps = settings.steps or RenderConfig().steps
    if not 1 <= steps <= limits.max_steps:
        raise InvalidArgument(
            "settings.steps",
            f"must be within 1..{limits.max_steps} (0: the default {RenderConfig().steps}), got {settings.steps}",
        )
    learning_rate = settings.learning_rate
    if not math.isfinite(learning_rate) or learning_rate < 0 or learning_rate > 10:
        raise InvalidArgument("settings.learning_rate", f"must be 0 (default) or within (0, 10], got {learning_rate}")
    previews = list(settings.preview_steps)
    if len(previews) > limits.max_preview_steps:
        raise InvalidArgument(
            "settings.preview_steps", f"at most {limits.max_preview_steps} steps, got {len(previews)}"
        )
    outside = sorted({step for step in previews if not 1 <= step <= steps})
    if outside:
        raise InvalidArgument("settings.preview_steps", f"steps {outside[:5]} are outside 1..{steps}")
    if settings.transforms not in pb.TransformMode.values():
        raise InvalidArgument("settings.transforms", f"unknown transform mode {settings.transforms}")

    model = load_model(loader, settings.model or default_model, "settings.model")
    size = settings.image_size or model.input_size
    if not limits.min_image_size <= size <= limits.max_image_size:
        raise InvalidArgument(
            "settings.image_size",
            f"must be within {limits.min_image_size}..{limits.max_image_size} (0: the model's {model.input_size}), "
            f"got {settings.image_size}",
        )
    held_out_name = settings.held_out_model or default_held_out
    held_out = None if held_out_name == NO_HELD_OUT else load_model(loader, held_out_name, "settings.held_out_model")
    objective = check_objective(settings, model, batch, limits)
    config = RenderConfig(
        steps=steps,
        learning_rate=learning_rate or None,
        seed=settings.seed,
        transforms=NO_TRANSFORMS if settings.transforms == pb.TRANSFORM_MODE_NONE else standard_transforms(),
        snapshot_steps=tuple(sorted(set(previews))),
    )
    regularizer = check_statistics_prior(settings.statistics_prior_weight, model)
    return JobSpec(model, held_out, objective, batch, size, config, (), regularizer)


def check_statistics_prior(weight: float, model: TargetModel) -> Objective | None:
    """The batch-norm statistics regularizer for a positive weight, None for 0."""
    field = "settings.statistics_prior_weight"
    if not math.isfinite(weight) or not 0 <= weight <= MAX_STATISTICS_PRIOR_WEIGHT:
        raise InvalidArgument(field, f"must be within 0..{MAX_STATISTICS_PRIOR_WEIGHT}, got {weight}")
    if weight == 0:
        return None
    try:
        return BatchNormStatisticsPrior(model, weight)
    except NoBatchNormError as error:
        raise InvalidArgument(field, str(error)) from None


def check_objective(settings: pb.RenderSettings, model: TargetModel, batch: int, limits: Limits) -> Objective:
    """Exactly one of the tree and the text form, parsed and checked against ``model``."""
    has_tree = settings.HasField("objective")
    has_text = bool(settings.objective_text)
    if has_tree == has_text:
        raise InvalidArgument("settings.objective", "give exactly one of objective and objective_text")
    field = "settings.objective" if has_tree else "settings.objective_text"
    try:
        if has_tree:
            objective = objective_from_proto(settings.objective, limits.max_objective_nodes, limits.max_objective_depth)
        else:
            objective = objective_from_text(
                settings.objective_text, limits.max_objective_nodes, limits.max_objective_depth
            )
    except (ObjectiveSyntaxError, ObjectiveTooLargeError) as error:
        raise InvalidArgument(field, str(error)) from None
    except ValueError as error:
        raise InvalidArgument(getattr(error, "field", field), str(error)) from None
    for layer in sorted(objective.layers()):
        try:
            model.layer(layer)
        except UnknownLayerError as error:
            raise NotFound(field, str(error)) from None
    channels = {layer.name: layer.channels for layer in model.layers}
    try:
        validate_objective(objective, channels, model.num_classes, batch)
    except (ValueError, KeyError) as error:
        raise InvalidArgument(field, str(error).strip("'\"")) from None
    if batch < 2 and _has_diversity(objective):
        # With one image the term is a constant 0: nothing to compare, and no gradient to follow.
        raise InvalidArgument(field, "diversity compares the images of a batch; it needs settings.batch >= 2")
    return objective


def _has_diversity(objective: Objective) -> bool:
    if isinstance(objective, Sum):
        return any(_has_diversity(term) for term in objective.terms)
    if isinstance(objective, Scaled):
        return _has_diversity(objective.objective)
    return isinstance(objective, Diversity)


def known_priors() -> dict[str, tuple[PriorInfo, bool]]:
    """Every registered prior with whether it is available here."""
    available = {info.name for info in list_priors()}
    return {info.name: (info, info.name in available) for info in list_priors(only_available=False)}


def check_prior(name: str, options: Mapping[str, str], field: str, options_field: str) -> PriorRun:
    """A known, available prior with option names it accepts; the fields name where each came from."""
    if not name:
        raise InvalidArgument(field, "a prior name is required")
    priors = known_priors()
    if name not in priors:
        raise NotFound(
            field, str(PriorNotFoundError(f"unknown prior {clip_text(name)!r}; available: {', '.join(sorted(priors))}"))
        )
    info, available = priors[name]
    if not available:
        raise NotFound(field, f"prior {name!r} is registered but its model is not installed on this server")
    try:
        parsed = info.parse_options(options)
    except OptionError as error:
        raise InvalidArgument(options_field, f"prior {name!r}: {error}") from None
    return PriorRun(name, info.kind, parsed, field, options_field)


def visualize_spec(
    request: pb.VisualizeRequest, limits: Limits, loader: ModelLoader, default_model: str, default_held_out: str
) -> JobSpec:
    prior = check_prior(request.prior or "fourier", request.prior_options, "prior", "prior_options")
    spec = check_settings(request.settings, limits, loader, default_model, default_held_out)
    return replace(spec, priors=(prior,))


def default_compare_priors() -> list[str]:
    """ "fourier" plus every available learned prior."""
    return ["fourier"] + [name for name, (info, ok) in known_priors().items() if ok and info.kind == PriorKind.LEARNED]


def compare_spec(
    request: pb.CompareRequest, limits: Limits, loader: ModelLoader, default_model: str, default_held_out: str
) -> JobSpec:
    if len(request.priors) > limits.max_compare_priors:
        raise InvalidArgument("priors", f"at most {limits.max_compare_priors} priors, got {len(request.priors)}")
    if request.priors:
        priors = [
            check_prior(choice.name, choice.options, f"priors[{index}].name", f"priors[{index}].options")
            for index, choice in enumerate(request.priors)
        ]
    else:
        # The default is every prior this server's operator offers, so the per-request limit does not cut it.
        priors = [check_prior(name, {}, "priors", "priors") for name in default_compare_priors()]
    spec = check_settings(request.settings, limits, loader, default_model, default_held_out)
    return replace(spec, priors=tuple(priors))


def engine_error(error: Exception, started: bool, prior: PriorRun) -> RequestError | None:
    """The request error behind an engine exception raised inside a job, or None for a server fault.

    Before the first step, a ValueError or TypeError comes from building the prior with the
    request's options (e.g. a decay power out of range): the request's fault.
    """
    if isinstance(error, PriorNotFoundError):
        return NotFound(prior.name_field, str(error))
    if isinstance(error, UnknownLayerError):
        return NotFound("settings.objective", str(error))
    if not started and isinstance(error, ValueError | TypeError):
        return InvalidArgument(prior.options_field, str(error))
    return None
