"""The diffusion prior: a diffusers UNet2DModel sampled with DDIM, guided by the objective's gradient.

At every render step the UNet predicts the clean image x0 from the current noisy sample, the
classifier sees x0, the render loop back-propagates the loss to x0, and ``update()`` moves
x0 down the gradient and steps the sample with diffusers' ``DDIMScheduler.step`` (eta = 0),
as ``priors.guided_ddim`` describes: the scheduler built from the model's saved config (any
diffusers scheduler's betas, turned into a DDIM schedule) clips or thresholds x0 as that
config says, and the guidance enters the step as the sample whose clean part is the guided x0.

The render loop's steps are spread over the ``sampling_steps`` of the DDIM schedule: with
more render steps than sampling steps, some steps repeat guidance at the same noise level
(t' = t); with fewer, one render step takes several DDIM steps from the same guided x0. After
the last render step the sample has reached t = 0, and ``forward()`` returns that final sample.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from priors.base import Parameterization
from priors.diffusers_loading import DiffusersModelError, load_diffusers_config, load_diffusers_model, resolve_source
from priors.guided_ddim import MAX_SAMPLING_STEPS, GuidedDdim
from priors.options import Option

DEFAULT_SAMPLING_STEPS = 50
DEFAULT_GUIDANCE_SCALE = 0.5
RANDOM_CLASS = -1
PIPELINE_SUBFOLDERS = ("unet",)
SCHEDULER_SUBFOLDER = "scheduler"
SCHEDULER_FILE = "scheduler_config.json"


def unet_class() -> type[nn.Module]:
    from diffusers import UNet2DModel

    return UNet2DModel


def load_scheduler_config(source: str | Path, *, allow_download: bool = False) -> dict[str, Any]:
    """The noise schedule's config saved beside the UNet (pipeline layout or flat); raises DiffusersModelError."""
    from diffusers import DDIMScheduler

    location, unet_subfolder = resolve_source(source, "UNet2DModel", PIPELINE_SUBFOLDERS, allow_download=allow_download)
    local = Path(location)
    if not local.is_dir():
        try:
            return dict(
                DDIMScheduler.load_config(location, subfolder=SCHEDULER_SUBFOLDER, local_files_only=not allow_download)
            )
        except (OSError, ValueError) as error:
            raise DiffusersModelError(source, f"no scheduler config found ({error})") from error
    candidates = [local / SCHEDULER_SUBFOLDER / SCHEDULER_FILE, local / SCHEDULER_FILE]
    if unet_subfolder:
        candidates.append(local / unet_subfolder / SCHEDULER_FILE)
    for candidate in candidates:
        if candidate.is_file():
            try:
                config = json.loads(candidate.read_text())
            except (OSError, ValueError) as error:
                raise DiffusersModelError(candidate, f"unreadable scheduler config ({error})") from None
            if not isinstance(config, dict):
                raise DiffusersModelError(candidate, "the scheduler config is not a JSON object")
            if config.get("_class_name") == "CMStochasticIterativeScheduler":
                raise DiffusersModelError(location, "is a consistency model: register it as kind consistency")
            return config
    raise DiffusersModelError(
        location, f"no {SCHEDULER_FILE} in {SCHEDULER_SUBFOLDER}/ or beside the UNet: the noise schedule is unknown"
    )


def check_unet_config(source: str | Path, config: dict[str, object]) -> None:
    """Only pixel-space UNets, unconditional or with a class-label table, can be guided here; say so before loading."""
    if config.get("class_embed_type"):
        raise DiffusersModelError(
            source,
            f"conditions on class_embed_type {config.get('class_embed_type')!r}; only integer class labels "
            "(num_class_embeds) are supported",
        )
    if config.get("in_channels", 3) != 3:
        raise DiffusersModelError(
            source, f"has {config.get('in_channels')} input channels; only pixel-space (RGB) UNets are supported"
        )


def class_count(config: dict[str, object]) -> int:
    """How many class labels a class-conditional UNet takes; 0 for an unconditional one."""
    return int(config.get("num_class_embeds") or 0)  # type: ignore[call-overload]


def native_side(config: dict[str, object]) -> int:
    size = config.get("sample_size") or 64
    return int(size[0] if isinstance(size, list | tuple) else size)  # type: ignore[arg-type]


