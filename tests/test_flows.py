"""Flow posteriors (vaekit.flows), checked against independent facts.

Log-determinants against torch.logdet of autograd Jacobians, inverses against the forward map,
normalisation against quadrature, cached log-densities against recomputation through the
inverse, gradients of the inverse against finite differences (gradcheck).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.autograd.functional import jacobian

import vaekit as vk
from vaekit import metrics, model_settings
from vaekit.flows import PLANAR_MIN_SLOPE, IAFHead, IAFTransform, MaskedStep, PlanarHead, PlanarTransform
from vaekit.posteriors import DiagonalGaussianHead

Z = 3


def randomise(module: torch.nn.Module, scale: float, seed: int) -> torch.nn.Module:
    """Overwrite every parameter (the zero-initialised last layers included) with N(0, scale^2) draws."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * scale)
    return module


def iaf_head(z_dim: int = Z, steps: int = 3, context: int = 4, *, scale: float = 0.7, seed: int = 0) -> IAFHead:
    return randomise(IAFHead(vk.IAF(steps=steps, context=context, hidden=8), z_dim).double(), scale, seed)


def encoder_output(width: int, batch: int, *, scale: float = 1.0, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, width, generator=generator, dtype=torch.float64) * scale


def planar_posterior(z_dim: int = Z, steps: int = 4, batch: int = 1, *, scale: float = 1.0, seed: int = 1):
    spec = vk.Planar(steps=steps)
    return PlanarHead(spec, z_dim)(encoder_output(spec.out_features(z_dim), batch, scale=scale, seed=seed))


def iaf_posterior(z_dim: int = Z, batch: int = 1, *, scale: float = 0.7, seed: int = 0):
    head = iaf_head(z_dim, scale=scale, seed=seed)
    return head(encoder_output(2 * z_dim + 4, batch, scale=scale, seed=seed + 1))


def points(n: int, z_dim: int = Z, *, scale: float = 1.5, seed: int = 2) -> torch.Tensor:
    return torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale


def autograd_log_det(step, z: torch.Tensor) -> torch.Tensor:
    """log |det J| of ``step.forward`` at one point z (Z,), from the autograd Jacobian."""
    jac = jacobian(lambda v: step.forward(v[None])[0][0], z)  # (Z, Z)
    sign, log_abs = torch.linalg.slogdet(jac)
    assert sign > 0, "an orientation-reversing Jacobian: the step is not a monotone flow"
    return log_abs


def single_point_steps(qz) -> list:
    """The steps of a batch-of-one posterior."""
    assert qz.batch_shape == (1,)
    return qz.steps


