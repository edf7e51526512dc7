"""Request validation: a decoded request becomes a checked ``JobSpec``, or an engine error naming the field.

Everything a job could trip over is checked here, on the calling thread and before the job takes
a queue slot: sizes against the configured ``Limits``, the objective's terms against the model's
layers, channels and classes, prior names and options. The input is ``service.codec``'s decoding
of the request (plain values, no protobuf); the errors are ``priorviz.errors`` exceptions whose
``field`` is the request field at fault, which ``service.errors`` maps to status codes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from torch import Tensor

from priors.base import PriorInfo, PriorKind, list_priors
from priors.options import OptionError
from priorviz.activation_store import ActivationStore
from priorviz.errors import InvalidInputError, NotFoundError, PriorUnusableError, PriorvizError, clip_text
from priorviz.image_input import ImageSet, decode_image, load_named_image, offered_set
from priorviz.inversion import DEFAULT_INVERSION_STEPS, resize_photograph
from priorviz.models.target import TargetModel
from priorviz.objectives import Objective, Term, leaves, reference_layers, validate_term
from priorviz.render import RenderConfig
from priorviz.statistics import BatchNormStatisticsPrior
from priorviz.transforms import (
    LUCID_SCALES,
    NO_TRANSFORMS,
    STANDARD_FINAL_JITTER,
    STANDARD_JITTER,
    Transform,
    adjusted_transforms,
    standard_transforms,
)
from priorviz_objectives.proto import field_path
from priorviz_objectives.units import Unit, as_unit
from service.config import Limits

NO_HELD_OUT = "none"
MAX_STATISTICS_PRIOR_WEIGHT = 1000.0
MIN_LEARNING_RATE = 1e-6
"""Smaller rates leave the images where they started (and 5e-324 is not a rate)."""
MAX_LEARNING_RATE = 10.0
MAX_MODEL_NAME = 512
MAX_PENALTY_WEIGHT = 1000.0
"""Total variation and L1 weights (Render and Invert alike)."""
MAX_BLUR_SIGMA = 8.0
"""Pixels; the kernel reaches 3 sigma, 24 pixels, within the smallest image side allowed by default."""
MAX_PAD = 64
MAX_JITTER = 32
"""Each of jitter and final_jitter; together they are at most half the image side as well."""
MIN_SCALE = 0.5
MAX_SCALE = 2.0
MAX_ROTATION_DEGREES = 180.0


@dataclass(frozen=True)
class PriorRequest:
    """One prior a request names, with its options as text and the request fields they came from."""

    name: str
    options: Mapping[str, str]
    name_field: str
    options_field: str


@dataclass(frozen=True)
class ObjectiveRequest:
    """The request's objective, already read (and bounded) from its tree or its text."""

    objective: Objective
    field: str
    """``settings.objective`` or ``settings.objective_text``."""
    term_paths: tuple[str, ...] = ()
    """For a tree: the path of each term's ``Objective`` message, in the order of ``leaves(objective)``."""


@dataclass(frozen=True)
class ImageRequest:
    """An image a request brings: uploaded bytes, or ``SET/IMAGE`` naming a member of an offered set."""

    data: bytes
    named: str
    field: str


@dataclass(frozen=True)
class RegularizerRequest:
    """The request's regularizers; 0 is off (and ``blur_every`` 0 means every step)."""

    total_variation_weight: float = 0.0
    l1_weight: float = 0.0
    blur_sigma: float = 0.0
    blur_every: int = 0


@dataclass(frozen=True)
class TransformRequest:
    """The transform parameters a request sets; None keeps the value of Lucid's standard set."""

    pad: int | None = None
    jitter: int | None = None
    scale_min: float | None = None
    scale_max: float | None = None
    rotate_degrees: float | None = None
    final_jitter: int | None = None