class GuidedDiffusionImage(Parameterization):
    """A DDIM sample whose trajectory is steered by the objective's gradient on the predicted clean image."""

    owns_update = True
    noisy: Tensor
    labels: Tensor

    def __init__(
        self,
        batch: int,
        height: int,
        width: int,
        *,
        generator: torch.Generator,
        unet: Any,
        scheduler_config: Mapping[str, Any],
        sampling_steps: int = DEFAULT_SAMPLING_STEPS,
        guidance_scale: float = DEFAULT_GUIDANCE_SCALE,
        class_label: int = RANDOM_CLASS,
    ) -> None:
        super().__init__(batch, height, width)
        self.ddim = GuidedDdim(scheduler_config, sampling_steps, guidance_scale)
        self._frozen = (unet,)  # shared between jobs: not a submodule, so train()/to() never touch it
        config = dict(unet.config)
        side = native_side(config)
        self.register_buffer("noisy", torch.randn((batch, 3, side, side), generator=generator))
        self.classes = class_count(config)
        if class_label >= max(self.classes, 1) or (class_label != RANDOM_CLASS and not self.classes):
            raise ValueError(f"class_label {class_label} is not a label of this UNet ({self.classes} classes)")
        if class_label == RANDOM_CLASS:
            labels = torch.randint(max(self.classes, 1), (batch,), generator=generator)
        else:
            labels = torch.full((batch,), class_label)
        self.register_buffer("labels", labels)
        """The class each image is sampled as (a class-conditional UNet only)."""
        self.position = 0
        """Index into the DDIM levels of the current noise level; ``len(self.ddim)`` once sampling is done."""
        self._raw: Tensor | None = None
        self._clean: Tensor | None = None

    @property
    def unet(self) -> Any:
        return self._frozen[0]

    def start_at_classes(self, classes: Sequence[int | None]) -> None:
        """A class-conditional UNet samples each image as its objective's class (others keep their label)."""
        if not self.classes:
            return
        for index, target in enumerate(classes):
            if target is None:
                continue
            if not 0 <= target < self.classes:
                raise ValueError(f"class {target} is not a label of this UNet ({self.classes} classes)")
            self.labels[index] = target

    @property
    def finished(self) -> bool:
        return self.position >= len(self.ddim)

    @torch.no_grad()
    def _estimates(self) -> tuple[Tensor, Tensor]:
        """The scheduler's clean-image estimates at the current level, before and after its clipping."""
        timestep = torch.full(
            (self.batch,), self.ddim.timesteps[self.position], device=self.noisy.device, dtype=torch.long
        )
        labels = self.labels if self.classes else None
        output = self.unet(self.noisy.to(self.unet.dtype), timestep, class_labels=labels).sample.float()[:, :3]
        return self.ddim.estimates(output, self.position, self.noisy)

    def forward(self) -> Tensor:
        if self.finished:
            clean = self.noisy
        else:
            self._raw, estimate = self._estimates()
            self._clean = estimate.requires_grad_(True)
            clean = self._clean
        images = (clean + 1.0) / 2.0
        if images.shape[-2:] != (self.height, self.width):
            images = F.interpolate(images, size=(self.height, self.width), mode="bilinear", align_corners=False)
        return images.clamp(0.0, 1.0)

    @torch.no_grad()
    def update(self, step: int, total_steps: int) -> None:
        if self.finished or self._clean is None or self._raw is None:
            raise RuntimeError("update() needs a forward() and backward() at a noise level that is not the last")
        guided = self.ddim.guide(self._clean.detach(), self._clean.grad, self.position)
        levels = len(self.ddim)
        target = max(self.position, min(levels, step * levels // total_steps))
        self.noisy = self.ddim.advance(self.noisy, self._raw, guided, self.position, target)
        self.position = target
        self._clean = self._raw = None


CLASS_LABEL_OPTION = Option(
    "class_label",
    int,
    RANDOM_CLASS,
    "label a class-conditional UNet samples when the objective is not a class (-1: a random label per image)",
    minimum=-1,
    maximum=1_000_000,
)
"""Offered only by class-conditional UNets."""

DIFFUSION_OPTIONS = (
    Option(
        "sampling_steps",
        int,
        DEFAULT_SAMPLING_STEPS,
        "DDIM steps from noise to image (at most the scheduler's training steps)",
        minimum=1,
        maximum=MAX_SAMPLING_STEPS,
    ),
    Option(
        "guidance_scale",
        float,
        DEFAULT_GUIDANCE_SCALE,
        "strength of the objective's pull on the predicted clean image",
        minimum=0.0,
        maximum=1000.0,
    ),
)


def unet_config(source: str | Path, *, allow_download: bool = False) -> dict[str, object]:
    """The UNet's config, read without loading weights; raises DiffusersModelError."""
    config = load_diffusers_config(unet_class(), source, subfolders=PIPELINE_SUBFOLDERS, allow_download=allow_download)
    check_unet_config(source, config)
    return config


def build_diffusion_prior(
    source: str | Path,
    batch: int,
    height: int,
    width: int,
    *,
    generator: torch.Generator,
    device: torch.device,
    allow_download: bool = False,
    sampling_steps: int = DEFAULT_SAMPLING_STEPS,
    guidance_scale: float = DEFAULT_GUIDANCE_SCALE,
    class_label: int = RANDOM_CLASS,
) -> GuidedDiffusionImage:
    """A guided-sampling prior on the UNet (and its scheduler config) at ``source``."""
    unet_config(source, allow_download=allow_download)
    scheduler_config = load_scheduler_config(source, allow_download=allow_download)
    unet = load_diffusers_model(
        unet_class(), source, subfolders=PIPELINE_SUBFOLDERS, device=device, allow_download=allow_download
    )
    image = GuidedDiffusionImage(
        batch,
        height,
        width,
        generator=generator,
        unet=unet,
        scheduler_config=scheduler_config,
        sampling_steps=sampling_steps,
        guidance_scale=guidance_scale,
        class_label=class_label,
    )
    return image.to(device)
