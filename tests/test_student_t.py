"""Student's t likelihood (Gaussian.df): its density, its tails on a row beyond the training range, its settings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.stats
import torch

import vaekit as vk
from vaekit import cli, fastpath
from vaekit.distributions import DF_START, LogColumns, reconstruction_energy

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_the_density_is_students_t_in_the_users_units():
    model = vk.VAE(3, 2, hidden=(8,), likelihood=vk.Gaussian(0.5, df=5.0), standardize=True, seed=0)
    x = np.array([[1.0, 200.0, -3.0], [2.0, 180.0, -1.0], [0.5, 260.0, -2.0], [1.5, 240.0, 0.0]], dtype=np.float32)
    vk.fit(model, x, epochs=1, seed=0)  # sets the standardisation from x
    with torch.no_grad():
        z = torch.zeros(4, 2)
        px = model.decode(z)
        loc, scale = px.base_dist.loc.numpy(), px.base_dist.scale.numpy()
        expected = scipy.stats.t.logpdf(x, 5.0, loc, scale).sum(1)
        np.testing.assert_allclose(px.log_prob(torch.as_tensor(x)).numpy(), expected, rtol=1e-5)
        # The scale is sqrt(variance) in standardised units, times the column's scale in the user's.
        np.testing.assert_allclose(scale[0], np.sqrt(0.5) * model.x_scale.numpy(), rtol=1e-6)
        assert reconstruction_energy(px, torch.as_tensor(x)).numpy() == pytest.approx(-expected, rel=1e-5)


def test_a_log_column_is_log_t_and_decodes_to_its_median():
    spec = vk.Gaussian("learned", df="learned", log_columns=(1,), log_offset=1.0)
    head = spec.head(2)
    assert head.degrees_of_freedom().tolist() == pytest.approx([DF_START, DF_START])
    px = head(torch.tensor([[0.5, 2.0]]), None, None)
    assert type(px) is LogColumns
    x = torch.tensor([[0.3, 9.0]])
    y = torch.tensor([[0.3, np.log(10.0)]])
    scale = float(px.base.base_dist.scale[0, 0].detach())
    assert scale == pytest.approx(1.0, abs=1e-3)  # a learned variance starts at 1 (with its floor of 1e-4)
    expected = scipy.stats.t(DF_START, [0.5, 2.0], scale).logpdf(y.numpy()).sum() - np.log(10.0)  # log(x + 1)'s Jacobian
    assert px.log_prob(x).item() == pytest.approx(expected, rel=1e-6)
    # exp of a t has no mean: the median exp(m) - offset there, the t's mean elsewhere.
    assert px.mean[0].tolist() == pytest.approx([0.5, np.exp(2.0) - 1.0])
    assert px.variance[0, 1].item() == float("inf")
    assert px.variance[0, 0].item() == pytest.approx(scale**2 * DF_START / (DF_START - 2.0), rel=1e-6)


def test_the_fast_path_leaves_students_t_to_autograd():
    gaussian = vk.VAE(2, 2, hidden=(8,), likelihood=vk.Gaussian(0.1), seed=0)
    student = vk.VAE(2, 2, hidden=(8,), likelihood=vk.Gaussian(0.1, df=4.0), seed=0)
    assert fastpath.supports(gaussian, vk.ELBO()) and not fastpath.supports(student, vk.ELBO())


def test_a_row_far_beyond_the_training_range_costs_far_less():
    rng = np.random.default_rng(0)
    centre, line = np.array([5.0, 10.0, 20.0]), np.array([1.0, 2.0, -1.0])
    train = (centre + rng.normal(size=(40, 1)) * line + 0.1 * rng.normal(size=(40, 3))).astype(np.float32)
    far = (centre + [0.0, 30.0, 0.0])[None].astype(np.float32)  # one column 30 off the data's line (noise 0.1)
    near = train[:5]
    nll = {}
    for df in ("none", "learned"):
        model = vk.VAE(3, 1, likelihood=vk.Gaussian("learned", df=df), standardize=True, seed=0)
        vk.fit(model, train, epochs=100, batch_size=4, seed=0)
        nll[df] = [float(-vk.metrics.iwae_log_likelihood(model, rows, k=50, seed=0).mean()) for rows in (far, near)]
    # The Gaussian pays the square of the residual (276 nats here), the t about its log (69) ...
    assert nll["none"][0] > 200 and nll["learned"][0] < nll["none"][0] / 3
    # ... at a cost of a fraction of a nat on rows inside the range (0.008 here).
    assert nll["learned"][1] < nll["none"][1] + 0.5


def test_vaekit_train_takes_df(tmp_path):
    path = tmp_path / "t.csv"
    rows = np.random.default_rng(0).normal(size=(30, 3))
    np.savetxt(path, rows, delimiter=",", header="a,b,c", comments="")
    out = tmp_path / "run"
    args = ["train", "--data", str(path), "--df", "learned", "--epochs", "2", "--out", str(out), "--quiet"]
    assert cli.main(args) == 0
    assert 'df = "learned"' in (out / "config.toml").read_text()
    assert json.loads((out / "model.json").read_text())["config"]["likelihood"]["df"] == "learned"
    model = vk.load(out)
    assert model.likelihood_head.degrees_of_freedom().shape == (3,)


def test_a_files_default_is_students_t_and_the_builtins_keep_the_gaussian():
    assert vk.runs.validate_config({"data": {"path": "t.csv"}})["model"]["df"] == "learned"
    assert vk.runs.validate_config({"data": {"path": "t.csv"}, "model": {"df": "none"}})["model"]["df"] == "none"
    assert vk.runs.validate_config({"data": {"name": "ring"}})["model"]["df"] == "none"
    assert vk.runs.validate_config({"data": {"name": "airfoils"}})["model"]["df"] == "none"
    assert "df" not in vk.runs.validate_config({"data": {"path": "t.csv"}, "model": {"likelihood": "bernoulli"}})["model"]


@pytest.mark.filterwarnings("ignore:no held-out data")
def test_a_runs_config_from_before_students_t_redoes_that_run(tmp_path, capsys):
    path = tmp_path / "t.csv"
    np.savetxt(path, np.random.default_rng(0).normal(size=(30, 3)), delimiter=",", header="a,b,c", comments="")
    out = tmp_path / "old"  # a run written before [model] df existed: a Gaussian, its config.toml without the key
    args = ["train", "--data", str(path), "--df", "none", "--epochs", "2", "--eval-n-samples", "50", "-q"]
    assert cli.main([*args, "--out", str(out)]) == 0
    text = (out / "config.toml").read_text()
    assert 'df = "none"\n' in text
    (out / "config.toml").write_text(text.replace('df = "none"\n', ""))
    assert vk.runs.read_config(out)["model"]["df"] == "none"
    again = tmp_path / "again"
    capsys.readouterr()
    assert cli.main(["train", "--config", str(out / "config.toml"), "--out", str(again)]) == 0
    assert (
        f"note: {out / 'config.toml'} was written by a run before [model] df existed: df = 'none', as that run had "
        "(give it to change it)"
    ) in capsys.readouterr().out
    assert (again / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()
    other_csv = tmp_path / "other.csv"  # its settings on other data: that data's default, Student's t
    other_csv.write_bytes(path.read_bytes())
    other = tmp_path / "other"
    assert cli.main(["train", "--config", str(out / "config.toml"), "--data", str(other_csv), "--out", str(other), "-q"]) == 0
    assert vk.runs.read_config(other)["model"]["df"] == "learned"


def test_samples_with_noise_are_students_t_and_reproducible():
    from vaekit.models.common import sample_with

    px = vk.Gaussian(1.0, df=2.5).head(1)(torch.zeros(100_000, 1), None, None)
    draws = sample_with(px, torch.Generator().manual_seed(0)).numpy().ravel()
    assert scipy.stats.kstest(draws, scipy.stats.t(2.5).cdf).pvalue > 0.01
    assert scipy.stats.kstest(draws, scipy.stats.norm.cdf).pvalue < 1e-6  # Gaussian noise would pass this one
    assert np.array_equal(draws, sample_with(px, torch.Generator().manual_seed(0)).numpy().ravel())
    model = vk.VAE(2, 2, hidden=(8,), likelihood=vk.Gaussian(0.5, df=3.0), seed=0)
    assert np.array_equal(model.sample(50, seed=1, noise=True), model.sample(50, seed=1, noise=True))


def test_quadrature_of_a_students_t_model_matches_iwae():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(200, 2)) @ np.array([[1.0, 0.5], [0.0, 0.3]]) + [0.0, 5.0]).astype(np.float32)
    model = vk.VAE(2, 2, hidden=(16,), likelihood=vk.Gaussian("learned", df="learned"), standardize=True, seed=0)
    vk.fit(model, x, epochs=20, batch_size=32, seed=0)
    quad = vk.metrics.quadrature_log_likelihood(model, x[:50], grid=120)
    iwae = -float(np.mean(vk.metrics.iwae_log_likelihood(model, x[:50], k=5000, seed=0)))
    assert quad.nll == pytest.approx(iwae, abs=0.05)


def test_a_diverging_students_t_run_is_a_training_error():
    x = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32) * 1e30
    model = vk.VAE(2, 2, hidden=(8,), likelihood=vk.Gaussian(0.1, df=5.0), seed=0)
    with pytest.raises(vk.TrainingError):
        vk.fit(model, x, epochs=2, seed=0)


def test_a_numpy_df_is_stored_as_a_float():
    spec = vk.Gaussian("learned", df=np.float32(4.5))
    assert type(spec.df) is float and json.loads(json.dumps(spec.to_config()))["df"] == 4.5


def test_a_log_t_draw_beyond_float32_is_said(caplog):
    from vaekit.models.common import sample_with

    head = vk.Gaussian(100.0, df=2.1, log_columns=(0,)).head(1)
    px = head(torch.full((1000, 1), 80.0), None, None)  # y = log(x) near 80 with scale 10: exp(89) and up overflow
    with caplog.at_level("WARNING", logger="vaekit.models.common"):
        drawn = sample_with(px, torch.Generator().manual_seed(0))
    beyond = int((~torch.isfinite(drawn)).sum())
    assert beyond > 0
    assert caplog.messages == [f"{beyond} sampled values on log columns exceed float32 after the exp and read inf"]
