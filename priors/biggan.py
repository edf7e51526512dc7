"""BigGAN-deep as a prior: optimize the truncated-normal z and the class vector of an ImageNet generator.

The folder is the pytorch-pretrained-biggan layout (``config.json`` + ``pytorch_model.bin``, as
for biggan-deep-128/256/512). The generator below is that package's architecture (Apache-2.0,
https://github.com/huggingface/pytorch-pretrained-BigGAN, ``model.py``), kept module for module
so the saved state dict's keys match. It is rebuilt here rather than imported because the
package's ``model`` module imports ``boto3`` and ``requests`` for its download helper at import
time, which a server that never downloads should not need. Its ``from_pretrained`` loads with
``strict=False``; here a missing or unexpected key makes the folder unusable, with the keys named.

The latent is z (``z_dim`` numbers, drawn from a normal truncated to [-2, 2] and scaled by the
truncation, as the package's ``truncated_noise_sample`` does) and the class vector. An image
whose objective is a class is drawn from that class's one-hot vector; any other image optimizes
the class vector as a softmax over the ``num_classes`` logits, starting at a random class.
"""

from __future__ import annotations

import json
import math
import pickle
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import spectral_norm

from priors.base import PriorNotFoundError
from priors.frozen_models import FrozenModels
from priors.latent import LatentImage
from priors.options import Option

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "pytorch_model.bin"
CONFIG_KEYS = frozenset({"output_dim", "z_dim", "class_embed_dim", "channel_width", "num_classes", "layers"})
"""Keys of a BigGAN config.json; ``auto`` detection recognises the layout by them."""
DEFAULT_TRUNCATION = 0.4
DEFAULT_NORM_PENALTY = 1.0
LEARNING_RATE = 0.05
CLASS_LOGIT_START = math.log(999.0)
"""The starting class's logit when the class is free: half the softmax mass on it, half spread over the rest."""
TRUNCATED_NORMAL_VARIANCE = 0.7737
"""Variance of a standard normal truncated to [-2, 2]: z's typical norm is sqrt(z_dim * this) * truncation."""
LICENCE = "check the weights' licence: DeepMind's BigGAN TF-Hub modules (Apache-2.0), trained on ImageNet"


class BigGanFolderError(PriorNotFoundError):
    """A BigGAN folder that is missing, incomplete or whose weights do not match its config."""

    def __init__(self, source: str | Path, reason: str) -> None:
        self.source = str(source)
        super().__init__(f"BigGAN folder {self.source!r}: {reason}")


def _snconv(
    in_channels: int, out_channels: int, kernel_size: int, eps: float, *, bias: bool = True, padding: int = 0
) -> nn.Module:
    return spectral_norm(nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, bias=bias), eps=eps)


def _snlinear(in_features: int, out_features: int, eps: float, *, bias: bool = True) -> nn.Module:
    return spectral_norm(nn.Linear(in_features, out_features, bias=bias), eps=eps)


