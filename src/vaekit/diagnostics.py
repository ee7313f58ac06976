"""Warnings about a trained run that numbers alone would hide (issue 11: no silent failures).

Posterior collapse is the one that matters most: a VAE whose latent code carries nothing
decodes every point to the same mean, yet its loss and a "KL 0.0000" look like any other run.
:func:`collapse_warning` says it out loud, with the likely cause and the flags that fix it;
:func:`vaekit.runs.train` puts its message in metrics.json (``warnings``), the report, the
command line's summary and the library log.

The criterion
-------------
A latent dimension is *active* when the variance over the data of its posterior mean exceeds
0.01 (Burda et al., 2016; ``metrics.ACTIVE_THRESHOLD``). The data *need* ``k90`` dimensions:
the number of principal components of the standardised data (each column scaled to unit
variance, constant columns left out) that explain 90% of its variance. A run is collapsed when
it has fewer than ``min(z_dim, k90)`` active units (0 active units among them, unless the data
are constant): it leaves unused latent
dimensions that the data's linear structure alone would fill (a PCA with that many components
would keep 90% of the variance that the VAE throws away). Standardising first makes the count
independent of the columns' units, which are exactly what makes a fixed-variance model collapse.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vaekit.validate import float_matrix

logger = logging.getLogger(__name__)

# Share of the standardised data's variance that the needed latent dimensions must explain.
EXPLAINED_SHARE = 0.9


def needed_units(x: Any, *, share: float = EXPLAINED_SHARE) -> int:
    """Principal components of the standardised data (N, D) that explain ``share`` of its variance.

    Each column is centred and scaled to unit variance; constant columns carry no variance and
    are left out (a table of constant columns needs 0). Returns an int in 0..D.
    """
    data = float_matrix(x, "x").double().numpy()
    std = data.std(axis=0)
    kept = std > 1e-12 * np.maximum(1.0, np.abs(data).max(axis=0))
    if not kept.any() or data.shape[0] < 2:
        return 0
    z = (data[:, kept] - data[:, kept].mean(0)) / std[kept]
    # Eigenvalues of the correlation matrix, largest first; their sum is the number of kept columns.
    eigen = np.clip(np.linalg.eigvalsh(z.T @ z / z.shape[0])[::-1], 0.0, None)
    explained = np.cumsum(eigen) / eigen.sum()
    return int(np.searchsorted(explained, share - 1e-9) + 1)


def collapse_warning(
    active_units: int,
    z_dim: int,
    needed: int,
    *,
    config: dict[str, dict[str, Any]] | None = None,
    x: Any = None,
    logged: bool = False,
) -> str | None:
    """The collapse warning of a run, or None when its latent code is in use (see the module docstring).

    Parameters
    ----------
    active_units : int
        Latent dimensions whose posterior mean varies over the data (> 0.01).
    z_dim : int
        Latent dimensions of the model.
    needed : int
        :func:`needed_units` of the training data.
    config : dict, optional
        The run's settings (as in config.toml); they name the likely cause and its fix.
    x : array (N, D), optional
        The training data; its column variances tell an unstandardised fixed-variance model's cause.
    logged : bool, default False
        ``needed`` was counted with the model's log columns on their log scale (the message says so).

    """
    if active_units >= min(z_dim, needed):  # data with no variance (needed 0) need no code
        return None
    data = "standardised data (log columns logged)" if logged else "standardised data"
    what = (
        f"posterior collapse: {active_units} of {z_dim} latent dimensions are active (their posterior mean varies "
        f"by more than 0.01 over the data) while the {data} need {needed} principal component(s) for "
        f"{EXPLAINED_SHARE:.0%} of their variance"
    )
    what += ": every point decodes to nearly the same output (the mean shape)." if active_units == 0 else "."
    return f"{what} {_causes(config, x)}"


def _causes(config: dict[str, dict[str, Any]] | None, x: Any) -> str:
    """Likely causes, most likely first, each with the flags (and config keys) that fix it."""
    if config is None:
        return "Likely causes: unstandardised data with a fixed variance (standardize=True), a large beta, no KL warm-up."
    m, t = config["model"], config["training"]
    causes = []
    variance = m.get("variance")
    fixed = not m.get("standardize") and m.get("likelihood", "gaussian") == "gaussian" and isinstance(variance, (int, float))
    col = None if x is None else np.asarray(x, dtype=np.float64).var(axis=0)
    # The decoder can call noise whatever spread is smaller than the fixed variance: the typical
    # column's variance below it is the airfoils' case (1e-4 against 0.1).
    if fixed and (col is None or float(np.median(col)) < variance):
        spread = "" if col is None else f" (column variances {_g(col.min())} to {_g(col.max())})"
        causes.append(
            f"the data are not standardised{spread} and the Gaussian variance is fixed at {_g(variance)}, so the "
            "decoder can explain the data's spread as noise: use --standardize ([model] standardize = true) or "
            "--variance learned"
        )
    if t.get("objective", "elbo") == "elbo" and t.get("beta", 1.0) > 1.0:
        causes.append(f"beta = {_g(t['beta'])} weighs the KL term heavily: lower --beta")
    if t.get("objective", "elbo") == "elbo" and not t.get("warmup_epochs") and not t.get("free_bits"):
        causes.append("the KL term wins early in training: try --warmup-epochs 50 (KL warm-up) or --free-bits 0.5")
    if not causes:
        causes.append("the latent code is not worth its KL cost here: try more --epochs, a larger --z-dim, or a smaller --beta")
    return "Likely cause" + ("s: " if len(causes) > 1 else ": ") + "; ".join(causes) + "."


def _g(value: float) -> str:
    return f"{value:.3g}" if math.isfinite(value) else str(value)


def run_warnings(
    metrics: dict[str, Any],
    x: Any,
    config: dict[str, dict[str, Any]] | None = None,
    *,
    where: str | None = None,
    model: Any = None,
    columns: Sequence[str] | None = None,
) -> list[str]:
    """Every warning about a finished run: its metrics, training data (N, D) and settings.

    ``where`` names the data the metrics are on and ``columns`` their column names, for
    :func:`baseline_warning`. With ``model``, the principal components that the data need are
    counted in the units its networks see (log columns logged: counts spanning decades need
    fewer components on a log scale).

    Each warning is also logged (``logging.WARNING``, logger ``vaekit.diagnostics``). A model
    without ``active_units`` (a VQ-VAE's code is discrete) gets no collapse check; a model
    whose NLL is worse than PPCA's gets :func:`baseline_warning`.
    """
    out = []
    if isinstance(metrics.get("active_units"), int) and isinstance(metrics.get("z_dim"), int):
        needed = needed_units(x if model is None else _model_units(model, x))
        logged = bool(getattr(getattr(model, "likelihood", None), "log_columns", ()))
        warning = collapse_warning(metrics["active_units"], metrics["z_dim"], needed, config=config, x=x, logged=logged)
        if warning is not None:
            out.append(warning)
    losing = baseline_warning(metrics, where=where, columns=columns)
    if losing is not None:
        out.append(losing)
    for text in out:
        logger.warning(text)
    return out


def _model_units(model: Any, x: Any) -> np.ndarray:
    """Rows (N, D) as the model's networks see them before standardising: log columns logged."""
    rows = model.prepare_x(x)
    transform = getattr(model, "log_transform", None)  # a ModelBase hook, not part of the model contract
    return (rows if transform is None else transform(rows)).detach().cpu().double().numpy()


# Two-sided 95% quantiles of Student's t with 1..30 degrees of freedom (tests check them against scipy).
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
    2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t_quantile_975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` >= 1 degrees of freedom (a gap beyond it: 95% two-sided).

    A table to 30, then the Cornish-Fisher expansion around the normal's 1.96 (within 1e-3).
    """
    if df <= len(_T975):
        return _T975[max(df, 1) - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def _distinct_texts(value: float, low: float, high: float) -> tuple[str, str, str]:
    """The three as %g texts with 6 digits, or more until the value reads unlike either bound."""
    for digits in range(6, 18):
        texts = tuple(f"{v:.{digits}g}" for v in (value, low, high))
        if texts[0] not in texts[1:]:
            break
    return texts


@dataclass(frozen=True)
class _TopPoint:
    """A point that makes half a losing gap or more, in words (:func:`vaekit.metrics.largest_gap`)."""

    point_clause: str  # "point 3 of these 6 (from 0) is 51.9 nats above PPCA's (where it lies)"
    others_clause: str  # "without it the model is ahead of PPCA by ..."
    decides: bool  # the model is level or ahead on the other points
    outside: bool  # the point lies outside the training rows' range
    share: float  # its share of the total gap, 0.5 or more


def _top_point(metrics: dict[str, Any], gap: float, n: Any, columns: Sequence[str] | None) -> _TopPoint | None:
    """The point that makes half the total gap (``n`` points x the mean ``gap``) or more, of more than 2, else None."""
    top, point, without = (metrics.get(k) for k in ("ppca_gap_top", "ppca_gap_top_point", "ppca_gap_without_top"))
    if not (isinstance(n, int) and n > 2 and isinstance(top, float) and isinstance(without, float)):
        return None
    if not (math.isfinite(top) and math.isfinite(without) and top >= 0.5 * gap * n):
        return None
    whole = metrics.get("ppca_gap_whole_points")
    if isinstance(whole, int) and whole > 1:
        return None  # several points each make the whole loss: no one point decides it, the verdict stands
    row = metrics.get("ppca_gap_top_row")
    which = f"point {point} of these {n} (from 0" + (f"; row {row} of the whole data set)" if isinstance(row, int) else ")")
    column = metrics.get("ppca_gap_top_column")
    if isinstance(column, int):
        name = columns[column] if columns is not None and column < len(columns) else str(column)
        name = f"column {column}" if name == str(column) else name  # a .npy's columns are named by their index
        low, high = metrics["ppca_gap_top_train_range"]
        value, low, high = _distinct_texts(metrics["ppca_gap_top_value"], low, high)
        place = f" (its {name} is {value}, outside the training rows' range {low} to {high})"
    elif metrics.get("baselines_fitted_on") == "train_x":
        place = " (inside the training rows' range in every data column)"
    else:
        place = ""  # in-sample baselines: no training rows to place it against
    se = metrics.get("ppca_gap_without_top_se")
    known = isinstance(se, float) and math.isfinite(se)
    by = f"by {_g(abs(without))}" + (
        f" ± {_g(se)} nats per row (paired standard error over {n - 1} points)" if known else " nats per row"
    )
    if without < 0:
        others = f"without it the model is ahead of PPCA {by}"
    elif without == 0:
        others = "without it the model is level with PPCA"
    else:
        others = f"without it the model is still behind PPCA {by}"
    point_clause = f"{which} is {_g(top)} nats above PPCA's{place}"
    return _TopPoint(point_clause, others, decides=without <= 0, outside=isinstance(column, int), share=top / (gap * n))


def baseline_warning(metrics: dict[str, Any], *, where: str | None = None, columns: Sequence[str] | None = None) -> str | None:
    """A warning when the model's NLL is worse than probabilistic PCA's of the same latent size, else None.

    Reads ``iwae_nll`` and ``ppca_nll`` of ``metrics`` (a run's held-out numbers, or its training
    data's when it has none, which its ``warning`` key then says; ``where`` overrides the words,
    e.g. "on the data given" for ``vaekit evaluate --data``). A VAE that loses to the
    closed-form linear baseline is a degenerate outcome its own numbers would not show.

    With ``ppca_gap_se`` and ``n_points`` the gap is weighed against its paired standard error:
    within Student's t 95% quantile for ``n_points - 1`` degrees of freedom (2.57 for 6 points,
    about 2 for 60) the points cannot tell the two models apart, and the warning says that
    instead of a verdict. When one point of more than 2 makes half the total gap or more
    (``ppca_gap_top`` of :func:`vaekit.metrics.largest_gap`), the warning names it, where it
    lies against the training rows (the column furthest outside their range, by its name in
    ``columns``) and the gap of the other points with its standard error. When the model is
    level or ahead on the others, that point decides the loss and replaces the verdict: one row
    far beyond the training range can make a model thousands of nats worse, a mean the standard
    error would call noise. A conditional model's NLL is -log p(x|c), PPCA's -log p(x): said too.
    """
    nll, ppca = metrics.get("iwae_nll"), metrics.get("ppca_nll")
    numbers = [v for v in (nll, ppca) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    if len(numbers) < 2 or nll <= ppca:
        return None
    where = where or ("on the training data" if "warning" in metrics else "held out")
    gap, se, n = nll - ppca, metrics.get("ppca_gap_se"), metrics.get("n_points")
    conditional = " (its -log p(x|c) against PPCA's -log p(x))" if "baselines_note" in metrics else ""
    higher = f"the model's NLL {where} ({_g(nll)} nats per row) is higher than probabilistic PCA's ({_g(ppca)})"
    higher += f" with the same latent size{conditional}"
    weighed = isinstance(se, float) and math.isfinite(se) and se > 0 and isinstance(n, int) and n > 1
    top = _top_point(metrics, gap, n, columns)
    if top is not None and top.decides:
        # A standard error assumes no one point dominates: here one point is the whole loss.
        advice = (
            "Beyond its training range a network's density is not to be trusted, and one such point can outweigh "
            "all the others: train on rows that cover it, or check that point"
            if top.outside
            else "A mean that one point decides is no verdict either way"
        )
        decided = f"one point decides it: {top.point_clause}; {top.others_clause}"
        return f"{higher} by {_g(gap)}, and {decided}. {advice}; compare both in the report."
    if weighed and gap <= (needed := t_quantile_975(n - 1)) * se:
        # A few points decide a mean of few points: a gap inside the noise is no verdict either way.
        text = (
            # Rounded down, so that the count never reads as reaching the quantile it falls short of.
            f"{higher} by {_g(gap)}, {math.floor(gap / se * 100) / 100:.2f} paired standard errors ({_g(se)} over {n} "
            f"points), short of the {needed:.3g} that 95% confidence needs: these points cannot tell the two apart, "
            "and more rows would narrow it; compare both in the report."
        )
    else:
        by = f" by {_g(gap)} ± {_g(se)} (paired standard error over {n} points)" if weighed else ""
        text = (
            f"{higher}{by}: on this data a linear model is the better density model. Likely causes: too few epochs, "
            "too few rows for a nonlinear model, or a latent size the data do not need; compare both in the report."
        )
    if top is not None:  # half the gap or more, but the model is behind on the other points too
        text += f" One point makes {math.floor(100 * top.share)}% of the gap: {top.point_clause}; {top.others_clause}."
    return text
