"""Input checking shared by every public entry point.

Each checker converts what the user gave (numpy array, torch tensor, nested list) to what the
library needs and raises :class:`~vaekit.errors.InputError` with scikit-learn's template
(the parameter, what is allowed, "Got ... instead.") when it cannot.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch

from vaekit.errors import InputError, InputTypeError, describe

# Suffixes of formats that may hold pickled objects (torch.save, pickle, joblib, numpy's .npz):
# such files are refused by name and never opened, because unpickling can run arbitrary code.
# The one list for model files and checkpoints (vaekit.io) and data files (vaekit.data).
PICKLE_SUFFIXES = frozenset({".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".joblib", ".npz"})


def to_numpy(value: Any, name: str) -> np.ndarray:
    """Numpy view of array-like ``value`` (tensors are detached and moved to the CPU)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (list, tuple)):
        try:
            return np.asarray(value)
        except ValueError as err:  # ragged nested lists
            raise InputError(f"{name} must be a rectangular array; got ragged nested sequences instead.") from err
    raise InputTypeError(f"{name} must be a numpy array or a torch tensor. Got {describe(value)} instead.")


def float_matrix(value: Any, name: str, *, width: int | None = None, allow_vector: bool = False) -> torch.Tensor:
    """Check ``value`` is a finite, non-empty (N, width) float array; return float32 (N, width).

    ``allow_vector`` accepts a 1-D array of length N as (N, 1) when ``width`` is 1.
    """
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
        if not (tensor.is_floating_point() or tensor.dtype in _INT_DTYPES or tensor.dtype == torch.bool):
            raise InputTypeError(f"{name} must hold numbers. Got a tensor of dtype {tensor.dtype} instead.")
        tensor = tensor.to(torch.float32)
    else:
        array = to_numpy(value, name)
        if array.dtype.kind not in "biuf":
            raise InputTypeError(f"{name} must hold numbers (float or int). Got an array of dtype {array.dtype} instead.")
        with np.errstate(over="ignore"):  # values beyond float32 become inf and are reported below
            tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if tensor.ndim == 1 and allow_vector and width in (None, 1):
        tensor = tensor.unsqueeze(1)
    if tensor.ndim != 2:
        expected = f"(N, {width})" if width is not None else "(N, D)"
        raise InputError(f"{name} must be a 2-D array of shape {expected}. Got {describe(value)} instead.")
    if tensor.shape[0] == 0:
        raise InputError(f"{name} must hold at least one row. Got an empty array of shape {tuple(tensor.shape)} instead.")
    if width is not None and tensor.shape[1] != width:
        raise InputError(f"{name} must have {width} columns (shape (N, {width})). Got shape {tuple(tensor.shape)} instead.")
    finite = torch.isfinite(tensor)
    if not bool(finite.all()):
        bad_rows = (~finite).any(dim=1).nonzero().flatten()
        first = int(bad_rows[0])
        raise InputError(
            f"{name} must be finite (no NaN or inf). Got {len(bad_rows)} bad row(s), "
            f"the first at row {first}: {tensor[first].tolist()} instead."
        )
    return tensor


_INT_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    """Check ``value`` is an integer >= ``minimum`` (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputTypeError(f"{name} must be an integer >= {minimum}. Got {describe(value)} instead.")
    if value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}. Got {value} instead.")
    return int(value)


def positive_float(value: Any, name: str, *, allow_zero: bool = False) -> float:
    """Check ``value`` is a finite real number > 0 (or >= 0 with ``allow_zero``)."""
    bound = ">= 0" if allow_zero else "> 0"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputTypeError(f"{name} must be a real number {bound}. Got {describe(value)} instead.")
    value = float(value)
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise InputError(f"{name} must be a finite number {bound}. Got {value} instead.")
    return value
