"""TargetModel: a classifier wrapped with what feature visualization needs to know about it."""

from __future__ import annotations

import copy
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from priorviz.errors import NotFoundError, clip_text
from priorviz_objectives import LOGITS

INPUT_SUFFIX = "/input"
"""Suffix on a module name that asks for the module's input instead of its output."""


@dataclass(frozen=True)
class LayerInfo:
    """One visualizable layer: its name, channel count and spatial size at the model's input size."""

    name: str
    channels: int
    height: int
    width: int


class UnknownLayerError(NotFoundError, KeyError):
    """A layer name that the target model does not have."""

    def __init__(self, model: str, layer: str, known: Sequence[str]) -> None:
        self.model, self.layer = model, layer
        hint = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
        super().__init__(f"model {model!r} has no layer {clip_text(layer)!r} (layers: {hint})")


class _StopForward(Exception):
    """Raised by a capture hook once every requested activation is in hand."""


@dataclass(frozen=True)
class Normalization:
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class TargetModel:
    """A frozen classifier plus its input size, normalization, class names and layer listing.

    ``activations`` runs the network only as far as the deepest requested layer and
    removes its hooks before returning, whatever happens.
    """

    def __init__(
        self,
        name: str,
        module: nn.Module,
        *,
        input_size: int,
        normalization: Normalization,
        class_names: Sequence[str],
        layer_names: Sequence[str],
        description: str = "",
        folded_module: nn.Module | None = None,
    ) -> None:
        """``folded_module``, when given, is the same network with its batch norms folded into
        the convolutions: it runs the requests that read only listed layers, faster."""
        self.name = name
        self.module = _frozen(module)
        self.folded_module = _frozen(folded_module) if folded_module is not None else None
        self.input_size = input_size
        self.normalization = normalization
        self.class_names = tuple(class_names)
        self.description = description
        self._modules = dict(self.module.named_modules())
        self._folded_modules = dict(self.folded_module.named_modules()) if self.folded_module is not None else {}
        self._listed = frozenset(layer_names)
        parameter = next(self.module.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype
        self._mean = torch.tensor(normalization.mean, device=self.device, dtype=self.dtype).view(1, 3, 1, 1)
        self._std = torch.tensor(normalization.std, device=self.device, dtype=self.dtype).view(1, 3, 1, 1)
        self.layers = self._describe_layers(layer_names)
        self._layer_index = {layer.name: layer for layer in self.layers}

    def __repr__(self) -> str:
        return f"TargetModel({self.name!r}, input_size={self.input_size}, device={self.device}, dtype={self.dtype})"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def normalize(self, images: Tensor) -> Tensor:
        """Map images in [0, 1] to the network's input range."""
        return (images - self._mean) / self._std

    def layer(self, name: str) -> LayerInfo:
        """The listed layer called ``name``; raises UnknownLayerError with the known names."""
        try:
            return self._layer_index[name]
        except KeyError:
            raise UnknownLayerError(self.name, name, [layer.name for layer in self.layers]) from None

    def has_module(self, name: str) -> bool:
        """Whether ``name`` (optionally with the ``/input`` suffix) names a module of the network."""
        return name == LOGITS or name.removesuffix(INPUT_SUFFIX) in self._modules

    def check_module(self, name: str) -> None:
        if not self.has_module(name):
            raise UnknownLayerError(self.name, name, [layer.name for layer in self.layers])

    def activations(self, images: Tensor, names: Collection[str]) -> dict[str, Tensor]:
        """Run ``images`` (in [0, 1]) through the network and return the named activations.

        ``names`` holds module names, ``name/input`` for a module's input, and ``logits``.
        Without ``logits`` the forward pass stops as soon as the last requested module ran.
        """
        wanted = set(names)
        for name in wanted:
            self.check_module(name)
        captured: dict[str, Tensor] = {}
        module_names = {name for name in wanted if name != LOGITS}
        stop_early = LOGITS not in wanted

        def hook_for(name: str, capture_input: bool):
            key = name + INPUT_SUFFIX if capture_input else name

            def hook(_module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
                captured[key] = inputs[0] if capture_input else output
                if stop_early and module_names.issubset(captured):
                    raise _StopForward

            return hook

        # Listed layers are block outputs, which folding batch norm leaves unchanged.
        use_folded = self.folded_module is not None and module_names <= self._listed
        network, modules = (self.folded_module, self._folded_modules) if use_folded else (self.module, self._modules)
        assert network is not None  # use_folded implies a folded module
        handles = []
        try:
            for name in module_names:
                base = name.removesuffix(INPUT_SUFFIX)
                handles.append(modules[base].register_forward_hook(hook_for(base, name.endswith(INPUT_SUFFIX))))
            try:
                logits = network(self.normalize(images).contiguous(memory_format=torch.channels_last))
                if not stop_early:
                    captured[LOGITS] = logits
            except _StopForward:
                pass
        finally:
            for handle in handles:
                handle.remove()
        return captured

    def hook_count(self) -> int:
        """Forward hooks currently registered anywhere in the network (0 between jobs)."""
        modules = [*self._modules.values(), *self._folded_modules.values()]
        return sum(len(module._forward_hooks) + len(module._forward_pre_hooks) for module in modules)

    def replicate(self, device: torch.device | None = None, dtype: torch.dtype | None = None) -> TargetModel:
        """An independent copy (optionally moved), so that two jobs never share module hooks.

        Hooks that a job running on this model holds right now are not copied.
        """
        device, dtype = device or self.device, dtype or self.dtype
        return TargetModel(
            self.name,
            _copied(self.module, device, dtype),
            input_size=self.input_size,
            normalization=self.normalization,
            class_names=self.class_names,
            layer_names=[layer.name for layer in self.layers],
            description=self.description,
            folded_module=_copied(self.folded_module, device, dtype) if self.folded_module is not None else None,
        )

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        """Class probabilities for images in [0, 1], shape (batch, classes)."""
        images = images.to(self.device, self.dtype)
        return self.activations(images, [LOGITS])[LOGITS].float().softmax(dim=1)

    @torch.no_grad()
    def _describe_layers(self, layer_names: Sequence[str]) -> tuple[LayerInfo, ...]:
        probe = torch.full((1, 3, self.input_size, self.input_size), 0.5, device=self.device, dtype=self.dtype)
        found = self.activations(probe, [name for name in layer_names if name != LOGITS] + [LOGITS])
        layers = []
        for name in layer_names:
            act = found[name]
            if act.dim() == 4:
                layers.append(LayerInfo(name, act.shape[1], act.shape[2], act.shape[3]))
            else:
                layers.append(LayerInfo(name, act.shape[1], 1, 1))
        return tuple(layers)


def _frozen(module: nn.Module) -> nn.Module:
    # Channels-last lets oneDNN run the convolutions (depthwise ones above all) without
    # layout conversions: about 10-20% off a forward+backward step of Lite0 on the CPU.
    return module.eval().requires_grad_(False).to(memory_format=torch.channels_last)


def _copied(module: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """A deep copy on ``device`` in ``dtype``, without the hooks a running job may hold on the original."""
    module = copy.deepcopy(module)
    for submodule in module.modules():
        submodule._forward_hooks.clear()
        submodule._forward_pre_hooks.clear()
    return module.to(device=device, dtype=dtype)
