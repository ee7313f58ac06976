"""Curve metrics of a model of shapes: MMD of thickness/camber distributions, and ``curve_metrics``.

Built on :mod:`vaekit.shapes` (pure geometry) and :func:`vaekit.metrics.mmd_test`; see
:mod:`vaekit.shapes` for the (N, P, 2) layout.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from vaekit.errors import InputError
from vaekit.metrics import mmd_test
from vaekit.shapes import airfoil_properties, as_shapes, reconstruction_errors, roughness, validity

logger = logging.getLogger(__name__)


def mmd(a: Any, b: Any, *, permutations: int = 200, seed: int = 0) -> tuple[float, float]:
    """MMD² between the (max thickness, max camber) distributions of two sets of shapes, and its p-value.

    Both features are divided by their standard deviation in ``a`` (the reference, e.g. the data)
    so neither dominates the kernel; then :func:`vaekit.metrics.mmd_test`: Gaussian kernel,
    median-heuristic bandwidth of the pooled sample, unbiased estimator, permutation p-value.
    Shapes with non-finite coordinates must be removed first.

    Parameters
    ----------
    a : array (N, P, 2), reference shapes.
    b : array (M, P, 2), compared shapes.
    permutations, seed : of the permutation test (``permutations=0``: p-value NaN).

    Returns
    -------
    (mmd2, p_value) : tuple of float

    """
    fa, fb = airfoil_properties(a).features(), airfoil_properties(b).features()
    for name, f in (("a", fa), ("b", fb)):
        if not np.isfinite(f).all() or len(f) < 2:
            raise InputError(f"{name} must hold at least 2 shapes with finite coordinates. Got {len(f)} shapes instead.")
    scale = fa.std(0)
    scale = np.where(scale > 0, scale, 1.0)
    return mmd_test(fa / scale, fb / scale, permutations=permutations, seed=seed)


def curve_metrics(data: Any, reconstructions: Any, samples: Any, *, permutations: int = 200, seed: int = 0) -> dict[str, float]:
    """Curve metrics of a model of shapes, as one dict with stable keys.

    Parameters
    ----------
    data : array (N, P, 2), the shapes.
    reconstructions : array (N, P, 2), the model's reconstructions of ``data``.
    samples : array (M, P, 2), the model's samples.
    permutations, seed : of the MMD permutation test.

    Returns
    -------
    dict[str, float] with keys ``recon_mean_point_error``, ``recon_mean_max_point_error``
    (:func:`reconstruction_errors`), ``valid_fraction_data``, ``valid_fraction_samples``
    (:func:`validity`), ``roughness_data``, ``roughness_samples`` (means of :func:`roughness`)
    and ``roughness_ratio`` (samples / data), ``thickness_data``, ``thickness_samples``,
    ``camber_data``, ``camber_samples`` (means of :func:`airfoil_properties`), ``mmd2`` and
    ``mmd_p_value`` (:func:`mmd`, data against the finite samples). Values that cannot be
    computed (no finite sample) are NaN and are logged.

    """
    data, samples = as_shapes(data, "data"), as_shapes(samples, "samples")
    out = {f"recon_{k}": v for k, v in reconstruction_errors(data, reconstructions).items()}
    out["valid_fraction_data"] = float(validity(data).valid.mean())
    out["valid_fraction_samples"] = float(validity(samples).valid.mean())
    finite = samples[np.isfinite(samples).all(axis=(1, 2))]
    rough_data = float(roughness(data).mean())
    props_data = airfoil_properties(data)
    out |= {"roughness_data": rough_data, "thickness_data": float(props_data.thickness.mean())}
    out["camber_data"] = float(props_data.camber.mean())
    nan = float("nan")
    if len(finite) < 2:
        logger.warning("curve metrics: %d of %d samples are finite; sample metrics are NaN", len(finite), len(samples))
        return out | dict.fromkeys(
            ["roughness_samples", "roughness_ratio", "thickness_samples", "camber_samples", "mmd2", "mmd_p_value"], nan
        )
    rough = float(roughness(finite).mean())
    props = airfoil_properties(finite)
    out |= {"roughness_samples": rough, "roughness_ratio": rough / rough_data if rough_data > 0 else nan}
    out |= {"thickness_samples": float(props.thickness.mean()), "camber_samples": float(props.camber.mean())}
    out["mmd2"], out["mmd_p_value"] = mmd(data, finite, permutations=permutations, seed=seed)
    return out
