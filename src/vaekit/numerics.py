"""Rounding-error bounds, for code that compares two computations of the same numbers.

Used where a shortcut must prove itself against the reference computation at run time (the
trainer's check of the hand-written ELBO gradients) and by the tests (``tests/numerics.py``).
A picked tolerance passes or fails with the CPU's kernels, which sum in different orders; these
bounds follow from the computation instead (Higham, Accuracy and Stability of Numerical
Algorithms, 2nd ed., ch. 3).
"""

from __future__ import annotations

import torch
from torch import nn


def unit_roundoff(dtype: torch.dtype) -> float:
    """u: the largest relative error of one rounding (2^-24 for float32, 2^-53 for float64)."""
    return torch.finfo(dtype).eps / 2


def gamma(n: int, dtype: torch.dtype) -> float:
    """Higham's gamma_n = n u / (1 - n u): relative error bound of n accumulated roundings."""
    nu = n * unit_roundoff(dtype)
    if nu >= 0.5:
        raise ValueError(f"n must be small enough that n u < 1/2 for the bound to mean anything. Got n={n} instead.")
    return nu / (1 - nu)


def step_accumulation(model: nn.Module, batch: int) -> int:
    """N for one loss-and-gradient step: the batch plus every Linear's fan-in, forward and backward.

    Each gradient element is built along a chain that sums over the batch once and over each
    layer's inputs once forward and once backward; n counts the roundings along that chain.
    """
    fan_in = sum(m.in_features for m in model.modules() if isinstance(m, nn.Linear))
    return batch + 2 * fan_in


def within_rounding(actual: torch.Tensor, reference: torch.Tensor, n: int, dtype: torch.dtype) -> tuple[bool, float, float]:
    """Whether ``actual`` equals ``reference`` to gamma_n times the reference's largest magnitude.

    The largest magnitude stands in for the size of the terms summed: an element-wise scale
    fails wherever terms cancel (a gradient of 0.36 made of terms of size 1e3). The worst-case
    gamma_n is about sqrt(n) times the typical error, which absorbs that cancellation.

    Returns
    -------
    ok, error, bound : the verdict, max |actual - reference| and the bound it was held to.

    """
    bound = gamma(n, dtype) * float(reference.detach().abs().max()) if reference.numel() else 0.0
    error = float((actual.detach().double() - reference.detach().double()).abs().max()) if reference.numel() else 0.0
    return error <= bound, error, bound
