"""Guided DDIM sampling with diffusers' own ``DDIMScheduler``, shared by the pixel and the latent diffusion priors.

Energy guidance on the predicted clean sample (as EGG does). At noise level t, the
denoiser's output gives the scheduler's clean estimate x0: the ``pred_original_sample`` of
``DDIMScheduler.step``, so the config's ``prediction_type``, ``clip_sample`` with
``clip_sample_range``, and ``thresholding`` all apply. The objective is measured on x0 (or on
its decoding) and the loss is back-propagated to x0 only, not through the denoiser, which
keeps a step cheap. The guided estimate, the gradient normalized per image,

    x0' = x0 - guidance_scale * sqrt(1 - alpha_bar_t) * grad / rms(grad),

(strong while the sample is noisy, fading as it becomes clean) takes x0's place in the sample,
which keeps the denoiser's noise estimate eps:

    x_t' = x_t + sqrt(alpha_bar_t) * (x0' - x0_raw) = sqrt(alpha_bar_t) * x0' + sqrt(1 - alpha_bar_t) * eps,

with x0_raw the estimate before clipping. The step to the next level is ``DDIMScheduler.step``
(eta = 0) of a second scheduler from the same config but with ``prediction_type="sample"``,
given x0' as the model output and x_t' as the sample: it clips or thresholds x0' as the config
says and derives eps back from x_t' and x0'. With no guidance, x_t' is the sample whose clean
part is the clipped x0 and every step is the scheduler's own step on the denoiser's output.
A jump over several levels repeats that step from the (clipped) x0' without calling the
denoiser again; staying at one level keeps x_t', so that the next render step guides again there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from torch import Tensor

MAX_SAMPLING_STEPS = 1000


class GuidedDdim:
    """A DDIM schedule of ``sampling_steps`` levels (index 0: the noisiest) and the guided steps between them."""

    def __init__(self, scheduler_config: Mapping[str, Any], sampling_steps: int, guidance_scale: float) -> None:
        from diffusers import DDIMScheduler

        most = min(MAX_SAMPLING_STEPS, int(scheduler_config.get("num_train_timesteps", 1000)))
        if not 1 <= sampling_steps <= most:
            raise ValueError(f"sampling_steps must be within 1..{most}, got {sampling_steps}")
        if not (math.isfinite(guidance_scale) and guidance_scale >= 0):
            raise ValueError(f"guidance_scale must be a non-negative number, got {guidance_scale}")
        self.guidance_scale = float(guidance_scale)
        self._raw = DDIMScheduler.from_config(scheduler_config, clip_sample=False, thresholding=False)
        """Reads the denoiser's output as a clean estimate, unclipped."""
        self._from_clean = DDIMScheduler.from_config(scheduler_config, prediction_type="sample")
        """Steps from a clean estimate, clipping or thresholding it as the model's config says."""
        for scheduler in (self._raw, self._from_clean):
            scheduler.set_timesteps(sampling_steps)
        self.timesteps = [int(timestep) for timestep in self._raw.timesteps]

    def __len__(self) -> int:
        return len(self.timesteps)

    def _alpha_bar(self, level: int) -> Tensor:
        return self._raw.alphas_cumprod[self.timesteps[level]].float()

    def estimates(self, output: Tensor, level: int, sample: Tensor) -> tuple[Tensor, Tensor]:
        """``(x0_raw, x0)``: the clean sample the denoiser's ``output`` names, before and after the scheduler's
        clipping or thresholding."""
        timestep = self.timesteps[level]
        raw = self._raw.step(output, timestep, sample).pred_original_sample
        return raw, self._from_clean.step(raw, timestep, sample).pred_original_sample

    def guide(self, clean: Tensor, gradient: Tensor | None, level: int) -> Tensor:
        """x0': ``clean`` moved down the loss ``gradient``, normalized per image and scaled by the noise level."""
        if gradient is None or self.guidance_scale == 0:
            return clean
        rms = gradient.flatten(1).pow(2).mean(dim=1).sqrt().clamp(min=1e-12).view(-1, *[1] * (gradient.dim() - 1))
        return clean - self.guidance_scale * (1 - self._alpha_bar(level)).sqrt() * gradient / rms

    def advance(self, sample: Tensor, raw: Tensor, guided: Tensor, start: int, stop: int) -> Tensor:
        """The sample at level ``stop`` (``len(self)``: clean) from ``sample`` at ``start``, its clean estimate
        ``raw`` replaced by ``guided``, through ``DDIMScheduler.step``."""
        sample = sample + self._alpha_bar(start).sqrt() * (guided - raw)
        clean = guided
        for level in range(start, stop):
            stepped = self._from_clean.step(clean, self.timesteps[level], sample)
            sample, clean = stepped.prev_sample, stepped.pred_original_sample
        return sample
