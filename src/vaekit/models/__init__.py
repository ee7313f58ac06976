"""The model family: every model honours :class:`vaekit.models.base.LatentVariableModel`.

Importing this package registers each model in :data:`vaekit.models.base.MODELS`.
"""

from vaekit.models.base import MODELS, LatentVariableModel, ModelConfig, model_class, register
from vaekit.models.hierarchical import HierarchicalVAE, HierarchicalVAEConfig
from vaekit.models.vae import VAE, VAEConfig
from vaekit.models.vqvae import VQVAE, VQVAEConfig

__all__ = [
    "MODELS",
    "VAE",
    "HierarchicalVAE",
    "HierarchicalVAEConfig",
    "LatentVariableModel",
    "ModelConfig",
    "VAEConfig",
    "VQVAE",
    "VQVAEConfig",
    "model_class",
    "register",
]