@dataclass(frozen=True)
class RenderRequest:
    """A Visualize or Compare request as plain values; 0 and "" mean "the default", as on the wire."""

    objective: ObjectiveRequest
    priors: tuple[PriorRequest, ...]
    """Empty: every prior this server offers (Compare's default)."""
    model: str = ""
    held_out_model: str = ""
    batch: int = 0
    image_size: int = 0
    steps: int = 0
    learning_rate: float = 0.0
    seed: int = 0
    preview_steps: tuple[int, ...] = ()
    transforms: bool = True
    statistics_prior_weight: float = 0.0
    init_image: ImageRequest | None = None
    regularizers: RegularizerRequest = RegularizerRequest()
    transform_parameters: TransformRequest | None = None
    """None: Lucid's standard set (when ``transforms`` is on)."""


@dataclass(frozen=True)
class PriorRun:
    """One prior of a job, with its options already parsed."""

    name: str
    kind: PriorKind
    options: Mapping[str, object]
    steps: int
    """The request's steps, or where it gave none (0) the prior's own default."""
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
    """The job's settings; its steps are the longest prior's (``prior_config`` gives each prior its own)."""
    priors: tuple[PriorRun, ...]
    regularizer: Term | None = None
    """The statistics prior, when the request gives it a weight."""
    init_images: Tensor | None = None
    """(batch, 3, size, size) in [0, 1]: where every prior starts, when the request brings an init_image."""

    @property
    def total_steps(self) -> int:
        return sum(prior.steps for prior in self.priors)

    def prior_config(self, index: int) -> RenderConfig:
        """The settings of prior ``index``'s run: its own steps, and the previews within them."""
        steps = self.priors[index].steps
        previews = tuple(step for step in self.config.snapshot_steps if step <= steps)
        return replace(self.config, steps=steps, snapshot_steps=previews)


ModelLoader = Callable[[str], TargetModel]


def _at(error: PriorvizError, field: str) -> PriorvizError:
    """``error`` reported at the request's ``field``."""
    error.field = field
    return error


def load_model(loader: ModelLoader, name: str, field: str) -> TargetModel:
    """Resolve a model name; the registry's errors say whether it is unknown, unavailable or malformed."""
    if len(name) > MAX_MODEL_NAME:
        raise InvalidInputError(f"model names are at most {MAX_MODEL_NAME} characters", field=field)
    try:
        return loader(name)
    except PriorvizError as error:
        raise _at(error, field) from None


def check_request(
    request: RenderRequest,
    limits: Limits,
    loader: ModelLoader,
    default_model: str,
    default_held_out: str,
    image_sets: Mapping[str, ImageSet] | None = None,
) -> JobSpec:
    """The job a Visualize or Compare request asks for, checked against ``limits`` and the models."""
    if len(request.priors) > limits.max_compare_priors:
        raise InvalidInputError(
            f"at most {limits.max_compare_priors} priors, got {len(request.priors)}", field="priors"
        )
    check_steps(request.steps, limits, "settings.steps")
    if request.priors:
        priors = [check_prior(prior, request.steps, limits.max_steps) for prior in request.priors]
    else:
        # The default is every prior this server's operator offers, so the per-request limit does not cut it.
        priors = [
            check_prior(PriorRequest(name, {}, "priors", "priors"), request.steps, limits.max_steps)
            for name in default_compare_priors()
        ]
    steps = max(prior.steps for prior in priors)

    batch = request.batch or 1
    if not 1 <= batch <= limits.max_batch:
        raise InvalidInputError(f"must be within 1..{limits.max_batch}, got {request.batch}", field="settings.batch")
    learning_rate = request.learning_rate
    if not (learning_rate == 0 or MIN_LEARNING_RATE <= learning_rate <= MAX_LEARNING_RATE):
        raise InvalidInputError(
            f"must be 0 (the prior's default) or within {MIN_LEARNING_RATE:g}..{MAX_LEARNING_RATE:g}, "
            f"got {learning_rate!r}",
            field="settings.learning_rate",
        )
    previews = request.preview_steps
    if len(previews) > limits.max_preview_steps:
        raise InvalidInputError(
            f"at most {limits.max_preview_steps} steps, got {len(previews)}", field="settings.preview_steps"
        )
    outside = sorted({step for step in previews if not 1 <= step <= steps})
    if outside:
        raise InvalidInputError(f"steps {outside[:5]} are outside 1..{steps}", field="settings.preview_steps")

    model = load_model(loader, request.model or default_model, "settings.model")
    size = request.image_size or model.input_size
    if not limits.min_image_size <= size <= limits.max_image_size:
        raise InvalidInputError(
            f"must be within {limits.min_image_size}..{limits.max_image_size} (0: the model's {model.input_size}), "
            f"got {request.image_size}",
            field="settings.image_size",
        )
    held_out_name = request.held_out_model or default_held_out
    held_out = None if held_out_name == NO_HELD_OUT else load_model(loader, held_out_name, "settings.held_out_model")
    check_objective(request.objective, model, batch)
    if request.init_image is None and reference_layers(request.objective.objective):
        raise InvalidInputError(
            f"{clip_text(request.objective.objective.to_text())!r} compares with the photograph's activations; "
            "give an init_image",
            field="settings.init_image",
        )
    regularizers = request.regularizers
    check_regularizers(regularizers, steps, priors)
    config = RenderConfig(
        steps=steps,
        learning_rate=learning_rate or None,
        seed=request.seed,
        transforms=check_transforms(request.transforms, request.transform_parameters, size),
        snapshot_steps=tuple(sorted(set(previews))),
        total_variation_weight=regularizers.total_variation_weight,
        l1_weight=regularizers.l1_weight,
        blur_sigma=regularizers.blur_sigma,
        blur_every=regularizers.blur_every or 1,
    )
    regularizer = check_statistics_prior(request.statistics_prior_weight, model)
    init_images = None
    if request.init_image is not None:
        photograph = check_image(request.init_image, limits, image_sets or {})
        init_images = resize_photograph(photograph, size).expand(batch, -1, -1, -1)
    return JobSpec(
        model, held_out, request.objective.objective, batch, size, config, tuple(priors), regularizer, init_images
    )


