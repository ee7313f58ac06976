"""Curve metrics next to PCA's in evaluate(), metrics.json, report.html and ``vaekit evaluate``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import vaekit as vk
from vaekit import cli, shape_metrics, shapes
from vaekit.formatting import format_value

pytestmark = pytest.mark.usefixtures("one_thread")

EVAL = ["--eval-k", "2", "--eval-n-samples", "60", "--eval-quadrature-grid", "4", "--eval-permutations", "9"]


@pytest.fixture(scope="module")
def foils() -> tuple[np.ndarray, np.ndarray]:
    """150 training and 40 held-out airfoils (64, 2) of the bundled set, float64."""
    train, test = vk.data.airfoils("train")[0], vk.data.airfoils("test")[0]
    return train[:150].astype(np.float64), test[:40].astype(np.float64)


def numpy_pca(train: np.ndarray, q: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean (D,), top-q variances (q,) and directions (q, D) of flattened shapes, by SVD."""
    rows = train.reshape(len(train), -1)
    mu = rows.mean(0)
    _, s, vt = np.linalg.svd(rows - mu, full_matrices=False)
    return mu, s[:q] ** 2 / len(rows), vt[:q]


def test_pca_side_equals_an_independent_numpy_computation(foils):
    train, test = foils
    q, n, seed = 5, 300, 3
    curves = shape_metrics.compare_with_pca(test, train, test, None, q, permutations=19, seed=seed)
    mu, lam, vt = numpy_pca(train, q)

    # Reconstruction: projection onto the top q directions (sign-free).
    flat = test.reshape(len(test), -1)
    recon = (mu + (flat - mu) @ vt.T @ vt).reshape(test.shape)
    dist = np.sqrt(((test - recon) ** 2).sum(2))  # (N, P) Euclidean point errors
    assert curves["pca"]["mean_point_error"] == pytest.approx(dist.mean(), rel=1e-9)
    assert curves["pca"]["mean_max_point_error"] == pytest.approx(dist.max(1).mean(), rel=1e-9)
    assert curves["components"] == q and curves["n_samples"] == 2000  # no model samples: 2000 PCA samples

    # Samples: mean + sum_k sqrt(lambda_k) eps_k u_k with eps from default_rng(seed); each u_k is
    # defined up to its sign, so the signs are read off the library's draws.
    pca = vk.baselines.PCA(q).fit(train.reshape(len(train), -1))
    drawn = pca.sample(n, seed=seed)
    eps = np.random.default_rng(seed).standard_normal((n, q))
    recovered = (drawn - mu) @ vt.T / np.sqrt(lam)  # (n, q) = eps times each direction's sign
    sign = np.sign(recovered[0] / eps[0])
    np.testing.assert_allclose(recovered, eps * sign, rtol=1e-6, atol=1e-6)
    mine = (mu + (eps * sign * np.sqrt(lam)) @ vt).reshape(n, 64, 2)
    np.testing.assert_allclose(drawn.reshape(n, 64, 2), mine, atol=1e-10)

    # The sample metrics of n PCA samples (model samples of size n fix n) against the geometry functions.
    curves = shape_metrics.compare_with_pca(test, train, test, mine, q, permutations=19, seed=seed)
    check = shapes.validity(mine)
    pca = curves["pca"]
    assert pca["valid_fraction"] == check.valid.mean()
    assert pca["invalid"] == {reason: int(check.failures[reason].sum()) for reason in shapes.REASONS}
    props = shapes.airfoil_properties(mine)
    assert pca["thickness"] == pytest.approx(props.thickness.mean(), rel=1e-9)
    assert pca["camber"] == pytest.approx(props.camber.mean(), rel=1e-9)
    assert pca["roughness"] == pytest.approx(shapes.roughness(mine).mean(), rel=1e-9)
    assert pca["roughness_ratio"] == pytest.approx(shapes.roughness(mine).mean() / shapes.roughness(test).mean(), rel=1e-9)
    mmd2, p = shape_metrics.mmd(test, mine, permutations=19, seed=seed)
    assert (pca["mmd2"], pca["mmd_p_value"]) == (pytest.approx(mmd2, rel=1e-9), p)
    # The "model" here is PCA's own samples and perfect reconstructions: equal sample rows, zero errors.
    assert curves["model"]["mean_point_error"] == 0.0 and curves["model"]["valid_fraction"] == pca["valid_fraction"]
    assert curves["better"]["mean_point_error"] == "model" and curves["better"]["thickness"] == "tie"
    data = shapes.airfoil_properties(test)
    assert curves["data"] == {
        "n": 40,
        "valid_fraction": 1.0,
        "roughness": pytest.approx(shapes.roughness(test).mean(), rel=1e-12),
        "thickness": pytest.approx(data.thickness.mean(), rel=1e-12),
        "camber": pytest.approx(data.camber.mean(), rel=1e-12),
    }


