"""Image parameterizations ("priors"): parameters in, images in [0, 1] NCHW out."""

from priors.base import Parameterization, PriorInfo, PriorKind, PriorNotFoundError, get_prior, list_priors, register_prior
from priors.color import decorrelate_colors
from priors.fourier import FourierImage
from priors.pixel import PixelImage

__all__ = [
    "FourierImage",
    "Parameterization",
    "PixelImage",
    "PriorInfo",
    "PriorKind",
    "PriorNotFoundError",
    "decorrelate_colors",
    "get_prior",
    "list_priors",
    "register_prior",
]
