"""Data: toy 2-D datasets, the digits images, airfoil shapes, the user's own tables, and splits.

Every generator takes ``n`` and ``seed`` and returns numpy ``(x, y)``: points float32 (N, 2)
and a per-point label (int64 mode/class index, or float32 position for the swiss roll).
The airfoils (:mod:`vaekit.data.airfoil_files`) are a fixed set: shapes float32 (N, 64, 2).
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vaekit.data.airfoil_files import Airfoils, airfoils, bundled_airfoils, load_airfoils, read_airfoil  # noqa: F401 (re-exported)
from vaekit.errors import FileFormatError, InputError, InputTypeError, describe
from vaekit.validate import PICKLE_SUFFIXES, positive_float, positive_int

logger = logging.getLogger(__name__)


def ring(
    n: int = 2000, modes: int = 8, radius: float = 3.0, std: float = 0.25, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Ring of Gaussians: ``modes`` isotropic Gaussians (std ``std``) evenly spaced on a circle.

    Each point picks its mode uniformly at random. Returns x float32 (n, 2), mode int64 (n,).
    The density is sum_k (1/modes) N(x; mu_k, std^2 I) with mu_k = radius (cos 2 pi k/modes,
    sin 2 pi k/modes); see :func:`ring_log_density`.
    """
    n, modes = positive_int(n, "n"), positive_int(modes, "modes")
    radius, std = positive_float(radius, "radius"), positive_float(std, "std")
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, modes, size=n)
    centres = ring_centres(modes, radius)
    x = centres[labels] + std * rng.standard_normal((n, 2))
    return x.astype(np.float32), labels.astype(np.int64)


def ring_centres(modes: int = 8, radius: float = 3.0) -> np.ndarray:
    """Mode centres of :func:`ring`, float64 (modes, 2)."""
    angles = 2 * np.pi * np.arange(modes) / modes
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def ring_log_density(x: Any, modes: int = 8, radius: float = 3.0, std: float = 0.25) -> np.ndarray:
    """Exact log-density (nats) of the ring mixture at points x (N, 2); float64 (N,)."""
    points = np.asarray(x, dtype=np.float64)
    sq = ((points[:, None, :] - ring_centres(modes, radius)[None]) ** 2).sum(-1)  # (N, K)
    log_comp = -sq / (2 * std**2) - np.log(2 * np.pi * std**2) - np.log(modes)
    top = log_comp.max(1, keepdims=True)
    return (top + np.log(np.exp(log_comp - top).sum(1, keepdims=True)))[:, 0]


def radius(x: Any) -> np.ndarray:
    """Distance of each point from the origin: float32 (N, 1), the lecture's continuous condition."""
    return np.linalg.norm(np.asarray(x, dtype=np.float32), axis=1, keepdims=True)


def moons(n: int = 2000, noise: float = 0.05, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles (as scikit-learn's make_moons). x float32 (n, 2), moon int64 (n,)."""
    n = positive_int(n, "n")
    noise = positive_float(noise, "noise", allow_zero=True)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=n)
    t = rng.uniform(0, np.pi, size=n)
    x = np.where(labels[:, None] == 0, np.stack([np.cos(t), np.sin(t)], 1), np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1))
    x = x + noise * rng.standard_normal((n, 2))
    return x.astype(np.float32), labels.astype(np.int64)


