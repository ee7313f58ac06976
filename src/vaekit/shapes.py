"""Curve metrics for airfoil-like shapes: pure functions on numpy arrays (N, P, 2).

The layout is the one :mod:`vaekit.data.airfoil_files` writes: P (even) points, the first P/2 on the
upper surface from the trailing edge to the leading edge, the last P/2 on the lower surface from
the leading edge to the trailing edge. The leading edge is therefore stored twice (indices
P/2 - 1 and P/2), so each surface is a complete curve of P/2 points. Coordinates are in chord
units (leading edge at (0, 0), trailing-edge midpoint at (1, 0)).

* :func:`airfoil_properties`: maximum thickness and camber and their chord positions.
* :func:`validity`: upper above lower, x monotone along each surface, closed trailing edge.
* :func:`roughness`: mean squared second difference of the turning angle.
* :func:`reconstruction_errors`: mean and worst-point Euclidean errors, chord units.

Pure numpy, so the data layer (:mod:`vaekit.data.airfoil_files`) can use it;
:mod:`vaekit.shape_metrics` adds the MMD of the thickness/camber distributions and
``curve_metrics``, which need :mod:`vaekit.metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vaekit.errors import InputError, InputTypeError, describe

# Tolerances of validity(), chord units. A trailing edge whose upper and lower ends are further
# apart than TE_GAP is "open"; an x step backwards by more than X_BACKSTEP along a surface is
# "non-monotone"; the surfaces are compared for crossing only on x in [EDGE, 1 - EDGE].
TE_GAP = 0.02
X_BACKSTEP = 2e-3
EDGE = 0.01
# Common x stations at which the surfaces are compared (cosine spacing: dense at both edges).
GRID = 0.5 * (1.0 - np.cos(np.linspace(0.0, np.pi, 401)))
REASONS = ("non_finite", "non_monotone_x", "open_trailing_edge", "crossed_surfaces", "flat")


def as_shapes(shapes: Any, name: str = "shapes") -> np.ndarray:
    """Check and return ``shapes`` as float64 (N, P, 2), P even and >= 4."""
    if not hasattr(shapes, "shape") and not isinstance(shapes, (list, tuple)):
        raise InputTypeError(f"{name} must be an array of shape (N, P, 2). Got {describe(shapes)} instead.")
    try:
        array = np.asarray(shapes, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputTypeError(f"{name} must be a numeric array of shape (N, P, 2). Got {describe(shapes)} instead.") from None
    if array.ndim != 3 or array.shape[2] != 2 or array.shape[1] < 4 or array.shape[1] % 2:
        raise InputError(
            f"{name} must have shape (N, P, 2) with an even number of points P >= 4. Got shape {array.shape} instead."
        )
    if array.shape[0] == 0:
        raise InputError(f"{name} must hold at least one shape. Got shape {array.shape} instead.")
    return array


def is_curve_shape(x_shape: Any) -> bool:
    """True for a point shape (P, 2) with P even and >= 4: curves in the layout of this module."""
    shape = tuple(x_shape or ())
    return len(shape) == 2 and shape[1] == 2 and shape[0] >= 4 and shape[0] % 2 == 0


def surfaces(shapes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upper and lower surfaces, each (N, P/2, 2) ordered from the leading edge to the trailing edge."""
    half = shapes.shape[1] // 2
    return shapes[:, :half][:, ::-1], shapes[:, half:]


