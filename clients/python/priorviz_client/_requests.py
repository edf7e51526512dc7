"""Request building shared by Client and AsyncClient: one place for the render options."""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from PIL import Image

from priorviz_client._convert import objective_to_proto
from priorviz_client._proto.priorviz.v1 import priorviz_pb2 as pb
from priorviz_objectives import Objective, ObjectiveError

Priors = Iterable[str] | Mapping[str, Mapping[str, object]]
"""Prior names in order, or names mapped to their options (``{"fourier": {}, "gan_faces": {"clip": 2.0}}``).

``client.priors()`` lists each prior's options with their meaning, type, default and range
(``PriorInfo.options``); the server refuses an unknown key or a value out of range with
``InvalidArgumentError`` before the job is queued.
"""

ImageInput = bytes | Path | Image.Image | str
"""PNG/JPEG bytes, a file, a PIL image, or ``"SET/IMAGE"`` naming a photograph of a server's image set."""


@dataclass(frozen=True)
class Transforms:
    """The random transforms with some of Lucid's standard parameters changed; None keeps the server's standard.

    Before every step the image is padded with mid-grey (``pad`` pixels a side, standard 12), cropped up to
    ``jitter`` pixels smaller (8), scaled by one of 11 values over ``scale`` = (min, max) ((0.9, 1.1)) and
    rotated by one of 21 angles over -``rotate``..``rotate`` degrees (10), then cropped up to ``final_jitter``
    pixels smaller (4). ``transforms=True`` is the standard set, ``False`` none.
    """

    pad: int | None = None
    jitter: int | None = None
    scale: tuple[float, float] | None = None
    rotate: float | None = None
    final_jitter: int | None = None

    def to_proto(self) -> pb.TransformParameters:
        message = pb.TransformParameters()
        for name, value in (
            ("pad", self.pad),
            ("jitter", self.jitter),
            ("rotate_degrees", self.rotate),
            ("final_jitter", self.final_jitter),
        ):
            if value is not None:
                setattr(message, name, value)
        if self.scale is not None:
            message.scale_min, message.scale_max = self.scale
        return message

    def given(self) -> dict[str, object]:
        """The parameters set, by name (for a record of the run's settings)."""
        return {name: value for name, value in vars(self).items() if value is not None}


class RenderOptions(TypedDict, total=False):
    """Options of a visualization; anything left out is the server's default."""

    model: str
    """Target model; the server's default model when left out."""
    batch: int
    """Images optimized together (default 1)."""
    size: int
    """Side of the square images in pixels (default: the model's input size)."""
    steps: int
    """Optimization steps (default: each prior's own, ``PriorInfo.default_steps``)."""
    learning_rate: float
    """Adam's learning rate (default: each prior's own, ``PriorInfo.default_learning_rate``)."""
    seed: int
    """Seed of every random draw; equal seeds give equal images on one server machine (default 0)."""
    preview_steps: Sequence[int]
    """Steps after which preview images are streamed."""
    transforms: bool | Transforms
    """Random pad/jitter/scale/rotate at every step: True (the default) Lucid's standard set, False none, or
    ``Transforms(...)`` the standard set with some parameters changed."""
    held_out_model: str
    """Model measuring transferability; "none" skips that metric (default: the server's)."""
    statistics_prior_weight: float
    """Weight of the batch-norm statistics prior (DeepInversion) added to every prior of the job; 0 is off."""
    init_image: ImageInput
    """Start from this photograph instead of noise (DeepDream of a photograph): pixel and Fourier start from it
    exactly, a learned prior from its latent fitted to it. Caricature objectives compare with it."""
    total_variation_weight: float
    """Weight of the image's total variation, subtracted from what is maximized (0: off, at most 1000)."""
    l1_weight: float
    """Weight of the image's mean distance from mid-grey (L1), subtracted likewise (0: off, at most 1000)."""
    blur_sigma: float
    """Gaussian blur of the image itself every ``blur_every`` steps, sigma in pixels (0: off, at most 8);
    pixel and fourier priors only."""
    blur_every: int
    """Steps between two blurs (default 1: every step)."""