def circles(n: int = 2000, factor: float = 0.5, noise: float = 0.05, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two concentric circles of radii 1 and ``factor``. x float32 (n, 2), circle int64 (n,) (1 = inner)."""
    n = positive_int(n, "n")
    factor = positive_float(factor, "factor")
    noise = positive_float(noise, "noise", allow_zero=True)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=n)
    t = rng.uniform(0, 2 * np.pi, size=n)
    r = np.where(labels == 1, factor, 1.0)
    x = r[:, None] * np.stack([np.cos(t), np.sin(t)], 1) + noise * rng.standard_normal((n, 2))
    return x.astype(np.float32), labels.astype(np.int64)


def swiss_roll(n: int = 2000, noise: float = 0.25, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """2-D swiss roll (a spiral), scaled to about [-1.5, 1.5]. x float32 (n, 2), position t float32 (n,)."""
    n = positive_int(n, "n")
    noise = positive_float(noise, "noise", allow_zero=True)
    rng = np.random.default_rng(seed)
    t = 1.5 * np.pi * (1 + 2 * rng.uniform(size=n))
    x = np.stack([t * np.cos(t), t * np.sin(t)], 1) + noise * rng.standard_normal((n, 2))
    return (x / 10).astype(np.float32), t.astype(np.float32)


def pinwheel(
    n: int = 2000, arms: int = 5, radial_std: float = 0.3, tangential_std: float = 0.05, rate: float = 0.25, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Pinwheel: ``arms`` curved Gaussian arms (Johnson et al., 2016). x float32 (n, 2), arm int64 (n,)."""
    n, arms = positive_int(n, "n"), positive_int(arms, "arms")
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, arms, size=n)
    feats = rng.standard_normal((n, 2)) * np.array([radial_std, tangential_std])
    feats[:, 0] += 1.0
    angles = 2 * np.pi * labels / arms + rate * np.exp(feats[:, 0])
    cos, sin = np.cos(angles), np.sin(angles)
    x = np.stack([cos * feats[:, 0] - sin * feats[:, 1], sin * feats[:, 0] + cos * feats[:, 1]], 1)
    return x.astype(np.float32), labels.astype(np.int64)


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits: pixels float32 (1797, 64) in [0, 1], digit int64 (1797,).

    Needs scikit-learn (``pip install vaekit[data]``); nothing is downloaded.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("vaekit.data.digits needs scikit-learn: pip install 'vaekit[data]'") from err
    bunch = load_digits()
    return (bunch.data / 16.0).astype(np.float32), bunch.target.astype(np.int64)


DATASETS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "ring": ring,
    "moons": moons,
    "circles": circles,
    "swiss_roll": swiss_roll,
    "pinwheel": pinwheel,
    "digits": digits,
    "airfoils": airfoils,
}


def train_val_split(x: Any, y: Any = None, *, val_fraction: float = 0.2, seed: int = 0):
    """Random split into (x_train, x_val) or (x_train, x_val, y_train, y_val)."""
    if not 0.0 < float(val_fraction) < 1.0:
        raise InputError(f"val_fraction must be in (0, 1). Got {val_fraction} instead.")
    x = np.asarray(x)
    n = len(x)
    n_val = int(round(n * val_fraction))
    if n_val == 0 or n_val == n:
        raise InputError(f"val_fraction={val_fraction} of {n} rows leaves an empty side of the split.")
    order = np.random.default_rng(seed).permutation(n)
    val, train = order[:n_val], order[n_val:]
    if y is None:
        return x[train], x[val]
    y = np.asarray(y)
    if len(y) != n:
        raise InputError(f"y must have one entry per row of x ({n}). Got {len(y)} instead.")
    return x[train], x[val], y[train], y[val]


# ---------------------------------------------------------------------------- user tables
@dataclass
class Table:
    """Data read by :func:`load_table`.

    Attributes
    ----------
    x : float32 (N, D) the selected data columns (an (N, *shape) .npy array flattened).
    condition : float32 (N, C) or None; text labels become integer codes 0..K-1.
    columns, condition_columns : the column names used.
    label_names : for a text label column, the original label of each code.

    """

    x: np.ndarray
    condition: np.ndarray | None
    columns: list[str]
    condition_columns: list[str] = field(default_factory=list)
    label_names: list[str] | None = None
    x_shape: tuple[int, ...] | None = None  # the shape of one point of an (N, *shape) .npy array
    label: np.ndarray | None = None
    label_column: str = ""
    label_classes: list[str] | None = None
    has_header: bool = True


HEADER_CHOICES = ("auto", True, False)