@pytest.mark.parametrize(
    ("rule", "model", "pca", "data", "verdict"),
    [
        ("lower", 0.1, 0.2, None, "model"),
        ("higher", 0.1, 0.2, None, "pca"),
        ("near_data", 0.12, 0.09, 0.1, "pca"),  # |0.02| > |-0.01|
        ("near_one", 0.4, 2.0, None, "pca"),  # |log 0.4| = 0.92 > |log 2| = 0.69
        ("lower", 0.3, 0.3, None, "tie"),
        ("lower", None, 0.3, None, "n/a"),  # NaN is stored as None
        ("lower", math.nan, 0.3, None, "n/a"),
    ],
)
def test_better_verdicts(rule, model, pca, data, verdict):
    row = shape_metrics.CurveRow("v", "v", rule, "", "v" if rule == "near_data" else "")
    assert shape_metrics.better(row, {"model": {"v": model}, "pca": {"v": pca}, "data": {"v": data}}) == verdict


def test_evaluate_reports_curves_for_curve_models_only(foils):
    train, test = foils
    model = vk.VAE(x_shape=(64, 2), z_dim=3, hidden=(16,), standardize=True, seed=0)
    model.set_scaling(model.prepare_x(train))
    out = vk.metrics.evaluate(model, test, train_x=train, k=2, n_samples=50, permutations=9, seed=4)
    curves = out["curves"]
    # The model side: model.reconstruct (decoder mean at the posterior mean) and model.sample (decoder means).
    errors = shapes.reconstruction_errors(test, model.reconstruct(test))
    assert curves["model"]["mean_point_error"] == pytest.approx(errors["mean_point_error"], rel=1e-6)
    assert curves["model"]["mean_max_point_error"] == pytest.approx(errors["mean_max_point_error"], rel=1e-6)
    samples = model.sample(50, seed=4)
    assert curves["model"]["valid_fraction"] == shapes.validity(samples).valid.mean()
    assert curves["model"]["thickness"] == pytest.approx(shapes.airfoil_properties(samples).thickness.mean(), rel=1e-6)
    # The PCA side: fitted on train_x with z_dim components, as pca_mse.
    assert curves["components"] == out["pca_components"] == 3
    expected = shape_metrics.compare_with_pca(test, train, test, samples, 3, permutations=9, seed=4)["pca"]
    assert curves["pca"].pop("invalid") == expected.pop("invalid")
    assert curves["pca"] == pytest.approx(expected, rel=1e-9)  # the bundled shapes are float32: no rounding between
    assert sorted(curves) == ["better", "components", "data", "model", "n_samples", "pca"]
    assert sorted(curves["model"]) == sorted([*curves["pca"], "invalid"])

    # Tables, odd point counts and channel-first curves have no curve metrics.
    rng = np.random.default_rng(0)
    for shape in [(6,), (5, 2), (2, 8)]:
        x = rng.normal(size=(30, *shape))
        other = vk.VAE(x_shape=shape, z_dim=2, hidden=(8,), seed=0)
        assert "curves" not in vk.metrics.evaluate(other, x, k=2, n_samples=20, permutations=9, quadrature_grid=4)


def test_airfoil_run_writes_curves_to_metrics_report_and_evaluate(foils, tmp_path, capsys):
    train, test = foils
    np.save(tmp_path / "foils.npy", train[:120].astype(np.float32))
    np.save(tmp_path / "new.npy", test.astype(np.float32))
    out = tmp_path / "run"
    args = ["train", "--data", str(tmp_path / "foils.npy"), "--test-fraction", "0.25", "--epochs", "2", "--hidden", "8"]
    assert cli.main([*args, "--z-dim", "3", *EVAL, "-q", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for column in (metrics, metrics["train"]):
        curves = column["curves"]
        assert curves["components"] == 3 and curves["n_samples"] == 60
        assert set(curves["model"]) == set(curves["pca"]) >= {"mean_point_error", "mean_max_point_error", "valid_fraction"}
    assert metrics["curves"]["data"]["n"] == 30 and metrics["train"]["curves"]["data"]["n"] == 90
    page = (out / "report.html").read_text()
    assert "model vs PCA (3 components): held-out" in page and "model vs PCA (3 components): train" in page
    error = format_value(metrics["curves"]["pca"]["mean_point_error"], 4)
    assert f"<tr><th>mean point error</th><td>{format_value(metrics['curves']['model']['mean_point_error'], 4)}</td>" in page
    assert f"<td>{error}</td>" in page
    capsys.readouterr()

    assert cli.main(["evaluate", str(out), "--data", str(tmp_path / "new.npy")]) == 0
    printed = capsys.readouterr().out
    assert "model vs PCA (3 components), evaluated data; 60 samples each:" in printed
    # The printed row against numpy: PCA fitted on the run's 90 training rows, the model's reconstructions.
    mu, _, vt = numpy_pca(vk.runs.load_data(vk.runs.read_config(out / "config.toml")).x.astype(np.float64), 3)
    flat = test.astype(np.float32).astype(np.float64).reshape(len(test), -1)
    pca_error = np.sqrt((((flat - mu) - (flat - mu) @ vt.T @ vt).reshape(test.shape) ** 2).sum(2)).mean()
    model_error = shapes.reconstruction_errors(test.astype(np.float32), vk.load(out).reconstruct(flat))["mean_point_error"]
    row = next(line for line in printed.splitlines() if line.startswith("mean point error")).split()
    assert row[3:] == [format_value(model_error, 4), format_value(pca_error, 4), "PCA" if pca_error < model_error else "model"]
    assert not any(line.startswith("curves ") for line in printed.splitlines())  # not a row of the main table
