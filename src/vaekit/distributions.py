"""Likelihoods p(x|z), the prior p(z), and closed forms used by the objectives.

A likelihood *spec* (``Gaussian(variance=0.1)``, ``Bernoulli()``) is a frozen dataclass that
can be written to JSON. ``spec.head(x_dim)`` builds the small module that turns the decoder's
last layer into a torch ``Distribution`` over x, in the user's units (standardisation undone).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn
from torch.distributions import Bernoulli as TorchBernoulli
from torch.distributions import Distribution, Independent, Normal

from vaekit.errors import InputError
from vaekit.validate import positive_float

LOG_2PI = math.log(2.0 * math.pi)

# Bounds on every log-variance the networks produce: exp(-18) ~ 1.5e-8 and exp(12) ~ 1.6e5 keep
# std, its square and its reciprocal finite in float32 while leaving every sensible value free.
LOGVAR_MIN, LOGVAR_MAX = -18.0, 12.0


def diagonal_normal(mean: torch.Tensor, std: torch.Tensor) -> Independent:
    """Diagonal Gaussian over the last axis (event shape (D,)); no argument validation on the hot path."""
    return Independent(Normal(mean, std, validate_args=False), 1, validate_args=False)


def standard_normal(z_dim: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Independent:
    """The prior p(z) = N(0, I) over ``z_dim`` dimensions."""
    zeros = torch.zeros(z_dim, device=device, dtype=dtype)
    return diagonal_normal(zeros, torch.ones_like(zeros))


def kl_per_dimension(qz: Independent, pz: Independent) -> torch.Tensor:
    """Closed-form KL(q || p) per latent dimension for diagonal Gaussians; shape (B, Z).

    KL_d = log(s_p / s_q) + (s_q^2 + (m_q - m_p)^2) / (2 s_p^2) - 1/2.
    """
    q, p = qz.base_dist, pz.base_dist
    var_ratio = (q.scale / p.scale) ** 2
    mean_term = ((q.loc - p.loc) / p.scale) ** 2
    return 0.5 * (var_ratio + mean_term - 1.0 - var_ratio.log())


@dataclass(frozen=True)
class Gaussian:
    """Gaussian likelihood p(x|z) = N(x; mu(z), sigma^2).

    Parameters
    ----------
    variance : float or {"learned", "per_point"}
        A number fixes sigma^2 for every dimension (the lecture's ``reconstruction_variance``,
        in standardised units when the model standardises). ``"learned"`` learns one variance
        per data dimension; ``"per_point"`` lets the decoder output a variance for each point.
    min_variance : float
        Floor for learned variances, so the likelihood cannot diverge on exact data.

    """

    variance: float | Literal["learned", "per_point"] = 0.1
    min_variance: float = 1e-4
    kind: ClassVar[str] = "gaussian"

    def __post_init__(self) -> None:
        if isinstance(self.variance, str):
            if self.variance not in ("learned", "per_point"):
                raise InputError(
                    f"Gaussian.variance must be a positive number, 'learned' or 'per_point'. Got {self.variance!r} instead."
                )
        else:
            positive_float(self.variance, "Gaussian.variance")
        positive_float(self.min_variance, "Gaussian.min_variance")

    def out_features(self, x_dim: int) -> int:
        """Width of the decoder output this likelihood reads."""
        return 2 * x_dim if self.variance == "per_point" else x_dim

    def head(self, x_dim: int) -> nn.Module:
        """Module mapping decoder output (B, out_features) to a Distribution over (B, x_dim)."""
        return _GaussianHead(self, x_dim)

    def to_config(self) -> dict[str, Any]:
        """JSON-ready description (inverse of :func:`likelihood_from_config`)."""
        return {"type": self.kind, **asdict(self)}


class _GaussianHead(nn.Module):
    def __init__(self, spec: Gaussian, x_dim: int) -> None:
        super().__init__()
        self.mode = spec.variance if isinstance(spec.variance, str) else "fixed"
        self.min_variance = spec.min_variance
        if self.mode == "fixed":
            self.register_buffer("fixed_std", torch.full((x_dim,), math.sqrt(spec.variance)))
        if self.mode == "learned":
            # softplus(0.5413) = 1: start at unit variance.
            self.raw_variance = nn.Parameter(torch.full((x_dim,), 0.5413))

    def forward(self, h: torch.Tensor, shift: torch.Tensor | None, scale: torch.Tensor | None) -> Independent:
        if self.mode == "fixed":
            mean, std = h, self.fixed_std.expand_as(h)
        elif self.mode == "learned":
            mean = h
            std = (self.min_variance + nn.functional.softplus(self.raw_variance)).sqrt().expand_as(h)
        else:
            mean, raw = h.chunk(2, dim=-1)
            std = (self.min_variance + nn.functional.softplus(raw)).sqrt()
        if scale is not None:
            mean, std = mean * scale + shift, std * scale
        return diagonal_normal(mean, std)


@dataclass(frozen=True)
class Bernoulli:
    """Bernoulli likelihood for data in [0, 1] (binary or grey-level images).

    For grey levels the log-probability is the usual binary cross-entropy, which is not a
    normalised density over [0, 1]; metrics that report nats say so.
    """

    kind: ClassVar[str] = "bernoulli"

    def out_features(self, x_dim: int) -> int:
        """Width of the decoder output this likelihood reads (one logit per dimension)."""
        return x_dim

    def head(self, x_dim: int) -> nn.Module:
        """Module mapping logits (B, x_dim) to a Distribution over (B, x_dim)."""
        return _BernoulliHead()

    def to_config(self) -> dict[str, Any]:
        """JSON-ready description (inverse of :func:`likelihood_from_config`)."""
        return {"type": self.kind}


class _BernoulliHead(nn.Module):
    def forward(self, h: torch.Tensor, shift: torch.Tensor | None, scale: torch.Tensor | None) -> Independent:
        return Independent(TorchBernoulli(logits=h, validate_args=False), 1, validate_args=False)


Likelihood = Gaussian | Bernoulli

LIKELIHOODS: dict[str, type] = {"gaussian": Gaussian, "bernoulli": Bernoulli}


def likelihood_from_config(config: dict[str, Any]) -> Likelihood:
    """Rebuild a likelihood spec from :meth:`to_config` output."""
    from vaekit.configs import spec_from_config

    return spec_from_config(config, LIKELIHOODS, "likelihood")


def _normal_energy(px: Distribution, x: torch.Tensor) -> torch.Tensor:
    base = px.base_dist
    return (((x - base.loc) / base.scale) ** 2).sum(-1) / 2


def _bernoulli_energy(px: Distribution, x: torch.Tensor) -> torch.Tensor:
    return -px.log_prob(x)


# The lecture's reconstruction term, sum((x - mean)^2) / (2 sigma^2), is -log p(x|z) without its
# normalising constant. Keyed by the base distribution's type: no "mse"/"bce" branches in models.
_ENERGIES = {Normal: _normal_energy, TorchBernoulli: _bernoulli_energy}


def reconstruction_energy(px: Distribution, x: torch.Tensor) -> torch.Tensor:
    """-log p(x|z) up to its x-independent constant (the lecture's units); shape (B,)."""
    return _ENERGIES[type(px.base_dist)](px, x)
