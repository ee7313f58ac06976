"""Figures of the lecture as pure functions: each returns a ``matplotlib.figure.Figure``.

Nothing here touches pyplot's global state or calls ``plt.show``; figures are built with the
object API (``Figure(...)``), so they render under any backend (Agg included) and can be saved
with ``fig.savefig(path)``. Matplotlib is imported only when a figure is made (``vaekit[plot]``).

Data with more than two dimensions is drawn as a PCA projection (or a chosen pair of
coordinates, ``dims=(i, j)``), and the axis labels say which. Images (``x_dim`` a perfect
square >= 16, or ``image_shape=(h, w)``) are drawn as image grids instead of scatter plots.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.distributions import Independent, Normal

from vaekit.conditions import Continuous, OneHot
from vaekit.distributions import posterior_mean
from vaekit.errors import InputError, InputTypeError, describe
from vaekit.formatting import format_value
from vaekit.metrics import ACTIVE_THRESHOLD, kl_splits, latent_mean_variance, probe_posterior
from vaekit.metrics import kl_per_dim as _kl_per_dim_values
from vaekit.models.base import not_applicable
from vaekit.validate import float_matrix, positive_float, positive_int

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DATA_COLOUR = "lightgray"
SAMPLE_COLOUR = "tab:red"
POINT_COLOURS = ("tab:red", "tab:purple", "tab:orange", "tab:green", "tab:brown", "tab:pink")


# ----------------------------------------------------------------------------- building blocks
def _figure(nrows: int, ncols: int, *, size: tuple[float, float] = (5.0, 4.6)) -> tuple[Figure, np.ndarray]:
    """A constrained-layout Figure and its (nrows, ncols) array of Axes."""
    try:
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("vaekit.plot needs matplotlib: pip install 'vaekit[plot]'") from err
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _numpy(value: Any, name: str, width: int | None = None) -> np.ndarray:
    return float_matrix(value, name, width=width).numpy()


def image_shape_for(x_dim: int | tuple[int, ...], image_shape: Sequence[int] | None = None) -> tuple[int, int] | None:
    """The (height, width) images of ``x_dim`` pixels are drawn with, or None for non-image data.

    ``image_shape`` wins when given (its product must be ``x_dim``). A data shape (a model's
    ``x_shape``) of (H, W) or (1, H, W) is an image of that shape, and any other shape of more
    than one axis is not one. Only a flat ``x_dim`` (an int, or a shape (D,)) is guessed: a
    perfect square ``x_dim >= 16`` is read as square images (64 -> 8x8).
    """
    if isinstance(x_dim, tuple):
        shape, x_dim = x_dim, math.prod(x_dim)
        if image_shape is None and len(shape) > 1:
            if len(shape) == 2 or (len(shape) == 3 and shape[0] == 1):
                return (shape[-2], shape[-1])
            return None
    if image_shape is not None:
        shape = tuple(int(s) for s in image_shape)
        if len(shape) != 2 or shape[0] * shape[1] != x_dim:
            raise InputError(f"image_shape must be (height, width) with height * width = {x_dim}. Got {image_shape!r} instead.")
        return shape
    side = math.isqrt(x_dim)
    return (side, side) if x_dim >= 16 and side * side == x_dim else None


def curve_layout_for(x_shape: int | tuple[int, ...]) -> tuple[int, bool] | None:
    """(P, channels_last) for curve data, or None: a data shape (P, 2) is P points of (x, y), P >= 3.

    A shape (2, P) (channels first, as ``Conv1d(channels_last=False)`` reads it) is a curve too,
    with the flat row holding all x then all y.
    """
    if not isinstance(x_shape, tuple) or len(x_shape) != 2:
        return None
    if x_shape[1] == 2 and x_shape[0] >= 3:
        return (x_shape[0], True)
    if x_shape[0] == 2 and x_shape[1] >= 3:
        return (x_shape[1], False)
    return None


@dataclass(frozen=True)
class View:
    """How one data point is drawn: an image, a curve, or no picture (a table).

    ``kind`` is ``"image"`` (``image`` = (h, w)), ``"curve"`` (a polyline of ``points`` (x, y)
    pairs, stored channels last or first) or ``"table"`` (scatter plots and projections).
    """

    kind: str
    image: tuple[int, int] | None = None
    points: int = 0
    channels_last: bool = True

    def curves(self, rows: np.ndarray) -> np.ndarray:
        """Flat rows (N, 2P) -> curves (N, P, 2)."""
        rows = np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)
        if self.channels_last:
            return rows.reshape(len(rows), self.points, 2)
        return rows.reshape(len(rows), 2, self.points).transpose(0, 2, 1)


def data_view(x_shape: int | tuple[int, ...], image_shape: Sequence[int] | None = None) -> View:
    """The :class:`View` of data of shape ``x_shape`` (a model's ``x_shape``, or a flat width).

    ``image_shape`` forces images; else curves (see :func:`curve_layout_for`), then images
    (see :func:`image_shape_for`), else a table.
    """
    curve = curve_layout_for(x_shape) if image_shape is None else None
    if curve is not None:
        return View("curve", points=curve[0], channels_last=curve[1])
    shape = image_shape_for(x_shape, image_shape)
    return View("table") if shape is None else View("image", image=shape)


def _view(model: Any, image_shape: Sequence[int] | None = None) -> View:
    return data_view(_data_shape(model), image_shape)


UNITS = ("data", "standardized")


def _in_units(model: Any, units: str) -> Any:
    """A function mapping flat rows (N, D) in data units to the figure's ``units``."""
    if units not in UNITS:
        raise InputError(f"units must be one of {', '.join(map(repr, UNITS))}. Got {units!r} instead.")
    if units == "data":
        return lambda rows: rows
    if not getattr(model, "standardize", False):
        raise InputError(
            "units='standardized' needs a model built with standardize=True (it has no data mean and scale). "
            "Got a model that trains in data units instead."
        )
    shift = model.x_shift.detach().cpu().double().numpy()
    scale = model.x_scale.detach().cpu().double().numpy()

    def to_network(rows: Any) -> np.ndarray:
        """The networks' units, in float64: log columns logged (model.log_transform), then standardised."""
        values = np.asarray(rows, dtype=np.float64)
        flat = torch.as_tensor(values.reshape(-1, shift.shape[0]), device=model.device)
        return (model.log_transform(flat).cpu().numpy().reshape(values.shape) - shift) / scale

    return to_network


def _units_note(units: str) -> str:
    """Title suffix of a figure drawn in standardised units."""
    return " (standardised units)" if units == "standardized" else ""


@dataclass
class Projection:
    """A linear view of points onto two axes: ``(points - centre) @ weight``, with axis labels."""

    weight: np.ndarray  # (D, 2)
    centre: np.ndarray  # (D,)
    labels: tuple[str, str]
    dims: tuple[int, int] | None = None  # set when the view is a pair of coordinates

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """(N, D) -> (N, 2)."""
        return (np.asarray(points, dtype=np.float64) - self.centre) @ self.weight

    @classmethod
    def fit(cls, reference: np.ndarray, symbol: str, dims: Sequence[int] | str | None = None) -> Projection:
        """Identity for 2-D data; a coordinate pair for ``dims=(i, j)``; else PCA of ``reference``.

        Parameters
        ----------
        reference : (N, D) points the PCA is fitted on.
        symbol : "x" or "z", used in the axis labels.
        dims : (i, j), "pca" or None (identity when D <= 2, PCA otherwise).

        """
        reference = np.asarray(reference, dtype=np.float64)
        d = reference.shape[1]
        if isinstance(dims, str) and dims != "pca":
            raise InputError(f"dims must be a pair of indices, 'pca' or None. Got {dims!r} instead.")
        if dims == "pca" or (dims is None and d > 2):
            centre = reference.mean(0)
            _, _, vt = np.linalg.svd(reference - centre, full_matrices=False)
            weight = vt[:2].T if vt.shape[0] >= 2 else np.pad(vt.T, ((0, 0), (0, 1)))
            return cls(weight, centre, (f"PC1 of ${symbol}$ (PCA)", f"PC2 of ${symbol}$ (PCA)"))
        if dims is None and d == 1:
            return cls(np.array([[1.0, 0.0]]), np.zeros(1), (f"${symbol}_0$", "(1-D: no second axis)"), (0, 0))
        pair = (0, 1) if dims is None else tuple(int(i) for i in dims)
        if len(pair) != 2 or not all(0 <= i < d for i in pair) or pair[0] == pair[1]:
            raise InputError(f"dims must be two different indices in 0..{d - 1} (or 'pca'). Got {dims!r} instead.")
        weight = np.zeros((d, 2))
        weight[pair[0], 0] = weight[pair[1], 1] = 1.0
        return cls(weight, np.zeros(d), (f"${symbol}_{{{pair[0]}}}$", f"${symbol}_{{{pair[1]}}}$"), pair)

    def label(self, ax: Axes) -> None:
        """Write the axis labels."""
        ax.set_xlabel(self.labels[0])
        ax.set_ylabel(self.labels[1])


def _style(ax: Axes, title: str, projection: Projection | None = None, *, equal: bool = True) -> None:
    ax.set_title(title)
    if projection is not None:
        projection.label(ax)
    if equal:
        ax.set_aspect("equal", adjustable="datalim")
    ax.grid(True, alpha=0.2)


def _scatter_labels(fig: Figure, ax: Axes, points: np.ndarray, labels: np.ndarray | None, *, size: float = 12, alpha=0.6):
    """Scatter coloured by integer labels (tab10) or by a continuous value (viridis), with a colour bar."""
    if labels is None:
        return ax.scatter(points[:, 0], points[:, 1], s=size, alpha=alpha, c="tab:blue")
    discrete = np.issubdtype(labels.dtype, np.integer) or bool(np.all(labels == np.round(labels)))
    cmap = "tab10" if discrete and labels.max() - labels.min() < 10 else "viridis"
    sc = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap=cmap, s=size, alpha=alpha)
    fig.colorbar(sc, ax=ax, label="label")
    return sc


