"""The distilled ImageNet generator: a class-conditional generator trained from the classifier alone.

No ImageNet generator and no natural-image data can be had offline, but the embedded
EfficientNet-Lite0 carries ImageNet's statistics in its batch-norm layers. The project trains
this generator against Lite0 only (cross-entropy for the class, batch-level batch-norm
statistics, a diversity term and total variation; see ``priorviz.training.distill``), and ships
its weights in ``priors/weights/``. As a prior (``distilled_imagenet``) it optimizes z and the
class code of the frozen generator.

Architecture, BigGAN-like and small enough for the CPU: the latent z (128 numbers) and a class
code (128 numbers) go through a linear layer to 4x4 features, then five blocks of nearest
upsampling, a 3x3 convolution and a class-conditional batch norm (its gain and bias are linear
in [z, class code]) to 128x128, then a 3x3 convolution to RGB and a sigmoid. The class codes
start from the principal components of the classifier's last-layer class weights, so that
classes the classifier finds alike start alike and what the generator learns for one class
carries over to its neighbours.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file
from torch import Tensor, nn

from priors.base import DEFAULT_STEPS, PriorInfo, PriorKind, register_prior
from priors.frozen_models import FrozenModels
from priors.latent import LatentImage
from priors.options import Option


@dataclass(frozen=True)
class GeneratorConfig:
    """The architecture's numbers; saved beside the weights so that a checkpoint rebuilds itself."""

    latent_size: int = 128
    class_code_size: int = 128
    num_classes: int = 1000
    widths: tuple[int, ...] = (256, 192, 128, 64, 32, 16)
    """Channels at 4, 8, 16, 32, 64 and 128 pixels."""
    template_side: int = 0
    """Side of a learned per-class colour layout added before the output sigmoid (0: none)."""

    @property
    def output_side(self) -> int:
        return 4 * 2 ** (len(self.widths) - 1)


class ConditionalBatchNorm(nn.Module):
    """Batch norm without its own affine part, whose gain and bias come from a conditioning vector."""

    def __init__(self, channels: int, condition_size: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Linear(condition_size, channels)
        self.bias = nn.Linear(condition_size, channels)
        # Start as a plain batch norm: gain 1, bias 0, whatever the condition.
        nn.init.zeros_(self.gain.weight)
        nn.init.ones_(self.gain.bias)
        nn.init.zeros_(self.bias.weight)
        nn.init.zeros_(self.bias.bias)

    def forward(self, features: Tensor, condition: Tensor) -> Tensor:
        gain = self.gain(condition)[:, :, None, None]
        bias = self.bias(condition)[:, :, None, None]
        return self.norm(features) * gain + bias


class UpBlock(nn.Module):
    """Nearest upsampling by 2, a 3x3 convolution, a conditional batch norm and a leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, condition_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm = ConditionalBatchNorm(out_channels, condition_size)

    def forward(self, features: Tensor, condition: Tensor) -> Tensor:
        features = F.interpolate(features, scale_factor=2.0, mode="nearest")
        return F.leaky_relu(self.norm(self.conv(features), condition), 0.2)


@dataclass(frozen=True)
class ClassCode:
    """What the generator knows of a class: a code vector, and optionally a coarse colour layout."""

    vector: Tensor
    """(batch, class_code_size)"""
    template: Tensor | None = None
    """(batch, 3 * template_side**2), added to the output's logits after bilinear upsampling."""


class DistilledGenerator(nn.Module):
    """G(z, class code) -> images (batch, 3, 128, 128) in [0, 1].

    ``class_codes`` is the learned table of one code per class; ``forward`` takes a code,
    not a label, so that a prior can optimize the code continuously.
    """

    def __init__(self, config: GeneratorConfig = GeneratorConfig()) -> None:
        super().__init__()
        self.config = config
        condition_size = config.latent_size + config.class_code_size
        self.class_codes = nn.Embedding(config.num_classes, config.class_code_size)
        first = config.widths[0]
        self.to_features = nn.Linear(condition_size, first * 4 * 4)
        self.first_norm = ConditionalBatchNorm(first, condition_size)
        self.blocks = nn.ModuleList(
            UpBlock(wide, narrow, condition_size) for wide, narrow in itertools.pairwise(config.widths)
        )
        self.to_rgb = nn.Conv2d(config.widths[-1], 3, 3, padding=1)
        side = config.template_side
        self.class_templates = nn.Embedding(config.num_classes, 3 * side * side) if side else None
        if self.class_templates is not None:
            nn.init.zeros_(self.class_templates.weight)

    def code_of(self, labels: Tensor) -> ClassCode:
        """The class codes of integer ``labels``."""
        template = self.class_templates(labels) if self.class_templates is not None else None
        return ClassCode(self.class_codes(labels), template)

    def forward(self, latent: Tensor, code: ClassCode) -> Tensor:
        return torch.sigmoid(self.output_logits(latent, code))

    def output_logits(self, latent: Tensor, code: ClassCode) -> Tensor:
        """The images before the sigmoid; training keeps them small so that colours do not saturate."""
        condition = torch.cat([latent, code.vector], dim=1)
        features = self.to_features(condition).view(latent.shape[0], self.config.widths[0], 4, 4)
        features = F.leaky_relu(self.first_norm(features, condition), 0.2)
        for block in self.blocks:
            features = block(features, condition)
        logits = self.to_rgb(features)
        if code.template is not None:
            side = self.config.template_side
            layout = code.template.view(-1, 3, side, side)
            logits = logits + F.interpolate(layout, size=logits.shape[-2:], mode="bilinear", align_corners=False)
        return logits

    @torch.no_grad()
    def initialize_class_codes(self, class_weights: Tensor) -> None:
        """Start the class codes at the principal components of the classifier's class weights.

        ``class_weights`` is the last layer's (num_classes, features) matrix. Each row is
        centred and unit-normalized, projected on the top ``class_code_size`` principal
        directions, and the codes are scaled to unit variance per component.
        """
        rows = F.normalize(class_weights.float(), dim=1)
        rows = rows - rows.mean(dim=0, keepdim=True)
        _, _, directions = torch.linalg.svd(rows, full_matrices=False)
        codes = rows @ directions[: self.config.class_code_size].T
        codes = codes / codes.std(dim=0, keepdim=True).clamp(min=1e-8)
        # Fewer classes than code components (tests): the components past the rank stay zero.
        self.class_codes.weight.zero_()[:, : codes.shape[1]] = codes


# ---------------------------------------------------------------------------------------------
# The prior: optimize (z, class code) of the shipped generator

WEIGHTS_PATH = Path(__file__).resolve().parent / "weights" / "distilled_imagenet.safetensors"
LICENCE = (
    "Apache-2.0; trained by priorviz from EfficientNet-Lite0's Apache-2.0 weights alone (no images): "
    "priors/weights/distilled_imagenet.md"
)
DEFAULT_CLIP = 3.0
DEFAULT_NORM_PENALTY = 1.0
LEARNING_RATE = 0.05


def distilled_weights_available() -> bool:
    return WEIGHTS_PATH.is_file()


_generators: FrozenModels[DistilledGenerator] = FrozenModels()


def load_distilled_generator(
    device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, path: Path = WEIGHTS_PATH
) -> DistilledGenerator:
    """The shipped generator (fp16 on disk, ``dtype`` in memory), frozen, in eval mode; loaded once per device."""

    def load() -> DistilledGenerator:
        if not path.is_file():
            raise FileNotFoundError(f"the distilled ImageNet generator's weights are not at {path}")
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        saved: dict[str, Any] = json.loads(metadata["generator"])
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()}
        network = DistilledGenerator(GeneratorConfig(**values))
        network.load_state_dict({name: tensor.float() for name, tensor in load_file(str(path)).items()}, strict=True)
        return network.to(dtype=dtype)

    device = torch.device(device)
    return _generators.get((str(path), str(device), dtype), load, device)


