"""vaekit.plot: every figure rendered to PNG with Agg, and its content checked against the model."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.contour import ContourSet  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import vaekit as vk  # noqa: E402
from vaekit import metrics  # noqa: E402
from vaekit import plots as plot  # noqa: E402

# Small models train many times faster on one thread when the CPU is shared (fixture in conftest).
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ring():
    x, y = vk.data.ring(1200, seed=0)
    model = vk.VAE(2, 2, hidden=(32, 32), seed=0)
    history = vk.fit(model, x, epochs=30, seed=0, monitors={"diversity": vk.Diversity(n_samples=256, every=5)})
    return model.eval(), x, y, history


@pytest.fixture(scope="module")
def digits():
    x, y = vk.data.digits()
    x, y = x[:400], y[:400]
    model = vk.VAE(64, 3, hidden=(32, 32), likelihood=vk.Bernoulli(), seed=0)
    vk.fit(model, x, epochs=5, seed=0, monitors={})
    return model.eval(), x, y


@pytest.fixture(scope="module")
def onehot():
    x, y = vk.data.ring(800, seed=0)
    model = vk.VAE(2, 2, hidden=(32, 32), condition=vk.OneHot(8), seed=0)
    vk.fit(model, x, y, epochs=10, seed=0, monitors={})
    return model.eval(), x, y


def render(fig: Figure) -> np.ndarray:
    """PNG bytes through Agg, read back: the picture exists, has the figure's size and is not blank."""
    assert isinstance(fig, Figure)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=40)
    assert buffer.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    buffer.seek(0)
    pixels = mpimg.imread(buffer)
    width, height = fig.get_size_inches() * 40
    assert abs(pixels.shape[1] - width) <= 1 and abs(pixels.shape[0] - height) <= 1
    assert pixels[..., :3].std() > 0.01
    return pixels


def panels(fig: Figure) -> list:
    """The visible plotting axes (colour bars excluded)."""
    return [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]


def offsets(ax) -> list[np.ndarray]:
    return [np.asarray(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection)]


# ----------------------------------------------------------------------------- no global state
def test_figures_leave_pyplot_alone(ring):
    model, x, y, history = ring
    before = plt.get_fignums()
    figures = plot.run_figures(model, x, labels=y, history=history)
    assert plt.get_fignums() == before  # built with the object API, never registered with pyplot
    assert all(isinstance(f, Figure) for f in figures.values())


# ----------------------------------------------------------------------------- history
def test_history_panels_log_scales_and_curves(ring):
    *_, history = ring
    fig = plot.history(history)
    render(fig)
    total, parts, div = panels(fig)
    assert [ax.get_title() for ax in (total, parts, div)] == ["Total loss", "Reconstruction vs KL", "Sample diversity"]
    assert total.get_yscale() == "log" and parts.get_yscale() == "log" and div.get_yscale() == "linear"
    np.testing.assert_allclose(total.lines[0].get_ydata(), history.loss)
    np.testing.assert_array_equal(total.lines[0].get_xdata(), np.arange(1, len(history) + 1))
    assert [line.get_label() for line in parts.lines] == ["reconstruction (train)", "KL (train)"]
    np.testing.assert_allclose(parts.lines[1].get_ydata(), history.kl)
    measured = np.isfinite(history.diversity)  # every 5 epochs and the last
    np.testing.assert_allclose(div.lines[0].get_ydata(), np.asarray(history.diversity)[measured])
    assert all(ax.get_xlabel() == "Epoch" for ax in (total, parts, div))


def test_history_from_dict_with_validation_and_negative_values():
    fig = plot.history(
        {"loss": [3.0, 2.0, -1.0], "val_loss": [3.5, 2.5, 1.0], "reconstruction": [2.0, 1.0, 0.5], "kl": [1.0, 1.0, 1.0]}
    )
    render(fig)
    total, parts = panels(fig)  # no diversity column: two panels
    assert [line.get_linestyle() for line in total.lines] == ["-", "--"]
    assert total.get_yscale() == "linear"  # a negative loss: no log axis
    assert parts.get_yscale() == "log"
    with pytest.raises(vk.InputError, match="history must be a vaekit History .* with a 'loss' column. Got"):
        plot.history({"kl": [1.0]})