def _labels(labels: Any, n: int) -> np.ndarray | None:
    if labels is None:
        return None
    array = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    array = array.reshape(-1) if array.ndim > 1 and array.shape[1:] == (1,) else array
    if array.ndim != 1 or array.shape[0] != n or array.dtype.kind not in "biuf":
        raise InputError(f"labels must be a numeric array of shape ({n},). Got {describe(labels)} instead.")
    return array


def _gaussian_posterior(model: Any) -> bool:
    qz = probe_posterior(model)
    return type(qz) is Independent and type(qz.base_dist) is Normal


def _data_shape(model: Any) -> tuple[int, ...]:
    return tuple(getattr(model, "x_shape", (model.x_dim,)))


@torch.no_grad()
def _latent_means(model: Any, x: Any, condition: Any = None) -> np.ndarray:
    return posterior_mean(model.encode(x, condition)).cpu().numpy()


@torch.no_grad()
def _decode_means(model: Any, z: np.ndarray, condition: Any = None) -> np.ndarray:
    return model.decode(z.astype(np.float32), condition).mean.cpu().numpy()


def _mosaic(images: np.ndarray, shape: tuple[int, int], ncols: int, pad: int = 1) -> np.ndarray:
    """(N, h*w) -> one (rows*(h+pad)-pad, ncols*(w+pad)-pad) array; gaps are NaN (drawn blank)."""
    h, w = shape
    n = images.shape[0]
    nrows = max(1, math.ceil(n / ncols))
    canvas = np.full((nrows * (h + pad) - pad, ncols * (w + pad) - pad), np.nan)
    for i, image in enumerate(images.reshape(n, h, w)):
        r, c = divmod(i, ncols)
        canvas[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = image
    return canvas


def _draw_images(ax: Axes, images: np.ndarray, shape: tuple[int, int], ncols: int, title: str, *, vmin=None, vmax=None):
    ax.imshow(_mosaic(images, shape, ncols), cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])


def _image_range(*arrays: np.ndarray) -> tuple[float, float]:
    low = min(float(np.nanmin(a)) for a in arrays)
    high = max(float(np.nanmax(a)) for a in arrays)
    return (0.0, 1.0) if low >= 0.0 and high <= 1.0 else (low, high)


CURVE_PITCH = 1.15  # distance between the centres of neighbouring curve cells (a curve spans at most 1)


def _limits(view: View, *arrays: np.ndarray) -> tuple[Any, Any]:
    """One scale for every row drawn together: (vmin, vmax) of images, (centre (2,), span) of curves."""
    if view.kind != "curve":
        return _image_range(*arrays)
    points = np.concatenate([view.curves(a).reshape(-1, 2) for a in arrays])
    low, high = points.min(0), points.max(0)
    span = float((high - low).max())
    return (low + high) / 2, span if span > 0 else 1.0


def _cell(view: View, index: int, ncols: int) -> np.ndarray:
    """Where cell ``index`` of a curve mosaic sits: its centre (x, y), row 0 at the top."""
    r, c = divmod(index, ncols)
    return np.array([c * CURVE_PITCH, -r * CURVE_PITCH])


def _row_centres(view: View, nrows: int) -> list[float]:
    """The y of each mosaic row's centre, in the axes' data coordinates."""
    if view.kind == "curve":
        return [-r * CURVE_PITCH for r in range(nrows)]
    return [(r + 0.5) * (view.image[0] + 1) for r in range(nrows)]


def _draw_rows(
    ax: Axes,
    rows: np.ndarray,
    view: View,
    ncols: int,
    title: str,
    limits: tuple[Any, Any],
    *,
    overlay: np.ndarray | None = None,
    labels: tuple[str, str] = ("original", "reconstruction"),
) -> None:
    """Rows (N, D) as a mosaic of ``ncols`` per row: images, or curves drawn as polylines.

    Curves share one scale (``limits``) and keep their aspect ratio; ``overlay`` (N, D) draws a
    second curve in each cell (dashed, red), e.g. a reconstruction over its original.
    """
    if view.kind == "image":
        _draw_images(ax, rows, view.image, ncols, title, vmin=limits[0], vmax=limits[1])
        return
    centre, span = limits
    curves = view.curves(rows)
    extra = None if overlay is None else view.curves(overlay)
    for i, curve in enumerate(curves):
        offset = _cell(view, i, ncols)
        xy = (curve - centre) / span + offset
        ax.plot(xy[:, 0], xy[:, 1], color="black", linewidth=1, label=labels[0] if i == 0 and extra is not None else None)
        if extra is not None:
            xy = (extra[i] - centre) / span + offset
            ax.plot(xy[:, 0], xy[:, 1], "--", color=SAMPLE_COLOUR, linewidth=1, label=labels[1] if i == 0 else None)
    nrows = max(1, math.ceil(len(curves) / ncols))
    half = 0.5 * CURVE_PITCH
    ax.set_xlim(-half, (ncols - 1) * CURVE_PITCH + half)
    ax.set_ylim(-(nrows - 1) * CURVE_PITCH - half, half)
    ax.set_aspect("equal")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    if extra is not None:
        ax.legend(loc="lower right", fontsize="small")