def check_within(value: float, low: float, high: float, field: str) -> None:
    """``value`` is finite and within ``low..high``, else InvalidInputError naming ``field``."""
    if not (math.isfinite(value) and low <= value <= high):
        raise InvalidInputError(f"must be within {low:g}..{high:g}, got {value!r}", field=field)


def check_regularizers(request: RegularizerRequest, steps: int, priors: list[PriorRun]) -> None:
    """Weights and the blur within their limits; the blur only under priors that can draw any image."""
    field = "settings.regularizers"
    check_within(request.total_variation_weight, 0, MAX_PENALTY_WEIGHT, f"{field}.total_variation_weight")
    check_within(request.l1_weight, 0, MAX_PENALTY_WEIGHT, f"{field}.l1_weight")
    check_within(request.blur_sigma, 0, MAX_BLUR_SIGMA, f"{field}.blur_sigma")
    check_within(request.blur_every, 0, steps, f"{field}.blur_every")
    if request.blur_every and not request.blur_sigma:
        raise InvalidInputError("blur_every needs a blur_sigma", field=f"{field}.blur_every")
    learned = [prior.name for prior in priors if prior.kind == PriorKind.LEARNED]
    if request.blur_sigma and learned:
        raise InvalidInputError(
            f"the blur edits the image itself, which the learned priors {learned[:3]} cannot draw exactly; "
            "name unconstrained priors (pixel, fourier)",
            field=f"{field}.blur_sigma",
        )


