"""Issue 11, "no silent failures": Bernoulli data outside [0, 1], posterior collapse said out
loud, headerless CSV files, and the train flags --exclude, --label, --threads."""

from __future__ import annotations

import html
import json
import re

import numpy as np
import pytest

import vaekit as vk
from vaekit import cli
from vaekit.diagnostics import collapse_warning, needed_units

EVAL = ["--eval-k", "5", "--eval-n-samples", "200", "--eval-quadrature-grid", "20", "--eval-permutations", "10"]

BERNOULLI_MESSAGE = (
    "{name} must lie in [0, 1] for likelihood=Bernoulli() (binary or grey-level data); rescale it "
    "(e.g. divide by its maximum) or use a Gaussian likelihood. Got min {low}, max {high} instead."
)


def bernoulli_error(name: str, low: str, high: str) -> str:
    return "^" + re.escape(BERNOULLI_MESSAGE.format(name=name, low=low, high=high)) + "$"


# ---------------------------------------------------------------------------- Bernoulli range
@pytest.fixture
def grey() -> np.ndarray:
    return np.random.default_rng(0).uniform(size=(40, 4)).astype(np.float32)


@pytest.mark.parametrize("kind", ["vae", "vqvae", "hierarchical"])
def test_every_model_refuses_bernoulli_data_outside_0_1_in_fit(kind, grey):
    kwargs = {"vae": {"z_dim": 2}, "vqvae": {"codebook_size": 4, "code_dim": 2}, "hierarchical": {"z_dims": (2, 2)}}[kind]
    cls = {"vae": vk.VAE, "vqvae": vk.VQVAE, "hierarchical": vk.HierarchicalVAE}[kind]
    model = cls(x_dim=4, hidden=(8,), likelihood=vk.Bernoulli(), seed=0, **kwargs)
    bad = grey.copy()
    bad[3, 1], bad[7, 2] = -0.25, 255.0
    with pytest.raises(vk.InputError, match=bernoulli_error("x", "-0.25", "255")):
        vk.fit(model, bad, epochs=1)
    vk.fit(model, grey, epochs=1)  # [0, 1] itself, both ends included, is accepted
    vk.fit(model, np.round(grey), epochs=1)


def test_bernoulli_range_is_checked_by_evaluate_encode_reconstruct_and_val(grey):
    model = vk.VAE(x_dim=4, z_dim=2, hidden=(8,), likelihood=vk.Bernoulli(), seed=0)
    bad = grey * 2.0
    high = f"{float(bad.max()):g}"
    low = f"{float(bad.min()):g}"
    for call in (
        lambda: vk.metrics.evaluate(model, bad, k=2, n_samples=10, permutations=0),
        lambda: model.encode(bad),
        lambda: model.reconstruct(bad),
        lambda: vk.metrics.log_likelihood(model, bad, k=2),
    ):
        with pytest.raises(vk.InputError, match=bernoulli_error("x", low, high)):
            call()
    with pytest.raises(vk.InputError, match=bernoulli_error("val", low, high)):
        vk.fit(model, grey, epochs=1, val=bad)


def test_gaussian_accepts_any_finite_data(grey):
    model = vk.VAE(x_dim=4, z_dim=2, hidden=(8,), seed=0)
    vk.fit(model, grey * 1000 - 500, epochs=1)


def test_cli_train_and_evaluate_refuse_bernoulli_data_outside_0_1(tmp_path, capsys):
    path = tmp_path / "pixels.csv"
    rows = np.random.default_rng(1).integers(0, 256, size=(30, 3))
    path.write_text("a,b,c\n" + "\n".join(",".join(str(v) for v in r) for r in rows) + "\n")
    code = cli.main(["train", "--data", str(path), "--likelihood", "bernoulli", "--epochs", "1", "--out", str(tmp_path / "r")])
    captured = capsys.readouterr()
    assert code == 2
    low, high = rows.min(), rows.max()
    assert captured.err.strip() == "error: " + BERNOULLI_MESSAGE.format(name="x", low=low, high=high)
    assert not (tmp_path / "r").exists()
    # A run trained on [0, 1] data, evaluated on the raw 0..255 file.
    (tmp_path / "scaled.csv").write_text("a,b,c\n" + "\n".join(",".join(str(v / 255) for v in r) for r in rows) + "\n")
    out = tmp_path / "ok"
    args = ["train", "--data", str(tmp_path / "scaled.csv"), "--likelihood", "bernoulli", "--epochs", "1", *EVAL]
    assert cli.main([*args, "--out", str(out), "-q"]) == 0
    assert cli.main(["evaluate", str(out), "--data", str(path)]) == 2
    assert capsys.readouterr().err.strip() == "error: " + BERNOULLI_MESSAGE.format(name="x", low=low, high=high)