# ----------------------------------------------------------------------------- figures
def image_grid(images: Any, *, image_shape: Sequence[int] | None = None, ncols: int | None = None, title: str = "") -> Figure:
    """Images (N, h*w) as one grid, ``ncols`` per row (default: about square).

    Pixel values in [0, 1] are drawn on a fixed [0, 1] grey scale; other ranges are stretched.
    """
    array = _numpy(images, "images")
    shape = image_shape_for(array.shape[1], image_shape)
    if shape is None:
        raise InputError(
            f"images must have a perfect-square number of pixels >= 16, or image_shape must be given. "
            f"Got {array.shape[1]} pixels per image instead."
        )
    ncols = positive_int(ncols, "ncols") if ncols is not None else max(1, math.ceil(math.sqrt(array.shape[0])))
    nrows = math.ceil(array.shape[0] / ncols)
    fig, axes = _figure(1, 1, size=(max(3.0, 0.5 * ncols * shape[1] / 8 * 1.2), max(3.0, 0.5 * nrows * shape[0] / 8 * 1.2)))
    vmin, vmax = _image_range(array)
    _draw_images(axes[0, 0], array, shape, ncols, title, vmin=vmin, vmax=vmax)
    return fig


def history(history: Any, *, log_scale: bool = True) -> Figure:
    """Training curves: total loss; reconstruction vs KL; diversity (when recorded).

    Parameters
    ----------
    history : vaekit.History or dict of column name -> per-epoch list
        Needs ``loss``; uses ``reconstruction``, ``kl``, ``diversity`` and ``val_*`` columns when present.
    log_scale : bool, default True
        Logarithmic y axes for the loss panels when every value is positive.

    """
    columns = history.columns if hasattr(history, "columns") else history
    if not isinstance(columns, Mapping) or "loss" not in columns:
        raise InputError(
            f"history must be a vaekit History (or dict of columns) with a 'loss' column. Got {describe(history)} instead."
        )
    has_div = "diversity" in columns and np.isfinite(np.asarray(columns["diversity"], dtype=float)).any()
    fig, axes = _figure(1, 3 if has_div else 2, size=(5.0, 3.8))
    epochs = np.arange(1, len(columns["loss"]) + 1)

    def curve(ax: Axes, key: str, label: str, colour: str) -> list[float]:
        plotted: list[float] = []
        for prefix, style in (("", "-"), ("val_", "--")):
            if prefix + key in columns:
                values = np.asarray(columns[prefix + key], dtype=float)
                ax.plot(
                    epochs[: len(values)],
                    values,
                    style,
                    color=colour,
                    linewidth=2,
                    label=f"{label} ({'val' if prefix else 'train'})",
                )
                plotted += values[np.isfinite(values)].tolist()
        return plotted

    ax = axes[0, 0]
    values = curve(ax, "loss", "loss", "tab:blue")
    ax.set_ylabel("Loss (nats; the negative ELBO when beta = 1)")
    ax.set_title("Total loss")
    _log(ax, values, log_scale)
    ax = axes[0, 1]
    values = curve(ax, "reconstruction", "reconstruction", "tab:orange")
    others = [(key, label, colour) for key, label, colour in _PENALTIES if key in columns]  # the model's own terms
    for key, label, colour in others:
        values += curve(ax, key, label, colour)
    ax.set_ylabel("Loss term")
    ax.set_title("Reconstruction vs " + " and ".join(label for _, label, _ in others) if others else "Reconstruction")
    _log(ax, values, log_scale)
    if has_div:
        ax = axes[0, 2]
        div = np.asarray(columns["diversity"], dtype=float)
        finite = np.isfinite(div)
        ax.plot(epochs[: len(div)][finite], div[finite], color="teal", linewidth=2, marker="." if finite.sum() < 30 else None)
        ax.set_ylabel("Sample variance (diversity)")
        ax.set_title("Sample diversity")
    from matplotlib.ticker import MaxNLocator

    for ax in axes[0]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("Epoch")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    return fig


# The loss terms drawn against the reconstruction, where History has them.
_PENALTIES = (("kl", "KL", "tab:green"), ("codebook", "codebook", "tab:purple"), ("commitment", "commitment", "tab:brown"))

# run_figures takes a ``history`` argument; this alias keeps the figure function reachable there.
history_figure = history


def _log(ax: Axes, values: list[float], log_scale: bool) -> None:
    if log_scale and values and min(values) > 0:
        ax.set_yscale("log")


def samples(
    model: Any,
    x: Any,
    condition: Any = None,
    *,
    labels: Any = None,
    n: int = 2000,
    seed: int = 0,
    image_shape: Sequence[int] | None = None,
    dims: Sequence[int] | str | None = None,
    units: str = "data",
) -> Figure:
    """Data next to model samples (decoder means of z ~ p(z)).

    Scatter data: left the data (coloured by ``labels``), right the samples over the data in grey.
    Images: left a grid of data images, right a grid of samples; curves ((P, 2) data) likewise,
    as polylines on one scale. A conditional model is sampled under conditions drawn from
    ``condition`` (the data's own). ``units="standardized"`` draws a standardising model's data
    and samples in its standardised units ((x - mean) / std of the training data).
    """
    to_units = _in_units(model, units)
    data = to_units(model.prepare_x(x).cpu().numpy())
    n = positive_int(n, "n")
    c_rows = _draw_conditions(model, condition, data.shape[0], n, seed)
    generated = to_units(model.sample(n, condition=c_rows, seed=seed).reshape(n, -1))  # (n, D)
    view = _view(model, image_shape)
    fig, axes = _figure(1, 2)
    if view.kind != "table":
        count = min(64 if view.kind == "image" else 36, n, data.shape[0])
        ncols = 8 if view.kind == "image" else 6
        limits = _limits(view, data[:count], generated[:count])
        _draw_rows(axes[0, 0], data[:count], view, ncols, "Data" + _units_note(units), limits)
        _draw_rows(axes[0, 1], generated[:count], view, ncols, "Generated samples", limits)
        return fig
    proj = Projection.fit(data, "x", dims)
    _scatter_labels(fig, axes[0, 0], proj(data), _labels(labels, data.shape[0]))
    _style(axes[0, 0], "Data" + _units_note(units), proj)
    pd, pg = proj(data), proj(generated)
    axes[0, 1].scatter(pd[:, 0], pd[:, 1], c=DATA_COLOUR, s=8, alpha=0.3, label="Real")
    axes[0, 1].scatter(pg[:, 0], pg[:, 1], c=SAMPLE_COLOUR, s=12, alpha=0.5, label="Generated")
    _style(axes[0, 1], "Generated samples", proj)
    axes[0, 1].legend()
    return fig


PICTURE_MAX = 100  # rows drawn by pictures(); more are counted in the title, not drawn


