"""The distilled ImageNet generator: a class-conditional generator trained from the classifier alone.

No ImageNet generator and no natural-image data can be had offline, but the embedded
EfficientNet-Lite0 carries ImageNet's statistics in its batch-norm layers. The project trains
this generator against Lite0 only (cross-entropy for the class, batch-level batch-norm
statistics, a diversity term and total variation; see ``priorviz.training.distill``), and ships
its weights in ``priors/weights/``.

Architecture, BigGAN-like and small enough for the CPU: the latent z (128 numbers) and a class
code (128 numbers) go through a linear layer to 4x4 features, then five blocks of nearest
upsampling, a 3x3 convolution and a class-conditional batch norm (its gain and bias are linear
in [z, class code]) to 128x128, then a 3x3 convolution to RGB and a sigmoid. The class codes
start from the principal components of the classifier's last-layer class weights, so that
classes the classifier finds alike start alike and what the generator learns for one class
carries over to its neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class GeneratorConfig:
    """The architecture's numbers; saved beside the weights so that a checkpoint rebuilds itself."""

    latent_size: int = 128
    class_code_size: int = 128
    num_classes: int = 1000
    widths: tuple[int, ...] = (256, 192, 128, 64, 32, 16)
    """Channels at 4, 8, 16, 32, 64 and 128 pixels."""

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
            UpBlock(wide, narrow, condition_size) for wide, narrow in zip(config.widths, config.widths[1:])
        )
        self.to_rgb = nn.Conv2d(config.widths[-1], 3, 3, padding=1)

    def code_of(self, labels: Tensor) -> Tensor:
        """The class codes of integer ``labels``: (batch, class_code_size)."""
        return self.class_codes(labels)

    def forward(self, latent: Tensor, class_code: Tensor) -> Tensor:
        condition = torch.cat([latent, class_code], dim=1)
        features = self.to_features(condition).view(latent.shape[0], self.config.widths[0], 4, 4)
        features = F.leaky_relu(self.first_norm(features, condition), 0.2)
        for block in self.blocks:
            features = block(features, condition)
        return torch.sigmoid(self.to_rgb(features))

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
        self.class_codes.weight.copy_(codes / codes.std(dim=0, keepdim=True).clamp(min=1e-8))
