"""Evaluation: likelihoods in nats per point, posterior-collapse diagnostics, sample quality.

Every likelihood here is in nats per data point (the mean over points of -log p(x_i)), in the
user's units (standardisation undone). For a Bernoulli likelihood on grey-level data the
"log-likelihood" is the binary cross-entropy, which is not a normalised density over [0, 1]:
such numbers compare models with each other, not with continuous densities.

Summary of the estimators (x a test point, q = q(z|x, c), p(z) = N(0, I)):

* negative ELBO: -E_q[log p(x|z)] + KL(q || p(z)); the expectation by Monte Carlo, the KL in
  closed form. An upper bound on -log p(x).
* IWAE: -log (1/k) sum_j p(x|z_j) p(z_j) / q(z_j|x), z_j ~ q. Its expectation is an upper
  bound on -log p(x) that decreases with k towards it (Burda et al., 2016).
* quadrature (Z = 2 only): -log sum_g p(x|z_g) p(z_g) h^2 over a midpoint grid of cells of side
  h on [-bound, bound]^2, the integral log ∫ p(x|z) p(z) dz itself; its error is estimated by
  the change from a grid of half the resolution.
* active units (Burda et al., 2016): dimension d is active when Cov_x(E_q[z_d]) > 0.01.
* MMD²: unbiased estimate with a Gaussian kernel whose bandwidth is the median pairwise
  distance of the pooled sample; p-value from a permutation test.
* energy distance: 2 E|X - Y| - E|X - X'| - E|Y - Y'| (U-statistics for the last two).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.distributions import Bernoulli, Independent, Normal

from vaekit.baselines import baseline_metrics
from vaekit.conditions import Continuous, OneHot
from vaekit.constraints import unconstrained
from vaekit.data import radius as ring_radius
from vaekit.data import ring_centres, ring_log_density
from vaekit.distributions import LOG_2PI, LogColumns, draw, posterior_mean
from vaekit.distributions import Bernoulli as BernoulliLikelihood
from vaekit.distributions import kl as kl_terms
from vaekit.errors import InputError, InputTypeError, describe
from vaekit.models.base import not_applicable
from vaekit.monitors import diversity as _diversity
from vaekit.shapes import X_BACKSTEP, is_curve_shape
from vaekit.two_sample import energy_distance, median_bandwidth, mmd2, mmd_test  # noqa: F401 (public here too)
from vaekit.validate import float_matrix, positive_float, positive_int

logger = logging.getLogger(__name__)


# Decoder rows per forward pass in the IWAE and quadrature loops: bounds memory at roughly
# rows x widest layer floats (2**16 x 128 x 4 bytes = 32 MiB for the default MLP).
_ROWS = 2**16
# Elements of the (points, grid) log-density block in the quadrature loop.
_QUAD_ELEMENTS = 2**22
# Above this many distinct condition rows, evaluate() skips quadrature (one grid decode each).
_MAX_QUAD_CONDITIONS = 64
# Two-sample statistics hold a (n + m)^2 kernel matrix: evaluate() uses at most this many points a side.
_TWO_SAMPLE_MAX = 4000
# Active-unit threshold of Burda et al. (2016).
ACTIVE_THRESHOLD = 0.01


# ----------------------------------------------------------------------------- helpers
def _prepare(model: Any, x: Any, condition: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    xt = model.prepare_x(x)
    return xt, model.prepare_condition(condition, xt.shape[0])


def _generator(model: Any, seed: int | None) -> torch.Generator:
    generator = torch.Generator(device=model.device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(int(seed))
    return generator


def _rows(c: torch.Tensor | None, index: slice | torch.Tensor) -> torch.Tensor | None:
    return None if c is None else c[index]


def _repeat(t: torch.Tensor | None, times: int) -> torch.Tensor | None:
    """(B, C) -> (times * B, C), sample-major, matching z.reshape(times * B, Z)."""
    if t is None:
        return None
    return t.unsqueeze(0).expand(times, *t.shape).reshape(times * t.shape[0], t.shape[1])


def _sample_points(x: np.ndarray, n: int, seed: int) -> np.ndarray:
    """At most ``n`` rows of ``x``, drawn without replacement (all rows, in order, if fewer)."""
    if len(x) <= n:
        return x
    return x[np.random.default_rng(seed).choice(len(x), size=n, replace=False)]


# ----------------------------------------------------------------------------- likelihoods
@dataclass
class ElboTerms:
    """Per-point terms of the negative ELBO, numpy float64.

    Attributes
    ----------
    reconstruction_nll : (N,) -E_q[log p(x|z)] in nats (Monte Carlo over ``samples`` draws).
    kl : (N,) KL(q(z|x) || p(z)) in nats: closed form where one exists, else the Monte Carlo
        mean of log q(z|x) - log p(z) over the same draws; None for a model that declares
        ``kl`` not applicable (a VQ-VAE), whose terms are the reconstruction and latent means only.
    kl_per_dim : (N, Z) the same per latent dimension, or None where the KL does not split
        over dimensions (a mixture prior, a flow posterior).
    latent_mean : (N, Z) E_q[z], the posterior means (a Monte Carlo mean where not known).
    kl_parts : dict name -> (N,), the model's named KL parts (its ``kl_terms`` hook, e.g. one per
        latent layer) averaged over the same draws; ``kl`` is then their sum. Empty otherwise.

    """

    reconstruction_nll: np.ndarray
    kl: np.ndarray | None
    kl_per_dim: np.ndarray | None
    latent_mean: np.ndarray
    kl_parts: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def neg_elbo(self) -> np.ndarray:
        """(N,) reconstruction_nll + kl."""
        if self.kl is None:
            raise InputError("model must have a KL term for the negative ELBO. Got a model that declares none instead.")
        return self.reconstruction_nll + self.kl


@torch.no_grad()
def elbo_terms(model: Any, x: Any, condition: Any = None, *, samples: int = 10, seed: int | None = 0) -> ElboTerms:
    """Negative-ELBO terms of every point: -E_q[log p(x|z)] (``samples`` draws) and KL in closed form.

    Parameters
    ----------
    model : VAE
    x : array (N, D)
    condition : array, optional
        As for :meth:`vaekit.VAE.encode`.
    samples : int, default 10
        Monte Carlo draws of z per point for the reconstruction term.
    seed : int or None, default 0

    Returns
    -------
    ElboTerms

    """
    samples = positive_int(samples, "samples")
    xt, c = _prepare(model, x, condition)
    generator = _generator(model, seed)
    n, z_dim = xt.shape[0], model.z_dim
    chunk = max(1, _ROWS // samples)
    recon, kls, kl_dims, means, parts = [], [], [], [], []
    with_kl = "kl" not in not_applicable(model)
    pz = model.prior() if with_kl else None
    hook = getattr(model, "kl_terms", None)
    for start in range(0, n, chunk):
        xb, cb = xt[start : start + chunk], _rows(c, slice(start, start + chunk))
        qz = model.encode_batch(xb, cb)
        z = draw(qz, (samples,), generator)  # (S, B, Z)
        px = model.decode_batch(z.reshape(-1, z_dim), _repeat(cb, samples))
        log_px = px.log_prob(_repeat(xb, samples)).view(samples, -1)  # (S, B)
        recon.append(-log_px.double().mean(0))
        means.append(posterior_mean(qz).double())
        if not with_kl:
            continue
        closed = None if hook is not None else _closed_kl(qz, pz)  # (B,), (B, Z) or None; None: no closed form
        if hook is not None:  # the model's KL parts, each averaged over the same S draws
            draws = [hook(xb, cb, qz, zs) for zs in z]  # S dicts of (B,)
            parts.append({k: torch.stack([d[k] for d in draws]).double().mean(0) for k in draws[0]})
            kl, kl_dim = sum(parts[-1].values()), None
        elif closed is not None:
            kl, kl_dim = closed
        else:  # Monte Carlo over the same S draws
            kl, kl_dim = (qz.log_prob(z) - pz.log_prob(z)).mean(0), None
        kls.append(kl.double())
        kl_dims.append(None if kl_dim is None else kl_dim.double())
    kl_dim = None if not kl_dims or kl_dims[0] is None else torch.cat(kl_dims).cpu().numpy()
    kl = torch.cat(kls).cpu().numpy() if kls else None
    kl_parts = {k: torch.cat([p[k] for p in parts]).cpu().numpy() for k in (parts[0] if parts else {})}
    return ElboTerms(torch.cat(recon).cpu().numpy(), kl, kl_dim, torch.cat(means).cpu().numpy(), kl_parts)


def _closed_kl(qz: Any, pz: Any) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """KL(q || p) and its per-dimension split in closed form, or None where none exists."""
    try:
        return kl_terms(qz, pz)  # without a draw z it refuses rather than estimate
    except InputError:
        return None


def neg_elbo(model: Any, x: Any, condition: Any = None, *, samples: int = 10, seed: int | None = 0) -> float:
    """Mean negative ELBO in nats per point: -E_q[log p(x|z)] + KL(q(z|x) || p(z)); see :func:`elbo_terms`."""
    return float(elbo_terms(model, x, condition, samples=samples, seed=seed).neg_elbo.mean())


def largest_gap(gap: np.ndarray) -> dict[str, Any]:
    """The point whose NLL is furthest above PPCA's, and the mean gap of the others.

    ``gap`` (N,), N >= 2: each point's -log p_model(x) + log p_PPCA(x). A mean over a few
    held-out rows can be decided by one of them (a row far beyond the training range, where a
    network does not extrapolate as a linear model does), and the paired standard error then
    calls "noise" what is one point. Returns ``ppca_gap_top_point`` (its index, from 0),
    ``ppca_gap_top`` (its gap, nats), ``ppca_gap_without_top`` (the mean gap of the other N - 1
    points), for N >= 3 ``ppca_gap_without_top_se`` (that mean's paired standard error), and
    ``ppca_gap_whole_points``: how many points have a gap at least the total (0 when the total
    is not positive), each of which alone makes the model lose.
    """
    top = int(np.argmax(gap))
    others = np.delete(gap, top)
    out: dict[str, Any] = {"ppca_gap_top_point": top, "ppca_gap_top": float(gap[top])}
    out["ppca_gap_without_top"] = float(others.mean())
    if len(others) >= 2:
        out["ppca_gap_without_top_se"] = float(others.std(ddof=1) / math.sqrt(len(others)))
    # Points whose gap alone is the whole gap or more: without any one of them the rest are level or ahead.
    out["ppca_gap_whole_points"] = int((gap >= gap.sum()).sum()) if gap.sum() > 0 else 0
    return out


def furthest_outside(point: np.ndarray, low: np.ndarray, high: np.ndarray) -> dict[str, Any]:
    """Where ``point`` (D,) lies outside the training rows' range [``low``, ``high``] (D,); {} when inside.

    The column furthest outside, in widths of its range (any step off a constant column is
    infinitely far; ties go to the larger step): ``ppca_gap_top_column`` (from 0),
    ``ppca_gap_top_value`` and ``ppca_gap_top_train_range`` ([min, max]), for the point of
    :func:`largest_gap`.
    """
    point, low, high = (np.asarray(a, dtype=np.float64) for a in (point, low, high))
    beyond = np.maximum(point - high, low - point)  # > 0 outside [low, high]
    if not (beyond > 0).any():
        return {}
    width = high - low
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        excess = np.where(beyond > 0, np.where(width > 0, beyond / width, np.inf), -np.inf)
    furthest = np.flatnonzero(excess == excess.max())
    column = int(furthest[np.argmax(beyond[furthest])])
    return {
        "ppca_gap_top_column": column,
        "ppca_gap_top_value": float(point[column]),
        "ppca_gap_top_train_range": [float(low[column]), float(high[column])],
    }


@torch.no_grad()
def iwae_log_likelihood(
    model: Any, x: Any, condition: Any = None, *, k: int = 1000, seed: int | None = 0, rows: int = _ROWS
) -> np.ndarray:
    """Importance-weighted estimate of log p(x) for every point: float64 (N,) in nats.

    log p(x) ~ log (1/k) sum_{j=1..k} p(x|z_j) p(z_j) / q(z_j|x),  z_j ~ q(z|x, c).

    In expectation this is a lower bound on log p(x) that rises with ``k`` towards it; ``k=1`` is
    the (Monte Carlo) ELBO. Work is chunked over points and samples, so memory is bounded by
    about ``rows`` decoder rows whatever ``k`` and N are (k=1000 on 10,000 points is fine).

    Parameters
    ----------
    model : VAE
    x : array (N, D)
    condition : array, optional
    k : int, default 1000
        Importance samples per point.
    seed : int or None, default 0
    rows : int, default 65536
        Decoder rows per forward pass (memory knob).

    """
    k, rows = positive_int(k, "k"), positive_int(rows, "rows")
    xt, c = _prepare(model, x, condition)
    generator = _generator(model, seed)
    n, z_dim = xt.shape[0], model.z_dim
    points = max(1, rows // k)  # points per chunk
    draws = min(k, rows)  # samples per decoder pass
    out = torch.empty(n, dtype=torch.float64)
    pz = model.prior()
    for start in range(0, n, points):
        xb, cb = xt[start : start + points], _rows(c, slice(start, start + points))
        qz = model.encode_batch(xb, cb)
        acc = torch.full((xb.shape[0],), -math.inf, dtype=torch.float64, device=xt.device)
        for done in range(0, k, draws):
            s = min(draws, k - done)
            z = draw(qz, (s,), generator)  # (S, B, Z)
            log_q = qz.log_prob(z)  # (S, B)
            log_pz = pz.log_prob(z)
            px = model.decode_batch(z.reshape(-1, z_dim), _repeat(cb, s))
            log_px = px.log_prob(_repeat(xb, s)).view(s, -1)
            log_w = (log_px + log_pz - log_q).double()  # (S, B)
            acc = torch.logaddexp(acc, torch.logsumexp(log_w, 0))
        out[start : start + xb.shape[0]] = (acc - math.log(k)).cpu()
    return out.numpy()


def log_likelihood(model: Any, x: Any, condition: Any = None, *, k: int = 1000, seed: int | None = 0) -> float:
    """Mean IWAE estimate of log p(x) in nats per point (see :func:`iwae_log_likelihood`)."""
    return float(iwae_log_likelihood(model, x, condition, k=k, seed=seed).mean())


@dataclass
class Quadrature:
    """Result of :func:`quadrature_log_likelihood`.

    Attributes
    ----------
    log_p : (N,) log p(x) in nats from the fine grid.
    error : (N,) |fine - coarse|, an estimate (in practice an over-estimate) of the error of ``log_p``.
    grid : cells per axis of the fine grid.
    bound : the grid covers [-bound, bound]^2.

    """

    log_p: np.ndarray
    error: np.ndarray
    grid: int
    bound: float

    @property
    def nll(self) -> float:
        """Mean -log p(x), nats per point."""
        return float(-self.log_p.mean())

    @property
    def nll_error(self) -> float:
        """Estimated error of :attr:`nll`: mean of the per-point errors (an upper bound on the error of the mean)."""
        return float(self.error.mean())


@torch.no_grad()
def _grid_log_p(model: Any, xt: torch.Tensor, c: torch.Tensor | None, grid: int, bound: float) -> torch.Tensor:
    """Log sum_g p(x|z_g) p(z_g) h^2 for a midpoint grid of ``grid`` x ``grid`` cells: float64 (N,)."""
    h = 2.0 * bound / grid
    axis = -bound + h * (torch.arange(grid, dtype=torch.float64, device=xt.device) + 0.5)
    z1, z2 = torch.meshgrid(axis, axis, indexing="xy")
    z = torch.stack([z1.flatten(), z2.flatten()], 1)  # (G, 2), float64
    log_weight = model.prior().log_prob(z).double() + 2 * math.log(h)  # log p(z_g) h^2, in float64
    z = z.to(xt.dtype)
    g = z.shape[0]
    out = torch.empty(xt.shape[0], dtype=torch.float64, device=xt.device)
    if c is None:
        groups = [(None, torch.arange(xt.shape[0], device=xt.device))]
    else:
        unique, inverse = torch.unique(c, dim=0, return_inverse=True)
        groups = [(unique[i : i + 1], (inverse == i).nonzero().flatten()) for i in range(unique.shape[0])]
    for cond, index in groups:
        # The grid is decoded once per condition value: the decoder does not depend on x.
        affine = _grid_terms(model, z, cond)
        px_grid = None if affine is not None else model.decode_batch(z, None if cond is None else cond.expand(g, -1))
        # The affine terms hold (B, G) at a time; another likelihood's log_prob (Student's t) a (B, G, D) tensor.
        block = max(1, _QUAD_ELEMENTS // (g if affine is not None else g * xt.shape[1]))
        for start in range(0, index.shape[0], block):
            xb = xt[index[start : start + block]]  # (B, D)
            if affine is not None:
                weights, const, squared, logged = affine
                yb = xb if logged is None else logged.to_base(xb)  # log columns: the Gaussian is over y
                features = torch.cat([yb.double() ** 2, yb.double()], dim=1) if squared else yb.double()
                log_px = features @ weights.T + const  # (B, G)
                if logged is not None:
                    log_px = log_px + logged.log_jacobian(xb).double()[:, None]  # the same for every grid point
            else:  # any other likelihood: its own log_prob, broadcast over the grid
                log_px = px_grid.log_prob(xb.unsqueeze(1)).double()  # (B, G)
            out[index[start : start + block]] = torch.logsumexp(log_px + log_weight, dim=1)
    return out


def _grid_terms(model: Any, z: torch.Tensor, cond: torch.Tensor | None) -> tuple[Any, ...] | None:
    """The grid's log p(x|z_g) as an affine function of features of x: (weights, const, squared, logged), float64.

    None for likelihoods other than a diagonal Gaussian or Bernoulli (the caller then uses log_prob).

    Diagonal Gaussian: log p = -x²·(1/2s²) + x·(m/s²) - sum(m²/2s² + log s) - D/2 log 2 pi, so the
    weights are (G, 2D) over features [x², x] (``squared`` True). Bernoulli: log p = x·l - sum softplus(l),
    weights (G, D) over x. Either way a block of points costs one matrix product against the grid.
    Log columns (``logged``, the last grid block's :class:`~vaekit.distributions.LogColumns`, whose
    mask and offset every block shares): the Gaussian's terms over y = log(x + offset), plus the
    Jacobian, which does not depend on the grid point.
    """
    parts, logged = [], None
    for start in range(0, z.shape[0], _ROWS):
        zb = z[start : start + _ROWS]
        px = model.decode_batch(zb, None if cond is None else cond.expand(zb.shape[0], -1))
        if type(px) is LogColumns:
            px, logged = px.base, px
        if type(px) is not Independent or type(px.base_dist) not in (Normal, Bernoulli):
            return None
        parts.append(px.base_dist)
    if type(parts[0]) is Normal:
        mean = torch.cat([p.loc for p in parts]).double()  # (G, D)
        scale = torch.cat([p.scale for p in parts]).double()
        precision = scale**-2
        weights = torch.cat([-0.5 * precision, mean * precision], dim=1)  # (G, 2D)
        const = -(0.5 * mean**2 * precision + scale.log()).sum(1) - 0.5 * mean.shape[1] * LOG_2PI
        return weights, const, True, logged
    logits = torch.cat([p.logits for p in parts]).double()  # (G, D)
    return logits, -torch.nn.functional.softplus(logits).sum(1), False, None


def quadrature_log_likelihood(model: Any, x: Any, condition: Any = None, *, grid: int = 200, bound: float = 6.0) -> Quadrature:
    """Exact marginal likelihood log ∫ p(x|z) p(z) dz for a 2-D latent, by quadrature.

    The integral is a midpoint-rule sum over ``grid`` x ``grid`` cells of side
    h = 2 bound / grid covering [-bound, bound]^2:

        log p(x) ~ logsumexp_g [log p(x|z_g) + log p(z_g) + 2 log h].

    The prior mass outside [-6, 6]^2 is below 1e-8. The error estimate is |fine - coarse|, the
    change when the same sum is taken on a grid of ``grid // 2`` cells; the midpoint rule on a
    smooth integrand converges quickly, so the fine value is usually far closer than this.
    A large error means the integrand (the posterior) is too sharp for the grid: raise ``grid``.

    Parameters
    ----------
    model : VAE with ``z_dim == 2``
    x : array (N, D)
    condition : array, optional
        The grid is decoded once per distinct condition row.
    grid : int, default 200
        Cells per axis (>= 4).
    bound : float, default 6.0

    Returns
    -------
    Quadrature

    """
    if model.z_dim != 2:
        raise InputError(f"model.z_dim must be 2 for quadrature (the grid is 2-D). Got z_dim={model.z_dim} instead.")
    grid = positive_int(grid, "grid", minimum=4)
    bound = positive_float(bound, "bound")
    xt, c = _prepare(model, x, condition)
    fine = _grid_log_p(model, xt, c, grid, bound)
    coarse = _grid_log_p(model, xt, c, grid // 2, bound)
    return Quadrature(fine.cpu().numpy(), (fine - coarse).abs().cpu().numpy(), grid, bound)


# ----------------------------------------------------------------------------- posterior collapse
def kl_per_dim(model: Any, x: Any, condition: Any = None) -> np.ndarray:
    """Mean KL(q(z_d|x) || p(z_d)) over the points, per latent dimension: float64 (Z,) in nats.

    Defined where the KL splits over dimensions (diagonal Gaussian posterior and prior); other
    models raise ``InputError``.
    """
    terms = elbo_terms(model, x, condition, samples=1)
    if terms.kl_per_dim is None:
        raise InputError(
            "model must have a KL that splits over latent dimensions (diagonal Gaussian posterior and prior) "
            f"for kl_per_dim. Got a {type(model.prior()).__name__} prior instead."
        )
    return terms.kl_per_dim.mean(0)


@torch.no_grad()
def probe_posterior(model: Any) -> Any:
    """q(z|x) at one all-zero point (and condition): to ask what kind of distribution the model's posterior is.

    Log columns (outside whose support 0 may lie) read 1 - offset there, which they see as log(1) = 0.
    """
    c = None if model.condition is None else torch.zeros(1, model.condition.in_features, device=model.device, dtype=model.dtype)
    x = np.zeros((1, model.x_dim))
    likelihood = getattr(model, "likelihood", None)
    # max(0, .): 1 - offset rounds to -offset in float32 for a huge offset.
    x[:, list(getattr(likelihood, "log_columns", ()))] = max(0.0, 1.0 - getattr(likelihood, "log_offset", 0.0))
    return model.encode_batch(model.prepare_x(x), c)


def kl_splits(model: Any) -> bool:
    """Whether KL(q(z|x) || p(z)) of ``model`` splits into one term per latent dimension."""
    if "kl_per_dim" in not_applicable(model):
        return False
    qz, pz = probe_posterior(model), model.prior()
    closed = _closed_kl(qz, pz)
    return closed is not None and closed[1] is not None


@torch.no_grad()
def latent_mean_variance(model: Any, x: Any, condition: Any = None) -> np.ndarray:
    """Cov_x(E_q[z_d]) per dimension: the population variance over points of the posterior means, (Z,)."""
    xt, c = _prepare(model, x, condition)
    mean = posterior_mean(model.encode_batch(xt, c)).double()
    return mean.var(0, correction=0).cpu().numpy()


def active_units(model: Any, x: Any, condition: Any = None, *, threshold: float = ACTIVE_THRESHOLD) -> int:
    """Number of latent dimensions with Cov_x(E_q[z_d]) > ``threshold`` (Burda et al., 2016)."""
    threshold = positive_float(threshold, "threshold")
    return int((latent_mean_variance(model, x, condition) > threshold).sum())


# ----------------------------------------------------------------------------- sample quality
def diversity(samples: Any) -> float:
    """The lecture's diversity: mean over dimensions of the per-dimension (population) variance of samples (N, D)."""
    return _diversity(float_matrix(samples, "samples").double())


# ----------------------------------------------------------------------------- ring-specific
def ring_entropy(modes: int = 8, std: float = 0.25) -> float:
    """Entropy of the ring mixture when its modes do not overlap: log(modes) + 1 + log(2 pi std²) nats.

    For 8 modes of std 0.25 (radius 3) this is 2.1447: no model's expected NLL on the ring can be lower.
    """
    modes = positive_int(modes, "modes")
    std = positive_float(std, "std")
    return math.log(modes) + 1.0 + math.log(2.0 * math.pi * std**2)


def mode_coverage(
    samples: Any, modes: int = 8, radius: float = 3.0, std: float = 0.25, *, n_std: float = 3.0
) -> dict[str, float]:
    """How a sample covers the ring's modes.

    A sample "hits" mode k when its nearest centre is mu_k and it lies within ``n_std`` * std of it.

    Returns
    -------
    dict with
        modes_covered : number of modes hit by at least one sample.
        mode_coverage : modes_covered / modes.
        within_3std : fraction of samples that hit some mode (the name keeps the default n_std).
        mode_balance : entropy of the hit counts over modes divided by log(modes) (1 = even).

    """
    points = float_matrix(samples, "samples", width=2).double().numpy()
    centres = ring_centres(modes, radius)
    dist = np.linalg.norm(points[:, None, :] - centres[None], axis=-1)  # (N, K)
    nearest = dist.argmin(1)
    hit = dist[np.arange(len(points)), nearest] <= n_std * std
    counts = np.bincount(nearest[hit], minlength=modes)
    share = counts / max(1, counts.sum())
    entropy = -(share[share > 0] * np.log(share[share > 0])).sum()
    covered = int((counts > 0).sum())
    return {
        "modes_covered": covered,
        "mode_coverage": covered / modes,
        "within_3std": float(hit.mean()),
        "mode_balance": float(entropy / math.log(modes)) if modes > 1 else 1.0,
    }


def mode_adherence(
    samples: Any, labels: Any, modes: int = 8, radius: float = 3.0, std: float = 0.25, *, n_std: float = 3.0
) -> float:
    """Fraction of label-conditioned samples within ``n_std`` * std of the requested mode's centre."""
    points = float_matrix(samples, "samples", width=2).double().numpy()
    wanted = np.asarray(labels).astype(np.int64).reshape(-1)
    if wanted.shape[0] != points.shape[0]:
        raise InputError(f"labels must have one entry per sample ({points.shape[0]}). Got {wanted.shape[0]} instead.")
    centres = ring_centres(modes, radius)
    return float((np.linalg.norm(points - centres[wanted], axis=1) <= n_std * std).mean())


def knn_accuracy(train_x: Any, train_labels: Any, query_x: Any, query_labels: Any, *, k: int = 5) -> float:
    """Fraction of query points whose k-nearest-neighbour vote among (train_x, train_labels) is their own label."""
    k = positive_int(k, "k")
    tx = float_matrix(train_x, "train_x").double()
    qx = float_matrix(query_x, "query_x", width=tx.shape[1]).double()
    tl = torch.as_tensor(np.asarray(train_labels).reshape(-1).astype(np.int64))
    ql = torch.as_tensor(np.asarray(query_labels).reshape(-1).astype(np.int64))
    k = min(k, tx.shape[0])
    votes = []
    for start in range(0, qx.shape[0], 1024):
        near = torch.cdist(qx[start : start + 1024], tx).topk(k, largest=False).indices  # (B, k)
        votes.append(tl[near].mode(dim=1).values)
    return float((torch.cat(votes) == ql).double().mean())


# ----------------------------------------------------------------------------- one call
def _ring_spec(ring: Any) -> dict[str, float] | None:
    if ring is None:
        return None
    if not isinstance(ring, dict):
        raise InputTypeError(
            f'ring must be a dict like {{"modes": 8, "radius": 3.0, "std": 0.25}} or None. Got {describe(ring)} instead.'
        )
    unknown = sorted(set(ring) - {"modes", "radius", "std"})
    if unknown:
        raise InputError(f"ring may only have the keys 'modes', 'radius', 'std'. Got the key(s) {unknown} instead.")
    return {
        "modes": positive_int(ring.get("modes", 8), "ring['modes']"),
        "radius": positive_float(ring.get("radius", 3.0), "ring['radius']"),
        "std": positive_float(ring.get("std", 0.25), "ring['std']"),
    }


def evaluate(
    model: Any,
    x: Any,
    condition: Any = None,
    *,
    labels: Any = None,
    k: int = 100,
    n_samples: int = 2000,
    seed: int = 0,
    ring: dict[str, Any] | None = None,
    quadrature_grid: int = 200,
    permutations: int = 200,
    condition_fn: Any = None,
    train_x: Any = None,
) -> dict[str, Any]:
    """Every metric that applies to ``model`` on test data ``x``, as one flat JSON-ready dict.

    Parameters
    ----------
    model : VAE
    x : array (N, D)
        Test data.
    condition : array, optional
        The test points' conditions (required for a conditional model).
    labels : array (N,), optional
        Class labels of the test points (for an unconditional model): adds ``latent_knn_accuracy``.
    k : int, default 100
        Importance samples for the IWAE estimate.
    n_samples : int, default 2000
        Model samples (and at most this many test points) for the sample-quality metrics.
    seed : int, default 0
    ring : dict, optional
        ``{"modes": 8, "radius": 3.0, "std": 0.25}`` declares the test data a ring of Gaussians
        and adds the ring metrics.
    quadrature_grid : int, default 200
        Cells per axis of the quadrature grid (2-D latents only).
    permutations : int, default 200
        Permutations of the MMD test (0: no ``mmd_p_value``).
    condition_fn : callable, optional
        Maps generated points (n, D) to the condition they should have, for a Continuous-conditioned
        model: adds ``condition_mae``/``condition_rmse``. With ``ring`` and ``Continuous(1)`` the
        radius is used by default.
    train_x : array (M, D), optional
        The model's training data: the PCA and PPCA baselines are fitted on it. None: they are
        fitted on ``x`` itself, which flatters them (``baselines_fitted_on`` says so).

    Returns
    -------
    dict
        Always present (nats per point unless said otherwise):

        - ``n_points``, ``x_dim``, ``z_dim``: sizes.
        - ``neg_elbo``: mean -ELBO; ``reconstruction_nll``: mean -E_q[log p(x|z)]; ``kl``: mean KL(q || p).
        - ``reconstruction_mse``: mean squared error per element between x and the decoder mean at the
          posterior mean, in the user's units; ``pca_mse``: the same for PCA with ``pca_components`` =
          min(z_dim, D) components (:mod:`vaekit.baselines`).
        - ``ppca_nll``: -log p(x) under probabilistic PCA with latent size z_dim, nats per point, next to
          ``iwae_nll``; ``ppca_sigma2`` its noise variance, ``ppca_sigma2_floored`` whether the floor of
          :mod:`vaekit.baselines` applied; ``ppca_gap_se`` the standard error of ``iwae_nll - ppca_nll``,
          paired over the points (the spread of each point's difference / sqrt(N)); ``ppca_gap_top_point``,
          ``ppca_gap_top``, ``ppca_gap_without_top``, ``ppca_gap_without_top_se`` and
          ``ppca_gap_whole_points``: :func:`largest_gap`;
          with ``train_x``, when that point lies outside its range, ``ppca_gap_top_column``, ``_value``
          and ``_train_range``: :func:`furthest_outside`. Left out for a
          Bernoulli likelihood (a Gaussian density is not comparable to a discrete NLL), with the
          reason in ``notes``. ``baselines_fitted_on``: "train_x"
          or "x (in-sample: flatters the baselines)". A conditional model's numbers are -log p(x|c), the
          baselines' -log p(x): ``baselines_note`` says so.
        - ``kl_per_dim``: list (Z,) of mean KL per latent dimension.
        - ``latent_mean_variance``: list (Z,) of Cov_x(E_q[z_d]); ``active_units``: how many exceed 0.01.
        - Models with a ``kl_terms`` hook: each named KL part (``kl_layer0``, ...), mean nats per point.
          Models with ``latent_layers``: ``active_units_layer0``, ... (the code split into its layers).
        - ``iwae_nll``: mean IWAE estimate of -log p(x) with ``iwae_k`` samples; ``iwae_nll_se``: its
          standard error over points; ``iwae_seconds``: time taken.
        - ``diversity``: the lecture's diversity of ``n_samples`` model samples; ``data_diversity``: of the test data.
        - ``mmd2``, ``mmd_p_value``, ``mmd_bandwidth``: unbiased MMD² between model samples and test data,
          its permutation p-value (small: the model's samples are distinguishable from data), the kernel bandwidth.
        - ``energy_distance``: between model samples and test data.
          (Both two-sample statistics use at most min(n_samples, 4000) points a side.)

        When ``z_dim == 2`` (and at most 64 distinct condition rows):

        - ``quadrature_nll``: -log ∫ p(x|z) p(z) dz by quadrature, ``quadrature_error``: its error estimate,
          ``quadrature_grid``: cells per axis.

        With ``ring`` (2-D data):

        - ``true_nll``: the test data's mean NLL under the true density of what the model models (a floor no
          model beats on average): -log p_data(x) for an unconditional model, -log p_data(x | label) for a
          OneHot(modes) model. ``ring_entropy``: its closed-form expectation, log(modes) + 1 + log(2 pi std²)
          (2.1447 for the lecture's ring) or 1 + log(2 pi std²) (0.0653) given the label. Not reported for
          Continuous models: given the exact radius the data lie on a circle, with no finite floor.
        - ``modes_covered``, ``mode_coverage``, ``within_3std``, ``mode_balance``: see :func:`mode_coverage`,
          for unconditional samples.
        - ``mode_adherence`` (OneHot models): fraction of label-conditioned samples within 3 std of the requested mode.

        Curve data (a model's ``x_shape`` is (P, 2), P even: the airfoil layout of :mod:`vaekit.shapes`):

        - ``curves``: a dict, :func:`vaekit.shape_metrics.compare_with_pca` of the model's reconstructions of
          ``x`` and its ``n_samples`` samples next to PCA with ``pca_components`` components fitted on the same
          data as the baselines: mean and worst-point reconstruction errors, validity rate of samples with
          counts per failed check, roughness ratio, mean thickness and camber, their MMD against ``x``.

        Conditional models: ``condition_accuracy`` (OneHot): fraction of samples generated for label y whose
        5-nearest-neighbour label among the test points is y; ``condition_mae``, ``condition_rmse`` (Continuous
        with ``condition_fn`` or ring): error between requested and realised condition.

        With integer ``labels`` and an unconditional model: ``latent_knn_accuracy``, 5-NN accuracy of labels
        from posterior means (half the points, at most 1000, vote for the other half).

        A model's own numbers (``evaluation_metrics``; a VQ-VAE's ``perplexity``, ``codes_used``,
        ``codebook_size`` over all points). Metrics the model declares not applicable
        (:func:`vaekit.models.base.not_applicable`) are left out, and ``notes`` maps each of
        their names to the model's reason; ``diversity`` there leaves out every sample metric.

    """
    k = positive_int(k, "k")
    n_samples = positive_int(n_samples, "n_samples", minimum=2)
    spec = _ring_spec(ring)
    xt, c = _prepare(model, x, condition)
    x_np = xt.cpu().numpy()
    n = x_np.shape[0]
    if n < 2:
        raise InputError(f"x must hold at least 2 test points for evaluate(). Got {n} instead.")
    classes = None if labels is None else _class_labels(labels, n)
    out: dict[str, Any] = {"n_points": n, "x_dim": int(model.x_dim), "z_dim": int(model.z_dim)}

    skip = not_applicable(model)  # left out, with the model's reason in out["notes"]; never reported as 0
    terms = elbo_terms(model, xt, condition, seed=seed)
    if terms.kl is not None and "neg_elbo" not in skip:
        out["neg_elbo"] = float(terms.neg_elbo.mean())
    out["reconstruction_nll"] = float(terms.reconstruction_nll.mean())
    out["reconstruction_mse"] = reconstruction_mse(model, xt, c, terms.latent_mean)
    discrete = isinstance(getattr(model, "likelihood", None), BernoulliLikelihood)
    train_rows = xt if train_x is None else model.prepare_x(train_x, "train_x")
    base = baseline_metrics(train_rows, xt, model.z_dim, likelihood=not discrete, per_row=True)
    out["pca_mse"], out["pca_components"] = base.pop("pca_mse"), base.pop("pca_components")
    ppca_log_p = base.pop("ppca_log_prob", None)  # (N,) float64, for the paired comparison below
    notes = dict(skip)
    if discrete:
        notes["ppca_nll"] = "a Gaussian density (PPCA) is not comparable to the discrete NLL of a Bernoulli likelihood"
    out["baselines_fitted_on"] = "train_x" if train_x is not None else "x (in-sample: flatters the baselines)"
    if c is not None:
        out["baselines_note"] = "the PCA/PPCA baselines model x without the condition: -log p(x), not -log p(x|c)"
    if terms.kl is not None:
        out["kl"] = float(terms.kl.mean())
    if terms.kl_per_dim is not None and "kl_per_dim" not in skip:
        out["kl_per_dim"] = terms.kl_per_dim.mean(0).tolist()
    if "active_units" not in skip:
        variance = terms.latent_mean.var(0)
        out["latent_mean_variance"] = variance.tolist()
        out["active_units"] = int((variance > ACTIVE_THRESHOLD).sum())
        bounds = np.cumsum([0, *getattr(model, "latent_layers", ())])
        for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):  # a model whose code splits into layers
            out[f"active_units_layer{i}"] = int((variance[lo:hi] > ACTIVE_THRESHOLD).sum())
    out.update({name: float(part.mean()) for name, part in terms.kl_parts.items()})
    model_metrics = getattr(model, "evaluation_metrics", None)
    if model_metrics is not None:
        out.update(model_metrics(xt, c))

    if "iwae_nll" not in skip:
        started = time.perf_counter()
        log_p = iwae_log_likelihood(model, xt, condition, k=k, seed=seed)
        out["iwae_nll"] = float(-log_p.mean())
        out["iwae_nll_se"] = float(log_p.std(ddof=1) / math.sqrt(n))
        out["iwae_k"] = k
        out["iwae_seconds"] = time.perf_counter() - started
    out.update(base)  # ppca_nll next to iwae_nll
    if "iwae_nll" not in skip and ppca_log_p is not None:  # log_p: the IWAE estimate's per-point values above
        # iwae_nll - ppca_nll is a mean over the same points: its standard error is that of the
        # per-point differences, much smaller than either NLL's own when the two models agree
        # on which points are hard (a few held-out rows carry most of both).
        gap = ppca_log_p - np.asarray(log_p, dtype=np.float64)  # (N,) -log p_model + log p_ppca
        out["ppca_gap_se"] = float(gap.std(ddof=1) / math.sqrt(n))
        out.update(largest_gap(gap))
        if train_x is not None:  # in-sample baselines: no point lies outside the rows they were fitted on
            train_np = train_rows.cpu().numpy()
            out.update(furthest_outside(x_np[out["ppca_gap_top_point"]], train_np.min(0), train_np.max(0)))

    if model.z_dim == 2 and "quadrature_nll" not in skip:
        distinct = 1 if c is None else int(torch.unique(c, dim=0).shape[0])
        if distinct <= _MAX_QUAD_CONDITIONS:
            quad = quadrature_log_likelihood(model, xt, condition, grid=quadrature_grid)
            out["quadrature_nll"] = quad.nll
            out["quadrature_error"] = quad.nll_error
            out["quadrature_grid"] = quad.grid
        else:
            logger.info("quadrature skipped: %d distinct condition rows (at most %d)", distinct, _MAX_QUAD_CONDITIONS)

    # Sample quality: model samples under the test set's own condition distribution.
    generated = None
    if "diversity" not in skip:
        rng = np.random.default_rng(seed)
        pick = rng.integers(0, n, size=n_samples)
        cond_rows = None if c is None else _condition_values(model, c, pick)
        generated = model.sample(n_samples, condition=cond_rows, seed=seed).reshape(n_samples, -1)  # (S, D)
        out["diversity"] = diversity(generated)
        out["data_diversity"] = diversity(x_np)
        side = min(n_samples, _TWO_SAMPLE_MAX)
        reference, compared = _sample_points(x_np, side, seed), generated[:side]
        bandwidth = median_bandwidth(compared, reference, seed=seed)
        stat, p_value = mmd_test(compared, reference, bandwidth=bandwidth, permutations=permutations, seed=seed)
        out["mmd2"], out["mmd_bandwidth"] = stat, bandwidth
        if permutations > 0:
            out["mmd_p_value"] = p_value
        out["energy_distance"] = energy_distance(compared, reference)

    if is_curve_shape(getattr(model, "x_shape", None)):
        out["curves"] = _curve_comparison(model, xt, condition, train_rows, generated, permutations=permutations, seed=seed)
        if generated is not None and getattr(model.likelihood_head, "constraint", "none") != "none":
            with unconstrained(model):
                raw = model.sample(n_samples, condition=cond_rows, seed=seed).reshape(n_samples, -1)
            out["curves"]["model"] |= constraint_effect(generated, raw, model.x_shape)

    if spec is not None and model.x_dim == 2:
        if model.condition is None:
            out["true_nll"] = float(-ring_log_density(x_np, spec["modes"], spec["radius"], spec["std"]).mean())
            out["ring_entropy"] = ring_entropy(spec["modes"], spec["std"])
            if generated is not None:
                out.update(mode_coverage(generated, spec["modes"], spec["radius"], spec["std"]))
        elif isinstance(model.condition, OneHot) and model.condition.n_classes == spec["modes"]:
            # The model's likelihood is p(x | label): its floor is the mode's own Gaussian.
            centres = ring_centres(spec["modes"], spec["radius"])[c.argmax(1).cpu().numpy()]
            sq = ((x_np.astype(np.float64) - centres) ** 2).sum(1)
            out["true_nll"] = float((sq / (2 * spec["std"] ** 2) + math.log(2 * math.pi * spec["std"] ** 2)).mean())
            out["ring_entropy"] = ring_entropy(1, spec["std"])

    if generated is not None and isinstance(model.condition, OneHot):
        wanted = np.asarray(cond_rows).reshape(-1).astype(np.int64)
        test_labels = c.argmax(1).cpu().numpy()
        out["condition_accuracy"] = knn_accuracy(x_np, test_labels, generated, wanted)
        if spec is not None and model.x_dim == 2 and model.condition.n_classes == spec["modes"]:
            out["mode_adherence"] = mode_adherence(generated, wanted, spec["modes"], spec["radius"], spec["std"])
    if generated is not None and isinstance(model.condition, Continuous):
        fn = condition_fn
        if fn is None and spec is not None and model.condition.dim == 1 and model.x_dim == 2:
            fn = ring_radius
        if fn is not None:
            realised = np.asarray(fn(generated), dtype=np.float64).reshape(n_samples, -1)
            error = realised - np.asarray(cond_rows, dtype=np.float64).reshape(n_samples, -1)
            out["condition_mae"] = float(np.abs(error).mean())
            out["condition_rmse"] = float(np.sqrt((error**2).mean()))

    if classes is not None and model.condition is None:
        z = terms.latent_mean
        sub = _sample_points(np.arange(n), min(n, 2000), seed)
        half = len(sub) // 2
        if half >= 1:
            out["latent_knn_accuracy"] = knn_accuracy(z[sub[:half]], classes[sub[:half]], z[sub[half:]], classes[sub[half:]])
    if notes:
        out["notes"] = notes
    return out


