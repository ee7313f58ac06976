import itertools

import numpy as np
import pytest
import torch

import vaekit as vk
from numerics import mlp_rounding_bound, unit_roundoff
from vaekit.errors import InputError, InputTypeError

# Cross-implementation comparisons: scripts/portability.sh reruns these under other CPU kernels.
pytestmark = pytest.mark.numerics

LIKELIHOODS = [vk.Gaussian(0.1), vk.Gaussian("learned"), vk.Gaussian("per_point"), vk.Bernoulli()]
CONDITIONS = [None, vk.OneHot(3), vk.Continuous(2, embed=4)]
OBJECTIVES = [vk.ELBO(), vk.ELBO(beta=4.0, warmup_epochs=3, free_bits=0.1), vk.IWAE(k=4)]


def make_data(likelihood, condition, n=32, x_dim=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, x_dim)).astype(np.float32)
    if isinstance(likelihood, vk.Bernoulli):
        x = (x > 0.5).astype(np.float32)
    c = None
    if isinstance(condition, vk.OneHot):
        c = rng.integers(0, 3, size=n)
    elif isinstance(condition, vk.Continuous):
        c = rng.normal(size=(n, 2)).astype(np.float32)
    return x, c


@pytest.mark.parametrize(("likelihood", "condition", "objective"), list(itertools.product(LIKELIHOODS, CONDITIONS, OBJECTIVES)))
def test_contract_every_likelihood_condition_objective(likelihood, condition, objective):
    model = vk.VAE(5, 3, hidden=(16,), likelihood=likelihood, condition=condition, seed=0)
    x, c = make_data(likelihood, condition)
    qz = model.encode(x, c)
    assert qz.mean.shape == (32, 3) and qz.stddev.shape == (32, 3) and (qz.stddev > 0).all()
    px = model.decode(qz.mean, c)
    assert px.mean.shape == (32, 5)
    out = objective(model, model.prepare_x(x), model.prepare_condition(c, 32), epoch=0)
    for name, value in out.record().items():
        assert value.shape[0] == 32, name
        assert torch.isfinite(value).all(), name
    assert out.kl_per_dim.shape == (32, 3)
    # The objectives compute kl and neg_elbo with exactly these operations: equal, not close.
    assert torch.equal(out.kl_per_dim.sum(-1), out.kl)
    assert torch.equal(out.neg_elbo, out.reconstruction_nll + out.kl)
    out.loss.mean().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, f"no gradient reaches {name}"
    assert model.sample(7, None if c is None else c[:7], seed=0).shape == (7, 5)
    assert model.reconstruct(x, c).shape == (32, 5)
    history = vk.fit(model, x, c, objective=objective, epochs=2, batch_size=8, seed=0)
    assert len(history) == 2 and np.isfinite(history.loss).all()


def test_reparameterisation_gradient_matches_finite_differences():
    # d/d(mean) of E[z] through z = mean + std * eps is exactly 1 per coordinate, and the
    # gradient of E[z^2] wrt std is 2 std: check autograd through rsample on a fixed eps.
    model = vk.VAE(2, 2, hidden=(8,), seed=0)
    x = model.prepare_x(np.array([[0.3, -0.2]], dtype=np.float32))
    qz = model.encode_batch(x)
    torch.manual_seed(0)
    z = qz.rsample((50000,))
    (g_mean,) = torch.autograd.grad(z.mean(), qz.base_dist.loc, retain_graph=True)
    assert torch.allclose(g_mean, torch.full_like(g_mean, 1 / 2), atol=1e-6)  # mean over 2 dims
    (g_std,) = torch.autograd.grad((z**2).mean(0).sum(), qz.base_dist.scale)
    assert torch.allclose(g_std, 2 * qz.stddev, rtol=0.05)


def test_onehot_cvae_decoder_depends_on_label():
    model = vk.VAE(2, 2, condition=vk.OneHot(4), hidden=(16,), seed=0)
    z = np.zeros((1, 2), dtype=np.float32)
    outs = [model.decode(z, label).mean for label in range(4)]
    assert len({tuple(o.flatten().tolist()) for o in outs}) == 4


def test_sample_is_reproducible_with_seed_and_noise_option():
    model = vk.VAE(2, 2, hidden=(8,), seed=0)
    assert np.array_equal(model.sample(10, seed=1), model.sample(10, seed=1))
    assert not np.array_equal(model.sample(10, seed=1), model.sample(10, seed=2))
    noisy = model.sample(20000, seed=0, noise=True) - model.sample(20000, seed=0)
    assert noisy.var(0) == pytest.approx([0.1, 0.1], rel=0.05)


