"""EfficientNet-Lite rebuilt from its published facts, loading lukemelas-style state dicts.

The Lite variants drop squeeze-and-excitation and swish (ReLU6 instead), keep the stem
(32) and head (1280) fixed, and use TensorFlow "SAME" padding with batch-norm eps 1e-3.
Module names follow the layer names users type: ``stem``, ``blocks.N``, ``head``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BN_EPS = 1e-3

# (expand ratio, output channels, repeats, stride, kernel) for the seven stages.
STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 16, 1, 1, 3),
    (6, 24, 2, 2, 3),
    (6, 40, 2, 2, 5),
    (6, 80, 3, 2, 3),
    (6, 112, 3, 1, 5),
    (6, 192, 4, 2, 5),
    (6, 320, 1, 1, 3),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


@dataclass(frozen=True)
class LiteVariant:
    width: float
    depth: float
    resolution: int


VARIANTS: dict[str, LiteVariant] = {
    "lite0": LiteVariant(1.0, 1.0, 224),
    "lite1": LiteVariant(1.0, 1.1, 240),
    "lite2": LiteVariant(1.1, 1.2, 260),
    "lite3": LiteVariant(1.2, 1.4, 280),
    "lite4": LiteVariant(1.4, 1.8, 300),
}


def round_channels(channels: int, width: float, divisor: int = 8) -> int:
    """Scale a channel count by ``width`` and round to a multiple of ``divisor`` (TF rule)."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding computed for the actual input size.

    The padding depends on the input size, and jittered inputs change size every step.
    When it is the same on both sides (most stride-1 convolutions) the convolution pads by
    itself, which spares a padded copy of the input in the forward and backward passes.
    """

    def forward(self, x: Tensor) -> Tensor:
        if (
            self.kernel_size == (1, 1)
            and self.stride == (1, 1)
            and self.groups == 1
            and x.is_contiguous(memory_format=torch.channels_last)
        ):
            # On channels-last input a 1x1 convolution is one matrix product over the pixels.
            # PyTorch's CPU convolution takes its slower im2col path for these at batch 1.
            return F.linear(x.permute(0, 2, 3, 1), self.weight.flatten(1), self.bias).permute(0, 3, 1, 2)
        pads: list[int] = []
        for size, k, s, d in zip(
            reversed(x.shape[-2:]),
            reversed(self.kernel_size),
            reversed(self.stride),
            reversed(self.dilation),
            strict=True,
        ):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads += [total // 2, total - total // 2]
        left, right, top, bottom = pads
        if left == right and top == bottom:
            return F.conv2d(x, self.weight, self.bias, self.stride, (top, left), self.dilation, self.groups)
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _conv_bn(
    in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1
) -> tuple[SameConv2d, nn.BatchNorm2d]:
    conv = SameConv2d(in_ch, out_ch, kernel, stride=stride, groups=groups, bias=False)
    return conv, nn.BatchNorm2d(out_ch, eps=BN_EPS)


class MBConvBlock(nn.Module):
    """Inverted residual block without squeeze-excitation (the Lite form)."""

    def __init__(self, in_ch: int, out_ch: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        hidden = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self.expand_conv, self.bn0 = _conv_bn(in_ch, hidden, 1)
        self.depthwise_conv, self.bn1 = _conv_bn(hidden, hidden, kernel, stride, groups=hidden)
        self.project_conv, self.bn2 = _conv_bn(hidden, out_ch, 1)
        self.use_skip = stride == 1 and in_ch == out_ch

    def forward(self, x: Tensor) -> Tensor:
        h = x
        if self.has_expand:
            h = F.relu6(self.bn0(self.expand_conv(h)))
        h = F.relu6(self.bn1(self.depthwise_conv(h)))
        h = self.bn2(self.project_conv(h))
        return h + x if self.use_skip else h


class Stem(nn.Sequential):
    def __init__(self) -> None:
        conv, bn = _conv_bn(3, STEM_CHANNELS, 3, stride=2)
        super().__init__(conv, bn, nn.ReLU6())


class Head(nn.Sequential):
    def __init__(self, in_ch: int) -> None:
        conv, bn = _conv_bn(in_ch, HEAD_CHANNELS, 1)
        super().__init__(conv, bn, nn.ReLU6())


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite classifier; expects input scaled to [-1, 1]."""

    def __init__(self, variant: LiteVariant, num_classes: int = 1000) -> None:
        super().__init__()
        self.variant = variant
        self.stem = Stem()
        blocks: list[nn.Module] = []
        in_ch = STEM_CHANNELS
        last_stage = len(STAGES) - 1
        for index, (expand, channels, repeats, stride, kernel) in enumerate(STAGES):
            out_ch = round_channels(channels, variant.width)
            # Lite keeps the first and last stage at one block whatever the depth multiplier.
            count = repeats if index in (0, last_stage) else math.ceil(repeats * variant.depth)
            for r in range(count):
                blocks.append(MBConvBlock(in_ch, out_ch, expand, kernel, stride if r == 0 else 1))
                in_ch = out_ch
        self.blocks = nn.ModuleList(blocks)
        self.head = Head(in_ch)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(HEAD_CHANNELS, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        x = self.pool(self.head(x)).flatten(1)
        return self.classifier(x)


def convert_lukemelas_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename lukemelas ``efficientnet_pytorch`` keys to this module's names."""
    renames = {
        "_conv_stem.": "stem.0.",
        "_bn0.": "stem.1.",
        "_conv_head.": "head.0.",
        "_bn1.": "head.1.",
        "_fc.": "classifier.",
    }
    block_parts = {
        "_expand_conv": "expand_conv",
        "_bn0": "bn0",
        "_depthwise_conv": "depthwise_conv",
        "_bn1": "bn1",
        "_project_conv": "project_conv",
        "_bn2": "bn2",
    }
    converted: dict[str, Tensor] = {}
    for key, value in state.items():
        if key.startswith("_blocks."):
            _, index, part, rest = key.split(".", 3)
            if part not in block_parts:
                raise KeyError(f"unexpected block parameter {key!r} in EfficientNet-Lite state dict")
            converted[f"blocks.{index}.{block_parts[part]}.{rest}"] = value
            continue
        for old, new in renames.items():
            if key.startswith(old):
                converted[new + key[len(old) :]] = value
                break
        else:
            raise KeyError(f"unexpected parameter {key!r} in EfficientNet-Lite state dict")
    return converted


def load_efficientnet_lite(variant_name: str, weights_path: str) -> EfficientNetLite:
    """Build the named variant and load a lukemelas-style ``.pth`` file into it."""
    model = EfficientNetLite(VARIANTS[variant_name])
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    model.load_state_dict(convert_lukemelas_state_dict(state), strict=True)
    return model.eval()


def _fold_pair(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Scale ``conv``'s filters and add a bias so that it computes ``bn(conv(x))`` by itself."""
    assert bn.running_var is not None and bn.running_mean is not None, "only trained batch norms fold"
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    conv.weight = nn.Parameter(conv.weight * scale.view(-1, 1, 1, 1), requires_grad=False)
    conv.bias = nn.Parameter(bias, requires_grad=False)


@torch.no_grad()
def fold_batchnorm(model: EfficientNetLite) -> EfficientNetLite:
    """A copy whose convolutions absorb the frozen batch norms that follow them.

    Every block's output (``stem``, ``blocks.N``, ``head``, the logits) is unchanged up to
    float rounding, and a step needs one pass over each feature map fewer. The batch-norm
    modules stay in place as identities, so hooks on them see the same (normalized) values;
    the convolutions' own outputs and the batch norms' inputs differ, which is why the
    statistics prior runs on the unfolded model.
    """
    folded = copy.deepcopy(model).eval()
    pairs: list[tuple[nn.Module, str, str]] = [(folded.stem, "0", "1"), (folded.head, "0", "1")]
    for block in folded.blocks:
        assert isinstance(block, MBConvBlock)
        if block.has_expand:
            pairs.append((block, "expand_conv", "bn0"))
        pairs += [(block, "depthwise_conv", "bn1"), (block, "project_conv", "bn2")]
    for parent, conv_name, bn_name in pairs:
        conv, bn = parent.get_submodule(conv_name), parent.get_submodule(bn_name)
        assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
        _fold_pair(conv, bn)
        # A Sequential's children are named "0", "1", ...: setattr replaces one as indexing would.
        setattr(parent, bn_name, nn.Identity())
    return folded
