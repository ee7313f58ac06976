"""Training objectives. The model returns distributions; the objective owns the loss.

Every objective returns one :class:`LossOutput` of per-sample terms (all in nats, except
``reconstruction``, which is in the lecture's units). Variants are arguments:
beta-VAE is ``ELBO(beta=4)``, KL annealing ``ELBO(warmup_epochs=50)``, free bits
``ELBO(free_bits=0.1)``, the importance-weighted bound ``IWAE(k=5)``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch.distributions import Distribution

from vaekit.distributions import kl as kl_terms
from vaekit.distributions import reconstruction_energy
from vaekit.errors import InputError
from vaekit.validate import positive_float, positive_int

if TYPE_CHECKING:
    from vaekit.models.base import LatentVariableModel


@dataclass
class LossOutput:
    """Per-sample terms of one batch: the quantity minimised and everything worth logging.

    Attributes
    ----------
    loss : (B,) the quantity minimised, in nats.
    terms : dict name -> (B,) or (B, K) per-sample tensors, logged to History under their names.
        ELBO and IWAE give ``reconstruction`` (-log p(x|z) without its normalising constant: the
        lecture's sum((x - mean)^2) / (2 sigma^2) for a Gaussian), ``reconstruction_nll``
        (-log p(x|z) in nats), ``kl`` (KL(q(z|x) || p(z)) in nats; a one-sample Monte Carlo
        estimate where no closed form exists), ``kl_per_dim`` ((B, Z), only where the KL splits
        over dimensions) and ``neg_elbo`` (reconstruction_nll + kl, independent of beta). Other
        objectives and models add their own (per-layer KL, codebook and commitment terms).

    ``out.kl`` reads ``out.terms["kl"]``.

    """

    loss: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)

    def __getattr__(self, name: str) -> torch.Tensor:
        terms = self.__dict__.get("terms", {})
        if name in terms:
            return terms[name]
        raise AttributeError(f"LossOutput has no term {name!r}; terms are {sorted(terms)}")

    def record(self) -> dict[str, torch.Tensor]:
        """``{"loss": loss, **terms}``: what the trainer sums into History."""
        return {"loss": self.loss, **self.terms}


def _elbo_terms(px: Distribution, x: torch.Tensor, nll: torch.Tensor, kl: torch.Tensor, kl_dim: torch.Tensor | None) -> dict:
    terms = {"reconstruction": reconstruction_energy(px, x), "reconstruction_nll": nll, "kl": kl}
    if kl_dim is not None:
        terms["kl_per_dim"] = kl_dim
    terms["neg_elbo"] = nll + kl
    return terms


def _kl(model: Any, x: torch.Tensor, c: torch.Tensor | None, qz: Distribution, pz: Distribution, z: torch.Tensor) -> tuple:
    """KL per point, its per-dimension split or None, and the model's named KL parts (may be empty).

    A model with the optional hook ``kl_terms(x, c, qz, z)`` (models/base.py) splits the KL into
    parts, e.g. one per latent layer; their sum, an estimate of the same expectation with less
    variance than log q(z) - log p(z), is the KL.
    """
    hook = getattr(model, "kl_terms", None)
    if hook is None:
        return (*kl_terms(qz, pz, z), {})
    parts = hook(x, c, qz, z)
    return sum(parts.values()), None, parts


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
        self, model: LatentVariableModel, x: torch.Tensor, c: torch.Tensor | None = None, *, epoch: int | None = None
    ) -> LossOutput:
        """Terms for a batch x (B, D), c (B, C) with one reparameterised z per point."""
        qz = model.encode_batch(x, c)
        z = qz.rsample()  # (B, Z)
        px = model.decode_batch(z, c)
        nll = -px.log_prob(x)  # (B,)
        kl, kl_dim, parts = _kl(model, x, c, qz, model.prior(), z)  # (B,), (B, Z) or None, {name: (B,)}
        penalised = kl
        if self.free_bits > 0:
            if kl_dim is None:
                kinds = f"q={type(qz).__name__}, p={type(model.prior()).__name__}"
                raise InputError(
                    "ELBO.free_bits needs a KL that splits over latent dimensions (a diagonal Gaussian posterior "
                    f"and prior). Got free_bits={self.free_bits} with {kinds} instead."
                )
            # Dimensions whose batch-mean KL is under the floor cost a constant: no gradient.
            below = kl_dim.detach().mean(0) < self.free_bits  # (Z,)
            penalised = torch.where(below, torch.full_like(kl_dim, self.free_bits), kl_dim).sum(-1)
        loss = nll + self.beta_at(epoch) * penalised
        return LossOutput(loss, _elbo_terms(px, x, nll, kl, kl_dim) | parts)

    def accelerator(self, model: Any) -> Any:
        """The hand-written gradient engine for ``model`` where its structure allows one, else None.

        ``fit`` uses it only after it has matched autograd on the first batch.
        """
        from vaekit import fastpath  # imported when first needed: most objectives never use it

        return fastpath.engine_for(model, self)

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
        self, model: LatentVariableModel, x: torch.Tensor, c: torch.Tensor | None = None, *, epoch: int | None = None
    ) -> LossOutput:
        """Terms for a batch x (B, D), c (B, C) with k reparameterised z per point."""
        qz = model.encode_batch(x, c)
        z = qz.rsample((self.k,))  # (K, B, Z)
        batch = x.shape[0]
        flat_c = None if c is None else c.expand(self.k, *c.shape).reshape(self.k * batch, -1)
        px = model.decode_batch(z.reshape(self.k * batch, -1), flat_c)
        x_rep = x.expand(self.k, *x.shape).reshape(self.k * batch, -1)
        log_px = px.log_prob(x_rep).view(self.k, batch)  # (K, B)
        pz = model.prior()
        log_w = log_px + pz.log_prob(z) - qz.log_prob(z)  # (K, B)
        bound = torch.logsumexp(log_w, dim=0) - math.log(self.k)  # (B,)
        kl, kl_dim, parts = _kl(model, x, c, qz, pz, z[0])
        nll = -log_px.mean(0)
        terms = _elbo_terms(px, x_rep, nll, kl, kl_dim) | parts
        terms["reconstruction"] = terms["reconstruction"].view(self.k, batch).mean(0)
        return LossOutput(-bound, terms)

    def to_config(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {"type": self.kind, **asdict(self)}
