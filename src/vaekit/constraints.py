"""Constraints on a decoder's mean: ``airfoil`` maps any (B, 2P) output to a valid airfoil.

A Gaussian likelihood with ``constraint="airfoil"`` (``vk.Gaussian("learned", constraint="airfoil")``,
``[model] constraint = "airfoil"``) passes its mean, in the user's units, through
:func:`airfoil`. Every decoded mean, and so every sample drawn without noise and every
reconstruction, then passes the checks of :func:`vaekit.shapes.validity`:

* **x increases along each surface**, strictly: x_j <- max(x_j, x_{j-1} + DELTA), computed as
  a running maximum of x_j - j DELTA plus j DELTA (DELTA = 1e-6 chord, below the smallest step
  in the UIUC data, 6e-6, so a data-like shape is unchanged);
* **the trailing edge is closed** to within the check's 2%: the smaller trailing-edge x moves
  forward to within GAP/2 of the larger (x stays increasing), and the two trailing-edge y
  values move symmetrically towards their midpoint until the points are at most
  GAP = 0.99 TE_GAP apart (the largest UIUC gap is 0.988 TE_GAP and the largest trailing-edge
  x difference 0.45 GAP, so no data shape moves for this);
* **the surfaces do not cross**: each upper point is raised to at least EPSILON above the lower
  surface at its x, then each lower point lowered to at least EPSILON below the (raised) upper
  surface. Both surfaces are the piecewise-linear interpolants that ``validity`` uses (flat
  beyond their ends). Lowering the lower points can only lower the lower surface, so the raised
  upper points stay above it; on every interval between consecutive x of either surface the
  thickness is linear and at least EPSILON at both ends, so it is at least EPSILON everywhere.

The crossing step may move a trailing-edge point again and so reopen the gap (only far from
any airfoil: steep last segments). For those rows the result is recomputed with one x for
both trailing-edge points (the larger); the crossing step then leaves their y values between
EPSILON and GAP apart, so all the checks pass for any finite input in chord units (tested on
data, noisy data and random outputs). The steps of DELTA need float32 or float64, so bf16 and
float16 means are computed in float32; far outside chord units, where float32 cannot hold a
step of DELTA, x may stay equal instead of increasing, and the result is still finite.

On data, only closed edges open by EPSILON (the leading edge, stored twice, and closed
trailing edges); nothing else moves, so the gradient of every coordinate is its own. The
curve metrics report the share of samples the constraint moved by more than the checks'
tolerance (``constraint_changed_fraction``), so a model that leans on it is visible.

The mean stays differentiable (the maxima pass the gradient to the active branch), so a model
learns with the constraint in place: the likelihood is Gaussian around the constrained mean.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from vaekit.errors import ShapeError
from vaekit.shapes import TE_GAP

DELTA = 1e-6  # the smallest x step along a surface, chord units
EPSILON = 1e-5  # the smallest thickness, chord units
GAP = 0.99 * TE_GAP  # the largest trailing-edge gap the gap step leaves
CONSTRAINTS = ("none", "airfoil")


def _strictly_increasing(x: torch.Tensor) -> torch.Tensor:
    """The smallest x' >= x (B, K) with x'_j >= x'_{j-1} + DELTA (a running maximum)."""
    steps = DELTA * torch.arange(x.shape[-1], dtype=x.dtype, device=x.device)
    return torch.cummax(x - steps, dim=-1).values + steps