class SelfAttn(nn.Module):
    """Self-attention over the feature map (SAGAN), with pooled keys and values."""

    def __init__(self, channels: int, eps: float) -> None:
        super().__init__()
        self.snconv1x1_theta = _snconv(channels, channels // 8, 1, eps, bias=False)
        self.snconv1x1_phi = _snconv(channels, channels // 8, 1, eps, bias=False)
        self.snconv1x1_g = _snconv(channels, channels // 2, 1, eps, bias=False)
        self.snconv1x1_o_conv = _snconv(channels // 2, channels, 1, eps, bias=False)
        self.maxpool = nn.MaxPool2d(2, stride=2, padding=0)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        _, channels, height, width = x.shape
        theta = self.snconv1x1_theta(x).view(-1, channels // 8, height * width)
        phi = self.maxpool(self.snconv1x1_phi(x)).view(-1, channels // 8, height * width // 4)
        attention = torch.softmax(torch.bmm(theta.permute(0, 2, 1), phi), dim=-1)
        g = self.maxpool(self.snconv1x1_g(x)).view(-1, channels // 2, height * width // 4)
        attended = torch.bmm(g, attention.permute(0, 2, 1)).view(-1, channels // 2, height, width)
        return x + self.gamma * self.snconv1x1_o_conv(attended)


class BigGANBatchNorm(nn.Module):
    """Batch norm with stored statistics per truncation (51 values in [0, 1]), class-conditional gain and bias."""

    running_means: Tensor
    running_vars: Tensor

    def __init__(
        self, num_features: int, condition_vector_dim: int | None, n_stats: int, eps: float, conditional: bool = True
    ) -> None:
        super().__init__()
        self.eps, self.conditional = eps, conditional
        self.register_buffer("running_means", torch.zeros(n_stats, num_features))
        self.register_buffer("running_vars", torch.ones(n_stats, num_features))
        self.step_size = 1.0 / (n_stats - 1)
        if conditional:
            assert condition_vector_dim is not None
            self.scale = _snlinear(condition_vector_dim, num_features, eps, bias=False)
            self.offset = _snlinear(condition_vector_dim, num_features, eps, bias=False)
        else:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: Tensor, truncation: float, condition_vector: Tensor | None = None) -> Tensor:
        # The package's interpolation between the two nearest stored truncations, kept as it is.
        coef, start = math.modf(truncation / self.step_size)
        index = int(start)
        if coef != 0.0:
            mean = self.running_means[index] * coef + self.running_means[index + 1] * (1 - coef)
            var = self.running_vars[index] * coef + self.running_vars[index + 1] * (1 - coef)
        else:
            mean, var = self.running_means[index], self.running_vars[index]
        if not self.conditional:
            return F.batch_norm(x, mean, var, self.weight, self.bias, training=False, momentum=0.0, eps=self.eps)
        weight = 1 + self.scale(condition_vector)[:, :, None, None]
        bias = self.offset(condition_vector)[:, :, None, None]
        return (x - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + self.eps) * weight + bias


class GenBlock(nn.Module):
    """BigGAN-deep's residual block: 1x1 down, two 3x3, 1x1 up, each after a conditional batch norm."""

    def __init__(
        self, in_size: int, out_size: int, condition_vector_dim: int, up_sample: bool, n_stats: int, eps: float
    ) -> None:
        super().__init__()
        self.up_sample, self.drop_channels = up_sample, in_size != out_size
        middle = in_size // 4
        self.bn_0 = BigGANBatchNorm(in_size, condition_vector_dim, n_stats, eps)
        self.conv_0 = _snconv(in_size, middle, 1, eps)
        self.bn_1 = BigGANBatchNorm(middle, condition_vector_dim, n_stats, eps)
        self.conv_1 = _snconv(middle, middle, 3, eps, padding=1)
        self.bn_2 = BigGANBatchNorm(middle, condition_vector_dim, n_stats, eps)
        self.conv_2 = _snconv(middle, middle, 3, eps, padding=1)
        self.bn_3 = BigGANBatchNorm(middle, condition_vector_dim, n_stats, eps)
        self.conv_3 = _snconv(middle, out_size, 1, eps)

    def forward(self, x: Tensor, condition: Tensor, truncation: float) -> Tensor:
        shortcut = x
        x = self.conv_0(F.relu(self.bn_0(x, truncation, condition)))
        x = F.relu(self.bn_1(x, truncation, condition))
        if self.up_sample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.conv_1(x)
        x = self.conv_2(F.relu(self.bn_2(x, truncation, condition)))
        x = self.conv_3(F.relu(self.bn_3(x, truncation, condition)))
        if self.drop_channels:
            shortcut = shortcut[:, : shortcut.shape[1] // 2]
        if self.up_sample:
            shortcut = F.interpolate(shortcut, scale_factor=2, mode="nearest")
        return x + shortcut


class Generator(nn.Module):
    def __init__(self, config: dict) -> None:
        super().__init__()
        width, eps, n_stats = config["channel_width"], config["eps"], config["n_stats"]
        condition_dim = config["z_dim"] * 2
        self.channel_width = width
        self.gen_z = _snlinear(condition_dim, 4 * 4 * 16 * width, eps)
        layers: list[nn.Module] = []
        for index, (up_sample, wide_in, wide_out) in enumerate(config["layers"]):
            if index == config["attention_layer_position"]:
                layers.append(SelfAttn(width * wide_in, eps))
            layers.append(GenBlock(width * wide_in, width * wide_out, condition_dim, bool(up_sample), n_stats, eps))
        self.layers = nn.ModuleList(layers)
        self.bn = BigGANBatchNorm(width, None, n_stats, eps, conditional=False)
        self.conv_to_rgb = _snconv(width, width, 3, eps, padding=1)

    def forward(self, condition: Tensor, truncation: float) -> Tensor:
        # The weights come from TensorFlow: the first map is laid out (batch, 4, 4, channels).
        x = self.gen_z(condition).view(-1, 4, 4, 16 * self.channel_width).permute(0, 3, 1, 2).contiguous()
        for layer in self.layers:
            x = layer(x, condition, truncation) if isinstance(layer, GenBlock) else layer(x)
        x = self.conv_to_rgb(F.relu(self.bn(x, truncation)))
        return torch.tanh(x[:, :3])


class BigGAN(nn.Module):
    """BigGAN-deep generator: (z, class vector, truncation) -> images in [-1, 1] at ``output_dim``."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        self.config = dict(config)
        self.embeddings = nn.Linear(config["num_classes"], config["z_dim"], bias=False)
        self.generator = Generator(config)

    def forward(self, z: Tensor, class_vector: Tensor, truncation: float) -> Tensor:
        if not 0 < truncation <= 1:
            raise ValueError(f"truncation must be in (0, 1], got {truncation}")
        return self.generator(torch.cat((z, self.embeddings(class_vector)), dim=1), truncation)


CONFIG_DEFAULTS: dict[str, object] = {"attention_layer_position": 8, "eps": 1e-4, "n_stats": 51}


def biggan_config(source: str | Path) -> dict:
    """The folder's config.json with the package's defaults filled in; raises BigGanFolderError."""
    path = Path(source) / CONFIG_FILE
    if not path.is_file():
        raise BigGanFolderError(source, f"no {CONFIG_FILE}")
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise BigGanFolderError(source, f"unreadable {CONFIG_FILE} ({error})") from None
    missing = sorted(CONFIG_KEYS - set(config)) if isinstance(config, dict) else sorted(CONFIG_KEYS)
    if missing:
        raise BigGanFolderError(source, f"{CONFIG_FILE} is not a BigGAN config (no {', '.join(missing)})")
    return {**CONFIG_DEFAULTS, **config}


_generators: FrozenModels[BigGAN] = FrozenModels()


def load_biggan(source: str | Path, device: torch.device | str = "cpu") -> BigGAN:
    """The frozen generator in ``source``, its weights loaded strictly; loaded once per device and shared."""
    location = str(Path(source).resolve())

    def load() -> BigGAN:
        config = biggan_config(source)
        weights = Path(location) / WEIGHTS_FILE
        if not weights.is_file():
            raise BigGanFolderError(source, f"no {WEIGHTS_FILE}")
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as error:
            raise BigGanFolderError(source, f"unreadable {WEIGHTS_FILE} ({error})") from None
        model = BigGAN(config)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise BigGanFolderError(source, f"{WEIGHTS_FILE} does not match {CONFIG_FILE}: {error}") from None
        return model

    return _generators.get((location, str(torch.device(device))), load, device)


class BigGanLatentImage(LatentImage):
    """Images drawn by a frozen BigGAN from a trainable z and class logits (or a fixed class)."""

    fixed_class: Tensor
    class_is_fixed: Tensor

    def __init__(
        self,
        batch: int,
        height: int,
        width: int,
        *,
        generator: torch.Generator,
        network: BigGAN,
        truncation: float = DEFAULT_TRUNCATION,
        norm_penalty: float = DEFAULT_NORM_PENALTY,
    ) -> None:
        if not 0 < truncation <= 1:
            raise ValueError(f"truncation must be in (0, 1], got {truncation}")
        z_dim, classes = int(network.config["z_dim"]), int(network.config["num_classes"])
        super().__init__(
            batch,
            height,
            width,
            generator=generator,
            network=network,
            latent_shape=(z_dim,),
            clip=2.0 * truncation,
            norm_penalty=norm_penalty,
            learning_rate=LEARNING_RATE,
        )
        self.truncation = float(truncation)
        self.typical_norm = math.sqrt(z_dim * TRUNCATED_NORMAL_VARIANCE) * truncation
        with torch.no_grad():
            self.latent.copy_(_truncated_normal((batch, z_dim), generator) * truncation)
        start = torch.randint(classes, (batch,), generator=generator)
        self.class_logits = nn.Parameter(F.one_hot(start, classes).float() * CLASS_LOGIT_START)
        self.register_buffer("fixed_class", torch.zeros(batch, classes))
        self.register_buffer("class_is_fixed", torch.zeros(batch, 1, dtype=torch.bool))

    def start_at_classes(self, classes: Sequence[int | None]) -> None:
        """Images whose objective is a class are drawn from that class's one-hot vector, which stays fixed."""
        count = self.fixed_class.shape[1]
        for index, target in enumerate(classes):
            if target is None:
                continue
            if not 0 <= target < count:
                raise ValueError(f"class {target} is outside this BigGAN's {count} classes")
            self.fixed_class[index].zero_()
            self.fixed_class[index, target] = 1.0
            self.class_is_fixed[index] = True

    def class_vectors(self) -> Tensor:
        return torch.where(self.class_is_fixed, self.fixed_class, torch.softmax(self.class_logits, dim=1))

    def draw(self) -> Tensor:
        return self.network(self.latent, self.class_vectors(), self.truncation)


def _truncated_normal(shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """Standard normal samples redrawn until inside [-2, 2] (what scipy's truncnorm(-2, 2) draws)."""
    values = torch.randn(shape, generator=generator)
    outside = values.abs() > 2
    while outside.any():
        values[outside] = torch.randn(int(outside.sum()), generator=generator)
        outside = values.abs() > 2
    return values


BIGGAN_OPTIONS = (
    Option(
        "truncation",
        float,
        DEFAULT_TRUNCATION,
        "truncation of z: lower draws more typical, less varied images; z is kept within [-2, 2] times it",
        minimum=0.02,
        maximum=1.0,
    ),
    Option(
        "norm_penalty",
        float,
        DEFAULT_NORM_PENALTY,
        "weight of the penalty on a z norm beyond its typical shell",
        minimum=0.0,
        maximum=1000.0,
    ),
)


def build_biggan_prior(
    source: str | Path,
    batch: int,
    height: int,
    width: int,
    *,
    generator: torch.Generator,
    device: torch.device,
    truncation: float = DEFAULT_TRUNCATION,
    norm_penalty: float = DEFAULT_NORM_PENALTY,
) -> BigGanLatentImage:
    image = BigGanLatentImage(
        batch,
        height,
        width,
        generator=generator,
        network=load_biggan(source, device),
        truncation=truncation,
        norm_penalty=norm_penalty,
    )
    return image.to(device)
