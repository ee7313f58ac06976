"""Training objectives. The model returns distributions; the objective owns the loss.

Every objective returns one :class:`LossOutput` of per-sample terms (all in nats, except
``reconstruction``, which is in the lecture's units). Variants are arguments:
beta-VAE is ``ELBO(beta=4)``, KL annealing ``ELBO(warmup_epochs=50)``, free bits
``ELBO(free_bits=0.1)``, the importance-weighted bound ``IWAE(k=5)``; the VQ-VAE's loss is ``VQ()``.

An objective may also define ``epoch_begin(model)`` and ``epoch_end(model, epoch) -> dict``:
:func:`vaekit.fit` calls them around every training epoch and adds the dict to that epoch's
History record (quantities of a whole epoch, such as the VQ-VAE's codebook perplexity).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch.distributions import Distribution

from vaekit.distributions import kl as kl_terms
from vaekit.distributions import reconstruction_energy
from vaekit.errors import InputError, InputTypeError, describe
from vaekit.validate import positive_float, positive_int

if TYPE_CHECKING:
    from vaekit.models.base import LatentVariableModel

logger = logging.getLogger(__name__)


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


def _require_kl(model: Any, objective: Any) -> None:
    """Refuse a model that declares it has no KL (a VQ-VAE) before its prior is asked for one."""
    reason = getattr(model, "metrics_not_applicable", {}).get("kl")
    if reason:
        wanted = default_objective(model)
        raise InputError(
            f"objective must be one the model supports, e.g. vaekit.{type(wanted).__name__}() for a "
            f"{type(model).__name__} ({reason}). Got {type(objective).__name__} instead."
        )


def default_objective(model: Any) -> Any:
    """The objective ``model`` trains with when none is given, with default settings.

    The kind its class names in ``default_objective`` (``"vq"``); ``ELBO()`` when it names none.
    """
    return OBJECTIVES[getattr(type(model), "default_objective", "elbo")]()


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
        _require_kl(model, self)
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
        _require_kl(model, self)
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


@dataclass(frozen=True)
class VQ:
    """The VQ-VAE loss of van den Oord et al. (2017).

    Per point, loss = -log p(x|z_q) + ||sg[z_e] - e||^2 + commitment * ||z_e - sg[e]||^2,

    z_e the encoder output (B, G, code_dim), e = z_q its nearest codebook vectors, sg the stop
    gradient; squared norms are summed over the G codes and code_dim. The decoder's gradient
    reaches the encoder through the straight-through estimate (see :class:`vaekit.VQVAE`).

    Parameters
    ----------
    commitment : float, default 0.25
        Weight of the commitment term (the paper's beta), which keeps z_e close to its code.
    ema : float or None, default None
        With a decay in (0, 1), the codebook is not learned by gradient but set to exponential
        moving averages of the encoder outputs assigned to each code (cluster sizes and sums,
        Laplace-smoothed; the paper's appendix), and the codebook term leaves the loss. The
        averages move only in training passes (``model.training`` and gradients enabled),
        never in evaluation or validation passes.
    restart_dead : bool, default True
        After every training epoch, codes that no point used during the whole epoch are moved
        onto encoder outputs drawn uniformly (torch's RNG, so seeded runs repeat) from the last
        ``VQVAE.RESTART_POOL`` encoder outputs of that epoch; how many is logged at INFO.

    Terms: ``reconstruction`` and ``reconstruction_nll`` as for the ELBO, ``codebook``
    (||sg[z_e] - e||^2, logged also under EMA, where it is not minimised) and ``commitment``
    (commitment * ||z_e - sg[e]||^2, as it enters the loss). There is no ``kl``: the encoder is
    deterministic. Each epoch adds ``perplexity`` (exp of the entropy of the code frequencies over
    all assignments of the epoch) and ``codes_used`` (codes assigned at least once in it).

    """

    commitment: float = 0.25
    ema: float | None = None
    restart_dead: bool = True
    kind: ClassVar[str] = "vq"

    def __post_init__(self) -> None:
        positive_float(self.commitment, "VQ.commitment", allow_zero=True)
        if self.ema is not None:
            decay = positive_float(self.ema, "VQ.ema")
            if decay >= 1.0:
                raise InputError(f"VQ.ema must be a decay in (0, 1) or None. Got {self.ema} instead.")
        if not isinstance(self.restart_dead, bool):
            raise InputTypeError(f"VQ.restart_dead must be True or False. Got {describe(self.restart_dead)} instead.")

    def __call__(
        self, model: LatentVariableModel, x: torch.Tensor, c: torch.Tensor | None = None, *, epoch: int | None = None
    ) -> LossOutput:
        """Terms for a batch x (B, D), c (B, C); updates the EMA codebook in training passes."""
        _require_codebook(model)
        qz = model.encode_batch(x, c)
        px = model.decode_batch(qz.rsample(), c)  # straight-through: value z_q, gradient into z_e
        nll = -px.log_prob(x)  # (B,)
        codebook = (qz.z_e.detach() - qz.z_q).pow(2).sum((1, 2))  # (B,) gradient into the codebook only
        commitment = self.commitment * (qz.z_e - qz.z_q.detach()).pow(2).sum((1, 2))  # (B,) into the encoder only
        if self.ema is None:
            loss = nll + codebook + commitment
        else:
            loss = nll + commitment
            if model.training and torch.is_grad_enabled():
                model.ema_update(qz.z_e.detach(), qz.codes, self.ema)
        terms = {"reconstruction": reconstruction_energy(px, x), "reconstruction_nll": nll}
        terms |= {"codebook": codebook, "commitment": commitment}
        return LossOutput(loss, terms)

    def epoch_begin(self, model: Any) -> None:
        """Start counting code assignments for the epoch (called by ``fit``)."""
        _require_codebook(model)
        model.reset_usage()

    def epoch_end(self, model: Any, epoch: int) -> dict[str, float]:
        """``perplexity`` and ``codes_used`` of the epoch's assignments; then restart dead codes."""
        record = model.code_usage()
        if self.restart_dead:
            restarted = model.restart_dead_codes()
            if restarted:
                logger.info("epoch %d: restarted %d unused codes of %d", epoch + 1, restarted, model.codebook_size)
        return record

    def to_config(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {"type": self.kind, **asdict(self)}


def _require_codebook(model: Any) -> None:
    if not hasattr(model, "ema_update"):
        raise InputTypeError(
            f"model must have a codebook (a vaekit.VQVAE) for the VQ objective. Got {type(model).__name__} instead."
        )


# Objective kind (``to_config()["type"]``, the [training] objective setting) -> class.
OBJECTIVES: dict[str, type] = {cls.kind: cls for cls in (ELBO, IWAE, VQ)}
