"""The hand-written ELBO gradients (vaekit.fastpath) against autograd through the generic objective."""

from __future__ import annotations

import contextlib
import logging
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.distributions import Normal

import vaekit as vk
from numerics import assert_same_training, assert_within_rounding, vae_accumulation
from vaekit import fastpath

# Cross-implementation comparisons: scripts/portability.sh reruns these under other CPU kernels.
pytestmark = pytest.mark.numerics

ROOT = Path(__file__).resolve().parents[1]


def _data(n=300, seed=0):
    x, y = vk.data.ring(n, seed=seed)
    return torch.from_numpy(x), torch.from_numpy(y)


CASES = {
    "plain": (dict(), vk.ELBO()),
    "standardize": (dict(standardize=True), vk.ELBO()),
    "onehot": (dict(condition=vk.OneHot(8)), vk.ELBO()),
    "continuous-raw": (dict(condition=vk.Continuous(1, embed=0)), vk.ELBO()),
    "beta-free-bits": (dict(likelihood=vk.Gaussian(variance=0.5)), vk.ELBO(beta=2.0, free_bits=1.0)),
    "three-layers": (dict(hidden=(32, 16, 8), z_dim=3), vk.ELBO(beta=0.5)),
}


def _condition(model, x, y):
    if model.condition is None:
        return None
    if isinstance(model.condition, vk.OneHot):
        return model.prepare_condition(y, x.shape[0])
    return model.prepare_condition(vk.data.radius(x.numpy()), x.shape[0])


@contextlib.contextmanager
def _fixed_noise(eps):
    """qz.rsample() draws ``eps`` (cast to the model's dtype), so that both paths and dtypes share noise."""
    original = Normal.rsample
    Normal.rsample = lambda self, sample_shape=(): self.loc + eps.to(self.loc.dtype) * self.scale
    try:
        yield
    finally:
        Normal.rsample = original


def _step(model, objective, x, c, eps, *, fast):
    """Gradients (in fastpath.parameters order) and batch sums of the History terms of one step."""
    params, layout = fastpath.parameters(model)
    xt = x.to(model.dtype)
    ct = None if c is None else c.to(model.dtype)
    if fast:
        const = fastpath.constants(model)
        with torch.no_grad():
            noise = eps.to(model.dtype)
            grads, sums = fastpath.elbo_step(params, layout, const, xt, ct, noise, objective.beta_at(0), objective.free_bits)
        return grads, fastpath.history_record(sums, const.nll_const, xt.shape[0], objective.beta_at(0))
    model.zero_grad(set_to_none=True)
    with _fixed_noise(eps):
        out = objective(model, xt, ct, epoch=0)
    out.loss.mean().backward()
    return [p.grad.clone() for p in params], {k: v.detach().sum(0) for k, v in out.record().items()}


def _assert_paths_agree(make_model, objective, x, c, eps):
    """Fast path = autograd: in float64 to float64 rounding, and in float32 as close to float64 as autograd.

    Tolerances: bound 1 of tests/numerics.py (gamma_n times each tensor's largest element, n =
    batch + fan-ins forward and backward); they hold for any CPU kernel set.
    """
    model64 = make_model().double()
    n = vae_accumulation(model64, x.shape[0])
    ref_grads, ref_terms = _step(model64, objective, x, c, eps, fast=False)
    results = {
        ("fast", torch.float64): _step(model64, objective, x, c, eps, fast=True),
        ("fast", torch.float32): _step(make_model(), objective, x, c, eps, fast=True),
        ("autograd", torch.float32): _step(make_model(), objective, x, c, eps, fast=False),
    }
    for (path, dtype), (grads, terms) in results.items():
        for i, (g, r) in enumerate(zip(grads, ref_grads)):
            assert_within_rounding(g, r, n=n, dtype=dtype, what=f"{path} {dtype} gradient {i}")
        assert sorted(terms) == sorted(ref_terms)
        for key, r in ref_terms.items():
            assert_within_rounding(terms[key], r, n=n, dtype=dtype, what=f"{path} {dtype} {key}")
    return ref_grads


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_step_matches_autograd(case):
    kwargs, objective = CASES[case]
    x, y = _data(200)

    def make_model():
        model = vk.VAE(2, seed=3, **kwargs)
        model.train()
        if model.standardize:
            model.set_scaling(model.prepare_x(x))
        return model

    model = make_model()
    assert fastpath.supports(model, objective)
    c = _condition(model, x, y)
    eps = torch.randn(x.shape[0], model.z_dim, generator=torch.Generator().manual_seed(11))
    _assert_paths_agree(make_model, objective, x, c, eps)


