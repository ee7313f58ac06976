"""Airfoil coordinate files (Selig and Lednicer ``.dat``), normalised and resampled; the bundled UIUC set.

Every shape comes out in the layout of :mod:`vaekit.shapes`: float32 (P, 2), chord units, the
upper surface from the trailing edge to the leading edge, then the lower surface from the
leading edge to the trailing edge, P/2 points on each (the leading edge is stored twice).

Normalisation, in this order:

1. The trailing-edge midpoint T is the mean of the contour's first and last points.
2. The leading edge L is the contour point farthest from T (for a round nose this is the
   nose point; it is always a point of the file, never interpolated).
3. The contour is translated so L is at (0, 0), rotated so T lies on the positive x axis and
   scaled by 1/|T - L|: the chord is 1 and T is at (1, 0). Only rotation, translation and
   uniform scaling are used, never a reflection.
4. A contour listed the other way round (lower surface first: clockwise) is reversed, so the
   upper surface always comes first.

Resampling: each surface (L to its trailing-edge point) is parametrised by arc length and
resampled linearly at cosine-spaced fractions s_i = (1 - cos(pi i / (P/2 - 1))) / 2, which puts
points densely at both the leading and the trailing edge.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vaekit.errors import AirfoilFileError, FileFormatError, InputError, InputTypeError, describe
from vaekit.shapes import validity
from vaekit.validate import positive_int

logger = logging.getLogger(__name__)

POINTS = 64
MIN_SURFACE_POINTS = 4  # file points on each side of the leading edge
BUNDLED = Path(__file__).resolve().parent / "airfoils.npz"
SPLIT_SEED = 0  # the fixed 80/20 split of the bundled set
TEST_FRACTION = 0.2


@dataclass
class Airfoils:
    """Shapes read by :func:`load_airfoils`.

    Attributes
    ----------
    shapes : float32 (N, P, 2), normalised and resampled.
    names : the N file names without the ``.dat`` suffix, in the order of ``shapes``.
    skipped : reason -> number of files skipped for it (see :data:`SKIP_REASONS`).
    files : number of files read (kept + skipped).
    notes : what was tolerated in kept files -> number of files (``text_after_coordinates``:
        text lines after the coordinates, ignored).

    """

    shapes: np.ndarray
    names: list[str]
    skipped: dict[str, int] = field(default_factory=dict)
    files: int = 0
    notes: dict[str, int] = field(default_factory=dict)


SKIP_REASONS = {
    "unreadable": "not a readable text file",
    "non_numeric": "a coordinate line that is not two numbers",
    "non_finite": "a NaN or infinite coordinate",
    "bad_counts": "Lednicer point counts that do not match the lines that follow",
    "too_few_points": f"fewer than {MIN_SURFACE_POINTS} points on a side of the leading edge",
    "duplicate_points": "the same point twice, not one after the other (the contour touches itself)",
    "zero_chord": "all points at the trailing-edge midpoint",
    "non_monotone_x": "after normalisation, x steps backwards along a surface (vaekit.shapes.validity)",
    "open_trailing_edge": "after normalisation, the trailing edge is open wider than vaekit.shapes.TE_GAP",
    "crossed_surfaces": "after normalisation, the upper surface dips below the lower one",
    "flat": "after normalisation, no thickness anywhere",
    "duplicate_shape": "the same resampled shape as a file earlier in name order (load_airfoils only)",
}


def _fail(path: Path, reason: str, detail: str) -> AirfoilFileError:
    return AirfoilFileError(f"{path}: {detail} ({reason}).", reason=reason)


def _numbers(line: str) -> list[float] | None:
    """The numbers on a line (commas count as spaces), or None when a word is not a number."""
    try:
        return [float(p) for p in line.replace(",", " ").split()]
    except ValueError:
        return None


def parse_airfoil(text: str, path: Path) -> tuple[np.ndarray, list[str]]:
    """The contour of a Selig or Lednicer file's text in Selig order (TE, upper, LE, lower, TE), and notes.

    Returns float64 (M, 2) and a list of what was tolerated: ``"text_after_coordinates"`` when
    text lines follow the last coordinate line (334 kept UIUC files end with a note); they are
    ignored. The first non-blank line is the name, as are any text lines before the first line
    of numbers; between the first and the last line of numbers every line must be two numbers.
    Lednicer files are told apart by their first line of numbers: two integers >= 2 (the upper
    and lower point counts), then the upper surface from the leading to the trailing edge and
    the lower surface likewise. Points repeated one after the other (the leading edge Lednicer
    files list on both surfaces) are kept once; a point repeated elsewhere is refused
    (``duplicate_points``), except a closed trailing edge listed first and last.
    """
    numbered = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    lines = [line for _, line in numbered]
    values = [_numbers(line) for line in lines]
    numeric = [i for i, v in enumerate(values) if v is not None and i > 0]
    if not numeric:
        raise _fail(path, "too_few_points", "the file must list coordinates. Got none instead")
    first, last = numeric[0], numeric[-1]
    rows = []
    for i in range(first, last + 1):
        if values[i] is None or len(values[i]) != 2:
            detail = f"line {numbered[i][0]} must hold two numbers x y. Got {lines[i].strip()[:40]!r} instead"
            raise _fail(path, "non_numeric", detail)
        rows.append(values[i])
    notes = ["text_after_coordinates"] if last < len(lines) - 1 else []
    points = np.array(rows, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(points).all():
        raise _fail(path, "non_finite", "coordinates must be finite. Got NaN or infinity instead")
    if len(points) and points[0].min() >= 2 and np.all(points[0] == np.round(points[0])):
        upper_n, lower_n = (int(v) for v in points[0])
        body = points[1:]
        if len(body) != upper_n + lower_n:
            raise _fail(path, "bad_counts", f"the counts line promises {upper_n} + {lower_n} points. Got {len(body)} instead")
        points = np.concatenate([body[:upper_n][::-1], body[upper_n:]])
    if len(points) == 0:
        raise _fail(path, "too_few_points", "the file must list coordinates. Got none instead")
    keep = np.ones(len(points), dtype=bool)
    keep[1:] = np.any(points[1:] != points[:-1], axis=1)
    points = points[keep]
    if len(points) < 2 * MIN_SURFACE_POINTS - 1:
        raise _fail(
            path, "too_few_points", f"a contour needs at least {2 * MIN_SURFACE_POINTS - 1} points. Got {len(points)} instead"
        )
    same = np.all(points[:, None] == points[None], axis=2)
    same[0, -1] = same[-1, 0] = False  # a closed trailing edge lists its point first and last
    np.fill_diagonal(same, False)
    if same.any():
        i, j = np.argwhere(same)[0]
        raise _fail(
            path, "duplicate_points", f"contour points {i + 1} and {j + 1} must differ. Got {points[i].tolist()} twice instead"
        )
    return points, notes


def normalise(points: np.ndarray, path: Path, n_points: int = POINTS) -> np.ndarray:
    """Normalise a contour (M, 2) in Selig order and resample it: float64 (n_points, 2); see the module docstring."""
    te = 0.5 * (points[0] + points[-1])
    dist = np.linalg.norm(points - te, axis=1)
    le = int(dist.argmax())
    chord = dist[le]
    if not chord > 0:
        raise _fail(path, "zero_chord", "the chord must be positive. Got 0 instead")
    ux, uy = (te - points[le]) / chord
    q = (points - points[le]) @ np.array([[ux, -uy], [uy, ux]]) / chord  # rotate (ux, uy) onto (1, 0)
    area = np.sum(q[:-1, 0] * q[1:, 1] - q[1:, 0] * q[:-1, 1]) + q[-1, 0] * q[0, 1] - q[0, 0] * q[-1, 1]
    if area < 0:  # clockwise: the lower surface was listed first
        q, le = q[::-1], len(q) - 1 - le
    upper, lower = q[: le + 1][::-1], q[le:]
    if min(len(upper), len(lower)) < MIN_SURFACE_POINTS:
        raise _fail(
            path,
            "too_few_points",
            f"each side of the leading edge needs {MIN_SURFACE_POINTS} points. Got {len(upper)} and {len(lower)} instead",
        )
    half = n_points // 2
    s = 0.5 * (1.0 - np.cos(np.linspace(0.0, np.pi, half)))
    out = [_resample(surface, s) for surface in (upper, lower)]
    return np.concatenate([out[0][::-1], out[1]])


def _resample(surface: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Points at arc-length fractions ``s`` along a polyline (K, 2), linear between its points."""
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(surface, axis=0), axis=1))])
    arc /= arc[-1]
    return np.stack([np.interp(s, arc, surface[:, 0]), np.interp(s, arc, surface[:, 1])], axis=1)


