"""Convolutional trunks (vk.Conv1d, vk.Conv2d): shapes, the decoder's block layout, equivariance, FiLM, fits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import vaekit as vk
from vaekit import metrics, model_settings
from vaekit.models.vae import VAEConfig
from vaekit.nn import ConvEncoder, FiLM, stride_plan

# One torch thread: on a shared 2-core machine two threads of small convolutions wait on each
# other (a conv VAE step on 8x8 digits took 0.25 s with two threads, 0.01 s with one).
pytestmark = pytest.mark.usefixtures("one_thread")

# (trunk, x_shape): images, curves channels last and first, odd sizes, a curve shorter than the blocks.
SHAPES = [
    (vk.Conv2d(channels=(4, 8)), (1, 28, 28)),
    (vk.Conv2d(channels=(4, 8)), (3, 8, 8)),
    (vk.Conv2d(channels=(4, 8, 8)), (2, 5, 7)),
    (vk.Conv1d(channels=(4, 8)), (64, 2)),
    (vk.Conv1d(channels=(4, 8)), (13, 3)),
    (vk.Conv1d(channels=(4, 8), channels_last=False), (2, 13)),
    (vk.Conv1d(channels=(4, 8, 8)), (3, 2)),
]
IDS = [f"{t.kind}-{'x'.join(map(str, s))}{'-first' if getattr(t, 'channels_last', True) is False else ''}" for t, s in SHAPES]


def onehot(labels, n=3):
    return nn.functional.one_hot(torch.as_tensor(labels), n).float()


@pytest.mark.parametrize(("trunk", "x_shape"), SHAPES, ids=IDS)
@pytest.mark.parametrize("k", [1, 2])
def test_encoder_and_mirrored_decoder_have_the_data_shape(trunk, x_shape, k):
    d = math.prod(x_shape)
    torch.manual_seed(0)
    enc = trunk.encoder(x_shape, 10, None, (16,), "relu")
    dec = trunk.decoder(5, x_shape, k, None, (16,), "relu")
    assert enc(torch.randn(4, d)).shape == (4, 10)
    assert dec(torch.randn(4, 5)).shape == (4, k * d)
    # The maps before the flat layout have the data's own spatial size, not one rounded by the strides.
    channels, spatial = (x_shape[1], x_shape[:1]) if getattr(trunk, "channels_last", False) else (x_shape[0], x_shape[1:])
    assert dec.features(torch.randn(4, 5)).shape == (4, k * channels, *spatial)


def test_stride_plan_halves_rounding_up_and_stops_at_one():
    # ceil(n / 2) per stride-2 block: 28 -> 14 -> 7 -> 4; 5 x 7 -> 3 x 4 -> 2 x 2; 3 -> 2 -> 1 -> 1.
    assert stride_plan((28, 28), 3)[0] == [(28, 28), (14, 14), (7, 7), (4, 4)]
    assert stride_plan((5, 7), 2)[0] == [(5, 7), (3, 4), (2, 2)]
    sizes, strides = stride_plan((3,), 3)
    assert sizes == [(3,), (2,), (1,), (1,)] and strides == [(2,), (2,), (1,)]
    # The encoder agrees with the plan on an odd image.
    enc = vk.Conv2d(channels=(4, 8)).encoder((1, 5, 7), 3, None, (), "relu")
    assert enc.features(torch.randn(2, 35)).shape == (2, 8, 2, 2)


@pytest.mark.parametrize(
    ("trunk", "x_shape", "where"),
    [
        (vk.Conv2d(channels=(4,)), (2, 5, 7), lambda m, c: m[:, c]),  # (C, H, W): channel c is axis 0
        (vk.Conv1d(channels=(4,)), (6, 3), lambda m, c: m[:, :, c]),  # (P, C): coordinate c is the last axis
        (vk.Conv1d(channels=(4,), channels_last=False), (3, 6), lambda m, c: m[:, c]),
    ],
    ids=["conv2d", "conv1d-last", "conv1d-first"],
)
def test_per_point_gaussian_reads_mean_from_channel_c_and_variance_from_channel_C_plus_c(trunk, x_shape, where):
    # Make the decoder's output conv constant per channel (zero weights, bias j for channel j), so
    # that any value of the output tells which channel it came from.
    model = vk.VAE(x_shape=x_shape, z_dim=2, hidden=(8,), encoder=trunk, likelihood=vk.Gaussian("per_point"), seed=0)
    out = model.decoder.out
    n_channels = out.out_channels // 2
    with torch.no_grad():
        out.weight.zero_()
        out.bias.copy_(torch.arange(2 * n_channels, dtype=torch.float32))
    px = model.decode_batch(torch.randn(3, 2))
    mean = px.mean.reshape(3, *x_shape)
    variance = px.variance.reshape(3, *x_shape)
    for c in range(n_channels):
        assert torch.all(where(mean, c) == c)
        expected = 1e-4 + nn.functional.softplus(torch.tensor(float(n_channels + c)))
        assert torch.allclose(where(variance, c), expected.expand_as(where(variance, c)), rtol=1e-6)


@pytest.mark.parametrize(
    ("trunk", "x_shape", "roll"),
    [
        (vk.Conv2d(channels=(4, 8)), (2, 32, 32), lambda x, s: torch.roll(x, (s, s), dims=(2, 3))),
        (vk.Conv1d(channels=(4, 8)), (32, 2), lambda x, s: torch.roll(x, s, dims=1)),
    ],
    ids=["conv2d", "conv1d"],
)
def test_conv_features_are_translation_equivariant_away_from_the_borders(trunk, x_shape, roll):
    # Two stride-2 blocks: shifting the input by 4 shifts the last maps by 1. Output position i
    # sees input rows 4i - 3 .. 4i + 3, so positions 1..6 (shifted: 2..7) touch neither the zero
    # padding nor the rows that the roll wrapped around.
    torch.manual_seed(0)
    enc = trunk.encoder(x_shape, 3, None, (), "relu")
    x = torch.randn(2, *x_shape)
    f = enc.features(x.reshape(2, -1))
    g = enc.features(roll(x, 4).reshape(2, -1))
    assert f.shape[-1] == 8
    if len(x_shape) == 3:
        assert torch.allclose(g[:, :, 2:8, 2:8], f[:, :, 1:7, 1:7], atol=1e-5)
        assert not torch.allclose(g[:, :, 1:7, 1:7], f[:, :, 1:7, 1:7], atol=1e-2)  # the shift matters
    else:
        assert torch.allclose(g[:, :, 2:8], f[:, :, 1:7], atol=1e-5)
        assert not torch.allclose(g[:, :, 1:7], f[:, :, 1:7], atol=1e-2)


@pytest.mark.parametrize("condition", [vk.OneHot(3), vk.Continuous(2, embed=4)], ids=["onehot", "continuous"])
@pytest.mark.parametrize("trunk", [vk.Conv2d(channels=(4, 8)), vk.Conv1d(channels=(4, 8))], ids=["conv2d", "conv1d"])
def test_film_starts_as_identity_then_conditions_the_maps_and_every_film_parameter_gets_gradients(trunk, condition):
    x_shape = (1, 8, 8) if trunk.kind == "conv2d" else (8, 2)
    torch.manual_seed(0)
    enc = trunk.encoder(x_shape, 4, condition, (16,), "relu")
    dec = trunk.decoder(3, x_shape, 1, condition, (16,), "relu")
    c1, c2 = (onehot([0, 0]), onehot([2, 2])) if condition.kind == "onehot" else (torch.zeros(2, 2), torch.ones(2, 2) * 3)
    x, z = torch.randn(2, math.prod(x_shape)), torch.randn(2, 3)
    # At init FiLM is the identity: the conv maps do not depend on the condition ...
    assert torch.equal(enc.features(x, c1), enc.features(x, c2))
    # ... but the outputs do, through the dense layers, where the embedding is concatenated.
    assert not torch.allclose(enc(x, c1), enc(x, c2)) and not torch.allclose(dec(z, c1), dec(z, c2))
    films = [m for net in (enc, dec) for m in net.modules() if isinstance(m, FiLM)]
    assert len(films) == 4  # one per conv block of each network
    loss = (enc(x, c2) ** 2).sum() + (dec(z, c2) ** 2).sum()
    loss.backward()
    for film in films:
        for name, p in film.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    # Once FiLM's projections are no longer zero (as training makes them), the maps depend on c.
    with torch.no_grad():
        for film in films:
            nn.init.normal_(film.proj.weight, std=0.1)
    assert not torch.allclose(enc.features(x, c1), enc.features(x, c2))
    assert not torch.allclose(dec.features(z, c1), dec.features(z, c2))


def test_channels_last_and_channels_first_conv1d_are_the_same_model_on_transposed_data():
    points, coords = 10, 3
    last = vk.VAE(x_shape=(points, coords), z_dim=2, hidden=(8,), encoder=vk.Conv1d(channels=(4, 8)), seed=0,
                  likelihood=vk.Gaussian("per_point"), condition=vk.OneHot(3))  # fmt: skip
    first = vk.VAE(x_shape=(coords, points), z_dim=2, hidden=(8,), encoder=vk.Conv1d(channels=(4, 8), channels_last=False),
                   likelihood=vk.Gaussian("per_point"), condition=vk.OneHot(3), seed=1)  # fmt: skip
    first.load_state_dict(last.state_dict())
    x = torch.randn(5, points, coords)
    c = onehot([0, 1, 2, 0, 1])
    qa = last.encode_batch(x.reshape(5, -1), c)
    qb = first.encode_batch(x.transpose(1, 2).reshape(5, -1), c)
    assert torch.allclose(qa.mean, qb.mean, atol=1e-6) and torch.allclose(qa.stddev, qb.stddev, atol=1e-6)
    z = torch.randn(5, 2)
    pa, pb = last.decode_batch(z, c), first.decode_batch(z, c)
    assert torch.allclose(pa.mean.reshape(5, points, coords), pb.mean.reshape(5, coords, points).transpose(1, 2), atol=1e-6)
    assert torch.allclose(
        pa.variance.reshape(5, points, coords), pb.variance.reshape(5, coords, points).transpose(1, 2), atol=1e-6
    )


def test_conv_layers_do_not_grow_with_the_image_and_a_three_block_vae_is_smaller_than_the_mlp_on_28x28():
    def count(module):
        return sum(p.numel() for p in module.parameters())

    def conv_count(model):
        return sum(count(m) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))

    trunk = vk.Conv2d(channels=(16, 32, 32))
    small = vk.VAE(x_shape=(1, 28, 28), z_dim=16, hidden=(256,), encoder=trunk, seed=0)
    large = vk.VAE(x_shape=(1, 56, 56), z_dim=16, hidden=(256,), encoder=trunk, seed=0)
    assert conv_count(small) == conv_count(large) > 0
    mlp = vk.VAE(x_shape=(1, 28, 28), z_dim=16, hidden=(256,), seed=0)
    # 28 -> 14 -> 7 -> 4: the dense layers read 32 * 4 * 4 = 512 features instead of 784 pixels.
    assert isinstance(small.encoder, ConvEncoder) and small.encoder.feature_shape == (32, 4, 4)
    assert count(small) < count(mlp)


def test_vae_refuses_a_conv_trunk_for_data_of_the_wrong_rank():
    with pytest.raises(vk.InputError, match=r"x_shape must have 3 axes \(C, H, W\) for encoder=Conv2d.*Got x_shape \(64,\)"):
        vk.VAE(x_dim=64, encoder=vk.Conv2d())
    with pytest.raises(vk.InputError, match=r"x_shape must have 2 axes \(P, C\).*for decoder=Conv1d.*Got x_shape \(1, 8, 8\)"):
        vk.VAE(x_shape=(1, 8, 8), encoder=vk.Conv2d(), decoder=vk.Conv1d())
    # The same check guards model files and run configs, which build the config dataclass.
    config = vk.VAE(x_shape=(1, 8, 8), encoder=vk.Conv2d(channels=(4,))).config
    config["x_shape"], config["x_dim"] = [64], 64
    with pytest.raises(vk.InputError, match="x_shape must have 3 axes"):
        VAEConfig.from_dict(config)


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: vk.Conv2d(channels=()), vk.InputError, r"Conv2d.channels must hold at least one channel count"),
        (lambda: vk.Conv2d(channels=(4, 0)), vk.InputError, r"Conv2d.channels\[i\] must be an integer >= 1. Got 0"),
        (lambda: vk.Conv1d(channels="32"), vk.InputTypeError, r"Conv1d.channels must be a sequence"),
        (lambda: vk.Conv1d(kernel=4), vk.InputError, r"Conv1d.kernel must be an odd integer >= 1. Got 4 instead"),
        (lambda: vk.Conv1d(channels_last="yes"), vk.InputTypeError, r"Conv1d.channels_last must be True or False"),
    ],
)
def test_conv_specs_refuse_bad_values(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_conv_specs_round_trip_through_json_and_become_train_flags():
    arch = vk.VAE(x_shape=(12, 2), encoder=vk.Conv1d(channels=(4, 8), kernel=5, channels_last=True)).architecture
    assert arch.to_dict()["encoder"] == {"type": "conv1d", "channels": [4, 8], "kernel": 5, "channels_last": True}
    assert VAEConfig.from_dict(arch.to_dict()) == arch
    settings = model_settings.all_settings()
    assert {"encoder_channels", "encoder_kernel", "encoder_channels_last", "decoder_channels"} <= set(settings)
    section = model_settings.settings_of(arch, "vae")
    assert section["encoder"] == "conv1d" and section["encoder_channels"] == [4, 8]
    assert model_settings.architecture(section, x_dim=24, condition=None) == arch


def test_standardised_data_goes_through_a_conv_trunk_and_comes_back_in_data_units():
    rng = np.random.default_rng(0)
    x = (100.0 + 10.0 * rng.normal(size=(200, 8, 2))).astype(np.float32)
    model = vk.VAE(x_shape=(8, 2), z_dim=2, hidden=(8,), encoder=vk.Conv1d(channels=(4,)), standardize=True, seed=0)
    history = vk.fit(model, x, epochs=2, batch_size=50, seed=0)
    assert all(math.isfinite(v) for v in history.loss)
    assert torch.allclose(model.x_shift, torch.from_numpy(x.reshape(200, -1).mean(0)))
    # The decoder works in standard units; its means come back near the data's mean of 100, not 0.
    assert abs(float(model.sample(100, seed=0).mean()) - 100.0) < 10.0


def test_conv2d_bernoulli_learns_the_digits():
    # Measured (README, "Convolutional trunks"): held-out negative ELBO of this conv VAE against
    # the MLP VAE at equal epochs. Asserted here only that the conv model learns.
    x, _ = vk.data.digits()
    train, test = x[:1400], x[1400:]
    model = vk.VAE(x_shape=(1, 8, 8), z_dim=8, hidden=(128,), encoder=vk.Conv2d(channels=(16, 32)),
                   likelihood=vk.Bernoulli(), seed=0)  # fmt: skip
    before = metrics.neg_elbo(model, test, samples=1, seed=0)
    history = vk.fit(model, train, epochs=10, batch_size=64, seed=0)
    after = metrics.neg_elbo(model, test, samples=1, seed=0)
    assert history.loss[-1] < 0.8 * history.loss[0]
    assert after < before - 5.0  # nats per digit on held-out data