class DistilledLatentImage(LatentImage):
    """Images of the frozen distilled generator from a trainable z and a trainable class code.

    z is kept on its Gaussian shell (clipping and a norm penalty, as for ``gan_faces``). The
    class code starts at the class the image's objective targets, else at the mean of all
    classes' codes, and then moves freely: an objective that is not a class can pull it
    anywhere between classes.
    """

    def __init__(
        self,
        batch: int,
        height: int,
        width: int,
        *,
        generator: torch.Generator,
        network: DistilledGenerator,
        clip: float,
        norm_penalty: float,
    ) -> None:
        super().__init__(
            batch,
            height,
            width,
            generator=generator,
            network=network,
            latent_shape=(network.config.latent_size,),
            clip=clip,
            norm_penalty=norm_penalty,
            learning_rate=LEARNING_RATE,
        )
        mean = network.code_of(torch.arange(network.config.num_classes, device=_device_of(network)))
        self.class_vector = nn.Parameter(mean.vector.mean(dim=0).expand(batch, -1).clone().float())
        self.class_template = (
            nn.Parameter(mean.template.mean(dim=0).expand(batch, -1).clone().float())
            if mean.template is not None
            else None
        )

    @property
    def network(self) -> DistilledGenerator:
        network = super().network
        assert isinstance(network, DistilledGenerator)
        return network

    @torch.no_grad()
    def start_at_classes(self, classes: Sequence[int | None]) -> None:
        network = self.network
        for image, label in enumerate(classes):
            if label is None or not 0 <= label < network.config.num_classes:
                continue
            code = network.code_of(torch.tensor([label], device=_device_of(network)))
            self.class_vector[image] = code.vector[0].to(self.class_vector)
            if self.class_template is not None and code.template is not None:
                self.class_template[image] = code.template[0].to(self.class_template)

    def draw(self) -> Tensor:
        network = self.network
        dtype = next(network.parameters()).dtype
        template = self.class_template.to(dtype) if self.class_template is not None else None
        images = network(self.latent.to(dtype), ClassCode(self.class_vector.to(dtype), template))
        return images * 2 - 1


def _device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


@register_prior(
    PriorInfo(
        name="distilled_imagenet",
        kind=PriorKind.LEARNED,
        description="latent z and class code of a class-conditional ImageNet generator that priorviz trained from "
        "EfficientNet-Lite0 alone (128x128, resized bilinearly)",
        output_size=GeneratorConfig().output_side,
        latent_shape=(GeneratorConfig().latent_size,),
        licence=LICENCE,
        options=(
            Option(
                "clip",
                float,
                DEFAULT_CLIP,
                "each z component is clipped to [-clip, clip] after every step",
                minimum=0.1,
                maximum=10.0,
            ),
            Option(
                "norm_penalty",
                float,
                DEFAULT_NORM_PENALTY,
                "weight of the penalty on a z norm beyond its Gaussian shell",
                minimum=0.0,
                maximum=1000.0,
            ),
        ),
        default_steps=DEFAULT_STEPS,
        default_image_size=GeneratorConfig().output_side,
        default_learning_rate=LEARNING_RATE,
    ),
    available=distilled_weights_available,
)
def build_distilled_imagenet(
    batch: int,
    height: int,
    width: int,
    *,
    generator: torch.Generator,
    device: torch.device,
    clip: float,
    norm_penalty: float,
) -> DistilledLatentImage:
    network = load_distilled_generator(device)
    image = DistilledLatentImage(
        batch, height, width, generator=generator, network=network, clip=clip, norm_penalty=norm_penalty
    )
    return image.to(device)