def _at_grid(surface: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The y of one surface (P/2, 2) at x = grid, linear; x made non-decreasing by a running maximum."""
    x = np.maximum.accumulate(surface[:, 0])
    return np.interp(grid, x, surface[:, 1])


def _thickness_camber(shapes: np.ndarray, grid: np.ndarray = GRID) -> tuple[np.ndarray, np.ndarray]:
    """Thickness y_u - y_l and camber (y_u + y_l)/2 at the x stations ``grid``: two (N, G) arrays."""
    upper, lower = surfaces(shapes)
    yu = np.stack([_at_grid(u, grid) for u in upper])
    yl = np.stack([_at_grid(s, grid) for s in lower])
    return yu - yl, 0.5 * (yu + yl)


@dataclass
class Properties:
    """Per-shape geometry from :func:`airfoil_properties`, each float64 (N,), chord units.

    Attributes
    ----------
    thickness, thickness_x : maximum of y_upper(x) - y_lower(x) and its x.
    camber, camber_x : the camber line (y_upper + y_lower)/2 at its largest magnitude (signed:
        negative for a downward camber) and its x.

    """

    thickness: np.ndarray
    thickness_x: np.ndarray
    camber: np.ndarray
    camber_x: np.ndarray

    def features(self) -> np.ndarray:
        """(N, 2) array of (thickness, camber), the features :func:`mmd` compares."""
        return np.stack([self.thickness, self.camber], axis=1)


def airfoil_properties(shapes: Any) -> Properties:
    """Maximum thickness and camber of each shape, with their chord positions.

    Both surfaces are interpolated linearly at 401 common, cosine-spaced x stations in [0, 1]
    (an x that steps backwards is replaced by the running maximum first); thickness is
    y_upper - y_lower, measured vertically, and the camber line is their mean.

    Parameters
    ----------
    shapes : array (N, P, 2), the layout of :mod:`vaekit.shapes`.

    Returns
    -------
    Properties

    """
    shapes = as_shapes(shapes)
    thick, camber = _thickness_camber(shapes)
    it = thick.argmax(1)
    ic = np.abs(camber).argmax(1)
    rows = np.arange(len(shapes))
    return Properties(thick[rows, it], GRID[it], camber[rows, ic], GRID[ic])


@dataclass
class Validity:
    """Per-shape verdicts of :func:`validity`.

    Attributes
    ----------
    valid : bool (N,), True where no check failed.
    failures : reason -> bool (N,), True where that check failed (a shape may fail several).

    """

    valid: np.ndarray
    failures: dict[str, np.ndarray]

    @property
    def counts(self) -> dict[str, int]:
        """Reason -> number of shapes failing that check (only reasons that occur)."""
        return {reason: int(bad.sum()) for reason, bad in self.failures.items() if bad.any()}

    def first_reason(self, i: int) -> str:
        """The first failed check of shape ``i`` in :data:`REASONS` order, or "" when it is valid."""
        return next((reason for reason in REASONS if self.failures[reason][i]), "")


def validity(shapes: Any, *, te_gap: float = TE_GAP, x_backstep: float = X_BACKSTEP) -> Validity:
    """Check that each shape is a plausible airfoil.

    Checks (reasons), chord units:

    * ``non_finite``: a NaN or infinite coordinate.
    * ``non_monotone_x``: along a surface, from the leading to the trailing edge, x steps
      backwards by more than ``x_backstep`` (default 0.002).
    * ``open_trailing_edge``: the upper and lower trailing-edge points are more than ``te_gap``
      apart (default 0.02, i.e. 2% of the chord).
    * ``crossed_surfaces``: y_upper < y_lower somewhere on x in [0.01, 0.99] (the surfaces are
      interpolated at common x; only the leading- and trailing-edge 1% are exempt).
    * ``flat``: the thickness is nowhere positive (a line, not a profile).

    Parameters
    ----------
    shapes : array (N, P, 2)
    te_gap, x_backstep : float, the tolerances above.

    Returns
    -------
    Validity

    """
    shapes = as_shapes(shapes)
    finite = np.isfinite(shapes).all(axis=(1, 2))
    safe = np.where(finite[:, None, None], shapes, 0.0)
    upper, lower = surfaces(safe)
    backwards = np.minimum(np.diff(upper[..., 0], axis=1).min(1), np.diff(lower[..., 0], axis=1).min(1))
    gap = np.linalg.norm(upper[:, -1] - lower[:, -1], axis=1)
    inner = (GRID >= EDGE) & (GRID <= 1.0 - EDGE)
    thick, _ = _thickness_camber(safe, GRID[inner])
    failures = {
        "non_finite": ~finite,
        "non_monotone_x": finite & (backwards < -x_backstep),
        "open_trailing_edge": finite & (gap > te_gap),
        "crossed_surfaces": finite & (thick.min(1) < 0.0),
        "flat": finite & (thick.max(1) <= 0.0),
    }
    valid = ~np.logical_or.reduce(list(failures.values()))
    return Validity(valid, failures)


def turning_angles(shapes: Any) -> np.ndarray:
    """Signed turning angle (radians, in (-pi, pi]) at each interior point of the contour: (N, P - 3).

    The contour runs from the upper trailing edge round the leading edge to the lower trailing
    edge; the leading edge's second copy (index P/2) is dropped, so P - 1 points remain.
    """
    shapes = as_shapes(shapes)
    half = shapes.shape[1] // 2
    contour = np.concatenate([shapes[:, :half], shapes[:, half + 1 :]], axis=1)  # (N, P-1, 2)
    seg = np.diff(contour, axis=1)
    heading = np.arctan2(seg[..., 1], seg[..., 0])
    return np.angle(np.exp(1j * np.diff(heading, axis=1)))


def roughness(shapes: Any) -> np.ndarray:
    """Curvature roughness of each shape: mean squared second difference of the turning angle, (N,).

    Zero for points evenly spaced on a circle (constant turning angle) and for a polygon's
    straight runs; noise on the coordinates raises it sharply (a coordinate error e at spacing h
    moves a turning angle by about e/h). Compare a model's samples with the data's value
    (:func:`curve_metrics` reports both and their ratio).
    """
    phi = turning_angles(shapes)
    return (np.diff(phi, n=2, axis=1) ** 2).mean(1)


def reconstruction_errors(x: Any, x_hat: Any) -> dict[str, float]:
    """Point errors of reconstructions ``x_hat`` of shapes ``x`` (both (N, P, 2)), chord units.

    Returns
    -------
    dict with ``mean_point_error``: the Euclidean distance |x_i - x_hat_i| averaged over points and
    shapes; ``mean_max_point_error``: each shape's worst point, averaged over shapes.

    """
    x, x_hat = as_shapes(x, "x"), as_shapes(x_hat, "x_hat")
    if x.shape != x_hat.shape:
        raise InputError(f"x_hat must have the shape of x {x.shape}. Got shape {x_hat.shape} instead.")
    dist = np.linalg.norm(x - x_hat, axis=2)  # (N, P)
    return {"mean_point_error": float(dist.mean()), "mean_max_point_error": float(dist.max(1).mean())}
