"""What a default job of a generator from a folder costs on a 2-core CPU, and so how many steps it gets.

The issue's bar: a job with the prior's default steps finishes within 5 minutes at 128 px on
this machine. Seconds per render step were measured for each kind at its real config with
random weights (``bench/generator_costs.py``; one torch thread on a loaded machine, so upper
bounds; docs/PRIORS.md, "Cost on this CPU"). A config of another size is estimated from the
measurement at the largest side not above its own, scaled by the ratio of pixels (convolution
and attention cost grow at least that fast); below the smallest measured side the cost is not
scaled down. A generator draws at its native side and resizes, so that side is what costs; a
decoder draws at the requested side, and its default job is planned at ``ANY_SIZE_JOB_SIDE``,
the default model's input size, so that a request that leaves both steps and size out also
finishes in time (at 128 px it then takes about a third of the budget).
"""

from __future__ import annotations

from dataclasses import dataclass

JOB_BUDGET_SECONDS = 240.0
"""Render time a default job is planned to: 5 minutes less a margin for loading, metrics and encoding."""
ANY_SIZE_JOB_SIDE = 224
"""The side a prior that draws at any size plans its default job at: the default model's input size. The built-in
ones were timed there (docs/PRIORS.md): 512 steps take at most about 3 minutes."""


@dataclass(frozen=True)
class StepCost:
    """Seconds per render step measured at one image side (EfficientNet-Lite0, ``logit:1``, batch 1)."""

    side: int
    """The generator's native side, or for a decoder the requested side."""
    seconds: float
    """For a generator, the larger of its costs at 128 and 224 px requests (the classifier's part grows)."""


STEP_COSTS: dict[str, tuple[StepCost, ...]] = {
    "biggan": (StepCost(128, 1.08), StepCost(256, 3.0)),  # biggan-deep-128, biggan-deep-256
    "unet": (StepCost(64, 3.14),),  # the ImageNet-64 ADM UNet, class-conditional
    "consistency": (StepCost(64, 7.36),),  # openai/diffusers-cd_imagenet64_l2's UNet, forward and backward
    "latent_diffusion": (StepCost(256, 11.5),),  # DiT-XL-2-256 and the SD VAE decoder
    "autoencoder_kl": (StepCost(128, 2.45), StepCost(224, 10.6)),  # stabilityai/sd-vae-ft-mse
    "autoencoder_tiny": (StepCost(128, 0.22),),  # TAESD (madebyollin/taesd)
    "vq": (StepCost(128, 2.58),),  # the CompVis LDMs' VQ-f4
}
"""Per kind, measured seconds per render step by side, smallest side first."""


def seconds_per_step(kind: str, side: int) -> float:
    """An upper estimate of one render step's seconds for a ``kind`` generator drawing at ``side`` pixels."""
    costs = STEP_COSTS[kind]
    base = max((cost for cost in costs if cost.side <= side), key=lambda cost: cost.side, default=costs[0])
    return base.seconds * max(1.0, (side / base.side) ** 2)


def default_steps(kind: str, side: int, *, most: int) -> int:
    """As many render steps as fit in ``JOB_BUDGET_SECONDS`` at ``side``, between 1 and ``most``."""
    return max(1, min(most, int(JOB_BUDGET_SECONDS // seconds_per_step(kind, side))))
