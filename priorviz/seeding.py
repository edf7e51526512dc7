"""Seeded randomness: every random draw of a job comes from one CPU generator.

A CPU generator (rather than the device's) makes a seeded job draw the same numbers on any
device, so a render is reproducible bit for bit on one machine and close across devices.
"""

from __future__ import annotations

import torch


def make_generator(seed: int) -> torch.Generator:
    """The CPU generator every random draw of a job comes from."""
    return torch.Generator(device="cpu").manual_seed(seed)
