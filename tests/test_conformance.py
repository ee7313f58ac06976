"""The model contract, checked on every registered model and every option its examples cover.

In the spirit of scikit-learn's estimator checks: each class in the model registry lists small
architectures (``examples()``) and every check below runs on each, so a new model added with
``@register`` gets all of it without a line of test code. The checks use only the contract
(vaekit.models.base.LatentVariableModel). A check of a metric the model declares not applicable
(``not_applicable``) is skipped, and only that check; a prior fitted after training (``fit_prior``)
is fitted on the training data, as ``vaekit train`` does.
"""

from __future__ import annotations

import io as bytes_io
import math

import matplotlib
import numpy as np
import pytest
import torch

import vaekit as vk
from numerics import assert_same_training
from vaekit import cli, metrics, model_settings, plots, report, runs
from vaekit.conditions import OneHot
from vaekit.distributions import Bernoulli
from vaekit.models import MODELS
from vaekit.models.base import not_applicable

# Many small conv and flow models: one torch thread each is faster on a shared 2-core machine.
pytestmark = pytest.mark.usefixtures("one_thread")

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

EXAMPLES = [(name, key, arch) for name, cls in sorted(MODELS.items()) for key, arch in cls.examples().items()]
IDS = [f"{name}:{key}" for name, key, _ in EXAMPLES]
N, EPOCHS, BATCH = 240, 2, 64