def _points(value: Any) -> int:
    n = positive_int(value, "points")
    if n < 8 or n % 2:
        raise InputError(f"points must be an even integer >= 8 (P/2 on each surface). Got {n} instead.")
    return n


def read_airfoil(path: str | Path, *, points: int = POINTS) -> np.ndarray:
    """Read one Selig or Lednicer ``.dat`` file: its normalised, resampled shape, float32 (points, 2).

    Parameters
    ----------
    path : the coordinate file (text; UTF-8, or Latin-1 where it is not UTF-8).
    points : int, default 64. P, even: P/2 points per surface, the leading edge counted on both.

    Raises
    ------
    AirfoilFileError
        A file that is not a usable shape; its ``reason`` is a key of :data:`SKIP_REASONS`.
    FileFormatError
        A missing file or a folder.

    """
    if not isinstance(path, (str, Path)):
        raise InputTypeError(f"path must be a file path (str or Path). Got {describe(path)} instead.")
    return _read(Path(path), _points(points))[0]


def _read(path: Path, n_points: int) -> tuple[np.ndarray, list[str]]:
    if not path.is_file():
        raise FileFormatError(f"airfoil file {path} does not exist.")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise _fail(path, "unreadable", f"the file cannot be read ({err})") from None
    if b"\0" in raw:
        raise _fail(path, "unreadable", "the file must be text. Got binary data instead")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # older UIUC files carry Latin-1 names; coordinates are ASCII
    points, notes = parse_airfoil(text, path)
    shape = normalise(points, path, n_points)
    check = validity(shape[None])
    if not check.valid[0]:
        reason = check.first_reason(0)
        raise _fail(path, reason, f"the normalised shape must pass vaekit.shapes.validity. Got {reason} instead")
    return shape.astype(np.float32), notes


