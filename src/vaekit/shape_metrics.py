"""Curve metrics of a model of shapes: MMD of thickness/camber distributions, ``curve_metrics``, and PCA beside them.

Built on :mod:`vaekit.shapes` (pure geometry) and :func:`vaekit.two_sample.mmd_test`; see
:mod:`vaekit.shapes` for the (N, P, 2) layout. :func:`compare_with_pca` is what
:func:`vaekit.metrics.evaluate` reports under ``"curves"`` for data of shape (P, 2): the model's
numbers next to those of PCA with as many components as the model has latent dimensions;
:func:`comparison_rows` turns them into the "model vs PCA" table of the report and the CLI.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from vaekit.errors import InputError
from vaekit.shapes import REASONS, airfoil_properties, as_shapes, reconstruction_errors, roughness, validity
from vaekit.two_sample import mmd_test

logger = logging.getLogger(__name__)


def mmd(a: Any, b: Any, *, permutations: int = 200, seed: int = 0) -> tuple[float, float]:
    """MMD² between the (max thickness, max camber) distributions of two sets of shapes, and its p-value.

    Both features are divided by their standard deviation in ``a`` (the reference, e.g. the data)
    so neither dominates the kernel; then :func:`vaekit.two_sample.mmd_test`: Gaussian kernel,
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


# ---------------------------------------------------------------------------- model vs PCA
# At most this many shapes a side enter the thickness/camber MMD (its kernel matrix is (n + m)^2).
MMD_MAX_SHAPES = 2000


def _subset(shapes: np.ndarray, k: int, seed: int) -> np.ndarray:
    """At most ``k`` of ``shapes``, drawn without replacement (all of them, in order, when there are few)."""
    if len(shapes) <= k:
        return shapes
    return shapes[np.sort(np.random.default_rng(seed).choice(len(shapes), size=k, replace=False))]


def _sample_side(data: np.ndarray, samples: np.ndarray, *, permutations: int, seed: int) -> dict[str, Any]:
    """The sample metrics of one generator (model or PCA) against ``data``: validity, roughness, properties, MMD."""
    check = validity(samples)
    out: dict[str, Any] = {"valid_fraction": float(check.valid.mean())}
    out["invalid"] = {reason: int(check.failures[reason].sum()) for reason in REASONS}
    finite = samples[np.isfinite(samples).all(axis=(1, 2))]
    nan = float("nan")
    if len(finite) < 2:
        logger.warning("curve metrics: %d of %d samples are finite; their sample metrics are NaN", len(finite), len(samples))
        return out | dict.fromkeys(("roughness", "roughness_ratio", "thickness", "camber", "mmd2", "mmd_p_value"), nan)
    rough, rough_data = float(roughness(finite).mean()), float(roughness(data).mean())
    props = airfoil_properties(finite)
    out |= {"roughness": rough, "roughness_ratio": rough / rough_data if rough_data > 0 else nan}
    out |= {"thickness": float(props.thickness.mean()), "camber": float(props.camber.mean())}
    try:
        out["mmd2"], out["mmd_p_value"] = mmd(
            _subset(data, MMD_MAX_SHAPES, seed), _subset(finite, MMD_MAX_SHAPES, seed + 1), permutations=permutations, seed=seed
        )
    except InputError as err:  # e.g. every shape with the same thickness and camber: no kernel bandwidth
        logger.warning("curve metrics: the thickness/camber MMD cannot be computed (%s); it is NaN", err)
        out["mmd2"], out["mmd_p_value"] = nan, nan
    return out


