"""What a worker does with a checked job: render under each prior, measure, and report engine events.

Visualize is a job with one prior; Compare is the same job with several priors run one after
the other with the same seed. The runner reports ``PriorStep`` after every step and one
``JobResult`` at the end; ``service.codec`` turns them into stream events. Each worker thread
uses its own replica of a model (worker 0 the registry's cached copy), because a model's
activation hooks are registered on its modules and must not be shared by two jobs running at
the same time. Worker indices are unique in the process, so that several servers in one
process (tests, a study's local fleet) never share a replica either.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from priorviz import metrics
from priorviz.errors import PriorvizError
from priorviz.examples import ExamplesProgress, ExamplesResult, dataset_examples, stored_examples
from priorviz.inversion import InversionResult, invert
from priorviz.metrics import MetricPanel
from priorviz.models.target import TargetModel
from priorviz.objectives import Layer
from priorviz.render import RenderCancelled, RenderResult, StepEvent, render
from service.jobs import StopCheck
from service.validation import ExamplesSpec, InversionSpec, JobSpec, PriorRun

StepObserver = Callable[[float], None]


@dataclass(frozen=True)
class PriorStep:
    """Step ``step.step`` of the job's prior ``prior_index`` is done."""

    prior_index: int
    step: StepEvent


@dataclass(frozen=True)
class PriorResult:
    """The images and metrics of one prior."""

    prior_index: int
    rendered: RenderResult
    panel: MetricPanel
    metrics_seconds: float


@dataclass(frozen=True)
class JobResult:
    """Every prior's result, in the job's order."""

    results: tuple[PriorResult, ...]


JobEvent = PriorStep | JobResult
EmitEvent = Callable[[JobEvent], None]

_local = threading.local()
_replicas: weakref.WeakKeyDictionary[TargetModel, dict[int, TargetModel]] = weakref.WeakKeyDictionary()
"""Per model, each worker's copy; they go when the model leaves the model cache and its last job ends."""
_replicas_lock = threading.Lock()
_indices_in_use: set[int] = set()


def set_worker_index(index: int) -> None:
    """Called once by each worker thread before its first job."""
    _local.worker_index = index


def claim_worker_indices(count: int) -> tuple[int, ...]:
    """The lowest ``count`` worker indices that no running server holds (a stopped server gives its back)."""
    with _replicas_lock:
        free = (index for index in range(len(_indices_in_use) + count) if index not in _indices_in_use)
        claimed = tuple(next(free) for _ in range(count))
        _indices_in_use.update(claimed)
        return claimed


def release_worker_indices(indices: tuple[int, ...]) -> None:
    with _replicas_lock:
        _indices_in_use.difference_update(indices)


def replica(model: TargetModel) -> TargetModel:
    """This worker's own copy of ``model`` (the shared one for worker 0 and for non-worker threads)."""
    index = getattr(_local, "worker_index", 0)
    if index == 0:
        return model
    with _replicas_lock:
        copies = _replicas.setdefault(model, {})
        if index not in copies:
            copies[index] = model.replicate()
        return copies[index]


def run_job(
    spec: JobSpec, emit: EmitEvent, should_stop: StopCheck, on_step: StepObserver, transform_samples: int
) -> None:
    """Render and measure under every prior of ``spec``, reporting each step and then the results."""
    results = []
    for index in range(len(spec.priors)):
        rendered = _render(spec, index, emit, should_stop, on_step)
        if should_stop():
            raise RenderCancelled(spec.priors[index].steps)
        results.append(_measure(spec, index, rendered, transform_samples))
    emit(JobResult(tuple(results)))


def _render(spec: JobSpec, index: int, emit: EmitEvent, should_stop: StopCheck, on_step: StepObserver) -> RenderResult:
    prior = spec.priors[index]
    last_step = [time.perf_counter()]

    def observed(event: StepEvent) -> None:
        now = time.perf_counter()
        on_step(now - last_step[0])
        last_step[0] = now
        emit(PriorStep(index, event))

    try:
        return render(
            replica(spec.model),
            spec.objective,
            prior.name,
            batch=spec.batch,
            size=spec.size,
            config=spec.prior_config(index),
            prior_options=dict(prior.options),
            regularizer=spec.regularizer,
            progress=observed,
            should_stop=should_stop,
            keep_snapshots=False,  # each preview is sent as PNG when it is taken
            init_images=spec.init_images,
        )
    except PriorvizError as error:
        error.field = _request_field(error.field, prior)
        raise


