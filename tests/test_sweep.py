"""vk.sweep: many models trained in one batched pass equal the same models trained alone."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest
import torch

import vaekit as vk
from numerics import assert_same_training
from vaekit.errors import InputError, InputTypeError

# Cross-implementation comparisons: scripts/portability.sh reruns these under other CPU kernels.
pytestmark = pytest.mark.numerics

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def ring():
    x, y = vk.data.ring(400, seed=0)
    return x, y


def _alone(
    template, row, x, condition=None, *, epochs, objective=None, lr=1e-3, seed=0, batch_size=128, monitor=None, weight_decay=0.0
):
    """The model of one sweep row trained alone with vk.fit, in the template's dtype."""
    likelihood = vk.Gaussian(variance=row["variance"]) if "variance" in row else template.likelihood
    s = row.get("seed", seed)
    model = vk.VAE(
        2,
        template.z_dim,
        hidden=template.hidden,
        likelihood=likelihood,
        condition=template.condition,
        standardize=template.standardize,
        activation=template.activation,
        prior=template.prior_spec,
        seed=s,
    ).to(template.dtype)
    objective = objective or vk.ELBO()
    if "beta" in row:
        objective = vk.ELBO(beta=row["beta"], warmup_epochs=objective.warmup_epochs, free_bits=objective.free_bits)
    monitors = {"diversity": monitor or vk.Diversity()}
    lr = row.get("lr", lr)
    history = vk.fit(
        model,
        x,
        condition,
        objective=objective,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=s,
        monitors=monitors,
        weight_decay=weight_decay,
    )
    return model, history


def _assert_same(model, history, alone, alone_history, *, epochs, n, batch_size, lr=1e-3):
    # Compared in float64 with bound 2 of tests/numerics.py: the batched and single-model kernels
    # sum in different orders, and Adam magnifies those roundings in float32 (issue 13).
    steps = epochs * math.ceil(n / batch_size)
    assert_same_training(model, history, alone, alone_history, steps=steps, lr=lr, batch=batch_size)


def test_every_swept_model_equals_the_model_trained_alone(ring):
    x, _ = ring
    over = {"variance": [0.1, 1.0], "beta": [1.0, 2.0], "seed": [0, 1], "lr": [1e-3, 3e-3]}
    template = vk.VAE(2, hidden=(16, 16)).double()
    monitor = vk.Diversity(n_samples=256)
    result = vk.sweep(template, x, over=over, epochs=2, batch_size=128, diversity=monitor)
    assert result.vectorised
    assert len(result.models) == len(result.table) == len(result.histories) == 16
    first = [(0.1, 1.0, 0, 1e-3), (0.1, 1.0, 0, 3e-3), (0.1, 1.0, 1, 1e-3)]
    assert [tuple(row[k] for k in over) for row in result.table][:3] == first
    for row, model, history in zip(result.table, result.models, result.histories):
        alone, alone_history = _alone(template, row, x, epochs=2, monitor=monitor)
        _assert_same(model, history, alone, alone_history, epochs=2, n=400, batch_size=128, lr=row["lr"])
        assert model.likelihood == vk.Gaussian(variance=row["variance"])
        assert row["neg_elbo"] == history.neg_elbo[-1] and row["diversity"] == history.diversity[-1]


def test_conditional_sweep_with_standardisation_equals_fit(ring):
    x, y = ring
    template = vk.VAE(2, hidden=(16, 16), condition=vk.OneHot(8), standardize=True).double()
    objective = vk.ELBO(warmup_epochs=2, free_bits=0.2)
    result = vk.sweep(template, x, y, over={"seed": [3, 4]}, objective=objective, epochs=3, batch_size=100, weight_decay=0.01)
    assert result.vectorised
    for row, model, history in zip(result.table, result.models, result.histories):
        alone, alone_history = _alone(template, row, x, y, epochs=3, objective=objective, batch_size=100, weight_decay=0.01)
        _assert_same(model, history, alone, alone_history, epochs=3, n=400, batch_size=100)
        assert torch.equal(model.x_shift, alone.x_shift)  # the same float64 reduction of the same data


