"""Conditional design of shapes: conditions computed from curves, and how well samples keep them.

A model of airfoil-like curves (N, P, 2) (layout of :mod:`vaekit.shapes`) can be conditioned on
geometry that is computed from each shape rather than read from a column:

* :data:`PROPERTIES`: the names, the fields of :class:`vaekit.shapes.Properties` (``thickness``,
  ``camber``, ``thickness_x``, ``camber_x``; chord units).
* :func:`property_names`: ``"thickness"``, ``"thickness,camber"`` or a list -> checked names.
* :func:`shape_condition`: the (N, C) condition array of those properties, the array that
  ``vk.fit(model, x, condition=...)`` takes and that ``vaekit train --condition
  thickness:continuous`` computes.
* :func:`condition_adherence`: sample shapes at target values, measure the property of each
  sample and report the error in chord units next to a trivial baseline.

Pure numpy on top of :mod:`vaekit.shapes`; the model is only asked for ``sample``.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

from vaekit.errors import InputError, InputTypeError, describe
from vaekit.shapes import Properties, airfoil_properties, as_shapes, validity

logger = logging.getLogger(__name__)

PROPERTIES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Properties))
# Targets and samples per target of condition_adherence() in a run's metrics.json.
TARGETS, SAMPLES_PER_TARGET = 50, 20
# The targets span these quantiles of the held-out conditions.
QUANTILES = (0.05, 0.95)


def property_names(value: Any, name: str = "condition") -> list[str]:
    """The shape properties named by ``value``: one name, comma-separated names, or a list of names.

    Raises
    ------
    InputError
        A name that is not one of :data:`PROPERTIES`, a repeated name, or no name at all.

    """
    if isinstance(value, str):
        names = [part.strip() for part in value.split(",")]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        names = [v.strip() for v in value]
    else:
        raise InputTypeError(f"{name} must be a shape property name or a list of them. Got {describe(value)} instead.")
    unknown = [n for n in names if n not in PROPERTIES]
    if unknown or not names:
        raise InputError(
            f"{name} must name shape properties among {list(PROPERTIES)}, comma-separated (e.g. 'thickness,camber'). "
            f"Got {value!r} instead."
        )
    if len(set(names)) != len(names):
        raise InputError(f"{name} must name each shape property once. Got {value!r} instead.")
    return names


def is_property_condition(value: Any) -> bool:
    """True when ``value`` (a condition string such as ``"thickness,camber"``) names only shape properties."""
    if not isinstance(value, str) or not value:
        return False
    return all(part.strip() in PROPERTIES for part in value.split(","))


def is_curve_shape(x_shape: Any) -> bool:
    """True for the point shape of curves, (P, 2)."""
    shape = tuple(x_shape or ())
    return len(shape) == 2 and shape[1] == 2


def shape_condition(shapes: Any, names: Any = "thickness") -> np.ndarray:
    """The condition array of the named properties of each shape: float32 (N, C), chord units.

    Parameters
    ----------
    shapes : array (N, P, 2), the layout of :mod:`vaekit.shapes`.
    names : str or list of str, default "thickness"
        Properties among :data:`PROPERTIES`, e.g. ``"thickness,camber"``; C is their number.

    Returns
    -------
    float32 array (N, C), the columns in the order of ``names``. The same numbers as
    ``vk.shapes.airfoil_properties(shapes).features()`` for ``["thickness", "camber"]``.

    """
    wanted = property_names(names, "names")
    props = airfoil_properties(shapes)
    return np.stack([getattr(props, n) for n in wanted], axis=1).astype(np.float32)


def adherence_targets(condition: Any, n: int = TARGETS) -> np.ndarray:
    """``n`` condition rows (n, C) spread over the 5% .. 95% quantiles of ``condition`` (M, C).

    The rows are real rows of ``condition`` (so several columns keep combinations the data has):
    sorted by the first column, the rows at the ``n`` evenly spaced quantiles 5% .. 95%.
    """
    c = np.asarray(condition, dtype=np.float64)
    c = c.reshape(-1, 1) if c.ndim == 1 else c
    if c.ndim != 2 or len(c) < 1:
        raise InputError(f"condition must have shape (M, C) with M >= 1. Got shape {np.shape(condition)} instead.")
    order = np.argsort(c[:, 0], kind="stable")
    at = np.round(np.linspace(*QUANTILES, n) * (len(c) - 1)).astype(np.int64)
    return c[order[at]]


def condition_adherence(
    model: Any,
    targets: Any,
    names: Any = "thickness",
    *,
    n_per_target: int = SAMPLES_PER_TARGET,
    reference: Any = None,
    seed: int = 0,
) -> dict[str, float]:
    """How closely a conditional model's shapes have the properties they were asked for.

    For each of the M target rows, ``n_per_target`` shapes are sampled (decoder means, no
    observation noise); each sample's properties are measured with
    :func:`vaekit.shapes.airfoil_properties` and compared with its target. The baseline is a
    model that ignores the condition and always hits the reference mean exactly: its error is
    ``|target - mean(reference)|``. Conditioning works where the model's error is well below it.

    Parameters
    ----------
    model : a model with ``x_shape`` (P, 2), a ``Continuous(C)`` condition and ``sample(n, condition, seed=)``.
    targets : array (M, C) (or (M,) when C is 1), the condition values asked for, chord units.
    names : str or list of str, default "thickness"
        The C properties the condition columns are (:data:`PROPERTIES`), in column order.
    n_per_target : int, default 20
    reference : array (K, C), optional
        The conditions the model was trained on (the baseline's mean); None: ``targets``.
    seed : int, default 0

    Returns
    -------
    dict with ``adherence_targets`` (M), ``adherence_samples_per_target``,
    ``adherence_valid_fraction`` (share of the samples that pass :func:`vaekit.shapes.validity`)
    and, for each property NAME (chord units): ``adherence_NAME_mae`` and ``adherence_NAME_p90``
    (mean and 90th percentile of |measured - target| over the M x n samples),
    ``adherence_NAME_baseline_mae`` and ``adherence_NAME_baseline_p90`` (the same for the
    baseline). Samples with non-finite coordinates are left out of the errors (logged); with
    none left the errors are NaN.

    Raises
    ------
    InputError
        The model is not a curve model with a continuous condition of C columns, or ``targets``,
        ``names`` or ``n_per_target`` do not fit it.

    """
    wanted = property_names(names, "names")
    x_shape = tuple(getattr(model, "x_shape", ()) or ())
    if not is_curve_shape(x_shape):
        raise InputError(f"model must model curves (x_shape (P, 2)) for condition_adherence. Got x_shape {x_shape} instead.")
    spec = getattr(model, "condition", None)
    if spec is None or getattr(spec, "kind", None) != "continuous" or spec.dim != len(wanted):
        shown = "no condition" if spec is None else spec.to_config()
        raise InputError(
            f"model must have a continuous condition of {len(wanted)} column(s) {wanted} for condition_adherence. "
            f"Got {shown} instead."
        )
    t = _rows(targets, "targets", len(wanted))
    ref = t if reference is None else _rows(reference, "reference", len(wanted))
    if isinstance(n_per_target, bool) or not isinstance(n_per_target, (int, np.integer)) or n_per_target < 1:
        raise InputError(f"n_per_target must be an integer >= 1. Got {n_per_target!r} instead.")
    asked = np.repeat(t, n_per_target, axis=0)  # (M n, C)
    samples = np.asarray(model.sample(len(asked), asked.astype(np.float32), seed=seed)).reshape(len(asked), *x_shape)
    return adherence_of(samples, asked, wanted, reference=ref) | {
        "adherence_targets": len(t),
        "adherence_samples_per_target": int(n_per_target),
    }


def adherence_of(samples: Any, asked: Any, names: Any = "thickness", *, reference: Any = None) -> dict[str, float]:
    """The errors of :func:`condition_adherence` for given shapes: ``samples`` (S, P, 2) asked for ``asked`` (S, C).

    Returns ``adherence_valid_fraction`` and, per property, ``adherence_NAME_mae``, ``_p90``,
    ``_baseline_mae`` and ``_baseline_p90`` (see :func:`condition_adherence`).
    """
    wanted = property_names(names, "names")
    shapes = as_shapes(samples, "samples")
    c = _rows(asked, "asked", len(wanted))
    if len(c) != len(shapes):
        raise InputError(f"asked must hold one row per sample ({len(shapes)}). Got {len(c)} rows instead.")
    ref = c if reference is None else _rows(reference, "reference", len(wanted))
    finite = np.isfinite(shapes).all(axis=(1, 2))
    out: dict[str, float] = {"adherence_valid_fraction": float(validity(shapes).valid.mean())}
    if not finite.all():
        logger.warning("adherence: %d of %d samples are not finite; left out", int((~finite).sum()), len(shapes))
    measured = shape_condition(shapes[finite], wanted).astype(np.float64) if finite.any() else None
    for j, name in enumerate(wanted):
        base = np.abs(c[:, j] - ref[:, j].mean())
        if measured is None:
            error = np.full(0, np.nan)
        else:
            error = np.abs(measured[:, j] - c[finite, j])
        nan = float("nan")
        out[f"adherence_{name}_mae"] = float(error.mean()) if len(error) else nan
        out[f"adherence_{name}_p90"] = float(np.quantile(error, 0.9)) if len(error) else nan
        out[f"adherence_{name}_baseline_mae"] = float(base.mean())
        out[f"adherence_{name}_baseline_p90"] = float(np.quantile(base, 0.9))
    return out


def _rows(value: Any, name: str, width: int) -> np.ndarray:
    """``value`` as finite float64 (M, width), M >= 1; a vector is one column when ``width`` is 1."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputTypeError(f"{name} must be a numeric array of shape (M, {width}). Got {describe(value)} instead.") from None
    if array.ndim == 1 and width == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[1] != width or len(array) < 1:
        raise InputError(f"{name} must have shape (M, {width}) with M >= 1. Got shape {array.shape} instead.")
    if not np.isfinite(array).all():
        raise InputError(f"{name} must hold finite numbers. Got a NaN or infinite value instead.")
    return array


def adherence_notes(names: Any = PROPERTIES) -> dict[str, str]:
    """Metric name -> one-line meaning, for the report's metrics table."""
    notes = {
        "adherence_targets": "condition values asked for (5%..95% quantiles of the evaluated data's conditions)",
        "adherence_samples_per_target": "shapes sampled (decoder means) at each target",
        "adherence_valid_fraction": "share of those conditional samples that are valid airfoils",
    }
    for name in property_names(list(names), "names"):
        notes[f"adherence_{name}_mae"] = f"mean |measured - asked| {name} of conditional samples, chord units"
        notes[f"adherence_{name}_p90"] = f"90th percentile of |measured - asked| {name}, chord units"
        notes[f"adherence_{name}_baseline_mae"] = f"the same for a model ignoring the condition: |asked - mean {name}|"
        notes[f"adherence_{name}_baseline_p90"] = f"90th percentile of |asked - mean {name}|"
    return notes