def _request_field(field: str | None, prior: PriorRun) -> str | None:
    """The request field behind one of ``render``'s arguments (the prior's name and options)."""
    fields = {
        "prior": prior.name_field,
        "prior_options": prior.options_field,
        "init_image": "settings.init_image",
        "blur_sigma": "settings.regularizers.blur_sigma",
    }
    return fields.get(field or "", field)


def _measure(spec: JobSpec, index: int, rendered: RenderResult, transform_samples: int) -> PriorResult:
    started = time.perf_counter()
    panel = metrics.measure(
        replica(spec.model),
        spec.objective,
        rendered.images,
        held_out=replica(spec.held_out) if spec.held_out is not None else None,
        seed=spec.config.seed,
        transform_samples=transform_samples,
        references=rendered.references,
    )
    return PriorResult(index, rendered, panel, time.perf_counter() - started)


@dataclass(frozen=True)
class PriorInversionResult:
    """One prior's reconstruction and its metric panel."""

    prior_index: int
    inversion: InversionResult
    panel: MetricPanel
    metrics_seconds: float


@dataclass(frozen=True)
class InversionJobResult:
    """Every prior's reconstruction, in the job's order."""

    results: tuple[PriorInversionResult, ...]


InversionEvent = PriorStep | InversionJobResult
EmitInversionEvent = Callable[[InversionEvent], None]


def inversion_objective(spec: InversionSpec) -> Layer:
    """What the metric panel measures a reconstruction against: DeepDream's objective on the heaviest layer."""
    return Layer(max(spec.layers, key=lambda name: spec.layers[name]))


def run_inversion(
    spec: InversionSpec, emit: EmitInversionEvent, should_stop: StopCheck, on_step: StepObserver, transform_samples: int
) -> None:
    """Invert the photograph under every prior of ``spec`` with the same seed, reporting each step, then the results."""
    model = replica(spec.model)
    results = []
    last_step = [time.perf_counter()]
    for index, prior in enumerate(spec.priors):
        last_step[0] = time.perf_counter()

        def observed(event: StepEvent, index: int = index) -> None:
            now = time.perf_counter()
            on_step(now - last_step[0])
            last_step[0] = now
            emit(PriorStep(index, event))

        try:
            inversion = invert(
                model,
                spec.photograph,
                spec.layers,
                prior.name,
                size=spec.size,
                steps=prior.steps,
                learning_rate=spec.learning_rate,
                seed=spec.seed,
                total_variation_weight=spec.total_variation_weight,
                transforms=spec.transforms,
                prior_options=dict(prior.options),
                snapshot_steps=spec.preview_steps,
                progress=observed,
                should_stop=should_stop,
            )
        except PriorvizError as error:
            error.field = _request_field(error.field, prior)
            raise
        started = time.perf_counter()
        panel = metrics.measure(
            model,
            inversion_objective(spec),
            inversion.images,
            held_out=replica(spec.held_out) if spec.held_out is not None else None,
            seed=spec.seed,
            transform_samples=transform_samples,
        )
        results.append(PriorInversionResult(index, inversion, panel, time.perf_counter() - started))
    emit(InversionJobResult(tuple(results)))


ExamplesEvent = ExamplesProgress | ExamplesResult


def run_examples(
    spec: ExamplesSpec,
    emit: Callable[[ExamplesEvent], None],
    should_stop: StopCheck,
    on_step: StepObserver,
    transform_samples: int,
) -> None:
    """Rank the images for the unit, computing (and storing) an image set's activations when the store lacks them."""
    emit(
        dataset_examples(
            replica(spec.model),
            spec.unit,
            spec.image_set if spec.image_set is not None else spec.uploads,
            k=spec.k,
            thumbnail_size=spec.thumbnail_size,
            store=spec.store,
            max_pixels=spec.max_pixels,
            progress=emit,
            should_stop=should_stop,
        )
    )


def stored_answer(spec: ExamplesSpec) -> ExamplesResult | None:
    """The ranking from the store alone, without running the model (so, off the job queue); None when it lacks it."""
    if spec.image_set is None:
        return None
    return stored_examples(
        spec.model,
        spec.unit,
        spec.image_set,
        spec.store,
        k=spec.k,
        thumbnail_size=spec.thumbnail_size,
        max_pixels=spec.max_pixels,
    )
