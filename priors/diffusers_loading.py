"""Loading a user's diffusers model (a local directory or a Hugging Face cache entry), never downloading by default.

A source is either a local directory (the model itself, or a pipeline directory holding the
model in a subfolder such as ``vae/`` or ``unet/``) or a hub id (``owner/name``) that is
looked up in the local Hugging Face cache only. A download happens only when the caller
passes ``allow_download=True``. Anything missing or of the wrong kind raises
``DiffusersModelError`` naming the source, so a client reads what to fix.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from priors.base import PriorNotFoundError
from priors.frozen_models import FrozenModels

CONFIG_FILE = "config.json"


class DiffusersModelError(PriorNotFoundError):
    """A diffusers model that is missing, incomplete or not of the expected class."""

    def __init__(self, source: str | Path, reason: str) -> None:
        self.source = str(source)
        super().__init__(f"diffusers model {self.source!r}: {reason}")


def _is_hub_id(source: str) -> bool:
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and not source.startswith((".", "~")) and not Path(source).exists()


def _local_subfolder(directory: Path, class_name: str, subfolders: Sequence[str]) -> str | None:
    """The subfolder of ``directory`` (or None for the directory itself) holding a ``class_name`` config."""
    found: list[str] = []
    for subfolder in (None, *subfolders):
        config_path = directory / subfolder / CONFIG_FILE if subfolder else directory / CONFIG_FILE
        if not config_path.is_file():
            continue
        try:
            declared = json.loads(config_path.read_text()).get("_class_name")
        except (OSError, ValueError) as error:
            raise DiffusersModelError(config_path, f"unreadable config ({error})") from None
        if declared == class_name:
            return subfolder
        found.append(f"{config_path} declares {declared or 'no _class_name'}")
    where = ", ".join(f"{name}/" for name in subfolders)
    detail = "; ".join(found) if found else f"no {CONFIG_FILE} in it or in {where}"
    raise DiffusersModelError(directory, f"holds no {class_name} ({detail})")


def resolve_source(
    source: str | Path, class_name: str, subfolders: Sequence[str], *, allow_download: bool = False
) -> tuple[str, str | None]:
    """``(location, subfolder)`` for ``from_pretrained``; raises DiffusersModelError when absent."""
    text = str(source)
    directory = Path(text).expanduser()
    if directory.is_dir():
        return str(directory.resolve()), _local_subfolder(directory, class_name, subfolders)
    if directory.exists():
        raise DiffusersModelError(text, "is a file, not a model directory")
    if not _is_hub_id(text):
        raise DiffusersModelError(text, "no such directory")
    from diffusers.configuration_utils import ConfigMixin

    for subfolder in (None, *subfolders):
        try:
            ConfigMixin.load_config(text, subfolder=subfolder, local_files_only=not allow_download)
        except (OSError, ValueError):
            continue
        return text, subfolder
    how = "" if allow_download else " (not in the local Hugging Face cache, and downloads are not allowed)"
    raise DiffusersModelError(text, f"no {class_name} found{how}")


_models: FrozenModels[nn.Module] = FrozenModels()


def load_diffusers_model(
    model_class: type[nn.Module],
    source: str | Path,
    *,
    subfolders: Sequence[str],
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    allow_download: bool = False,
) -> nn.Module:
    """A frozen, eval-mode ``model_class`` from ``source``, loaded once per device and shared by jobs."""
    location, subfolder = resolve_source(source, model_class.__name__, subfolders, allow_download=allow_download)

    def load() -> nn.Module:
        try:
            return model_class.from_pretrained(  # type: ignore[attr-defined]
                location,
                subfolder=subfolder,
                local_files_only=not allow_download,
                torch_dtype=dtype,
                low_cpu_mem_usage=False,
            )
        except (OSError, ValueError, RuntimeError, KeyError) as error:
            raise DiffusersModelError(source, f"cannot be loaded as {model_class.__name__}: {error}") from error

    return _models.get((model_class.__name__, location, subfolder, str(device), dtype), load, device)


def load_diffusers_config(
    model_class: type[nn.Module], source: str | Path, *, subfolders: Sequence[str], allow_download: bool = False
) -> dict[str, object]:
    """The model's config (cheap: reads ``config.json`` only), for listings and shape checks."""
    location, subfolder = resolve_source(source, model_class.__name__, subfolders, allow_download=allow_download)
    try:
        return dict(model_class.load_config(location, subfolder=subfolder, local_files_only=not allow_download))  # type: ignore[attr-defined]
    except (OSError, ValueError) as error:
        raise DiffusersModelError(source, f"unreadable {model_class.__name__} config: {error}") from error
