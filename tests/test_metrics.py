"""vaekit.metrics against independent facts: closed-form linear-Gaussian models, the ring's entropy,
two-sample statistics with known population values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

import vaekit as vk
from vaekit import metrics, two_sample

RING = {"modes": 8, "radius": 3.0, "std": 0.25}


# ----------------------------------------------------------------------------- a VAE with known weights
def _pass_linear(layer: torch.nn.Linear, weight: np.ndarray, bias: np.ndarray) -> None:
    layer.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
    layer.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))


OFFSET = 20.0  # keeps every ReLU input positive (|x|, |z| < 20), so the MLPs are exactly linear


@torch.no_grad()
def _set_linear_mlp(mlp: torch.nn.Sequential, weight: np.ndarray, bias: np.ndarray) -> None:
    """Make Linear-ReLU-Linear-ReLU-Linear compute ``inputs @ weight.T + bias``."""
    first, second, last = mlp[0], mlp[2], mlp[4]
    width, d_in = first.weight.shape
    lift = np.zeros((width, d_in))
    lift[:d_in, :d_in] = np.eye(d_in)
    _pass_linear(first, lift, np.full(width, OFFSET))
    _pass_linear(second, np.eye(width), np.zeros(width))
    final = np.zeros((weight.shape[0], width))
    final[:, :d_in] = weight
    _pass_linear(last, final, bias - OFFSET * weight.sum(1))


def linear_gaussian_vae(
    w: np.ndarray, b: np.ndarray, variance: float, *, exact_posterior: bool = True, mean_shift=0.0, std_scale=1.0
) -> tuple[vk.VAE, np.ndarray]:
    """x = W z + b + noise, z ~ N(0, I): p(x) = N(b, W W^T + variance I) in closed form.

    W must have orthogonal columns so that the exact posterior is diagonal; the encoder then
    outputs it exactly (or a deliberately wrong one with ``mean_shift``/``std_scale``).
    Returns the model and the marginal covariance.
    """
    d, z = w.shape
    model = vk.VAE(d, z, hidden=(max(d, z), max(d, z)), likelihood=vk.Gaussian(variance=variance), seed=0)
    _set_linear_mlp(model.decoder.net, w, b)
    post_cov = np.linalg.inv(np.eye(z) + w.T @ w / variance)
    assert np.allclose(post_cov, np.diag(np.diag(post_cov)))
    gain = post_cov @ w.T / variance  # mean = gain (x - b)
    std = np.sqrt(np.diag(post_cov)) * (std_scale if not exact_posterior else 1.0)
    shift = 0.0 if exact_posterior else mean_shift
    enc_w = np.concatenate([gain, np.zeros((z, d))])
    enc_b = np.concatenate([-gain @ b + shift, 2 * np.log(std)])
    _set_linear_mlp(model.encoder.net, enc_w, enc_b)
    return model.eval(), w @ w.T + variance * np.eye(d)


def rotated(scales: tuple[float, float], angle: float = 0.6) -> np.ndarray:
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return rot @ np.diag(scales)


# Small models train many times faster on one thread when the CPU is shared (fixture in conftest).
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.numerics]


@pytest.fixture(scope="module")
def exact_model():
    w, b = rotated((1.5, 0.7)), np.array([0.3, -0.2])
    model, cov = linear_gaussian_vae(w, b, 0.1)
    x = stats.multivariate_normal(b, cov).rvs(400, random_state=1).astype(np.float32)
    return model, x, stats.multivariate_normal(b, cov).logpdf(x)


@pytest.fixture(scope="module")
def wrong_posterior_model():
    w, b = rotated((1.5, 0.7)), np.array([0.3, -0.2])
    model, cov = linear_gaussian_vae(w, b, 0.1, exact_posterior=False, mean_shift=np.array([0.15, -0.1]), std_scale=1.4)
    x = stats.multivariate_normal(b, cov).rvs(400, random_state=2).astype(np.float32)
    return model, x, stats.multivariate_normal(b, cov).logpdf(x)


@pytest.fixture(scope="module")
def ring_model():
    """A small VAE trained briefly on the ring (about 2 s)."""
    x, y = vk.data.ring(2000, seed=0)
    model = vk.VAE(2, 2, hidden=(64, 64), seed=0)
    vk.fit(model, x, epochs=120, monitors={}, seed=0)
    x_test, y_test = vk.data.ring(1000, seed=1)
    return model.eval(), x_test, y_test


# ----------------------------------------------------------------------------- likelihoods
def test_linear_vae_helper_is_the_linear_gaussian_model(exact_model):
    model, x, _ = exact_model
    z = np.array([[0.5, -1.0], [2.0, 3.0]], dtype=np.float32)
    expected = z @ rotated((1.5, 0.7)).T + np.array([0.3, -0.2])
    np.testing.assert_allclose(model.decode(z).mean.detach().numpy(), expected, atol=1e-4)


def test_exact_posterior_makes_every_estimator_equal_log_p(exact_model):
    model, x, log_p = exact_model
    # With q = p(z|x), every importance weight equals p(x): IWAE is exact even for k=1.
    np.testing.assert_allclose(metrics.iwae_log_likelihood(model, x, k=1, seed=3), log_p, atol=2e-3)
    np.testing.assert_allclose(metrics.iwae_log_likelihood(model, x, k=50), log_p, atol=2e-3)
    quad = metrics.quadrature_log_likelihood(model, x)
    np.testing.assert_allclose(quad.log_p, log_p, atol=2e-3)
    # The ELBO equals log p(x) in expectation (its Monte Carlo reconstruction term has noise).
    terms = metrics.elbo_terms(model, x, samples=200)
    assert abs(terms.neg_elbo.mean() + log_p.mean()) < 0.01


def test_iwae_is_above_elbo_and_rises_with_k(wrong_posterior_model):
    model, x, log_p = wrong_posterior_model
    elbo = -metrics.neg_elbo(model, x, samples=200)
    by_k = {k: metrics.log_likelihood(model, x, k=k, seed=0) for k in (5, 50, 1000)}
    single = np.stack([metrics.iwae_log_likelihood(model, x, k=1, seed=s) for s in range(20)])
    by_k[1] = single.mean()
    assert abs(by_k[1] - elbo) < 4 * single.std() / math.sqrt(single.size)  # k = 1 is the ELBO
    assert by_k[1] < by_k[5] < by_k[50] < by_k[1000]
    assert elbo < log_p.mean() - 0.1  # the wrong posterior costs a real gap ...
    assert abs(by_k[1000] - log_p.mean()) < 0.01  # ... that k=1000 closes
    assert by_k[1000] < log_p.mean() + 0.005  # a lower bound in expectation


def test_iwae_chunking_does_not_change_the_estimate(wrong_posterior_model):
    model, x, log_p = wrong_posterior_model
    small = metrics.iwae_log_likelihood(model, x[:50], k=300, rows=64)  # 1 point x 64 draws per pass
    large = metrics.iwae_log_likelihood(model, x[:50], k=300)
    assert small.shape == (50,)
    assert abs(small.mean() - large.mean()) < 0.01
    assert abs(small.mean() - log_p[:50].mean()) < 0.02


def test_quadrature_matches_closed_form_and_error_estimate_bounds_it(wrong_posterior_model):
    model, x, log_p = wrong_posterior_model
    quad = metrics.quadrature_log_likelihood(model, x, grid=200)
    assert np.abs(quad.log_p - log_p).max() < 1e-3  # the encoder plays no part
    # A sharp posterior (std ~ 0.03): a coarse grid is flagged by a large reported error, which
    # exceeds the real one once the grid starts to resolve the posterior.
    sharp, cov = linear_gaussian_vae(rotated((3.0, 2.0)), np.zeros(2), 0.01)
    xs = stats.multivariate_normal(np.zeros(2), cov).rvs(200, random_state=0).astype(np.float32)
    truth = stats.multivariate_normal(np.zeros(2), cov).logpdf(xs)
    coarse = metrics.quadrature_log_likelihood(sharp, xs, grid=100)
    assert coarse.nll_error > 0.5
    assert coarse.nll_error > np.abs(coarse.log_p - truth).mean()
    medium = metrics.quadrature_log_likelihood(sharp, xs, grid=300)
    assert np.all(np.abs(medium.log_p - truth) <= medium.error + 1e-5)
    assert medium.nll_error < 0.1
    fine = metrics.quadrature_log_likelihood(sharp, xs, grid=400)
    assert abs(fine.nll + truth.mean()) < 1e-3
    assert fine.nll_error < 0.01


def test_quadrature_needs_a_two_dimensional_latent():
    model = vk.VAE(2, 3, seed=0)
    with pytest.raises(vk.InputError, match=r"model.z_dim must be 2 for quadrature .* Got z_dim=3 instead."):
        metrics.quadrature_log_likelihood(model, np.zeros((4, 2)))


def test_iwae_approaches_quadrature_on_a_trained_model(ring_model):
    model, x, _ = ring_model
    quad = metrics.quadrature_log_likelihood(model, x)
    gaps = [quad.log_p.mean() - metrics.log_likelihood(model, x, k=k) for k in (1, 1000)]
    assert quad.nll_error < 5e-3
    assert gaps[0] > gaps[1] > -0.01
    assert gaps[1] < 0.05


CONTRACT = {
    "fixed variance": ({"likelihood": vk.Gaussian(0.1)}, "ring", None),
    "learned variance": ({"likelihood": vk.Gaussian("learned")}, "ring", None),
    "per-point variance": ({"likelihood": vk.Gaussian("per_point")}, "ring", None),
    "standardized": ({"likelihood": vk.Gaussian(0.1), "standardize": True}, "ring", None),
    "one-hot condition": ({"condition": vk.OneHot(8)}, "ring", "label"),
    "continuous condition": ({"condition": vk.Continuous(1, embed=8)}, "ring", "radius"),
    "bernoulli": ({"likelihood": vk.Bernoulli()}, "digits", None),
}


@pytest.mark.parametrize("case", list(CONTRACT))
def test_likelihood_estimates_are_ordered_for_every_model_kind(case):
    """-ELBO >= IWAE NLL >= exact NLL (quadrature), whatever the likelihood or condition."""
    kwargs, dataset, cond = CONTRACT[case]
    if dataset == "ring":
        x, y = vk.data.ring(600, seed=0)
    else:
        x, y = vk.data.digits()
        x, y = x[:600], y[:600]
    c = {None: None, "label": y, "radius": vk.data.radius(x)}[cond]
    model = vk.VAE(x.shape[1], 2, hidden=(32, 32), seed=0, **kwargs)
    vk.fit(model, x, c, epochs=20, monitors={})
    xs, cs = x[:100], None if c is None else c[:100]
    quad = metrics.quadrature_log_likelihood(model, xs, cs)
    iwae = -metrics.log_likelihood(model, xs, cs, k=500)
    elbo = metrics.neg_elbo(model, xs, cs, samples=50)
    assert quad.nll_error < 1e-3
    # In expectation; one estimate may dip below the exact value by its noise.
    assert quad.nll - 0.05 < iwae < elbo + 0.01
    assert iwae - quad.nll < 1.0


# ----------------------------------------------------------------------------- ring entropy floor
def test_ring_entropy_closed_form_and_data_log_density():
    assert metrics.ring_entropy(8, 0.25) == pytest.approx(math.log(8) + 1 + math.log(2 * math.pi * 0.0625))
    assert metrics.ring_entropy(8, 0.25) == pytest.approx(2.1447, abs=1e-4)
    x, _ = vk.data.ring(200_000, seed=5)
    nll = -vk.data.ring_log_density(x)
    se = nll.std() / math.sqrt(len(nll))
    assert abs(nll.mean() - 2.1447) < 4 * se


def test_trained_model_nll_stays_above_the_ring_entropy_floor(ring_model):
    model, x, y = ring_model
    result = metrics.evaluate(model, x, labels=y, ring=RING, k=200)
    assert result["ring_entropy"] == pytest.approx(2.1447, abs=1e-4)
    assert abs(result["true_nll"] - 2.1447) < 0.1  # this test set's own floor
    assert result["iwae_nll"] > result["true_nll"]
    assert result["quadrature_nll"] > result["true_nll"]
    assert result["neg_elbo"] >= result["iwae_nll"] - 0.01


# ----------------------------------------------------------------------------- collapse diagnostics
def test_kl_per_dim_and_active_units_of_a_model_that_ignores_one_dimension():
    w, b = rotated((1.5, 0.7), angle=0.0), np.zeros(2)
    model, _ = linear_gaussian_vae(w, b, 0.1)
    with torch.no_grad():  # z_2's posterior becomes the prior: no information, zero KL
        last = model.encoder.net[4]
        last.weight[1].zero_()
        last.bias[1] = 0.0
        last.bias[3] = 0.0
    x = np.random.default_rng(0).normal(size=(300, 2)).astype(np.float32)
    kl = metrics.kl_per_dim(model, x)
    qz = model.encode(x)
    m, s = qz.mean.detach().numpy()[:, 0].astype(float), qz.stddev.detach().numpy()[:, 0].astype(float)
    assert kl[1] == pytest.approx(0.0, abs=1e-6)
    assert kl[0] == pytest.approx(np.mean(0.5 * (s**2 + m**2 - 1 - np.log(s**2))), rel=1e-5)
    assert metrics.active_units(model, x) == 1
    np.testing.assert_allclose(metrics.latent_mean_variance(model, x), [m.var(), 0.0], rtol=1e-5, atol=1e-12)


# ----------------------------------------------------------------------------- two-sample statistics
def _brute_mmd2(x: np.ndarray, y: np.ndarray, bw: float) -> float:
    def k(a, b):
        return np.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / (2 * bw**2))

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    n, m = len(x), len(y)
    return (kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean()


def test_mmd2_is_the_unbiased_estimator():
    rng = np.random.default_rng(0)
    # float32 inputs: vaekit computes in float64 from float32 data, so the comparison is exact.
    x, y = rng.normal(size=(30, 3)).astype(np.float32), rng.normal(0.5, 1.0, size=(40, 3)).astype(np.float32)
    x, y = x.astype(np.float64), y.astype(np.float64)
    assert metrics.mmd2(x, y, bandwidth=1.3) == pytest.approx(_brute_mmd2(x, y, 1.3), rel=1e-10)
    pooled = np.concatenate([x, y])
    d = np.sqrt(((pooled[:, None] - pooled[None]) ** 2).sum(-1))
    assert metrics.median_bandwidth(x, y) == pytest.approx(np.median(d[np.triu_indices(70, 1)]))


def test_mmd2_matches_population_value_for_shifted_gaussians():
    # MMD² of N(0, 1) vs N(mu, 1) with kernel width l: 2 sqrt(l²/(l²+2)) (1 - exp(-mu²/(2(l²+2)))).
    rng = np.random.default_rng(1)
    mu, bw = 1.0, 1.0
    x, y = rng.normal(size=(3000, 1)), rng.normal(mu, size=(3000, 1))
    expected = 2 * math.sqrt(bw**2 / (bw**2 + 2)) * (1 - math.exp(-(mu**2) / (2 * (bw**2 + 2))))
    assert metrics.mmd2(x, y, bandwidth=bw) == pytest.approx(expected, abs=0.01)


def test_mmd_of_a_sample_with_itself_is_about_zero():
    x = np.random.default_rng(2).normal(size=(500, 2))
    assert abs(metrics.mmd2(x, x)) < 2.0 / 500 + 1e-9


def test_permuted_statistics_are_the_mmd_of_the_relabelled_split():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(12, 2)), rng.normal(size=(9, 2))
    pooled = torch.as_tensor(np.concatenate([x, y]))
    kernel = torch.exp(-torch.cdist(pooled, pooled).square() / 2.0)
    kernel.fill_diagonal_(0.0)
    order = rng.permutation(21)
    member = torch.zeros(1, 21, dtype=torch.float64)
    member[0, order[:12]] = 1.0
    got = float(two_sample._mmd_from_kernel(kernel, member, 12, 9)[0])
    p = pooled.numpy()
    assert got == pytest.approx(_brute_mmd2(p[order[:12]], p[order[12:]], 1.0), rel=1e-10)


def test_mmd_p_value_is_uniform_under_the_null_and_small_under_an_alternative():
    rng = np.random.default_rng(4)
    p_null = [
        metrics.mmd_test(rng.normal(size=(40, 2)), rng.normal(size=(40, 2)), permutations=99, seed=i)[1] for i in range(300)
    ]
    assert stats.kstest(p_null, "uniform").pvalue > 0.001
    assert 0.02 < np.mean(np.array(p_null) <= 0.05) < 0.1
    _, p_alt = metrics.mmd_test(rng.normal(size=(200, 2)), rng.normal(0.6, 1.0, size=(200, 2)), permutations=199)
    assert p_alt == pytest.approx(1 / 200)


def test_energy_distance_matches_population_value():
    # X ~ N(0,1), Y ~ N(mu,1): E|X-Y| = 2/sqrt(pi) exp(-mu²/4) + mu (1 - 2 Phi(-mu/sqrt 2)); E|X-X'| = 2/sqrt(pi).
    rng = np.random.default_rng(5)
    mu = 1.5
    x, y = rng.normal(size=(3000, 1)), rng.normal(mu, size=(3000, 1))
    cross = 2 / math.sqrt(math.pi) * math.exp(-(mu**2) / 4) + mu * (1 - 2 * stats.norm.cdf(-mu / math.sqrt(2)))
    assert metrics.energy_distance(x, y) == pytest.approx(2 * cross - 2 * 2 / math.sqrt(math.pi), abs=0.1)


def test_energy_distance_is_scipys_with_unbiased_within_sample_terms():
    # scipy returns sqrt of the V-statistic 2 mean|x-y| - mean|x-x'| - mean|y-y'| (diagonals included).
    rng = np.random.default_rng(6)
    x = rng.normal(size=(50, 1)).astype(np.float32).astype(np.float64)
    y = rng.normal(0.3, 2.0, size=(70, 1)).astype(np.float32).astype(np.float64)
    sxx, syy = np.abs(x - x.T).sum(), np.abs(y - y.T).sum()
    v_stat = stats.energy_distance(x[:, 0], y[:, 0]) ** 2
    expected = v_stat + sxx / 50**2 - sxx / (50 * 49) + syy / 70**2 - syy / (70 * 69)
    assert metrics.energy_distance(x, y) == pytest.approx(expected, rel=1e-9)
    assert abs(metrics.energy_distance(x, x)) < 0.05


def test_two_sample_input_errors():
    with pytest.raises(vk.InputError, match=r"y must have 2 columns \(shape \(N, 2\)\). Got shape \(5, 3\) instead."):
        metrics.mmd2(np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(vk.InputError, match="x and y must hold at least 2 rows each. Got 1 and 5 rows instead."):
        metrics.energy_distance(np.zeros((1, 2)), np.zeros((5, 2)))


def test_diversity_of_the_ring_is_its_closed_form():
    x, _ = vk.data.ring(100_000, seed=0)
    assert metrics.diversity(x) == pytest.approx(3.0**2 / 2 + 0.25**2, rel=0.01)


# ----------------------------------------------------------------------------- mode coverage
def test_mode_coverage_counts_modes_and_near_samples():
    centres = vk.data.ring_centres(8, 3.0)
    near = np.concatenate([centres[[0, 0, 2]], centres[[5]] + [0.7, 0.0]])  # 0.7 = 2.8 std: still near
    far = np.array([[0.0, 0.0], [10.0, 0.0]])  # the origin and a far point hit nothing
    got = metrics.mode_coverage(np.concatenate([near, far]), 8, 3.0, 0.25)
    assert got["modes_covered"] == 3
    assert got["mode_coverage"] == 3 / 8
    assert got["within_3std"] == pytest.approx(4 / 6)
    shares = np.array([2, 1, 1]) / 4
    assert got["mode_balance"] == pytest.approx(-(shares * np.log(shares)).sum() / math.log(8))


def test_mode_adherence_checks_the_requested_mode():
    centres = vk.data.ring_centres(8, 3.0)
    samples = centres[[1, 2, 3, 3]]
    assert metrics.mode_adherence(samples, [1, 2, 3, 4]) == pytest.approx(0.75)


# ----------------------------------------------------------------------------- evaluate()
def test_evaluate_unconditional_ring_reports_every_applicable_metric(ring_model):
    model, x, y = ring_model
    result = metrics.evaluate(model, x, labels=y, ring=RING, k=50, n_samples=500)
    expected = {
        "n_points", "x_dim", "z_dim", "neg_elbo", "reconstruction_nll", "kl", "kl_per_dim", "latent_mean_variance",
        "active_units", "iwae_nll", "iwae_nll_se", "iwae_k", "iwae_seconds", "quadrature_nll", "quadrature_error",
        "quadrature_grid", "diversity", "data_diversity", "mmd2", "mmd_p_value", "mmd_bandwidth", "energy_distance",
        "true_nll", "ring_entropy", "modes_covered", "mode_coverage", "within_3std", "mode_balance", "latent_knn_accuracy",
        "reconstruction_mse", "pca_mse", "pca_components", "ppca_nll", "ppca_sigma2", "ppca_sigma2_floored",
        "ppca_gap_se", "ppca_gap_top_point", "ppca_gap_top", "ppca_gap_without_top", "ppca_gap_without_top_se",
        "ppca_gap_whole_points", "baselines_fitted_on",
    }  # fmt: skip
    # No ppca_gap_top_column: the baselines are fitted on x itself, so no point lies outside their range.
    assert set(result) == expected
    json.loads(json.dumps(result))  # plain JSON types only
    assert result["neg_elbo"] == pytest.approx(result["reconstruction_nll"] + result["kl"])
    assert result["kl"] == pytest.approx(sum(result["kl_per_dim"]))
    assert result["iwae_k"] == 50 and result["n_points"] == 1000
    assert result["data_diversity"] == pytest.approx(metrics.diversity(x))
    assert 0 < result["mmd_p_value"] <= 1
    assert result["modes_covered"] >= 6


def test_evaluate_is_reproducible(ring_model):
    model, x, _ = ring_model
    a = metrics.evaluate(model, x[:200], k=20, n_samples=200, seed=3)
    b = metrics.evaluate(model, x[:200], k=20, n_samples=200, seed=3)
    a.pop("iwae_seconds"), b.pop("iwae_seconds")
    assert a == b


def test_evaluate_conditional_models():
    x, y = vk.data.ring(600, seed=0)
    onehot = vk.VAE(2, 2, hidden=(32, 32), condition=vk.OneHot(8), seed=0)
    vk.fit(onehot, x, y, epochs=40, monitors={})
    result = metrics.evaluate(onehot, x, y, ring=RING, k=10, n_samples=400)
    assert {"condition_accuracy", "mode_adherence", "quadrature_nll"} <= set(result)
    assert "modes_covered" not in result  # coverage describes unconditional samples
    assert result["condition_accuracy"] > 0.25  # the label steers the samples (chance is 1/8)

    r = vk.data.radius(x)
    cont = vk.VAE(2, 3, hidden=(32, 32), condition=vk.Continuous(1, embed=8), seed=0)
    vk.fit(cont, x, r, epochs=40, monitors={})
    result = metrics.evaluate(cont, x, r, ring=RING, k=10, n_samples=400)
    assert "quadrature_nll" not in result  # z_dim = 3
    assert result["condition_mae"] <= result["condition_rmse"]
    own = metrics.evaluate(cont, x, r, k=10, n_samples=400, condition_fn=lambda s: np.linalg.norm(s, axis=1))
    assert own["condition_mae"] == pytest.approx(result["condition_mae"], rel=1e-5)


def test_trained_conditional_models_follow_their_conditions():
    x, y = vk.data.ring(2000, seed=0)
    x_test, y_test = vk.data.ring(1000, seed=1)
    onehot = vk.VAE(2, 2, condition=vk.OneHot(8), seed=0)
    vk.fit(onehot, x, y, epochs=150, monitors={})
    result = metrics.evaluate(onehot, x_test, y_test, ring=RING, k=20, n_samples=1000)
    assert result["mode_adherence"] > 0.95 and result["condition_accuracy"] > 0.95
    # Its likelihood is p(x | label), whose floor is one mode's entropy, 1 + log(2 pi 0.25²).
    assert result["ring_entropy"] == pytest.approx(1 + math.log(2 * math.pi * 0.0625))
    assert result["ring_entropy"] - 0.1 < result["true_nll"] < result["iwae_nll"]

    radius = vk.VAE(2, 2, condition=vk.Continuous(1), seed=0)
    vk.fit(radius, x, vk.data.radius(x), epochs=150, monitors={})
    result = metrics.evaluate(radius, x_test, vk.data.radius(x_test), ring=RING, k=20, n_samples=1000)
    assert result["condition_mae"] < 0.6  # requested vs generated radius; the ring's radii spread 2.3 .. 3.8
    assert "true_nll" not in result


def test_evaluate_input_errors(ring_model):
    model, x, _ = ring_model
    with pytest.raises(
        vk.InputError, match=r"ring may only have the keys 'modes', 'radius', 'std'. Got the key\(s\) \['radii'\] instead."
    ):
        metrics.evaluate(model, x, ring={"radii": 3})
    with pytest.raises(vk.InputTypeError, match="ring must be a dict"):
        metrics.evaluate(model, x, ring=8)
    with pytest.raises(vk.InputError, match=r"labels must have one entry per row of x \(1000\). Got \[1, 2, 3\] instead."):
        metrics.evaluate(model, x, labels=[1, 2, 3], k=2, n_samples=10)
    with pytest.raises(vk.InputError, match="x must hold at least 2 test points for evaluate\\(\\). Got 1 instead."):
        metrics.evaluate(model, x[:1])
    assert "mmd_p_value" not in metrics.evaluate(model, x[:50], k=2, n_samples=20, permutations=0)
    with pytest.raises(vk.InputError, match="condition must be None: this model is unconditional"):
        metrics.evaluate(model, x, np.zeros(1000))


@pytest.mark.slow
def test_iwae_k1000_on_10000_points_is_batched(ring_model):
    import time

    model, _, _ = ring_model
    x, _ = vk.data.ring(10_000, seed=7)
    start = time.perf_counter()
    log_p = metrics.iwae_log_likelihood(model, x, k=1000)
    seconds = time.perf_counter() - start
    assert log_p.shape == (10_000,) and np.isfinite(log_p).all()
    assert seconds < 300