def _curve_comparison(
    model: Any, xt: torch.Tensor, condition: Any, train_rows: torch.Tensor, generated: np.ndarray | None, **kwargs: Any
) -> dict[str, Any]:
    """``evaluate()``'s ``"curves"``: :func:`vaekit.shape_metrics.compare_with_pca` of prepared curves ``xt`` (N, 2P).

    The model's reconstructions are ``model.reconstruct`` (decoder means at the posterior means),
    its samples ``generated`` (S, 2P) (None: no sample metrics); PCA is fitted on ``train_rows``
    with ``model.z_dim`` components.
    """
    from vaekit.shape_metrics import compare_with_pca  # it builds on this module

    shape = (-1, *model.x_shape)
    recon = model.reconstruct(xt, condition).reshape(shape)
    data, train = xt.cpu().numpy().reshape(shape), train_rows.cpu().numpy().reshape(shape)
    samples = None if generated is None else generated.reshape(shape)
    return compare_with_pca(data, train, recon, samples, model.z_dim, **kwargs)


def constraint_effect(samples: np.ndarray, raw: np.ndarray, x_shape: tuple[int, ...]) -> dict[str, float]:
    """What a constrained mean (:mod:`vaekit.constraints`) did to a model's samples, so that a model leaning on it shows.

    ``samples`` (S, D) are the decoder means with the constraint, ``raw`` (S, D) the same draws
    without it. Returns ``valid_fraction_unconstrained`` (:func:`vaekit.shapes.validity` of the raw
    means) and ``constraint_changed_fraction``: the share of samples with a point moved by more
    than :data:`CONSTRAINT_MOVED`, the validity checks' own tolerance (0.002 chord).
    """
    from vaekit.shapes import validity

    moved = np.abs(samples - raw).reshape(len(raw), -1).max(1) > CONSTRAINT_MOVED
    return {
        "valid_fraction_unconstrained": float(validity(raw.reshape(-1, *x_shape)).valid.mean()),
        "constraint_changed_fraction": float(moved.mean()),
    }


