"""The hand-written ELBO gradients (vaekit.fastpath) against autograd through the generic objective."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import vaekit as vk
from vaekit import fastpath

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


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_step_matches_autograd(case):
    kwargs, objective = CASES[case]
    x, y = _data(200)
    model = vk.VAE(2, seed=3, **kwargs)
    model.train()
    if model.standardize:
        model.set_scaling(model.prepare_x(x))
    xt = model.prepare_x(x)
    c = _condition(model, x, y)
    assert fastpath.supports(model, objective)

    torch.manual_seed(11)
    out = objective(model, xt, c, epoch=0)
    out.loss.mean().backward()
    params, layout = fastpath.parameters(model)
    expected = [p.grad.clone() for p in params]

    torch.manual_seed(11)  # the same noise qz.rsample() drew
    eps = torch.randn(xt.shape[0], model.z_dim)
    const = fastpath.constants(model)
    with torch.no_grad():
        grads, sums = fastpath.elbo_step(params, layout, const, xt, c, eps, objective.beta_at(0), objective.free_bits)
    for g, e in zip(grads, expected):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-6)
    record = fastpath.history_record(sums, const.nll_const, xt.shape[0], objective.beta_at(0))
    for key, value in out.terms().items():
        torch.testing.assert_close(record[key], value.detach().sum(0).double().float(), rtol=1e-5, atol=1e-4)


def test_clamped_log_variance_passes_no_gradient():
    # A log-variance bias far above LOGVAR_MAX puts every point in the clamp's flat region.
    x, _ = _data(100)
    model = vk.VAE(2, seed=0)
    with torch.no_grad():
        model.encoder.net[-1].bias[2:] = 40.0
    xt = model.prepare_x(x)
    torch.manual_seed(0)
    vk.ELBO()(model, xt).loss.mean().backward()
    params, layout = fastpath.parameters(model)
    expected = [p.grad.clone() for p in params]
    torch.manual_seed(0)
    eps = torch.randn(100, 2)
    with torch.no_grad():
        grads, _ = fastpath.elbo_step(params, layout, fastpath.constants(model), xt, None, eps, 1.0)
    assert torch.all(expected[5][2:] == 0)  # autograd: no gradient through the clamp
    for g, e in zip(grads, expected):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("case", ["plain", "standardize", "onehot", "beta-free-bits"])
def test_fit_fast_equals_generic_fit(case):
    kwargs, objective = CASES[case]
    x, y = _data(600)
    condition = y if "condition" in kwargs else None
    fast, slow = vk.VAE(2, seed=1, **kwargs), vk.VAE(2, seed=1, **kwargs)
    h_fast = vk.fit(fast, x, condition, objective=objective, epochs=3, batch_size=128, seed=5, val=0.2)
    with fastpath.disabled():
        assert not fastpath.supports(slow, objective)
        h_slow = vk.fit(slow, x, condition, objective=objective, epochs=3, batch_size=128, seed=5, val=0.2)
    assert fastpath.supports(fast, objective)
    assert list(h_fast.columns) == list(h_slow.columns)
    for key in h_slow.columns:
        torch.testing.assert_close(torch.tensor(h_fast.columns[key]), torch.tensor(h_slow.columns[key]), rtol=1e-4, atol=1e-5)
    for a, b in zip(fast.parameters(), slow.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_fast_fit_is_bit_for_bit_reproducible_and_clips():
    x, _ = _data(500)
    runs = []
    for _ in range(2):
        model = vk.VAE(2, seed=0)
        history = vk.fit(model, x, epochs=2, batch_size=64, seed=7, grad_clip=0.5)
        runs.append((history, [p.detach().clone() for p in model.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))
    slow = vk.VAE(2, seed=0)
    with fastpath.disabled():
        h_slow = vk.fit(slow, x, epochs=2, batch_size=64, seed=7, grad_clip=0.5)
    assert h_slow.loss == pytest.approx(runs[0][0].loss, rel=1e-5)


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
    assert math.isfinite(history.loss[0])


def test_subclasses_and_the_disabled_switch_fall_back():
    class Custom(vk.VAE):
        pass

    assert not fastpath.supports(Custom(2), vk.ELBO())
    model = vk.VAE(2)
    assert fastpath.supports(model, vk.ELBO())
    with fastpath.disabled():
        assert not fastpath.supports(model, vk.ELBO())
    assert fastpath.supports(model, vk.ELBO())


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
