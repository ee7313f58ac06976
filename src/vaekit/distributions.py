"""Likelihoods p(x|z), the prior p(z), and closed forms used by the objectives.

A likelihood *spec* (``Gaussian(variance=0.1)``, ``Bernoulli()``) is a frozen dataclass that
can be written to JSON. ``spec.head(x_dim)`` builds the small module that turns the decoder's
last layer into a torch ``Distribution`` over x, in the user's units (standardisation undone).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import nn
from torch.distributions import Bernoulli as TorchBernoulli
from torch.distributions import Categorical, Distribution, Independent, MixtureSameFamily, Normal, StudentT, kl_divergence

from vaekit.conditions import OneHot
from vaekit.configs import register_spec, spec_from_config
from vaekit.constraints import CONSTRAINTS
from vaekit.constraints import airfoil as airfoil_mean
from vaekit.errors import InputError, InputTypeError, describe
from vaekit.formatting import bound_text
from vaekit.validate import positive_float

LOG_2PI = math.log(2.0 * math.pi)

# Bounds on every log-variance the networks produce: exp(-18) ~ 1.5e-8 and exp(12) ~ 1.6e5 keep
# std, its square and its reciprocal finite in float32 while leaving every sensible value free.
LOGVAR_MIN, LOGVAR_MAX = -18.0, 12.0
# Where a learned Student's t df starts (Gaussian.df = 'learned'): tails a little heavier than a Gaussian's.
DF_START = 10.0


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


def _diagonal_normal_pair(qz: Distribution, pz: Distribution) -> bool:
    """Both are diagonal Gaussians over the last axis: Independent(Normal, 1).

    A subclass that only changes how it samples (the sweep's given-noise posterior) has the same
    density, so it counts too.
    """
    return all(isinstance(d, Independent) and type(d.base_dist) is Normal and d.reinterpreted_batch_ndims == 1 for d in (qz, pz))


def kl(qz: Distribution, pz: Distribution, z: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """KL(q(z|x) || p(z)) per point, in closed form where torch has one, else by Monte Carlo.

    Parameters
    ----------
    qz : the posterior, batch shape (B,), event shape (Z,) (anything with ``log_prob``).
    pz : the prior, event shape (Z,) (batch shape () or (B,)).
    z : (B, Z) a reparameterised draw from ``qz``; needed when no closed form exists. The
        one-sample estimate log q(z) - log p(z) is unbiased and its gradient is the usual
        reparameterisation gradient (Kingma and Welling, 2014, eq. 6).

    Returns
    -------
    kl : (B,) in nats.
    kl_per_dim : (B, Z) when both are diagonal Gaussians (the KL then splits over dimensions),
        else None.

    """
    if _diagonal_normal_pair(qz, pz):
        per_dim = kl_per_dimension(qz, pz)
        return per_dim.sum(-1), per_dim
    try:
        return kl_divergence(qz, pz), None
    except NotImplementedError:
        pass
    if z is None:
        raise InputError(
            f"z must be a draw from q(z|x) to estimate KL({type(qz).__name__} || {type(pz).__name__}), "
            "which has no closed form. Got None instead."
        )
    return qz.log_prob(z) - pz.log_prob(z), None


def draw(dist: Distribution, sample_shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Reparameterised draws (*sample_shape, *batch, *event) from ``dist`` with an explicit generator.

    torch distributions take no generator. A diagonal Gaussian draws ``loc + scale * randn``
    from the generator itself (the numbers vaekit drew before models were pluggable); any other
    distribution draws with ``rsample`` (``sample`` if it has none) under torch's global RNG,
    seeded from the generator inside a fork, so the result still follows from the seed alone.
    """
    base = getattr(dist, "base_dist", None)
    if type(dist) is Independent and type(base) is Normal:
        shape = torch.Size(sample_shape) + base.loc.shape
        eps = torch.randn(shape, generator=generator, device=base.loc.device, dtype=base.loc.dtype)
        return base.loc + base.scale * eps
    seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device))
    devices = [generator.device.index or 0] if generator.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return dist.rsample(sample_shape) if dist.has_rsample else dist.sample(sample_shape)


