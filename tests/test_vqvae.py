"""The VQ-VAE and its VQ objective, checked against direct computations (loops, counts, formulas)."""

from __future__ import annotations

import logging
import math
import re

import numpy as np
import pytest
import torch

import vaekit as vk
from vaekit import metrics
from vaekit.errors import InputError, InputTypeError


def small(k=8, seed=0, **kwargs):
    return vk.VQVAE(x_dim=2, codebook_size=k, code_dim=2, hidden=(16,), seed=seed, **kwargs)


def ring(n=256, seed=0):
    return vk.data.ring(n, seed=seed)[0]


def perplexity_of(codes: np.ndarray, k: int) -> tuple[float, int]:
    """exp(entropy) of code frequencies and the number of codes used, from the codes themselves."""
    counts = np.bincount(codes.ravel(), minlength=k).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(np.exp(-(p * np.log(p)).sum())), int((counts > 0).sum())


def test_assigned_code_is_the_brute_force_nearest():
    model = small(k=16).eval()
    with torch.no_grad():
        model.codebook.copy_(torch.randn(16, 2, generator=torch.Generator().manual_seed(1)) * 0.5)
    x = torch.as_tensor(ring(200))
    qz = model.encode_batch(x)
    z_e, e = qz.z_e.detach().double().reshape(-1, 2), model.codebook.detach().double()
    for i in range(z_e.shape[0]):
        distances = [float(((z_e[i] - e[j]) ** 2).sum()) for j in range(e.shape[0])]
        assert int(qz.codes[i, 0]) == int(np.argmin(distances))
    assert len(set(qz.codes.flatten().tolist())) > 3  # the check covered several codes
    assert torch.equal(qz.mean, model.codebook[qz.codes[:, 0]])


def test_straight_through_gradient_reaches_the_encoder_and_not_the_codebook():
    model = small()
    x = torch.as_tensor(ring(64))
    qz = model.encode_batch(x)
    z = qz.rsample()
    assert torch.equal(z, qz.mean)  # the value is z_q exactly ...
    (-model.decode_batch(z).log_prob(x)).sum().backward()  # ... the reconstruction term alone
    first = model.encoder.net[0].weight.grad
    assert first is not None and float(first.abs().sum()) > 0
    assert model.codebook.grad is None  # the decoder's gradient goes to the encoder only


def test_codebook_gradient_reaches_only_used_codes():
    model = small(k=16)
    x = torch.as_tensor(ring(32))
    out = vk.VQ()(model, x)
    out.loss.mean().backward()
    used = torch.zeros(16, dtype=torch.bool)
    used[model.encode_batch(x).codes.flatten()] = True
    moved = model.codebook.grad.abs().sum(1) > 0
    assert used.any() and (~used).any()
    assert torch.equal(moved, used)


def test_ema_update_matches_the_formula_and_happens_only_in_training_passes():
    model = small(k=8)
    x = torch.as_tensor(ring(64))
    objective = vk.VQ(ema=0.5)
    before = model.codebook.detach().clone()
    model.eval()
    objective(model, x)  # evaluation pass, gradients on
    model.train()
    with torch.no_grad():
        objective(model, x)  # training mode without gradients (as fit's validation would be)
    assert torch.equal(model.codebook, before)

    count, total = model.ema_count.clone(), model.ema_sum.clone()
    qz = model.encode_batch(x)
    objective(model, x)
    z_e, codes = qz.z_e.detach().reshape(-1, 2), qz.codes.flatten()
    n = torch.tensor([(codes == k).sum() for k in range(8)], dtype=torch.float32)
    s = torch.stack([z_e[codes == k].sum(0) for k in range(8)])
    count, total = 0.5 * count + 0.5 * n, 0.5 * total + 0.5 * s
    smoothed = (count + 1e-5) / (count.sum() + 8e-5) * count.sum()
    assert torch.allclose(model.codebook, total / smoothed[:, None], rtol=1e-5, atol=1e-6)
    assert not torch.equal(model.codebook, before)


