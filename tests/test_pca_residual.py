"""PCAResidual trunks start as PCA of the training data; global standardisation keeps geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import vaekit as vk
from vaekit import nn as vaekit_nn
from vaekit.errors import InputError


def _data(n: int = 400, d: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 3)) * [3.0, 2.0, 1.0]
    mixing = rng.normal(size=(3, d))
    return (latent @ mixing + 0.1 * rng.normal(size=(n, d)) + rng.normal(size=d)).astype(np.float32)


def _numpy_pca(x: np.ndarray, q: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    x = x.astype(np.float64)
    mu = x.mean(0)
    values, vectors = np.linalg.eigh((x - mu).T @ (x - mu) / len(x))
    values, vectors = values[::-1], vectors[:, ::-1]
    return mu, values[:q], vectors[:, :q], float(values[q:].mean())


def test_an_untrained_model_reconstructs_exactly_as_pca_once_it_has_seen_the_data() -> None:
    x = _data()
    model = vk.VAE(x_dim=12, z_dim=3, encoder=vk.PCAResidual(), likelihood=vk.Gaussian("learned"), seed=0)
    model.set_scaling(model.prepare_x(x))  # what fit does first
    mu, values, vectors, noise = _numpy_pca(x, 3)
    pca = mu + (x - mu) @ vectors @ vectors.T
    np.testing.assert_allclose(model.reconstruct(x), pca, atol=2e-5)
    # The encoder's means are the whitened scores (signs as numpy's up to a flip per component),
    # its log-variances PPCA's posterior variance sigma^2 / lambda.
    q = model.encode(x)
    scores = (x - mu) @ vectors / np.sqrt(values)
    got = q.mean.detach().numpy()
    signs = np.sign((got * scores).sum(0))
    np.testing.assert_allclose(got, scores * signs, atol=2e-5)
    np.testing.assert_allclose(q.variance.detach().numpy()[0], noise / values, rtol=1e-4)


def test_the_data_start_happens_once_and_survives_save_and_load(tmp_path, monkeypatch) -> None:
    x = _data()
    model = vk.VAE(x_dim=12, z_dim=2, encoder=vk.PCAResidual(), seed=0)
    vk.fit(model, x, epochs=3, batch_size=100, seed=0)
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    model.set_scaling(model.prepare_x(_data(seed=1)))  # other data: no second start
    assert all(torch.equal(trained[k], v) for k, v in model.state_dict().items())
    loaded = vk.load(model.save(tmp_path / "m"))
    assert bool(loaded.encoder.initialised) and bool(loaded.decoder.initialised)
    np.testing.assert_array_equal(loaded.reconstruct(x), model.reconstruct(x))
    # A second fit continues from the trained weights: no new eigendecomposition.
    calls = []
    monkeypatch.setattr(vaekit_nn, "principal_directions", lambda *a: calls.append(a) or pytest.fail("re-initialised"))
    vk.fit(model, x, epochs=1, batch_size=100, seed=1)
    assert calls == []


def test_global_standardisation_divides_every_column_by_one_scale() -> None:
    x = _data()
    model = vk.VAE(x_dim=12, standardize=True, standardize_scale="global", seed=0)
    model.set_scaling(model.prepare_x(x))
    rms = math.sqrt(float((x.astype(np.float64).std(0) ** 2).mean()))
    np.testing.assert_allclose(model.x_scale.numpy(), np.full(12, rms), rtol=1e-5)
    np.testing.assert_allclose(model.x_shift.numpy(), x.mean(0), rtol=1e-5, atol=1e-6)
    column = vk.VAE(x_dim=12, standardize=True, seed=0)
    column.set_scaling(column.prepare_x(x))
    np.testing.assert_allclose(column.x_scale.numpy(), x.std(0), rtol=1e-4)


def test_bad_settings_are_refused_with_the_parameter_named() -> None:
    with pytest.raises(InputError) as err:
        vk.VAE(x_dim=4, standardize=True, standardize_scale="row")
    assert str(err.value) == "standardize_scale must be one of ['column', 'global']. Got 'row' instead."
    with pytest.raises(InputError) as err:
        vk.VAE(x_shape=(3, 40, 40), encoder=vk.PCAResidual())
    assert str(err.value) == (
        "encoder=PCAResidual() needs data of at most 4096 values per row (it starts from a 4800 x 4800 "
        "eigendecomposition). Got x_shape (3, 40, 40) (4800 values) instead; use the MLP or a conv trunk."
    )


def test_the_airfoil_defaults_of_vaekit_train() -> None:
    from vaekit import runfolder

    config = runfolder.validate_config({"data": {"name": "airfoils"}})
    assert {k: config["model"][k] for k in runfolder.AIRFOIL_MODEL} == runfolder.AIRFOIL_MODEL
    assert config["training"]["epochs"] == 1000
    mine = runfolder.validate_config(
        {"data": {"name": "airfoils"}, "model": {"encoder": "mlp", "z_dim": 4}, "training": {"epochs": 5}}
    )
    assert (mine["model"]["encoder"], mine["model"]["z_dim"], mine["training"]["epochs"]) == ("mlp", 4, 5)
    ring = runfolder.validate_config({"data": {"name": "ring"}})
    assert (ring["model"]["encoder"], ring["model"]["variance"], ring["training"]["epochs"]) == ("mlp", 0.1, 400)


def test_a_flow_behind_a_pca_encoder_still_learns() -> None:
    # Its parameters come after the means and log-variances; the PCA start must leave them random
    # (a planar step at u = w = b = 0 has no gradient and would stay the identity for good).
    x = _data()
    model = vk.VAE(x_dim=12, z_dim=3, encoder=vk.PCAResidual(), posterior=vk.Planar(steps=2), seed=0)
    vk.fit(model, x, epochs=3, batch_size=100, seed=0)
    flow_parameters = model.encoder(model.prepare_x(x))[:, 6:]
    assert flow_parameters.abs().min() > 0
    assert model.encoder.residual.net[-1].weight[6:].abs().max() > 0


def test_other_model_kinds_on_the_airfoils_keep_their_own_settings() -> None:
    from vaekit import runfolder

    for kind in ("vqvae", "hierarchical"):
        config = runfolder.validate_config({"data": {"name": "airfoils"}, "model": {"type": kind}})
        assert config["model"]["type"] == kind and config["model"]["standardize"] is True
        assert "constraint" not in config["model"] or config["model"]["constraint"] == "none"