def interpolate(xq: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear f(xq) through (xp, fp), flat beyond the ends, like ``numpy.interp``.

    xq (B, M); xp (B, K) strictly increasing, K >= 2; fp (B, K). Returns (B, M). The knot to the
    left of each query is found by counting (no ``searchsorted``), so it also runs under
    ``torch.func.vmap`` (the sweep).
    """
    k = xp.shape[-1]
    left = (xp.unsqueeze(-2) <= xq.unsqueeze(-1)).sum(-1).clamp(1, k - 1) - 1  # (B, M)
    x0, x1 = xp.gather(-1, left), xp.gather(-1, left + 1)
    f0, f1 = fp.gather(-1, left), fp.gather(-1, left + 1)
    step = x1 - x0
    # Knots that round to one value (x far from chord units, or low precision) would give 0/0.
    t = torch.where(step > 0, (xq - x0) / torch.where(step > 0, step, torch.ones_like(step)), torch.zeros_like(step))
    return f0 + t.clamp(0.0, 1.0) * (f1 - f0)


def airfoil(mean: torch.Tensor) -> torch.Tensor:
    """The valid airfoil a decoder mean stands for: (B, 2P) -> (B, 2P), the layout of :mod:`vaekit.shapes`.

    ``mean`` holds P points (x, y) per row, row-major ((P, 2) flattened): the upper surface from
    the trailing edge to the leading edge, then the lower surface from the leading edge to the
    trailing edge; P even, >= 4. See the module docstring for the steps and what they
    guarantee. A data-like shape moves by at most EPSILON.
    """
    b, d = mean.shape
    half = d // 4
    dtype = mean.dtype
    if dtype not in (torch.float32, torch.float64):
        mean = mean.float()  # bf16 cannot hold steps of DELTA near x = 1
    points = mean.reshape(b, 2 * half, 2)
    upper, lower = points[:, :half].flip(1), points[:, half:]  # each (B, P/2, 2), leading edge -> trailing edge
    xu, xl = _strictly_increasing(upper[..., 0]), _strictly_increasing(lower[..., 0])
    yu, yl = upper[..., 1], lower[..., 1]
    near = _uncross(*_close_trailing_edge(xu, yu, xl, yl, one_x=False))
    gap = torch.hypot(near[0][:, -1] - near[2][:, -1], near[1][:, -1] - near[3][:, -1])
    # The fallback gives both trailing-edge points one x, which makes the gap provably <= GAP.
    ok = (gap <= GAP)[:, None]
    far = _uncross(*_close_trailing_edge(xu, yu, xl, yl, one_x=True))
    xu, yu, xl, yl = (torch.where(ok, a, f) for a, f in zip(near, far))
    upper = torch.stack([xu, yu], dim=-1).flip(1)
    lower = torch.stack([xl, yl], dim=-1)
    return torch.cat([upper, lower], dim=1).reshape(b, d).to(dtype)


def _close_trailing_edge(
    xu: torch.Tensor, yu: torch.Tensor, xl: torch.Tensor, yl: torch.Tensor, *, one_x: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bring the trailing-edge points (the last of each (B, K) surface) within GAP of each other.

    x: the smaller trailing-edge x moves forward to within GAP/2 of the larger (``one_x``: to
    the larger); only forward, so x stays increasing. y: the two values move symmetrically
    towards their midpoint until the distance is at most GAP.
    """
    larger = torch.maximum(xu[:, -1:], xl[:, -1:])
    least = larger if one_x else larger - 0.5 * GAP
    xu = torch.cat([xu[:, :-1], torch.maximum(xu[:, -1:], least)], dim=1)
    xl = torch.cat([xl[:, :-1], torch.maximum(xl[:, -1:], least)], dim=1)
    room = (GAP**2 - (xu[:, -1] - xl[:, -1]) ** 2).clamp_min(0.0).sqrt()  # the largest |dy| that keeps the gap
    mid, dy = 0.5 * (yu[:, -1] + yl[:, -1]), yu[:, -1] - yl[:, -1]
    dy = torch.maximum(torch.minimum(dy, room), -room)
    yu = torch.cat([yu[:, :-1], (mid + 0.5 * dy)[:, None]], dim=1)
    yl = torch.cat([yl[:, :-1], (mid - 0.5 * dy)[:, None]], dim=1)
    return xu, yu, xl, yl


def _uncross(
    xu: torch.Tensor, yu: torch.Tensor, xl: torch.Tensor, yl: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Upper points raised to EPSILON above the lower surface, then lower points lowered below the raised upper one."""
    yu = torch.maximum(yu, interpolate(xu, xl, yl) + EPSILON)
    yl = torch.minimum(yl, interpolate(xl, xu, yu) - EPSILON)
    return xu, yu, xl, yl


@contextlib.contextmanager
def unconstrained(model: Any) -> Iterator[None]:
    """Decode without ``model``'s mean constraint inside the block (to measure what the constraint does)."""
    head = model.likelihood_head
    saved = head.constraint
    head.constraint = "none"
    try:
        yield
    finally:
        head.constraint = saved


def check_shape(constraint: str, shape: tuple[int, ...]) -> None:
    """Refuse a data shape the constraint cannot read (``airfoil`` needs (P, 2), P even, >= 4)."""
    if constraint == "airfoil" and (len(shape) != 2 or shape[1] != 2 or shape[0] < 4 or shape[0] % 2):
        raise ShapeError(
            "constraint='airfoil' needs x_shape (P, 2) with an even number of points P >= 4 (the airfoil layout of "
            f"vaekit.shapes: upper surface trailing edge -> leading edge, then lower). Got x_shape {tuple(shape)} instead."
        )