def test_clamped_log_variance_passes_no_gradient():
    # A log-variance bias far above LOGVAR_MAX puts every point in the clamp's flat region. The
    # huge std (e^6) makes z and the decoder's activations ~1e3 while some gradients are ~0.1:
    # the cancellation that made a picked element-wise tolerance fail on other kernels (issue 13).
    x, _ = _data(100)

    def make_model():
        model = vk.VAE(2, seed=0)
        with torch.no_grad():
            model.encoder.net[-1].bias[2:] = 40.0
        return model

    eps = torch.randn(100, 2, generator=torch.Generator().manual_seed(0))
    ref_grads = _assert_paths_agree(make_model, vk.ELBO(), x, None, eps)
    assert torch.all(ref_grads[5][2:] == 0)  # autograd: no gradient through the clamp
    fast_grads, _ = _step(make_model(), vk.ELBO(), x, None, eps, fast=True)
    assert torch.all(fast_grads[5][2:] == 0)


@pytest.mark.parametrize("case", ["plain", "standardize", "onehot", "beta-free-bits"])
def test_fit_fast_equals_generic_fit(case):
    # Compared in float64: in float32, Adam turns rounding differences of near-zero gradients into
    # updates of either sign, and any picked tolerance depends on the CPU's kernels (tests/numerics.py).
    kwargs, objective = CASES[case]
    x, y = _data(600)
    condition = y if "condition" in kwargs else None
    fast, slow = vk.VAE(2, seed=1, **kwargs).double(), vk.VAE(2, seed=1, **kwargs).double()
    h_fast = vk.fit(fast, x, condition, objective=objective, epochs=3, batch_size=128, seed=5, val=0.2)
    with fastpath.disabled():
        assert not fastpath.supports(slow, objective)
        h_slow = vk.fit(slow, x, condition, objective=objective, epochs=3, batch_size=128, seed=5, val=0.2)
    assert h_fast.fast_path and not h_slow.fast_path
    assert_same_training(fast, h_fast, slow, h_slow, steps=3 * math.ceil(480 / 128), lr=1e-3, batch=128)


