"""Normalizing-flow posteriors: a diagonal Gaussian pushed through invertible maps.

q(z|x, c) is the density of z_K = f_K(... f_1(z_0)), z_0 ~ N(mu(x, c), diag(sigma^2(x, c))):

    log q(z_K) = log N(z_0) - sum_k log |det df_k/dz (z_{k-1})|.

Two families, both posterior specs (``VAE(posterior=...)``) registered next to
:class:`vaekit.posteriors.DiagonalGaussian`:

- :class:`IAF`: inverse autoregressive flow (Kingma et al., 2016). Each step is a masked
  (MADE-style) network of (z, h(x)) giving a shift and a log-scale per dimension, the context h
  coming from the encoder, so every step depends on x.
- :class:`Planar`: planar flows (Rezende and Mohamed, 2015), f(z) = z + u_hat tanh(w.z + b), with
  u, w, b of every step read from the encoder output (amortised) and u_hat reparametrised so
  that w.u_hat > -1 (each step is invertible).

The distribution both return (:class:`FlowPosterior`) gives ``rsample``/``sample`` and
``log_prob`` for any z. The log-density of the draw just returned by ``rsample`` is kept (keyed
on the tensor object and its version counter), so the objectives' ``log_prob(z)`` of their own
draws costs nothing; any other z is inverted (IAF: Z sequential passes; planar: a monotone 1-D
equation per step, solved by bisection in float64).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Protocol

import torch
from torch import nn
from torch.distributions import Distribution, Independent, constraints
from torch.nn import functional as F

from vaekit.configs import register_spec
from vaekit.posteriors import DiagonalGaussianHead
from vaekit.validate import positive_int

# An IAF step scales by exp(a) with a = B tanh(raw / B): |a| <= B. Unbounded, one large network
# output (early in training, or with a big learning rate) makes exp(a) overflow float32 and
# log q infinite; with B = 3 each step scales by at most e^3 ~ 20 either way, and the tanh
# keeps the gradient near raw = 0 equal to the identity's.
LOG_SCALE_BOUND = 3.0

# Iterations of the planar inverse's safeguarded Newton method. Newton converges in a handful;
# the bound matters only where it keeps falling back to bisection, and 100 halvings shrink the
# bracket (width 2|w.u_hat|) below float64 spacing (2^-100 ~ 1e-30 relative).
_MAX_ITERATIONS = 100

# A planar step has w.u_hat = -1 + PLANAR_MIN_SLOPE + softplus(w.u): Rezende and Mohamed's
# m(s) = -1 + softplus(s) plus a floor. Without it softplus underflows to 0 for w.u below about
# -750 (float64; -100 in float32), w.u_hat rounds to -1 and the map flattens on the hyperplane
# w.z + b = 0 (log |det| = -inf there). With it |det| >= 1e-4 everywhere: log q stays finite.
PLANAR_MIN_SLOPE = 1e-4

_STEPS_HELP = "number of flow steps of a flow posterior (iaf, planar)"


class FlowStep(Protocol):
    """One invertible map with per-point parameters of batch shape (B,) that broadcast over sample dims."""

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(..., B, Z) -> (f(z) (..., B, Z), log |det df/dz| (..., B))."""
        ...

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(..., B, Z) -> (z = f^-1(y), log |det df/dz| at that z (..., B))."""
        ...


class FlowPosterior(Distribution):
    """q(z|x, c): ``base`` (a diagonal Gaussian, batch (B,), event (Z,)) pushed through ``steps``.

    Parameters
    ----------
    base : Independent(Normal) with batch shape (B,) and event shape (Z,)
    steps : sequence of :class:`FlowStep`, applied in order to draws of ``base``

    ``mean`` and ``stddev`` are not known in closed form (they raise ``NotImplementedError``, so
    :func:`vaekit.distributions.posterior_mean` averages draws), and ``kl_divergence`` has no
    rule for this class, so the objectives use the Monte Carlo KL.

    """

    arg_constraints: ClassVar[dict] = {}
    support = constraints.independent(constraints.real, 1)
    has_rsample = True

    def __init__(self, base: Independent, steps: list[FlowStep]) -> None:
        self.base = base
        self.steps = list(steps)
        self._last: tuple[torch.Tensor, int, torch.Tensor] | None = None  # (z, z._version, log q(z))
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    def rsample(self, sample_shape: torch.Size | tuple = ()) -> torch.Tensor:
        """Reparameterised draws (*sample_shape, B, Z); the base noise comes from torch's global RNG."""
        z = self.base.rsample(sample_shape)  # (*S, B, Z)
        log_q = self.base.log_prob(z)  # (*S, B)
        for step in self.steps:
            z, log_det = step.forward(z)
            log_q = log_q - log_det
        self._last = (z, z._version, log_q)
        return z

    def sample(self, sample_shape: torch.Size | tuple = ()) -> torch.Tensor:
        """Draws without gradient, (*sample_shape, B, Z)."""
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Log-density log q(z|x, c) of ``value`` (..., B, Z) -> (..., B).

        The draw last returned by :meth:`rsample` (the very tensor, unmodified) reads its
        log-density from the forward pass; anything else is inverted (:meth:`log_prob_by_inverse`).
        """
        last = self._last
        if last is not None and value is last[0] and value._version == last[1]:
            return last[2]
        return self.log_prob_by_inverse(value)

    def log_prob_by_inverse(self, value: torch.Tensor) -> torch.Tensor:
        """Log-density of ``value`` (..., B, Z) through the inverse of every step: (..., B).

        A value of another floating dtype than the flow's (a float64 quadrature grid against a
        float32 model) is evaluated in the flow's dtype, the precision its networks have anyway.
        """
        z, log_det = value.to(self.base.base_dist.loc.dtype), 0.0
        for step in reversed(self.steps):
            z, step_log_det = step.inverse(z)
            log_det = log_det + step_log_det
        return self.base.log_prob(z) - log_det


# ----------------------------------------------------------------------------- IAF
@register_spec("posterior")
@dataclass(frozen=True)
class IAF:
    """Inverse autoregressive flow posterior conditioned on x (Kingma et al., 2016).

    The encoder outputs the base Gaussian's mean and log-variance (2Z values) and a context
    vector h(x, c) of ``context`` values. Each of ``steps`` steps maps
    z -> shift(z, h) + exp(a(z, h)) * z, where shift_i and a_i depend on the z_j earlier in the
    step's variable order only (a masked network, MADE; Germain et al., 2015), so the Jacobian
    is triangular and log |det| = sum_i a_i. The order is reversed every other step. The
    log-scales are bounded, |a_i| <= 3 (:data:`LOG_SCALE_BOUND`).

    Every step's last layer starts at zero, so an untrained IAF is the identity: q starts as the
    diagonal Gaussian of the same encoder output and training moves it away.

    Parameters
    ----------
    steps : int, default 4
        Number of flow steps (>= 1).
    context : int, default 16
        Width of the context vector h(x, c) that conditions every step (>= 1).
    hidden : int, default 32
        Hidden width of each step's masked network (>= 1).

    """

    steps: int = field(default=4, metadata={"help": _STEPS_HELP})
    context: int = field(default=16, metadata={"help": "width of the IAF context vector h(x) conditioning every step"})
    hidden: int = field(default=32, metadata={"help": "hidden width of each IAF step's masked network"})
    kind: ClassVar[str] = "iaf"

    def __post_init__(self) -> None:
        positive_int(self.steps, "IAF.steps")
        positive_int(self.context, "IAF.context")
        positive_int(self.hidden, "IAF.hidden")

    def out_features(self, z_dim: int) -> int:
        """Width of the encoder output this posterior reads: mean, log-variance and context, 2Z + context."""
        return 2 * z_dim + self.context

    def build(self, z_dim: int) -> nn.Module:
        """Module mapping encoder output (B, 2Z + context) to q(z|x, c)."""
        return IAFHead(self, z_dim)

    def to_config(self) -> dict[str, Any]:
        """JSON-ready description (inverse of :func:`vaekit.posteriors.posterior_from_config`)."""
        return {"type": self.kind, **asdict(self)}


class MaskedStep(nn.Module):
    """The network of one IAF step: (z (..., B, Z), context (B, H)) -> shift, log-scale (..., B, Z) each.

    One hidden layer of ``hidden`` ELU units. Variable i has rank r_i (1..Z) in the step's order;
    hidden unit k has degree m_k = k mod Z and sees z_j only if m_k >= r_j (degree 0 units see
    the context only); output i sees unit k only if r_i > m_k. So output i depends on the z_j
    with r_j < r_i and on h. The context enters every hidden unit unmasked.
    """

    def __init__(self, z_dim: int, context: int, hidden: int, *, reverse: bool) -> None:
        super().__init__()
        order = torch.arange(z_dim).flip(0) if reverse else torch.arange(z_dim)
        rank = torch.empty(z_dim, dtype=torch.long)
        rank[order] = torch.arange(1, z_dim + 1)
        degree = torch.arange(hidden) % z_dim
        # Masks follow from (Z, hidden, order) alone: buffers that move with the model but are not saved.
        self.register_buffer("in_mask", (degree[:, None] >= rank[None, :]).float(), persistent=False)  # (H, Z)
        self.register_buffer("out_mask", (rank[:, None] > degree[None, :]).float().repeat(2, 1), persistent=False)  # (2Z, H)
        self.z_in = nn.Linear(z_dim, hidden)
        self.h_in = nn.Linear(context, hidden, bias=False)
        self.out = nn.Linear(hidden, 2 * z_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, z: torch.Tensor, h_term: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Shift and bounded log-scale of z, given ``h_term`` = the context's contribution (B, hidden)."""
        units = F.elu(F.linear(z, self.z_in.weight * self.in_mask, self.z_in.bias) + h_term)  # (..., B, hidden)
        shift, raw = F.linear(units, self.out.weight * self.out_mask, self.out.bias).chunk(2, dim=-1)
        return shift, LOG_SCALE_BOUND * torch.tanh(raw / LOG_SCALE_BOUND)