def posterior_mean(qz: Distribution, *, samples: int = 64, seed: int = 0) -> torch.Tensor:
    """E_q[z], (B, Z): exact where the distribution knows it, else the mean of ``samples`` draws.

    The draws are seeded with ``seed`` (torch's global RNG is left alone), so that encoding or
    reconstructing the same points twice gives the same numbers.
    """
    try:
        return qz.mean
    except NotImplementedError:
        pass
    generator = torch.Generator().manual_seed(seed)  # it only seeds draw()'s forked global RNG
    with torch.no_grad():
        return draw(qz, (samples,), generator).mean(0)


@register_spec("likelihood")
@dataclass(frozen=True)
class Gaussian:
    """Gaussian likelihood p(x|z) = N(x; mu(z), sigma^2), or Student's t with the same mean and scale (``df``).

    Parameters
    ----------
    variance : float or {"learned", "per_point"}
        A number fixes sigma^2 for every dimension (the lecture's ``reconstruction_variance``,
        in standardised units when the model standardises). ``"learned"`` learns one variance
        per data dimension; ``"per_point"`` lets the decoder output a variance for each point.
        A learned variance is a parameter, not a network output, so Adam moves its softplus
        argument by typically about ``lr`` per step: from 1 it falls at the lowest to about
        ``softplus(0.5413 - lr * steps)``. That pace regularises small data (README "vaekit
        vs PCA": a 10 times faster variance overfitted tables of 11 to 46 rows).
    min_variance : float
        Floor for learned variances, so the likelihood cannot diverge on exact data.
    constraint : {"none", "airfoil"}
        ``"airfoil"`` (data of shape (P, 2) in the layout of :mod:`vaekit.shapes`) passes the
        mean through :func:`vaekit.constraints.airfoil`, so every decoded mean is a valid
        airfoil (x increasing along each surface, surfaces not crossing, trailing edge closed).
    log_columns : tuple of int, default ()
        Flat column indices modelled on a log scale: y = log(x + log_offset) is Gaussian, so x
        is log-normal (shifted by ``-log_offset``) in those columns. For positive values that
        span decades (counts, sizes), where one large value would otherwise sit hundreds of
        standard deviations out. The model's networks and its standardisation see y; every
        density is in the user's units (the Jacobian, -sum log(x + log_offset), is included),
        and decoded means are the log-normal's means, exp(m + s^2/2) - log_offset (with ``df``:
        a log-t, decoded to its median exp(m) - log_offset).
    log_offset : float, default 0.0
        Added before the log: 0 needs values > 0; 1 gives log(1 + x) for counts with zeros.
        Data with x + log_offset <= 0 in a log column is refused.
    df : {"none", "learned"} or float, default "none"
        Student's t in place of the Gaussian: p(x|z) = t_df(x; mu(z), sigma) per column, with the
        same mean and scale (``variance`` sets sigma^2, the scale; the t's variance is
        sigma^2 df / (df - 2)). Heavier tails make a point far from every decoded mean cost
        (df + 1)/2 log(1 + r^2/df) for a distance of r scales, a multiple of its log, not its
        square: one held-out row outside the training range no longer outweighs all the others
        (README "Heavy tails"). "none": the Gaussian;
        "learned": one df per column, 2 + exp(r) starting at :data:`DF_START`; a number > 2 fixes
        it (finite variance). On log columns y = log(x + log_offset) is t-distributed; a log-t
        has no finite mean, so decoded values there are its median, exp(m) - log_offset.

    """

    variance: float | Literal["learned", "per_point"] = field(
        default=0.1, metadata={"help": "Gaussian variance: a number, 'learned' or 'per_point'"}
    )
    min_variance: float = field(default=1e-4, metadata={"help": "floor of a learned variance"})
    constraint: Literal["none", "airfoil"] = field(
        default="none", metadata={"help": "constraint on the mean: 'airfoil' makes every decoded shape a valid airfoil"}
    )
    log_columns: tuple[int, ...] = field(default=(), metadata={"help": "column indices modelled as log(x + log_offset)"})
    log_offset: float = field(
        default=0.0, metadata={"help": "offset of the log columns: log(x + offset); 1 for counts with zeros"}
    )
    df: float | Literal["none", "learned"] = field(
        default="none",
        metadata={
            "help": "Student's t degrees of freedom of p(x|z): 'none' (Gaussian), 'learned' (per column) or a number > 2; "
            "default: learned for a data file, none for the built-in datasets"
        },
    )
    kind: ClassVar[str] = "gaussian"
    # A run config describes them with the data ([data] log_columns by name, [data] log_offset);
    # vaekit.runs.build_model turns the names into indices.
    FROM_DATA: ClassVar[tuple[str, ...]] = ("log_columns", "log_offset")

    def __post_init__(self) -> None:
        if isinstance(self.variance, str):
            if self.variance not in ("learned", "per_point"):
                raise InputError(
                    f"Gaussian.variance must be a positive number, 'learned' or 'per_point'. Got {self.variance!r} instead."
                )
        else:
            positive_float(self.variance, "Gaussian.variance")
        positive_float(self.min_variance, "Gaussian.min_variance")
        if isinstance(self.df, str):
            if self.df not in ("none", "learned"):
                raise InputError(f"Gaussian.df must be 'none', 'learned' or a number > 2. Got {self.df!r} instead.")
        elif isinstance(self.df, bool) or not isinstance(self.df, numbers.Real) or not 2 < self.df < math.inf:
            raise InputError(f"Gaussian.df must be 'none', 'learned' or a finite number > 2. Got {self.df!r} instead.")
        else:
            object.__setattr__(self, "df", float(self.df))  # a numpy float would not write to model.json
        if self.constraint not in CONSTRAINTS:
            raise InputError(f"Gaussian.constraint must be one of {list(CONSTRAINTS)}. Got {self.constraint!r} instead.")
        object.__setattr__(self, "log_columns", column_indices(self.log_columns, "Gaussian.log_columns"))
        offset = self.log_offset
        if isinstance(offset, bool) or not isinstance(offset, numbers.Real):
            raise InputTypeError(f"Gaussian.log_offset must be a number. Got {describe(offset)} instead.")
        if not math.isfinite(offset):
            raise InputError(f"Gaussian.log_offset must be a finite number. Got {offset!r} instead.")
        object.__setattr__(self, "log_offset", float(offset))
        if self.log_offset != 0.0 and not self.log_columns:
            raise InputError(
                f"Gaussian.log_offset applies to log_columns: without them it must be 0. Got {self.log_offset:g} instead."
            )
        if self.log_columns and self.constraint != "none":
            raise InputError(
                f"Gaussian.log_columns must be empty with constraint={self.constraint!r} (the constraint shapes "
                f"the mean in data units). Got {list(self.log_columns)} instead."
            )

    def out_features(self, x_dim: int) -> int:
        """Width of the decoder output this likelihood reads."""
        return 2 * x_dim if self.variance == "per_point" else x_dim

    def head(self, x_dim: int) -> nn.Module:
        """Module mapping decoder output (B, out_features) to a Distribution over (B, x_dim)."""
        return _GaussianHead(self, x_dim)

    def check_columns(self, x_dim: int) -> None:
        """Refuse log column indices outside [0, x_dim)."""
        outside = [i for i in self.log_columns if i >= x_dim]
        if outside:
            raise InputError(
                f"Gaussian.log_columns must be column indices in [0, {x_dim}) (the data has {x_dim} columns). "
                f"Got {outside[0]} instead."
            )

    def check_data(self, x: torch.Tensor, name: str = "x") -> None:
        """Refuse rows (N, D) with x + log_offset <= 0 in a log column (outside the log-normal's support).

        Every finite real number is in the support of the other columns.
        """
        if not self.log_columns or x.shape[0] == 0:
            return
        values = x[:, list(self.log_columns)] + self.log_offset  # (N, L)
        bad = values <= 0
        if bad.any():
            j = int(bad.any(0).nonzero()[0])
            column = self.log_columns[j]
            low = float(x[:, column].min())
            raise InputError(
                f"{name} column {column} {support_text(self.log_offset)}; raise log_offset above {bound_text(0.0 - low)} "
                f"or leave the column out of log_columns. Got min {low:g} instead."
            )

    def to_config(self) -> dict[str, Any]:
        """JSON-ready description (inverse of :func:`likelihood_from_config`).

        Without log columns the log keys are left out, and without Student's t the ``df`` key, so
        such a model.json is the one vaekit wrote before they existed (and older versions can read it).
        """
        out = {"type": self.kind, **asdict(self), "log_columns": list(self.log_columns)}  # a list, as JSON reads it back
        if not self.log_columns:
            del out["log_columns"], out["log_offset"]
        if self.df == "none":
            del out["df"]  # a Gaussian's model.json as vaekit wrote it before Student's t
        return out