def pictures(
    rows: Any,
    *,
    x_shape: int | Sequence[int],
    image_shape: Sequence[int] | None = None,
    ncols: int | None = None,
    title: str = "",
) -> Figure:
    """Data rows (N, D) or (N, *x_shape) as a picture: a grid of images, or of curves as polylines.

    The picture of ``vaekit sample -o samples.png``: ``pictures(model.sample(n), x_shape=model.x_shape)``.
    Curves (``x_shape`` (P, 2)) share one scale and keep their aspect ratio. At most
    :data:`PICTURE_MAX` rows are drawn; the title then says how many of how many. Tables (data
    without a natural picture) are refused: write them as numbers (CSV, .npy) or plot them with
    :func:`samples`.
    """
    shape = (int(x_shape),) if isinstance(x_shape, (int, np.integer)) else tuple(int(s) for s in x_shape)
    array = _numpy(
        np.asarray(rows).reshape(len(rows), -1) if not isinstance(rows, torch.Tensor) else rows.reshape(len(rows), -1),
        "rows",
        math.prod(shape),
    )
    view = data_view(shape, image_shape)
    if view.kind == "table":
        raise InputError(
            "x_shape must be images ((H, W), (1, H, W), or a perfect-square width >= 16) or curves ((P, 2)) to be drawn as "
            f"a picture. Got x_shape {shape} (a table) instead: write such data as numbers (CSV or .npy) or use plots.samples."
        )
    count = min(len(array), PICTURE_MAX)
    ncols = positive_int(ncols, "ncols") if ncols is not None else max(1, math.ceil(math.sqrt(count)))
    nrows = math.ceil(count / ncols)
    if count < len(array):
        title = f"{title} (the first {count} of {len(array)})".strip()
    cell = 0.6 if view.kind == "image" else 1.0
    fig, axes = _figure(1, 1, size=(max(3.0, cell * ncols), max(3.0, cell * nrows + 0.4)))
    _draw_rows(axes[0, 0], array[:count], view, ncols, title, _limits(view, array[:count]))
    return fig


def reconstruction(
    model: Any,
    x: Any,
    condition: Any = None,
    *,
    n: int = 8,
    columns: Sequence[str] | None = None,
    image_shape: Sequence[int] | None = None,
    units: str = "data",
) -> Figure:
    """Originals next to their reconstructions (decoder means at the posterior mean, :meth:`reconstruct`).

    Images: ``n`` originals (left) and their reconstructions (right) at the same places and on
    one grey scale. Curves: ``n`` cells, each the original (black) with its reconstruction
    over it (red, dashed). Tables: reconstructed against true value for the first four columns
    over every point (at most 2000, evenly spaced), with the line y = x; the title of each
    panel gives the column's RMSE. The ``n`` points are evenly spaced rows of ``x``.
    ``units`` as for :func:`samples`.
    """
    to_units = _in_units(model, units)
    n = positive_int(n, "n")
    data = model.prepare_x(x).cpu().numpy()
    view = _view(model, image_shape)
    count = min(n, len(data)) if view.kind != "table" else min(len(data), RANKING_ROWS)
    rows = np.linspace(0, len(data) - 1, count).astype(int) if count < len(data) else np.arange(len(data))
    c = None if condition is None else model.prepare_condition(condition, len(data))[torch.from_numpy(rows)]
    with torch.no_grad():
        recon = model.decode_batch(posterior_mean(model.encode_batch(model.prepare_x(data[rows]), c)), c).mean
    original, recon = to_units(data[rows]), to_units(recon.cpu().numpy().astype(np.float64))
    note = _units_note(units)
    if view.kind == "image":
        fig, axes = _figure(1, 2, size=(3.6, 2.2 + 0.4 * math.ceil(count / 4)))
        limits = _limits(view, original, recon)
        ncols = min(count, 4)
        _draw_rows(axes[0, 0], original, view, ncols, "Originals" + note, limits)
        _draw_rows(axes[0, 1], recon, view, ncols, "Reconstructions", limits)
        return fig
    if view.kind == "curve":
        ncols = min(count, 4)
        fig, axes = _figure(1, 1, size=(1.8 * ncols, 1.8 * math.ceil(count / ncols) + 0.6))
        title = "Originals (black) and reconstructions (red, dashed)" + note
        _draw_rows(axes[0, 0], original, view, ncols, title, _limits(view, original, recon), overlay=recon)
        return fig
    names = list(columns) if columns is not None else [f"x{i}" for i in range(model.x_dim)]
    shown = min(4, model.x_dim)
    fig, axes = _figure(1, shown, size=(3.4, 3.4))
    for j, ax in enumerate(axes[0]):
        truth, got = original[:, j], recon[:, j]
        ax.scatter(truth, got, s=6, alpha=0.4, c="tab:blue")
        low, high = float(min(truth.min(), got.min())), float(max(truth.max(), got.max()))
        ax.plot([low, high], [low, high], "--", color="black", linewidth=1, label="y = x")
        rmse = float(np.sqrt(np.mean((got - truth) ** 2)))
        ax.set_title(f"{names[j]}: RMSE {format_value(rmse, 3)}")
        ax.set_xlabel(f"data{note}")
        ax.set_ylabel("reconstruction")
        ax.grid(True, alpha=0.2)
        ax.legend(loc="upper left", fontsize="small")
    if shown < model.x_dim:
        fig.suptitle(f"Reconstruction of the first {shown} of {model.x_dim} columns")
    return fig


def _draw_conditions(model: Any, condition: Any, n_data: int, n: int, seed: int) -> np.ndarray | None:
    """Conditions (labels or values) for ``n`` samples, drawn from the data's rows."""
    if model.condition is None:
        model.prepare_condition(condition, n_data)  # raises if one was given
        return None
    c = model.prepare_condition(condition, n_data)
    pick = torch.from_numpy(np.random.default_rng(seed).integers(0, c.shape[0], size=n)).to(c.device)
    rows = c[pick]
    return rows.argmax(1).cpu().numpy() if isinstance(model.condition, OneHot) else rows.cpu().numpy()


def latent(
    model: Any,
    x: Any,
    labels: Any = None,
    condition: Any = None,
    *,
    dims: Sequence[int] | str | None = None,
    units: str = "data",
) -> Figure:
    """Data space and the encoded latent space (posterior means), both coloured by ``labels``.

    Latents with more than two dimensions are shown by PCA (default) or the pair ``dims``.
    ``units="standardized"``: the data panel in a standardising model's standardised units.
    """
    data = _in_units(model, units)(model.prepare_x(x).cpu().numpy())
    y = _labels(labels, data.shape[0])
    z = _latent_means(model, x, condition)
    fig, axes = _figure(1, 2)
    px = Projection.fit(data, "x")
    pz = Projection.fit(z, "z", dims)
    _scatter_labels(fig, axes[0, 0], px(data), y)
    _style(axes[0, 0], "Data space" + _units_note(units), px)
    _scatter_labels(fig, axes[0, 1], pz(z), y)
    _style(axes[0, 1], "Latent space (posterior means)", pz)
    return fig


