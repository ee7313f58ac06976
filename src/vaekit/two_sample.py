"""Two-sample statistics between point sets (n, D) and (m, D): MMD with a permutation test, energy distance.

Below :mod:`vaekit.metrics` (which re-exports them) so that :mod:`vaekit.shape_metrics`, which
``metrics.evaluate`` calls, can use them without an import cycle.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from vaekit.errors import InputError
from vaekit.validate import float_matrix, positive_float, positive_int


def _two_samples(x: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
    xt = float_matrix(x, "x").double()
    yt = float_matrix(y, "y", width=xt.shape[1]).double()
    if xt.shape[0] < 2 or yt.shape[0] < 2:
        raise InputError(f"x and y must hold at least 2 rows each. Got {xt.shape[0]} and {yt.shape[0]} rows instead.")
    return xt, yt


def _distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise Euclidean distances, computed directly (the matmul shortcut loses digits)."""
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def median_bandwidth(x: Any, y: Any = None, *, max_points: int = 1000, seed: int = 0) -> float:
    """Median pairwise Euclidean distance of the pooled sample (at most ``max_points`` rows used)."""
    pooled = float_matrix(x, "x").double()
    if y is not None:
        pooled = torch.cat([pooled, float_matrix(y, "y", width=pooled.shape[1]).double()])
    if pooled.shape[0] > max_points:
        pick = torch.from_numpy(np.random.default_rng(seed).choice(pooled.shape[0], max_points, replace=False))
        pooled = pooled[pick]
    dist = _distances(pooled, pooled)
    upper = dist[torch.triu_indices(*dist.shape, offset=1).unbind()]
    median = float(upper.median())
    return median if median > 0 else 1.0


def _mmd_from_kernel(kernel: torch.Tensor, member: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Unbiased MMD² for each row of ``member`` (P, n+m) of 0/1 x-indicators; kernel has a zero diagonal."""
    other = 1.0 - member
    k_member = member @ kernel  # (P, n+m)
    k_other = other @ kernel
    sxx = (k_member * member).sum(1)
    syy = (k_other * other).sum(1)
    sxy = (k_member * other).sum(1)
    return sxx / (n * (n - 1)) + syy / (m * (m - 1)) - 2.0 * sxy / (n * m)


def mmd2(x: Any, y: Any, *, bandwidth: float | None = None) -> float:
    """Unbiased MMD² between samples x (n, D) and y (m, D) with a Gaussian kernel.

    MMD² = 1/(n(n-1)) sum_{i≠j} k(x_i, x_j) + 1/(m(m-1)) sum_{i≠j} k(y_i, y_j) - 2/(nm) sum_{i,j} k(x_i, y_j),
    k(a, b) = exp(-|a - b|² / (2 bandwidth²)); ``bandwidth=None`` uses :func:`median_bandwidth`.
    The estimate is unbiased, so it can be slightly negative when the distributions agree.
    """
    return mmd_test(x, y, bandwidth=bandwidth, permutations=0)[0]


def mmd_test(x: Any, y: Any, *, bandwidth: float | None = None, permutations: int = 200, seed: int = 0) -> tuple[float, float]:
    """Unbiased MMD² (see :func:`mmd2`) and its permutation-test p-value.

    The pooled sample is relabelled at random ``permutations`` times (all at once, as one
    matrix product); p = (1 + #{permuted MMD² >= observed}) / (1 + permutations), which is
    uniform on its grid when x and y come from the same distribution. With ``permutations=0``
    the p-value is NaN.

    Returns
    -------
    (mmd2, p_value) : tuple of float

    """
    xt, yt = _two_samples(x, y)
    permutations = positive_int(permutations, "permutations", minimum=0)
    if bandwidth is None:
        bandwidth = median_bandwidth(xt, yt, seed=seed)
    bandwidth = positive_float(bandwidth, "bandwidth")
    n, m = xt.shape[0], yt.shape[0]
    pooled = torch.cat([xt, yt])
    kernel = torch.exp(-_distances(pooled, pooled).square() / (2.0 * bandwidth**2))
    kernel.fill_diagonal_(0.0)
    observed = torch.cat([torch.ones(n, dtype=torch.float64), torch.zeros(m, dtype=torch.float64)])
    stat = float(_mmd_from_kernel(kernel, observed[None], n, m)[0])
    if permutations == 0:
        return stat, math.nan
    generator = torch.Generator().manual_seed(seed)
    order = torch.rand(permutations, n + m, generator=generator).argsort(1)  # (P, n+m)
    member = (order < n).to(torch.float64)
    null = _mmd_from_kernel(kernel, member, n, m)
    p_value = (1.0 + float((null >= stat - 1e-12).sum())) / (1.0 + permutations)
    return stat, p_value


def energy_distance(x: Any, y: Any) -> float:
    """Energy distance 2 E|X-Y| - E|X-X'| - E|Y-Y'| between samples x (n, D) and y (m, D).

    The within-sample means exclude the zero diagonal (U-statistics); zero in expectation when
    x and y share a distribution, positive otherwise.
    """
    xt, yt = _two_samples(x, y)
    n, m = xt.shape[0], yt.shape[0]
    xy = _distances(xt, yt).mean()
    xx = _distances(xt, xt).sum() / (n * (n - 1))
    yy = _distances(yt, yt).sum() / (m * (m - 1))
    return float(2.0 * xy - xx - yy)
