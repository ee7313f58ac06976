"""vaekit.baselines against independent facts: Tipping & Bishop's closed form (through an SVD, not the
eigendecomposition the module uses), torch's MultivariateNormal, the likelihood's maximum, PCA's
discarded eigenvalues; and the baselines inside vk.metrics.evaluate."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import vaekit as vk
from vaekit.baselines import ABSOLUTE_FLOOR, NOISE_FLOOR, PCA, PPCA, baseline_metrics


def low_rank_data(n: int, d: int, q: int, *, noise: float = 0.3, seed: int = 0) -> np.ndarray:
    """Rows of a q-dimensional linear-Gaussian model in D dimensions, plus an offset: float32 (N, D)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(d, q)) * np.linspace(3.0, 1.0, q)
    x = rng.normal(size=(n, q)) @ w.T + noise * rng.normal(size=(n, d)) + rng.normal(size=d) * 5
    return x.astype(np.float32)


def svd_closed_form(x: np.ndarray, q: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Tipping & Bishop's ML estimate from the SVD of the centred data: mean, W Wᵀ, sigma²."""
    x = x.astype(np.float64)
    r = x - x.mean(0)
    _, s, vt = np.linalg.svd(r, full_matrices=True)
    values = np.zeros(x.shape[1])
    values[: len(s)] = s**2 / x.shape[0]  # eigenvalues of the 1/N covariance
    sigma2 = values[q:].mean()
    u = vt[:q].T
    return x.mean(0), u @ np.diag(values[:q] - sigma2) @ u.T, sigma2


def mvn_log_prob(mean: np.ndarray, cov: np.ndarray, x: np.ndarray) -> np.ndarray:
    dist = torch.distributions.MultivariateNormal(torch.from_numpy(mean), torch.from_numpy(cov))
    return dist.log_prob(torch.from_numpy(x.astype(np.float64))).numpy()


@pytest.mark.parametrize(("n", "d", "q"), [(400, 6, 2), (600, 200, 5)])
def test_ppca_fit_is_the_closed_form_and_its_nll_the_multivariate_normal(n, d, q):
    x = low_rank_data(n, d, q)
    ppca = PPCA(q).fit(x)
    mean, wwt, sigma2 = svd_closed_form(x, q)
    np.testing.assert_allclose(ppca.mean, mean, rtol=0, atol=1e-9)
    assert ppca.sigma2 == pytest.approx(sigma2, rel=1e-9) and not ppca.floored
    np.testing.assert_allclose(ppca.W @ ppca.W.T, wwt, rtol=0, atol=1e-8 * np.abs(wwt).max())  # W up to a rotation
    x_new = low_rank_data(50, d, q, seed=1)  # other points of the same model
    expected = mvn_log_prob(mean, wwt + sigma2 * np.eye(d), x_new)
    np.testing.assert_allclose(ppca.log_prob(x_new), expected, rtol=1e-9)
    assert ppca.nll(x_new) == pytest.approx(-expected.mean(), rel=1e-9)


def test_ppca_maximum_likelihood_beats_perturbed_parameters():
    x = low_rank_data(300, 8, 3)
    ppca = PPCA(3).fit(x)
    best = ppca.log_prob(x).sum()
    rng = np.random.default_rng(0)
    fitted = (ppca.mean.copy(), ppca.W.copy(), ppca.sigma2)
    for step in (1e-3, 1e-2, 1e-1):
        for _ in range(5):
            ppca.mean = fitted[0] + step * rng.normal(size=fitted[0].shape)
            ppca.W = fitted[1] + step * rng.normal(size=fitted[1].shape)
            ppca.sigma2 = fitted[2] * math.exp(step * rng.normal())
            assert ppca.log_prob(x).sum() < best
    ppca.mean, ppca.W, ppca.sigma2 = fitted
    ppca.W = ppca.W @ np.linalg.qr(rng.normal(size=(3, 3)))[0]  # a rotation of W: the same density
    assert ppca.log_prob(x).sum() == pytest.approx(best, rel=1e-12)


def test_pca_training_error_is_the_discarded_eigenvalues_over_d():
    x = low_rank_data(500, 10, 3)
    for q in (1, 3, 7, 10, 12):
        pca = PCA(q).fit(x)
        values = np.sort(np.linalg.eigvalsh(np.cov(x.astype(np.float64), rowvar=False, bias=True)))[::-1]
        assert pca.mse(x) == pytest.approx(values[q:].sum() / 10, rel=1e-7, abs=1e-12)
        assert pca.components.shape == (min(q, 10), 10)


def test_zero_eigenvalues_use_the_stated_floor_and_wide_data_work():
    rng = np.random.default_rng(0)
    x = np.zeros((60, 784), dtype=np.float32)  # fewer rows than columns, most columns constant
    x[:, :30] = rng.normal(size=(60, 5)) @ rng.normal(size=(5, 30))  # rank 5 < q: every discarded eigenvalue is 0
    ppca = PPCA(8).fit(x)
    trace_mean = np.var(x.astype(np.float64), axis=0).sum() / 784
    assert ppca.floored and ppca.sigma2 == pytest.approx(NOISE_FLOOR * trace_mean, rel=1e-9)
    values = ppca.log_prob(x)
    assert values.shape == (60,) and np.isfinite(values).all()
    # on the data's own subspace the density is that of the first 30 columns' PPCA, times the
    # floor's Gaussian N(0, sigma²) for each of the 754 constant columns
    small = PPCA(8).fit(x[:, :30])
    small.sigma2 = ppca.sigma2
    small.W = ppca.W[:30]
    expected = small.log_prob(x[:, :30]) - 754 * 0.5 * math.log(2 * math.pi * ppca.sigma2)
    np.testing.assert_allclose(values, expected, rtol=1e-9)
    constant = PPCA(2).fit(np.ones((5, 3)))
    assert constant.sigma2 == ABSOLUTE_FLOOR and constant.floored


def test_q_at_least_d_is_the_full_covariance_gaussian():
    x = low_rank_data(300, 4, 2)
    ppca = PPCA(6).fit(x)
    cov = np.cov(x.astype(np.float64), rowvar=False, bias=True)
    assert ppca.W.shape == (4, 4) and ppca.floored
    np.testing.assert_allclose(ppca.covariance(), cov, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ppca.log_prob(x[:20]), mvn_log_prob(x.astype(np.float64).mean(0), cov, x[:20]), rtol=1e-6)


def test_bad_arguments_name_the_parameter():
    with pytest.raises(vk.InputError, match=r"^n_components must be"):
        PPCA(0)
    ppca = PPCA(1).fit(low_rank_data(20, 3, 1))
    with pytest.raises(vk.InputError, match=r"^x must have 3 columns \(shape \(N, 3\)\)\. Got shape \(4, 5\) instead\.$"):
        ppca.log_prob(np.zeros((4, 5)))
    ppca.sigma2 = 0.0
    with pytest.raises(vk.InputError, match=r"^PPCA sigma2 must be a finite number > 0\. Got 0\.0 instead\.$"):
        ppca.log_prob(np.zeros((4, 3)))


# ----------------------------------------------------------------------------- inside evaluate()
def test_evaluate_reports_the_baselines_fitted_on_the_training_data():
    x_train, x_test = low_rank_data(300, 5, 2), low_rank_data(100, 5, 2, seed=1)
    model = vk.VAE(5, 2, hidden=(8,), seed=0)
    out = vk.metrics.evaluate(model, x_test, train_x=x_train, k=5, n_samples=50, permutations=1, quadrature_grid=10)
    expected = baseline_metrics(x_train, x_test, 2)
    assert out["ppca_nll"] == pytest.approx(PPCA(2).fit(x_train).nll(x_test), rel=1e-12) == expected["ppca_nll"]
    assert out["pca_mse"] == PCA(2).fit(x_train).mse(x_test) and out["pca_components"] == 2
    assert out["baselines_fitted_on"] == "train_x" and "notes" not in out
    keys = list(out)
    assert keys.index("ppca_nll") == keys.index("iwae_seconds") + 1  # next to the model's iwae_nll
    # the model's reconstruction error: decoder mean at the posterior mean, in the same units as pca_mse
    recon = model.decode(model.encode(x_test).mean).mean.detach().double().numpy()
    assert out["reconstruction_mse"] == pytest.approx(((x_test - recon) ** 2).mean(), rel=1e-6)
    alone = vk.metrics.evaluate(model, x_test, k=5, n_samples=50, permutations=1, quadrature_grid=10)
    assert alone["baselines_fitted_on"] == "x (in-sample: flatters the baselines)"
    assert alone["ppca_nll"] == pytest.approx(PPCA(2).fit(x_test).nll(x_test), rel=1e-12)


def test_the_gap_to_ppca_has_its_paired_standard_error():
    x_train, x_test = low_rank_data(300, 5, 2), low_rank_data(40, 5, 2, seed=1)
    model = vk.VAE(5, 2, hidden=(8,), seed=0)
    vk.fit(model, x_train, epochs=2, seed=0)
    out = vk.metrics.evaluate(model, x_test, train_x=x_train, k=5, n_samples=50, permutations=1, quadrature_grid=10)
    # Independently: the same IWAE draws (same seed) and PPCA's own per-row density.
    model_log_p = np.asarray(vk.metrics.iwae_log_likelihood(model, x_test, k=5, seed=0), dtype=np.float64)
    gap = PPCA(2).fit(x_train).log_prob(x_test) - model_log_p  # (40,) per-row NLL difference
    assert out["iwae_nll"] - out["ppca_nll"] == pytest.approx(gap.mean(), rel=1e-5)
    assert out["ppca_gap_se"] == pytest.approx(gap.std(ddof=1) / np.sqrt(40), rel=1e-5)
    # Paired, it is below the naive error of a difference of two independent means here.
    naive = np.hypot(out["iwae_nll_se"], PPCA(2).fit(x_train).log_prob(x_test).std(ddof=1) / np.sqrt(40))
    assert out["ppca_gap_se"] < naive
    keys = list(out)
    assert keys.index("ppca_gap_se") > keys.index("ppca_nll")
    # The point with the largest gap, and the mean gap of the others with its standard error.
    top = int(np.argmax(gap))
    others = np.delete(gap, top)
    assert out["ppca_gap_top_point"] == top
    assert out["ppca_gap_top"] == pytest.approx(gap[top], rel=1e-5)
    assert out["ppca_gap_without_top"] == pytest.approx(others.mean(), rel=1e-4)
    assert out["ppca_gap_without_top_se"] == pytest.approx(others.std(ddof=1) / np.sqrt(39), rel=1e-4)
    # Where that point lies against the training rows: the column furthest outside their range, if any.
    low, high = x_train.min(0), x_train.max(0)
    outside = (x_test[top] < low) | (x_test[top] > high)
    assert ("ppca_gap_top_column" in out) == bool(outside.any())


def test_the_largest_gap_and_its_point_outside_the_training_range():
    from vaekit.metrics import furthest_outside, largest_gap

    assert largest_gap(np.array([0.5, 9.0, -1.0])) == {
        "ppca_gap_top_point": 1,
        "ppca_gap_top": 9.0,
        "ppca_gap_without_top": -0.25,
        "ppca_gap_without_top_se": pytest.approx(0.75),  # std of (0.5, -1.0) over sqrt(2)
        "ppca_gap_whole_points": 1,  # 9 >= the total 8.5
    }
    assert "ppca_gap_without_top_se" not in largest_gap(np.array([1.0, 3.0]))  # one other point: no spread
    assert largest_gap(np.array([3.0, 2.5, -3.0]))["ppca_gap_whole_points"] == 2  # both >= the total 2.5
    assert largest_gap(np.array([1.0, -3.0, 0.5]))["ppca_gap_whole_points"] == 0  # the model ahead overall
    low, high = np.array([0.0, 10.0, 7.0]), np.array([2.0, 30.0, 7.0])  # widths 2, 20 and 0 (a constant column)
    # 3 beyond column 0 (1.5 widths) and 15 beyond column 1 (0.75 widths): column 0.
    assert furthest_outside(np.array([5.0, 45.0, 7.0]), low, high) == {
        "ppca_gap_top_column": 0,
        "ppca_gap_top_value": 5.0,
        "ppca_gap_top_train_range": [0.0, 2.0],
    }
    assert furthest_outside(np.array([1.0, -50.0, 7.0]), low, high)["ppca_gap_top_column"] == 1  # below: 3 widths
    # Any step off a constant column is infinitely far, without numpy's overflow warning (an error here).
    with np.errstate(all="raise"):
        assert furthest_outside(np.array([1.0, 20.0, 7.5]), low, high)["ppca_gap_top_column"] == 2
        two_constant = furthest_outside(np.array([1.0, 7.5, 9.0]), np.array([0.0, 7.0, 7.0]), np.array([2.0, 7.0, 7.0]))
    assert two_constant["ppca_gap_top_column"] == 2  # both infinitely far: the larger step (2 against 0.5)
    assert furthest_outside(np.array([2.0, 10.0, 7.0]), low, high) == {}  # on the edges of every range: inside


def test_standardising_model_and_baselines_share_the_users_units():
    x = low_rank_data(200, 4, 2) * np.array([1000.0, 1.0, 0.01, 1.0], dtype=np.float32)
    model = vk.VAE(4, 2, hidden=(8,), likelihood=vk.Gaussian(variance=1.0), standardize=True, seed=0)
    vk.fit(model, x, epochs=1)
    out = vk.metrics.evaluate(model, x, train_x=x, k=5, n_samples=50, permutations=1)
    # the model's likelihood is a density in the user's units: its -log p(x|z) at the decoder mean
    # matches -log N(x; mean, (scale² * variance)) per column, not the standardised one
    px = model.decode(model.encode(x).mean)
    scale = px.base_dist.scale.detach().double().numpy()
    np.testing.assert_allclose(scale[0], model.x_scale.double().numpy() * 1.0, rtol=1e-5)
    assert out["ppca_nll"] == pytest.approx(PPCA(2).fit(x).nll(x), rel=1e-12)


def test_bernoulli_model_leaves_ppca_out_with_a_note():
    x = (low_rank_data(100, 6, 2) > 0).astype(np.float32)
    model = vk.VAE(6, 2, hidden=(8,), likelihood=vk.Bernoulli(), seed=0)
    out = vk.metrics.evaluate(model, x, train_x=x, k=5, n_samples=50, permutations=1, quadrature_grid=10)
    assert "ppca_nll" not in out and "ppca_sigma2" not in out
    assert out["notes"]["ppca_nll"] == "a Gaussian density (PPCA) is not comparable to the discrete NLL of a Bernoulli likelihood"
    assert out["pca_mse"] == PCA(2).fit(x).mse(x)


def test_conditional_model_says_the_baselines_ignore_the_condition():
    x, y = vk.data.ring(200, seed=0)
    model = vk.VAE(2, 2, hidden=(8,), condition=vk.OneHot(8), seed=0)
    out = vk.metrics.evaluate(model, x, y, train_x=x, k=5, n_samples=50, permutations=1, quadrature_grid=10)
    assert out["baselines_note"].startswith("the PCA/PPCA baselines model x without the condition")