def test_fit_updates_the_ema_codebook_once_per_training_batch_and_never_in_validation(monkeypatch):
    model = small()
    calls = []
    update = model.ema_update
    monkeypatch.setattr(model, "ema_update", lambda *a, **k: (calls.append(model.training), update(*a, **k)))
    n, batch, epochs = 200, 32, 2
    vk.fit(model, ring(n), objective=vk.VQ(ema=0.9), epochs=epochs, batch_size=batch, val=0.25)
    train_rows = n - round(n * 0.25)
    assert calls == [True] * (epochs * math.ceil(train_rows / batch))


def test_dead_codes_restart_onto_encoder_outputs_and_nothing_else_moves(caplog):
    model = small(k=16)
    x = torch.as_tensor(ring(128))
    with torch.no_grad():
        model.codebook[:4] = model.encoder(x[:4])  # four codes on encoder outputs: used
        model.codebook[4:] = 100.0  # far from every encoder output: never assigned
    model.train()
    model.reset_usage()
    qz = model.encode_batch(x)  # a training pass counts its assignments
    before = model.codebook.detach().clone()
    assert model.restart_dead_codes() == 12
    dead = torch.arange(16) >= 4
    assert torch.equal(model.codebook[~dead], before[~dead])
    z_e = qz.z_e.detach().reshape(-1, 2)
    for row in model.codebook[dead].detach():
        assert (z_e == row).all(1).any()  # each restarted code sits on an encoder output of the epoch
    assert torch.equal(model.ema_sum[dead], model.codebook[dead]) and (model.ema_count[dead] == 1).all()

    fresh = small(k=16)
    with torch.no_grad():
        fresh.codebook[4:] = 100.0
    with caplog.at_level(logging.INFO, logger="vaekit.objectives"):
        history = vk.fit(fresh, ring(128), epochs=1, batch_size=32)
    restarted = re.search(r"restarted (\d+) unused codes of 16", caplog.text)
    assert history.codes_used[0] <= 4 and int(restarted.group(1)) == 16 - history.codes_used[0]
    assert float(fresh.codebook.detach().abs().max()) < 100.0


def test_epoch_perplexity_and_codes_used_equal_a_direct_count_of_the_epoch(monkeypatch):
    model = small(k=8)
    seen: list[torch.Tensor] = []
    encode = model.encode_batch

    def spy(x, c=None):
        qz = encode(x, c)
        if model.training and torch.is_grad_enabled():
            seen.append(qz.codes.flatten())
        return qz

    monkeypatch.setattr(model, "encode_batch", spy)
    ends = []
    marker = type("Marker", (vk.Callback,), {"on_epoch_end": lambda self, e, r, m: ends.append(len(seen))})()
    history = vk.fit(model, ring(300), epochs=3, batch_size=64, val=0.2, callbacks=[marker])
    start = 0
    for epoch, end in enumerate(ends):
        codes = torch.cat(seen[start:end]).numpy()
        assert codes.size == 240  # every training point once, no validation pass
        perplexity, used = perplexity_of(codes, 8)
        assert history.perplexity[epoch] == pytest.approx(perplexity, rel=1e-12)
        assert history.codes_used[epoch] == used
        start = end
    batch_mean = np.mean([perplexity_of(b.numpy(), 8)[0] for b in seen[ends[-2] : ends[-1]]])
    assert batch_mean < history.perplexity[-1]  # a per-batch average would be another (smaller) number


def test_history_and_evaluate_leave_out_what_does_not_apply():
    model = small()
    x = ring(240)
    history = vk.fit(model, x, epochs=2, batch_size=64, val=0.2)
    for key in ("kl", "neg_elbo", "kl_per_dim", "val_kl", "diversity"):
        assert key not in history.columns
    assert {"reconstruction_nll", "codebook", "commitment", "perplexity", "codes_used", "val_codebook"} <= set(history.columns)
    result = metrics.evaluate(model, x, k=4, n_samples=100, permutations=4)
    for key in ("kl", "neg_elbo", "kl_per_dim", "iwae_nll", "active_units", "quadrature_nll", "diversity", "mmd2"):
        assert key not in result
    assert result["notes"]["kl"].startswith("no KL") and "fit_prior" in result["notes"]["diversity"]
    perplexity, used = perplexity_of(model.codes(x), 8)
    assert result["perplexity"] == pytest.approx(perplexity) and result["codes_used"] == used
    assert math.isfinite(result["reconstruction_nll"])
    model.fit_prior(x)
    result = metrics.evaluate(model, x, k=4, n_samples=100, permutations=4)
    assert "diversity" not in result["notes"] and math.isfinite(result["mmd2"])


