"""Training objectives. The model returns distributions; the objective owns the loss.

Every objective returns one :class:`LossOutput` of per-sample terms (all in nats, except
``reconstruction``, which is in the lecture's units). Variants are arguments:
beta-VAE is ``ELBO(beta=4)``, KL annealing ``ELBO(warmup_epochs=50)``, free bits
``ELBO(free_bits=0.1)``, the importance-weighted bound ``IWAE(k=5)``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Protocol

import torch

from vaekit.distributions import kl_per_dimension, reconstruction_energy
from vaekit.validate import positive_float, positive_int


class LatentModel(Protocol):
    """What an objective needs from a model (VAE and later models alike)."""

    def encode_batch(self, x: torch.Tensor, c: torch.Tensor | None = None) -> Any: ...
    def decode_batch(self, z: torch.Tensor, c: torch.Tensor | None = None) -> Any: ...
    def prior(self) -> Any: ...


@dataclass
class LossOutput:
    """Per-sample terms of one batch.

    Attributes
    ----------
    loss : (B,) the quantity minimised, in nats.
    reconstruction : (B,) -log p(x|z) without its normalising constant: the lecture's
        sum((x - mean)^2) / (2 sigma^2) for a Gaussian.
    reconstruction_nll : (B,) -log p(x|z) in nats, normalising constant included.
    kl : (B,) KL(q(z|x) || p(z)) in nats.
    kl_per_dim : (B, Z) the same, per latent dimension.
    neg_elbo : (B,) reconstruction_nll + kl, the negative ELBO in nats (independent of beta).

    """

    loss: torch.Tensor
    reconstruction: torch.Tensor
    reconstruction_nll: torch.Tensor
    kl: torch.Tensor
    kl_per_dim: torch.Tensor
    neg_elbo: torch.Tensor

    def terms(self) -> dict[str, torch.Tensor]:
        """Name -> per-sample tensor, (B,) or (B, K), for logging and history."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class ELBO:
    """Negative evidence lower bound, -E_q[log p(x|z)] + beta * KL(q(z|x) || p(z)).

    Parameters
    ----------
    beta : float, default 1.0
        Weight of the KL term (beta > 1: beta-VAE).
    warmup_epochs : int, default 0
        Linear KL annealing: beta grows from 0 to ``beta`` over this many epochs.
    free_bits : float, default 0.0
        Minimum KL in nats per latent dimension (batch mean) below which the KL term of that
        dimension is not penalised (Kingma et al., 2016).

    """

    beta: float = 1.0
    warmup_epochs: int = 0
    free_bits: float = 0.0
    kind: ClassVar[str] = "elbo"

    def __post_init__(self) -> None:
        positive_float(self.beta, "ELBO.beta", allow_zero=True)
        positive_int(self.warmup_epochs, "ELBO.warmup_epochs", minimum=0)
        positive_float(self.free_bits, "ELBO.free_bits", allow_zero=True)

    def beta_at(self, epoch: int | None) -> float:
        """KL weight used during ``epoch`` (0-based)."""
        if not self.warmup_epochs or epoch is None:
            return self.beta
        return self.beta * min(1.0, (epoch + 1) / self.warmup_epochs)

    def __call__(
        self, model: LatentModel, x: torch.Tensor, c: torch.Tensor | None = None, *, epoch: int | None = None
    ) -> LossOutput:
        """Terms for a batch x (B, D), c (B, C) with one reparameterised z per point."""
        qz = model.encode_batch(x, c)
        z = qz.rsample()  # (B, Z)
        px = model.decode_batch(z, c)
        nll = -px.log_prob(x)  # (B,)
        kl_dim = kl_per_dimension(qz, model.prior())  # (B, Z)
        kl = kl_dim.sum(-1)
        penalised = kl
        if self.free_bits > 0:
            # Dimensions whose batch-mean KL is under the floor cost a constant: no gradient.
            below = kl_dim.detach().mean(0) < self.free_bits  # (Z,)
            penalised = torch.where(below, torch.full_like(kl_dim, self.free_bits), kl_dim).sum(-1)
        loss = nll + self.beta_at(epoch) * penalised
        return LossOutput(loss, reconstruction_energy(px, x), nll, kl, kl_dim, nll + kl)

    def to_config(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {"type": self.kind, **asdict(self)}


@dataclass(frozen=True)
class IWAE:
    """Importance-weighted bound with ``k`` samples (Burda et al., 2016).

    loss = -log (1/k) sum_k p(x|z_k) p(z_k) / q(z_k|x); for k=1 it equals the ELBO.
    The reconstruction and KL terms reported alongside are averages over the k samples.
    """

    k: int = 5
    kind: ClassVar[str] = "iwae"

    def __post_init__(self) -> None:
        positive_int(self.k, "IWAE.k")

    def __call__(
        self, model: LatentModel, x: torch.Tensor, c: torch.Tensor | None = None, *, epoch: int | None = None
    ) -> LossOutput:
        """Terms for a batch x (B, D), c (B, C) with k reparameterised z per point."""
        qz = model.encode_batch(x, c)
        z = qz.rsample((self.k,))  # (K, B, Z)
        batch = x.shape[0]
        flat_c = None if c is None else c.expand(self.k, *c.shape).reshape(self.k * batch, -1)
        px = model.decode_batch(z.reshape(self.k * batch, -1), flat_c)
        x_rep = x.expand(self.k, *x.shape).reshape(self.k * batch, -1)
        log_px = px.log_prob(x_rep).view(self.k, batch)  # (K, B)
        log_w = log_px + model.prior().log_prob(z) - qz.log_prob(z)  # (K, B)
        bound = torch.logsumexp(log_w, dim=0) - math.log(self.k)  # (B,)
        kl_dim = kl_per_dimension(qz, model.prior())
        energy = reconstruction_energy(px, x_rep).view(self.k, batch).mean(0)
        nll = -log_px.mean(0)
        return LossOutput(-bound, energy, nll, kl_dim.sum(-1), kl_dim, nll + kl_dim.sum(-1))

    def to_config(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {"type": self.kind, **asdict(self)}