def load_table(
    path: str | Path,
    columns: Sequence[str] | None = None,
    condition: str | Sequence[str] | None = None,
    *,
    exclude: Sequence[str] | None = None,
    label: str | None = None,
    header: bool | str = "auto",
) -> Table:
    """Read a CSV, ``.npy`` or ``.parquet`` file into a :class:`Table`.

    Parameters
    ----------
    path : CSV, ``.npy`` (2-D numeric, columns named "0", "1", ...) or ``.parquet`` (needs pyarrow).
        A ``.npy`` array of more dimensions, (N, *shape) such as curves (N, P, 2), is
        flattened to (N, D) and its point shape kept in ``x_shape`` (no column selection then:
        ``columns`` must be None or all D names, "0" to "D-1").
    columns : names of the data columns; default all columns that are not condition, label or
        excluded columns.
    condition : name(s) of the condition column(s). A single text column is read as labels.
    exclude : names of columns that are not data (ids, file names, ...); removed from ``columns``.
    label : name of a column that only describes the points (it colours plots): read into
        ``Table.label`` (N,) (text becomes codes 0..K-1 named by ``label_classes``, numbers stay
        numbers), never part of the data or the condition.
    header : "auto", True or False, default "auto"
        Whether a CSV's first row holds the column names. "auto": a first row whose every cell is
        a number is data, not names (the columns are then named col0, col1, ..., and the choice is
        logged); a header of numbers needs ``header=True``. Ignored for ``.npy``/``.parquet``.

    Raises
    ------
    FileFormatError
        Missing or unreadable file, ragged rows, empty table.
    InputError
        Unknown column names, non-numeric or non-finite data values.

    """
    if header not in HEADER_CHOICES or not isinstance(header, (bool, str)):
        raise InputError(f"header must be 'auto', True or False. Got {describe(header)} instead.")
    if not isinstance(path, (str, Path)):
        raise InputTypeError(f"path must be a file path (str or Path). Got {describe(path)} instead.")
    path = Path(path)
    if path.is_dir():
        raise FileFormatError(f"data file {path} is a folder; expected a CSV, .npy or .parquet file.")
    if not path.is_file():
        raise FileFormatError(f"data file {path} does not exist.")
    cond_names = _names(condition, "condition", allow_single=True)
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise FileFormatError(
            f"{path}: {suffix} files are not read (pickles can execute code); save the data as CSV, .npy or .parquet."
        )
    if suffix == ".npy":
        header, cells = _read_npy(path)
    elif suffix == ".parquet":
        header, cells = _read_parquet(path)
    else:
        header, cells, has_header = _read_csv(path, header)
    if len(cells) == 0:
        raise FileFormatError(f"{path} has a header but no data rows.")
    x_shape = None
    if isinstance(cells, np.ndarray) and cells.ndim > 2:
        if (columns is not None and list(columns) != header) or cond_names:
            shown = columns if columns is None or len(columns) <= 8 else f"a list of {len(columns)} names"
            raise InputError(
                f"columns must be None or all {len(header)} columns, and condition None, for the {cells.ndim}-D array "
                f"of {path} (whole points are used). Got columns={shown} and condition={condition!r} instead."
            )
        x_shape, cells = tuple(cells.shape[1:]), cells.reshape(len(cells), -1)
    _check_names(cond_names, header, "condition", path)
    excluded = _names(exclude, "exclude", allow_single=False)
    _check_names(excluded, header, "exclude", path)
    label_names_ = _names(label, "label", allow_single=True)
    if len(label_names_) > 1:
        raise InputTypeError(f"label must be one column name. Got {describe(label)} instead.")
    _check_names(label_names_, header, "label", path)
    if label_names_ and label_names_[0] in cond_names:
        raise InputError(
            f"label must not be a condition column (a label only colours the plots). Got the condition column {label!r} instead."
        )
    if columns is None:
        data_names = [h for h in header if h not in cond_names and h not in excluded and h not in label_names_]
    else:
        data_names = _names(columns, "columns", allow_single=False)
        _check_names(data_names, header, "columns", path)
        used = [n for n in label_names_ if n in data_names]
        if used:
            raise InputError(
                f"label must not be one of the data columns (a label is never trained on). Got {used[0]!r}, "
                "which columns also names, instead."
            )
        data_names = [n for n in data_names if n not in excluded]
    if not data_names:
        raise InputError(f"columns must name at least one data column of {path}. Got none instead.")
    index = {h: i for i, h in enumerate(header)}
    x = _numeric(_select(cells, [index[c] for c in data_names]), data_names, path)
    cond, label_names = None, None
    if cond_names:
        raw = _select(cells, [index[c] for c in cond_names])
        if len(cond_names) == 1 and not isinstance(raw, np.ndarray) and not _all_numeric(r[0] for r in raw):
            label_names = sorted({str(r[0]) for r in raw})
            codes = {name: i for i, name in enumerate(label_names)}
            cond = np.array([[codes[str(r[0])]] for r in raw], dtype=np.float32)
        else:
            cond = _numeric(raw, cond_names, path)
    point_label, label_classes = None, None
    if label_names_:
        raw = _select(cells, [index[label_names_[0]]])
        if not isinstance(raw, np.ndarray) and not _all_numeric(r[0] for r in raw):
            label_classes = sorted({str(r[0]) for r in raw})
            codes = {name: i for i, name in enumerate(label_classes)}
            point_label = np.array([codes[str(r[0])] for r in raw], dtype=np.int64)
        else:
            point_label = _numeric(raw, label_names_, path)[:, 0]
            if np.all(point_label == np.round(point_label)):
                point_label = point_label.astype(np.int64)
    return Table(
        x,
        cond,
        data_names,
        cond_names,
        label_names,
        x_shape,
        label=point_label,
        label_column=label_names_[0] if label_names_ else "",
        label_classes=label_classes,
        has_header=has_header if suffix not in (".npy", ".parquet") else True,
    )


