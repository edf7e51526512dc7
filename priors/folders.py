"""One way to offer a generator a user brings in a local folder: ``register_folder_prior(name, kind, folder)``.

The kind is named or, with ``auto``, read from the folder's files: BigGAN's config keys, a
pipeline's ``model_index.json``, a model's ``config.json`` ``_class_name``. The prior is
built once at registration (weights loaded, keys checked) so that a broken folder is found
then, not in a job. A folder that cannot be used never raises: it is registered as
unavailable, with the reason, so a server lists it and answers requests for it with that
reason while its other priors serve. Nothing is downloaded.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import torch

from priors.base import (
    DEFAULT_STEPS,
    Parameterization,
    PriorBuilder,
    PriorInfo,
    PriorKind,
    PriorNotFoundError,
    get_prior,
    list_priors,
    register_prior,
    unregister_prior,
)
from priors.biggan import BIGGAN_OPTIONS, CONFIG_KEYS, LICENCE, biggan_config, build_biggan_prior
from priors.biggan import LEARNING_RATE as BIGGAN_LEARNING_RATE
from priors.consistency import LEARNING_RATE as CONSISTENCY_LEARNING_RATE
from priors.consistency import (
    SCHEDULER_CLASS,
    build_consistency_prior,
    consistency_config,
    consistency_options,
)
from priors.costs import default_steps
from priors.decoder import DECODER_KINDS
from priors.diffusers_priors import DIFFUSION_KIND, register_diffusers_prior
from priors.diffusion import class_count, native_side
from priors.latent_diffusion import (
    AUTOENCODERS,
    DENOISERS,
    MAX_DEFAULT_SAMPLING_STEPS,
    build_latent_diffusion_prior,
    latent_diffusion_options,
    latent_side,
    output_side,
    pipeline_parts,
)

AUTO = "auto"
BIGGAN_KIND = "biggan"
CONSISTENCY_KIND = "consistency"
LATENT_DIFFUSION_KIND = "latent_diffusion"
FOLDER_KINDS = (BIGGAN_KIND, CONSISTENCY_KIND, DIFFUSION_KIND, LATENT_DIFFUSION_KIND, *DECODER_KINDS)
TRIAL_SIDE = 64
"""Image side of the trial build at registration (it loads the weights; no image is drawn)."""

_CLASS_KINDS = {
    "AutoencoderKL": "autoencoder_kl",
    "AutoencoderTiny": "autoencoder_tiny",
    "VQModel": "vq",
    "UNet2DModel": DIFFUSION_KIND,
}


class FolderKindError(ValueError):
    """A folder whose kind cannot be told from its files, or an unknown kind."""


def _json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise FolderKindError(f"unreadable {path.name} ({error})") from None
    if not isinstance(value, dict):
        raise FolderKindError(f"{path.name} is not a JSON object")
    return value


def detect_kind(folder: str | Path) -> str:
    """The kind of generator saved in ``folder``, from its files; raises FolderKindError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FolderKindError(f"{folder} is not a directory")
    config_path = folder / "config.json"
    config = _json(config_path) if config_path.is_file() else {}
    if set(config) >= CONFIG_KEYS:
        return BIGGAN_KIND
    if config.get("_class_name") in _CLASS_KINDS:
        return _CLASS_KINDS[config["_class_name"]]
    scheduler_path = folder / "scheduler" / "scheduler_config.json"
    if scheduler_path.is_file() and _json(scheduler_path).get("_class_name") == SCHEDULER_CLASS:
        return CONSISTENCY_KIND
    denoiser = any((folder / name / "config.json").is_file() for name in DENOISERS)
    if denoiser and any((folder / name / "config.json").is_file() for name in AUTOENCODERS):
        return LATENT_DIFFUSION_KIND  # sampling runs in the autoencoder's latent, whatever its channel count
    if (folder / "model_index.json").is_file():
        index = _json(folder / "model_index.json")
        if "unet" in index or (folder / "unet" / "config.json").is_file():
            return DIFFUSION_KIND
        for subfolder in ("vae", "vqvae"):
            sub_config = folder / subfolder / "config.json"
            if sub_config.is_file() and _json(sub_config).get("_class_name") in _CLASS_KINDS:
                return _CLASS_KINDS[_json(sub_config)["_class_name"]]
        raise FolderKindError(f"model_index.json declares {index.get('_class_name')!r}, which is not supported here")
    known = ", ".join(sorted(_CLASS_KINDS))
    raise FolderKindError(f"no BigGAN config.json, no model_index.json and no config.json declaring one of {known}")