def check_transforms(enabled: bool, parameters: TransformRequest | None, size: int) -> Transform:
    """The transforms a request asks for: none, Lucid's standard set, or that set with parameters changed."""
    field = "settings.transform_parameters"
    if not enabled:
        if parameters is not None:
            raise InvalidInputError("transform parameters were given with transforms off", field=field)
        return NO_TRANSFORMS
    if parameters is None:
        return standard_transforms()
    for name, value, high in (
        ("pad", parameters.pad, MAX_PAD),
        ("jitter", parameters.jitter, MAX_JITTER),
        ("final_jitter", parameters.final_jitter, MAX_JITTER),
        ("rotate_degrees", parameters.rotate_degrees, MAX_ROTATION_DEGREES),
    ):
        if value is not None:
            check_within(value, 0, high, f"{field}.{name}")
    jitter = STANDARD_JITTER if parameters.jitter is None else parameters.jitter
    final_jitter = STANDARD_FINAL_JITTER if parameters.final_jitter is None else parameters.final_jitter
    if jitter + final_jitter > size // 2:
        raise InvalidInputError(
            f"jitter {jitter} and final_jitter {final_jitter} crop more than half the {size} px image",
            field=f"{field}.jitter",
        )
    scale_range = None
    if parameters.scale_min is not None or parameters.scale_max is not None:
        low = LUCID_SCALES[0] if parameters.scale_min is None else parameters.scale_min
        high = LUCID_SCALES[-1] if parameters.scale_max is None else parameters.scale_max
        check_within(low, MIN_SCALE, MAX_SCALE, f"{field}.scale_min")
        check_within(high, MIN_SCALE, MAX_SCALE, f"{field}.scale_max")
        if low > high:
            raise InvalidInputError(f"scale_min {low:g} is above scale_max {high:g}", field=f"{field}.scale_min")
        scale_range = (low, high)
    return adjusted_transforms(
        pad=parameters.pad,
        jitter=parameters.jitter,
        scale_range=scale_range,
        rotation=parameters.rotate_degrees,
        final_jitter=parameters.final_jitter,
    )


def check_statistics_prior(weight: float, model: TargetModel) -> Term | None:
    """The batch-norm statistics regularizer for a positive weight, None for 0."""
    field = "settings.statistics_prior_weight"
    check_within(weight, 0, MAX_STATISTICS_PRIOR_WEIGHT, field)
    if weight == 0:
        return None
    try:
        return BatchNormStatisticsPrior(model, weight)
    except PriorvizError as error:
        raise _at(error, field) from None


def check_objective(request: ObjectiveRequest, model: TargetModel, batch: int) -> None:
    """Every term against ``model``: its layers are listed, its channels, classes and batch targets exist."""
    layers = {layer.name: layer.channels for layer in model.layers}
    for position, term in enumerate(leaves(request.objective)):
        try:
            validate_term(term, layers, model.num_classes, batch)
        except PriorvizError as error:
            where = request.field
            if request.term_paths:
                where = field_path(request.term_paths[position], type(term), error.field)
            raise _at(error, where) from None


def known_priors() -> dict[str, tuple[PriorInfo, bool]]:
    """Every registered prior with whether it is available here."""
    available = {info.name for info in list_priors()}
    return {info.name: (info, info.name in available) for info in list_priors(only_available=False)}


def check_steps(steps: int, limits: Limits, field: str) -> None:
    """A request's steps: 0 (each prior's own default) or within the limit."""
    if steps != 0 and not 1 <= steps <= limits.max_steps:
        raise InvalidInputError(
            f"must be 0 (each prior's default) or within 1..{limits.max_steps}, got {steps}", field=field
        )


def check_prior(prior: PriorRequest, steps: int, most_default_steps: int) -> PriorRun:
    """A known, available prior with options it accepts, parsed, and its steps: ``steps`` (already checked), or
    for 0 the prior's declared default, at most ``most_default_steps``."""
    if not prior.name:
        raise InvalidInputError("a prior name is required", field=prior.name_field)
    priors = known_priors()
    if prior.name not in priors:
        raise NotFoundError(
            f"unknown prior {clip_text(prior.name)!r}; available: {', '.join(sorted(priors))}", field=prior.name_field
        )
    info, available = priors[prior.name]
    if not available:
        reason = info.unavailable_reason or "its model is not installed on this server"
        raise PriorUnusableError(
            f"prior {prior.name!r} is registered but unavailable: {reason}", field=prior.name_field
        )
    try:
        parsed = info.parse_options(prior.options)
    except OptionError as error:
        raise InvalidInputError(f"prior {prior.name!r}: {error}", field=prior.options_field) from None
    steps = steps or min(info.default_steps, most_default_steps)
    return PriorRun(prior.name, info.kind, parsed, steps, prior.name_field, prior.options_field)


def default_compare_priors() -> list[str]:
    """ "fourier" plus every available learned prior."""
    return ["fourier"] + [name for name, (info, ok) in known_priors().items() if ok and info.kind == PriorKind.LEARNED]


# -- Invert --------------------------------------------------------------------------------