def posterior(
    model: Any,
    x: Any,
    indices: Sequence[int] = (150, 1050),
    condition: Any = None,
    *,
    labels: Any = None,
    dims: Sequence[int] | str | None = None,
    grid: int = 200,
    image_shape: Sequence[int] | None = None,
    units: str = "data",
) -> Figure:
    """q(z|x) for chosen points: the points in data space (left), their posterior densities (right).

    Each posterior is drawn as density contours on the right-hand latent axes over the encoded
    data, every one in the same orientation (the first latent axis across, the second up). Higher-dimensional latents are
    projected (PCA or ``dims``); the projected Gaussian's density is exact. For images (curves)
    the left panel shows the chosen images (curves). ``units`` as for :func:`samples`.
    """
    to_units = _in_units(model, units)
    data = model.prepare_x(x).cpu().numpy()
    n = data.shape[0]
    if isinstance(indices, (int, np.integer)) or len(indices) == 0:
        raise InputError(f"indices must be a non-empty sequence of row indices. Got {indices!r} instead.")
    idx = [int(i) for i in indices]
    bad = [i for i in idx if not 0 <= i < n]
    if bad:
        raise InputError(f"indices must be row numbers in 0..{n - 1} (x has {n} rows). Got {bad} instead.")
    y = _labels(labels, n)
    with torch.no_grad():
        qz = model.encode(x, condition)
        if type(qz) is not Independent or type(qz.base_dist) is not Normal:
            raise InputError(
                "model must have a diagonal Gaussian posterior for the posterior figure (its density is drawn in "
                f"closed form). Got a {type(qz).__name__} posterior instead."
            )
        means, stds = qz.mean.cpu().numpy().astype(np.float64), qz.stddev.cpu().numpy().astype(np.float64)
    pz = Projection.fit(means, "z", dims)
    data = to_units(data)
    px = Projection.fit(data, "x")
    view = _view(model, image_shape)
    shape = None if view.kind == "table" else view
    fig, axes = _figure(1, 2)
    left, right = axes[0]
    pdx = px(data)
    if shape is None:
        left.scatter(pdx[:, 0], pdx[:, 1], c=DATA_COLOUR, s=10, alpha=0.5, label="Dataset")
    else:
        what = "images" if view.kind == "image" else "curves"
        title = f"Selected {what}: " + ", ".join(f"idx {i}" for i in idx)
        _draw_rows(left, data[idx], view, len(idx), title, _limits(view, data[idx]))
    z_all = pz(means)
    colour_by = {"c": y, "cmap": "tab10"} if y is not None else {"c": DATA_COLOUR}
    right.scatter(z_all[:, 0], z_all[:, 1], s=5, alpha=0.2, **colour_by)
    centres, covs = [], []
    for i in idx:
        centres.append(pz(means[i : i + 1])[0])
        covs.append(pz.weight.T @ np.diag(stds[i] ** 2) @ pz.weight)
    for k, (i, centre, cov) in enumerate(zip(idx, centres, covs)):
        # Each density gets its own grid, centre +- 4 std in both axes (first axis across, second up), so
        # sharp posteriors are resolved as well as broad ones.
        spread = 4 * np.sqrt(np.diag(cov))
        g1, g2 = np.meshgrid(
            np.linspace(centre[0] - spread[0], centre[0] + spread[0], grid),
            np.linspace(centre[1] - spread[1], centre[1] + spread[1], grid),
            indexing="xy",
        )
        pts = np.stack([g1.ravel(), g2.ravel()], 1)
        colour = POINT_COLOURS[k % len(POINT_COLOURS)]
        if shape is None:
            left.scatter(pdx[i, 0], pdx[i, 1], color=colour, s=100, ec="black", label=f"Point {k + 1} (idx {i})", zorder=3)
        density = _gaussian_density(pts, centre, cov).reshape(grid, grid)
        right.contour(g1, g2, density, colors=colour, linewidths=2)
        right.plot([], [], color=colour, label=f"q(z|x) of point {k + 1}")
    if shape is None:
        _style(left, "Selected points in data space" + _units_note(units), px)
        left.legend()
    _style(right, "Learned $q(z|x)$ for selected points", pz)
    right.legend()
    return fig