def load_airfoils(folder: str | Path, *, points: int = POINTS, pattern: str = "*.dat") -> Airfoils:
    """Read every airfoil file in ``folder`` (sorted by name); files that are not usable shapes are skipped.

    A file whose resampled shape equals, bit for bit, that of a file earlier in name order is
    skipped as ``duplicate_shape`` (a copy under two names would otherwise sit on both sides of
    a train/test split).

    The count of skipped files by reason is logged (warning) and returned in ``skipped``; see
    :func:`read_airfoil` for the shape of each entry.

    Raises
    ------
    FileFormatError
        ``folder`` is not a folder, or no file in it could be read.

    """
    if not isinstance(folder, (str, Path)):
        raise InputTypeError(f"folder must be a folder path (str or Path). Got {describe(folder)} instead.")
    n_points, folder = _points(points), Path(folder)
    if not folder.is_dir():
        raise FileFormatError(f"airfoil folder {folder} does not exist or is not a folder.")
    files = sorted(p for p in folder.glob(pattern) if p.is_file())
    shapes, names, skipped, notes = [], [], Counter(), Counter()
    seen: dict[bytes, str] = {}
    for path in files:
        try:
            shape, tolerated = _read(path, n_points)
        except AirfoilFileError as err:
            skipped[err.reason] += 1
            logger.debug("%s", err)
            continue
        if shape.tobytes() in seen:  # a copy under another name would sit on both sides of a split
            skipped["duplicate_shape"] += 1
            logger.debug("%s: the same shape as %s (duplicate_shape).", path, seen[shape.tobytes()])
            continue
        seen[shape.tobytes()] = path.stem
        shapes.append(shape)
        names.append(path.stem)
        notes.update(tolerated)
    if skipped:
        logger.warning("read %d airfoil files in %s, kept %d, skipped %s", len(files), folder, len(shapes), dict(skipped))
    if notes:
        logger.info("airfoil files kept with something ignored: %s", dict(notes))
    if not shapes:
        raise FileFormatError(
            f"{folder} must hold airfoil files matching {pattern!r}. Got {len(files)} files, none usable, instead."
        )
    return Airfoils(np.stack(shapes), names, dict(sorted(skipped.items())), len(files), dict(sorted(notes.items())))


def bundled_airfoils() -> Airfoils:
    """The prepared UIUC shapes shipped with vaekit (``airfoils.npz``; made by ``scripts/make_airfoils.py``)."""
    with np.load(BUNDLED, allow_pickle=False) as npz:
        shapes = npz["shapes"]
        names = [str(n) for n in npz["names"]]
        skipped = {str(k): int(v) for k, v in zip(npz["skipped_reasons"], npz["skipped_counts"])}
        notes = {str(k): int(v) for k, v in zip(npz["notes_reasons"], npz["notes_counts"])}
        files = int(npz["files"])
    return Airfoils(shapes, names, skipped, files, notes)


def airfoils(split: str = "all") -> tuple[np.ndarray, np.ndarray]:
    """The bundled UIUC airfoils: shapes float32 (N, 64, 2) and their maximum thickness float32 (N,).

    Parameters
    ----------
    split : "all", "train" or "test". "train" and "test" are a fixed 80/20 split (a
        permutation with seed 0, whatever the run's seed) that never overlap.

    The thickness (chord units, :func:`vaekit.shapes.airfoil_properties`) is the dataset's
    label: ``--condition label:continuous`` conditions a model on it. The names are in
    :func:`bundled_airfoils`. Offline: nothing is downloaded.

    """
    if split not in ("all", "train", "test"):
        raise InputError(f"split must be one of ['all', 'train', 'test']. Got {split!r} instead.")
    from vaekit.shapes import airfoil_properties

    shapes = bundled_airfoils().shapes
    if split != "all":
        order = np.random.default_rng(SPLIT_SEED).permutation(len(shapes))
        n_test = int(round(TEST_FRACTION * len(shapes)))
        shapes = shapes[np.sort(order[:n_test] if split == "test" else order[n_test:])]
    return shapes, airfoil_properties(shapes).thickness.astype(np.float32)
