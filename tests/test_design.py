"""Conditional design of curves: conditions computed from shapes, and the adherence of samples to them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import vaekit as vk
from vaekit import cli, design, runfolder
from vaekit.conditions import condition_from_config

# Surface stations 0, 1/32, ..., 1: x = 0.5 is a station, where both closed forms below peak.
X = np.linspace(0.0, 1.0, 33)


def lens(thickness, camber=None) -> np.ndarray:
    """Shapes (N, 66, 2) with thickness t f(x) and camber line c f(x), f = 4x(1 - x): max thickness t and camber c at x = 0.5."""
    t = np.atleast_1d(np.asarray(thickness, dtype=np.float64))
    c = np.zeros_like(t) if camber is None else np.atleast_1d(np.asarray(camber, dtype=np.float64))
    f = 4 * X * (1 - X)
    yu, yl = (c[:, None] + t[:, None] / 2) * f, (c[:, None] - t[:, None] / 2) * f  # (N, 33)
    xs = np.broadcast_to(X, yu.shape)
    upper = np.stack([xs, yu], -1)[:, ::-1]  # trailing edge -> leading edge
    lower = np.stack([xs, yl], -1)
    return np.concatenate([upper, lower], axis=1)


class LensModel:
    """A stand-in conditional model of curves: asked for (t, c), it draws lens((1 + e) t, c + d) with known errors e, d."""

    x_shape = (66, 2)

    def __init__(self, dim: int = 1) -> None:
        self.condition = vk.Continuous(dim)
        self.asked = None

    def relative_error(self, n: int) -> np.ndarray:
        return 0.1 * (np.arange(n) % 5 - 2)  # -0.2 .. 0.2, each a fifth of the draws

    def camber_error(self, n: int) -> np.ndarray:
        return 0.001 * (np.arange(n) % 4)

    def sample(self, n, condition, *, seed=0):
        self.asked = np.asarray(condition, dtype=np.float64)
        t = self.asked[:, 0] * (1 + self.relative_error(n))
        c = self.asked[:, 1] + self.camber_error(n) if self.asked.shape[1] > 1 else None
        return lens(t, c).astype(np.float32)


def test_lens_shapes_have_their_closed_form_properties():
    props = vk.shapes.airfoil_properties(lens([0.1, 0.2], [0.0, 0.03]))
    np.testing.assert_allclose(props.thickness, [0.1, 0.2], rtol=1e-12)
    np.testing.assert_allclose(props.camber, [0.0, 0.03], atol=1e-15, rtol=1e-12)
    assert vk.shapes.validity(lens([0.1, 0.2])).valid.all()


def test_shape_condition_is_airfoil_properties_in_the_named_order():
    x = vk.data.airfoils("test")[0][:40]
    props = vk.shapes.airfoil_properties(x)
    both = design.shape_condition(x, "thickness,camber")
    assert both.dtype == np.float32 and both.shape == (40, 2)
    np.testing.assert_array_equal(both, props.features().astype(np.float32))
    np.testing.assert_array_equal(design.shape_condition(x, ["camber_x", "thickness"])[:, 0], props.camber_x.astype(np.float32))
    np.testing.assert_array_equal(design.shape_condition(x)[:, 0], props.thickness.astype(np.float32))


def test_adherence_equals_the_known_errors_of_the_drawn_shapes():
    targets = np.array([[0.08, 0.01], [0.12, 0.02], [0.16, 0.04]])
    reference = np.array([[0.10, 0.02], [0.14, 0.02]])  # means 0.12 and 0.02
    model = LensModel(dim=2)
    out = design.condition_adherence(model, targets, "thickness,camber", n_per_target=10, reference=reference, seed=3)
    asked = np.repeat(targets, 10, axis=0)
    np.testing.assert_array_equal(model.asked, asked.astype(np.float32))
    # Independently: the thickness error is |e| t, the camber error d, per drawn shape.
    t_error = np.abs(model.relative_error(30)) * asked[:, 0].astype(np.float32)
    c_error = model.camber_error(30)
    assert out["adherence_thickness_mae"] == pytest.approx(t_error.mean(), rel=1e-6)
    assert out["adherence_thickness_p90"] == pytest.approx(np.quantile(t_error, 0.9), rel=1e-6)
    assert out["adherence_camber_mae"] == pytest.approx(c_error.mean(), rel=1e-4, abs=1e-8)
    assert out["adherence_camber_p90"] == pytest.approx(np.quantile(c_error, 0.9), rel=1e-4, abs=1e-8)
    # The baseline always hits the reference mean: |target - mean|.
    assert out["adherence_thickness_baseline_mae"] == pytest.approx((0.04 + 0.0 + 0.04) / 3)
    assert out["adherence_thickness_baseline_p90"] == pytest.approx(np.quantile([0.04, 0.0, 0.04], 0.9))
    assert out["adherence_camber_baseline_mae"] == pytest.approx((0.01 + 0.0 + 0.02) / 3)
    assert out["adherence_valid_fraction"] == 1.0
    assert out["adherence_targets"] == 3 and out["adherence_samples_per_target"] == 10


def test_adherence_leaves_out_non_finite_samples_and_counts_them_invalid(caplog):
    shapes = lens([0.1, 0.1, 0.1, 0.1])
    shapes[0, 3, 1] = np.nan
    asked = np.full((4, 1), 0.12)
    out = design.adherence_of(shapes, asked, "thickness")
    assert out["adherence_thickness_mae"] == pytest.approx(0.02)
    assert out["adherence_valid_fraction"] == 0.75
    assert "1 of 4 samples are not finite" in caplog.text


def test_adherence_targets_are_data_rows_spread_over_the_5_to_95_percent_quantiles():
    c = np.stack([np.arange(101.0)[::-1], np.arange(101.0)], 1)  # sorted by column 0: row 100 - k holds k
    targets = design.adherence_targets(c, 10)
    np.testing.assert_array_equal(targets[:, 0], np.round(np.linspace(5, 95, 10)))
    np.testing.assert_array_equal(targets[:, 1], 100 - targets[:, 0])  # whole rows, not column-wise quantiles


def test_adherence_refuses_models_and_inputs_that_do_not_fit():
    model = LensModel(dim=1)
    with pytest.raises(vk.InputError, match=r"^names must name shape properties among \['thickness', 'thickness_x', "):
        design.condition_adherence(model, [0.1], "chord")
    with pytest.raises(vk.InputError, match=r"^targets must have shape \(M, 1\) with M >= 1\. Got shape \(2, 2\) instead\.$"):
        design.condition_adherence(model, [[0.1, 0.2], [0.1, 0.2]], "thickness")
    with pytest.raises(vk.InputError, match=r"^n_per_target must be an integer >= 1\. Got 0 instead\.$"):
        design.condition_adherence(model, [0.1], "thickness", n_per_target=0)
    with pytest.raises(
        vk.InputError,
        match=r"^model must have a continuous condition of 2 column\(s\) \['thickness', 'camber'\] for condition_adherence\. "
        r"Got \{'type': 'continuous', 'dim': 1, 'embed': 16\} instead\.$",
    ):
        design.condition_adherence(model, [[0.1, 0.0]], "thickness,camber")
    table = vk.VAE(3, 2, condition=vk.Continuous(1), seed=0)
    with pytest.raises(
        vk.InputError,
        match=r"^model must model curves \(x_shape \(P, 2\)\) for condition_adherence\. Got x_shape \(3,\) instead\.$",
    ):
        design.condition_adherence(table, [0.1], "thickness")
    with pytest.raises(vk.InputError, match=r"^names must name each shape property once\. Got 'camber,camber' instead\.$"):
        design.shape_condition(lens([0.1]), "camber,camber")


def test_fitted_continuous_spec_scales_inputs_and_keeps_user_units():
    c = np.array([[0.1, 0.0], [0.2, 0.02], [0.3, 0.04]])
    spec = vk.Continuous.fitted(c, embed=4)
    np.testing.assert_allclose(spec.shift, c.mean(0))
    np.testing.assert_allclose(spec.scale, c.std(0))
    embedded = spec.embedding()[0](torch.tensor(c, dtype=torch.float32))
    np.testing.assert_allclose(embedded.numpy(), (c - c.mean(0)) / c.std(0), rtol=1e-5, atol=1e-6)
    assert spec.to_config() == {"type": "continuous", "dim": 2, "embed": 4, "shift": list(spec.shift), "scale": list(spec.scale)}
    assert condition_from_config(json.loads(json.dumps(spec.to_config()))) == spec
    assert vk.Continuous.fitted(np.ones(5)).scale == (1.0,)  # no spread: unscaled
    with pytest.raises(vk.InputError, match=r"^Continuous\.scale must hold numbers > 0\. Got \(0\.0,\) instead\.$"):
        vk.Continuous(1, shift=(0.0,), scale=(0.0,))
    with pytest.raises(vk.InputError, match=r"^Continuous\.shift and Continuous\.scale must both be empty or both hold dim=2"):
        vk.Continuous(2, shift=(0.0,), scale=(1.0,))


def test_python_api_fits_a_model_on_airfoil_properties_and_measures_adherence(tmp_path):
    torch.set_num_threads(1)
    x = vk.data.airfoils("train")[0][:200]
    c = vk.shapes.airfoil_properties(x).features()  # (N, 2): thickness, camber
    model = vk.VAE(x_shape=(64, 2), z_dim=3, hidden=(32,), condition=vk.Continuous.fitted(c), standardize=True, seed=0)
    vk.fit(model, x, condition=c, epochs=2, seed=0)
    out = design.condition_adherence(model, c[:5], "thickness,camber", n_per_target=4, reference=c)
    assert {"adherence_thickness_mae", "adherence_camber_p90", "adherence_camber_baseline_mae"} <= set(out)
    vk.save(model, tmp_path / "m")
    again = vk.load(tmp_path / "m")
    assert again.condition == model.condition
    np.testing.assert_array_equal(again.sample(3, c[:3], seed=1), model.sample(3, c[:3], seed=1))


def test_config_refuses_shape_conditions_where_they_do_not_apply(tmp_path):
    def check(data, message):
        with pytest.raises(vk.InputError) as info:
            runfolder.load_data(runfolder.validate_config({"data": data}))
        assert str(info.value) == message

    check(
        {"name": "ring", "condition": "thickness", "condition_type": "continuous"},
        "config: [data] condition 'thickness' is a shape property of curve data (the built-in ['airfoils'] or an .npy "
        "of shape (N, P, 2)). Got the built-in dataset 'ring' instead.",
    )
    check(
        {"name": "airfoils", "condition": "thickness,span", "condition_type": "continuous"},
        "config: [data] condition must name shape properties among ['thickness', 'thickness_x', 'camber', 'camber_x'], "
        "comma-separated (e.g. 'thickness,camber'). Got 'thickness,span' instead.",
    )
    check(
        {"name": "airfoils", "condition": "thickness"},
        "config: [data] condition 'thickness' is computed from the shapes: its type must be continuous "
        "(--condition thickness:continuous). Got 'onehot' instead.",
    )
    check(
        {"name": "airfoils", "condition": "span", "condition_type": "continuous"},
        "config: [data] condition for a built-in dataset must be one of ['label', 'radius'] or shape properties "
        "['thickness', 'thickness_x', 'camber', 'camber_x']. Got 'span' instead.",
    )
    table = tmp_path / "table.csv"
    table.write_text("a,b\n1,2\n3,4\n5,6\n")
    with pytest.raises(vk.InputError) as info:
        runfolder.load_data(
            runfolder.validate_config({"data": {"path": str(table), "condition": "camber", "condition_type": "continuous"}})
        )
    assert str(info.value).startswith(
        f"[data] condition 'camber' is computed from curves: it needs an .npy of shape (N, P, 2) (or a column of that name). "
        f"Got {table}, which is neither: condition names unknown column(s) ['camber']"
    )
    named = tmp_path / "named.csv"  # a column of that name is a column as before
    named.write_text("a,thickness\n1,2\n3,4\n")
    config = runfolder.validate_config({"data": {"path": str(named), "condition": "thickness", "condition_type": "continuous"}})
    data = runfolder.load_data(config)
    np.testing.assert_array_equal(data.condition[:, 0], [2, 4])
    model = runfolder.build_model(config, data)
    assert runfolder.shape_adherence(model, data, config) == {}  # a table: no shapes to measure


def test_curve_files_and_airfoils_get_their_shape_conditions(tmp_path):
    shapes = vk.data.airfoils("test")[0][:30]
    np.save(tmp_path / "shapes.npy", shapes)
    config = runfolder.validate_config(
        {"data": {"path": str(tmp_path / "shapes.npy"), "condition": "camber,thickness", "condition_type": "continuous"}}
    )
    data = runfolder.load_data(config)
    np.testing.assert_array_equal(data.condition, design.shape_condition(shapes, "camber,thickness"))
    spec = runfolder.condition_spec(config, data)
    np.testing.assert_allclose(spec.shift, data.condition.astype(np.float64).mean(0), rtol=1e-6)
    builtin = runfolder.validate_config({"data": {"name": "airfoils", "condition": "thickness", "condition_type": "continuous"}})
    test = runfolder.load_data(builtin, test=True)
    np.testing.assert_array_equal(test.condition[:, 0], vk.data.airfoils("test")[1])
    assert runfolder.shape_condition_names(builtin["data"]) == "thickness"
    # The airfoils' label is their thickness: the same scaled condition and adherence.
    label = runfolder.validate_config({"data": {"name": "airfoils", "condition": "label", "condition_type": "continuous"}})
    assert runfolder.shape_condition_names(label["data"]) == "thickness"
    train = runfolder.load_data(label)
    thickness = vk.data.airfoils("train")[1].astype(np.float64)
    np.testing.assert_allclose(runfolder.condition_spec(label, train).scale, [thickness.std()], rtol=1e-5)
    ring = runfolder.validate_config({"data": {"name": "ring", "condition": "radius", "condition_type": "continuous"}})
    assert runfolder.shape_condition_names(ring["data"]) == ""
    assert runfolder.condition_spec(ring, runfolder.load_data(ring)).scale == ()  # the lecture's recipe stays


EVAL = ["--eval-k", "2", "--eval-n-samples", "20", "--eval-permutations", "5"]


def test_cli_trains_evaluates_and_samples_a_thickness_conditioned_model(tmp_path, capsys):
    np.save(tmp_path / "shapes.npy", vk.data.airfoils("train")[0][:80])
    np.save(tmp_path / "test.npy", vk.data.airfoils("test")[0][:30])
    run = tmp_path / "run"
    argv = ["train", "--data", str(tmp_path / "shapes.npy"), "--test-data", str(tmp_path / "test.npy")]
    argv += ["--condition", "thickness:continuous", "--epochs", "2", "--hidden", "16", "--z-dim", "2", "--out", str(run), *EVAL]
    assert cli.main(argv) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    keys = {"adherence_thickness_mae", "adherence_thickness_p90", "adherence_thickness_baseline_mae", "adherence_valid_fraction"}
    assert keys <= set(metrics) and keys <= set(metrics["train"])
    assert metrics["adherence_targets"] == design.TARGETS
    html = (run / "report.html").read_text()
    assert "adherence_thickness_mae" in html and "mean |measured - asked| thickness" in html
    capsys.readouterr()
    assert cli.main(["evaluate", str(run)]) == 0
    assert "adherence_thickness_baseline_mae" in capsys.readouterr().out
    assert cli.main(["sample", str(run), "--condition", "0.12", "-n", "8", "-o", str(tmp_path / "s.png")]) == 0
    said = capsys.readouterr().out
    assert (tmp_path / "s.png").stat().st_size > 1000
    assert said.splitlines()[1].startswith("thickness of the samples (chord units): asked 0.12, measured mean ")
    assert cli.main(["sample", str(run), "--condition", "0.12,0.01", "-n", "2"]) == 2
    assert "--condition must be 1 finite comma-separated number(s). Got '0.12,0.01' instead." in capsys.readouterr().err
    assert cli.main(["train", "--data", "ring", "--condition", "thickness:continuous", "--out", str(tmp_path / "no")]) == 2
    err = capsys.readouterr().err
    assert "[data] condition 'thickness' is a shape property of curve data" in err and "Got the built-in dataset 'ring'" in err
    unknown = ["--condition", "thickness,chord:continuous"]
    assert cli.main(["train", "--data", "airfoils", *unknown, "--out", str(tmp_path / "no")]) == 2
    assert "[data] condition must name shape properties among" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()