def compare_with_pca(
    data: Any,
    train: Any,
    reconstructions: Any,
    samples: Any | None,
    n_components: int,
    *,
    permutations: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """Curve metrics of a model next to those of PCA with ``n_components`` components (``evaluate()``'s ``"curves"``).

    PCA (:class:`vaekit.baselines.PCA`) is fitted on ``train`` flattened to (M, 2P); its
    reconstructions of ``data`` are projections onto the kept components and its samples are
    :meth:`vaekit.baselines.PCA.sample` (as many as ``samples``, or 2000 without model samples,
    with ``seed``). All lengths are in the data's units (chord units for airfoils).

    Parameters
    ----------
    data : array (N, P, 2)
        The evaluated shapes.
    train : array (M, P, 2)
        The shapes PCA is fitted on (the model's training data).
    reconstructions : array (N, P, 2)
        The model's reconstructions of ``data`` (decoder means at the posterior means).
    samples : array (S, P, 2) or None
        The model's samples (decoder means at z ~ p(z)); None: the model side has no sample metrics.
    n_components : int
        PCA's components (the model's latent size; at most 2P are kept).
    permutations, seed : of the MMD permutation tests and PCA's samples.

    Returns
    -------
    dict, JSON-ready:

    - ``components``: PCA's components kept, min(n_components, 2P); ``n_samples``: S per side.
    - ``data``: ``n``, ``valid_fraction``, ``roughness``, ``thickness``, ``camber`` of ``data``.
    - ``model`` and ``pca``, each: ``mean_point_error`` and ``mean_max_point_error``
      (:func:`vaekit.shapes.reconstruction_errors` on ``data``); from the samples,
      ``valid_fraction``, ``invalid`` (reason -> count, every reason of :func:`vaekit.shapes.validity`),
      ``roughness`` (mean :func:`vaekit.shapes.roughness`) and ``roughness_ratio`` (over the
      data's), ``thickness`` and ``camber`` (means of :func:`vaekit.shapes.airfoil_properties`),
      ``mmd2`` and ``mmd_p_value`` (:func:`mmd` against ``data``, at most 2000 shapes a side).
    - ``better``: row -> "model", "pca", "tie" or "n/a" (see :data:`CURVE_ROWS`).

    """
    from vaekit.baselines import PCA

    data, train = as_shapes(data, "data"), as_shapes(train, "train")
    if train.shape[1:] != data.shape[1:]:
        raise InputError(f"train must have the point shape of data {data.shape[1:]}. Got shape {train.shape} instead.")
    pca = PCA(n_components).fit(train.reshape(len(train), -1))
    n_samples = 2000 if samples is None else len(as_shapes(samples, "samples"))
    pca_recon = pca.reconstruct(data.reshape(len(data), -1)).reshape(data.shape)
    pca_samples = pca.sample(n_samples, seed=seed).reshape(n_samples, *data.shape[1:])
    props = airfoil_properties(data)
    out: dict[str, Any] = {"components": int(pca.components.shape[0]), "n_samples": n_samples}
    out["data"] = {
        "n": len(data),
        "valid_fraction": float(validity(data).valid.mean()),
        "roughness": float(roughness(data).mean()),
        "thickness": float(props.thickness.mean()),
        "camber": float(props.camber.mean()),
    }
    out["model"] = reconstruction_errors(data, reconstructions)
    if samples is not None:
        out["model"] |= _sample_side(data, as_shapes(samples, "samples"), permutations=permutations, seed=seed)
    out["pca"] = reconstruction_errors(data, pca_recon) | _sample_side(data, pca_samples, permutations=permutations, seed=seed)
    out["better"] = {row.key: better(row, out) for row in CURVE_ROWS if row.rule}
    return out


@dataclass(frozen=True)
class CurveRow:
    """One row of the "model vs PCA" table: ``key`` in ``curves["model"]``/``["pca"]``, how to judge it.

    ``rule``: "lower" or "higher" (the better value), "near_data" (nearer the data's value, ``data_key``
    in ``curves["data"]``), "near_one" (nearer 1 on a log scale), or "" (no verdict).
    """

    key: str
    label: str
    rule: str
    meaning: str
    data_key: str = ""


CURVE_ROWS = (
    CurveRow(
        "mean_point_error", "mean point error", "lower", "a point's distance from its reconstruction, mean over points and shapes"
    ),
    CurveRow("mean_max_point_error", "mean worst-point error", "lower", "each shape's largest point error, mean over shapes"),
    CurveRow("valid_fraction", "valid samples", "higher", "share of samples passing every validity check", "valid_fraction"),
    CurveRow("invalid", "invalid samples by reason", "", "failed checks (a sample may fail several)"),
    CurveRow(
        "valid_fraction_unconstrained",
        "valid without the constraint",
        "",
        "a constrained model (constraint='airfoil'): its samples' validity before the constraint",
    ),
    CurveRow(
        "constraint_changed_fraction",
        "changed by the constraint",
        "",
        "a constrained model: share of samples the constraint moved by more than 0.002",
    ),
    CurveRow(
        "roughness_ratio", "roughness ratio", "near_one", "samples' mean curvature roughness over the data's (1: as smooth)"
    ),
    CurveRow("thickness", "mean max thickness", "near_data", "of the samples; data column: of the data", "thickness"),
    CurveRow("camber", "mean max camber", "near_data", "of the samples; data column: of the data", "camber"),
    CurveRow("mmd2", "MMD² thickness/camber", "lower", "between samples and data (0: indistinguishable)"),
    CurveRow("mmd_p_value", "MMD p-value", "higher", "permutation p-value (small: samples distinguishable from data)"),
)


def better(row: CurveRow, curves: dict[str, Any]) -> str:
    """Which side of ``curves`` (:func:`compare_with_pca`) does better on ``row``: "model", "pca", "tie" or "n/a"."""
    a, b = curves.get("model", {}).get(row.key), curves.get("pca", {}).get(row.key)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (a, b)):
        return "n/a"
    if row.rule in ("near_data", "near_one"):
        target = curves.get("data", {}).get(row.data_key) if row.rule == "near_data" else 1.0
        if not isinstance(target, (int, float)) or not math.isfinite(target):
            return "n/a"
        if row.rule == "near_one":
            if a <= 0 or b <= 0:
                return "n/a"
            a, b = abs(math.log(a)), abs(math.log(b))
        else:
            a, b = abs(a - target), abs(b - target)
        a, b = -a, -b  # nearer is higher
    elif row.rule == "lower":
        a, b = -a, -b
    return "tie" if a == b else "model" if a > b else "pca"


def comparison_rows(curves: dict[str, Any]) -> list[tuple[str, Any, Any, Any, str, str]]:
    """The "model vs PCA" table of ``curves``: (label, model, PCA, data, better, meaning) per :data:`CURVE_ROWS` row.

    Values are as stored (numbers, None for NaN); ``invalid`` becomes text such as
    "crossed_surfaces 3, open_trailing_edge 1" (or "none"); the data column holds the data's own
    value where the row has one (1.0 for the roughness ratio).
    """
    rows = []
    model, pca, data = curves.get("model", {}), curves.get("pca", {}), curves.get("data", {})
    for row in CURVE_ROWS:
        a, b = model.get(row.key), pca.get(row.key)
        if row.key not in model and row.key not in pca:
            continue  # a row only some models have (the constraint's)
        if row.key == "invalid":
            a, b = (_reasons(v) for v in (a, b))
        reference = 1.0 if row.rule == "near_one" else data.get(row.data_key) if row.data_key else None
        rows.append((row.label, a, b, reference, better(row, curves) if row.rule else "", row.meaning))
    return rows


def _reasons(counts: Any) -> str | None:
    if not isinstance(counts, dict):
        return None
    text = ", ".join(f"{reason} {count}" for reason, count in counts.items() if count)
    return text or "none"
