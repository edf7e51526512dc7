"""Client for priorviz: the unconstrained ("cheating") and the prior-constrained ("natural")
image of the same neuron, side by side, with measured differences.

    from priorviz_client import Client, channel

    with Client("localhost:50051") as client:
        comparison = client.compare(channel("blocks.10", 17) - 0.5 * channel("blocks.10", 3), steps=128)
        for result in comparison.results:
            result.images[0].save(f"{result.prior}.png")
"""

from priorviz_client._async_client import AsyncClient, AsyncJob
from priorviz_client._client import Client, Job
from priorviz_client._connection import RetryPolicy
from priorviz_client._contact_sheet import contact_sheet
from priorviz_client._examples import ExamplesOptions, examples_sheet
from priorviz_client._exceptions import (
    CancelledError,
    DeadlineExceededError,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    PriorvizError,
    ResourceExhaustedError,
    RpcError,
    StudyError,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
)
from priorviz_client._inversion import Inversion, Inversions, InvertOptions, inversion_sheet
from priorviz_client._report import html_report
from priorviz_client._requests import RenderOptions
from priorviz_client._results import (
    Comparison,
    DatasetExamples,
    Event,
    Example,
    LayerInfo,
    ModelInfo,
    ModelSummary,
    Preview,
    PriorInfo,
    PriorKind,
    Progress,
    Queued,
    ReceptiveField,
    ServerInfo,
    Visualization,
)
from priorviz_client._study import PriorSetup, StudyJob, StudySpec, StudyStore, load_spec, parse_spec, run_study
from priorviz_objectives import (
    Channel,
    ClassLogit,
    ClassProbability,
    Direction,
    Diversity,
    Layer,
    Neuron,
    Objective,
    ObjectiveError,
    Scaled,
    Sum,
    channel,
    channels,
    direction,
    diversity,
    layer,
    logit,
    neuron,
    per_batch,
    probability,
)

__all__ = [
    "AsyncClient",
    "AsyncJob",
    "CancelledError",
    "Channel",
    "ClassLogit",
    "ClassProbability",
    "Client",
    "Comparison",
    "DatasetExamples",
    "DeadlineExceededError",
    "Direction",
    "Diversity",
    "Event",
    "Example",
    "ExamplesOptions",
    "FailedPreconditionError",
    "InternalError",
    "InvalidArgumentError",
    "Inversion",
    "Inversions",
    "InvertOptions",
    "Job",
    "Layer",
    "LayerInfo",
    "ModelInfo",
    "ModelSummary",
    "Neuron",
    "NotFoundError",
    "Objective",
    "ObjectiveError",
    "PermissionDeniedError",
    "Preview",
    "PriorInfo",
    "PriorKind",
    "PriorSetup",
    "PriorvizError",
    "Progress",
    "Queued",
    "ReceptiveField",
    "RenderOptions",
    "ResourceExhaustedError",
    "RetryPolicy",
    "RpcError",
    "Scaled",
    "ServerInfo",
    "StudyError",
    "StudyJob",
    "StudySpec",
    "StudyStore",
    "Sum",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "Visualization",
    "channel",
    "channels",
    "contact_sheet",
    "direction",
    "diversity",
    "examples_sheet",
    "html_report",
    "inversion_sheet",
    "layer",
    "load_spec",
    "logit",
    "neuron",
    "parse_spec",
    "per_batch",
    "probability",
    "run_study",
]
