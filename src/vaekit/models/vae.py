"""The variational autoencoder: q(z|x,c), p(z) and p(x|z,c), all returned as distributions."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.distributions import Distribution, Independent

from vaekit.conditions import Condition, Continuous, OneHot, broadcast_condition, condition_from_config
from vaekit.distributions import (
    LOGVAR_MAX,
    LOGVAR_MIN,
    PRIORS,
    Bernoulli,
    Gaussian,
    Likelihood,
    Prior,
    StandardNormal,
    diagonal_normal,
    draw,
    likelihood_from_config,
    prior_from_config,
)
from vaekit.errors import InputError, InputTypeError, describe
from vaekit.io import save
from vaekit.models.base import ModelConfig, flat_dim, register
from vaekit.nn import ACTIVATIONS, ConditionedMLP
from vaekit.validate import float_matrix, positive_int

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class VAEConfig(ModelConfig):
    """Architecture of a :class:`VAE`: what ``model.json`` stores and ``VAE.from_architecture`` builds.

    ``x_dim`` is D, the product of ``x_shape`` (both are stored so a reader sees either).
    """

    x_dim: int
    z_dim: int = 2
    hidden: tuple[int, ...] = (128, 128)
    activation: str = "relu"
    likelihood: Likelihood = dataclasses.field(default_factory=Gaussian)
    condition: Condition | None = None
    standardize: bool = False
    prior: Prior = dataclasses.field(default_factory=StandardNormal)
    x_shape: tuple[int, ...] | None = None  # None: (x_dim,)

    SPECS: ClassVar[dict[str, Any]] = {
        "likelihood": likelihood_from_config,
        "condition": condition_from_config,
        "prior": prior_from_config,
    }
    ADDED: ClassVar[frozenset[str]] = frozenset({"prior", "x_shape"})  # vaekit 0.1 files have neither


@register
class VAE(nn.Module):
    """Variational autoencoder with an MLP encoder and decoder, optionally conditional.

    Parameters
    ----------
    x_dim : int or tuple of int
        Data dimension D, or the shape of one data point (``(P, 2)`` curves, ``(C, H, W)``
        images): data may then be passed as (N, *x_shape) or flat (N, D). The MLP networks see
        flat rows; ``x_shape`` is kept for figures, the report and outputs (``sample`` and
        ``reconstruct`` return (N, *x_shape)).
    z_dim : int, default 2
        Latent dimension Z.
    hidden : sequence of int, default (128, 128)
        Hidden widths of the encoder; the decoder mirrors them.
    likelihood : Gaussian or Bernoulli, default ``Gaussian(variance=0.1)``
        The decoder's distribution p(x|z, c).
    condition : OneHot, Continuous or None
        Makes the model a conditional VAE: c is injected into encoder and decoder.
    activation : str, default "relu"
        One of ``vaekit.nn.ACTIVATIONS``.
    standardize : bool, default False
        Learn on (x - mean) / std of the training data. The statistics are stored with the
        model and undone by :meth:`decode`, :meth:`sample` and :meth:`reconstruct`, so every
        output and every likelihood is in the user's units.
    prior : StandardNormal or MixturePrior, default ``StandardNormal()``
        p(z). ``MixturePrior(k)`` is a learned mixture of k Gaussians, trained with the model.
    seed : int or None
        Seed for the initial weights; ``None`` draws from torch's global generator.

    """

    config_class: ClassVar[type[ModelConfig]] = VAEConfig

    def __init__(
        self,
        x_dim: int | Sequence[int],
        z_dim: int = 2,
        *,
        hidden: Sequence[int] = (128, 128),
        likelihood: Likelihood | None = None,
        condition: Condition | None = None,
        activation: str = "relu",
        standardize: bool = False,
        prior: Prior | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.x_shape = _shape(x_dim)
        self.x_dim = flat_dim(self.x_shape)
        self.z_dim = positive_int(z_dim, "z_dim")
        if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
            raise InputTypeError(f"hidden must be a sequence of layer widths. Got {describe(hidden)} instead.")
        self.hidden = tuple(positive_int(h, "hidden[i]") for h in hidden)
        likelihood = Gaussian() if likelihood is None else likelihood
        if not isinstance(likelihood, (Gaussian, Bernoulli)):
            raise InputTypeError(
                f"likelihood must be vaekit.Gaussian(...) or vaekit.Bernoulli(). Got {describe(likelihood)} instead."
            )
        if condition is not None and not isinstance(condition, (OneHot, Continuous)):
            raise InputTypeError(
                f"condition must be vaekit.OneHot(n) or vaekit.Continuous(dim), or None. Got {describe(condition)} instead."
            )
        if activation not in ACTIVATIONS:
            raise InputError(f"activation must be one of {sorted(ACTIVATIONS)}. Got {activation!r} instead.")
        if not isinstance(standardize, bool):
            raise InputTypeError(f"standardize must be True or False. Got {describe(standardize)} instead.")
        prior = StandardNormal() if prior is None else prior
        if type(prior) not in PRIORS.values():
            names = ", ".join(f"vaekit.{c.__name__}" for c in PRIORS.values())
            raise InputTypeError(f"prior must be one of {names}. Got {describe(prior)} instead.")
        if standardize and isinstance(likelihood, Bernoulli):
            raise InputError(
                "standardize must be False with a Bernoulli likelihood (data must stay in [0, 1]). Got True instead."
            )
        self.likelihood = likelihood
        self.condition = condition
        self.activation = activation
        self.standardize = standardize
        self.prior_spec = prior
        self.seed = seed

        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            self.encoder = ConditionedMLP(self.x_dim, self.hidden, 2 * self.z_dim, condition=condition, activation=activation)
            self.decoder = ConditionedMLP(
                self.z_dim, self.hidden[::-1], likelihood.out_features(self.x_dim), condition=condition, activation=activation
            )
            # Built after the networks: a learned prior draws its initial values from the same seed
            # without changing the networks' (a StandardNormal draws nothing).
            self.prior_net = prior.build(self.z_dim)
        self.likelihood_head = likelihood.head(self.x_dim)
        # Standardisation statistics; identity until fit() (or the user) sets them.
        self.register_buffer("x_shift", torch.zeros(self.x_dim))
        self.register_buffer("x_scale", torch.ones(self.x_dim))

    # ------------------------------------------------------------------ configuration
    @property
    def architecture(self) -> VAEConfig:
        """Everything needed to rebuild this architecture (see :class:`VAEConfig`)."""
        return VAEConfig(
            x_dim=self.x_dim,
            z_dim=self.z_dim,
            hidden=self.hidden,
            activation=self.activation,
            likelihood=self.likelihood,
            condition=self.condition,
            standardize=self.standardize,
            prior=self.prior_spec,
            x_shape=None if self.x_shape == (self.x_dim,) else self.x_shape,
        )

    @property
    def config(self) -> dict[str, Any]:
        """The architecture as JSON (``model.json``'s ``config``)."""
        return self.architecture.to_dict()

    @classmethod
    def from_architecture(cls, arch: VAEConfig) -> VAE:
        """Build an untrained model from a :class:`VAEConfig`."""
        return cls(
            arch.x_dim if arch.x_shape is None else arch.x_shape,
            arch.z_dim,
            hidden=arch.hidden,
            activation=arch.activation,
            likelihood=arch.likelihood,
            condition=arch.condition,
            standardize=arch.standardize,
            prior=arch.prior,
        )

    @classmethod
    def examples(cls) -> dict[str, VAEConfig]:
        """Small architectures that cover every option: the conformance suite trains and checks each.

        Part of the model contract: a new model lists its own, and ``tests/test_conformance.py``
        runs every check (save/load, resume, History, evaluate, figures, report, sweep, bounds) on
        them with no further test code.
        """
        from vaekit.conditions import Continuous, OneHot
        from vaekit.distributions import MixturePrior

        small = {"z_dim": 2, "hidden": (16,)}
        return {
            "gaussian": VAEConfig(x_dim=2, **small),
            "learned-variance-onehot": VAEConfig(x_dim=2, likelihood=Gaussian("learned"), condition=OneHot(4), **small),
            "per-point-continuous-standardized": VAEConfig(
                x_dim=3, likelihood=Gaussian("per_point"), condition=Continuous(1, embed=4), standardize=True, **small
            ),
            "bernoulli-image": VAEConfig(x_dim=16, x_shape=(4, 4), likelihood=Bernoulli(), z_dim=3, hidden=(16,)),
            "mixture-prior": VAEConfig(x_dim=2, prior=MixturePrior(3), **small),
            "mixture-prior-onehot-tanh": VAEConfig(
                x_dim=2, prior=MixturePrior(2), condition=OneHot(3), activation="tanh", **small
            ),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> VAE:
        """Build an untrained model from :attr:`config` (checked: keys, types, ranges)."""
        arch = VAEConfig.from_dict(config)
        if arch.x_shape is not None and flat_dim(arch.x_shape) != arch.x_dim:
            raise InputError(f"x_dim must be the product of x_shape {list(arch.x_shape)}. Got {arch.x_dim} instead.")
        return cls.from_architecture(arch)

    @property
    def device(self) -> torch.device:
        """Device the weights live on."""
        return self.x_shift.device

    @property
    def dtype(self) -> torch.dtype:
        """Floating-point type of the weights (float32 unless the user called ``.double()``)."""
        return self.x_shift.dtype

    def set_scaling(self, x: torch.Tensor) -> None:
        """Store mean and std of training data ``x`` (N, D) when the model standardises."""
        if not self.standardize:
            return
        std = x.std(dim=0, correction=0)
        # A constant column would divide by zero; leave it unscaled.
        std = torch.where(std > 1e-8, std, torch.ones_like(std))
        self.x_shift.copy_(x.mean(dim=0))
        self.x_scale.copy_(std)

    # ------------------------------------------------------------------ input checking
    def prepare_x(self, x: Any, name: str = "x") -> torch.Tensor:
        """Validate data (N, D) or (N, *x_shape): finite float (N, D) on the model's device, in its dtype."""
        return float_matrix(_flat_rows(x, self.x_shape), name, width=self.x_dim).to(self.device, self.dtype)

    def prepare_z(self, z: Any, name: str = "z") -> torch.Tensor:
        """Validate latent codes: finite float (N, z_dim); returned on the model's device, in its dtype."""
        return float_matrix(z, name, width=self.z_dim).to(self.device, self.dtype)

    def prepare_condition(self, c: Any, n: int, name: str = "condition") -> torch.Tensor | None:
        """Validate a condition for ``n`` rows against the model's condition spec."""
        if self.condition is None:
            if c is not None:
                raise InputError(
                    f"{name} must be None: this model is unconditional (built without condition=). Got {describe(c)} instead."
                )
            return None
        if c is None:
            raise InputError(f"{name} is required: this model was built with condition={self.condition}. Got None instead.")
        prepared = self.condition.prepare(broadcast_condition(self.condition, c, n), name)
        if prepared.shape[0] != n:
            raise InputError(f"{name} must have one row per data row ({n}). Got {prepared.shape[0]} rows instead.")
        return prepared.to(self.device, self.dtype)

    # ------------------------------------------------------------------ batch interface (trusted tensors)
    def encode_batch(self, x: torch.Tensor, c: torch.Tensor | None = None) -> Independent:
        """q(z|x,c) for prepared tensors x (B, D), c (B, C); no checks (used by objectives)."""
        if self.standardize:
            x = (x - self.x_shift) / self.x_scale
        mean, logvar = _in_chunks(self.encoder, x, c).chunk(2, dim=-1)  # (B, Z) each
        std = (0.5 * logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)).exp()
        return diagonal_normal(mean, std)

    def decode_batch(self, z: torch.Tensor, c: torch.Tensor | None = None) -> Distribution:
        """p(x|z,c) for prepared tensors z (B, Z), c (B, C), in the user's units; no checks."""
        h = _in_chunks(self.decoder, z, c)  # (B, out)
        if self.standardize:
            return self.likelihood_head(h, self.x_shift, self.x_scale)
        return self.likelihood_head(h, None, None)

    def prior(self) -> Distribution:
        """p(z), event shape (Z,): N(0, I) unless the model was built with another ``prior``."""
        return self.prior_net()

    # ------------------------------------------------------------------ public interface
    def encode(self, x: Any, condition: Any = None) -> Independent:
        """q(z|x, c): a diagonal Gaussian with ``.mean`` and ``.stddev`` of shape (N, Z).

        Parameters
        ----------
        x : array (N, D)
        condition : array (N,) labels for OneHot, (N, dim) values for Continuous; a single
            label/value is broadcast to every row.

        """
        xt = self.prepare_x(x)
        c = self.prepare_condition(condition, xt.shape[0])
        return self.encode_batch(xt, c)

    def decode(self, z: Any, condition: Any = None) -> Distribution:
        """p(x|z, c) in the user's units; ``.mean`` has shape (N, D)."""
        zt = self.prepare_z(z)
        c = self.prepare_condition(condition, zt.shape[0])
        return self.decode_batch(zt, c)

    @torch.no_grad()
    def sample(self, n: int, condition: Any = None, *, seed: int | None = None, noise: bool = False) -> np.ndarray:
        """Draw z ~ p(z) and decode: numpy (n, D).

        Returns the decoder means (the lecture's samples) unless ``noise=True``, which draws
        x ~ p(x|z, c) instead.
        """
        n = positive_int(n, "n")
        generator = torch.Generator(device=self.device)
        if seed is not None:
            generator.manual_seed(seed)
        else:
            generator.seed()
        c = self.prepare_condition(condition, n)
        z = draw(self.prior(), (n,), generator)  # (n, Z)
        px = self.decode_batch(z, c)
        if not noise:
            return self.shaped(px.mean.cpu().numpy())
        return self.shaped(_sample_with(px, generator).cpu().numpy())

    @torch.no_grad()
    def reconstruct(self, x: Any, condition: Any = None) -> np.ndarray:
        """Decode the posterior mean of each point: numpy (N, D) of p(x | E[z|x], c) means."""
        xt = self.prepare_x(x)
        c = self.prepare_condition(condition, xt.shape[0])
        return self.shaped(self.decode_batch(self.encode_batch(xt, c).mean, c).mean.cpu().numpy())

    def shaped(self, rows: np.ndarray) -> np.ndarray:
        """Flat rows (N, D) viewed as (N, *x_shape)."""
        return rows.reshape(rows.shape[0], *self.x_shape)

    def save(self, path: str | Path) -> Path:
        """Write ``model.safetensors`` and ``model.json`` into folder ``path``; see :func:`vaekit.save`."""
        return save(self, path)


# Rows per network call. One (1e6 x 128) activation matrix spills out of cache; blocks of 8192
# rows stay in it, which made encode/decode of 1e6 points about 3-4x faster on a 2-core CPU.
_CHUNK_ROWS = 8192


def _in_chunks(net: nn.Module, inputs: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    """``net(inputs, c)`` evaluated over blocks of rows and concatenated: (N, out)."""
    n = inputs.shape[0]
    if n <= _CHUNK_ROWS:
        return net(inputs, c)
    blocks = [net(inputs[i : i + _CHUNK_ROWS], None if c is None else c[i : i + _CHUNK_ROWS]) for i in range(0, n, _CHUNK_ROWS)]
    return torch.cat(blocks)


def _sample_with(px: Distribution, generator: torch.Generator) -> torch.Tensor:
    """Draw from a Normal or Bernoulli ``px`` with an explicit generator (rsample has none)."""
    base = px.base_dist
    if hasattr(base, "loc"):
        noise = torch.randn(base.loc.shape, generator=generator, device=base.loc.device, dtype=base.loc.dtype)
        return base.loc + base.scale * noise
    return torch.bernoulli(base.probs, generator=generator)


def _shape(x_dim: Any) -> tuple[int, ...]:
    """x_dim (an int D or a shape) -> the shape of one point, checked."""
    if isinstance(x_dim, (tuple, list)):
        if not x_dim:
            raise InputError("x_dim must be a positive int or a non-empty shape such as (8, 8). Got () instead.")
        return tuple(positive_int(d, "x_dim[i]") for d in x_dim)
    return (positive_int(x_dim, "x_dim"),)


def _flat_rows(x: Any, x_shape: tuple[int, ...]) -> Any:
    """(N, *x_shape) arrays -> (N, D); anything else passes through for float_matrix to check."""
    shape = getattr(x, "shape", None)
    if len(x_shape) > 1 and shape is not None and tuple(shape[1:]) == x_shape:
        return x.reshape(shape[0], -1)
    return x