# A sample counts as changed by the constraint when a coordinate moved by more than this (data
# units): the tolerance of the validity checks.
CONSTRAINT_MOVED = X_BACKSTEP


@torch.no_grad()
def reconstruction_mse(model: Any, xt: torch.Tensor, c: torch.Tensor | None, latent_mean: np.ndarray) -> float:
    """Mean squared error per element between prepared ``xt`` (N, D) and the decoder mean at ``latent_mean`` (N, Z).

    In the user's units, the units of :meth:`vaekit.baselines.PCA.mse`.
    """
    total = 0.0
    for start in range(0, xt.shape[0], _ROWS):
        z = torch.as_tensor(latent_mean[start : start + _ROWS], dtype=xt.dtype, device=xt.device)
        mean = model.decode_batch(z, _rows(c, slice(start, start + _ROWS))).mean  # (B, D)
        total += float(((xt[start : start + _ROWS].double() - mean.double()) ** 2).sum())
    return total / xt.numel()


def _class_labels(labels: Any, n: int) -> np.ndarray | None:
    """Integer class labels (N,), or None for continuous labels such as a position along a curve."""
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
    if y.ndim != 1 or y.shape[0] != n or y.dtype.kind not in "biuf":
        raise InputError(f"labels must have one entry per row of x ({n}). Got {describe(labels)} instead.")
    if y.dtype.kind == "f" and not np.all(y == np.round(y)):
        return None
    return y.astype(np.int64)


def _condition_values(model: Any, c: torch.Tensor, pick: np.ndarray) -> np.ndarray:
    """The user's condition values (labels for OneHot, values for Continuous) of prepared rows ``pick``."""
    rows = c[torch.from_numpy(pick).to(c.device)]
    if isinstance(model.condition, OneHot):
        return rows.argmax(1).cpu().numpy()
    return rows.cpu().numpy()