MAX_INVERSION_LAYERS = 8


@dataclass(frozen=True)
class InvertRequest:
    """An Invert request as plain values; 0 and "" mean "the default", as on the wire."""

    image: ImageRequest
    layers: tuple[tuple[str, float], ...]
    priors: tuple[PriorRequest, ...]
    """Empty: fourier alone."""
    model: str = ""
    held_out_model: str = ""
    image_size: int = 0
    steps: int = 0
    learning_rate: float = 0.0
    seed: int = 0
    preview_steps: tuple[int, ...] = ()
    total_variation_weight: float = 0.0
    transforms: bool = False


@dataclass(frozen=True)
class InversionSpec:
    """A checked Invert request: the decoded photograph and everything ``priorviz.inversion.invert`` needs."""

    model: TargetModel
    held_out: TargetModel | None
    photograph: Tensor
    """(3, H, W) in [0, 1], as decoded."""
    layers: Mapping[str, float]
    priors: tuple[PriorRun, ...]
    size: int
    learning_rate: float | None
    seed: int
    preview_steps: tuple[int, ...]
    total_variation_weight: float
    transforms: Transform

    @property
    def steps(self) -> int:
        """The longest prior's steps (they differ when the request left steps to each prior's default)."""
        return max(prior.steps for prior in self.priors)

    @property
    def total_steps(self) -> int:
        return sum(prior.steps for prior in self.priors)


def check_image(request: ImageRequest, limits: Limits, image_sets: Mapping[str, ImageSet]) -> Tensor:
    """The decoded image: exactly one source, within the pixel cap, from an offered set when named."""
    if bool(request.data) == bool(request.named):
        raise InvalidInputError("give exactly one of data and named", field=request.field)
    if request.data:
        return decode_image(request.data, field=f"{request.field}.data", max_pixels=limits.max_input_pixels)
    return load_named_image(
        request.named, image_sets, field=f"{request.field}.named", max_pixels=limits.max_input_pixels
    )


def check_invert(
    request: InvertRequest,
    limits: Limits,
    loader: ModelLoader,
    default_model: str,
    default_held_out: str,
    image_sets: Mapping[str, ImageSet],
) -> InversionSpec:
    """The inversion an Invert request asks for, checked against ``limits``, the model and the offered image sets."""
    if len(request.priors) > limits.max_compare_priors:
        raise InvalidInputError(
            f"at most {limits.max_compare_priors} priors, got {len(request.priors)}", field="priors"
        )
    check_steps(request.steps, limits, "steps")
    most = min(DEFAULT_INVERSION_STEPS, limits.max_steps)
    chosen = request.priors or (PriorRequest("fourier", {}, "priors", "priors"),)
    priors = [check_prior(prior, request.steps, most) for prior in chosen]
    steps = max(prior.steps for prior in priors)
    rate = request.learning_rate
    if not (rate == 0 or MIN_LEARNING_RATE <= rate <= MAX_LEARNING_RATE):
        raise InvalidInputError(
            f"must be 0 or within {MIN_LEARNING_RATE:g}..{MAX_LEARNING_RATE:g}, got {rate!r}", field="learning_rate"
        )
    if len(request.preview_steps) > limits.max_preview_steps:
        raise InvalidInputError(f"at most {limits.max_preview_steps} steps", field="preview_steps")
    outside = sorted({step for step in request.preview_steps if not 1 <= step <= steps})
    if outside:
        raise InvalidInputError(f"steps {outside[:5]} are outside 1..{steps}", field="preview_steps")
    tv = request.total_variation_weight
    check_within(tv, 0, MAX_PENALTY_WEIGHT, "total_variation_weight")
    if not 1 <= len(request.layers) <= MAX_INVERSION_LAYERS:
        raise InvalidInputError(f"give 1..{MAX_INVERSION_LAYERS} layers, got {len(request.layers)}", field="layers")
    model = load_model(loader, request.model or default_model, "model")
    known_layers = {layer.name for layer in model.layers}
    layers: dict[str, float] = {}
    for index, (name, weight) in enumerate(request.layers):
        if name not in known_layers:
            raise NotFoundError(
                f"model {model.name!r} has no layer {clip_text(name)!r}", field=f"layers[{index}].layer"
            )
        if not (math.isfinite(weight) and weight >= 0):
            raise InvalidInputError(f"must be non-negative and finite, got {weight!r}", field=f"layers[{index}].weight")
        layers[name] = layers.get(name, 0.0) + (weight or 1.0)
    size = request.image_size or model.input_size
    if not limits.min_image_size <= size <= limits.max_image_size:
        raise InvalidInputError(
            f"must be within {limits.min_image_size}..{limits.max_image_size}, got {request.image_size}",
            field="image_size",
        )
    held_out_name = request.held_out_model or default_held_out
    held_out = None if held_out_name == NO_HELD_OUT else load_model(loader, held_out_name, "held_out_model")
    photograph = check_image(request.image, limits, image_sets)
    return InversionSpec(
        model=model,
        held_out=held_out,
        photograph=photograph,
        layers=layers,
        priors=tuple(priors),
        size=size,
        learning_rate=rate or None,
        seed=request.seed,
        preview_steps=tuple(sorted(set(request.preview_steps))),
        total_variation_weight=tv,
        transforms=standard_transforms() if request.transforms else NO_TRANSFORMS,
    )


