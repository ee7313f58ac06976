"""Issue 11, "no silent failures": Bernoulli data outside [0, 1], posterior collapse said out
loud, headerless CSV files, and the train flags --exclude, --label, --threads."""

from __future__ import annotations

import re

import numpy as np
import pytest

import vaekit as vk
from vaekit import cli

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