def test_fast_fit_is_bit_for_bit_reproducible_and_clips():
    x, _ = _data(500)
    runs = []
    for _ in range(2):
        model = vk.VAE(2, seed=0)
        history = vk.fit(model, x, epochs=2, batch_size=64, seed=7, grad_clip=0.5)
        runs.append((history, [p.detach().clone() for p in model.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))
    fast, slow = vk.VAE(2, seed=0).double(), vk.VAE(2, seed=0).double()
    h_fast = vk.fit(fast, x, epochs=2, batch_size=64, seed=7, grad_clip=0.5)
    with fastpath.disabled():
        h_slow = vk.fit(slow, x, epochs=2, batch_size=64, seed=7, grad_clip=0.5)
    assert_same_training(fast, h_fast, slow, h_slow, steps=2 * math.ceil(500 / 64), lr=1e-3, batch=64)


@pytest.mark.parametrize(
    "kwargs, objective",
    [
        (dict(likelihood=vk.Gaussian(variance="learned")), vk.ELBO()),
        (dict(likelihood=vk.Gaussian(variance="per_point")), vk.ELBO()),
        (dict(likelihood=vk.Bernoulli()), vk.ELBO()),
        (dict(condition=vk.Continuous(1, embed=4)), vk.ELBO()),
        (dict(activation="tanh"), vk.ELBO()),
        (dict(), vk.IWAE(k=3)),
    ],
)
def test_uncovered_configurations_use_the_generic_loop(kwargs, objective):
    model = vk.VAE(2, seed=0, **kwargs)
    assert not fastpath.supports(model, objective)
    x, _ = _data(100)
    x = (x - x.min()) / (x.max() - x.min())  # in [0, 1] for Bernoulli
    condition = vk.data.radius(x.numpy()) if model.condition is not None else None
    history = vk.fit(model, x, condition, objective=objective, epochs=1, batch_size=50)
    assert math.isfinite(history.loss[0]) and not history.fast_path


def test_the_disabled_switch_falls_back():
    model = vk.VAE(2)
    assert fastpath.supports(model, vk.ELBO())
    with fastpath.disabled():
        assert not fastpath.supports(model, vk.ELBO())
    assert fastpath.supports(model, vk.ELBO())


class _WiderPrior(vk.VAE):
    """Prior N(0, 4I): the fast path's hand-written KL gradient is for N(0, I)."""

    def prior(self):
        from vaekit.distributions import diagonal_normal

        return diagonal_normal(torch.zeros(self.z_dim, dtype=self.dtype), torch.full((self.z_dim,), 2.0, dtype=self.dtype))


class _ShiftedDecoder(vk.VAE):
    """A subclass overriding decode_batch (the fast path bypasses it)."""

    def decode_batch(self, z, c=None):
        px = super().decode_batch(z, c)
        from vaekit.distributions import diagonal_normal

        return diagonal_normal(px.mean + 0.5, px.stddev)


def _patched_prior_model():
    # The notebook case: an instance whose prior method is replaced after construction.
    from vaekit.distributions import diagonal_normal

    model = vk.VAE(2, seed=4).double()
    model.prior = lambda: diagonal_normal(torch.zeros(2, dtype=torch.float64), torch.full((2,), 2.0, dtype=torch.float64))
    return model


def _changed_likelihood_model():
    # The likelihood head replaced by one of the same class (so the structure looks covered)
    # whose distribution differs: a standard deviation 1.5 times the fixed one.
    from vaekit.distributions import diagonal_normal

    model = vk.VAE(2, seed=4).double()

    class Wider(type(model.likelihood_head)):
        def forward(self, h, shift, scale):
            return diagonal_normal(h, 1.5 * self.fixed_std.expand_as(h))

    head = model.likelihood_head
    head.__class__ = Wider
    return model


def _bernoulli_head_model():
    # The head swapped for a Bernoulli one while the spec still says Gaussian(0.1).
    model = vk.VAE(2, seed=4).double()
    model.likelihood_head = vk.Bernoulli().head(2)
    return model


def _changed_condition_model():
    # A one-hot condition replaced by a trainable embedding after construction.
    model = vk.VAE(2, seed=4, condition=vk.OneHot(8)).double()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model.decoder.embed = torch.nn.Linear(8, 8).double()
    return model


DRIFTS = {
    # name: (model factory, whether the structural check alone would have let the fast path in)
    "patched prior": (_patched_prior_model, True),
    "subclass with a wider prior": (lambda: _WiderPrior(2, seed=4).double(), True),
    "subclass overriding decode": (lambda: _ShiftedDecoder(2, seed=4).double(), True),
    "changed likelihood": (_changed_likelihood_model, True),
    "changed likelihood head": (_bernoulli_head_model, False),
    "changed condition": (_changed_condition_model, False),
}


@pytest.mark.parametrize("case", sorted(DRIFTS))
def test_models_that_drift_from_the_fast_path_train_exactly_as_autograd(case, caplog):
    """Issue 9's silent wrong answer: every such model must train as autograd does, not as fastpath."""
    make, structurally_covered = DRIFTS[case]
    x, y = _data(400)
    condition = y if "condition" in case else None
    if "head" in case:
        x = (x - x.min()) / (x.max() - x.min())  # in [0, 1] for the Bernoulli head
    model, reference = make(), make()
    assert fastpath.supports(model, vk.ELBO()) == structurally_covered
    with caplog.at_level(logging.DEBUG, logger="vaekit.trainer"):
        history = vk.fit(model, x, condition, epochs=2, batch_size=100, seed=3)
    assert not history.fast_path
    if fastpath.supports(model, vk.ELBO()):
        assert "fast path not used" in caplog.text and "differs from autograd" in caplog.text
    with fastpath.disabled():
        expected = vk.fit(reference, x, condition, epochs=2, batch_size=100, seed=3)
    assert history == expected  # the same autograd loop: bit for bit
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters()))


def test_a_subclass_that_changes_nothing_earns_the_fast_path():
    class Renamed(vk.VAE):
        pass

    x, _ = _data(300)
    model, plain = Renamed(2, seed=0).double(), vk.VAE(2, seed=0).double()
    history = vk.fit(model, x, epochs=2, batch_size=100)
    assert history.fast_path
    with fastpath.disabled():
        expected = vk.fit(plain, x, epochs=2, batch_size=100)
    assert_same_training(model, history, plain, expected, steps=2 * 3, lr=1e-3, batch=100)


@pytest.mark.slow
def test_benchmark_script_runs_in_quick_mode():
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_training.py"), "--quick"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    for line in ("straightforward loop (mean", "vk.fit, fast path", "vk.sweep ", "test IWAE NLL", "inference (100,000"):
        assert line in done.stdout