def support_text(offset: float) -> str:
    """'must be > -c (log_columns model it as log(x + c))', signs written out ('-0' never appears)."""
    shifted = "x" if offset == 0 else f"x + {offset:g}" if offset > 0 else f"x - {-offset:g}"
    return f"must be > {0.0 - offset:g} (log_columns model it as log({shifted}))"


def column_indices(value: Any, name: str) -> tuple[int, ...]:
    """Distinct non-negative column indices, sorted, as a tuple; raises naming ``name``."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)):
        raise InputError(f"{name} must be a sequence of column indices. Got {value!r} instead.")
    for i in value:
        if isinstance(i, bool) or not isinstance(i, numbers.Integral) or i < 0:
            raise InputError(f"{name} must hold column indices (ints >= 0). Got {i!r} instead.")
    indices = [int(i) for i in value]
    if len(set(indices)) != len(indices):
        raise InputError(f"{name} must not repeat a column. Got {indices} instead.")
    return tuple(sorted(indices))


class _GaussianHead(nn.Module):
    def __init__(self, spec: Gaussian, x_dim: int) -> None:
        super().__init__()
        self.mode = spec.variance if isinstance(spec.variance, str) else "fixed"
        self.constraint = spec.constraint
        self.min_variance = spec.min_variance
        self.log_columns, self.log_offset = spec.log_columns, spec.log_offset
        if self.log_columns:
            spec.check_columns(x_dim)
            mask = torch.zeros(x_dim, dtype=torch.bool)
            mask[list(self.log_columns)] = True
            # Part of the architecture (model.json), not of the weights: not saved in the state dict.
            self.register_buffer("log_mask", mask, persistent=False)
        if self.mode == "fixed":
            self.register_buffer("fixed_std", torch.full((x_dim,), math.sqrt(spec.variance)))
        if self.mode == "learned":
            # softplus(0.5413) = 1: start at unit variance.
            self.raw_variance = nn.Parameter(torch.full((x_dim,), 0.5413))
        self.df_mode = spec.df if isinstance(spec.df, str) else "fixed"
        if self.df_mode == "learned":
            # df = 2 + exp(r): a finite variance at every step, and Adam's steps of about lr on r
            # reach from near 2 to hundreds within a few thousand steps.
            self.raw_df = nn.Parameter(torch.full((x_dim,), math.log(DF_START - 2.0)))
        elif self.df_mode == "fixed":
            self.register_buffer("fixed_df", torch.full((x_dim,), float(spec.df)), persistent=False)

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
        if self.constraint == "airfoil":
            mean = airfoil_mean(mean)  # in the user's units: chord lengths
        if self.df_mode == "none":
            base = diagonal_normal(mean, std)
        else:
            # No argument checks, as for every distribution here: a diverging run is then the
            # trainer's TrainingError (non-finite loss, with its causes), not torch's ValueError.
            t = StudentT(self.degrees_of_freedom().expand_as(mean), mean, std, validate_args=False)
            base = Independent(t, 1, validate_args=False)
        if self.log_columns:
            return LogColumns(base, self.log_mask, self.log_offset)
        return base

    def degrees_of_freedom(self) -> torch.Tensor | None:
        """Student's t degrees of freedom per column (D,), or None for a Gaussian."""
        if self.df_mode == "learned":
            return 2.0 + self.raw_df.exp()
        return self.fixed_df if self.df_mode == "fixed" else None

    def log_transform(self, x: torch.Tensor) -> torch.Tensor:
        """Rows (..., D) in the user's units -> the units the Gaussian is over (log columns logged)."""
        if not self.log_columns:
            return x
        return log_columns(x, self.log_mask, self.log_offset)


