"""Seconds per render step of each generator kind a user brings in a folder, at its real config with random weights.

Each model is built at the published config (biggan-deep-128/256, the ImageNet-64 UNet of
openai/diffusers-cd_imagenet64_l2, DiT-XL-2-256 over the Stable Diffusion VAE, the decoders of
sd-vae-ft-mse, TAESD and the CompVis LDMs' VQ-f4), saved in its real on-disk layout in a
scratch folder, registered with ``auto`` as a server would, and rendered on EfficientNet-Lite0
(``logit:1``, the standard transforms) for a few steps; the first step is left out as warm-up.
Random weights give the cost and the shapes, not images. Each row also gives the prior's
declared default steps and the time they imply at each size (``priors.costs`` chooses them).

    PYTHONPATH=. .venv/bin/python bench/generator_costs.py --threads 1 2 --steps 3 [--kinds biggan-deep-128 ...]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from generator_folders import BIGGAN_DEEP_128, save_biggan  # noqa: E402

from priors import get_prior, unregister_prior  # noqa: E402
from priors.folders import register_folder_prior  # noqa: E402
from priorviz.models import get_model  # noqa: E402
from priorviz.objectives import ClassLogit  # noqa: E402
from priorviz.render import RenderConfig, StepEvent, make_generator, render  # noqa: E402

BIGGAN_DEEP_256 = {
    **BIGGAN_DEEP_128,
    "output_dim": 256,
    "layers": [[False, 16, 16], [True, 16, 16], [False, 16, 16], [True, 16, 8], [False, 8, 8], [True, 8, 8],
               [False, 8, 4], [True, 4, 4], [False, 4, 2], [True, 2, 2], [False, 2, 1], [True, 1, 1]],
}  # fmt: skip

IMAGENET_64_UNET = {
    "sample_size": 64,
    "in_channels": 3,
    "out_channels": 3,
    "layers_per_block": 3,
    "num_class_embeds": 1000,
    "block_out_channels": (192, 384, 576, 768),
    "attention_head_dim": 64,
    "down_block_types": ("ResnetDownsampleBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
    "up_block_types": ("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "ResnetUpsampleBlock2D"),
    "resnet_time_scale_shift": "scale_shift",
    "upsample_type": "resnet",
    "downsample_type": "resnet",
}
"""openai/diffusers-cd_imagenet64_l2's unet/config.json (as diffusers' conversion script writes it)."""

SD_VAE = {
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 2,
    "latent_channels": 4,
    "sample_size": 256,
    "scaling_factor": 0.18215,
}
"""stabilityai/sd-vae-ft-mse (the VAE of DiT-XL-2-256)."""

VQ_F4 = {
    "block_out_channels": (128, 256, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 3,
    "up_block_types": ("UpDecoderBlock2D",) * 3,
    "layers_per_block": 2,
    "latent_channels": 3,
    "num_vq_embeddings": 8192,
    "vq_embed_dim": 3,
    "sample_size": 256,
}
"""The VQModel (f4) in the vqvae/ of the CompVis LDM pipelines, e.g. CompVis/ldm-celebahq-256."""

DIT_XL_2_256 = {
    "num_attention_heads": 16,
    "attention_head_dim": 72,
    "in_channels": 4,
    "out_channels": 8,
    "num_layers": 28,
    "sample_size": 32,
    "patch_size": 2,
    "num_embeds_ada_norm": 1000,
}


def _biggan(config: dict) -> Callable[[Path], Path]:
    return lambda folder: save_biggan(folder, config)


def _cd_imagenet64(folder: Path) -> Path:
    from diffusers import CMStochasticIterativeScheduler, ConsistencyModelPipeline, UNet2DModel

    scheduler = CMStochasticIterativeScheduler(num_train_timesteps=40, sigma_min=0.002, sigma_max=80.0)
    ConsistencyModelPipeline(unet=UNet2DModel(**IMAGENET_64_UNET), scheduler=scheduler).save_pretrained(folder)
    return folder


def _ddpm_imagenet64(folder: Path) -> Path:
    from diffusers import DDIMScheduler, DDPMPipeline, UNet2DModel

    DDPMPipeline(unet=UNet2DModel(**IMAGENET_64_UNET), scheduler=DDIMScheduler()).save_pretrained(folder)
    return folder


def _dit_xl_2_256(folder: Path) -> Path:
    from diffusers import AutoencoderKL, DDIMScheduler, DiTTransformer2DModel

    DiTTransformer2DModel(**DIT_XL_2_256).save_pretrained(folder / "transformer")
    AutoencoderKL(**SD_VAE).save_pretrained(folder / "vae")
    DDIMScheduler().save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "DiTPipeline"}))
    return folder


def _decoder(model_class: str, config: dict) -> Callable[[Path], Path]:
    def save(folder: Path) -> Path:
        import diffusers

        getattr(diffusers, model_class)(**config).save_pretrained(folder)
        return folder

    return save


KINDS: dict[str, tuple[Callable[[Path], Path], dict[str, object]]] = {
    "biggan-deep-128": (_biggan(BIGGAN_DEEP_128), {}),
    "biggan-deep-256": (_biggan(BIGGAN_DEEP_256), {}),
    "unet (ImageNet-64 ADM, DDIM)": (_ddpm_imagenet64, {}),
    "consistency (cd_imagenet64_l2)": (_cd_imagenet64, {}),
    "latent_diffusion (DiT-XL-2-256 + SD VAE)": (_dit_xl_2_256, {}),
    "autoencoder_kl (sd-vae-ft-mse)": (_decoder("AutoencoderKL", SD_VAE), {}),
    "autoencoder_tiny (TAESD)": (_decoder("AutoencoderTiny", {}), {}),
    "vq (CompVis VQ-f4)": (_decoder("VQModel", VQ_F4), {}),
}


def seconds_per_step(name: str, size: int, steps: int, options: dict[str, object]) -> tuple[float, tuple[int, ...]]:
    """Median seconds of the steps after the first, and the output's shape."""
    lite0 = get_model("efficientnet_lite0", device="cpu")
    prior = get_prior(name, 1, size, size, generator=make_generator(0), **options)
    stamps: list[float] = []
    started = time.perf_counter()

    def progress(event: StepEvent) -> None:
        stamps.append(time.perf_counter())

    result = render(lite0, ClassLogit(1), prior, size=size, config=RenderConfig(steps=steps), progress=progress)
    durations = [later - earlier for earlier, later in zip([started, *stamps], stamps, strict=False)][1:]
    return statistics.median(durations), tuple(result.images.shape)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="torch thread counts to measure at")
    parser.add_argument("--steps", type=int, default=3, help="render steps per measurement (the first is warm-up)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 224])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    args = parser.parse_args()
    rows = []
    for kind in args.kinds:
        save, options = KINDS[kind]
        with tempfile.TemporaryDirectory(prefix="generator-costs-") as scratch:
            torch.manual_seed(0)
            built = time.perf_counter()
            folder = save(Path(scratch) / "model")
            saved = time.perf_counter() - built
            name = "bench_" + "".join(c if c.isalnum() else "_" for c in kind)
            loaded = time.perf_counter()
            info = register_folder_prior(name, "auto", folder)
            loaded = time.perf_counter() - loaded
            if info.unavailable_reason:
                raise SystemExit(f"{kind}: {info.unavailable_reason}")
            for threads in args.threads:
                torch.set_num_threads(threads)
                row = {"kind": kind, "threads": threads, "latent_shape": info.latent_shape,
                       "native": info.output_size, "default_steps": info.default_steps,
                       "build_and_save_s": round(saved, 1), "register_s": round(loaded, 1)}  # fmt: skip
                for size in args.sizes:
                    seconds, shape = seconds_per_step(name, size, args.steps, options)
                    row[f"s_per_step_{size}"] = round(seconds, 2)
                    row[f"default_job_s_{size}"] = round(seconds * info.default_steps)
                    row[f"shape_{size}"] = shape
                rows.append(row)
                print(json.dumps(row), flush=True)
            unregister_prior(name)
            gc.collect()
    per_size = " | ".join(f"s/step at {size} | default job at {size}" for size in args.sizes)
    print(f"\n| kind | threads | latent | native px | default steps | {per_size} |")
    print("|---|---|---|---|---|" + "---|---|" * len(args.sizes))
    for row in rows:
        cells = " | ".join(f"{row[f's_per_step_{size}']} | {row[f'default_job_s_{size}']} s" for size in args.sizes)
        print(
            f"| {row['kind']} | {row['threads']} | {'x'.join(map(str, row['latent_shape']))} | {row['native'] or 'any'}"
            f" | {row['default_steps']} | {cells} |"
        )


if __name__ == "__main__":
    main()