# ---------------------------------------------------------------------------- posterior collapse
def test_needed_units_counts_principal_components_of_the_standardised_data():
    rng = np.random.default_rng(0)
    a, b, c = rng.standard_normal((3, 5000))
    # Rank 3 after standardising: duplicated and rescaled columns add no direction, whatever their units.
    x = np.stack([a, 1000 * a, b, -0.001 * b, c, np.full(5000, 7.0)], axis=1)
    assert needed_units(x) == 3  # three equal eigenvalues (2, 2, 1 of 5 columns): 2 explain 80% < 90%
    assert needed_units(x, share=0.8) == 2
    assert needed_units(np.ones((10, 4))) == 0
    # One dominant direction with 95% of the (standardised) variance: one component is enough.
    noisy = np.stack([a, a + 0.1 * b, a + 0.1 * c], axis=1)
    assert needed_units(noisy) == 1


@pytest.mark.parametrize(
    ("active", "z_dim", "needed", "warns"),
    [(0, 2, 1, True), (0, 8, 31, True), (1, 2, 2, True), (3, 8, 5, True), (2, 2, 31, False), (5, 8, 5, False), (0, 2, 0, False)],
)
def test_collapse_criterion(active, z_dim, needed, warns):
    text = collapse_warning(active, z_dim, needed)
    assert (text is not None) == warns
    if warns:
        assert text.startswith(f"posterior collapse: {active} of {z_dim} latent dimensions are active")
        assert f"need {needed} principal component(s) for 90% of their variance" in text


def small_curves(n: int = 300, seed: int = 0) -> np.ndarray:
    """Curves of 16 points with 3 degrees of freedom, on the tiny scale of airfoil ordinates."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, 16)
    a = rng.normal(size=(n, 3)) * np.array([0.02, 0.01, 0.005])
    return 0.1 * np.sin(np.pi * t) + a[:, :1] * np.sin(2 * np.pi * t) + a[:, 1:2] * np.cos(np.pi * t) + a[:, 2:3] * t


SMALL_EVAL = {"k": 5, "n_samples": 100, "quadrature_grid": 10, "permutations": 10}


def curves_config(path, **model) -> dict:
    training = {"epochs": 10, "batch_size": 64, "seed": 0}
    return {
        "data": {"path": str(path)},
        "model": {"z_dim": 2, "hidden": [16], **model},
        "training": training,
        "evaluation": SMALL_EVAL,
    }


def test_collapse_is_said_in_metrics_report_log_and_cli(tmp_path, caplog, capsys):
    path = tmp_path / "curves.csv"
    np.savetxt(path, small_curves(), delimiter=",", header=",".join(f"y{i}" for i in range(16)), comments="")
    with caplog.at_level("WARNING", logger="vaekit.diagnostics"):
        run = vk.runs.train(curves_config(path), tmp_path / "raw")
    assert run.metrics["active_units"] == 0
    (warning,) = run.metrics["warnings"]
    assert warning.startswith("posterior collapse: 0 of 2 latent dimensions are active")
    assert "the data are not standardised" in warning and "--standardize" in warning and "--warmup-epochs" in warning
    assert json.loads((tmp_path / "raw" / "metrics.json").read_text())["warnings"] == [warning]
    assert [r.getMessage() for r in caplog.records] == [warning]
    page = (tmp_path / "raw" / "report.html").read_text()
    assert page.count('<div class="warning" role="alert">') == 1 and html.escape(warning) in page
    # The same data standardised: the latent code is used and nothing is said.
    healthy = vk.runs.train(curves_config(path, standardize=True), tmp_path / "std")
    assert healthy.metrics["active_units"] == 2 and healthy.metrics["warnings"] == []
    assert 'class="warning"' not in (tmp_path / "std" / "report.html").read_text()
    # The command line: the summary counts active units and the warning follows, also with -q.
    capsys.readouterr()
    args = ["train", "--config", str(tmp_path / "raw" / "config.toml"), "--out", str(tmp_path / "cli")]
    assert cli.main(args) == 0
    captured = capsys.readouterr()
    assert ", active units 0 of 2\n" in captured.out
    assert captured.err == f"warning: {warning}\n"


@pytest.mark.parametrize(
    ("flags", "active"),
    [(["--data", "ring", "--n", "500", "--epochs", "15"], 2), (["--data", "digits", "--z-dim", "2", "--epochs", "10"], 2)],
)
def test_healthy_runs_give_no_warning(flags, active, tmp_path, capsys):
    assert cli.main(["train", *flags, "--hidden", "32", *EVAL, "--out", str(tmp_path / "r")]) == 0
    captured = capsys.readouterr()
    assert f", active units {active} of {active}\n" in captured.out and captured.err == ""
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["warnings"] == []