# ----------------------------------------------------------------------------- samples and latent space
def test_samples_scatter_holds_the_data_and_the_model_samples(ring):
    model, x, y, _ = ring
    fig = plot.samples(model, x, labels=y, n=500, seed=3)
    render(fig)
    left, right = panels(fig)
    assert (left.get_title(), right.get_title()) == ("Data", "Generated samples")
    np.testing.assert_allclose(offsets(left)[0], x, rtol=1e-6)
    real, generated = offsets(right)
    np.testing.assert_allclose(real, x, rtol=1e-6)
    np.testing.assert_allclose(generated, model.sample(500, seed=3), rtol=1e-6)
    assert (left.get_xlabel(), left.get_ylabel()) == ("$x_{0}$", "$x_{1}$")
    assert len(fig.axes) == 3  # two panels and the label colour bar


def test_latent_shows_posterior_means(ring):
    model, x, y, _ = ring
    fig = plot.latent(model, x, y)
    render(fig)
    _, right = panels(fig)
    np.testing.assert_allclose(offsets(right)[0], model.encode(x).mean.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert (right.get_xlabel(), right.get_ylabel()) == ("$z_{0}$", "$z_{1}$")


def test_latent_above_two_dimensions_says_its_projection(digits):
    model, x, y = digits
    fig = plot.latent(model, x, y)
    render(fig)
    data_ax, latent_ax = panels(fig)
    assert latent_ax.get_xlabel() == "PC1 of $z$ (PCA)" and data_ax.get_ylabel() == "PC2 of $x$ (PCA)"
    z = model.encode(x).mean.detach().numpy()
    shown = offsets(latent_ax)[0]
    assert np.var(shown[:, 0]) == pytest.approx(np.linalg.svd(z - z.mean(0), compute_uv=False)[0] ** 2 / len(z), rel=1e-4)
    fig = plot.latent(model, x, y, dims=(0, 2))
    _, latent_ax = panels(fig)
    assert (latent_ax.get_xlabel(), latent_ax.get_ylabel()) == ("$z_{0}$", "$z_{2}$")
    np.testing.assert_allclose(offsets(latent_ax)[0], z[:, [0, 2]], rtol=1e-5, atol=1e-6)
    with pytest.raises(vk.InputError, match=r"dims must be two different indices in 0..2 \(or 'pca'\). Got \(0, 5\) instead."):
        plot.latent(model, x, dims=(0, 5))


# ----------------------------------------------------------------------------- q(z|x) contours
def test_posterior_contours_sit_on_each_points_posterior_in_the_same_orientation(ring):
    model, x, y, _ = ring
    qz = model.encode(x)
    means, stds = qz.mean.detach().numpy(), qz.stddev.detach().numpy()
    # Two points whose means differ between z_1 and z_2, so swapped axes would show.
    skew = np.abs(means[:, 0] - means[:, 1])
    first, second = np.argsort(-skew)[:2]
    fig = plot.posterior(model, x, (int(first), int(second)), labels=y)
    render(fig)
    left, right = panels(fig)
    contours = [c for c in right.collections if isinstance(c, ContourSet)]
    assert len(contours) == 2
    for cs, i in zip(contours, (first, second)):
        drawn = [seg for level in cs.allsegs for seg in level if len(seg)]
        inner = drawn[-1]  # the highest-density ring drawn
        centre = (inner.max(0) + inner.min(0)) / 2
        np.testing.assert_allclose(centre, means[i], atol=0.05 * stds[i].max() + 0.02)
        half_widths = (inner.max(0) - inner.min(0)) / 2
        ratio = half_widths / stds[i]  # an axis-aligned ellipse: widths proportional to (std_1, std_2)
        assert ratio[0] == pytest.approx(ratio[1], rel=0.1)
    labels = [t.get_text() for t in left.get_legend().get_texts()]
    assert labels == ["Dataset", f"Point 1 (idx {first})", f"Point 2 (idx {second})"]
    assert right.get_title() == "Learned $q(z|x)$ for selected points"


def test_posterior_index_errors(ring):
    model, x, *_ = ring
    with pytest.raises(vk.InputError, match=r"indices must be row numbers in 0..1199 \(x has 1200 rows\). Got \[1200\] instead."):
        plot.posterior(model, x, (0, 1200))
    with pytest.raises(vk.InputError, match="indices must be a non-empty sequence of row indices. Got 5 instead."):
        plot.posterior(model, x, 5)


def test_posterior_of_images_shows_the_images(digits):
    model, x, _ = digits
    fig = plot.posterior(model, x, (3, 7))
    render(fig)
    left, right = panels(fig)
    mosaic = left.images[0].get_array()
    assert mosaic.shape == (8, 17)
    np.testing.assert_allclose(mosaic[:, 9:], x[7].reshape(8, 8))
    assert right.get_xlabel() == "PC1 of $z$ (PCA)"


# ----------------------------------------------------------------------------- decoded grid
def test_latent_grid_decodes_the_grid_and_colours_by_z1(ring):
    model, x, *_ = ring
    fig = plot.latent_grid(model, x, n=7, bound=1.5)
    render(fig)
    left, right = panels(fig)
    grid = offsets(left)[-1]
    axis = np.linspace(-1.5, 1.5, 7)
    np.testing.assert_allclose(np.unique(grid[:, 0]), axis)
    decoded = [c for c in right.collections if isinstance(c, PathCollection)][-1]
    np.testing.assert_allclose(
        decoded.get_offsets(), model.decode(grid.astype(np.float32)).mean.detach().numpy(), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(decoded.get_array(), grid[:, 0])
    assert fig.axes[-1].get_ylabel() == "$z_{0}$ coordinate"  # the colour bar


def test_latent_grid_of_images_is_a_mosaic_with_z2_up(digits):
    model, *_ = digits
    fig = plot.latent_grid(model, n=5, bound=2.0)
    render(fig)
    (ax,) = panels(fig)
    mosaic = ax.images[0].get_array()
    assert mosaic.shape == (5 * 9 - 1, 5 * 9 - 1)
    top_left = model.decode(np.array([[-2.0, 2.0, 0.0]], dtype=np.float32)).mean.detach().numpy().reshape(8, 8)
    np.testing.assert_allclose(mosaic[:8, :8], top_left, rtol=1e-5)
    assert "other dims 0" in ax.get_xlabel()


def test_conditional_latent_grid_needs_one_condition(onehot):
    model, *_ = onehot
    with pytest.raises(vk.InputError, match=r"condition is required: this model was built with condition=OneHot\(n_classes=8\)"):
        plot.latent_grid(model)
    fig = plot.latent_grid(model, condition=3, n=4)
    _, right = panels(fig)
    assert right.get_title() == "Decoded grid in data space (label = 3)"
    decoded = [c for c in right.collections if isinstance(c, PathCollection)][-1]
    z = offsets(panels(fig)[0])[-1].astype(np.float32)
    np.testing.assert_allclose(decoded.get_offsets(), model.decode(z, 3).mean.detach().numpy(), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- interpolation
def test_interpolation_path_runs_between_posterior_means(ring):
    model, x, *_ = ring
    fig = plot.interpolation(model, x[0], x[1], steps=6, x=x)
    render(fig)
    left, right = panels(fig)
    path = offsets(left)[-1]
    ends = model.encode(x[:2]).mean.detach().numpy()
    np.testing.assert_allclose(path[[0, -1]], ends, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(path[3], ends[0] + 0.6 * (ends[1] - ends[0]), rtol=1e-5, atol=1e-6)
    decoded = offsets(right)[1]
    np.testing.assert_allclose(decoded, model.decode(path.astype(np.float32)).mean.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(offsets(right)[2], x[:2], rtol=1e-6)


def test_interpolation_of_images_is_one_row(digits):
    model, x, _ = digits
    fig = plot.interpolation(model, x[0], x[1], steps=4)
    render(fig)
    mosaic = panels(fig)[0].images[0].get_array()
    assert mosaic.shape == (8, 6 * 9 - 1)
    np.testing.assert_allclose(mosaic[:, :8], x[0].reshape(8, 8))
    np.testing.assert_allclose(mosaic[:, -8:], x[1].reshape(8, 8))
    with pytest.raises(vk.InputError, match=r"x_a must be one point of 64 values. Got 2 rows instead."):
        plot.interpolation(model, x[:2], x[1])


# ----------------------------------------------------------------------------- conditional samples
def test_conditional_samples_one_panel_per_value(onehot):
    model, x, _ = onehot
    fig = plot.conditional_samples(model, [0, 2, 5], n=100, seed=1, x=x)
    render(fig)
    shown = panels(fig)
    assert [ax.get_title() for ax in shown] == ["label = 0", "label = 2", "label = 5"]
    np.testing.assert_allclose(offsets(shown[1])[1], model.sample(100, condition=2, seed=2), rtol=1e-6)
    with pytest.raises(vk.InputError, match="model must be conditional"):
        plot.conditional_samples(vk.VAE(2, 2, seed=0), [1])


def test_conditional_samples_by_radius_draw_the_requested_circle():
    x, _ = vk.data.ring(400, seed=0)
    r = vk.data.radius(x)
    model = vk.VAE(2, 2, hidden=(16, 16), condition=vk.Continuous(1, embed=4), seed=0)
    vk.fit(model, x, r, epochs=2, monitors={})
    fig = plot.conditional_samples(model, [1.5, 2.0, 2.5, 3.0, 3.5], n=50, x=x, value_name="radius")
    render(fig)
    shown = panels(fig)
    assert len(shown) == 5 and len(fig.axes) == 8  # 2 x 4 grid, 3 hidden
    circle = shown[4].lines[0]
    np.testing.assert_allclose(np.hypot(circle.get_xdata(), circle.get_ydata()), 3.5)
    assert shown[4].get_title() == "radius = 3.5"


def test_conditional_samples_of_images_one_row_per_label():
    x, y = vk.data.digits()
    model = vk.VAE(64, 2, hidden=(16, 16), likelihood=vk.Bernoulli(), condition=vk.OneHot(10), seed=0)
    vk.fit(model, x[:200], y[:200], epochs=1, monitors={})
    fig = plot.conditional_samples(model, [1, 7], n=10)
    render(fig)
    (ax,) = panels(fig)
    assert ax.images[0].get_array().shape == (2 * 9 - 1, 10 * 9 - 1)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["label=1", "label=7"]


# ----------------------------------------------------------------------------- comparison and KL
def test_comparison_grid_of_models(ring):
    _, x, *_ = ring
    models = [
        (f"variance {v}", vk.VAE(2, 2, hidden=(16, 16), likelihood=vk.Gaussian(variance=v), seed=0)) for v in (0.01, 1.0, 5.0)
    ]
    fig = plot.comparison(models, x, n=200)
    render(fig)
    shown = panels(fig)
    assert len(shown) == 6
    assert [ax.get_title() for ax in shown[:3]] == ["variance 0.01: samples", "variance 1.0: samples", "variance 5.0: samples"]
    assert shown[3].get_title() == "variance 0.01: reconstructions"
    np.testing.assert_allclose(offsets(shown[4])[1], models[1][1].reconstruct(x), rtol=1e-5, atol=1e-6)
    assert len({(ax.get_xlim(), ax.get_ylim()) for ax in shown}) == 1  # one scale for all panels
    everything = np.concatenate([o for ax in shown for o in offsets(ax)])
    assert shown[0].get_xlim()[0] < everything[:, 0].min() and shown[0].get_xlim()[1] > everything[:, 0].max()
    assert len(panels(plot.comparison(dict(models), n=50))) == 3  # no data: samples only
    with pytest.raises(vk.InputError, match="results must be a non-empty list of"):
        plot.comparison([])


def test_kl_per_dim_bars_and_active_units(digits):
    model, x, _ = digits
    fig = plot.kl_per_dim(model, x)
    render(fig)
    (ax,) = panels(fig)
    heights = [bar.get_height() for bar in ax.patches]
    np.testing.assert_allclose(heights, metrics.kl_per_dim(model, x), rtol=1e-6)
    active = metrics.latent_mean_variance(model, x) > 0.01
    assert ax.get_title() == f"KL per latent dimension ({active.sum()} of 3 active)"
    grey = matplotlib.colors.to_rgba("tab:gray")
    assert [bar.get_facecolor() != grey for bar in ax.patches] == list(active)
    assert ax.get_ylabel() == "KL (nats)"
    fig = plot.kl_per_dim([0.5, 0.0, 2.0])
    assert [bar.get_height() for bar in panels(fig)[0].patches] == [0.5, 0.0, 2.0]
    with pytest.raises(vk.InputError, match="x is required when kl_per_dim is given a model"):
        plot.kl_per_dim(model)


# ----------------------------------------------------------------------------- image grid
def test_image_grid_places_each_image():
    images = np.random.default_rng(0).uniform(size=(5, 12))
    fig = plot.image_grid(images, image_shape=(3, 4), ncols=3)
    render(fig)
    mosaic = panels(fig)[0].images[0].get_array()
    assert mosaic.shape == (2 * 4 - 1, 3 * 5 - 1)
    np.testing.assert_allclose(mosaic[4:7, 5:9], images[4].reshape(3, 4))
    assert np.isnan(np.ma.filled(mosaic[4:7, 10:14], np.nan)).all()  # the empty sixth cell
    with pytest.raises(
        vk.InputError, match="images must have a perfect-square number of pixels >= 16, or image_shape must be given. Got 12"
    ):
        plot.image_grid(images)
    with pytest.raises(
        vk.InputError, match=r"image_shape must be \(height, width\) with height \* width = 12. Got \(3, 3\) instead."
    ):
        plot.image_grid(images, image_shape=(3, 3))


# ----------------------------------------------------------------------------- the standard set
def test_run_figures_ring(ring):
    model, x, y, history = ring
    figures = plot.run_figures(model, x, labels=y, history=history)
    assert list(figures) == [
        "history",
        "samples",
        "reconstruction",
        "latent",
        "posterior",
        "latent_grid",
        "interpolation",
        "kl_per_dim",
    ]
    for fig in figures.values():
        render(fig)
    assert "history" not in plot.run_figures(model, x)


def test_run_figures_conditional_and_images(onehot, digits):
    model, x, y = onehot
    figures = plot.run_figures(model, x, y, labels=y)
    assert "conditional" in figures
    assert len(panels(figures["conditional"])) == 8
    render(figures["conditional"])
    model, x, y = digits
    figures = plot.run_figures(model, x, labels=y)
    assert set(figures) == {"samples", "reconstruction", "latent", "posterior", "latent_grid", "interpolation", "kl_per_dim"}
    for key in ("samples", "reconstruction", "latent_grid", "interpolation"):
        assert all(ax.images for ax in panels(figures[key])), key  # image grids, not scatter plots
        render(figures[key])


# ----------------------------------------------------------------------------- curves, pictures, reconstructions
def ellipses(n: int, points: int = 24, seed: int = 0) -> np.ndarray:
    """Closed curves (n, P, 2): ellipses of half-width 0.8..1.2 and varying thickness 0.1..0.4."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 2 * np.pi, points, endpoint=False)
    a, b = rng.uniform(0.8, 1.2, (n, 1)), rng.uniform(0.1, 0.4, (n, 1))
    return np.stack([a * np.cos(t), b * np.sin(t)], -1).astype(np.float32)


@pytest.fixture(scope="module")
def curves():
    x = ellipses(300)
    model = vk.VAE(x_shape=(24, 2), z_dim=3, hidden=(16,), standardize=True, seed=0)
    vk.fit(model, x, epochs=3, seed=0, monitors={})
    return model.eval(), x


def cell_curves(ax, rows: np.ndarray, ncols: int, start: int = 0, step: int = 1) -> None:
    """Each curve of ``rows`` (N, P, 2) is a Line2D of P vertices: the curve on one shared scale, in its cell."""
    low, high = rows.reshape(-1, 2).min(0), rows.reshape(-1, 2).max(0)
    centre, span = (low + high) / 2, (high - low).max()
    lines = ax.lines[start::step]
    assert len(lines) == len(rows)
    for i, (line, curve) in enumerate(zip(lines, rows)):
        r, c = divmod(i, ncols)
        expected = (curve - centre) / span + np.array([c, -r]) * plot.CURVE_PITCH
        assert line.get_xydata().shape == (curve.shape[0], 2)
        np.testing.assert_allclose(line.get_xydata(), expected, rtol=1e-6, atol=1e-6)


def test_pictures_draws_curves_as_polylines_and_refuses_tables():
    x = ellipses(5, points=10)
    fig = plot.pictures(x, x_shape=(10, 2), ncols=3, title="five")
    render(fig)
    (ax,) = panels(fig)
    cell_curves(ax, x.astype(np.float64), 3)
    assert ax.get_title() == "five" and ax.get_aspect() == 1.0
    # channels first (2, P): all x then all y in a flat row; the same picture
    first = plot.pictures(x.transpose(0, 2, 1), x_shape=(2, 10), ncols=3)
    for a, b in zip(panels(first)[0].lines, ax.lines):
        np.testing.assert_array_equal(a.get_xydata(), b.get_xydata())
    many = plot.pictures(ellipses(150, points=10), x_shape=(10, 2), title="samples")
    assert len(panels(many)[0].lines) == plot.PICTURE_MAX
    assert panels(many)[0].get_title() == "samples (the first 100 of 150)"
    message = (
        "x_shape must be images ((H, W), (1, H, W), or a perfect-square width >= 16) or curves ((P, 2)) to be drawn as a "
        "picture. Got x_shape (3,) (a table) instead: write such data as numbers (CSV or .npy) or use plots.samples."
    )
    with pytest.raises(vk.InputError) as info:
        plot.pictures(np.zeros((4, 3)), x_shape=3)
    assert str(info.value) == message


def test_pictures_of_images_is_one_mosaic_with_every_image():
    x, _ = vk.data.digits()
    fig = plot.pictures(x[:10], x_shape=(64,), ncols=5)
    render(fig)
    (ax,) = panels(fig)
    assert len(ax.images) == 1
    mosaic = ax.images[0].get_array()
    assert mosaic.shape == (2 * 9 - 1, 5 * 9 - 1)
    for i in range(10):
        r, c = divmod(i, 5)
        np.testing.assert_allclose(mosaic[9 * r : 9 * r + 8, 9 * c : 9 * c + 8], x[i].reshape(8, 8))


def test_reconstruction_of_curves_overlays_each_original_and_its_reconstruction(curves):
    model, x = curves
    fig = plot.reconstruction(model, x, n=6)
    render(fig)
    (ax,) = panels(fig)
    rows = np.linspace(0, len(x) - 1, 6).astype(int)
    original = x[rows].astype(np.float64)
    recon = model.reconstruct(x[rows]).astype(np.float64)
    both = np.concatenate([original, recon])
    low, high = both.reshape(-1, 2).min(0), both.reshape(-1, 2).max(0)
    centre, span = (low + high) / 2, (high - low).max()
    assert len(ax.lines) == 12
    for i in range(6):
        offset = np.array([i % 4, -(i // 4)]) * plot.CURVE_PITCH
        black, red = ax.lines[2 * i], ax.lines[2 * i + 1]
        np.testing.assert_allclose(black.get_xydata(), (original[i] - centre) / span + offset, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(red.get_xydata(), (recon[i] - centre) / span + offset, rtol=1e-5, atol=1e-6)
        assert red.get_linestyle() == "--"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["original", "reconstruction"]


def test_reconstruction_of_images_side_by_side_and_of_tables_per_column(digits, ring):
    model, x, _ = digits
    fig = plot.reconstruction(model, x, n=8)
    render(fig)
    left, right = panels(fig)
    rows = np.linspace(0, len(x) - 1, 8).astype(int)
    recon = model.reconstruct(x[rows]).reshape(8, 64)
    assert (left.get_title(), right.get_title()) == ("Originals", "Reconstructions")
    np.testing.assert_allclose(left.images[0].get_array()[9:17, 0:8], x[rows[4]].reshape(8, 8))
    np.testing.assert_allclose(right.images[0].get_array()[9:17, 0:8], recon[4].reshape(8, 8), rtol=1e-6)
    model, x, *_ = ring
    fig = plot.reconstruction(model, x, columns=["u", "v"])
    render(fig)
    recon = model.reconstruct(x)
    for j, ax in enumerate(panels(fig)):
        np.testing.assert_allclose(offsets(ax)[0], np.stack([x[:, j], recon[:, j]], 1), rtol=1e-6, atol=1e-6)
        rmse = np.sqrt(np.mean((recon[:, j].astype(np.float64) - x[:, j]) ** 2))
        assert ax.get_title() == f"{'uv'[j]}: RMSE {rmse:.3g}"


def collapse(model, dims) -> None:
    """Make q(z_d|x) = N(0, 1) for every x in the given dims: zero their rows of the encoder's last layer."""
    last = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        for d in dims:
            for row in (d, model.z_dim + d):  # the mean, then the log-variance
                last.weight[row] = 0.0
                last.bias[row] = 0.0


def test_latent_grid_and_ranking_pick_the_top_two_dims_by_kl():
    x, _ = vk.data.ring(600, seed=0)
    model = vk.VAE(2, 4, hidden=(16,), seed=0)
    vk.fit(model, x, epochs=5, seed=0, monitors={})
    collapse(model.eval(), [0, 2])
    kl = metrics.kl_per_dim(model, x)
    assert kl[0] < 1e-6 and kl[2] < 1e-6 and min(kl[1], kl[3]) > 1e-3
    ranking = plot.rank_latents(model, x)
    assert ranking.dims == (1, 3) and ranking.measure == "KL"
    np.testing.assert_allclose(ranking.scores, kl, rtol=1e-6)
    fig = plot.latent_grid(model, x, n=5)
    render(fig)
    left, _ = panels(fig)
    assert (left.get_xlabel(), left.get_ylabel()) == ("$z_{1}$ (other dims 0)", "$z_{3}$ (other dims 0)")
    assert left.get_title() == f"Grid in latent space\nmost informative: z1 (KL {kl[1]:.3g}), z3 (KL {kl[3]:.3g})"
    np.testing.assert_allclose(offsets(left)[0], model.encode(x).mean.detach().numpy()[:, [1, 3]], rtol=1e-5, atol=1e-6)
    assert "most informative" not in panels(plot.latent_grid(model, n=3))[0].get_title()  # no data: dims (0, 1)


def test_ranking_without_a_per_dim_kl_uses_the_posterior_mean_variance_of_the_decoded_layer():
    x, _ = vk.data.ring(300, seed=0)
    model = vk.HierarchicalVAE(2, z_dims=(3, 2), hidden=(8,), seed=0)
    assert not metrics.kl_splits(model)
    ranking = plot.rank_latents(model, x)
    variance = metrics.latent_mean_variance(model, x)
    assert ranking.measure == "var E[z|x]"
    np.testing.assert_allclose(ranking.scores, variance)
    # only z0..z2 reach the decoder: the two largest of those, whatever the top layer does
    assert ranking.dims == tuple(sorted(np.argsort(-variance[:3], kind="stable")[:2].tolist()))


def test_figures_in_standardized_units(curves, ring):
    model, x = curves
    fig = plot.reconstruction(model, x, n=4, units="standardized")
    (ax,) = panels(fig)
    rows = np.linspace(0, len(x) - 1, 4).astype(int)
    scaled = (x[rows].reshape(4, -1) - model.x_shift.numpy()) / model.x_scale.numpy()
    recon = (model.reconstruct(x[rows]).reshape(4, -1) - model.x_shift.numpy()) / model.x_scale.numpy()
    both = np.concatenate([scaled, recon]).reshape(-1, 2)
    centre, span = (both.min(0) + both.max(0)) / 2, (both.max(0) - both.min(0)).max()
    np.testing.assert_allclose(ax.lines[0].get_xydata(), (scaled[0].reshape(24, 2) - centre) / span, rtol=1e-5, atol=1e-5)
    assert ax.get_title().endswith("(standardised units)")
    model, x, *_ = ring
    with pytest.raises(vk.InputError) as info:
        plot.samples(model, x, units="standardized")
    assert str(info.value) == (
        "units='standardized' needs a model built with standardize=True (it has no data mean and scale). "
        "Got a model that trains in data units instead."
    )
    with pytest.raises(vk.InputError, match=r"^units must be one of 'data', 'standardized'. Got 'z' instead.$"):
        plot.latent(model, x, units="z")


def test_run_figures_of_curves_draw_polylines(curves):
    model, x = curves
    figures = plot.run_figures(model, x)
    assert list(figures) == ["samples", "reconstruction", "latent", "posterior", "latent_grid", "interpolation", "kl_per_dim"]
    left, right = panels(figures["samples"])
    assert len(left.lines) == len(right.lines) == 36 and all(line.get_xydata().shape == (24, 2) for line in left.lines)
    # each polyline is its curve moved and scaled by one factor in x and y (the aspect is kept)
    drawn, curve = left.lines[5].get_xydata(), x[5].astype(np.float64)
    factor = np.linalg.lstsq((curve - curve.mean(0)).reshape(-1, 1), (drawn - drawn.mean(0)).reshape(-1), rcond=None)[0]
    np.testing.assert_allclose(drawn - drawn.mean(0), factor * (curve - curve.mean(0)), atol=1e-6)
    (grid,) = panels(figures["latent_grid"])
    assert len(grid.lines) == 400 and not grid.images
    (path,) = panels(figures["interpolation"])
    assert len(path.lines) == 12
    for fig in figures.values():
        render(fig)


def test_kl_per_dim_bars_are_numbered_from_zero(digits):
    model, x, _ = digits
    (ax,) = panels(plot.kl_per_dim(model, x))
    assert [bar.get_x() + bar.get_width() / 2 for bar in ax.patches] == [0, 1, 2]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2"]