def build(name, arch, seed=0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return MODELS[name].from_architecture(arch)


def make_data(model, n=N, seed=0):
    """Data (n, *x_shape) the model's likelihood accepts, and a condition for its spec."""
    rng = np.random.default_rng(seed)
    shape = (n, *model.x_shape)
    if isinstance(model.likelihood, Bernoulli):
        x = (rng.random(shape) < 0.3).astype(np.float32)
    elif model.x_dim == 2:
        x = vk.data.ring(n, seed=seed)[0]
    else:
        x = rng.normal(size=shape).astype(np.float32) * 2.0 + 1.0
        logged = list(getattr(model.likelihood, "log_columns", ()))
        if logged:  # log-normal columns above -log_offset, spanning about two decades
            flat = x.reshape(n, -1)
            flat[:, logged] = np.exp(flat[:, logged]) - 0.5 * model.likelihood.log_offset
    if model.condition is None:
        return x, None
    if isinstance(model.condition, OneHot):
        return x, rng.integers(0, model.condition.n_classes, size=n)
    return x, rng.random((n, model.condition.dim)).astype(np.float32)


@pytest.fixture(scope="module", params=EXAMPLES, ids=IDS)
def trained(request):
    name, _, arch = request.param
    model = build(name, arch)
    x, c = make_data(model)
    history = vk.fit(model, x, c, epochs=EPOCHS, batch_size=BATCH, seed=1, val=0.2)
    history.not_applicable = not_applicable(model)  # what applied while it was trained
    fit_prior = getattr(model, "fit_prior", None)
    if fit_prior is not None:
        fit_prior(x, c)
    return name, arch, model, x, c, history


def skip_if_declared(model, *names):
    """Skip the calling check when the model declares one of ``names`` not applicable."""
    declared = not_applicable(model)
    for key in names:
        if key in declared:
            pytest.skip(f"{type(model).__name__} declares {key} not applicable: {declared[key]}")


def test_architecture_round_trips_through_json(trained):
    name, arch, model, *_ = trained
    assert model.architecture == arch
    assert type(arch).from_dict(model.config) == arch
    assert MODELS[name].from_config(model.config).config == model.config


def test_history_has_the_contract_columns(trained):
    _, _, model, *_, history = trained
    declared = history.not_applicable
    required = {"loss", "reconstruction", "reconstruction_nll", "kl", "neg_elbo", "diversity"} - set(declared)
    required |= {"val_" + k for k in ("loss", "kl", "neg_elbo") if k not in declared}
    assert required <= set(history.columns)
    assert not set(declared) & set(history.columns), "a metric declared not applicable is in History"
    assert ("kl_per_dim" in history.columns) == metrics.kl_splits(model)
    for key in required:
        assert all(math.isfinite(v) for v in history.columns[key]), key
    # neg_elbo = reconstruction_nll + kl, each epoch (float32 terms summed over the epoch)
    if "neg_elbo" in required:
        for nll, kl, neg in zip(history.reconstruction_nll, history.kl, history.neg_elbo):
            assert neg == pytest.approx(nll + kl, rel=1e-5, abs=1e-5)


def test_save_then_load_gives_equal_outputs(trained, tmp_path):
    _, _, model, x, c, _ = trained
    model.save(tmp_path / "m")
    loaded = vk.load(tmp_path / "m")
    assert type(loaded) is type(model) and loaded.config == model.config
    for (ka, a), (kb, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert ka == kb and torch.equal(a, b), ka
    cond = None if c is None else c[:5]
    torch.manual_seed(0)
    qa = model.encode(x[:5], cond).rsample()
    torch.manual_seed(0)
    qb = loaded.encode(x[:5], cond).rsample()
    assert torch.equal(qa, qb)
    one = None if c is None else c[0]
    assert np.array_equal(model.sample(7, one, seed=3), loaded.sample(7, one, seed=3))
    assert np.array_equal(model.reconstruct(x[:5], cond), loaded.reconstruct(x[:5], cond))


def test_outputs_have_the_data_shape(trained):
    _, _, model, x, c, _ = trained
    cond = None if c is None else c[0]
    assert model.sample(4, cond, seed=0).shape == (4, *model.x_shape)
    assert model.sample(4, cond, seed=0, noise=True).shape == (4, *model.x_shape)
    assert model.reconstruct(x[:3], None if c is None else c[:3]).shape == (3, *model.x_shape)
    qz = model.encode(x[:3], None if c is None else c[:3])
    assert qz.rsample().shape == (3, model.z_dim) and qz.log_prob(qz.rsample()).shape == (3,)
    assert model.prior().log_prob(torch.zeros(3, model.z_dim)).shape == (3,)


def test_resume_is_bit_exact(trained, tmp_path):
    name, arch, _, x, c, _ = trained
    whole = build(name, arch)
    expected = vk.fit(whole, x, c, epochs=4, batch_size=BATCH, seed=2)
    part = build(name, arch)
    vk.fit(part, x, c, epochs=2, batch_size=BATCH, seed=2, checkpoint_dir=tmp_path, checkpoint_every=1)
    resumed = build(name, arch, seed=99)  # weights come from the checkpoint, not the constructor
    history = vk.fit(resumed, x, c, epochs=4, batch_size=BATCH, seed=2, resume=tmp_path)
    assert history == expected
    assert all(torch.equal(a, b) for a, b in zip(resumed.state_dict().values(), whole.state_dict().values()))


def test_evaluate_gives_finite_numbers(trained):
    _, _, model, x, c, _ = trained
    cond = None if c is None else c[:120]
    result = metrics.evaluate(model, x[:120], cond, k=20, n_samples=200, permutations=10, quadrature_grid=40)
    declared = not_applicable(model)
    sampled = ("mmd2", "energy_distance") if "diversity" not in declared else ()
    for key in {"neg_elbo", "reconstruction_nll", "kl", "iwae_nll", "diversity"} - set(declared) | set(sampled):
        assert math.isfinite(result[key]), key
    assert not set(declared) & set(result), "a metric declared not applicable was reported"
    notes = dict(result.get("notes", {}))
    # the baselines: PCA always; PPCA's Gaussian density only next to a continuous likelihood
    assert math.isfinite(result["reconstruction_mse"]) and math.isfinite(result["pca_mse"])
    discrete = isinstance(model.likelihood, vk.Bernoulli)
    assert ("ppca_nll" in notes) == discrete and ("ppca_nll" in result) == (not discrete)
    notes.pop("ppca_nll", None)
    assert notes == declared
    assert ("kl_per_dim" in result) == metrics.kl_splits(model)


def test_iwae_bound_is_at_least_the_elbo(trained):
    # In expectation log p(x) >= IWAE_k >= ELBO; with 64 points the mean gap is far above its noise.
    _, _, model, x, c, _ = trained
    skip_if_declared(model, "iwae_nll", "neg_elbo")
    xs, cs = x[:64], None if c is None else c[:64]
    elbo = -metrics.neg_elbo(model, xs, cs, samples=50, seed=0)
    iwae = metrics.log_likelihood(model, xs, cs, k=50, seed=0)
    assert iwae >= elbo - 1e-3


def test_every_figure_renders(trained):
    _, _, model, x, c, history = trained
    figures = plots.run_figures(model, x, c, history=history)
    assert {"history", "samples", "latent", "interpolation"} <= set(figures)
    for key, fig in figures.items():
        buffer = bytes_io.BytesIO()
        fig.savefig(buffer, format="png", dpi=40)
        assert buffer.getvalue()[:8] == b"\x89PNG\r\n\x1a\n", key
        plt.close(fig)


def test_the_report_renders(trained):
    _, _, model, x, c, _ = trained
    flat = model.prepare_x(x).cpu().numpy()
    columns = [f"x{i}" for i in range(model.x_dim)]
    data = runs.RunData(flat, None if c is None else np.asarray(c).reshape(len(flat), -1).astype(np.float32), None, columns)
    payload = report.explorer_payload(model, data)
    assert payload["x_dim"] == model.x_dim and payload["z_dim"] == model.z_dim
    config = runs.default_config()
    page = report.render_html(
        title="conformance",
        subtitle=type(model).__name__,
        config=config,
        config_text=runs.config_text(config),
        metrics={"neg_elbo": 1.0},
        figures={},
        explorer=payload,
        summary=[("data", "synthetic")],
    )
    assert page.startswith("<!DOCTYPE html>") and "http://" not in page and "https://" not in page


@pytest.mark.numerics  # a cross-implementation comparison: rerun under every CPU kernel set
def test_sweep_equals_fit(trained):
    # In float64: a vectorised sweep sums in other orders than fit, and Adam magnifies float32
    # rounding (tests/numerics.py, bound 2); sequential sweeps run fit itself: bit for bit.
    name, arch, model, x, c, _ = trained
    result = vk.sweep(build(name, arch).double(), x, c, over={"seed": [5]}, epochs=2, batch_size=BATCH)
    alone = build(name, arch, seed=5).double()
    history = vk.fit(alone, x, c, epochs=2, batch_size=BATCH, seed=5)
    if result.vectorised:
        steps = 2 * math.ceil(N / BATCH)
        assert_same_training(result.models[0], result.histories[0], alone, history, steps=steps, lr=1e-3, batch=BATCH)
    else:
        assert result.histories[0] == history
        assert all(torch.equal(a, b) for a, b in zip(result.models[0].state_dict().values(), alone.state_dict().values()))


def test_vaekit_train_builds_this_model(trained, tmp_path):
    # The [model] settings of this architecture (derived from the registries, no list kept by
    # hand) train a run folder through the command line whose model is this very architecture.
    name, arch, model, x, _, _ = trained
    settings = model_settings.settings_of(arch, MODELS[name].kind)
    flat = x.reshape(len(x), -1)
    table = {f"x{i}": flat[:, i] for i in range(model.x_dim)}
    data = {"path": str(tmp_path / "data.csv")}
    if model.condition is not None:
        if isinstance(model.condition, OneHot):
            table["c"] = np.arange(len(x)) % model.condition.n_classes  # every class present
        else:
            assert model.condition.dim == 1, "a CSV condition is one column"
            table["c"] = np.linspace(0.0, 1.0, len(x))
        data |= {"condition": "c", "condition_type": model.condition.kind}
    logged = getattr(model.likelihood, "log_columns", ())
    if logged:  # named in [data], like a condition: the data's columns, not a model setting
        data |= {"log_columns": [f"x{i}" for i in logged], "log_offset": model.likelihood.log_offset}
    np.savetxt(data["path"], np.column_stack(list(table.values())), delimiter=",", header=",".join(table), comments="")
    config = {
        "data": data,
        "model": settings,
        "training": {"epochs": 1, "batch_size": BATCH},
        "evaluation": {"k": 4, "n_samples": 40, "permutations": 4, "quadrature_grid": 12},
    }
    (tmp_path / "config.toml").write_text(runs.config_text(config))
    assert cli.main(["train", "--config", str(tmp_path / "config.toml"), "--out", str(tmp_path / "run"), "-q"]) == 0
    run = runs.open_run(tmp_path / "run")
    assert run.model.architecture == arch
    assert runs.read_config(tmp_path / "run")["model"] == settings
    assert (tmp_path / "run" / runs.REPORT).is_file()