def test_a_swept_beta_without_the_fast_path_trains_one_by_one_with_fit(ring):
    # vmap carries one objective for all models: different betas outside the fast path go one by one.
    x, _ = ring
    x01 = (x - x.min()) / (x.max() - x.min())
    template = vk.VAE(2, hidden=(16,), likelihood=vk.Bernoulli())
    result = vk.sweep(template, x01, over={"seed": [0], "beta": [0.5, 1.0]}, epochs=2)
    assert not result.vectorised
    for row, history in zip(result.table, result.histories):
        alone = vk.VAE(2, hidden=(16,), likelihood=vk.Bernoulli(), seed=row["seed"])
        alone_history = vk.fit(alone, x01, objective=vk.ELBO(beta=row["beta"]), epochs=2, seed=row["seed"])
        assert history == alone_history  # the same code path: bit for bit


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(likelihood=vk.Bernoulli()),
        dict(likelihood=vk.Gaussian("learned"), condition=vk.OneHot(8)),
        dict(prior=vk.MixturePrior(3), activation="tanh"),
        dict(likelihood=vk.Gaussian("per_point"), condition=vk.Continuous(1, embed=4), standardize=True),
    ],
    ids=["bernoulli", "learned-variance-onehot", "mixture-prior-tanh", "per-point-continuous"],
)
def test_models_outside_the_fast_path_train_together_with_torch_func(ring, kwargs, caplog):
    """vmap over autograd: each swept model equals fit with its seed (float64, Adam rounding bound)."""
    x, y = ring
    if "likelihood" in kwargs and isinstance(kwargs["likelihood"], vk.Bernoulli):
        x = (x - x.min()) / (x.max() - x.min())
    condition = None
    if "condition" in kwargs:
        condition = y if isinstance(kwargs["condition"], vk.OneHot) else vk.data.radius(x)
    template = vk.VAE(2, hidden=(16,), **kwargs).double()
    with caplog.at_level("INFO", logger="vaekit.sweep"):
        result = vk.sweep(template, x, condition, over={"seed": [0, 1], "lr": [1e-3, 3e-3]}, epochs=2, batch_size=100)
    assert result.vectorised and "trained together with torch.func" in caplog.text
    for row, model, history in zip(result.table, result.models, result.histories):
        alone, alone_history = _alone(template, row, x, condition, epochs=2, batch_size=100)
        _assert_same(model, history, alone, alone_history, epochs=2, n=400, batch_size=100, lr=row["lr"])


def test_diversity_every_and_swept_models_save_and_reload(ring, tmp_path):
    x, _ = ring
    monitor = vk.Diversity(n_samples=64, every=2)
    result = vk.sweep(vk.VAE(2, hidden=(16,)), x, over={"variance": [0.5]}, epochs=3, diversity=monitor)
    div = result.histories[0].diversity
    assert np.isnan(div[0]) and not np.isnan(div[1]) and not np.isnan(div[2])
    model = result.models[0]
    model.save(tmp_path / "m")
    again = vk.load(tmp_path / "m")
    np.testing.assert_array_equal(again.sample(10, seed=1), model.sample(10, seed=1))
    assert again.likelihood == vk.Gaussian(variance=0.5)


def test_figure_and_table_text(ring):
    x, y = ring
    result = vk.sweep(vk.VAE(2, hidden=(16,)), x, over={"variance": [0.1, 1.0, 5.0]}, epochs=1)
    fig = result.figure(x, n=100)
    assert len([ax for ax in fig.axes if ax.collections]) == 3
    assert "variance=5" in fig.axes[2].get_title()
    lines = result.format_table().splitlines()
    conditional = vk.sweep(vk.VAE(2, hidden=(8,), condition=vk.OneHot(8)), x, y, over={"seed": [0]}, epochs=1)
    assert len(conditional.figure(condition=3, n=50).axes[0].collections) == 1
    with pytest.raises(InputError, match="condition is required"):
        conditional.figure()
    assert len(lines) == 4 and lines[0].split()[:2] == ["variance", "loss"]


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(over={"gamma": [1]}), InputError, "over keys must be among ['variance', 'beta', 'seed', 'lr']. Got 'gamma'"),
        (dict(over={"beta": []}), InputError, "over['beta'] must be a non-empty list of values. Got"),
        (dict(over={}), InputTypeError, "over must be a non-empty dict"),
        (dict(over={"variance": [-1.0]}), InputError, "over['variance'] values must be a finite number > 0. Got -1.0 instead."),
        (dict(over={"seed": [0.5]}), InputTypeError, "over['seed'] values must be ints."),
        (dict(over={"seed": [0]}, objective=vk.IWAE(k=2)), InputTypeError, "objective must be a vaekit.ELBO for a sweep."),
        (dict(over={"seed": [0]}, epochs=0), InputError, "epochs must be an integer >= 1. Got 0 instead."),
    ],
)
def test_bad_arguments_are_named(ring, kwargs, error, message):
    x, _ = ring
    with pytest.raises(error) as info:
        vk.sweep(vk.VAE(2, hidden=(8,)), x, **kwargs)
    assert message in str(info.value)


def test_variance_needs_a_gaussian_template(ring):
    x, _ = ring
    with pytest.raises(InputError, match=r"over\['variance'\] needs a model with a Gaussian likelihood"):
        vk.sweep(vk.VAE(2, likelihood=vk.Bernoulli()), x, over={"variance": [0.1]})
    message = r"^model must be a vaekit model \(e.g. vaekit.VAE\) used as template\. Got .vae. instead\.$"
    with pytest.raises(InputTypeError, match=message):
        vk.sweep("vae", x, over={"seed": [0]})
