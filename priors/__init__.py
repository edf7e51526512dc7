"""Image parameterizations ("priors"): parameters in, images in [0, 1] NCHW out."""

from priors.base import (
    Parameterization,
    PriorInfo,
    PriorKind,
    PriorNotFoundError,
    get_prior,
    list_priors,
    register_prior,
    unregister_prior,
)
from priors.color import decorrelate_colors
from priors.cppn import CppnImage
from priors.decoder import DecoderLatentImage
from priors.deep_image_prior import DeepImagePrior
from priors.diffusers_loading import DiffusersModelError
from priors.diffusers_priors import register_diffusers_prior
from priors.diffusion import GuidedDiffusionImage
from priors.distilled_imagenet import DistilledLatentImage
from priors.fourier import FourierImage
from priors.gan import GanLatentImage
from priors.maco import MacoImage
from priors.pixel import PixelImage

__all__ = [
    "CppnImage",
    "DecoderLatentImage",
    "DeepImagePrior",
    "DiffusersModelError",
    "DistilledLatentImage",
    "FourierImage",
    "GanLatentImage",
    "GuidedDiffusionImage",
    "MacoImage",
    "Parameterization",
    "PixelImage",
    "PriorInfo",
    "PriorKind",
    "PriorNotFoundError",
    "decorrelate_colors",
    "get_prior",
    "list_priors",
    "register_diffusers_prior",
    "register_prior",
    "unregister_prior",
]
