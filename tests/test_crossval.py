"""Cross-validation of a model's NLL (vaekit.crossval): every row scored once, by a model that never trained on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vaekit as vk
from vaekit import crossval
from vaekit.errors import InputError
from vaekit.metrics import iwae_log_likelihood


def rows_of(x) -> set[float]:
    """The rows of ``x`` by their first value (the data below make it unique)."""
    return {float(v) for v in np.asarray(x)[:, 0]}


@pytest.mark.parametrize("n_rows, folds", [(14, 4), (8, 4), (21, 2), (47, 4)])
def test_folds_hold_every_row_once_in_near_equal_parts(n_rows, folds):
    parts = crossval.fold_rows(n_rows, folds, seed=3)
    assert len(parts) == folds
    assert sorted(np.concatenate(parts).tolist()) == list(range(n_rows))
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 2
    assert [p.tolist() for p in crossval.fold_rows(n_rows, folds, seed=3)] == [p.tolist() for p in parts]  # seeded
    assert [p.tolist() for p in crossval.fold_rows(n_rows, folds, seed=4)] != [p.tolist() for p in parts]


@pytest.mark.parametrize("n_rows, folds", [(7, 4), (10, 1), (3, 2)])
def test_too_few_rows_or_folds_are_refused(n_rows, folds):
    with pytest.raises(InputError) as err:
        crossval.fold_rows(n_rows, folds, seed=0)
    assert str(err.value) == (
        f"cross-validation needs an integer folds >= 2 and at least 2 rows per fold. Got folds={folds} for {n_rows} rows instead."
    )


def small_model():
    return vk.VAE(x_dim=2, z_dim=1, hidden=(8,), likelihood=vk.Gaussian("learned"))


def test_each_row_is_scored_by_the_model_that_did_not_train_on_it(monkeypatch):
    # Spy on training and scoring: the rows each fold's model trained on, and the rows it scored.
    x = np.column_stack([np.arange(12.0), np.sin(np.arange(12.0))]).astype(np.float32)
    trained, scored, models = [], [], []
    real_fit, real_iwae = crossval.fit, crossval.iwae_log_likelihood

    def spy_fit(model, x_train, condition, **kwargs):
        trained.append(rows_of(x_train))
        models.append(model)
        return real_fit(model, x_train, condition, **kwargs)

    def spy_iwae(model, x_rows, condition=None, **kwargs):
        assert model is models[-1]  # scored by the model just trained on the other rows
        scored.append(rows_of(x_rows))
        return real_iwae(model, x_rows, condition, **kwargs)

    monkeypatch.setattr(crossval, "fit", spy_fit)
    monkeypatch.setattr(crossval, "iwae_log_likelihood", spy_iwae)
    torch.manual_seed(0)
    nll = crossval.cross_validated_nll(small_model, x, folds=3, seed=1, k=4, epochs=2, batch_size=4)
    everything = rows_of(x)
    assert len(trained) == len(scored) == 3
    for train_rows, held in zip(trained, scored, strict=True):
        assert train_rows | held == everything and not train_rows & held
    assert set().union(*scored) == everything and sum(len(s) for s in scored) == 12
    assert np.isfinite(nll)


def test_the_score_is_the_mean_held_out_iwae_nll_of_the_fold_models():
    # The same computation written out: fold models trained as fit trains them, each scoring its fold.
    x = np.column_stack([np.linspace(-1, 1, 16), np.linspace(-1, 1, 16) ** 2]).astype(np.float32)
    condition = np.arange(16) % 2
    kwargs = {"epochs": 3, "batch_size": 4, "lr": 1e-2}

    def build():
        torch.manual_seed(5)
        return vk.VAE(x_dim=2, z_dim=1, hidden=(8,), condition=vk.OneHot(2), likelihood=vk.Gaussian("learned"))

    got = crossval.cross_validated_nll(build, x, condition, folds=4, seed=2, k=10, **kwargs)
    total = 0.0
    for rows in crossval.fold_rows(16, 4, seed=2):
        train = np.setdiff1d(np.arange(16), rows)
        model = build()
        vk.fit(model, x[train], condition[train], seed=2, monitors={}, **kwargs)
        total -= iwae_log_likelihood(model, x[rows], condition[rows], k=10, seed=2).sum()
    assert got == pytest.approx(total / 16, rel=1e-12)


def test_a_condition_of_another_length_or_a_fractional_folds_is_refused():
    x = np.zeros((16, 2), dtype=np.float32)
    with pytest.raises(InputError) as err:
        crossval.cross_validated_nll(small_model, x, np.zeros(20), folds=4)
    assert str(err.value) == "condition must have one row per row of x (16). Got 20 rows instead."
    with pytest.raises(InputError, match=r"^cross-validation needs an integer folds >= 2 .* Got folds=2\.0 for 16 rows"):
        crossval.cross_validated_nll(small_model, x, folds=2.0)


@pytest.mark.parametrize("given", [{"val": 0.2}, {"monitors": {}}])
def test_a_validation_set_or_monitors_are_refused(given):
    x = np.zeros((8, 2), dtype=np.float32)
    with pytest.raises(InputError) as err:
        crossval.cross_validated_nll(small_model, x, folds=2, **given)
    assert str(err.value) == (
        f"cross_validated_nll holds each fold out itself: give no val or monitors. Got {sorted(given)} instead."
    )