# -- DatasetExamples -----------------------------------------------------------------------

DEFAULT_EXAMPLES = 8
DEFAULT_THUMBNAIL_SIZE = 128
MIN_THUMBNAIL_SIZE = 16


@dataclass(frozen=True)
class ExamplesRequest:
    """A DatasetExamples request as plain values; 0 and "" mean "the default", as on the wire."""

    unit: ObjectiveRequest
    model: str = ""
    image_set: str = ""
    images: tuple[ImageRequest, ...] = ()
    k: int = 0
    thumbnail_size: int = 0


@dataclass(frozen=True)
class ExamplesSpec:
    """A checked DatasetExamples request: the unit, the images (a set, or decoded uploads) and the store."""

    model: TargetModel
    unit: Unit
    image_set: ImageSet | None
    uploads: tuple[tuple[str, Tensor], ...]
    """Named (3, H, W) images in [0, 1] when the request uploads instead of naming a set."""
    k: int
    thumbnail_size: int
    store: ActivationStore
    max_pixels: int


def check_examples(
    request: ExamplesRequest,
    limits: Limits,
    loader: ModelLoader,
    default_model: str,
    image_sets: Mapping[str, ImageSet],
    store: ActivationStore,
) -> ExamplesSpec:
    """The ranking a DatasetExamples request asks for: one unit that the model has, k, sizes and images in bounds."""
    unit = as_unit(request.unit.objective, field=request.unit.field)
    k = request.k or DEFAULT_EXAMPLES
    if not 1 <= k <= limits.max_examples:
        raise InvalidInputError(
            f"must be within 1..{limits.max_examples} (0: {DEFAULT_EXAMPLES}), got {request.k}", field="k"
        )
    thumbnail_size = request.thumbnail_size or DEFAULT_THUMBNAIL_SIZE
    if not MIN_THUMBNAIL_SIZE <= thumbnail_size <= limits.max_thumbnail_size:
        raise InvalidInputError(
            f"must be within {MIN_THUMBNAIL_SIZE}..{limits.max_thumbnail_size} (0: {DEFAULT_THUMBNAIL_SIZE}), "
            f"got {request.thumbnail_size}",
            field="thumbnail_size",
        )
    if bool(request.image_set) == bool(request.images):
        raise InvalidInputError("give exactly one of image_set and images", field="image_set")
    if len(request.images) > limits.max_example_uploads:
        raise InvalidInputError(
            f"at most {limits.max_example_uploads} images, got {len(request.images)}", field="images"
        )
    model = load_model(loader, request.model or default_model, "model")
    check_objective(request.unit, model, batch=1)
    image_set = offered_set(request.image_set, image_sets, field="image_set") if request.image_set else None
    uploads = tuple((image.field, check_image(image, limits, image_sets)) for image in request.images)
    return ExamplesSpec(model, unit, image_set, uploads, k, thumbnail_size, store, limits.max_input_pixels)