class IAFTransform:
    """One IAF step for a batch of points: ``net`` with its context term ``h_term`` = net.h_in(h) fixed."""

    def __init__(self, net: MaskedStep, h_term: torch.Tensor) -> None:
        self.net = net
        self.h_term = h_term  # (B, hidden): computed once, broadcast over sample dims

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shift, log_scale = self.net(z, self.h_term)
        return torch.addcmul(shift, log_scale.exp(), z), log_scale.sum(-1)  # shift + exp(a) z in one operation

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Pass t fixes the variable of rank t (its shift and scale depend on lower ranks only,
        # already right), so Z passes invert exactly; the last pass's log-scales are then exact.
        z = y
        for _ in range(y.shape[-1]):
            shift, log_scale = self.net(z, self.h_term)
            z = (y - shift) * (-log_scale).exp()
        return z, log_scale.sum(-1)


class IAFHead(nn.Module):
    """Encoder output (B, 2Z + context) -> :class:`FlowPosterior` with ``spec.steps`` IAF steps."""

    def __init__(self, spec: IAF, z_dim: int) -> None:
        super().__init__()
        self.z_dim, self.hidden = z_dim, spec.hidden
        self.base = DiagonalGaussianHead()
        self.nets = nn.ModuleList(MaskedStep(z_dim, spec.context, spec.hidden, reverse=k % 2 == 1) for k in range(spec.steps))

    def forward(self, h: torch.Tensor) -> FlowPosterior:
        base = self.base(h[:, : 2 * self.z_dim])
        context = h[:, 2 * self.z_dim :]  # (B, context)
        # Every step's context term net.h_in(context) from one product with the stacked weights:
        # one operation (and one backward node) where there were ``steps``.
        weight = torch.cat([net.h_in.weight for net in self.nets])  # (steps * hidden, context)
        h_terms = F.linear(context, weight).split(self.hidden, dim=-1)  # steps x (B, hidden)
        return FlowPosterior(base, [IAFTransform(net, h_term) for net, h_term in zip(self.nets, h_terms)])


# ----------------------------------------------------------------------------- planar
@register_spec("posterior")
@dataclass(frozen=True)
class Planar:
    """Amortised planar-flow posterior (Rezende and Mohamed, 2015).

    Each step is f(z) = z + u_hat tanh(w.z + b), log |det| = log(1 + (1 - tanh^2(w.z + b)) w.u_hat),
    with u, w (Z values each) and b read from the encoder output for every point, and
    u_hat = u + (m(w.u) - w.u) w / |w|^2, m(s) = -1 + 1e-4 + softplus(s), so that
    w.u_hat = m(w.u) > -1 and every step is invertible whatever the encoder outputs, with
    |det| >= 1e-4 (:data:`PLANAR_MIN_SLOPE`: the paper's m has no floor, which float rounding
    removes). A step whose w is numerically zero (|w|^2 below ~1e-19 in float32) is the identity
    (u_hat is undefined there).

    Parameters
    ----------
    steps : int, default 8
        Number of planar steps (>= 1); the encoder outputs 2Z + steps (2Z + 1) values.

    """

    steps: int = field(default=8, metadata={"help": _STEPS_HELP})
    kind: ClassVar[str] = "planar"

    def __post_init__(self) -> None:
        positive_int(self.steps, "Planar.steps")

    def out_features(self, z_dim: int) -> int:
        """Width of the encoder output this posterior reads: 2Z + steps (2Z + 1)."""
        return 2 * z_dim + self.steps * (2 * z_dim + 1)

    def build(self, z_dim: int) -> nn.Module:
        """Module mapping encoder output (B, out_features) to q(z|x, c)."""
        return PlanarHead(self, z_dim)

    def to_config(self) -> dict[str, Any]:
        """JSON-ready description (inverse of :func:`vaekit.posteriors.posterior_from_config`)."""
        return {"type": self.kind, **asdict(self)}


def planar_constraint(u: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """u_hat (..., Z) and 1 + w.u_hat (...,) of planar steps with raw u, w (..., Z): any leading shape.

    PlanarHead constrains all its steps in one call on (B, steps, Z): the same elementwise
    operations on a larger tensor, where a call per step would repeat every operation and its
    backward node ``steps`` times.
    """
    wu, norm2 = (w * u).sum(-1), (w * w).sum(-1)  # (...)
    eps = torch.finfo(w.dtype).tiny ** 0.5
    degenerate = norm2 <= eps
    one_plus_m = PLANAR_MIN_SLOPE + F.softplus(wu)  # 1 + w.u_hat, >= PLANAR_MIN_SLOPE
    coef = torch.where(degenerate, 0.0, (one_plus_m - 1.0 - wu) / norm2.clamp_min(eps))
    u_hat = torch.where(degenerate[..., None], 0.0, u + coef[..., None] * w)  # (..., Z)
    # 1 + w.u_hat taken from the reparametrisation rather than recomputed from u_hat: the
    # recomputation would lose the small positive slope to rounding when w.u_hat ~ -1.
    return u_hat, torch.where(degenerate, 1.0, one_plus_m)


class PlanarTransform:
    """One planar step for a batch of points, from raw u (B, Z), w (B, Z), b (B,).

    Attributes ``u_hat`` (B, Z) and ``c`` = w.u_hat (B,) hold the constrained parameters.
    :meth:`constrained` builds a step from parameters :func:`planar_constraint` already gave.
    """

    def __init__(self, u: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> None:
        u_hat, one_plus_c = planar_constraint(u, w)
        self._set(u_hat, one_plus_c, w, b)

    @classmethod
    def constrained(cls, u_hat: torch.Tensor, one_plus_c: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> PlanarTransform:
        """The step with u_hat (B, Z), 1 + w.u_hat (B,) from :func:`planar_constraint`, w (B, Z), b (B,)."""
        step = cls.__new__(cls)
        step._set(u_hat, one_plus_c, w, b)
        return step

    def _set(self, u_hat: torch.Tensor, one_plus_c: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> None:
        self.u_hat, self.one_plus_c, self.w, self.b = u_hat, one_plus_c, w, b

    @property
    def c(self) -> torch.Tensor:
        """w.u_hat (B,), >= -1 + PLANAR_MIN_SLOPE."""
        return self.one_plus_c - 1.0

    def _log_det(self, t: torch.Tensor) -> torch.Tensor:
        # From t = tanh(w.z + b), which the map itself uses (one tanh, not two).
        # 1 + (1 - t^2) c = t^2 + (1 - t^2)(1 + c): a sum of non-negative terms, never rounded to <= 0.
        t2 = t**2
        det = t2 + (1.0 - t2) * self.one_plus_c
        return det.clamp_min(torch.finfo(det.dtype).tiny).log()

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.tanh((z * self.w).sum(-1) + self.b)  # (..., B)
        return z + self.u_hat * t[..., None], self._log_det(t)

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # With p = w.z + b: w.y + b = p + c tanh(p), strictly increasing in p (slope
        # 1 + (1 - t^2) c >= PLANAR_MIN_SLOPE) and within |c| of p, so p lies in [r - |c|, r + |c|].
        # Newton's method kept inside that shrinking bracket (a bisection step whenever Newton
        # would leave it) finds p in float64; then z = y - u_hat tanh(p).
        r, c = (y * self.w).sum(-1) + self.b, self.c  # (..., B), (B,)
        with torch.no_grad():
            r64, c64 = r.double(), c.double().expand_as(r)
            slope_floor = self.one_plus_c.double().expand_as(r)
            low, high, p = r64 - c64.abs(), r64 + c64.abs(), r64
            for _ in range(_MAX_ITERATIONS):
                t = torch.tanh(p)
                excess = p + c64 * t - r64
                high, low = torch.where(excess > 0, p, high), torch.where(excess > 0, low, p)
                newton = p - excess / (t * t + (1.0 - t * t) * slope_floor)
                inside = (newton >= low) & (newton <= high)
                step = torch.where(inside, newton, 0.5 * (low + high))
                done = bool(((step - p).abs() <= 1e-12 * (1.0 + p.abs())).all())  # the Newton step below polishes
                p = step
                if done:
                    break
            root = p.to(r.dtype)
        # One Newton step from the (detached) root: same value, and the implicit-function gradient
        # dp = (dr - tanh(p) dc) / (1 + (1 - t^2) c) with respect to y and the parameters.
        t = torch.tanh(root)
        pre = root - (root + c * t - r) / (t * t + (1.0 - t * t) * self.one_plus_c)
        t = torch.tanh(pre)
        return y - self.u_hat * t[..., None], self._log_det(t)


class PlanarHead(nn.Module):
    """Encoder output (B, 2Z + steps (2Z + 1)) -> :class:`FlowPosterior` with planar steps."""

    def __init__(self, spec: Planar, z_dim: int) -> None:
        super().__init__()
        self.z_dim, self.steps = z_dim, spec.steps
        self.base = DiagonalGaussianHead()

    def forward(self, h: torch.Tensor) -> FlowPosterior:
        z_dim = self.z_dim
        base = self.base(h[:, : 2 * z_dim])
        params = h[:, 2 * z_dim :].reshape(h.shape[0], self.steps, 2 * z_dim + 1)  # (B, steps, 2Z + 1)
        u, w, b = params.split((z_dim, z_dim, 1), dim=-1)  # (B, steps, Z), (B, steps, Z), (B, steps, 1)
        u_hat, one_plus_c = planar_constraint(u, w)  # every step at once: (B, steps, Z), (B, steps)
        # unbind: one backward node per tensor, where slicing each step would add one per step.
        parts = zip(u_hat.unbind(1), one_plus_c.unbind(1), w.unbind(1), b.squeeze(-1).unbind(1))
        return FlowPosterior(base, [PlanarTransform.constrained(*p) for p in parts])
