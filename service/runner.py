"""What a worker does with a checked job: render under each prior, measure, stream events.

Visualize is a job with one prior; Compare is the same job with several priors run one
after the other with the same seed. Events are priorviz.v1 messages ready to send.
Each worker thread uses its own replica of a model (worker 0 the registry's cached copy),
because a model's activation hooks are registered on its modules and must not be shared
by two jobs running at the same time.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable

from priorviz import metrics
from priorviz.models.target import TargetModel
from priorviz.render import RenderCancelled, RenderResult, StepEvent, render
from service._proto.priorviz.v1 import priorviz_pb2 as pb
from service.jobs import Emit, StopCheck
from service.validation import JobSpec, PriorRun, engine_error
from service.wire import PRIOR_KINDS, encode_images

StepObserver = Callable[[float], None]

_local = threading.local()
_replicas: weakref.WeakKeyDictionary[TargetModel, dict[int, TargetModel]] = weakref.WeakKeyDictionary()
"""Per model, each worker's copy; they go when the model leaves the model cache and its last job ends."""
_replicas_lock = threading.Lock()


def set_worker_index(index: int) -> None:
    """Called once by each worker thread before its first job."""
    _local.worker_index = index


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


def run_visualize(
    spec: JobSpec, emit: Emit, should_stop: StopCheck, on_step: StepObserver, transform_samples: int
) -> None:
    prior = spec.priors[0]

    def progress(event: StepEvent) -> None:
        emit(pb.VisualizeEvent(progress=_progress(event)))
        if event.images is not None:
            emit(pb.VisualizeEvent(preview=pb.Preview(step=event.step, images=encode_images(event.images))))

    result = _run_prior(spec, prior, progress, should_stop, on_step, transform_samples)
    emit(pb.VisualizeEvent(result=result))


def run_compare(
    spec: JobSpec, emit: Emit, should_stop: StopCheck, on_step: StepObserver, transform_samples: int
) -> None:
    results = []
    for index, prior in enumerate(spec.priors):

        def progress(event: StepEvent, prior: PriorRun = prior, index: int = index) -> None:
            emit(
                pb.CompareEvent(
                    progress=pb.PriorProgress(
                        prior=prior.name, prior_index=index, prior_count=len(spec.priors), progress=_progress(event)
                    )
                )
            )
            if event.images is not None:
                preview = pb.Preview(step=event.step, images=encode_images(event.images))
                emit(pb.CompareEvent(preview=pb.PriorPreview(prior=prior.name, preview=preview)))

        results.append(_run_prior(spec, prior, progress, should_stop, on_step, transform_samples))
    emit(pb.CompareEvent(result=pb.CompareResult(results=results)))


def _progress(event: StepEvent) -> pb.Progress:
    return pb.Progress(step=event.step, total_steps=event.total_steps, objective_values=event.values.tolist())


def _run_prior(
    spec: JobSpec,
    prior: PriorRun,
    progress: Callable[[StepEvent], None],
    should_stop: StopCheck,
    on_step: StepObserver,
    transform_samples: int,
) -> pb.VisualizeResult:
    model = replica(spec.model)
    last_step = [time.perf_counter(), 0]

    def observed(event: StepEvent) -> None:
        now = time.perf_counter()
        on_step(now - last_step[0])
        last_step[:] = [now, event.step]
        progress(event)

    try:
        rendered = render(
            model,
            spec.objective,
            prior.name,
            batch=spec.batch,
            size=spec.size,
            config=spec.config,
            prior_options=dict(prior.options),
            regularizer=spec.regularizer,
            progress=observed,
            should_stop=should_stop,
            keep_snapshots=False,  # each preview is sent as PNG when it is taken
        )
    except RenderCancelled:
        raise
    except Exception as error:
        request_error = engine_error(error, started=last_step[1] > 0, prior=prior)
        if request_error is None:
            raise
        raise request_error from error
    if should_stop():
        raise RenderCancelled(spec.config.steps)
    return _result(spec, prior, model, rendered, transform_samples)


def _result(
    spec: JobSpec, prior: PriorRun, model: TargetModel, rendered: RenderResult, transform_samples: int
) -> pb.VisualizeResult:
    started = time.perf_counter()
    panel = metrics.measure(
        model,
        spec.objective,
        rendered.images,
        held_out=replica(spec.held_out) if spec.held_out is not None else None,
        seed=spec.config.seed,
        transform_samples=transform_samples,
    )
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
        steps=spec.config.steps,
        seed=spec.config.seed,
        render_seconds=rendered.seconds,
        metrics_seconds=time.perf_counter() - started,
    )