def _gaussian_density(points: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """N(points; mean, cov) for 2-D points (G, 2)."""
    cov = cov + 1e-12 * np.eye(2)
    diff = points - mean
    solved = np.linalg.solve(cov, diff.T).T
    return np.exp(-0.5 * (diff * solved).sum(1)) / (2 * np.pi * np.sqrt(np.linalg.det(cov)))


RANKING_ROWS = 2000  # data rows the latent ranking is computed on (evenly spaced)


@dataclass(frozen=True)
class LatentRanking:
    """How much each latent dimension is used, and the two shown in 2-D latent figures.

    ``measure`` is ``"KL"`` (mean KL(q(z_d|x) || p(z_d)) in nats, where the model's KL splits
    over dimensions) or ``"var E[z|x]"`` (the variance over the data of the posterior means, for
    models without a per-dimension KL: VQ-VAE, hierarchical, flow posteriors). ``dims`` are the
    two highest-scoring dimensions in increasing index order (ties: the lower index); dims
    are numbered from 0, as everywhere in vaekit.
    """

    dims: tuple[int, ...]
    scores: np.ndarray  # (Z,)
    measure: str

    def label(self, d: int) -> str:
        """``"z3 (KL 1.23)"``: dimension ``d`` and its score."""
        return f"z{d} ({self.measure} {format_value(float(self.scores[d]), 3)})"


def rank_latents(model: Any, x: Any, condition: Any = None) -> LatentRanking:
    """The most informative latent dimensions of ``model`` on data ``x``: see :class:`LatentRanking`.

    For a hierarchical model only the dimensions its decoder reads (the bottom layer, when it
    has two or more) compete, so that a grid over them changes the decoded output. At most
    :data:`RANKING_ROWS` evenly spaced rows of ``x`` are used.
    """
    xs = model.prepare_x(x).cpu().numpy()
    c = condition
    if len(xs) > RANKING_ROWS:
        rows = np.linspace(0, len(xs) - 1, RANKING_ROWS).astype(int)
        xs = xs[rows]
        if c is not None and np.ndim(c) > 0 and len(c) == len(x):  # one condition per row (else one for all)
            c = c[rows] if isinstance(c, (np.ndarray, torch.Tensor)) else np.asarray(c)[rows]
    if kl_splits(model):
        scores, measure = np.asarray(_kl_per_dim_values(model, xs, c), dtype=np.float64), "KL"
    else:
        scores, measure = np.asarray(latent_mean_variance(model, xs, c), dtype=np.float64), "var E[z|x]"
    layers = getattr(model, "latent_layers", None)
    read = layers[0] if layers is not None and layers[0] >= 2 else model.z_dim
    order = np.argsort(-scores[:read], kind="stable")
    return LatentRanking(tuple(sorted(int(d) for d in order[:2])), scores, measure)


def latent_grid(
    model: Any,
    x: Any = None,
    condition: Any = None,
    *,
    n: int = 20,
    bound: float = 2.0,
    dims: Sequence[int] | None = None,
    image_shape: Sequence[int] | None = None,
    units: str = "data",
) -> Figure:
    """The decoded latent manifold: an n x n grid on [-bound, bound]² in latent dims ``dims``.

    ``dims`` default: the two most informative dimensions on ``x`` (:func:`rank_latents`: the
    highest mean KL, or posterior-mean variance where the KL does not split), else (0, 1)
    without data; the title names them with their scores. Scatter data: left the grid over
    the encoded data, right the decoded grid over the data, coloured by the first dim. Images
    (curves): one mosaic of the n x n decoded images (polylines), first dim across, second up.
    Other latent dimensions are held at 0 (the prior mean). A conditional model needs one
    ``condition`` (a label or a value) for the whole grid. ``units`` as for :func:`samples`.
    """
    n = positive_int(n, "n", minimum=2)
    bound = positive_float(bound, "bound")
    to_units = _in_units(model, units)
    if model.z_dim < 2:
        raise InputError(f"model.z_dim must be >= 2 for a latent grid. Got z_dim={model.z_dim} instead.")
    ranking = None
    if dims is None and x is not None:
        ranking = rank_latents(model, x, _single_condition(model, condition, len(model.prepare_x(x))))
        dims = ranking.dims
    pair = tuple(int(d) for d in ((0, 1) if dims is None else dims))
    if len(pair) != 2 or pair[0] == pair[1] or not all(0 <= d < model.z_dim for d in pair):
        raise InputError(f"dims must be two different latent indices in 0..{model.z_dim - 1}. Got {dims!r} instead.")
    axis = np.linspace(-bound, bound, n)
    g1, g2 = np.meshgrid(axis, axis, indexing="xy")
    z = np.zeros((n * n, model.z_dim))
    z[:, pair[0]] = g1.ravel()
    z[:, pair[1]] = g2.ravel()
    c = _single_condition(model, condition, n * n)
    decoded = to_units(_decode_means(model, z, c))
    rest = " (other dims 0)" if model.z_dim > 2 else ""
    zlabels = (f"$z_{{{pair[0]}}}$" + rest, f"$z_{{{pair[1]}}}$" + rest)
    if ranking is not None:
        chosen = f"most informative: {ranking.label(pair[0])}, {ranking.label(pair[1])}"
    else:
        chosen = f"z{pair[0]} and z{pair[1]}"
    view = _view(model, image_shape)
    if view.kind != "table":
        fig, axes = _figure(1, 1, size=(7.0, 7.0))
        # Row 0 of the mosaic is the top of the picture: put the largest second coordinate there.
        order = np.arange(n * n).reshape(n, n)[::-1].ravel()
        title = f"Decoded latent grid{_given(model, condition)}\n{chosen}"
        _draw_rows(axes[0, 0], decoded[order], view, n, title, _limits(view, decoded))
        axes[0, 0].set_xlabel(f"{zlabels[0]}: {-bound:g} to {bound:g}")
        axes[0, 0].set_ylabel(f"{zlabels[1]}: {-bound:g} to {bound:g}")
        return fig
    fig, axes = _figure(1, 2)
    left, right = axes[0]
    data = None if x is None else model.prepare_x(x).cpu().numpy()
    if data is not None:
        # Background: the data encoded under the grid's condition.
        zx = _latent_means(model, data, _single_condition(model, condition, len(data)))
        left.scatter(zx[:, pair[0]], zx[:, pair[1]], c=DATA_COLOUR, s=3, alpha=0.3)
        data = to_units(data)
    left.scatter(g1.ravel(), g2.ravel(), c="tab:blue", s=20, alpha=0.5)
    left.set_xlabel(zlabels[0])
    left.set_ylabel(zlabels[1])
    _style(left, f"Grid in latent space{_given(model, condition)}\n{chosen}")
    proj = Projection.fit(decoded if data is None else data, "x")
    if data is not None:
        pdx = proj(data)
        right.scatter(pdx[:, 0], pdx[:, 1], c=DATA_COLOUR, s=8, alpha=0.2, label="Real data")
    pg = proj(decoded)
    sc = right.scatter(
        pg[:, 0],
        pg[:, 1],
        c=g1.ravel(),
        cmap="viridis",
        s=30,
        alpha=0.7,
        edgecolors="black",
        linewidths=0.5,
        label="Decoded grid",
    )
    fig.colorbar(sc, ax=right, label=f"{zlabels[0]} coordinate")
    _style(right, "Decoded grid in data space" + _given(model, condition) + _units_note(units), proj)
    right.legend()
    return fig


def _given(model: Any, condition: Any) -> str:
    """Title suffix naming the fixed condition of a conditional figure."""
    if model.condition is None or condition is None:
        return ""
    name = "label" if isinstance(model.condition, OneHot) else "condition"
    return f" ({name} = {_fmt(condition)})"


def _single_condition(model: Any, condition: Any, n: int) -> Any:
    """One label/value broadcast to ``n`` rows; None for an unconditional model."""
    if model.condition is None:
        if condition is not None:
            model.prepare_condition(condition, n)  # raises the standard message
        return None
    if condition is None:
        raise InputError(f"condition is required: this model was built with condition={model.condition}. Got None instead.")
    array = condition.detach().cpu().numpy() if isinstance(condition, torch.Tensor) else np.asarray(condition)
    width = model.condition.dim if isinstance(model.condition, Continuous) else 1
    if array.size != width:
        raise InputError(f"condition must be a single label or value (size {width}) here. Got {describe(condition)} instead.")
    return np.broadcast_to(array.reshape(1, width), (n, width)).copy() if width > 1 else np.full(n, array.reshape(-1)[0])


def interpolation(
    model: Any,
    x_a: Any,
    x_b: Any,
    condition: Any = None,
    *,
    steps: int = 10,
    x: Any = None,
    image_shape: Sequence[int] | None = None,
    dims: Sequence[int] | str | None = None,
    units: str = "data",
) -> Figure:
    """Straight line between the posterior means of x_a and x_b, in latent and in data space.

    Scatter data: left the path in latent space (over the encoded ``x`` when given), right the
    decoded path over the data, both coloured by the position t in [0, 1]. Images (curves): one
    row x_a, decoded path, x_b. A conditional model takes one ``condition`` for the whole path.
    ``units`` as for :func:`samples`.
    """
    steps = positive_int(steps, "steps", minimum=2)
    to_units = _in_units(model, units)
    ends = np.concatenate([_one_point(x_a, "x_a", model.x_dim), _one_point(x_b, "x_b", model.x_dim)])  # (2, D)
    c2 = _single_condition(model, condition, 2)
    z_ends = _latent_means(model, ends, c2)
    t = np.linspace(0.0, 1.0, steps)
    path = (1 - t)[:, None] * z_ends[0] + t[:, None] * z_ends[1]  # (steps, Z)
    decoded = to_units(_decode_means(model, path, _single_condition(model, condition, steps)))
    view = _view(model, image_shape)
    if view.kind != "table":
        fig, axes = _figure(1, 1, size=(1.0 * (steps + 2), 1.6))
        row = np.concatenate([to_units(ends[:1]), decoded, to_units(ends[1:])])
        title = "Interpolation: x_a | decoded path | x_b" + _given(model, condition)
        _draw_rows(axes[0, 0], row, view, steps + 2, title, _limits(view, row))
        return fig
    fig, axes = _figure(1, 2)
    left, right = axes[0]
    data = None if x is None else model.prepare_x(x).cpu().numpy()
    z_data = None if data is None else _latent_means(model, data, _single_condition(model, condition, len(data)))
    pz = Projection.fit(z_data if z_data is not None and model.z_dim > 2 else path, "z", dims)
    if z_data is not None:
        pzd = pz(z_data)
        left.scatter(pzd[:, 0], pzd[:, 1], c=DATA_COLOUR, s=4, alpha=0.3)
    pp = pz(path)
    left.plot(pp[:, 0], pp[:, 1], color="black", linewidth=1)
    sc = left.scatter(pp[:, 0], pp[:, 1], c=t, cmap="plasma", s=40, zorder=3)
    _style(left, "Path in latent space" + _given(model, condition), pz)
    data = None if data is None else to_units(data)
    px = Projection.fit(data if data is not None else decoded, "x")
    if data is not None:
        pdx = px(data)
        right.scatter(pdx[:, 0], pdx[:, 1], c=DATA_COLOUR, s=6, alpha=0.3)
    pdec, pend = px(decoded), px(to_units(ends))
    right.plot(pdec[:, 0], pdec[:, 1], color="black", linewidth=1)
    right.scatter(pdec[:, 0], pdec[:, 1], c=t, cmap="plasma", s=40, zorder=3)
    right.scatter(pend[:, 0], pend[:, 1], marker="*", s=200, c=["tab:blue", "tab:green"], ec="black", zorder=4, label="x_a, x_b")
    _style(right, "Decoded path in data space" + _given(model, condition) + _units_note(units), px)
    right.legend()
    fig.colorbar(sc, ax=right, label="t")
    return fig


def _one_point(value: Any, name: str, width: int) -> np.ndarray:
    """One data point given as (D,) or (1, D): float (1, D)."""
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if array.ndim == 1:
        array = array.reshape(1, -1)
    point = _numpy(array, name, width)
    if point.shape[0] != 1:
        raise InputError(f"{name} must be one point of {width} values. Got {point.shape[0]} rows instead.")
    return point


def conditional_samples(
    model: Any,
    values: Sequence[Any],
    *,
    n: int = 800,
    seed: int = 0,
    x: Any = None,
    value_name: str | None = None,
    image_shape: Sequence[int] | None = None,
    dims: Sequence[int] | str | None = None,
    units: str = "data",
) -> Figure:
    """Samples of a conditional model for each requested label or value, one panel per value.

    Scatter data: each panel shows ``n`` samples over the data in grey (a circle marks the
    requested radius when ``value_name == "radius"``). Images (curves): one row of samples per
    value. ``units`` as for :func:`samples`.
    """
    to_units = _in_units(model, units)
    if model.condition is None:
        raise InputError(
            "model must be conditional (built with condition=OneHot(..) or Continuous(..)). Got an unconditional model instead."
        )
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)) or len(values) == 0:
        raise InputError(f"values must be a non-empty sequence of labels or values. Got {describe(values)} instead.")
    n = positive_int(n, "n")
    name = value_name or ("label" if isinstance(model.condition, OneHot) else "condition")
    drawn = [
        to_units(model.sample(n, condition=_single_condition(model, v, n), seed=seed + i).reshape(n, -1))
        for i, v in enumerate(values)
    ]
    view = _view(model, image_shape)
    if view.kind != "table":
        per_row = min(n, 10)
        fig, axes = _figure(1, 1, size=(0.8 * per_row, 0.8 * len(values) + 0.6))
        rows = np.concatenate([d[:per_row] for d in drawn])
        _draw_rows(axes[0, 0], rows, view, per_row, f"Samples per {name} (one row each)", _limits(view, rows))
        axes[0, 0].set_yticks(_row_centres(view, len(values)), [f"{name}={_fmt(v)}" for v in values])
        return fig
    ncols = min(4, len(values))
    nrows = math.ceil(len(values) / ncols)
    fig, axes = _figure(nrows, ncols, size=(4.0, 4.0))
    data = None if x is None else to_units(model.prepare_x(x).cpu().numpy())
    proj = Projection.fit(data if data is not None else np.concatenate(drawn), "x", dims)
    everything = np.concatenate([proj(d) for d in drawn] + ([proj(data)] if data is not None else []))
    low, high = everything.min(0), everything.max(0)
    pad = 0.05 * (high - low + 1e-9)
    for i, ax in enumerate(axes.ravel()):
        if i >= len(values):
            ax.set_visible(False)
            continue
        if data is not None:
            pdx = proj(data)
            ax.scatter(pdx[:, 0], pdx[:, 1], c=DATA_COLOUR, s=6, alpha=0.3)
        pd = proj(drawn[i])
        ax.scatter(pd[:, 0], pd[:, 1], color=f"C{i % 10}", s=8, alpha=0.5)
        if value_name == "radius" and model.x_dim == 2 and np.size(values[i]) == 1:
            angle = np.linspace(0, 2 * np.pi, 200)
            r = float(np.reshape(values[i], -1)[0])
            ax.plot(r * np.cos(angle), r * np.sin(angle), "k--", linewidth=1)
        ax.set_xlim(low[0] - pad[0], high[0] + pad[0])
        ax.set_ylim(low[1] - pad[1], high[1] + pad[1])
        _style(ax, f"{name} = {_fmt(values[i])}", proj, equal=False)
        ax.set_aspect("equal")
    return fig


