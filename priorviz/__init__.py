"""priorviz, the engine: feature visualization under unconstrained and learned priors.

    import priorviz
    model = priorviz.get_model("efficientnet_lite0")
    result = priorviz.render(model, "logit:130", prior="fourier", steps=256)
    result.images                      # (1, 3, 224, 224) in [0, 1]

The parts, each in the module named after it: ``models`` (the registry of target
classifiers), ``objectives`` (what to maximize: the kinds, their text form and algebra come from
the torch-free ``priorviz_objectives`` package that the client SDK shares; the evaluators are here),
``transforms`` (transformation robustness), ``render`` (the loop), ``inversion`` (feature inversion of a
photograph), ``image_input`` (photographs from requests and image sets), ``examples`` (dataset examples:
the photographs that excite a unit, with ``activation_store`` keeping their activations), ``regularizers`` and
``statistics`` (image penalties and the batch-norm statistics prior), ``metrics`` and
``spectrum`` (the metric panel), ``seeding``, ``images`` (PNG-ready tensors and contact
sheets) and ``errors``. Image parameterizations and generators live in the ``priors``
package. Importing priorviz imports no gRPC, protobuf or Prometheus module.
"""

from priorviz import errors, objectives
from priorviz.examples import ExamplesResult, dataset_examples
from priorviz.inversion import InversionResult, invert
from priorviz.metrics import MetricPanel, measure
from priorviz.models import TargetModel, get_model, list_models, register_model
from priorviz.objectives import parse_objective
from priorviz.render import RenderConfig, RenderResult, render
from priorviz.transforms import standard_transforms

__all__ = [
    "ExamplesResult",
    "InversionResult",
    "MetricPanel",
    "RenderConfig",
    "RenderResult",
    "TargetModel",
    "dataset_examples",
    "errors",
    "get_model",
    "invert",
    "list_models",
    "measure",
    "objectives",
    "parse_objective",
    "register_model",
    "render",
    "standard_transforms",
]
