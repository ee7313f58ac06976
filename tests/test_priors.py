"""Learned priors (MixturePrior, VampPrior) against facts computed independently of vaekit's code.

Densities are checked by 2-D quadrature and by brute-force averages of the encoder's Gaussians
written with torch.distributions.Normal; draws by the mixture's exact mean and covariance.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.distributions import Normal

import vaekit as vk
from vaekit.distributions import draw, kl, prior_from_config
from vaekit.objectives import ELBO


def _mixture(seed: int = 0) -> vk.VAE:
    """A VAE whose MixturePrior has random, unequal means, scales and weights (float64)."""
    model = vk.VAE(2, 2, hidden=(8,), prior=vk.MixturePrior(4), seed=seed).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        net = model.prior_net
        net.means.copy_(torch.rand(4, 2, generator=g, dtype=torch.float64) * 4 - 2)
        net.log_scales.copy_(torch.rand(4, 2, generator=g, dtype=torch.float64) * 1.2 - 1.0)  # scales 0.37 .. 1.2
        net.logits.copy_(torch.randn(4, generator=g, dtype=torch.float64))
    return model


def _vamp(condition=None, *, standardize: bool = False, x_dim: int = 3, seed: int = 0) -> vk.VAE:
    # init_scale 2 spreads the pseudo-inputs so that the components do not all sit on one point.
    prior = vk.VampPrior(5, init_scale=2.0)
    model = vk.VAE(x_dim, 2, hidden=(16,), prior=prior, condition=condition, standardize=standardize, seed=seed).double()
    # A fresh encoder maps every input near N(0, I); stretching its mean outputs and narrowing its
    # variances makes the prior a visibly multimodal mixture that N(0, I) cannot pass for.
    last = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight[:2] *= 6.0
        last.bias[2:] -= 2.0
    return model


def _components(model: vk.VAE) -> tuple[torch.Tensor, torch.Tensor]:
    """Means and stds (K, Z) of q(z | u_k, c_k), read from the encoder's raw output (mean, log-variance)."""
    net = model.prior_net
    c = net.pseudo_conditions
    if c is not None and isinstance(model.condition, vk.OneHot):
        c = torch.exp(c) / torch.exp(c).sum(1, keepdim=True)
    out = model.encoder(net.pseudo_inputs, c)
    mean, logvar = out[:, : model.z_dim], out[:, model.z_dim :]
    return mean, (0.5 * logvar).exp()


def _brute_force_log_p(model: vk.VAE, z: torch.Tensor) -> torch.Tensor:
    """log (1/K) sum_k N(z; m_k, diag s_k^2) as a plain average of densities: (N,)."""
    mean, std = _components(model)
    densities = Normal(mean, std).log_prob(z[:, None, :]).sum(-1).exp()  # (N, K)
    return densities.mean(1).log()


def _integral(model: vk.VAE) -> float:
    """Midpoint-rule integral of exp(prior.log_prob) over a grid covering every component to 10 std."""
    pz = model.prior()
    loc = pz.component_distribution.base_dist.loc.detach()  # (K, 2)
    scale = pz.component_distribution.base_dist.scale.detach()
    assert float(scale.min()) > 0.05, "a component too narrow for this grid"
    lo, hi = (loc - 10 * scale).min(0).values, (loc + 10 * scale).max(0).values
    h = float(scale.min()) / 4
    axes = [torch.arange(float(a), float(b), h, dtype=torch.float64) + h / 2 for a, b in zip(lo, hi)]
    z1, z2 = torch.meshgrid(*axes, indexing="ij")
    z = torch.stack([z1.flatten(), z2.flatten()], 1)
    with torch.no_grad():
        return float(pz.log_prob(z).exp().sum() * h * h)


# ----------------------------------------------------------------------------- densities
@pytest.mark.parametrize("build", [_mixture, lambda: _vamp(), lambda: _vamp(vk.OneHot(3), standardize=True)])
def test_prior_density_integrates_to_one(build):
    # The grid covers every component to 10 std (tail mass < 1e-20). For a Gaussian the midpoint
    # rule is spectrally accurate (Poisson summation: relative error ~ 2 exp(-2 pi^2 s^2 / h^2)),
    # so with h = s_min / 4 the error is exp(-300): what is left is float64 rounding of the
    # ~1e5-term sum (< 1e-10). A missing or doubled normaliser (1/K, weights, 2 pi) is off by > 0.2.
    assert _integral(build()) == pytest.approx(1.0, abs=1e-8)