def _fmt(value: Any) -> str:
    """A condition (label, value or vector) as "v1, v2, ...": every element to 3 significant digits."""
    # As floats, so that labels and flags get the .3g of their value too (1234 -> "1.23e+03").
    return ", ".join(format_value(v, 3) for v in np.asarray(value, dtype=np.float64).reshape(-1).tolist())


def comparison(
    results: Sequence[tuple[str, Any]] | Mapping[str, Any],
    x: Any = None,
    condition: Any = None,
    *,
    n: int = 1000,
    seed: int = 0,
    reconstructions: bool = True,
    image_shape: Sequence[int] | None = None,
) -> Figure:
    """Several models side by side (e.g. reconstruction variance 0.01 .. 5, or beta values).

    One column per model: its samples over the data (top) and, with ``x`` and
    ``reconstructions``, its reconstructions of ``x`` (bottom), every panel on the same scale.
    Images: sample and reconstruction grids per model.

    Parameters
    ----------
    results : list of (label, model) or dict label -> model
    x : array (N, D), optional
        Data drawn in grey behind each panel and reconstructed.

    """
    items = list(results.items()) if isinstance(results, Mapping) else list(results)
    if not items or not all(isinstance(it, tuple) and len(it) == 2 for it in items):
        raise InputError(f"results must be a non-empty list of (label, model) pairs or a dict. Got {describe(results)} instead.")
    n = positive_int(n, "n")
    models = [m for _, m in items]
    x_dim = models[0].x_dim
    if any(m.x_dim != x_dim for m in models):
        raise InputError(f"results must hold models of one data dimension. Got x_dim {[m.x_dim for m in models]} instead.")
    data = None if x is None else models[0].prepare_x(x).cpu().numpy()
    rows = 2 if data is not None and reconstructions else 1
    fig, axes = _figure(rows, len(items), size=(3.6, 3.6))
    view = _view(models[0], image_shape)
    shape = None if view.kind == "table" else view
    proj = None if shape is not None else Projection.fit(data if data is not None else models[0].sample(n, seed=seed), "x")
    shown: list[np.ndarray] = []
    for j, (label, model) in enumerate(items):
        c_rows = (
            None if model.condition is None else _draw_conditions(model, condition, len(data) if data is not None else n, n, seed)
        )
        generated = model.sample(n, condition=c_rows, seed=seed).reshape(n, -1)
        panels = [("samples", generated)]
        if rows == 2:
            panels.append(("reconstructions", model.reconstruct(data, condition).reshape(len(data), -1)))
        for i, (what, points) in enumerate(panels):
            ax = axes[i, j]
            if shape is not None:
                count = min(16, len(points))
                _draw_rows(ax, points[:count], view, 4, f"{label}: {what}", _limits(view, points[:count]))
                continue
            if data is not None:
                pdx = proj(data)
                ax.scatter(pdx[:, 0], pdx[:, 1], c=DATA_COLOUR, s=6, alpha=0.3)
            pp = proj(points)
            ax.scatter(pp[:, 0], pp[:, 1], c=SAMPLE_COLOUR if what == "samples" else "tab:blue", s=6, alpha=0.5)
            _style(ax, f"{label}: {what}", proj, equal=False)
            shown.append(pp if data is None else np.concatenate([pp, pdx]))
    if shown:
        # One scale for every panel, so that the models can be compared by eye.
        everything = np.concatenate(shown)
        low, high = everything.min(0), everything.max(0)
        pad = 0.05 * (high - low).max() + 1e-9
        for ax in axes.ravel():
            ax.set_xlim(low[0] - pad, high[0] + pad)
            ax.set_ylim(low[1] - pad, high[1] + pad)
            ax.set_aspect("equal", adjustable="box")
    return fig


