"""vaekit: train, evaluate and explore variational autoencoders.

The public API is re-exported here::

    import vaekit as vk
    x, y = vk.data.ring(n=2000, seed=0)
    model = vk.VAE(x_dim=2, z_dim=2, likelihood=vk.Gaussian(variance=0.1), seed=0)
    history = vk.fit(model, x, objective=vk.ELBO(beta=1.0), epochs=400)
    run = vk.runs.train({"training": {"epochs": 400}}, "runs/demo")   # a whole run folder, as `vaekit train`
"""

from vaekit import baselines, crossval, data, design, diagnostics, metrics, runs, shape_metrics, shapes
from vaekit import plots as plot
from vaekit._version import __version__
from vaekit.conditions import Continuous, OneHot
from vaekit.distributions import Bernoulli, Gaussian, MixturePrior, StandardNormal, VampPrior
from vaekit.errors import FileFormatError, InputError, InputTypeError, RunInterrupted, TrainingError, VaekitError
from vaekit.flows import IAF, Planar
from vaekit.history import History
from vaekit.io import load, save
from vaekit.models import VAE, VQVAE, HierarchicalVAE
from vaekit.monitors import Diversity
from vaekit.objectives import ELBO, IWAE, VQ, LossOutput
from vaekit.posteriors import DiagonalGaussian
from vaekit.streaming import NpyBlocks
from vaekit.sweep import sweep
from vaekit.trainer import Callback, EarlyStopping, fit
from vaekit.trunks import MLP, Conv1d, Conv2d, PCAResidual

__all__ = [
    "VAE",
    "VQVAE",
    "ELBO",
    "IWAE",
    "VQ",
    "Bernoulli",
    "Callback",
    "Continuous",
    "Conv1d",
    "Conv2d",
    "DiagonalGaussian",
    "Diversity",
    "EarlyStopping",
    "FileFormatError",
    "Gaussian",
    "HierarchicalVAE",
    "History",
    "IAF",
    "InputError",
    "InputTypeError",
    "LossOutput",
    "MLP",
    "MixturePrior",
    "NpyBlocks",
    "OneHot",
    "PCAResidual",
    "Planar",
    "StandardNormal",
    "RunInterrupted",
    "TrainingError",
    "VampPrior",
    "VaekitError",
    "__version__",
    "baselines",
    "crossval",
    "data",
    "design",
    "diagnostics",
    "fit",
    "load",
    "metrics",
    "plot",
    "runs",
    "save",
    "shape_metrics",
    "shapes",
    "sweep",
]
