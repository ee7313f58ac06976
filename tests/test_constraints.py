"""The airfoil constraint on a decoder's mean: valid shapes from any input, data left (almost) alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vaekit as vk
from vaekit import constraints, fastpath, shapes
from vaekit.errors import InputError


@pytest.fixture(scope="module")
def airfoil_rows() -> torch.Tensor:
    x, _ = vk.data.airfoils("all")
    return torch.as_tensor(x.reshape(len(x), -1))


def test_interpolate_matches_numpy_interp_inside_and_beyond_the_ends() -> None:
    rng = np.random.default_rng(0)
    xp = np.sort(rng.uniform(0, 1, (5, 9)), axis=1)
    fp = rng.normal(size=(5, 9))
    xq = rng.uniform(-0.2, 1.2, (5, 40))
    got = constraints.interpolate(*(torch.as_tensor(a) for a in (xq, xp, fp))).numpy()
    want = np.stack([np.interp(q, p, f) for q, p, f in zip(xq, xp, fp)])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_every_uiuc_airfoil_moves_by_at_most_epsilon(airfoil_rows: torch.Tensor) -> None:
    out = constraints.airfoil(airfoil_rows)
    moved = (out - airfoil_rows).abs()
    assert moved.max() <= constraints.EPSILON + 1e-6
    # Only closed edges open: the leading edge (stored twice) and closed trailing edges.
    points = moved.reshape(len(out), 64, 2).amax(2) > 0
    assert set(np.flatnonzero(points.any(0).numpy())) <= {0, 31, 32, 63}


@pytest.mark.parametrize("noise", [0.001, 0.01, 0.1, 1.0])
def test_noisy_airfoils_come_out_valid(airfoil_rows: torch.Tensor, noise: float) -> None:
    g = torch.Generator().manual_seed(1)
    noisy = airfoil_rows + noise * torch.randn(airfoil_rows.shape, generator=g)
    assert shapes.validity(noisy.reshape(-1, 64, 2).numpy()).valid.mean() < 1.0 or noise < 0.01
    fixed = constraints.airfoil(noisy).reshape(-1, 64, 2).numpy()
    verdict = shapes.validity(fixed)
    assert verdict.valid.all(), verdict.counts


def test_random_outputs_far_from_any_airfoil_come_out_valid() -> None:
    g = torch.Generator().manual_seed(2)
    for points in (4, 12, 64):
        garbage = 3.0 * torch.randn(2000, 2 * points, generator=g)
        verdict = shapes.validity(constraints.airfoil(garbage).reshape(-1, points, 2).numpy())
        assert verdict.valid.all(), (points, verdict.counts)
    # About half of these rows need the one-x fallback (the crossing step reopened the gap).
    rows = 3.0 * torch.randn(2000, 128, generator=g)
    points = rows.reshape(-1, 64, 2)
    xu = constraints._strictly_increasing(points[:, :32].flip(1)[..., 0])
    xl = constraints._strictly_increasing(points[:, 32:, 0])
    near = constraints._uncross(
        *constraints._close_trailing_edge(xu, points[:, :32].flip(1)[..., 1], xl, points[:, 32:, 1], one_x=False)
    )
    reopened = torch.hypot(near[0][:, -1] - near[2][:, -1], near[1][:, -1] - near[3][:, -1]) > constraints.GAP
    assert reopened.sum() > 500
    verdict = shapes.validity(constraints.airfoil(rows).reshape(-1, 64, 2).numpy())
    assert verdict.valid.all(), verdict.counts


def test_the_constraint_is_the_identity_with_identity_gradients_on_a_shape_that_needs_nothing() -> None:
    # A thick symmetric profile with a blunt nose and a trailing-edge gap: no step is active.
    x = 0.5 * (1 - np.cos(np.linspace(0, np.pi, 16)))
    y = 0.06 * np.sqrt(x) * (1 - x) + 0.002 + 0.003 * x
    upper, lower = np.stack([x, y], 1)[::-1], np.stack([x, -y], 1)
    row = torch.as_tensor(np.concatenate([upper, lower]).reshape(1, -1)).requires_grad_(True)
    assert shapes.validity(row.detach().reshape(1, 32, 2).numpy()).valid.all()
    out = constraints.airfoil(row)
    assert torch.equal(out.detach(), row.detach())
    jacobian = torch.autograd.functional.jacobian(constraints.airfoil, row.detach()).reshape(64, 64)
    assert torch.equal(jacobian, torch.eye(64, dtype=jacobian.dtype))


def test_a_model_with_the_constraint_decodes_only_valid_airfoils() -> None:
    x, _ = vk.data.airfoils("train")
    model = vk.VAE(x_shape=(64, 2), z_dim=3, hidden=(32,), likelihood=vk.Gaussian("learned", constraint="airfoil"), seed=0)
    vk.fit(model, x[:300], epochs=2, batch_size=100, seed=0)
    samples = model.sample(500, seed=0)
    assert shapes.validity(samples).valid.all()
    assert shapes.validity(model.decode(10 * torch.randn(200, 3)).mean.reshape(-1, 64, 2).detach().numpy()).valid.all()
    # The closed-form fast path knows nothing of the constraint; it must not be used.
    fixed = vk.VAE(x_shape=(64, 2), z_dim=3, hidden=(32,), likelihood=vk.Gaussian(0.1, constraint="airfoil"), seed=0)
    assert fastpath.supports(fixed, vk.ELBO()) is False
    assert fastpath.supports(vk.VAE(x_shape=(64, 2), z_dim=3, hidden=(32,), seed=0), vk.ELBO()) is True


def test_bad_constraints_are_refused_with_the_parameter_named() -> None:
    with pytest.raises(InputError) as err:
        vk.Gaussian("learned", constraint="wing")
    assert str(err.value) == "Gaussian.constraint must be one of ['none', 'airfoil']. Got 'wing' instead."
    with pytest.raises(InputError) as err:
        vk.VAE(x_dim=10, likelihood=vk.Gaussian(constraint="airfoil"))
    assert str(err.value) == (
        "constraint='airfoil' needs x_shape (P, 2) with an even number of points P >= 4 (the airfoil layout of "
        "vaekit.shapes: upper surface trailing edge -> leading edge, then lower). Got x_shape (10,) instead."
    )
    with pytest.raises(InputError, match=r"Got x_shape \(5, 2\) instead"):
        vk.VAE(x_shape=(5, 2), likelihood=vk.Gaussian(constraint="airfoil"))


def test_evaluate_says_how_much_a_constrained_model_leans_on_its_constraint() -> None:
    from vaekit.metrics import CONSTRAINT_MOVED, constraint_effect

    x, _ = vk.data.airfoils("train")
    xt, _ = vk.data.airfoils("test")
    model = vk.VAE(x_shape=(64, 2), z_dim=3, hidden=(32,), likelihood=vk.Gaussian("learned", constraint="airfoil"), seed=0)
    vk.fit(model, x[:300], epochs=2, batch_size=100, seed=0)
    curves = vk.metrics.evaluate(model, xt[:50], k=2, n_samples=200, permutations=0, train_x=x[:300])["curves"]["model"]
    assert curves["valid_fraction"] == 1.0
    with constraints.unconstrained(model):
        raw = model.sample(200, seed=0).reshape(200, -1)
    fixed = model.sample(200, seed=0).reshape(200, -1)
    assert curves["valid_fraction_unconstrained"] == shapes.validity(raw.reshape(-1, 64, 2)).valid.mean()
    moved = (np.abs(fixed - raw).max(1) > CONSTRAINT_MOVED).mean()
    assert curves["constraint_changed_fraction"] == moved
    # By hand: one sample moved by 0.01, one by 0.001 (below the tolerance), one untouched.
    base = xt[:3].reshape(3, -1).astype(np.float64)
    shifted = base.copy()
    shifted[0, 10] += 0.01
    shifted[1, 10] += 0.001
    effect = constraint_effect(base, shifted, (64, 2))
    assert effect == {"valid_fraction_unconstrained": 1.0, "constraint_changed_fraction": 1 / 3}


def test_a_users_npy_of_curves_takes_the_constraint_without_x_shape_and_a_table_is_refused(tmp_path) -> None:
    import json
    import subprocess
    import sys

    xt, _ = vk.data.airfoils("test")
    np.save(tmp_path / "shapes.npy", xt[:120])
    base = [sys.executable, "-m", "vaekit", "train", "--epochs", "2", "--constraint", "airfoil", "-q"]
    done = subprocess.run(
        [*base, "--data", str(tmp_path / "shapes.npy"), "--out", str(tmp_path / "run")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["curves"]["model"]["valid_fraction"] == 1.0
    refused = subprocess.run([*base, "--data", "ring", "--out", str(tmp_path / "ring")], capture_output=True, text=True)
    assert refused.returncode != 0
    assert "constraint='airfoil' needs x_shape (P, 2)" in refused.stderr and "Got x_shape (2,) instead." in refused.stderr
    assert not (tmp_path / "ring").exists()


def test_low_precision_and_large_units_give_finite_results_and_gradients(airfoil_rows: torch.Tensor) -> None:
    g = torch.Generator().manual_seed(3)
    noisy = airfoil_rows + 0.01 * torch.randn(airfoil_rows.shape, generator=g)
    half = constraints.airfoil(noisy.bfloat16())
    assert half.dtype == torch.bfloat16 and torch.isfinite(half).all()
    assert shapes.validity(constraints.airfoil(noisy.bfloat16().float()).reshape(-1, 64, 2).numpy()).valid.all()
    millimetres = (100 * noisy).requires_grad_(True)  # not chord units: x up to 100
    out = constraints.airfoil(millimetres)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(millimetres.grad).all()
