"""Consistency models as a prior: optimize the noise a one-step generator turns into an image.

A consistency model (Song et al. 2023; the layout of openai/diffusers-cd_imagenet64_l2: a
pipeline folder with ``unet/``, a ``UNet2DModel``, and ``scheduler/``, a
``CMStochasticIterativeScheduler``) maps pure noise at sigma_max to a clean image in one
network call, x0 = f(sigma_max * noise, class). That makes it a generator like a GAN's: the
noise is the latent, optimized through the network, and kept on its Gaussian shell. The
sampling step is diffusers' own (``scale_model_input`` and ``step``, one timestep).

A class-conditional model draws each image as its objective's class, else as the option
``class_label`` (a random class per image by default); the class is not optimized.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from priors.diffusers_loading import DiffusersModelError, load_diffusers_config, load_diffusers_model, resolve_source
from priors.diffusion import CLASS_LABEL_OPTION, RANDOM_CLASS, check_unet_config, class_count, native_side, unet_class
from priors.latent import LatentImage
from priors.options import Option

SCHEDULER_CLASS = "CMStochasticIterativeScheduler"
SUBFOLDERS = ("unet",)
DEFAULT_CLIP = 3.0
DEFAULT_NORM_PENALTY = 1.0
LEARNING_RATE = 0.05


def load_consistency_scheduler(source: str | Path) -> Any:
    """The folder's CMStochasticIterativeScheduler (``scheduler/`` of the pipeline); raises DiffusersModelError."""
    from diffusers import CMStochasticIterativeScheduler

    location, _ = resolve_source(source, "UNet2DModel", SUBFOLDERS)
    config_path = Path(location) / "scheduler" / "scheduler_config.json"
    if not config_path.is_file():
        raise DiffusersModelError(
            source, f"no scheduler/scheduler_config.json: a consistency model needs its {SCHEDULER_CLASS}"
        )
    config = CMStochasticIterativeScheduler.load_config(str(config_path.parent))
    if config.get("_class_name") != SCHEDULER_CLASS:
        raise DiffusersModelError(source, f"its scheduler is {config.get('_class_name')}, not {SCHEDULER_CLASS}")
    return CMStochasticIterativeScheduler.from_config(config)


class ConsistencyImage(LatentImage):
    """Images a frozen consistency model draws in one step from a trainable noise image."""

    labels: Tensor

    def __init__(
        self,
        batch: int,
        height: int,
        width: int,
        *,
        generator: torch.Generator,
        unet: Any,
        scheduler: Any,
        clip: float = DEFAULT_CLIP,
        norm_penalty: float = DEFAULT_NORM_PENALTY,
        class_label: int = RANDOM_CLASS,
    ) -> None:
        config = dict(unet.config)
        side = native_side(config)
        super().__init__(
            batch,
            height,
            width,
            generator=generator,
            network=unet,
            latent_shape=(int(config.get("in_channels", 3)), side, side),
            clip=clip,
            norm_penalty=norm_penalty,
            learning_rate=LEARNING_RATE,
        )
        self.scheduler = scheduler
        self.classes = class_count(config)
        if class_label != RANDOM_CLASS and not 0 <= class_label < self.classes:
            raise ValueError(f"class_label {class_label} is not a label of this model ({self.classes} classes)")
        if class_label == RANDOM_CLASS:
            labels = torch.randint(max(self.classes, 1), (batch,), generator=generator)
        else:
            labels = torch.full((batch,), class_label)
        self.register_buffer("labels", labels)

    def start_at_classes(self, classes: Sequence[int | None]) -> None:
        """A class-conditional model draws each image as its objective's class (others keep their label)."""
        if not self.classes:
            return
        for index, target in enumerate(classes):
            if target is None:
                continue
            if not 0 <= target < self.classes:
                raise ValueError(f"class {target} is not a label of this model ({self.classes} classes)")
            self.labels[index] = target

    def draw(self) -> Tensor:
        scheduler = self.scheduler
        scheduler.set_timesteps(1, device=self.latent.device)  # also rewinds the scheduler's step index
        timestep = scheduler.timesteps[0]
        sample = self.latent * scheduler.init_noise_sigma
        scaled = scheduler.scale_model_input(sample, timestep)
        labels = self.labels if self.classes else None
        output = self.network(scaled, timestep, class_labels=labels).sample
        return scheduler.step(output, timestep, sample).prev_sample


CONSISTENCY_OPTIONS = (
    Option(
        "clip",
        float,
        DEFAULT_CLIP,
        "each noise component is clipped to [-clip, clip] after every step",
        minimum=0.1,
        maximum=10.0,
    ),
    Option(
        "norm_penalty",
        float,
        DEFAULT_NORM_PENALTY,
        "weight of the penalty on a noise norm beyond the Gaussian shell",
        minimum=0.0,
        maximum=1000.0,
    ),
)


def consistency_config(source: str | Path) -> dict[str, object]:
    """The UNet's config, checked, and the scheduler's presence; raises DiffusersModelError."""
    config = load_diffusers_config(unet_class(), source, subfolders=SUBFOLDERS)
    check_unet_config(source, config)
    load_consistency_scheduler(source)
    return config


def consistency_options(config: dict[str, object]) -> tuple[Option, ...]:
    return (*CONSISTENCY_OPTIONS, CLASS_LABEL_OPTION) if class_count(config) else CONSISTENCY_OPTIONS


def build_consistency_prior(
    source: str | Path,
    batch: int,
    height: int,
    width: int,
    *,
    generator: torch.Generator,
    device: torch.device,
    clip: float = DEFAULT_CLIP,
    norm_penalty: float = DEFAULT_NORM_PENALTY,
    class_label: int = RANDOM_CLASS,
) -> ConsistencyImage:
    unet = load_diffusers_model(unet_class(), source, subfolders=SUBFOLDERS, device=device)
    image = ConsistencyImage(
        batch,
        height,
        width,
        generator=generator,
        unet=unet,
        scheduler=load_consistency_scheduler(source),
        clip=clip,
        norm_penalty=norm_penalty,
        class_label=class_label,
    )
    return image.to(device)