# ----------------------------------------------------------------------------- log-determinants
@pytest.mark.parametrize("make", [iaf_posterior, planar_posterior], ids=["iaf", "planar"])
def test_each_step_log_det_equals_the_autograd_jacobian(make):
    for seed in range(3):
        qz = make(seed=seed)
        for step in single_point_steps(qz):
            for z in points(4, seed=seed + 10):
                _, log_det = step.forward(z[None])
                expected = torch.logdet(jacobian(lambda v, s=step: s.forward(v[None])[0][0], z))
                assert torch.allclose(log_det[0], expected, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("make", [iaf_posterior, planar_posterior], ids=["iaf", "planar"])
def test_flow_log_prob_is_base_density_minus_log_det_of_the_whole_map(make):
    # Change of variables for the composed map, with its Jacobian from autograd.
    qz = make(seed=4)

    def whole(z0):
        z = z0[None]
        for step in qz.steps:
            z, _ = step.forward(z)
        return z[0]

    for z0 in points(5, seed=5):
        z = whole(z0)
        expected = qz.base.log_prob(z0[None]) - torch.logdet(jacobian(whole, z0))
        assert torch.allclose(qz.log_prob(z[None]), expected, atol=1e-10)


def test_iaf_steps_are_autoregressive_in_alternating_orders():
    # The Jacobian of step k is lower triangular in the order 0..Z-1 for even k and upper for odd
    # k (the reversed order): entries above (below) the diagonal are exactly zero.
    qz = iaf_posterior(z_dim=4)
    for k, step in enumerate(qz.steps):
        jac = jacobian(lambda v, s=step: s.forward(v[None])[0][0], points(1, 4)[0])
        off = torch.triu(jac, 1) if k % 2 == 0 else torch.tril(jac, -1)
        assert torch.equal(off, torch.zeros_like(off))
        assert off.numel() and (torch.tril(jac, -1) if k % 2 == 0 else torch.triu(jac, 1)).abs().sum() > 0


# ----------------------------------------------------------------------------- inverses
@pytest.mark.parametrize("make", [iaf_posterior, planar_posterior], ids=["iaf", "planar"])
@pytest.mark.parametrize("sample_shape", [(), (7,), (2, 3)])
def test_inverse_after_forward_returns_the_input(make, sample_shape):
    qz = make(batch=5, seed=6)
    z0 = qz.base.sample(sample_shape)  # (*S, 5, Z)
    for step in qz.steps:
        y, log_det = step.forward(z0)
        back, inverse_log_det = step.inverse(y)
        assert back.shape == z0.shape and torch.allclose(back, z0, atol=1e-10)
        assert torch.allclose(inverse_log_det, log_det, atol=1e-10)


def test_planar_constraint_and_invertibility_hold_for_adversarial_parameters():
    # u and w over six orders of magnitude, u anti-parallel to w (w.u very negative), w = 0.
    generator = torch.Generator().manual_seed(7)
    cases = []
    for _ in range(200):
        w = torch.randn(1, Z, generator=generator, dtype=torch.float64) * 10 ** (6 * torch.rand(1, generator=generator) - 3)
        u = torch.randn(1, Z, generator=generator, dtype=torch.float64) * 10 ** (6 * torch.rand(1, generator=generator) - 3)
        cases.append((u, w))
        cases.append((-u.abs().sum() * w / w.norm(), w))  # w.u = -|u|_1 |w|
    cases.append((torch.randn(1, Z, dtype=torch.float64), torch.zeros(1, Z, dtype=torch.float64)))
    for u, w in cases:
        b = torch.randn(1, generator=generator, dtype=torch.float64) * 3
        step = PlanarTransform(u, w, b)
        wu_hat = (w * step.u_hat).sum(-1)
        assert bool(step.c >= -1 + PLANAR_MIN_SLOPE) and bool(wu_hat > -1)
        assert torch.allclose(wu_hat, step.c, rtol=1e-9, atol=1e-9 * (1 + step.u_hat.abs().max() * w.abs().max()))
        # Probe where tanh' is largest (w.z + b = 0, the only place det can approach 0) and elsewhere.
        unit = w / w.norm() if w.norm() > 0 else w
        along = (-b / w.norm()) * unit if w.norm() > 0 else torch.zeros_like(w)
        for z in [along[0], along[0] + points(1, seed=8)[0], points(1, seed=9, scale=30.0)[0]]:
            # The Jacobian I + (1 - t^2) u_hat w^T holds u_hat as rounded (its w.u_hat differs from c
            # by rounding), and its LU rounds at the scale of its entries, |u_hat| |w|: both errors
            # move log |det| by about their size over |det|, which may be as small as 1e-4.
            log_det = step.forward(z[None])[1][0]
            scale = 1 + float(step.u_hat.norm() * w.norm())
            slack = 1e-8 + (2 * float((wu_hat - step.c).abs()) + 1e-14 * scale**2) / math.exp(float(log_det))
            assert abs(float(autograd_log_det(step, z) - log_det)) < slack
            y, _ = step.forward(z[None])
            back, _ = step.inverse(y)
            assert torch.allclose(back[0], z, atol=1e-8 * (1 + float(y.abs().max())))


# ----------------------------------------------------------------------------- steps built at once
def test_planar_head_constrains_all_steps_at_once_as_each_step_alone():
    # The head constrains (B, steps, Z) in one call (fewer operations per training step); every
    # step must equal PlanarTransform built from its own raw u, w, b, a w = 0 step included.
    spec, width = vk.Planar(steps=5), 2 * Z + 1
    h = encoder_output(spec.out_features(Z), 4, scale=3.0, seed=21)
    h[1, 2 * Z + 2 * width + Z : 2 * Z + 2 * width + 2 * Z] = 0.0  # point 1, step 2: w = 0 (the identity)
    qz = PlanarHead(spec, Z)(h)
    assert len(qz.steps) == 5
    for k, step in enumerate(qz.steps):
        raw = h[:, 2 * Z + k * width : 2 * Z + (k + 1) * width]
        alone = PlanarTransform(raw[:, :Z], raw[:, Z : 2 * Z], raw[:, 2 * Z])
        for name in ("u_hat", "one_plus_c", "c", "w", "b"):
            torch.testing.assert_close(getattr(step, name), getattr(alone, name), rtol=1e-14, atol=0.0, msg=f"{k} {name}")
    assert torch.equal(qz.steps[2].u_hat[1], torch.zeros(Z, dtype=torch.float64))
    assert torch.equal(qz.steps[2].c[1], torch.zeros((), dtype=torch.float64))


def test_iaf_context_terms_from_one_product_equal_each_steps_own_layer():
    head = iaf_head(steps=3, context=4)
    h = encoder_output(2 * Z + 4, 5, seed=22)
    for step in head(h).steps:
        torch.testing.assert_close(step.h_term, step.net.h_in(h[:, 2 * Z :]), rtol=1e-14, atol=1e-14)


def test_a_float64_value_under_a_float32_flow_gets_its_float32_log_density():
    # metrics.quadrature_log_likelihood asks the prior for log p of a float64 grid; a VampPrior of a
    # flow posterior is a mixture of flows whose IAF networks refused the mixed dtypes.
    for spec, width in (
        (vk.IAF(steps=2, context=3, hidden=6), 2 * Z + 3),
        (vk.Planar(steps=2), vk.Planar(steps=2).out_features(Z)),
    ):
        head = randomise(spec.build(Z), 0.5, seed=23)  # float32
        qz = head(encoder_output(width, 4, seed=24).float())
        z = points(4, seed=25)  # float64
        assert torch.equal(qz.log_prob(z), qz.log_prob(z.float()))
        assert qz.log_prob(z).dtype == torch.float32 and bool(torch.isfinite(qz.log_prob(z)).all())


# ----------------------------------------------------------------------------- IAF at initialisation
def test_zero_initialised_iaf_equals_the_diagonal_gaussian_posterior():
    head = IAFHead(vk.IAF(steps=3, context=5), Z)  # as built: every step's last layer is zero
    h = encoder_output(2 * Z + 5, 6).float()
    flow, diagonal = head(h), DiagonalGaussianHead()(h[:, : 2 * Z])
    for shape in [(), (4,)]:
        torch.manual_seed(11)
        a = flow.rsample(shape)
        torch.manual_seed(11)
        b = diagonal.rsample(shape)
        assert torch.equal(a, b)
        assert torch.equal(flow.log_prob(a), diagonal.log_prob(a))
        other = b * 2 + 1  # any z, through the inverse
        assert torch.equal(flow.log_prob(other), diagonal.log_prob(other))


# ----------------------------------------------------------------------------- normalisation
@pytest.mark.parametrize("make", [iaf_posterior, planar_posterior], ids=["iaf", "planar"])
def test_log_prob_integrates_to_one_in_two_dimensions(make):
    # Midpoint rule on a 600 x 600 grid over [-12, 12]^2 (h = 0.04). With a base scale of about 1
    # and bounded maps the density is smooth on the scale of h, so the rule's error O(h^2 q'') is
    # ~1e-4 at most; the mass beyond |z| = 12 is below 1e-6. A wrong log-det or base density
    # (by even a constant 1%) would miss 1 by far more than the 3e-3 allowed.
    qz = make(z_dim=2, scale=0.4, seed=12)  # non-trivial, yet with its mass inside the grid
    n, bound = 600, 12.0
    h = 2 * bound / n
    axis = torch.linspace(-bound + h / 2, bound - h / 2, n, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)[:, None, :]  # (n^2, 1, 2)
    with torch.no_grad():
        mass = float(qz.log_prob(grid).exp().sum() * h * h)
    assert abs(mass - 1.0) < 3e-3, mass
    # And the posterior is not the base Gaussian in disguise: the flow moved its density.
    with torch.no_grad():
        gap = (qz.log_prob(grid) - qz.base.log_prob(grid)).abs().max()
    assert gap > 0.1


# ----------------------------------------------------------------------------- the cache
@pytest.mark.parametrize("make", [iaf_posterior, planar_posterior], ids=["iaf", "planar"])
def test_log_prob_of_a_draw_equals_recomputation_through_the_inverse(make, monkeypatch):
    qz = make(batch=4, seed=13)
    z = qz.rsample((5,))  # (K, B, Z) as IWAE draws
    assert z.shape == (5, 4, Z)
    inverted = []
    original = type(qz).log_prob_by_inverse
    monkeypatch.setattr(type(qz), "log_prob_by_inverse", lambda self, v: inverted.append(v) or original(self, v))
    cached = qz.log_prob(z)
    assert not inverted, "the draw just returned should read its log-density from the forward pass"
    fresh = qz.log_prob(z.detach().clone())
    assert len(inverted) == 1 and cached.shape == fresh.shape == (5, 4)
    assert torch.allclose(cached, fresh, atol=1e-9)
    with torch.no_grad():
        z.add_(0.5)  # an in-place change must not reuse the stale density
    assert torch.allclose(qz.log_prob(z), original(qz, z.detach().clone()), atol=1e-9)
    assert len(inverted) == 2


# ----------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("spec", [vk.IAF(steps=2, context=3, hidden=6), vk.Planar(steps=2)], ids=["iaf", "planar"])
def test_gradients_reach_the_encoder_through_rsample_and_log_prob(spec):
    model = vk.VAE(x_dim=2, z_dim=2, hidden=(8,), posterior=spec, seed=0)
    if isinstance(spec, vk.IAF):
        randomise(model.posterior_head, 0.5, 0)
    x = model.prepare_x(vk.data.ring(16, seed=0)[0])
    for use in ("rsample", "log_prob of a draw", "log_prob of another z"):
        model.zero_grad()
        qz = model.encode_batch(x)
        z = qz.rsample()
        out = {"rsample": z.sum(), "log_prob of a draw": qz.log_prob(z).sum()}.get(use)
        if out is None:
            out = qz.log_prob(torch.randn(3, 16, 2)).sum()
        out.backward()
        for name, p in list(model.encoder.named_parameters()) + list(model.posterior_head.named_parameters()):
            assert p.grad is not None and torch.isfinite(p.grad).all(), (use, name)
        assert model.encoder.net[-1].weight.grad.abs().sum() > 0, use


@pytest.mark.parametrize("which", ["iaf", "planar"])
def test_gradient_of_log_prob_through_the_inverse_matches_finite_differences(which):
    # The planar inverse is a bisection (no gradient) finished by one Newton step that carries the
    # implicit-function gradient; the IAF inverse is Z explicit passes. Both must differentiate right.
    z = points(4, 2, seed=14)[:, None, :].expand(4, 3, 2).contiguous()  # (K, B, Z) fixed points
    if which == "planar":
        head, width = PlanarHead(vk.Planar(steps=3), 2), vk.Planar(steps=3).out_features(2)
    else:
        head, width = iaf_head(2, steps=2, context=4, seed=15), 2 * 2 + 4
    h = encoder_output(width, 3, seed=16).requires_grad_()
    assert torch.autograd.gradcheck(lambda hh: head(hh).log_prob_by_inverse(z), (h,), eps=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- integration
def ring(n: int, seed: int) -> np.ndarray:
    return vk.data.ring(n, seed=seed)[0]


@pytest.mark.parametrize("objective", [vk.ELBO(), vk.IWAE(k=4)], ids=["elbo", "iwae"])
@pytest.mark.parametrize("spec", [vk.IAF(steps=2, context=4, hidden=16), vk.Planar(steps=4)], ids=["iaf", "planar"])
def test_a_short_fit_on_the_ring_trains_to_a_finite_decreasing_loss(spec, objective, one_thread):
    model = vk.VAE(x_dim=2, z_dim=2, hidden=(32,), posterior=spec, seed=0)
    history = vk.fit(model, ring(256, 0), objective=objective, epochs=8, batch_size=64, lr=5e-3, seed=0)
    loss = history.columns["loss"]
    assert all(math.isfinite(v) for v in loss)
    assert np.mean(loss[-3:]) < np.mean(loss[:3]) - 0.5  # nats per point; epoch-to-epoch noise is ~0.1
    assert "kl_per_dim" not in history.columns  # the Monte Carlo KL has no per-dimension split


def test_flows_have_no_per_dimension_kl_and_sweep_one_after_another():
    diagonal = vk.VAE(x_dim=2, z_dim=2, hidden=(8,), seed=0)
    assert metrics.kl_splits(diagonal)
    x = ring(128, 1)
    for spec in (vk.IAF(steps=1, context=2, hidden=4), vk.Planar(steps=1)):
        model = vk.VAE(x_dim=2, z_dim=2, hidden=(8,), posterior=spec, seed=0)
        assert not metrics.kl_splits(model)
        # The vmap engines need a diagonal posterior's noise: flows train with fit, so equal to it bit for bit.
        result = vk.sweep(model, x, over={"seed": [3]}, epochs=1, batch_size=64)
        alone = vk.VAE(x_dim=2, z_dim=2, hidden=(8,), posterior=spec, seed=3)
        assert not result.vectorised and result.histories[0] == vk.fit(alone, x, epochs=1, batch_size=64, seed=3)


def test_posterior_mean_and_reconstruct_are_reproducible_for_flows():
    model = vk.VAE(x_dim=2, z_dim=2, hidden=(8,), posterior=vk.Planar(steps=2), seed=0)
    x = ring(5, 2)
    torch.manual_seed(0)
    a = model.reconstruct(x)
    torch.manual_seed(1)  # the global RNG does not enter
    assert np.array_equal(a, model.reconstruct(x))
    # E_q[z] by seeded draws: close to a large independent Monte Carlo average.
    qz = model.encode(x)
    estimate = vk.distributions.posterior_mean(qz, samples=4000)
    reference = qz.sample((20000,)).mean(0)
    assert torch.allclose(estimate, reference, atol=0.05)


def test_specs_check_their_parameters_and_give_train_flags():
    assert vk.IAF(steps=4, context=16).out_features(3) == 6 + 16
    assert vk.Planar(steps=8).out_features(2) == 4 + 8 * 5
    with pytest.raises(vk.InputError, match=r"IAF.steps must be an integer >= 1. Got 0 instead."):
        vk.IAF(steps=0)
    with pytest.raises(vk.InputTypeError, match=r"Planar.steps must be an integer >= 1. Got"):
        vk.Planar(steps=2.5)
    with pytest.raises(vk.InputError, match="IAF.context"):
        vk.IAF(context=-1)
    for spec in (vk.IAF(steps=3, context=2, hidden=5), vk.Planar(steps=3)):
        model = vk.VAE(x_dim=2, z_dim=2, hidden=(8,), posterior=spec, seed=0)
        assert vk.VAE.from_config(model.config).architecture.posterior == spec
        settings = model_settings.settings_of(model.architecture, "vae")
        assert settings["posterior"] == spec.kind and settings["posterior_steps"] == 3
    keys = model_settings.applicable_settings({"posterior": "iaf"}, None)
    assert {"posterior_steps", "posterior_context", "posterior_hidden"} <= set(keys)
    assert "posterior_context" not in model_settings.applicable_settings({"posterior": "planar"}, None)


def test_iaf_inverse_uses_one_pass_per_dimension():
    # Z passes invert exactly; fewer leave the highest-ranked variable wrong (the inverse is sequential).
    head = iaf_head(4, steps=1)
    qz = head(encoder_output(2 * 4 + 4, 2, seed=17))
    step: IAFTransform = qz.steps[0]
    z = points(2, 4, seed=18)
    y, _ = step.forward(z)
    assert torch.allclose(step.inverse(y)[0], z, atol=1e-12)
    net: MaskedStep = step.net
    partial = y
    for _ in range(3):
        shift, log_scale = net(partial, step.h_term)
        partial = (y - shift) * (-log_scale).exp()
    assert not torch.allclose(partial, z, atol=1e-6)
