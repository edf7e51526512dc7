"""Server settings: limits, workers, security and operations, with their defaults in one place.

Every limit is enforced by ``service.validation`` (request fields) or ``service.jobs``
(queue and workers); ``priorviz-server`` exposes each one as a command-line option.
"""

from __future__ import annotations

from dataclasses import dataclass

from priorviz.activation_store import DEFAULT_MAX_BYTES


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; larger requests are refused with INVALID_ARGUMENT."""

    max_image_size: int = 512
    min_image_size: int = 32
    max_steps: int = 2048
    max_batch: int = 8
    max_preview_steps: int = 16
    """How many preview steps one request may ask for."""
    max_compare_priors: int = 8
    """Priors a Compare request may list (the default list, every prior offered, is not cut)."""
    max_objective_nodes: int = 256
    """Nodes of an objective tree (or terms of its text form), to bound parsing and evaluation."""
    max_objective_depth: int = 32
    max_input_pixels: int = 4096 * 4096
    """Width x height of an image a request brings (checked from its header, before decoding)."""
    max_examples: int = 32
    """Images a DatasetExamples request may ask for at each end (its k)."""
    max_example_uploads: int = 64
    """Images a DatasetExamples request may upload instead of naming an image set."""
    max_thumbnail_size: int = 256
    """Side of the images and crops DatasetExamples returns."""


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 50051
    """0 picks a free port (the bound port is reported by ``PriorvizServer.port``)."""
    device: str | None = None
    """Torch device for models and jobs; None: CUDA when present, else the CPU."""
    workers: int = 1
    """Jobs that run at the same time (concurrent-job limit)."""
    max_queue: int = 16
    """Jobs that may wait for a worker; one more is refused with RESOURCE_EXHAUSTED."""
    torch_threads: int = 1
    """Intra-op threads per process (``torch.set_num_threads``), set before any work."""
    limits: Limits = Limits()
    default_model: str | None = None
    """Model loaded and warmed before SERVING; None: the registry's default."""
    checkpoint_dirs: tuple[str, ...] = ()
    """Directories whose files requests may load as ``checkpoint:PATH`` models; empty: no checkpoints."""
    max_cached_models: int = 8
    """Checkpoint and torchvision models kept loaded, least recently used dropped first."""
    held_out_model: str = "efficientnet_lite1"
    """Default model for the transferability metric when a request leaves it empty."""
    token: str | None = None
    """Bearer token every call must carry; None: no authentication."""
    tls_cert: str | None = None
    tls_key: str | None = None
    metrics_port: int | None = None
    """Port of the Prometheus endpoint; None: no metrics endpoint."""
    grace_seconds: float = 30.0
    """On shutdown, how long in-flight jobs may run before they are cancelled."""
    max_message_bytes: int = 64 * 1024 * 1024
    keepalive_seconds: int = 30
    """Interval of server keepalive pings, and how long a client has to answer one before its
    connection is closed and its jobs cancelled (a frozen or vanished client)."""
    max_job_seconds: float = 3600.0
    """Running time after which a job is stopped (DEADLINE_EXCEEDED); time in the queue not counted."""
    image_sets: tuple[tuple[str, str], ...] = ()
    """(name, folder) of each image set offered besides the embedded ``imagenet_samples``."""
    metric_transform_samples: int = 16
    """Random transforms per image when measuring the objective's robustness."""
    store_dir: str | None = None
    """Folder of the activation store that DatasetExamples keeps image sets' activations in; None:
    ``$XDG_CACHE_HOME/priorviz/activations`` (``~/.cache/...``)."""
    store_max_bytes: int = DEFAULT_MAX_BYTES
    """Bytes of activations the store keeps; the least recently used go first."""

    @property
    def grpc_threads(self) -> int:
        """Threads serving RPCs: every running or queued job holds one, plus room for quick calls."""
        return self.workers + self.max_queue + 8
