"""The diffusion prior: a diffusers UNet2DModel sampled with DDIM, guided by the objective's gradient.

Energy guidance on the predicted clean image (as EGG does): at every render step the UNet
predicts the clean image x0 from the current noisy sample x_t, the classifier sees x0, and
the render loop back-propagates the loss to x0 (not through the UNet, which keeps a step
cheap). ``update()`` then moves x0 down the loss gradient, normalized per image,

    x0' = clip(x0 - guidance_scale * sqrt(1 - alpha_bar_t) * grad / rms(grad), -1, 1)

so guidance is strong while the sample is noisy and fades as it becomes clean, and takes
the deterministic DDIM step (eta = 0) to the next noise level with the model's own noise
estimate eps: x_t' = sqrt(alpha_bar_t') x0' + sqrt(1 - alpha_bar_t') eps.

The render loop's steps are spread over the ``sampling_steps`` of the DDIM schedule: with
more render steps than sampling steps, some steps repeat guidance at the same noise level
(t' = t); with fewer, DDIM jumps several levels at once. After the last render step the
sample has reached t = 0, and ``forward()`` returns that final sample. The noise schedule
comes from the model's saved scheduler config (any diffusers scheduler's betas), turned
into a DDIM schedule.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from priors.base import Parameterization
from priors.diffusers_loading import DiffusersModelError, load_diffusers_config, load_diffusers_model, resolve_source
from priors.options import Option

if TYPE_CHECKING:
    # diffusers ships no type information, so to mypy its classes are Any.
    from diffusers import UNet2DModel

DEFAULT_SAMPLING_STEPS = 50
DEFAULT_GUIDANCE_SCALE = 0.5
MAX_SAMPLING_STEPS = 1000
PIPELINE_SUBFOLDERS = ("unet",)
SCHEDULER_SUBFOLDER = "scheduler"
SCHEDULER_FILE = "scheduler_config.json"


def unet_class() -> type[UNet2DModel]:
    from diffusers import UNet2DModel

    return UNet2DModel


def load_ddim_scheduler(source: str | Path, *, allow_download: bool = False):
    """A DDIMScheduler built from the scheduler config saved beside the UNet (pipeline layout or flat)."""
    from diffusers import DDIMScheduler

    location, unet_subfolder = resolve_source(source, "UNet2DModel", PIPELINE_SUBFOLDERS, allow_download=allow_download)
    local = Path(location)
    if local.is_dir():
        candidates = [local / SCHEDULER_SUBFOLDER / SCHEDULER_FILE, local / SCHEDULER_FILE]
        if unet_subfolder:
            candidates.append(local / unet_subfolder / SCHEDULER_FILE)
        for candidate in candidates:
            if candidate.is_file():
                try:
                    config = json.loads(candidate.read_text())
                except (OSError, ValueError) as error:
                    raise DiffusersModelError(candidate, f"unreadable scheduler config ({error})") from None
                return DDIMScheduler.from_config(config)
        raise DiffusersModelError(
            location, f"no {SCHEDULER_FILE} in {SCHEDULER_SUBFOLDER}/ or beside the UNet: the noise schedule is unknown"
        )
    try:
        return DDIMScheduler.from_pretrained(
            location, subfolder=SCHEDULER_SUBFOLDER, local_files_only=not allow_download
        )
    except (OSError, ValueError) as error:
        raise DiffusersModelError(source, f"no scheduler config found ({error})") from error


def check_unet_config(source: str | Path, config: dict[str, Any]) -> None:
    """Only unconditional, pixel-space UNets can be guided here; say so before loading weights."""
    if config.get("num_class_embeds") or config.get("class_embed_type"):
        raise DiffusersModelError(source, "is a class-conditional UNet; only unconditional UNets are supported")
    if config.get("in_channels", 3) != 3:
        raise DiffusersModelError(
            source, f"has {config.get('in_channels')} input channels; only pixel-space (RGB) UNets are supported"
        )


def native_side(config: dict[str, Any]) -> int:
    size = config.get("sample_size") or 64
    return int(size[0] if isinstance(size, list | tuple) else size)


class GuidedDiffusionImage(Parameterization):
    """A DDIM sample whose trajectory is steered by the objective's gradient on the predicted clean image."""

    owns_update = True
    alpha_bars: Tensor
    noisy: Tensor

    def __init__(
        self,
        batch: int,
        height: int,
        width: int,
        *,
        generator: torch.Generator,
        unet: UNet2DModel,
        scheduler,
        sampling_steps: int = DEFAULT_SAMPLING_STEPS,
        guidance_scale: float = DEFAULT_GUIDANCE_SCALE,
    ) -> None:
        super().__init__(batch, height, width)
        if not 1 <= sampling_steps <= min(MAX_SAMPLING_STEPS, scheduler.config.num_train_timesteps):
            raise ValueError(
                f"sampling_steps must be within 1..{min(MAX_SAMPLING_STEPS, scheduler.config.num_train_timesteps)}, "
                f"got {sampling_steps}"
            )
        if not (math.isfinite(guidance_scale) and guidance_scale >= 0):
            raise ValueError(f"guidance_scale must be a non-negative number, got {guidance_scale}")
        self._frozen = (unet,)  # shared between jobs: not a submodule, so train()/to() never touch it
        self.guidance_scale = float(guidance_scale)
        self.prediction_type = scheduler.config.prediction_type
        self.clip_sample = bool(scheduler.config.clip_sample)
        scheduler.set_timesteps(sampling_steps)
        self.timesteps = [int(t) for t in scheduler.timesteps]
        alphas = scheduler.alphas_cumprod.double()
        levels = [float(alphas[t]) for t in self.timesteps] + [float(scheduler.final_alpha_cumprod)]
        self.register_buffer("alpha_bars", torch.tensor(levels, dtype=torch.float32), persistent=False)
        side = native_side(dict(unet.config))
        self.register_buffer("noisy", torch.randn((batch, 3, side, side), generator=generator))
        self.position = 0
        """Index into ``timesteps`` of the current noise level; ``len(timesteps)`` once sampling is done."""
        self._clean: Tensor | None = None
        self._noise: Tensor | None = None

    @property
    def unet(self) -> UNet2DModel:
        return self._frozen[0]

    @property
    def finished(self) -> bool:
        return self.position >= len(self.timesteps)

    @torch.no_grad()
    def _predict(self) -> tuple[Tensor, Tensor]:
        """The model's clean-image and noise estimates at the current level."""
        alpha_bar = self.alpha_bars[self.position]
        timestep = torch.full((self.batch,), self.timesteps[self.position], device=self.noisy.device, dtype=torch.long)
        output = self.unet(self.noisy.to(self.unet.dtype), timestep).sample.float()[:, :3]
        keep, drop = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
        if self.prediction_type == "epsilon":
            noise = output
            clean = (self.noisy - drop * noise) / keep
        elif self.prediction_type == "sample":
            clean = output
            noise = (self.noisy - keep * clean) / drop
        elif self.prediction_type == "v_prediction":
            clean = keep * self.noisy - drop * output
            noise = keep * output + drop * self.noisy
        else:
            raise ValueError(f"unsupported prediction_type {self.prediction_type!r}")
        if self.clip_sample:
            clean = clean.clamp(-1.0, 1.0)
        return clean, noise

    def forward(self) -> Tensor:
        if self.finished:
            clean = self.noisy
        else:
            estimate, self._noise = self._predict()
            self._clean = estimate.requires_grad_(True)
            clean = self._clean
        images = (clean + 1.0) / 2.0
        if images.shape[-2:] != (self.height, self.width):
            images = F.interpolate(images, size=(self.height, self.width), mode="bilinear", align_corners=False)
        return images.clamp(0.0, 1.0)

    @torch.no_grad()
    def update(self, step: int, total_steps: int) -> None:
        if self.finished or self._clean is None or self._noise is None:
            raise RuntimeError("update() needs a forward() and backward() at a noise level that is not the last")
        clean = self._clean.detach()
        gradient = self._clean.grad
        if gradient is not None and self.guidance_scale > 0:
            rms = gradient.flatten(1).pow(2).mean(dim=1).sqrt().clamp(min=1e-12).view(-1, 1, 1, 1)
            noise_level = (1 - self.alpha_bars[self.position]).sqrt()
            clean = clean - self.guidance_scale * noise_level * gradient / rms
        clean = clean.clamp(-1.0, 1.0)
        levels = len(self.timesteps)
        target = max(self.position, min(levels, step * levels // total_steps))
        alpha_next = self.alpha_bars[target]
        self.noisy = alpha_next.sqrt() * clean + (1 - alpha_next).sqrt() * self._noise
        self.position = target
        self._clean = self._noise = None


DIFFUSION_OPTIONS = (
    Option("sampling_steps", int, DEFAULT_SAMPLING_STEPS, "DDIM steps from noise to image (at most the scheduler's "
           "training steps)", minimum=1, maximum=MAX_SAMPLING_STEPS),
    Option("guidance_scale", float, DEFAULT_GUIDANCE_SCALE, "strength of the objective's pull on the predicted clean "
           "image", minimum=0.0, maximum=1000.0),
)


def unet_config(source: str | Path, *, allow_download: bool = False) -> dict[str, Any]:
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
) -> GuidedDiffusionImage:
    """A guided-sampling prior on the UNet (and its scheduler config) at ``source``."""
    unet_config(source, allow_download=allow_download)
    scheduler = load_ddim_scheduler(source, allow_download=allow_download)
    unet = load_diffusers_model(
        unet_class(), source, subfolders=PIPELINE_SUBFOLDERS, device=device, allow_download=allow_download
    )
    image = GuidedDiffusionImage(
        batch, height, width, generator=generator, unet=unet, scheduler=scheduler,
        sampling_steps=sampling_steps, guidance_scale=guidance_scale,
    )
    return image.to(device)