def test_sample_needs_the_prior_and_the_prior_is_the_code_frequencies():
    model = small(k=8)
    x = ring(400)
    vk.fit(model, x, epochs=2, batch_size=64)
    with pytest.raises(InputError, match="fit_prior"):
        model.sample(5)
    model.fit_prior(x, smoothing=0.5)
    counts = np.bincount(model.codes(x)[:, 0], minlength=8)
    expected = (counts + 0.5) / (400 + 8 * 0.5)
    assert np.allclose(np.exp(model.prior_log_prob(np.arange(8)[:, None])), expected, rtol=1e-6)  # G = 1: closed form
    z = model.prior().sample((20000,), generator=torch.Generator().manual_seed(0))
    drawn = np.bincount(model.nearest(z).numpy(), minlength=8) / 20000
    assert np.abs(drawn - expected).max() < 0.02  # 3.5 standard errors at p = 1/2
    assert model.sample(6, seed=1).shape == (6, 2)


def test_save_and_load_keep_the_codebook_the_moving_averages_and_the_prior(tmp_path):
    model = small()
    x = ring(200)
    vk.fit(model, x, objective=vk.VQ(ema=0.9), epochs=2, batch_size=64)
    model.fit_prior(x)
    model.save(tmp_path / "m")
    loaded = vk.load(tmp_path / "m")
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
    assert loaded.prior_is_fitted and not torch.equal(loaded.ema_count, torch.ones(8))
    assert np.array_equal(model.sample(9, seed=2), loaded.sample(9, seed=2))
    unfitted = small()
    unfitted.save(tmp_path / "u")
    with pytest.raises(InputError, match="fit_prior"):
        vk.load(tmp_path / "u").sample(2)


def test_objectives_refuse_the_wrong_model():
    with pytest.raises(InputError, match="VQ"):
        vk.fit(small(), ring(64), objective=vk.ELBO(), epochs=1)
    with pytest.raises(InputTypeError, match="codebook"):
        vk.fit(vk.VAE(x_dim=2, hidden=(8,)), ring(64), objective=vk.VQ(), epochs=1)
    with pytest.raises(InputError, match="VQ.ema"):
        vk.VQ(ema=1.0)


def test_fit_on_digits_lowers_the_reconstruction_nll_and_uses_the_codebook(one_thread):
    x, _ = vk.data.digits()
    model = vk.VQVAE(x_dim=64, codebook_size=32, code_dim=8, hidden=(64,), likelihood=vk.Bernoulli(), seed=0)
    history = vk.fit(model, x, objective=vk.VQ(commitment=0.25), epochs=8, batch_size=128, lr=2e-3)
    # Measured: reconstruction NLL 40.0 -> 25.6 nats; perplexity 1.4 -> 23; 32 of 32 codes used.
    assert history.reconstruction_nll[-1] < 0.75 * history.reconstruction_nll[0]
    assert history.codes_used[-1] >= 24 and history.perplexity[-1] > 10
    assert history.codes_used[0] < history.codes_used[-1]  # the dead-code restarts brought codes into use


def test_vaekit_train_flags_come_from_the_config():
    from vaekit import cli

    flags = cli.flags()
    assert flags["codebook_size"] == ("model", "codebook_size") and flags["commitment"] == ("training", "commitment")
    config = vk.runs.complete_config({"model": {"type": "vqvae", "codebook_size": 16}})
    assert config["training"]["objective"] == "vq"
    assert vk.runs.build_objective(config) == vk.VQ(commitment=0.25, ema=None)