def render_settings(objective: Objective | str, options: RenderOptions) -> pb.RenderSettings:
    unknown = set(options) - set(RenderOptions.__annotations__)
    if unknown:
        raise TypeError(f"unknown render options {sorted(unknown)}; known: {sorted(RenderOptions.__annotations__)}")
    transforms = options.get("transforms", True)
    settings = pb.RenderSettings(
        model=options.get("model") or "",
        batch=options.get("batch", 1),
        image_size=options.get("size") or 0,
        steps=options.get("steps") or 0,
        learning_rate=options.get("learning_rate") or 0.0,
        seed=options.get("seed", 0),
        preview_steps=list(options.get("preview_steps", ())),
        transforms=pb.TRANSFORM_MODE_STANDARD if transforms else pb.TRANSFORM_MODE_NONE,
        held_out_model=options.get("held_out_model") or "",
        statistics_prior_weight=options.get("statistics_prior_weight") or 0.0,
    )
    if "init_image" in options:
        settings.init_image.CopyFrom(input_image(options["init_image"]))
    if isinstance(transforms, Transforms):
        settings.transform_parameters.CopyFrom(transforms.to_proto())
    for name in ("total_variation_weight", "l1_weight", "blur_sigma", "blur_every"):
        if name in options:
            setattr(settings.regularizers, name, options[name])
    set_objective(settings, objective, "objective", "objective_text")
    return settings


def set_objective(message: Any, objective: Objective | str, tree_field: str, text_field: str) -> None:
    """Put ``objective`` into a request ``message``: as its tree, or as its text form."""
    if isinstance(objective, Objective):
        getattr(message, tree_field).CopyFrom(objective_to_proto(objective))
    elif isinstance(objective, str) and objective.strip():
        setattr(message, text_field, objective.strip())
    else:
        raise ObjectiveError(f"expected an Objective or its text form, got {objective!r}")


def input_image(image: ImageInput) -> pb.InputImage:
    """The wire's image: bytes as they are, a file's bytes, a PIL image as PNG, a string as a set member."""
    if isinstance(image, bytes):
        return pb.InputImage(data=image)
    if isinstance(image, Path):
        return pb.InputImage(data=image.read_bytes())
    if isinstance(image, Image.Image):
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG")
        return pb.InputImage(data=buffer.getvalue())
    if isinstance(image, str) and "/" in image:
        return pb.InputImage(named=image)
    raise TypeError(f"expected bytes, a Path, a PIL image or 'SET/IMAGE', got {image!r}")


def visualize_request(
    objective: Objective | str, prior: str, prior_options: Mapping[str, object] | None, options: RenderOptions
) -> pb.VisualizeRequest:
    return pb.VisualizeRequest(
        settings=render_settings(objective, options), prior=prior, prior_options=_text_options(prior_options)
    )


def compare_request(objective: Objective | str, priors: Priors | None, options: RenderOptions) -> pb.CompareRequest:
    return pb.CompareRequest(settings=render_settings(objective, options), priors=_prior_choices(priors))


def _prior_choices(priors: Priors | None) -> list[pb.PriorChoice]:
    if priors is None:
        return []
    if isinstance(priors, str):
        priors = [priors]
    if isinstance(priors, Mapping):
        return [pb.PriorChoice(name=name, options=_text_options(options)) for name, options in priors.items()]
    return [pb.PriorChoice(name=name) for name in priors]


def _text_options(options: Mapping[str, object] | None) -> dict[str, str]:
    """The wire carries options as text; the server parses each by the prior's declared type."""
    return {str(key): _option_text(value) for key, value in (options or {}).items()}


def _option_text(value: object) -> str:
    """A bool as the wire's ``true``/``false``, anything else as Python writes it."""
    return str(value).lower() if isinstance(value, bool) else str(value)
