"""Latent diffusion as a prior: DDIM sampling in an autoencoder's latent, guided by the objective on the decoded image.

The folder is a diffusers pipeline: a denoiser (``unet/``, a ``UNet2DModel``, or
``transformer/``, a ``DiTTransformer2DModel`` as in facebook/DiT-XL-2-256), an autoencoder
(``vae/``, an ``AutoencoderKL``, or ``vqvae/``, a ``VQModel`` as in the CompVis LDMs) and
``scheduler/``. Sampling runs in the latent with diffusers' ``DDIMScheduler`` built from the
saved scheduler config; guidance acts on the decoded image. At every render step the
denoiser predicts the clean latent (the scheduler's estimate, clipped or thresholded as its
config says), the decoder draws it, the classifier sees the drawing and the loop
back-propagates through the decoder to the clean latent; ``update()`` moves the clean latent
down the gradient and takes ``DDIMScheduler.step`` from it, as ``priors.guided_ddim`` describes
(shared with the pixel prior, ``priors.diffusion``).

One render step is one sampling step: after ``sampling_steps`` render steps the latent is
clean and later steps change nothing; a job with fewer steps ends on the clean latent
predicted at the level it reached. A class-conditional denoiser (``num_class_embeds``, or a
DiT) draws the objective's class, else ``class_label`` (a random class per image by default).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from priors.base import Parameterization
from priors.decoder import upsampling_factor
from priors.diffusers_loading import DiffusersModelError, load_diffusers_model
from priors.diffusion import CLASS_LABEL_OPTION, RANDOM_CLASS
from priors.guided_ddim import MAX_SAMPLING_STEPS, GuidedDdim
from priors.options import Option

DENOISERS = {"unet": "UNet2DModel", "transformer": "DiTTransformer2DModel"}
AUTOENCODERS = {"vae": "AutoencoderKL", "vqvae": "VQModel"}
MAX_DEFAULT_SAMPLING_STEPS = 50
"""A folder's default sampling steps, which are also its default render steps, are as many as fit the CPU budget
(``priors.costs``), up to this."""
DEFAULT_GUIDANCE_SCALE = 0.5


def _config(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DiffusersModelError(path, f"unreadable config ({error})") from None


def pipeline_parts(source: str | Path) -> tuple[str, dict, str, dict, dict]:
    """(denoiser subfolder, its config, autoencoder subfolder, its config, scheduler config).

    Raises DiffusersModelError naming what is missing or mismatched, before any weights are read.
    """
    folder = Path(source)
    if not folder.is_dir():
        raise DiffusersModelError(source, "no such directory")
    denoiser = next((name for name in DENOISERS if (folder / name / "config.json").is_file()), None)
    autoencoder = next((name for name in AUTOENCODERS if (folder / name / "config.json").is_file()), None)
    if denoiser is None or autoencoder is None:
        raise DiffusersModelError(
            source, "a latent diffusion pipeline needs unet/ or transformer/ and vae/ or vqvae/, each with config.json"
        )
    denoiser_config, autoencoder_config = (
        _config(folder / denoiser / "config.json"),
        _config(folder / autoencoder / "config.json"),
    )
    for name, config, expected in (
        (denoiser, denoiser_config, DENOISERS[denoiser]),
        (autoencoder, autoencoder_config, AUTOENCODERS[autoencoder]),
    ):
        if config.get("_class_name") != expected:
            raise DiffusersModelError(source, f"{name}/ holds {config.get('_class_name')}, not {expected}")
    scheduler_path = folder / "scheduler" / "scheduler_config.json"
    if not scheduler_path.is_file():
        raise DiffusersModelError(source, "no scheduler/scheduler_config.json: the noise schedule is unknown")
    latent_channels = autoencoder_config.get("vq_embed_dim") or autoencoder_config.get("latent_channels", 4)
    if denoiser_config.get("in_channels") != latent_channels:
        raise DiffusersModelError(
            source,
            f"{denoiser}/ takes {denoiser_config.get('in_channels')} channels but {autoencoder}/'s latent has "
            f"{latent_channels}",
        )
    return denoiser, denoiser_config, autoencoder, autoencoder_config, _config(scheduler_path)


def latent_side(denoiser_config: dict) -> int:
    size = denoiser_config.get("sample_size") or 32
    return int(size[0] if isinstance(size, list | tuple) else size)


def class_count(denoiser: str, denoiser_config: dict) -> int:
    """How many class labels the denoiser takes (a DiT's ``num_embeds_ada_norm``); 0 when unconditional."""
    if denoiser == "transformer":
        return int(denoiser_config.get("num_embeds_ada_norm") or 0)
    if denoiser_config.get("class_embed_type"):
        raise ValueError(f"class_embed_type {denoiser_config.get('class_embed_type')!r} is not supported")
    return int(denoiser_config.get("num_class_embeds") or 0)


class LatentDiffusionImage(Parameterization):
    """A DDIM sample in a frozen autoencoder's latent, steered by the objective's gradient on the decoded image."""

    owns_update = True
    labels: Tensor
    noisy: Tensor

    def __init__(
        self,
        batch: int,
        height: int,
        width: int,
        *,
        generator: torch.Generator,
        denoiser: Any,
        decoder: Any,
        scheduler_config: Mapping[str, Any],
        classes: int,
        sampling_steps: int,
        guidance_scale: float = DEFAULT_GUIDANCE_SCALE,
        class_label: int = RANDOM_CLASS,
    ) -> None:
        super().__init__(batch, height, width)
        if class_label != RANDOM_CLASS and not 0 <= class_label < classes:
            raise ValueError(f"class_label {class_label} is not a label of this model ({classes} classes)")
        self.ddim = GuidedDdim(scheduler_config, sampling_steps, guidance_scale)
        self._frozen = (denoiser, decoder)  # shared between jobs: not submodules
        self.classes = classes
        config = dict(denoiser.config)
        side = latent_side(config)
        self.latent_channels = int(config["in_channels"])
        self.scaling_factor = float(dict(decoder.config).get("scaling_factor") or 1.0)
        self.register_buffer("noisy", torch.randn((batch, self.latent_channels, side, side), generator=generator))
        if class_label == RANDOM_CLASS:
            labels = torch.randint(max(classes, 1), (batch,), generator=generator)
        else:
            labels = torch.full((batch,), class_label)
        self.register_buffer("labels", labels)
        self.position = 0
        self._raw: Tensor | None = None
        self._clean: Tensor | None = None

    @property
    def denoiser(self) -> Any:
        return self._frozen[0]

    @property
    def decoder(self) -> Any:
        return self._frozen[1]

    @property
    def finished(self) -> bool:
        return self.position >= len(self.ddim)

    def start_at_classes(self, classes: Sequence[int | None]) -> None:
        """A class-conditional denoiser draws each image as its objective's class (others keep their label)."""
        if not self.classes:
            return
        for index, target in enumerate(classes):
            if target is None:
                continue
            if not 0 <= target < self.classes:
                raise ValueError(f"class {target} is not a label of this model ({self.classes} classes)")
            self.labels[index] = target

    @torch.no_grad()
    def _estimates(self) -> tuple[Tensor, Tensor]:
        """The scheduler's clean-latent estimates at the current level, before and after its clipping."""
        timesteps = torch.full(
            (self.batch,), self.ddim.timesteps[self.position], device=self.noisy.device, dtype=torch.long
        )
        labels = self.labels if self.classes else None
        output = self.denoiser(self.noisy, timesteps, class_labels=labels).sample
        output = output[:, : self.latent_channels].float()  # a DiT that learned its variance returns it after the mean
        return self.ddim.estimates(output, self.position, self.noisy)

    def forward(self) -> Tensor:
        if self.finished:
            clean = self.noisy
        else:
            self._raw, clean = self._estimates()
        self._clean = clean.detach().requires_grad_(True)
        images = (self.decoder.decode(self._clean / self.scaling_factor).sample.float() + 1.0) / 2.0
        if images.shape[-2:] != (self.height, self.width):
            images = F.interpolate(images, size=(self.height, self.width), mode="bilinear", align_corners=False)
        return images.clamp(0.0, 1.0)

    @torch.no_grad()
    def update(self, step: int, total_steps: int) -> None:
        if self.finished or self._clean is None or self._raw is None:
            return
        guided = self.ddim.guide(self._clean.detach(), self._clean.grad, self.position)
        self.noisy = self.ddim.advance(self.noisy, self._raw, guided, self.position, self.position + 1)
        self.position += 1
        self._clean = self._raw = None


GUIDANCE_OPTION = Option(
    "guidance_scale",
    float,
    DEFAULT_GUIDANCE_SCALE,
    "strength of the objective's pull on the predicted clean latent",
    minimum=0.0,
    maximum=1000.0,
)


def latent_diffusion_options(source: str | Path, *, sampling_steps: int) -> tuple[Option, ...]:
    """The folder's options; ``sampling_steps`` defaults to the prior's default render steps, one level each."""
    denoiser, denoiser_config, *_ = pipeline_parts(source)
    steps = Option(
        "sampling_steps",
        int,
        sampling_steps,
        "DDIM steps from noise to latent, one per render step (fewer render steps end on the predicted clean latent)",
        minimum=1,
        maximum=MAX_SAMPLING_STEPS,
    )
    options = (steps, GUIDANCE_OPTION)
    return (*options, CLASS_LABEL_OPTION) if class_count(denoiser, denoiser_config) else options


def output_side(source: str | Path) -> int:
    """The pipeline's native image side: the latent side times the decoder's upsampling."""
    _, denoiser_config, autoencoder, autoencoder_config, _ = pipeline_parts(source)
    kind = "vq" if autoencoder == "vqvae" else "autoencoder_kl"
    return latent_side(denoiser_config) * upsampling_factor(kind, autoencoder_config)


def build_latent_diffusion_prior(
    source: str | Path,
    batch: int,
    height: int,
    width: int,
    *,
    generator: torch.Generator,
    device: torch.device,
    sampling_steps: int,
    guidance_scale: float = DEFAULT_GUIDANCE_SCALE,
    class_label: int = RANDOM_CLASS,
) -> LatentDiffusionImage:
    import diffusers

    denoiser_name, denoiser_config, autoencoder_name, _, scheduler_config = pipeline_parts(source)
    denoiser = load_diffusers_model(
        getattr(diffusers, DENOISERS[denoiser_name]), source, subfolders=(denoiser_name,), device=device
    )
    decoder = load_diffusers_model(
        getattr(diffusers, AUTOENCODERS[autoencoder_name]), source, subfolders=(autoencoder_name,), device=device
    )
    image = LatentDiffusionImage(
        batch,
        height,
        width,
        generator=generator,
        denoiser=denoiser,
        decoder=decoder,
        scheduler_config=scheduler_config,
        classes=class_count(denoiser_name, denoiser_config),
        sampling_steps=sampling_steps,
        guidance_scale=guidance_scale,
        class_label=class_label,
    )
    return image.to(device)
