"""Log columns: Gaussian(log_columns=..., log_offset=...) models chosen columns as log(x + offset).

Densities are checked against torch's own LogNormal and against a twin model that is given the
logged data by hand, so the Jacobian and the transform are each pinned by an independent route.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch.distributions import LogNormal, Normal

import vaekit as vk
from vaekit import cli, fastpath
from vaekit.diagnostics import run_warnings
from vaekit.distributions import LogColumns, diagonal_normal, reconstruction_energy
from vaekit.models.common import sample_with
from vaekit.plots import _in_units

pytestmark = pytest.mark.usefixtures("one_thread")

LOGGED = (0, 2)


def counts(n: int = 300, seed: int = 0) -> np.ndarray:
    """(n, 3): two columns of counts spanning about three decades (zeros included) and one real column."""
    rng = np.random.default_rng(seed)
    size = rng.normal(size=(n, 1))
    a = np.floor(np.exp(2.0 * size + 3.0 + 0.3 * rng.normal(size=(n, 1))))
    b = size + 0.1 * rng.normal(size=(n, 1))
    c = np.floor(np.exp(1.5 * size + 2.0 + 0.3 * rng.normal(size=(n, 1))))
    return np.concatenate([a, b, c], axis=1).astype(np.float32)


def log_model(**kwargs) -> vk.VAE:
    likelihood = vk.Gaussian("learned", log_columns=LOGGED, log_offset=1.0)
    return vk.VAE(x_dim=3, z_dim=2, hidden=(16,), likelihood=likelihood, standardize=True, seed=0, **kwargs)


@pytest.fixture(scope="module")
def trained():
    x = counts()
    model = log_model()
    vk.fit(model, x, epochs=200, batch_size=32, seed=0)
    return model, x


# ------------------------------------------------------------------------------ the distribution
def test_log_prob_is_torch_lognormal_on_log_columns_and_normal_on_the_rest():
    torch.manual_seed(0)
    loc, scale = torch.randn(5, 3, dtype=torch.float64), torch.rand(5, 3, dtype=torch.float64) + 0.2
    mask = torch.tensor([True, False, True])
    x = torch.rand(5, 3, dtype=torch.float64) * 50
    x[:, 1] -= 25  # the unlogged column may be negative
    px = LogColumns(diagonal_normal(loc, scale), mask, 0.0)
    expected = (
        LogNormal(loc[:, 0], scale[:, 0]).log_prob(x[:, 0])
        + Normal(loc[:, 1], scale[:, 1]).log_prob(x[:, 1])
        + LogNormal(loc[:, 2], scale[:, 2]).log_prob(x[:, 2])
    )
    torch.testing.assert_close(px.log_prob(x), expected, rtol=1e-12, atol=1e-12)
    # An offset shifts the log-normal: p(x) = LogNormal(x + offset).
    shifted = LogColumns(diagonal_normal(loc, scale), mask, 2.5)
    expected = (
        LogNormal(loc[:, 0], scale[:, 0]).log_prob(x[:, 0] + 2.5)
        + Normal(loc[:, 1], scale[:, 1]).log_prob(x[:, 1])
        + LogNormal(loc[:, 2], scale[:, 2]).log_prob(x[:, 2] + 2.5)
    )
    torch.testing.assert_close(shifted.log_prob(x), expected, rtol=1e-12, atol=1e-12)


def test_mean_is_the_lognormal_mean_and_draws_match_it():
    loc = torch.tensor([[1.0, -0.5, 0.2]], dtype=torch.float64)
    scale = torch.tensor([[0.5, 0.3, 0.8]], dtype=torch.float64)
    mask = torch.tensor([True, False, True])
    px = LogColumns(diagonal_normal(loc, scale), mask, 1.0)
    expected = torch.tensor([[math.exp(1.0 + 0.125) - 1.0, -0.5, math.exp(0.2 + 0.32) - 1.0]], dtype=torch.float64)
    torch.testing.assert_close(px.mean, expected, rtol=1e-12, atol=1e-12)
    big = LogColumns(diagonal_normal(loc.expand(200_000, 3), scale.expand(200_000, 3)), mask, 1.0)
    draws = sample_with(big, torch.Generator().manual_seed(0))
    assert draws[:, [0, 2]].min() > -1.0  # inside the support: x > -offset
    se = draws.std(0) / math.sqrt(draws.shape[0])
    assert (draws.mean(0) - expected[0]).abs().max() < 4 * se.max()
    logged = (draws[:, [0, 2]] + 1.0).log()
    torch.testing.assert_close(logged.std(0), scale[0, [0, 2]], rtol=0.01, atol=0.0)


def test_energy_is_minus_log_prob_up_to_a_constant_that_does_not_depend_on_x():
    torch.manual_seed(1)
    loc, scale = torch.randn(4, 3, dtype=torch.float64), torch.rand(4, 3, dtype=torch.float64) + 0.5
    px = LogColumns(diagonal_normal(loc, scale), torch.tensor([True, False, True]), 0.5)
    gaps = []
    for _ in range(3):
        x = torch.rand(4, 3, dtype=torch.float64) * 10
        gaps.append(reconstruction_energy(px, x) + px.log_prob(x))
    torch.testing.assert_close(gaps[0], gaps[1], rtol=0, atol=1e-10)
    torch.testing.assert_close(gaps[0], gaps[2], rtol=0, atol=1e-10)
    expected = -(scale.log().sum(-1) + 1.5 * math.log(2 * math.pi))  # minus the Gaussian's normalising constant
    torch.testing.assert_close(gaps[0], expected, rtol=0, atol=1e-10)


# ------------------------------------------------------------------------------ the model
def test_model_density_is_a_twin_on_logged_data_plus_the_jacobian(trained):
    model, x = trained
    twin = vk.VAE(x_dim=3, z_dim=2, hidden=(16,), likelihood=vk.Gaussian("learned"), standardize=True, seed=0)
    twin.load_state_dict(model.state_dict())
    y = x.copy()
    y[:, LOGGED] = np.log(x[:, LOGGED] + 1.0)
    jacobian = np.log(x[:, LOGGED].astype(np.float64) + 1.0).sum(1)
    ll = vk.metrics.iwae_log_likelihood(model, x[:50], k=20, seed=3)
    ll_twin = vk.metrics.iwae_log_likelihood(twin, y[:50], k=20, seed=3)
    np.testing.assert_allclose(ll, ll_twin - jacobian[:50], rtol=0, atol=2e-4)
    # The networks and the standardisation saw the logged columns.
    np.testing.assert_allclose(model.x_shift.numpy(), y.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.x_scale.numpy(), y.std(0), rtol=1e-4)


def test_decoded_means_and_samples_are_in_the_users_units(trained):
    model, x = trained
    recon = model.reconstruct(x)
    assert recon[:, LOGGED].min() > -1.0
    # Columns spanning decades: the reconstruction follows them on a log scale (relative error).
    rel = np.abs(np.log1p(recon[:, LOGGED]) - np.log1p(x[:, LOGGED]))
    assert np.median(rel) < 0.35
    # Those are the log-normal means, exp(m + s^2/2) - offset: above the medians exp(m) - offset.
    with torch.no_grad():
        px = model.decode_batch(model.encode_batch(torch.as_tensor(x)).mean)
    np.testing.assert_allclose(px.mean.numpy(), recon, rtol=1e-6)
    assert (px.mean[:, list(LOGGED)] > px.median[:, list(LOGGED)]).all()
    torch.testing.assert_close(px.median, px.from_base(px.base.base_dist.loc))
    noisy = model.sample(500, seed=0, noise=True)
    assert noisy[:, LOGGED].min() > -1.0
    assert noisy[:, LOGGED].max() > 10 * np.median(noisy[:, LOGGED])  # heavy right tail, as the data's


def test_save_load_round_trip_keeps_the_log_columns(trained, tmp_path):
    model, x = trained
    model.save(tmp_path / "m")
    stored = json.loads((tmp_path / "m" / "model.json").read_text())
    assert stored["config"]["likelihood"]["log_columns"] == [0, 2]
    assert stored["config"]["likelihood"]["log_offset"] == 1.0
    again = vk.load(tmp_path / "m")
    np.testing.assert_array_equal(again.reconstruct(x[:20]), model.reconstruct(x[:20]))
    torch.testing.assert_close(
        again.decode(np.zeros((4, 2))).log_prob(torch.as_tensor(x[:4])),
        model.decode(np.zeros((4, 2))).log_prob(torch.as_tensor(x[:4])),
    )


def test_the_json_form_is_what_json_reads_back():
    spec = vk.Gaussian("learned", log_columns=(2, 0), log_offset=1)
    config = spec.to_config()
    assert config == json.loads(json.dumps(config))
    assert config["log_columns"] == [0, 2]
    assert vk.distributions.likelihood_from_config(config) == spec


def test_a_model_without_log_columns_writes_the_json_of_before():
    config = vk.Gaussian("learned").to_config()
    assert config == {"type": "gaussian", "variance": "learned", "min_variance": 1e-4, "constraint": "none"}


@pytest.mark.parametrize("cls", ["HierarchicalVAE", "VQVAE"])
def test_every_model_family_reads_logged_inputs(cls):
    likelihood = vk.Gaussian("learned", log_columns=LOGGED, log_offset=1.0)
    kwargs = {"z_dims": (2, 1)} if cls == "HierarchicalVAE" else {}
    model = getattr(vk, cls)(x_dim=3, hidden=(8,), likelihood=likelihood, standardize=True, seed=0, **kwargs)
    x = counts(100)
    model.set_scaling(torch.as_tensor(x))
    seen = []
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    handle = first.register_forward_hook(lambda mod, inputs, out: seen.append(inputs[0]))
    model.encode(x)
    handle.remove()
    y = x.copy()
    y[:, LOGGED] = np.log1p(x[:, LOGGED])
    expected = (y - y.mean(0)) / y.std(0)
    np.testing.assert_allclose(seen[0].detach().numpy(), expected, rtol=1e-4, atol=1e-4)


def test_streamed_training_standardises_the_logged_columns(tmp_path):
    x = counts(400)
    path = tmp_path / "counts.npy"
    np.save(path, x)
    model = log_model()
    vk.fit(model, vk.NpyBlocks(path, block_rows=64), epochs=1, batch_size=64, seed=0)
    y = x.astype(np.float64)
    y[:, LOGGED] = np.log1p(y[:, LOGGED])
    np.testing.assert_allclose(model.x_shift.numpy(), y.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.x_scale.numpy(), y.std(0), rtol=1e-5)


def test_figures_and_metrics_work_when_zero_is_outside_the_support(tmp_path):
    # Strictly positive columns with offset 0: a probe at x = 0 would be refused (it was, in run_figures).
    x = counts(120) + 1.0
    model = vk.VAE(x_dim=3, hidden=(8,), likelihood=vk.Gaussian("learned", log_columns=LOGGED), standardize=True, seed=0)
    vk.fit(model, x, epochs=2, seed=0)
    assert vk.metrics.probe_posterior(model).mean.shape == (1, 2)
    figures = vk.plot.run_figures(model, x)
    assert "latent" in figures


def test_the_fast_path_stands_aside():
    fixed = vk.VAE(x_dim=3, hidden=(8,), likelihood=vk.Gaussian(0.1, log_columns=(1,), log_offset=5.0), seed=0)
    assert not fastpath.supports(fixed, vk.ELBO())
    plain = vk.VAE(x_dim=3, hidden=(8,), likelihood=vk.Gaussian(0.1), seed=0)
    assert fastpath.supports(plain, vk.ELBO())


def test_standardised_figure_units_are_the_networks_units(trained):
    model, x = trained
    to_units = _in_units(model, "standardized")
    np.testing.assert_allclose(to_units(x[:10]), model.network_input(torch.as_tensor(x[:10])).numpy(), rtol=1e-5, atol=1e-5)


def test_collapse_count_reads_the_logged_columns(trained):
    model, x = trained
    # Counts that are one size on a log scale: one component holds 90% there, not on the raw scale.
    metrics = {"active_units": 0, "z_dim": 2}
    raw = run_warnings(metrics, x)
    logged = run_warnings(metrics, x, model=model)
    assert "standardised data (log columns logged) need 1 principal" in logged[0]
    assert "standardised data need 2 principal" in raw[0]


# ------------------------------------------------------------------------------ refusals
def test_values_at_or_below_minus_offset_are_refused_with_the_column(trained):
    model, x = trained
    bad = x.copy()
    bad[3, 2] = -1.0
    with pytest.raises(vk.InputError) as info:
        model.encode(bad)
    assert str(info.value) == (
        "x column 2 must be > -1 (log_columns model it as log(x + 1)); raise log_offset above 1 or leave the column "
        "out of log_columns. Got min -1 instead."
    )
    zero = vk.VAE(x_dim=3, likelihood=vk.Gaussian(log_columns=(0,)), seed=0)
    with pytest.raises(
        vk.InputError, match=r"^x column 0 must be > 0 \(log_columns model it as log\(x\)\); raise log_offset above 0 "
    ):
        vk.fit(zero, np.zeros((10, 3), dtype=np.float32), epochs=1)
    negative = vk.VAE(x_dim=3, likelihood=vk.Gaussian(log_columns=(0,), log_offset=-5), seed=0)
    with pytest.raises(vk.InputError, match=r"^x column 0 must be > 5 \(log_columns model it as log\(x - 5\)\); "):
        negative.encode(np.full((2, 3), 5.0))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"log_columns": (3,)}, "Gaussian.log_columns must be column indices in [0, 3) (the data has 3 columns). Got 3 instead."),
        ({"log_columns": (1, 1)}, "Gaussian.log_columns must not repeat a column. Got [1, 1] instead."),
        ({"log_columns": (-1,)}, "Gaussian.log_columns must hold column indices (ints >= 0). Got -1 instead."),
        ({"log_columns": (True,)}, "Gaussian.log_columns must hold column indices (ints >= 0). Got True instead."),
        ({"log_columns": "0"}, "Gaussian.log_columns must be a sequence of column indices. Got '0' instead."),
        ({"log_columns": (0,), "log_offset": math.inf}, "Gaussian.log_offset must be a finite number. Got inf instead."),
        ({"log_offset": 1.0}, "Gaussian.log_offset applies to log_columns: without them it must be 0. Got 1 instead."),
    ],
)
def test_bad_log_settings_name_the_parameter(kwargs, message):
    with pytest.raises(vk.InputError) as info:
        vk.VAE(x_dim=3, likelihood=vk.Gaussian(**kwargs), seed=0)
    assert str(info.value) == message


def test_the_airfoil_constraint_refuses_log_columns():
    with pytest.raises(vk.InputError) as info:
        vk.Gaussian(constraint="airfoil", log_columns=(0,))
    assert str(info.value) == (
        "Gaussian.log_columns must be empty with constraint='airfoil' (the constraint shapes the mean in data units). "
        "Got [0] instead."
    )


# ------------------------------------------------------------------------------ command line
EVAL = ["--eval-k", "5", "--eval-n-samples", "200", "--eval-quadrature-grid", "20", "--eval-permutations", "10"]


@pytest.fixture(scope="module")
def counts_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("logcols") / "counts.csv"
    np.savetxt(path, counts(120), delimiter=",", header="votes,size,seats", comments="", fmt="%.6g")
    return path


def test_cli_trains_with_named_log_columns_and_reproduces_from_its_config(counts_csv, tmp_path, capsys):
    common = ["--epochs", "2", "--z-dim", "1", *EVAL, "-q"]
    out = tmp_path / "run"
    args = ["train", "--data", str(counts_csv), "--log-columns", "votes,seats", "--log-offset", "1", *common]
    assert cli.main([*args, "--out", str(out)]) == 0
    config = vk.runs.read_config(out / "config.toml")
    assert config["data"]["log_columns"] == ["votes", "seats"]
    assert config["data"]["log_offset"] == 1.0
    assert "log_offset" not in config["model"]
    run = vk.runs.open_run(out)
    assert run.model.likelihood.log_columns == (0, 2)
    again = tmp_path / "again"
    assert cli.main(["train", "--config", str(out / "config.toml"), "--out", str(again), "-q"]) == 0
    for name in ("model.safetensors", "history.csv"):
        assert (again / name).read_bytes() == (out / name).read_bytes()
    samples = tmp_path / "s.csv"
    assert cli.main(["sample", str(out), "-n", "50", "-o", str(samples)]) == 0
    values = np.loadtxt(samples, delimiter=",", skiprows=1)
    assert values[:, [0, 2]].min() > -1.0
    capsys.readouterr()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--log-columns", "votes,nope"], "[data] log_columns (--log-columns) must name data columns of "),
        (
            ["--log-columns", "votes,votes"],
            "[data] log_columns (--log-columns) must not repeat a column. Got ['votes', 'votes'] instead.",
        ),
        (
            ["--log-columns", "size"],
            "[data] log_columns: column 'size' of {path} (120 rows) must be > 0 (log_columns model it as log(x)); raise "
            "--log-offset above 2.",
        ),
        (
            ["--log-columns", "", "--log-offset", "1"],
            "[data] log_offset (--log-offset) applies to log_columns (--log-columns): without them it must be 0",
        ),
        (
            ["--log-columns", "votes", "--likelihood", "bernoulli"],
            "[data] log_columns (--log-columns) needs a Gaussian likelihood ([model] likelihood = 'gaussian'). "
            "Got likelihood = 'bernoulli' instead.",
        ),
    ],
)
def test_cli_refuses_bad_log_columns(counts_csv, tmp_path, capsys, extra, message):
    code = cli.main(["train", "--data", str(counts_csv), "--epochs", "1", *EVAL, "-q", "--out", str(tmp_path / "r"), *extra])
    err = capsys.readouterr().err
    assert code != 0
    assert message.format(path=counts_csv) in err
    assert not (tmp_path / "r").exists()


def test_cli_refuses_log_columns_for_a_builtin_dataset(tmp_path, capsys):
    code = cli.main(["train", "--data", "ring", "--log-columns", "x0", "--epochs", "1", "-q", "--out", str(tmp_path / "r")])
    assert code != 0
    assert "[data] exclude, label, log_columns and header apply to files (path), not to the built-in dataset 'ring'" in (
        capsys.readouterr().err
    )


def test_numpy_integers_and_floats_are_column_indices_and_offsets():
    spec = vk.Gaussian("learned", log_columns=(np.int64(2), np.int32(0)), log_offset=np.float32(1.5))
    assert spec.log_columns == (0, 2) and type(spec.log_columns[0]) is int
    assert spec.log_offset == 1.5 and type(spec.log_offset) is float
    with pytest.raises(vk.InputTypeError, match=r"^Gaussian.log_offset must be a number\. Got "):
        vk.Gaussian(log_columns=(0,), log_offset="1")


def test_quadrature_uses_the_affine_grid_and_agrees_with_log_prob(trained, monkeypatch):
    from vaekit import metrics

    model, x = trained
    fast = metrics.quadrature_log_likelihood(model, x[:40], grid=40).log_p
    monkeypatch.setattr(metrics, "_grid_terms", lambda *args: None)  # the generic log_prob path
    slow = metrics.quadrature_log_likelihood(model, x[:40], grid=40).log_p
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-6)


def test_decoded_means_have_finite_gradients_when_an_unlogged_column_is_large():
    loc = torch.tensor([[1.0, 100.0]], requires_grad=True)
    px = LogColumns(diagonal_normal(loc, torch.ones(1, 2)), torch.tensor([True, False]), 0.0)
    (px.mean.sum() + px.rsample().sum() + px.variance[:, 0].sum()).backward()
    assert torch.isfinite(loc.grad).all()


def test_held_out_values_outside_the_support_are_refused_before_training(counts_csv, tmp_path, capsys):
    test = tmp_path / "test.csv"
    rows = counts(10)
    rows[4, 2] = -3.0
    np.savetxt(test, rows, delimiter=",", header="votes,size,seats", comments="", fmt="%.6g")
    args = ["train", "--data", str(counts_csv), "--test-data", str(test), "--log-columns", "votes,seats", "--log-offset", "1"]
    code = cli.main([*args, "--epochs", "1", "-q", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code != 0
    assert (
        f"test data: column 'seats' of {test} (10 rows) must be > -1 (log_columns model it as log(x + 1)); raise "
        "--log-offset above 3 or leave the column out of --log-columns. Got min -3 instead."
    ) in err
    assert not (tmp_path / "r").exists() and not (tmp_path / "r.partial").exists()
    # The same rows given to a trained model: refused by name, with what would admit them.
    assert cli.main([*args[:3], *args[5:], "--epochs", "1", *EVAL, "-q", "--out", str(tmp_path / "t")]) == 0
    capsys.readouterr()
    assert cli.main(["evaluate", str(tmp_path / "t"), "--data", str(test)]) != 0
    assert (
        f"--data: column 'seats' of {test} (10 rows) must be > -1 (log_columns model it as log(x + 1)); the model cannot "
        "score it: train again with --log-offset above 3 or without the column in --log-columns. Got min -3 instead."
    ) in capsys.readouterr().err
    assert cli.main(["encode", str(tmp_path / "t"), str(test)]) != 0
    assert (
        f"encode {test}: column 'seats' of the data (10 rows) must be > -1 (log_columns model it as log(x + 1)); the "
        "model cannot score it: train again with --log-offset above 3 or without the column in --log-columns."
    ) in capsys.readouterr().err


# ------------------------------------------------------------------------------ log_columns = "auto"
def test_decade_columns_marks_skewed_columns_that_span_decades():
    from vaekit.runfolder import decade_columns

    rng = np.random.default_rng(0)
    n = 200
    lognormal = np.exp(rng.normal(size=n) * 1.5)  # skewness >> 2, max >> 10 x median
    normal = rng.normal(size=n) + 5  # symmetric
    negative = lognormal - 1.0  # skewed, but below 0
    counts_with_zeros = np.floor(np.exp(rng.normal(size=n) * 2.0 + 1.0))  # median 2, zeros
    mostly_zero = np.r_[np.zeros(n - 5), np.full(5, 100.0)]  # median 0: no scale to span
    x = np.column_stack([lognormal, normal, negative, counts_with_zeros, mostly_zero])
    assert decade_columns(x) == [0, 3]
    assert decade_columns(x[:2]) == []


def test_auto_resolves_names_and_offset_and_leaves_out_unscorable_columns():
    from vaekit.runfolder import RunData, apply_auto_log_columns

    rng = np.random.default_rng(1)
    x = np.column_stack(
        [np.exp(rng.normal(size=100) * 1.5), np.floor(np.exp(rng.normal(size=100) * 2.0 + 1.0)), rng.normal(size=100)]
    )
    data = RunData(x.astype(np.float32), None, None, ["a", "b", "c"], description="t.csv (100 rows)")
    config = vk.runs.validate_config({"data": {"path": "t.csv", "log_columns": "auto"}})
    note = apply_auto_log_columns(config, data)
    assert config["data"]["log_columns"] == ["a", "b"] and config["data"]["log_offset"] == 1.0
    assert note.startswith("log scale for a, b: values >= 0 that span decades") and "log(x + 1), a column has zeros" in note
    held = RunData(np.array([[1.0, -2.0, 0.0]], dtype=np.float32), None, None, ["a", "b", "c"], held_out=True)
    config = vk.runs.validate_config({"data": {"path": "t.csv", "log_columns": "auto"}})
    note = apply_auto_log_columns(config, data, held)
    # b's held-out -2 could not be scored on log(x + 1); a has no zero, so no offset either.
    assert (config["data"]["log_columns"], config["data"]["log_offset"]) == (["a"], 0.0)
    assert "modelled as log(x); densities stay in data units; left unlogged: b (held-out rows at or below -offset)" in note
    zero = RunData(np.array([[0.0, 1.0, 0.0]], dtype=np.float32), None, None, ["a", "b", "c"], held_out=True)
    config = vk.runs.validate_config({"data": {"path": "t.csv", "log_columns": "auto"}})
    apply_auto_log_columns(config, data, zero)
    assert (config["data"]["log_columns"], config["data"]["log_offset"]) == (["a", "b"], 1.0)  # a held-out zero
    config = vk.runs.validate_config({"data": {"path": "t.csv", "log_columns": "auto", "log_offset": 2.0}})
    apply_auto_log_columns(config, data)
    assert (config["data"]["log_columns"], config["data"]["log_offset"]) == (["a", "b"], 2.0)  # the user's offset
    flat = RunData(np.ones((100, 3), dtype=np.float32), None, None, ["a", "b", "c"])
    config = vk.runs.validate_config({"data": {"path": "t.csv", "log_offset": 2.0}})
    assert apply_auto_log_columns(config, flat) == "no log columns; log_offset 2 ignored"
    assert (config["data"]["log_columns"], config["data"]["log_offset"]) == ([], 0.0)
    for other in ({"likelihood": "bernoulli"},):
        config = vk.runs.validate_config({"data": {"path": "t.csv", "log_columns": "auto"}, "model": other})
        assert apply_auto_log_columns(config, data) == "" and config["data"]["log_columns"] == []
    curves = RunData(x.astype(np.float32), None, None, ["a", "b", "c"], x_shape=(3,))
    config = vk.runs.validate_config({"data": {"path": "t.csv", "log_columns": "auto"}})
    assert apply_auto_log_columns(config, curves) == "" and config["data"]["log_columns"] == []


def test_cli_auto_says_what_it_chose_and_config_toml_records_it(counts_csv, tmp_path, capsys):
    out = tmp_path / "auto"
    code = cli.main(["train", "--data", str(counts_csv), "--log-columns", "auto", "--epochs", "1", *EVAL, "--out", str(out)])
    printed = capsys.readouterr()
    assert code == 0
    assert "note: log scale for votes, seats: values >= 0 that span decades" in printed.out + printed.err
    config = vk.runs.read_config(out / "config.toml")
    assert (config["data"]["log_columns"], config["data"]["log_offset"]) == (["votes", "seats"], 1.0)
    assert vk.runs.open_run(out).model.likelihood.log_columns == (0, 2)
    none = tmp_path / "none"
    assert (
        cli.main(["train", "--data", str(counts_csv), "--log-columns", "", "--epochs", "1", *EVAL, "-q", "--out", str(none)]) == 0
    )
    assert vk.runs.open_run(none).model.likelihood.log_columns == ()


def test_a_files_default_is_auto_and_the_builtins_have_none():
    assert vk.runs.validate_config({"data": {"path": "t.csv"}})["data"]["log_columns"] == "auto"
    assert vk.runs.validate_config({"data": {"path": "t.csv", "log_columns": []}})["data"]["log_columns"] == []
    assert vk.runs.validate_config({"data": {"name": "moons"}})["data"]["log_columns"] == []
    with pytest.raises(vk.InputTypeError) as info:
        vk.runs.validate_config({"data": {"path": "t.csv", "log_columns": 5}})
    assert str(info.value) == "config: [data] log_columns must be a list of strings or 'auto'. Got 5 instead."


def test_a_files_default_run_logs_what_spans_decades(counts_csv, tmp_path, capsys):
    out = tmp_path / "default"
    assert cli.main(["train", "--data", str(counts_csv), "--epochs", "1", *EVAL, "-q", "--out", str(out)]) == 0
    config = vk.runs.read_config(out / "config.toml")
    assert (config["data"]["log_columns"], config["data"]["log_offset"]) == (["votes", "seats"], 1.0)
    again = tmp_path / "again"  # config.toml holds the choice: the same run, bit for bit
    assert cli.main(["train", "--config", str(out / "config.toml"), "--out", str(again), "-q"]) == 0
    assert (again / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()
    capsys.readouterr()


@pytest.mark.filterwarnings("ignore:no held-out data")
def test_a_runs_config_from_before_log_columns_redoes_that_run(counts_csv, tmp_path, capsys, monkeypatch):
    from test_cli import interrupt_fit_at

    # A run written before [data] log_columns existed: today's run with no log columns, its
    # config.toml without the key (as the older vaekit wrote it).
    out = tmp_path / "old"
    args = ["train", "--data", str(counts_csv), "--log-columns", "", "--epochs", "2", *EVAL, "-q"]
    assert cli.main([*args, "--out", str(out)]) == 0
    text = (out / "config.toml").read_text()
    assert "log_columns = []\n" in text
    (out / "config.toml").write_text(text.replace("log_columns = []\n", ""))
    assert vk.runs.read_config(out)["data"]["log_columns"] == []
    again = tmp_path / "again"  # not "auto", which would log votes and seats: the same run, bit for bit
    assert cli.main(["train", "--config", str(out / "config.toml"), "--out", str(again)]) == 0
    printed = capsys.readouterr().out
    assert "log scale" not in printed
    assert (
        f"note: {out / 'config.toml'} was written by a run before [data] log_columns existed: log_columns = [], as that "
        "run had (--log-columns auto chooses them from the rows)"
    ) in printed
    assert (again / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()
    # --data naming the same file: still that run.
    same = tmp_path / "same"
    assert cli.main(["train", "--config", str(out / "config.toml"), "--data", str(counts_csv), "--out", str(same), "-q"]) == 0
    assert (same / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()
    # Its settings on other data (--data): that data's defaults, auto.
    other_csv = tmp_path / "other.csv"
    other_csv.write_bytes(counts_csv.read_bytes())
    other = tmp_path / "other"
    assert cli.main(["train", "--config", str(out / "config.toml"), "--data", str(other_csv), "--out", str(other)]) == 0
    assert "note: log scale for votes, seats" in capsys.readouterr().out
    # An interrupted older run resumes with the settings it had.
    with monkeypatch.context() as patch:
        interrupt_fit_at(patch, 1)
        with pytest.raises(vk.RunInterrupted):
            vk.runs.train(
                {**vk.runs.read_config(out), "training": {**vk.runs.read_config(out)["training"], "checkpoint_every": 1}},
                tmp_path / "cut",
            )
    staged = tmp_path / "cut.partial" / "config.toml"
    staged.write_text(staged.read_text().replace("log_columns = []\n", ""))
    run = vk.runs.train(None, tmp_path / "cut", resume=True)
    assert run.config["data"]["log_columns"] == [] and run.model.likelihood.log_columns == ()
    # The same settings written by hand (no run header), or only some sections: a file's default, auto.
    hand = tmp_path / "hand.toml"
    hand.write_text(text.replace("log_columns = []\n", "").split("\n", 2)[2])
    assert not hand.read_text().startswith("#")
    assert vk.runs.read_config(hand)["data"]["log_columns"] == "auto"
    partial = tmp_path / "partial.toml"
    partial.write_text(vk.runs.config_text({"data": {"path": str(counts_csv)}}))
    assert vk.runs.read_config(partial)["data"]["log_columns"] == "auto"
    with_bom = tmp_path / "bom.toml"  # a BOM, as some editors write: still a run's file
    with_bom.write_bytes(b"\xef\xbb\xbf" + (out / "config.toml").read_bytes())
    assert vk.runs.read_config(with_bom)["data"]["log_columns"] == []


def test_sweep_says_the_settings_it_chose_from_the_rows(counts_csv, tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", "--data", str(counts_csv), "--set", "seed=0,1", "--epochs", "1", "--out", str(out)]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "note: log scale for votes, seats: values >= 0 that span decades" in printed
    assert "note: batch size 12 instead of 256: 120 training rows make 10 batches per epoch" in printed
    config = vk.runs.read_config(out / "config.toml")  # what was said is what was used
    assert (config["data"]["log_columns"], config["training"]["batch_size"]) == (["votes", "seats"], 12)
    assert vk.load(out / "models" / "01").likelihood.log_columns == (0, 2)