@pytest.mark.parametrize(
    "condition, standardize",
    [(None, False), (None, True), (vk.OneHot(3), False), (vk.Continuous(2, embed=4), True)],
    ids=["plain", "standardized", "onehot", "continuous-standardized"],
)
def test_vamp_log_prob_is_the_average_of_the_encoder_densities(condition, standardize):
    model = _vamp(condition, standardize=standardize)
    with torch.no_grad():  # data statistics far from (0, 1): they must not reach the pseudo-inputs
        model.set_scaling(torch.randn(100, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 5 + 3)
    z = torch.randn(50, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2
    with torch.no_grad():
        expected = _brute_force_log_p(model, z)
        assert torch.allclose(model.prior().log_prob(z), expected, rtol=0, atol=1e-10)


def test_vamp_prior_does_not_depend_on_the_data_units():
    # Pseudo-inputs live in the network's input units: learning standardisation statistics (or
    # the same data in other units) leaves p(z) as it is.
    model = _vamp(standardize=True)
    z = torch.randn(20, 2, dtype=torch.float64)
    with torch.no_grad():
        before = model.prior().log_prob(z)
        model.set_scaling(torch.randn(100, 3, dtype=torch.float64) * 1000 + 50)
        assert float(model.x_scale.min()) > 100  # the statistics did change
        assert torch.equal(model.prior().log_prob(z), before)


def test_onehot_pseudo_conditions_are_mixtures_of_labels():
    model = _vamp(vk.OneHot(3))
    with torch.no_grad():
        model.prior_net.pseudo_conditions.copy_(torch.tensor([[50.0, 0, 0]] * 5, dtype=torch.float64))
        # softmax of (50, 0, 0) is label 0 to 1e-21: the prior's components are q(z | u_k, label 0).
        onehot = torch.nn.functional.one_hot(torch.zeros(5, dtype=torch.long), 3).double()
        out = model.encoder(model.prior_net.pseudo_inputs, onehot)
        qz = Normal(out[:, :2], (0.5 * out[:, 2:]).exp())
        z = torch.randn(10, 2, dtype=torch.float64)
        expected = qz.log_prob(z[:, None, :]).sum(-1).exp().mean(1).log()
        assert torch.allclose(model.prior().log_prob(z), expected, atol=1e-10)


# ----------------------------------------------------------------------------- training
@pytest.mark.parametrize("condition", [None, vk.OneHot(3), vk.Continuous(1, embed=4)], ids=["plain", "onehot", "continuous"])
def test_pseudo_inputs_and_conditions_learn_from_the_elbo(condition):
    model = _vamp(condition, x_dim=2).float()
    x, labels = vk.data.ring(240, seed=0)
    c = None if condition is None else (labels % 3 if isinstance(condition, vk.OneHot) else vk.data.radius(x))
    xt, ct = model.prepare_x(x), model.prepare_condition(c, len(x))
    torch.manual_seed(0)
    ELBO()(model, xt, ct).loss.mean().backward()
    learned = [model.prior_net.pseudo_inputs] + ([] if condition is None else [model.prior_net.pseudo_conditions])
    for p in learned:
        assert p.grad is not None and float(p.grad.abs().min()) > 0  # every entry gets a gradient
    before = [p.detach().clone() for p in learned]
    vk.fit(model, x, c, epochs=3, batch_size=64, seed=0)
    for p, old in zip(learned, before):
        assert float((p.detach() - old).abs().min()) > 1e-5  # every entry moved


def test_kl_with_a_vamp_prior_is_the_monte_carlo_estimate():
    model = _vamp()
    x = torch.randn(6, 3, dtype=torch.float64)
    qz, pz = model.encode_batch(x), model.prior()
    z = qz.rsample()
    value, per_dim = kl(qz, pz, z)
    assert per_dim is None
    assert torch.allclose(value, qz.log_prob(z) - _brute_force_log_p(model, z), atol=1e-10)


# ----------------------------------------------------------------------------- sampling
def _exact_moments(model: vk.VAE) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (Z,) and covariance (Z, Z) of the prior mixture, from its parameters."""
    if isinstance(model.prior_spec, vk.VampPrior):
        mean, std = _components(model)
        weights = torch.full((mean.shape[0],), 1.0 / mean.shape[0], dtype=torch.float64)
    else:
        net = model.prior_net
        mean, std, weights = net.means, net.log_scales.exp(), net.logits.softmax(0)
    mu = weights @ mean
    second = sum(w * (torch.diag(s**2) + torch.outer(m, m)) for w, m, s in zip(weights, mean, std))
    return mu, second - torch.outer(mu, mu)


@pytest.mark.parametrize("build", [_mixture, lambda: _vamp()], ids=["mixture", "vamp"])
def test_prior_draws_are_seeded_and_have_the_mixture_moments(build):
    model = build()
    n = 200_000
    with torch.no_grad():
        pz = model.prior()
        z = draw(pz, (n,), torch.Generator().manual_seed(3))
        assert torch.equal(z, draw(pz, (n,), torch.Generator().manual_seed(3)))
        assert not torch.equal(z[:100], draw(pz, (100,), torch.Generator().manual_seed(4)))
        mu, cov = _exact_moments(model)
    # Standard errors of the sample mean and of each sample covariance entry, from the draws.
    centred = z - z.mean(0)
    products = centred[:, :, None] * centred[:, None, :]  # (n, Z, Z)
    se_mean = (z.var(0) / n).sqrt()
    se_cov = (products.var(0) / n).sqrt()
    assert ((z.mean(0) - mu).abs() < 5 * se_mean).all()
    assert ((products.mean(0) - cov).abs() < 5 * se_cov).all()
    # The covariance is far from a standard normal's: the check can tell the priors apart.
    assert float((cov - torch.eye(2, dtype=torch.float64)).abs().max()) > 20 * float(se_cov.max())


@pytest.mark.parametrize("build", [_mixture, lambda: _vamp(vk.OneHot(3))], ids=["mixture", "vamp-onehot"])
def test_model_sample_decodes_seeded_prior_draws(build):
    model = build()
    c = None if model.condition is None else 1
    first = model.sample(500, c, seed=7)
    assert np.array_equal(first, model.sample(500, c, seed=7))
    assert not np.array_equal(first, model.sample(500, c, seed=8))
    with torch.no_grad():
        z = draw(model.prior(), (500,), torch.Generator().manual_seed(7))
        # decode_batch, not decode: decode's input check passes z through float32.
        cb = model.prepare_condition(c, 500)
        assert np.array_equal(first, model.decode_batch(z, cb).mean.numpy())


# ----------------------------------------------------------------------------- files and specs
def test_vamp_prior_survives_save_and_load(tmp_path):
    model = _vamp(vk.OneHot(3), standardize=True).float()  # files hold float32
    with torch.no_grad():
        model.set_scaling(torch.randn(40, 3) * 3 + 1)
    model.save(tmp_path / "m")
    loaded = vk.load(tmp_path / "m")
    z = torch.randn(30, 2)
    with torch.no_grad():
        assert torch.equal(loaded.prior().log_prob(z), model.prior().log_prob(z))
    assert loaded.prior_spec == vk.VampPrior(5, init_scale=2.0)


def test_vamp_spec_round_trips_and_refuses_bad_values():
    spec = vk.VampPrior(components=7, init_scale=0.5)
    assert spec.to_config() == {"type": "vamp", "components": 7, "init_scale": 0.5}
    assert prior_from_config(spec.to_config()) == spec
    with pytest.raises(vk.InputError, match=r"VampPrior.components must be .*Got 0 instead"):
        vk.VampPrior(0)
    with pytest.raises(vk.InputError, match=r"VampPrior.init_scale must be .*Got -1"):
        vk.VampPrior(3, init_scale=-1.0)
    assert vk.VampPrior() == vk.VampPrior(components=50, init_scale=1.0)