def kl_per_dim(model_or_values: Any, x: Any = None, condition: Any = None) -> Figure:
    """Bar chart of the mean KL(q(z_d|x) || N(0, 1)) of each latent dimension, in nats.

    Given a model and data, bars of active units (Cov_x(E_q[z_d]) > 0.01, Burda et al.) are
    blue and inactive (collapsed) ones grey, and the title counts them. Given an array of KL
    values (Z,), or a History (its last epoch's ``kl_per_dim``), the bars are all blue.
    """
    active = None
    if hasattr(model_or_values, "encode"):
        if x is None:
            raise InputError("x is required when kl_per_dim is given a model. Got None instead.")
        values = _kl_per_dim_values(model_or_values, x, condition)
        active = latent_mean_variance(model_or_values, x, condition) > ACTIVE_THRESHOLD
    elif hasattr(model_or_values, "columns"):  # a History: its last epoch
        if "kl_per_dim" not in model_or_values.columns:
            raise InputError(f"history must have a 'kl_per_dim' column. Got {model_or_values!r} instead.")
        values = np.asarray(model_or_values.columns["kl_per_dim"][-1], dtype=float).reshape(-1)
    else:
        if isinstance(model_or_values, (str, bytes)) or not hasattr(model_or_values, "__len__"):
            raise InputTypeError(
                f"model_or_values must be a VAE or an array of KL values. Got {describe(model_or_values)} instead."
            )
        values = np.asarray(model_or_values, dtype=float).reshape(-1)
        if values.size == 0 or not np.isfinite(values).all():
            raise InputError(f"KL values must be a non-empty finite array. Got {describe(model_or_values)} instead.")
    fig, axes = _figure(1, 1, size=(max(4.0, 0.5 * len(values) + 2), 3.6))
    ax = axes[0, 0]
    colours = ["tab:blue" if active is None or a else "tab:gray" for a in (active if active is not None else values)]
    dims = np.arange(len(values))
    ax.bar(dims, values, color=colours)
    ax.set_xticks(dims)
    ax.set_xlabel("Latent dimension (z0, z1, ...)")
    ax.set_ylabel("KL (nats)")
    title = "KL per latent dimension"
    if active is not None:
        title += f" ({int(active.sum())} of {len(values)} active)"
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    return fig


# ----------------------------------------------------------------------------- the standard set
def run_figures(
    model: Any,
    x: Any,
    condition: Any = None,
    *,
    labels: Any = None,
    history: Any = None,
    seed: int = 0,
    image_shape: Sequence[int] | None = None,
    n_samples: int = 2000,
    condition_name: str | None = None,
    columns: Sequence[str] | None = None,
    units: str = "data",
) -> dict[str, Figure]:
    """The standard figures of a run, keyed by file stem; only those that apply.

    Keys: ``history`` (when given), ``samples``, ``reconstruction``, ``latent``, ``posterior``,
    ``latent_grid``, ``interpolation``, ``conditional`` (conditional models), ``kl_per_dim``. A model that declares
    ``diversity`` not applicable (it cannot sample yet) gets no ``samples`` and ``conditional``. Image data gets
    image grids (see :func:`image_shape_for`), curve data ((P, 2)) polylines. Save with ``fig.savefig(f"figures/{key}.png")``.

    Parameters
    ----------
    model : VAE
    x : array (N, D)
        Data to draw (usually the training or test set).
    condition : array, optional
        The data's conditions (required for a conditional model).
    labels : array (N,), optional
        Colours points by class (or by value).
    history : vaekit.History, optional
        Adds the training-curve figure.
    seed : int, default 0
    image_shape : (height, width), optional
        Draw the data as images of this shape.
    n_samples : int, default 2000
        Model samples in the samples figure.
    condition_name : str, optional
        Name of the condition in titles (``"radius"`` also draws the requested circle).
    columns : list of str, optional
        Column names for the reconstruction figure of table data (default x0, x1, ...).
    units : {"data", "standardized"}, default "data"
        "standardized" draws a standardising model's data-space panels in its standardised
        units; a model built without ``standardize=True`` is refused.

    """
    _in_units(model, units)  # checked before any figure is made
    data = model.prepare_x(x).cpu().numpy()
    n = data.shape[0]
    y = _labels(labels, n)
    figures: dict[str, Figure] = {}
    shared = {"image_shape": image_shape, "units": units}
    if history is not None:
        figures["history"] = history_figure(history)
    can_sample = "diversity" not in not_applicable(model)
    if can_sample:
        figures["samples"] = samples(model, data, condition, labels=y, n=min(n_samples, 4096), seed=seed, **shared)
    figures["reconstruction"] = reconstruction(model, data, condition, columns=columns, **shared)
    figures["latent"] = latent(model, data, y, condition, units=units)
    indices = (150, 1050) if n > 1050 else (0, n // 2)
    if _gaussian_posterior(model):
        figures["posterior"] = posterior(model, data, indices, condition, labels=y, **shared)
    single = _typical_condition(model, condition, n)
    if model.z_dim >= 2:
        figures["latent_grid"] = latent_grid(model, data, single, **shared)
    rows = np.arange(n)
    if isinstance(model.condition, OneHot):  # interpolate between points that have the path's label
        rows = np.flatnonzero(model.prepare_condition(condition, n).argmax(1).cpu().numpy() == single)
    a, b = rows[list(_interpolation_ends(data[rows], None if y is None else y[rows]))]
    figures["interpolation"] = interpolation(model, data[a], data[b], single, x=data, **shared)
    values = _condition_values(model, condition, n)
    if values is not None and can_sample:
        name = condition_name or ("label" if isinstance(model.condition, OneHot) else "condition")
        figures["conditional"] = conditional_samples(model, values, x=data, value_name=name, seed=seed, **shared)
    if kl_splits(model):
        figures["kl_per_dim"] = kl_per_dim(model, data, condition)
    return figures


def _typical_condition(model: Any, condition: Any, n: int) -> Any:
    """One condition for the grid and interpolation figures: the commonest label or the median value."""
    if model.condition is None:
        return None
    c = model.prepare_condition(condition, n).cpu().numpy()
    if isinstance(model.condition, OneHot):
        return int(np.bincount(c.argmax(1)).argmax())
    median = np.median(c, axis=0)
    return float(median[0]) if median.size == 1 else median


def _condition_values(model: Any, condition: Any, n: int) -> list[Any] | None:
    """Values for the conditional figure: every label (at most 10), or 6 quantiles of a 1-D value."""
    if model.condition is None:
        return None
    c = model.prepare_condition(condition, n).cpu().numpy()
    if isinstance(model.condition, OneHot):
        present = np.unique(c.argmax(1))
        return [int(v) for v in present[:10]]
    if model.condition.dim == 1:
        return [float(v) for v in np.quantile(c[:, 0], [0.05, 0.23, 0.41, 0.59, 0.77, 0.95])]
    return None


def _interpolation_ends(data: np.ndarray, labels: np.ndarray | None) -> tuple[int, int]:
    """Two points far apart: of two different labels when labels are given, else the farthest from row 0."""
    if labels is not None and np.issubdtype(labels.dtype, np.integer):
        classes = np.unique(labels)
        if len(classes) >= 2:
            first = int(np.flatnonzero(labels == classes[0])[0])
            other = classes[len(classes) // 2]
            return first, int(np.flatnonzero(labels == other)[0])
    far = int(np.linalg.norm(data - data[0], axis=1).argmax())
    return 0, far if far != 0 else min(1, len(data) - 1)
