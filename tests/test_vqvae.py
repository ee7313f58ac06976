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


def training_codes(model, monkeypatch) -> list[torch.Tensor]:
    """The list that the codes of every training pass of ``model`` will be appended to, flat."""
    seen: list[torch.Tensor] = []
    encode = model.encode_batch

    def spy(x, c=None):
        qz = encode(x, c)
        if model.training and torch.is_grad_enabled():
            seen.append(qz.codes.flatten())
        return qz

    monkeypatch.setattr(model, "encode_batch", spy)
    return seen


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
    seen = training_codes(model, monkeypatch)
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


# --------------------------------------------------------------------------- grids of codes
def grid_model(k=8, seed=0, **kwargs):
    """8x8 images through two stride-2 blocks: a 2 x 2 grid of codes (G = 4)."""
    args = {"x_shape": (1, 8, 8), "codebook_size": k, "code_dim": 3, "encoder": vk.Conv2d(channels=(4, 8))}
    return vk.VQVAE(likelihood=vk.Bernoulli(), prior_hidden=(32,), seed=seed, **(args | kwargs))


def digits(n=200):
    return (vk.data.digits()[0][:n] > 0.5).astype(np.float32)


def randomised(net, seed=0, scale=1.0):
    """A prior network with every weight drawn from N(0, scale^2) (fitting starts with zero output weights)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype))
    return net


def test_a_conv_trunk_gives_a_grid_of_codes_each_the_brute_force_nearest():
    model = grid_model(k=16).eval()
    assert model.grid_shape == (2, 2) and model.grid == 4 and model.z_dim == 12
    x = torch.as_tensor(digits(100))
    with torch.no_grad():  # codes among the encoder outputs, so that many are nearest to some output
        z_e = model.encode_batch(x).z_e.reshape(-1, 3)
        model.codebook.copy_(z_e[torch.randperm(400, generator=torch.Generator().manual_seed(1))[:16]] + 0.01)
    qz = model.encode_batch(x)
    # z_e by hand: the conv blocks' last maps, the 1x1 projection, position (i, j) -> g = 2 i + j.
    with torch.no_grad():
        maps = model.encoder.proj(model.encoder.features(x)).double()  # (B, code_dim, 2, 2)
    e = model.codebook.detach().double()
    for b in range(x.shape[0]):
        for i in range(2):
            for j in range(2):
                assert torch.allclose(qz.z_e[b, 2 * i + j].double(), maps[b, :, i, j], atol=1e-6)
                distances = [float(((maps[b, :, i, j] - e[m]) ** 2).sum()) for m in range(16)]
                assert int(qz.codes[b, 2 * i + j]) == int(np.argmin(distances))
    assert len(set(qz.codes.flatten().tolist())) > 3  # the check covered several codes
    assert torch.equal(qz.mean, model.codebook[qz.codes].reshape(100, 12))


def test_conv1d_grid_and_decoder_choices():
    curves = vk.VQVAE(x_shape=(8, 2), codebook_size=4, code_dim=2, encoder=vk.Conv1d(channels=(4,)))
    assert curves.grid_shape == (4,) and curves.z_dim == 8
    assert curves.reconstruct(np.zeros((3, 8, 2), np.float32)).shape == (3, 8, 2)
    flat = vk.VQVAE(x_shape=(1, 8, 8), codebook_size=4, code_dim=2, encoder=vk.Conv2d(channels=(4, 8)), decoder=vk.MLP())
    assert flat.z_dim == 8 and flat.decoder.net[0].in_features == 8  # the MLP decoder reads the flattened grid
    assert vk.VQVAE(x_dim=64, codebook_size=4, code_dim=2).grid == 1  # the MLP trunk: one code per point
    with pytest.raises(InputError) as info:
        vk.VQVAE(x_shape=(1, 8, 8), encoder=vk.Conv2d(channels=(4, 8)), decoder=vk.Conv2d(channels=(4,)))
    assert str(info.value) == (
        "decoder must read the encoder's grid of codes [2, 2] (a conv trunk with as many blocks as the encoder's, or an "
        "MLP). Got decoder=Conv2d(channels=(4,), kernel=3), whose grid is [4, 4], instead."
    )
    with pytest.raises(InputError, match=re.escape("prior_hidden[i] must be")):
        vk.VQVAE(x_dim=2, prior_hidden=(0,))


def test_straight_through_gradient_reaches_the_conv_encoder():
    model = grid_model()
    x = torch.as_tensor(digits(32))
    qz = model.encode_batch(x)
    z = qz.rsample()
    assert torch.equal(z, qz.mean)
    (-model.decode_batch(z).log_prob(x)).sum().backward(retain_graph=True)
    first = model.encoder.convs[0].weight.grad.clone()
    # The encoder output's gradient is the decoder's gradient at z_q, exactly (straight through).
    zq = qz.mean.detach().requires_grad_(True)
    dz = torch.autograd.grad((-model.decode_batch(zq).log_prob(x)).sum(), zq)[0]
    grad = torch.autograd.grad((qz.z_e * dz.view_as(qz.z_e)).sum(), model.encoder.convs[0].weight)[0]
    assert float(first.abs().sum()) > 0 and torch.allclose(first, grad, rtol=1e-5, atol=1e-7)
    assert model.codebook.grad is None


def test_grid_perplexity_counts_every_position_of_every_point_of_the_epoch(monkeypatch):
    model = grid_model(k=8)
    seen = training_codes(model, monkeypatch)
    history = vk.fit(model, digits(96), epochs=1, batch_size=32, objective=vk.VQ(restart_dead=False))
    codes = torch.cat(seen).numpy()
    assert codes.size == 96 * 4
    perplexity, used = perplexity_of(codes, 8)
    assert history.perplexity[0] == pytest.approx(perplexity, rel=1e-12) and history.codes_used[0] == used


# --------------------------------------------------------------------------- the autoregressive prior
def test_the_prior_is_autoregressive_in_raster_order():
    from vaekit.models.code_prior import CodePriorNet

    grid, k = 6, 4
    net = randomised(CodePriorNet(grid, k, (16, 16), condition=vk.OneHot(3)))
    codes = torch.randint(k, (32, grid), generator=torch.Generator().manual_seed(0))
    c = vk.OneHot(3).prepare(np.arange(32) % 3, "c")
    base = net(codes, c)  # (B, G, K)
    for j in range(grid):
        moved = codes.clone()
        moved[:, j] = (moved[:, j] + 1) % k
        changed = (net(moved, c) != base).any(-1).any(0)  # (G,) positions whose logits moved
        assert not changed[: j + 1].any()  # nothing at or before j reads code j
        assert changed[j + 1 :].all()  # every later position does (a network that ignored codes would fail)
    other = vk.OneHot(3).prepare((np.arange(32) + 1) % 3, "c")
    assert (net(codes, other)[:, 0] != base[:, 0]).any()  # the condition reaches even the first position
    assert torch.allclose(net(codes, c, position=3), base[:, 3], atol=1e-5)  # one position's logits, as in sampling


@pytest.mark.parametrize("conditional", [False, True])
def test_exact_enumeration_sums_to_one_and_samples_follow_the_probabilities(conditional):
    # A grid of 3 codes (Conv1d on 6 points, one block), K = 4: all 64 grids enumerated.
    k, n = 4, 40000
    condition = vk.OneHot(2) if conditional else None
    model = vk.VQVAE(x_shape=(6, 1), codebook_size=k, code_dim=2, encoder=vk.Conv1d(channels=(4,)), condition=condition)
    model = model.double()
    assert model.grid == 3
    randomised(model.prior_net, seed=3, scale=0.2)
    model.prior_fitted.fill_(1.0)
    c = model.prepare_condition(1 if conditional else None, 1)
    grids = torch.cartesian_prod(*[torch.arange(k)] * 3)  # (64, 3)
    z = model.codebook[grids].reshape(64, -1).detach()  # their codebook vectors
    log_p = model.prior(c).log_prob(z).detach()
    assert float(log_p.exp().sum()) == pytest.approx(1.0, abs=1e-12)
    assert torch.allclose(log_p, torch.as_tensor(model.prior_log_prob(grids.numpy(), 1 if conditional else None)))
    assert float(model.prior(c).log_prob(z[:1] + 0.5)) == -math.inf  # off the codebook
    drawn = model.prior(c).sample((n,), generator=torch.Generator().manual_seed(0))  # (n, Z)
    codes = model.nearest(drawn.reshape(-1, 2)).view(n, 3)
    index = (codes * torch.tensor([16, 4, 1])).sum(1)
    observed = torch.bincount(index, minlength=64).double()
    expected = n * log_p.exp()
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert chi2 < 103.4  # the 0.999 quantile of chi-square with 63 degrees of freedom
    assert float(expected.min()) > 5  # the chi-square approximation holds for these random weights


def test_fit_prior_reaches_the_entropy_of_codes_with_a_known_dependency():
    # A Markov chain over 4 positions: k_1 uniform over K = 4, then k_g = k_(g-1) with probability
    # 0.85, else one of the other 3 uniformly. Entropy: log 4 + 3 H(0.85, 0.05, 0.05, 0.05).
    from vaekit.models.code_prior import CodePriorNet, fit_code_prior

    k, grid, stay = 4, 4, 0.85
    g = torch.Generator().manual_seed(0)

    def chain(n):
        codes = torch.zeros(n, grid, dtype=torch.long)
        codes[:, 0] = torch.randint(k, (n,), generator=g)
        for i in range(1, grid):
            jump = torch.rand(n, generator=g) > stay
            step = torch.randint(1, k, (n,), generator=g)
            codes[:, i] = torch.where(jump, (codes[:, i - 1] + step) % k, codes[:, i - 1])
        return codes

    move = (1 - stay) / (k - 1)
    entropy = math.log(k) - (grid - 1) * (stay * math.log(stay) + (k - 1) * move * math.log(move))  # 3.149 nats
    train, test = chain(4000), chain(4000)
    net = CodePriorNet(grid, k, (64,))
    torch.manual_seed(0)
    fit = fit_code_prior(net, train, None, epochs=20, batch_size=128, lr=3e-3, smoothing=0.5)
    with torch.no_grad():
        held_out = -float(net.log_prob(test).mean())
    assert fit["independent_nll"] == pytest.approx(grid * math.log(k), abs=0.01)  # the marginals are uniform
    # Measured: 3.136 on held-out codes (3.189 on the training codes). The sampling error of a mean over
    # 4000 codes is about 0.015.
    assert abs(held_out - entropy) < 0.05


def test_grid_model_samples_and_prior_survive_save_and_load_bit_for_bit(tmp_path):
    model = grid_model(condition=vk.OneHot(3))
    x, y = digits(120), np.arange(120) % 3
    vk.fit(model, x, y, epochs=2, batch_size=32, seed=0)
    with pytest.raises(InputError, match="fit_prior"):
        model.sample(2, 0)
    model.fit_prior(x, y, epochs=3, seed=0)
    evaluated = metrics.evaluate(model, x, y, n_samples=64)
    codes = model.codes(x, y)
    assert evaluated["code_grid"] == 4
    assert evaluated["prior_nll_codes"] == pytest.approx(-float(np.mean(model.prior_log_prob(codes, y))), rel=1e-6)
    model.save(tmp_path / "m")
    loaded = vk.load(tmp_path / "m")
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
    assert np.array_equal(model.sample(9, 2, seed=4), loaded.sample(9, 2, seed=4))
    assert not np.array_equal(model.sample(9, 2, seed=4), model.sample(9, 2, seed=5))
    assert np.array_equal(model.prior_log_prob(codes, y), loaded.prior_log_prob(codes, y))
    refit = grid_model(condition=vk.OneHot(3))
    refit.load_state_dict(model.state_dict())
    refit.fit_prior(x, y, epochs=3, seed=0)  # the seed alone fixes the fit
    assert all(torch.equal(a, b) for a, b in zip(model.prior_net.state_dict().values(), refit.prior_net.state_dict().values()))


def test_prior_log_prob_refuses_bad_codes():
    model = vk.VQVAE(x_dim=2, codebook_size=4, code_dim=2, hidden=(8,)).fit_prior(ring(50))
    with pytest.raises(InputError) as info:
        model.prior_log_prob(np.array([[4]]))
    assert str(info.value) == "codes must lie in [0, 3] (the codebook). Got values in [4, 4] instead."
    with pytest.raises(InputError, match=re.escape("codes must be integer codes of shape (N, 1)")):
        model.prior_log_prob(np.zeros((2, 2), dtype=np.int64))


def test_ema_counts_every_grid_position():
    # With no restarts the counts' total follows N <- d N + (1 - d) (B G) from K ones, whatever the codes.
    model = grid_model(k=8)
    vk.fit(model, digits(96), objective=vk.VQ(ema=0.9, restart_dead=False), epochs=2, batch_size=32)
    steps, assignments = 6, 32 * 4
    expected = 0.9**steps * 8 + assignments * (1 - 0.9**steps)
    assert float(model.ema_count.sum()) == pytest.approx(expected, rel=1e-5)


def test_dead_codes_restart_onto_grid_positions(caplog):
    model = grid_model(k=16)
    with torch.no_grad():
        model.codebook[4:] = 100.0  # far from every encoder output: never assigned
    with caplog.at_level(logging.INFO, logger="vaekit.objectives"):
        history = vk.fit(model, digits(64), epochs=1, batch_size=32)
    restarted = re.search(r"restarted (\d+) unused codes of 16", caplog.text)
    assert history.codes_used[0] <= 4 and int(restarted.group(1)) == 16 - history.codes_used[0]
    assert float(model.codebook.detach().abs().max()) < 100.0  # every dead code now sits on a grid position's z_e