def log_columns(x: torch.Tensor, mask: torch.Tensor, offset: float) -> torch.Tensor:
    """log(x + offset) where ``mask`` (D,) is set, x elsewhere; (..., D)."""
    # The log reads 1 outside the mask, so a negative value there gives no NaN (nor a NaN gradient).
    return torch.where(mask, torch.where(mask, x + offset, torch.ones_like(x)).log(), x)


class LogColumns(Distribution):
    """A diagonal Gaussian (or Student's t) over y seen in the units of x: batch shape (B,), event shape (D,).

    y = log(x + offset) on the ``mask`` (D,) columns and y = x on the others. On the masked
    columns x is log-normal (shifted by -offset): log p(x) = log p_base(y) - sum_masked
    log(x + offset). ``mean`` is the exact mean, exp(m + s^2/2) - offset, there.
    """

    arg_constraints: ClassVar[dict] = {}
    has_rsample = True

    def __init__(self, base: Independent, mask: torch.Tensor, offset: float) -> None:
        self.base, self.mask, self.offset = base, mask, offset
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    def to_base(self, x: torch.Tensor) -> torch.Tensor:
        """Rows x (..., D) -> y (..., D)."""
        return log_columns(x, self.mask, self.offset)

    def from_base(self, y: torch.Tensor) -> torch.Tensor:
        """Rows y (..., D) -> x (..., D)."""
        return torch.where(self.mask, _masked_exp(y, self.mask) - self.offset, y)

    def log_jacobian(self, x: torch.Tensor) -> torch.Tensor:
        """The log |dy/dx| summed over the event, (...,): sum over masked columns of -log(x + offset)."""
        return -(self.to_base(x) * self.mask).sum(-1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.base.log_prob(self.to_base(value)) + self.log_jacobian(value)

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> torch.Tensor:
        return self.from_base(self.base.rsample(sample_shape))

    @property
    def median(self) -> torch.Tensor:
        """exp(m) - offset on the log columns (the mean elsewhere): below the mean by the factor exp(s^2/2)."""
        return self.from_base(self.base.base_dist.loc)

    @property
    def mean(self) -> torch.Tensor:
        """The log-normal's mean exp(m + s^2/2) - offset on the log columns; a log-t has none: its median there."""
        base = self.base.base_dist
        if type(base) is not Normal:  # Student's t (Gaussian.df): E[exp(y)] is infinite
            return self.median
        lognormal = _masked_exp(base.loc + 0.5 * base.scale**2, self.mask) - self.offset
        return torch.where(self.mask, lognormal, base.loc)

    @property
    def variance(self) -> torch.Tensor:
        """(exp(s^2) - 1) exp(2m + s^2) on the log columns (a log-t's: inf), the base's variance elsewhere."""
        base = self.base.base_dist
        if type(base) is not Normal:
            return torch.where(self.mask, torch.full_like(base.loc, math.inf), base.variance)
        s2 = base.scale**2
        lognormal = _masked_exp(s2, self.mask).sub(1.0) * _masked_exp(2.0 * base.loc + s2, self.mask)
        return torch.where(self.mask, lognormal, s2)


def _masked_exp(y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Exp(y) on the mask, 1 elsewhere (y: (..., D), mask: (D,)).

    An unlogged column's exp may overflow, and inf there would make the gradient through
    ``torch.where`` NaN (0 * inf).
    """
    return torch.where(mask, y, torch.zeros_like(y)).exp()


@register_spec("likelihood")
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

    def check_data(self, x: torch.Tensor, name: str = "x") -> None:
        """Refuse data (N, D) outside [0, 1], where the Bernoulli log-probability means nothing.

        Binary cross-entropy of a value outside [0, 1] is unbounded below, so a fit would drive
        the "likelihood" to any number it likes (a -ELBO of -14623 nats) instead of failing.
        """
        low, high = float(x.min()), float(x.max())
        if low < 0.0 or high > 1.0:
            raise InputError(
                f"{name} must lie in [0, 1] for likelihood=Bernoulli() (binary or grey-level data); rescale it "
                f"(e.g. divide by its maximum) or use a Gaussian likelihood. Got min {low:g}, max {high:g} instead."
            )

    def to_config(self) -> dict[str, Any]:
        """JSON-ready description (inverse of :func:`likelihood_from_config`)."""
        return {"type": self.kind}


class _BernoulliHead(nn.Module):
    def forward(self, h: torch.Tensor, shift: torch.Tensor | None, scale: torch.Tensor | None) -> Independent:
        return Independent(TorchBernoulli(logits=h, validate_args=False), 1, validate_args=False)


Likelihood = Gaussian | Bernoulli


def likelihood_from_config(config: dict[str, Any]) -> Likelihood:
    """Rebuild a likelihood spec from :meth:`to_config` output."""
    return spec_from_config(config, "likelihood", "likelihood")


def _normal_energy(px: Distribution, x: torch.Tensor) -> torch.Tensor:
    base = px.base_dist
    return (((x - base.loc) / base.scale) ** 2).sum(-1) / 2


def _bernoulli_energy(px: Distribution, x: torch.Tensor) -> torch.Tensor:
    return -px.log_prob(x)


# The lecture's reconstruction term, sum((x - mean)^2) / (2 sigma^2), is -log p(x|z) without its
# normalising constant. Keyed by the base distribution's type: no "mse"/"bce" branches in models.
_ENERGIES = {Normal: _normal_energy, TorchBernoulli: _bernoulli_energy}


def reconstruction_energy(px: Distribution, x: torch.Tensor) -> torch.Tensor:
    """-log p(x|z) up to its x-independent constant (the lecture's units); shape (B,).

    Likelihoods without a known constant (a new one) report -log p(x|z) itself. Log columns
    add their Jacobian, -log p's x-dependent part: sum log(x + offset).
    """
    if type(px) is LogColumns and type(px.base.base_dist) is Normal:
        return _normal_energy(px.base, px.to_base(x)) - px.log_jacobian(x)
    energy = _ENERGIES.get(type(getattr(px, "base_dist", None)))
    return -px.log_prob(x) if energy is None else energy(px, x)


# ----------------------------------------------------------------------------- priors
# The learned priors share these settings (one --prior-components flag), so they share one help.
_COMPONENTS_HELP = "components of a learned prior (mixture: Gaussians; vamp: pseudo-inputs)"
_INIT_SCALE_HELP = "spread of a learned prior's initial values (mixture: means; vamp: pseudo-inputs)"


@register_spec("prior")
@dataclass(frozen=True)
class StandardNormal:
    """The prior p(z) = N(0, I): fixed, no parameters (the lecture's)."""

    kind: ClassVar[str] = "standard_normal"

    def build(self, z_dim: int, x_shape: tuple[int, ...], *, condition: Any = None) -> nn.Module:
        """The module whose ``forward(model)`` returns p(z) with event shape (z_dim,)."""
        return _StandardNormalPrior(z_dim)

    def to_config(self) -> dict[str, Any]:
        """JSON-ready description (inverse of :func:`prior_from_config`)."""
        return {"type": self.kind}


class _StandardNormalPrior(nn.Module):
    def __init__(self, z_dim: int) -> None:
        super().__init__()
        self.z_dim = z_dim
        # A zero-size buffer only to follow the model's device and dtype; it is not saved.
        self.register_buffer("_anchor", torch.zeros(0), persistent=False)

    def forward(self, model: nn.Module | None = None) -> Independent:
        return standard_normal(self.z_dim, self._anchor.device, self._anchor.dtype)


@register_spec("prior")
@dataclass(frozen=True)
class MixturePrior:
    """A learned mixture of K diagonal Gaussians, p(z) = sum_k w_k N(z; m_k, diag(s_k^2)).

    A learned prior lets the aggregate posterior keep clusters (one per mode of the data) that
    N(0, I) would pull together (Tomczak and Welling, 2018, use a VampPrior for the same reason).
    KL(q || p) has no closed form, so the objectives use a one-sample Monte Carlo estimate.

    Parameters
    ----------
    components : int, default 10
        K, the number of mixture components (>= 1).
    init_scale : float, default 1.0
        Spread of the initial component means (drawn from N(0, init_scale^2), seeded with the
        model); the component scales start at 1 and the weights uniform.

    """

    components: int = field(default=10, metadata={"help": _COMPONENTS_HELP})
    init_scale: float = field(default=1.0, metadata={"help": _INIT_SCALE_HELP})
    kind: ClassVar[str] = "mixture"

    def __post_init__(self) -> None:
        from vaekit.validate import positive_int

        positive_int(self.components, "MixturePrior.components")
        positive_float(self.init_scale, "MixturePrior.init_scale")

    def build(self, z_dim: int, x_shape: tuple[int, ...], *, condition: Any = None) -> nn.Module:
        """The module whose ``forward(model)`` returns p(z) with event shape (z_dim,)."""
        return _MixturePrior(self, z_dim)

    def to_config(self) -> dict[str, Any]:
        """JSON-ready description (inverse of :func:`prior_from_config`)."""
        return {"type": self.kind, **asdict(self)}


class _MixturePrior(nn.Module):
    def __init__(self, spec: MixturePrior, z_dim: int) -> None:
        super().__init__()
        self.means = nn.Parameter(torch.randn(spec.components, z_dim) * spec.init_scale)  # (K, Z)
        self.log_scales = nn.Parameter(torch.zeros(spec.components, z_dim))  # (K, Z)
        self.logits = nn.Parameter(torch.zeros(spec.components))  # (K,)

    def forward(self, model: nn.Module | None = None) -> MixtureSameFamily:
        # Scales bounded like the encoder's (LOGVAR limits halved): a component cannot collapse to a point.
        scales = self.log_scales.clamp(LOGVAR_MIN / 2, LOGVAR_MAX / 2).exp()
        components = Independent(Normal(self.means, scales, validate_args=False), 1, validate_args=False)
        return MixtureSameFamily(Categorical(logits=self.logits, validate_args=False), components, validate_args=False)


@register_spec("prior")
@dataclass(frozen=True)
class VampPrior:
    """The VampPrior (Tomczak and Welling, 2018): p(z) = (1/K) sum_k q(z | u_k), u_k learned pseudo-inputs.

    The prior is the model's own encoder applied to K learned points, so it is the aggregate
    posterior of a learned K-point data set: it follows the encoder as it trains, and it has
    as many modes as the data needs (up to K). KL(q || p) has no closed form; the objectives
    use a one-sample Monte Carlo estimate. Each prior evaluation runs the encoder on K rows.

    Pseudo-inputs u_k, (K, D) flat, live where the encoder's input lives: in standardised units
    when the model was built with ``standardize=True`` (the encoder reads them as they are,
    without the data's shift and scale), so their scale does not depend on the data's units.
    They start as N(0, init_scale^2) draws (seeded with the model): with ``standardize=True``
    that is the spread of the training data itself. The paper also initialises from training
    points, which ``build`` cannot see (the model is built before any data); random starts
    worked as well in its experiments.

    A conditional model gives each pseudo-input a learned pseudo-condition c_k, so that
    q(z | u_k, c_k) is defined: for ``OneHot(n)``, c_k = softmax(l_k) of learned logits l_k
    (a valid mixture of one-hot vectors, which the encoder reads like a label); for
    ``Continuous(dim)``, free learned values (starting as N(0, init_scale^2)). p(z) itself stays
    unconditional, as the model's other priors are.

    Parameters
    ----------
    components : int, default 50
        K, the number of pseudo-inputs (>= 1).
    init_scale : float, default 1.0
        Standard deviation of the initial pseudo-inputs (and pseudo-conditions), in the
        encoder's input units.

    """

    components: int = field(default=50, metadata={"help": _COMPONENTS_HELP})
    init_scale: float = field(default=1.0, metadata={"help": _INIT_SCALE_HELP})
    kind: ClassVar[str] = "vamp"

    def __post_init__(self) -> None:
        from vaekit.validate import positive_int

        positive_int(self.components, "VampPrior.components")
        positive_float(self.init_scale, "VampPrior.init_scale")

    def build(self, z_dim: int, x_shape: tuple[int, ...], *, condition: Any = None) -> nn.Module:
        """The module whose ``forward(model)`` returns p(z): a uniform mixture of the encoder's q(z | u_k, c_k)."""
        return _VampPrior(self, math.prod(x_shape), condition)

    def to_config(self) -> dict[str, Any]:
        """JSON-ready description (inverse of :func:`prior_from_config`)."""
        return {"type": self.kind, **asdict(self)}


class _VampPrior(nn.Module):
    def __init__(self, spec: VampPrior, x_dim: int, condition: Any) -> None:
        super().__init__()
        k = spec.components
        self.pseudo_inputs = nn.Parameter(torch.randn(k, x_dim) * spec.init_scale)  # (K, D), network input units
        # OneHot: logits whose softmax is the pseudo-condition; Continuous: the values themselves.
        self.onehot = isinstance(condition, OneHot)
        if condition is not None:
            self.pseudo_conditions = nn.Parameter(torch.randn(k, condition.in_features) * spec.init_scale)  # (K, C)
        else:
            self.pseudo_conditions = None

    def forward(self, model: nn.Module) -> MixtureSameFamily:
        c = self.pseudo_conditions
        if c is not None and self.onehot:
            c = c.softmax(-1)  # (K, C), rows on the simplex
        # The encoder and posterior head directly, not encode_batch: the pseudo-inputs are already
        # in the network's input units (no standardisation), and the sweep patches encode_batch.
        components = model.posterior_head(model.encoder(self.pseudo_inputs, c))  # batch (K,), event (Z,)
        weights = Categorical(logits=self.pseudo_inputs.new_zeros(self.pseudo_inputs.shape[0]), validate_args=False)
        return MixtureSameFamily(weights, components, validate_args=False)


Prior = StandardNormal | MixturePrior | VampPrior


def prior_from_config(config: dict[str, Any] | None) -> Prior:
    """Rebuild a prior spec from :meth:`to_config` output (``None``: the standard normal)."""
    if config is None:
        return StandardNormal()
    return spec_from_config(config, "prior", "prior")