def test_same_seed_same_initial_weights():
    a, b = vk.VAE(2, 2, seed=5), vk.VAE(2, 2, seed=5)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    c = vk.VAE(2, 2, seed=6)
    assert not torch.equal(a.encoder.net[0].weight, c.encoder.net[0].weight)


def test_standardize_stores_statistics_and_outputs_user_units():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(500, 2)) * [100.0, 0.01] + [1000.0, -5.0]).astype(np.float32)
    model = vk.VAE(2, 2, hidden=(32,), standardize=True, seed=0)
    vk.fit(model, x, epochs=30, seed=0, monitors={})
    assert np.allclose(model.x_shift.numpy(), x.mean(0), rtol=1e-4)
    assert np.allclose(model.x_scale.numpy(), x.std(0), rtol=1e-3)
    samples = model.sample(2000, seed=0)
    assert np.allclose(samples.mean(0), x.mean(0), rtol=0.01, atol=0.02 * x.std(0))
    recon = model.reconstruct(x)
    assert np.abs(recon - x).mean(0)[0] < 100 and np.abs(recon - x).mean(0)[1] < 0.01


X2 = np.zeros((4, 2), dtype=np.float32)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda m: m.encode(np.zeros((4, 3))),
            InputError,
            r"x must have 2 columns \(shape \(N, 2\)\)\. Got shape \(4, 3\) instead",
        ),
        (lambda m: m.encode(np.zeros(4)), InputError, r"x must be a 2-D array of shape \(N, 2\)\. Got ndarray of shape \(4,\)"),
        (
            lambda m: m.encode(np.zeros((0, 2))),
            InputError,
            r"x must hold at least one row\. Got an empty array of shape \(0, 2\)",
        ),
        (
            lambda m: m.encode(np.array([[0, 1], [np.nan, 0]])),
            InputError,
            r"x must be finite \(no NaN or inf\)\. Got 1 bad row\(s\), the first at row 1: \[nan, 0.0\] instead",
        ),
        (
            lambda m: m.encode(np.array([["a", "b"]])),
            InputTypeError,
            r"x must hold numbers \(float or int\)\. Got an array of dtype <U1",
        ),
        (lambda m: m.encode("abc"), InputTypeError, r"x must be a numpy array or a torch tensor\. Got 'abc' instead"),
        (
            lambda m: m.decode(np.zeros((3, 5))),
            InputError,
            r"z must have 2 columns \(shape \(N, 2\)\)\. Got shape \(3, 5\) instead",
        ),
        (lambda m: m.encode(X2, np.zeros(4)), InputError, r"condition must be None: this model is unconditional"),
    ],
)
def test_unconditional_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call(vk.VAE(2, 2, hidden=(8,)))


@pytest.mark.parametrize(
    ("condition", "value", "message"),
    [
        (vk.OneHot(8), None, r"condition is required: this model was built with condition=OneHot\(n_classes=8\)\. Got None"),
        (vk.OneHot(8), np.array([0, 1, 8, 2]), r"condition must hold labels in 0..7 for OneHot\(8\)\. Got the label 8 instead"),
        (vk.OneHot(8), np.array([0, -1, 2, 2]), r"condition must hold labels in 0..7 for OneHot\(8\)\. Got the label -1 instead"),
        (
            vk.OneHot(8),
            np.array([0.5, 1, 2, 2]),
            r"condition must hold integer class labels for OneHot\(8\)\. Got the non-integer value 0.5",
        ),
        (
            vk.OneHot(8),
            np.array([0, 1, 2]),
            r"condition must have 1 columns|condition must have one row per data row \(4\)\. Got 3 rows",
        ),
        (vk.Continuous(1), np.ones((4, 2)), r"condition must have 1 columns \(shape \(N, 1\)\)\. Got shape \(4, 2\) instead"),
        (vk.Continuous(1), np.array([1.0, np.inf, 0, 0]), r"condition must be finite \(no NaN or inf\)"),
    ],
)
def test_conditional_bad_input(condition, value, message):
    model = vk.VAE(2, 2, hidden=(8,), condition=condition)
    with pytest.raises(InputError, match=message):
        model.encode(X2, value)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"x_dim": 0}, InputError, r"x_dim must be an integer >= 1\. Got 0 instead"),
        ({"x_dim": 2.5}, InputTypeError, r"x_dim must be an integer >= 1\. Got 2.5 instead"),
        ({"x_dim": 2, "hidden": 128}, InputTypeError, r"hidden must be a sequence of layer widths\. Got 128 instead"),
        (
            {"x_dim": 2, "likelihood": "mse"},
            InputTypeError,
            r"likelihood must be vaekit.Gaussian\(...\) or vaekit.Bernoulli\(\)\. Got 'mse'",
        ),
        (
            {"x_dim": 2, "condition": 8},
            InputTypeError,
            r"condition must be vaekit.OneHot\(...\) or vaekit.Continuous\(...\), or None\. Got 8",
        ),
        ({"x_dim": 2, "activation": "sigmoidish"}, InputError, r"activation must be one of \[.*\]\. Got 'sigmoidish' instead"),
        (
            {"x_dim": 2, "likelihood": vk.Bernoulli(), "standardize": True},
            InputError,
            r"standardize must be False with a Bernoulli likelihood",
        ),
    ],
)
def test_constructor_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        vk.VAE(**kwargs)