def _names(value: Any, name: str, *, allow_single: bool) -> list[str]:
    """Column names given as a list of str (or one str where ``allow_single``); None means none."""
    if value is None:
        return []
    if isinstance(value, str):
        if allow_single:
            return [value]
        raise InputTypeError(f"{name} must be a list of column names. Got the string {value!r} instead.")
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise InputTypeError(f"{name} must be a list of column names (strings). Got {describe(value)} instead.")
    return list(value)


def _select(cells: Any, idx: list[int]) -> Any:
    """The given columns of a 2-D numeric array (fast path) or of a list of rows."""
    if isinstance(cells, np.ndarray):
        return cells[:, idx]
    return [[row[i] for i in idx] for row in cells]


def looks_like_header(first_row: Sequence[str]) -> bool:
    """The rule of ``header="auto"``: a CSV's first row is a header unless every cell is a number."""
    return not all(cell.strip() and _all_numeric([cell]) for cell in first_row)


def _read_csv(path: Path, header: bool | str = "auto") -> tuple[list[str], list[list[str]], bool]:
    """(column names, rows of cells, whether the first row was a header); see ``load_table``'s ``header``."""
    from vaekit.streaming import too_large_for_memory, too_large_message

    if too_large_for_memory(path):
        raise InputError(too_large_message(path))
    try:
        # utf-8-sig: spreadsheet exports often start with a byte-order mark.
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    except (UnicodeDecodeError, csv.Error) as err:
        raise FileFormatError(f"{path} is not a readable UTF-8 CSV file ({err}).") from None
    if not rows:
        raise FileFormatError(f"{path} is empty: expected a header row and data rows.")
    first = [h.strip() for h in rows[0]]
    has_header = header is True or (header == "auto" and looks_like_header(first))
    if has_header:
        names, body, what = first, rows[1:], "as in the header"
    else:
        names, body, what = [f"col{i}" for i in range(len(first))], rows, "as in the first row"
        if header == "auto":
            logger.info(
                "%s: the first row is all numbers, so it is read as data (no header): columns col0..col%d", path, len(first) - 1
            )
    if len(set(names)) != len(names):
        raise FileFormatError(f"{path}: the header repeats a column name: {names}.")
    for line, row in enumerate(body, start=2 if has_header else 1):
        if len(row) != len(names):
            raise FileFormatError(f"{path}, line {line}: expected {len(names)} values ({what}) but found {len(row)}.")
    return names, [[c.strip() for c in row] for row in body], has_header


_NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _read_npy(path: Path) -> tuple[list[str], Any]:
    try:
        with open(path, "rb") as handle:
            # Check the header's promise against the file size before numpy allocates anything.
            version = np.lib.format.read_magic(handle)
            if version not in _NPY_HEADERS:
                raise ValueError(f".npy format version {version} is not supported")
            shape, _, dtype = _NPY_HEADERS[version](handle)
            if dtype.hasobject:
                raise ValueError("object arrays are refused (they need pickle)")
            needed = math.prod(shape) * dtype.itemsize
            offset = handle.tell()
            if handle.seek(0, os.SEEK_END) - offset < needed:
                raise ValueError(f"the header promises {needed} bytes of data for shape {shape}; the file is truncated")
        array = np.load(path, allow_pickle=False)
    except Exception as err:  # numpy's header parser raises many types (ValueError, SyntaxError, TokenError, ...)
        raise FileFormatError(f"{path} is not a readable .npy array file ({err}).") from None
    if array.ndim < 2:
        raise FileFormatError(
            f"{path} must hold a 2-D array (rows x columns) or (N, *shape) points. Got shape {array.shape} instead."
        )
    if array.dtype.kind not in "biuf":
        raise InputError(f"{path} must hold a numeric (int or float) array. Got dtype {array.dtype} instead.")
    return [str(i) for i in range(math.prod(array.shape[1:]))], array


def _read_parquet(path: Path) -> tuple[list[str], list[list[Any]]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as err:
        raise ImportError("reading .parquet needs pyarrow: pip install pyarrow") from err
    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises many types (ArrowInvalid, OSError, ...) for bad files
        raise FileFormatError(f"{path} is not a readable parquet file ({err}).") from None
    header = [str(name) for name in table.column_names]
    cols = [table.column(i).to_pylist() for i in range(len(header))]
    return header, [list(r) for r in zip(*cols)]


def _check_names(names: list[str], header: list[str], what: str, path: Path) -> None:
    missing = [n for n in names if n not in header]
    if missing:
        shown = header if len(header) <= 20 else f"{len(header)} columns: {', '.join(header[:3])}, …, {header[-1]}"
        raise InputError(f"{what} names unknown column(s) {missing} of {path}; its columns are {shown}.")


def _all_numeric(values) -> bool:
    for v in values:
        try:
            float(v)
        except (TypeError, ValueError):
            return False
    return True


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _numeric(rows: Any, names: list[str], path: Path) -> np.ndarray:
    if isinstance(rows, np.ndarray):  # numeric arrays (.npy) are checked in one pass
        with np.errstate(over="ignore"):
            values = rows.astype(np.float64)
        bad = ~np.isfinite(values) | (np.abs(values) > _FLOAT32_MAX)
        if not bad.any():
            return values.astype(np.float32)
        i, j = np.argwhere(bad)[0]
        value = float(values[i, j])
        raise InputError(
            f"column {names[j]!r} of {path} must hold finite float32 values. Got {value!r} in data row {i + 1} instead."
        )
    out = np.empty((len(rows), len(names)), dtype=np.float64)
    for i, row in enumerate(rows):
        for j, cell in enumerate(row):
            try:
                value = float(cell)
            except (TypeError, ValueError):
                raise InputError(
                    f"column {names[j]!r} of {path} must be numeric. Got {describe(cell)} in data row {i + 1} instead."
                ) from None
            if not math.isfinite(value) or abs(value) > _FLOAT32_MAX:
                raise InputError(
                    f"column {names[j]!r} of {path} must hold finite float32 values. Got {cell!r} in data row {i + 1} instead."
                )
            out[i, j] = value
    return out.astype(np.float32)