def register_folder_prior(name: str, kind: str, folder: str | Path, *, licence: str = "") -> PriorInfo:
    """Register the generator in ``folder`` as prior ``name``; a folder that cannot be used is listed unavailable.

    ``kind`` is ``auto`` or one of ``FOLDER_KINDS``. Raises ValueError only when ``name`` is
    already taken; every problem with the folder ends up in the returned info's ``unavailable_reason``.
    """
    folder = str(folder)
    if name in {info.name for info in list_priors(only_available=False)}:
        raise ValueError(f"prior {name!r} is already registered")
    try:
        resolved = detect_kind(folder) if kind == AUTO else kind
        if resolved not in FOLDER_KINDS:
            raise FolderKindError(f"unknown kind {kind!r}; expected {AUTO} or one of {', '.join(FOLDER_KINDS)}")
        info = _register(name, resolved, folder, licence)
    except Exception as error:  # a user's files can make any loader raise anything; none may stop a server
        return _register_unavailable(name, kind, folder, str(error))
    try:
        get_prior(name, 1, TRIAL_SIDE, TRIAL_SIDE, generator=torch.Generator().manual_seed(0))
    except Exception as error:  # as above: third-party loaders (torch, safetensors, diffusers) raise many kinds
        unregister_prior(name)
        return _register_unavailable(name, kind, folder, str(error))
    return info


def _register(name: str, kind: str, folder: str, licence: str) -> PriorInfo:
    if kind == BIGGAN_KIND:
        info, builder = _biggan(name, folder, licence)
    elif kind == CONSISTENCY_KIND:
        info, builder = _consistency(name, folder, licence)
    elif kind == LATENT_DIFFUSION_KIND:
        info, builder = _latent_diffusion(name, folder, licence)
    else:
        return register_diffusers_prior(name, folder, kind, licence=licence)
    register_prior(info)(builder)
    return info


def _biggan(name: str, folder: str, licence: str) -> tuple[PriorInfo, PriorBuilder]:
    config = biggan_config(folder)
    side = int(config["output_dim"])
    info = PriorInfo(
        name=name,
        kind=PriorKind.LEARNED,
        description=f"BigGAN-deep at {folder}: truncated z and class vector ({config['num_classes']} classes, "
        f"{side}x{side}, resized)",
        output_size=side,
        latent_shape=(int(config["z_dim"]),),
        licence=licence or LICENCE,
        options=BIGGAN_OPTIONS,
        default_steps=default_steps(BIGGAN_KIND, side, most=DEFAULT_STEPS),
        default_image_size=side,
        default_learning_rate=BIGGAN_LEARNING_RATE,
    )
    return info, functools.partial(build_biggan_prior, folder)


def _consistency(name: str, folder: str, licence: str) -> tuple[PriorInfo, PriorBuilder]:
    config = consistency_config(folder)
    side, classes = native_side(config), class_count(config)
    conditioning = f", class-conditional over {classes} labels" if classes else ""
    info = PriorInfo(
        name=name,
        kind=PriorKind.LEARNED,
        description=f"noise of the one-step consistency model at {folder} ({side}x{side}, resized{conditioning})",
        output_size=side,
        latent_shape=(int(config.get("in_channels", 3)), side, side),  # type: ignore[call-overload]
        licence=licence,
        options=consistency_options(config),
        default_steps=default_steps(CONSISTENCY_KIND, side, most=DEFAULT_STEPS),
        default_image_size=side,
        default_learning_rate=CONSISTENCY_LEARNING_RATE,
    )
    return info, functools.partial(build_consistency_prior, folder)


def _latent_diffusion(name: str, folder: str, licence: str) -> tuple[PriorInfo, PriorBuilder]:
    denoiser, denoiser_config, autoencoder, *_ = pipeline_parts(folder)
    side, latent = output_side(folder), latent_side(denoiser_config)
    steps = default_steps(LATENT_DIFFUSION_KIND, side, most=MAX_DEFAULT_SAMPLING_STEPS)
    info = PriorInfo(
        name=name,
        kind=PriorKind.LEARNED,
        description=f"guided DDIM sampling of the {DENOISERS[denoiser]} at {folder} in the latent of its "
        f"{AUTOENCODERS[autoencoder]} ({side}x{side}, resized)",
        output_size=side,
        latent_shape=(int(denoiser_config["in_channels"]), latent, latent),
        licence=licence,
        options=latent_diffusion_options(folder, sampling_steps=steps),
        default_steps=steps,
        default_image_size=side,
        default_learning_rate=0.0,
    )
    return info, functools.partial(build_latent_diffusion_prior, folder)


def _register_unavailable(name: str, kind: str, folder: str, error: str) -> PriorInfo:
    reason = " ".join(error.split())  # torch's key lists come on tabbed lines: one line reads better in a listing
    info = PriorInfo(
        name=name,
        kind=PriorKind.LEARNED,
        description=f"{kind} generator at {folder}",
        unavailable_reason=reason,
        default_steps=0,
        default_image_size=0,
        default_learning_rate=0.0,
    )

    def build(batch: int, height: int, width: int, **_: Any) -> Parameterization:
        raise PriorNotFoundError(f"prior {name!r} is unavailable: {reason}")

    register_prior(info, available=lambda: False)(build)
    return info