def test_errors_are_library_errors_and_builtins():
    with pytest.raises(vk.VaekitError):
        vk.VAE(2).encode(np.zeros((1, 3)))
    with pytest.raises(ValueError):
        vk.VAE(2).encode(np.zeros((1, 3)))


def test_large_inputs_are_processed_in_blocks_with_the_same_result():
    from vaekit.models import common as model_module

    model = vk.VAE(2, 2, hidden=(16,), condition=vk.OneHot(3), seed=0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20000, 2)).astype(np.float32)
    c = rng.integers(0, 3, size=20000)
    qz = model.encode(x, c)
    px = model.decode(qz.mean, c)
    whole_enc = model.encoder(model.prepare_x(x), model.prepare_condition(c, 20000))
    assert model_module.CHUNK_ROWS < 20000
    # Blocks and the whole differ only in the matrix kernels' summation order: both within the
    # float32 rounding bound of the network (tests/numerics.py), however the CPU's kernels sum.
    cond = model.prepare_condition(c, 20000)
    enc_bound = mlp_rounding_bound(model.encoder, model.prepare_x(x), cond)
    blocks = torch.cat([qz.mean, (qz.stddev**2).log()], -1)
    assert bool(((blocks - whole_enc).abs() <= 2 * enc_bound + 4 * unit_roundoff(torch.float32) * whole_enc.abs()).all())
    whole_dec = model.decoder(qz.mean, cond)
    assert bool(((px.mean - whole_dec).abs() <= 2 * mlp_rounding_bound(model.decoder, qz.mean, cond)).all())


@pytest.mark.parametrize(
    ("condition", "value"),
    [
        (vk.OneHot(4), 2),
        (vk.OneHot(4), np.array([2])),
        (vk.Continuous(1), 1.5),
        (vk.Continuous(1), np.array([1.5])),
        (vk.Continuous(1), np.array([[1.5]])),
        (vk.Continuous(2, embed=4), np.array([1.5, -1.0])),
    ],
)
def test_a_single_condition_is_broadcast_to_every_row(condition, value):
    model = vk.VAE(2, 2, hidden=(8,), condition=condition, seed=0)
    z = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
    single = model.decode(z, value).mean
    rows = np.repeat(np.atleast_2d(np.asarray(value, dtype=np.float32)).reshape(1, -1), 5, axis=0)
    if isinstance(condition, vk.OneHot):
        rows = rows[:, 0].astype(int)
    assert torch.equal(single, model.decode(z, rows).mean)


def test_a_float64_model_trains_and_answers_in_float64(tmp_path):
    # Data are cast to the model's dtype everywhere they go in; noise is drawn in it too.
    x, y = vk.data.ring(200, seed=0)
    model = vk.VAE(2, 2, hidden=(8,), condition=vk.OneHot(8), seed=0).double()
    assert model.dtype == torch.float64
    history = vk.fit(model, x, y, epochs=2, batch_size=64, val=0.2)
    assert len(history) == 2 and np.isfinite(history.loss).all()
    assert model.encode(x, y).mean.dtype == torch.float64
    assert model.sample(4, 1, seed=0, noise=True).dtype == np.float64
    assert model.prepare_condition(y, 200).dtype == torch.float64
    with pytest.raises(InputError, match=r"model must hold float32 weights to be saved \(call model.float\(\) first\)"):
        model.save(tmp_path / "m")
    assert not (tmp_path / "m" / "model.json").exists()
    model.float().save(tmp_path / "m")
    assert vk.load(tmp_path / "m").dtype == torch.float32
