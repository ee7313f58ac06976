"""Issue 11, "no silent failures": Bernoulli data outside [0, 1], posterior collapse said out
loud, headerless CSV files, and the train flags --exclude, --label, --threads."""

from __future__ import annotations

import html
import json
import re

import numpy as np
import pytest

import vaekit as vk
from vaekit import cli, diagnostics
from vaekit.diagnostics import collapse_warning, needed_units
from vaekit.runfolder import NO_HELD_OUT

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
    capsys.readouterr()  # one epoch: the collapse warning, not under test here
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
    with caplog.at_level("WARNING", logger="vaekit.diagnostics"):  # the lecture's recipe on raw units
        run = vk.runs.train(curves_config(path, standardize=False, variance=0.1), tmp_path / "raw")
    assert run.metrics["active_units"] == 0
    said = run.metrics["warnings"]
    warning = said[0]
    assert warning.startswith("posterior collapse: 0 of 2 latent dimensions are active")
    assert "the data are not standardised" in warning and "--standardize" in warning and "--warmup-epochs" in warning
    # A collapsed model is also worse than PPCA, and says so second.
    assert said[1:] == [diagnostics.baseline_warning(run.metrics)] and said[1] is not None
    assert json.loads((tmp_path / "raw" / "metrics.json").read_text())["warnings"] == said
    assert [r.getMessage() for r in caplog.records] == said
    page = (tmp_path / "raw" / "report.html").read_text()
    assert page.count('<div class="warning" role="alert">') == len(said) and html.escape(warning) in page
    # The same data with the defaults for a user's file (standardised, learned variance): the
    # latent code is used and nothing is said.
    # (On these nearly linear curves a short run still loses to PPCA, and says that; no collapse.)
    healthy = vk.runs.train(curves_config(path), tmp_path / "std")
    assert healthy.metrics["active_units"] == 2
    assert healthy.metrics["warnings"] == [w for w in [diagnostics.baseline_warning(healthy.metrics)] if w]
    assert "posterior collapse" not in (tmp_path / "std" / "report.html").read_text()
    # The command line: the summary counts active units and the warning follows, also with -q.
    capsys.readouterr()
    args = ["train", "--config", str(tmp_path / "raw" / "config.toml"), "--out", str(tmp_path / "cli")]
    assert cli.main(args) == 0
    captured = capsys.readouterr()
    assert ", active units 0 of 2\n" in captured.out
    # Two things said: the collapse, and that the numbers are on the training data (no held-out file).
    expected = f"warning: {NO_HELD_OUT}\n" + "".join(f"warning: {text}\n" for text in said)
    assert captured.err == expected
    # vaekit evaluate says it too (the same data, the same settings).
    assert cli.main(["evaluate", str(tmp_path / "cli")]) == 0
    captured = capsys.readouterr()
    assert captured.err == expected and "warnings" not in captured.out


@pytest.mark.parametrize(
    ("flags", "active"),
    [(["--data", "ring", "--n", "500", "--epochs", "300"], 2), (["--data", "digits", "--z-dim", "2", "--epochs", "10"], 2)],
)
def test_healthy_runs_give_no_warning(flags, active, tmp_path, capsys):
    assert cli.main(["train", *flags, "--hidden", "32", *EVAL, "--out", str(tmp_path / "r")]) == 0
    captured = capsys.readouterr()
    # Nothing but, for the digits (a fixed set with no held-out part), that the numbers are on the training data.
    said = "" if "ring" in flags else f"warning: {NO_HELD_OUT}\n"
    assert f", active units {active} of {active}\n" in captured.out and captured.err == said
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["warnings"] == []


# ---------------------------------------------------------------------------- CSV headers
def write_rows(path, rows, header=None) -> None:
    lines = [",".join(header)] if header else []
    path.write_text("\n".join(lines + [",".join(str(v) for v in r) for r in rows]) + "\n")


ROWS = [[0.5, 1, -2], [1.5, 2, 3e-3], [2.5, 3, 4]]


def test_headerless_csv_keeps_its_first_row(tmp_path, caplog):
    path = tmp_path / "plain.csv"
    write_rows(path, ROWS)
    with caplog.at_level("INFO", logger="vaekit.data"):
        table = vk.data.load_table(path)
    assert table.columns == ["col0", "col1", "col2"] and not table.has_header
    np.testing.assert_array_equal(table.x, np.array(ROWS, dtype=np.float32))  # all 3 rows, none lost
    assert "the first row is all numbers, so it is read as data (no header)" in caplog.text
    # header=True: the numbers are names (the old reading); header=False on a file with names: refused.
    forced = vk.data.load_table(path, header=True)
    assert forced.columns == ["0.5", "1", "-2"] and forced.x.shape == (2, 3) and forced.has_header
    named = tmp_path / "named.csv"
    write_rows(named, ROWS, header=["a", "b", "c"])
    assert vk.data.load_table(named).columns == ["a", "b", "c"]
    with pytest.raises(vk.InputError, match=r"^column 'col0' of .* must be numeric\. Got 'a' in data row 1 instead\.$"):
        vk.data.load_table(named, header=False)
    with pytest.raises(vk.InputError, match=r"^header must be 'auto', True or False\. Got 'yes' instead\.$"):
        vk.data.load_table(named, header="yes")


def test_a_first_row_with_one_name_is_a_header(tmp_path):
    path = tmp_path / "mixed.csv"
    write_rows(path, ROWS, header=["x", "2", "3"])
    table = vk.data.load_table(path)
    assert table.columns == ["x", "2", "3"] and table.x.shape == (3, 3)


def test_cli_headerless_csv_note_flags_and_config(tmp_path, capsys):
    path = tmp_path / "plain.csv"
    rng = np.random.default_rng(0)
    write_rows(path, rng.normal(size=(40, 3)).round(4).tolist())
    out = tmp_path / "run"
    base = ["train", "--data", str(path), "--epochs", "1", "--hidden", "8", *EVAL]
    assert cli.main([*base, "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "has no header row (every cell of its first row is a number)" in said and "use --header" in said
    config = vk.runs.read_config(out)
    assert config["data"]["header"] is False and config["data"]["columns"] == ["col0", "col1", "col2"]
    assert vk.runs.open_run(out).metrics["n_points"] == 40  # no row lost
    assert cli.main(["encode", str(out), str(path), "-o", str(tmp_path / "z.npy")]) == 0  # encode reads it the same way
    assert np.load(tmp_path / "z.npy").shape == (40, 2)
    assert cli.main([*base, "--header", "--out", str(tmp_path / "named"), "-q"]) == 0
    assert vk.runs.open_run(tmp_path / "named").metrics["n_points"] == 39
    assert vk.runs.read_config(tmp_path / "named")["data"]["header"] is True
    assert cli.main([*base, "--header", "--no-header"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


# ---------------------------------------------------------------------------- --exclude, --label, --threads
def wide_file(path, n=60, width=30, seed=0) -> None:
    rng = np.random.default_rng(seed)
    header = ["id", *[f"pixel{i}" for i in range(width)], "kind"]
    rows = [[i, *rng.uniform(size=width).round(3), ["a", "b", "c"][i % 3]] for i in range(n)]
    write_rows(path, rows, header=header)


def test_exclude_and_label_select_columns(tmp_path):
    path = tmp_path / "wide.csv"
    wide_file(path, width=3)
    table = vk.data.load_table(path, exclude=["id"], label="kind")
    assert table.columns == ["pixel0", "pixel1", "pixel2"]
    assert table.label_classes == ["a", "b", "c"] and table.label.tolist() == [i % 3 for i in range(60)]
    with pytest.raises(vk.InputError, match=r"^exclude names unknown column\(s\) \['ID'\] of .*; its columns are \['id', "):
        vk.data.load_table(path, exclude=["ID"], label="kind")
    with pytest.raises(vk.InputError, match=r"^label names unknown column\(s\) \['colour'\]"):
        vk.data.load_table(path, label="colour")
    with pytest.raises(vk.InputError, match=r"^label must not be one of the data columns .* Got 'pixel1', which columns"):
        vk.data.load_table(path, columns=["pixel0", "pixel1"], label="pixel1")
    with pytest.raises(vk.InputError, match=r"^label must not be a condition column"):
        vk.data.load_table(path, condition="kind", label="kind")
    # A long header is summarised in the message.
    wide_file(path, width=40)
    with pytest.raises(vk.InputError, match=r"its columns are 42 columns: id, pixel0, pixel1, …, kind\.$"):
        vk.data.load_table(path, exclude=["nope"])


def test_label_exclude_threads_round_trip_through_config_toml(tmp_path, capsys):
    import torch

    path = tmp_path / "wide.csv"
    wide_file(path, width=30)
    before = torch.get_num_threads()
    out = tmp_path / "run"
    args = ["train", "--data", str(path), "--exclude", "id", "--label", "kind", "--threads", "1"]
    assert cli.main([*args, "--epochs", "1", "--hidden", "8", *EVAL, "--out", str(out), "-q"]) == 0
    assert torch.get_num_threads() == before  # put back after the run
    text = (out / "config.toml").read_text()
    assert "columns = []" in text and "pixel0" not in text  # 30 columns: "all but" instead of a list
    config = vk.runs.read_config(out)
    assert config["data"]["exclude"] == ["id"] and config["data"]["label"] == "kind"
    assert config["training"]["threads"] == 1 and config["data"]["header"] is True
    info = json.loads((out / "run.json").read_text())
    assert info["columns"] == [f"pixel{i}" for i in range(30)] and info["label"] == "kind"
    assert info["label_classes"] == ["a", "b", "c"] and info["threads"] == 1
    page = (out / "report.html").read_text()
    assert "30 columns: pixel0, pixel1, pixel2, …, pixel29" in page
    payload = json.loads(re.search(r'id="explorer-data">(.*?)</script>', page).group(1))
    assert sorted(set(payload["z_labels"])) == [0, 1, 2]
    # The model never saw the label or the excluded column; config.toml alone redoes the run.
    run = vk.runs.open_run(out)
    assert run.model.x_dim == 30 and run.model.condition is None
    again = vk.runs.train(out / "config.toml", tmp_path / "again")
    assert again.info["columns"] == info["columns"]
    assert (tmp_path / "again" / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()
    # The same through the Python config dict of vk.runs.train.
    settings = {"data": {"path": str(path), "exclude": ["id"], "label": "kind"}, "training": {"epochs": 1, "threads": 1}}
    settings["model"] = {"hidden": [8]}
    settings["evaluation"] = {"k": 5, "n_samples": 200, "quadrature_grid": 20, "permutations": 10}
    python = vk.runs.train(settings, tmp_path / "python")
    assert python.info["columns"] == info["columns"] and python.info["threads"] == 1


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"training": {"threads": -1}},
            "config: [training] threads must be an integer >= 1 (0: torch's default). Got -1 instead.",
        ),
        (
            {"data": {"name": "ring", "label": "x"}},
            "config: [data] exclude, label, log_columns and header apply to files (path), not to the built-in dataset 'ring'. "
            "Got label='x' instead.",
        ),
        ({"data": {"header": "maybe"}}, "config: [data] header must be true, false or 'auto'. Got 'maybe' instead."),
        ({"data": {"exclude": "id"}}, "config: [data] exclude must be a list of strings. Got 'id' instead."),
    ],
)
def test_bad_settings_name_the_key(settings, message):
    with pytest.raises((vk.InputError, vk.InputTypeError)) as info:
        vk.runs.validate_config(settings)
    assert str(info.value) == message


def test_cli_threads_must_be_an_integer(capsys):
    assert cli.main(["train", "--threads", "two"]) == 2
    assert "--threads: invalid int value: 'two'" in capsys.readouterr().err


def test_losing_to_ppca_is_said_with_both_numbers():
    held_out = {"iwae_nll": 37.58, "ppca_nll": 32.22}
    assert diagnostics.baseline_warning(held_out) == (
        "the model's NLL held out (37.6 nats per row) is higher than probabilistic PCA's (32.2) with the same latent "
        "size: on this data a linear model is the better density model. Likely causes: too few epochs, too few rows "
        "for a nonlinear model, or a latent size the data do not need; compare both in the report."
    )
    # With the paired standard error of the gap (metrics.evaluate's ppca_gap_se): beyond t(5)'s 2.571 ...
    assert diagnostics.baseline_warning({**held_out, "ppca_gap_se": 2.0, "n_points": 6}) == (
        "the model's NLL held out (37.6 nats per row) is higher than probabilistic PCA's (32.2) with the same latent "
        "size by 5.36 ± 2 (paired standard error over 6 points): on this data a linear model is the better density "
        "model. Likely causes: too few epochs, too few rows for a nonlinear model, or a latent size the data do not "
        "need; compare both in the report."
    )
    # ... and within it (2.2 standard errors, which 2 would have called a verdict): none either way, and said so.
    assert diagnostics.baseline_warning({**held_out, "ppca_gap_se": 2.44, "n_points": 6}) == (
        "the model's NLL held out (37.6 nats per row) is higher than probabilistic PCA's (32.2) with the same latent "
        "size by 5.36, 2.19 paired standard errors (2.44 over 6 points), short of the 2.57 that 95% confidence needs: "
        "these points cannot tell the two apart, and more rows would narrow it; compare both in the report."
    )
    at_the_edge = diagnostics.baseline_warning({"iwae_nll": 2.0 + 2.571, "ppca_nll": 2.0, "ppca_gap_se": 1.0, "n_points": 6})
    assert "cannot tell the two apart" in at_the_edge  # a gap of exactly t * SE is not beyond it
    assert "2.57 paired standard errors" in at_the_edge  # 2.571 rounded down, never up past the quantile
    conditional = diagnostics.baseline_warning({**held_out, "baselines_note": "..."})
    assert conditional.startswith(
        "the model's NLL held out (37.6 nats per row) is higher than probabilistic PCA's (32.2) with the same latent "
        "size (its -log p(x|c) against PPCA's -log p(x)): "
    )
    on_training = diagnostics.baseline_warning({"warning": NO_HELD_OUT, **held_out})
    assert on_training.startswith("the model's NLL on the training data (37.6 nats per row)")
    assert diagnostics.baseline_warning({"iwae_nll": 2.53, "ppca_nll": 3.04}) is None  # winning: nothing to say
    assert diagnostics.baseline_warning({"iwae_nll": 2.53}) is None  # no PPCA (Bernoulli data): nothing to compare
    assert diagnostics.baseline_warning({"iwae_nll": float("nan"), "ppca_nll": 3.0}) is None


def test_a_gap_that_one_point_decides_names_the_point():
    # linnerud at z = 2 (6 held-out rows): one row, its c4 beyond the training range, makes the whole loss.
    held_out = {
        "iwae_nll": 37.58, "ppca_nll": 32.22, "ppca_gap_se": 8.6, "n_points": 6, "baselines_fitted_on": "train_x",
        "ppca_gap_top_point": 3, "ppca_gap_top": 51.9, "ppca_gap_without_top": -3.95, "ppca_gap_without_top_se": 1.45,
        "ppca_gap_top_row": 13, "ppca_gap_top_column": 4, "ppca_gap_top_value": 46.0, "ppca_gap_top_train_range": [31.0, 37.0],
    }  # fmt: skip
    columns = ["c0", "c1", "c2", "c3", "c4", "c5"]
    assert diagnostics.baseline_warning(held_out, columns=columns) == (
        "the model's NLL held out (37.6 nats per row) is higher than probabilistic PCA's (32.2) with the same latent "
        "size by 5.36, and one point decides it: point 3 of these 6 (from 0; row 13 of the whole data set) is 51.9 "
        "nats above PPCA's (its c4 is 46, outside the training rows' range 31 to 37); without it the model is ahead "
        "of PPCA by 3.95 ± 1.45 nats per row (paired standard error over 5 points). Beyond its training range a "
        "network's density is not to be trusted, and one such point can outweigh all the others: train on rows that "
        "cover it, or check that point; compare both in the report."
    )
    # No names (or a .npy's, which are the indices): the column's index. No file row: none said.
    plain = {k: v for k, v in held_out.items() if k != "ppca_gap_top_row"}
    assert "point 3 of these 6 (from 0) is 51.9 nats above PPCA's (its column 4 is 46, outside" in (
        diagnostics.baseline_warning(plain, columns=[str(i) for i in range(6)])
    )
    assert "(its column 4 is 46, outside" in diagnostics.baseline_warning(plain)
    inside = {k: v for k, v in plain.items() if k not in ("ppca_gap_top_column", "ppca_gap_top_value")}
    del inside["ppca_gap_top_train_range"]
    assert diagnostics.baseline_warning(inside).endswith(
        "one point decides it: point 3 of these 6 (from 0) is 51.9 nats above PPCA's (inside the training rows' range "
        "in every data column); without it the model is ahead of PPCA by 3.95 ± 1.45 nats per row (paired standard "
        "error over 5 points). A mean that one point decides is no verdict either way; compare both in the report."
    )
    # Baselines fitted on the points themselves: there are no training rows to place the point against.
    in_sample = diagnostics.baseline_warning({**inside, "baselines_fitted_on": "x (in-sample: flatters the baselines)"})
    assert "is 51.9 nats above PPCA's; without it the model is ahead" in in_sample
    # The other 5 level with PPCA (top = 6 x 5.36 = 32.16): the point still decides it, and "by 0" is not said.
    level = diagnostics.baseline_warning({**inside, "ppca_gap_top": 32.16, "ppca_gap_without_top": 0.0})
    assert "without it the model is level with PPCA. A mean that one point decides" in level
    # Two points each make the whole gap: no one point decides it, and the verdict stands alone.
    several = diagnostics.baseline_warning({**held_out, "ppca_gap_whole_points": 2})
    assert "one point" not in several.lower() and "cannot tell the two apart" in several
    assert "one point decides it" in diagnostics.baseline_warning({**held_out, "ppca_gap_whole_points": 1})
    # A value that 6 digits would print as its bound gets the digits that tell them apart.
    close = {**held_out, "ppca_gap_top_value": 1234567.0, "ppca_gap_top_train_range": [0.0, 1234566.0]}
    assert "(its c4 is 1234567, outside the training rows' range 0 to 1234566)" in diagnostics.baseline_warning(
        close, columns=columns
    )


def test_a_point_that_makes_half_a_gap_is_named_after_the_verdict():
    # Half the gap or more, but the model is behind on the other points too: the verdict stays, and the point follows.
    edge = {"iwae_nll": 4.0, "ppca_nll": 2.0, "ppca_gap_se": 0.5, "n_points": 4, "ppca_gap_top_point": 0}
    behind = {**edge, "ppca_gap_top": 4.0, "ppca_gap_without_top": 1 + 1 / 3, "ppca_gap_without_top_se": 0.2}
    assert diagnostics.baseline_warning(behind) == (
        "the model's NLL held out (4 nats per row) is higher than probabilistic PCA's (2) with the same latent size "
        "by 2 ± 0.5 (paired standard error over 4 points): on this data a linear model is the better density model. "
        "Likely causes: too few epochs, too few rows for a nonlinear model, or a latent size the data do not need; "
        "compare both in the report. One point makes 50% of the gap: point 0 of these 4 (from 0) is 4 nats above "
        "PPCA's; without it the model is still behind PPCA by 1.33 ± 0.2 nats per row (paired standard error over 3 "
        "points)."
    )
    within = diagnostics.baseline_warning({**behind, "ppca_gap_se": 1.0})  # 2 standard errors of 3.18 needed
    assert "cannot tell the two apart" in within and within.endswith("(paired standard error over 3 points).")
    # Less than half: the verdict alone.
    below = diagnostics.baseline_warning({**edge, "ppca_gap_top": 3.99, "ppca_gap_without_top": 1.34})
    assert "one point" not in below.lower() and below.endswith("compare both in the report.")
    two = {**edge, "n_points": 2, "ppca_gap_top": 4.0, "ppca_gap_without_top": 0.0}
    assert "one point" not in diagnostics.baseline_warning(two).lower()  # of 2 points one always makes half


def test_a_held_out_row_beyond_the_training_range_is_named_in_the_run(tmp_path, capsys):
    rng = np.random.default_rng(0)
    centre, line = np.array([5.0, 10.0, 20.0]), np.array([1.0, 2.0, -1.0])
    train = centre + rng.normal(size=(40, 1)) * line + 0.1 * rng.normal(size=(40, 3))
    test = centre + rng.normal(size=(6, 1)) * line + 0.1 * rng.normal(size=(6, 3))
    test[2] = centre + 25 * line  # far out along the data's line: 25 standard deviations
    names = ["flow", "pressure", "temperature"]
    for name, rows in [("train.csv", train), ("test.csv", test)]:
        np.savetxt(tmp_path / name, rows, delimiter=",", header=",".join(names), comments="")
    data = {"path": str(tmp_path / "train.csv"), "test_path": str(tmp_path / "test.csv")}
    model = {"z_dim": 1, "df": "none"}  # the Gaussian decoder; Student's t (a file's default) pays far less there
    config = {"data": data, "model": model, "training": {"epochs": 100, "seed": 0}, "evaluation": SMALL_EVAL}
    run = vk.runs.train(config, tmp_path / "run")
    m = run.metrics
    # The network is hundreds of nats behind PPCA on that row, where a linear model follows the line out.
    assert m["ppca_gap_top_point"] == 2 and m["ppca_gap_top"] > 100 and m["ppca_gap_top"] > 3 * (m["iwae_nll"] - m["ppca_nll"])
    assert "ppca_gap_top_row" not in m  # a --test-data file: point 2 is its row 2
    column = m["ppca_gap_top_column"]  # the three lie about equally far outside, in widths of their ranges
    assert m["ppca_gap_top_value"] == pytest.approx(test[2, column], rel=1e-6)
    assert m["ppca_gap_top_train_range"] == pytest.approx([train[:, column].min(), train[:, column].max()], rel=1e-6)
    place = f"point 2 of these 6 (from 0) is {m['ppca_gap_top']:.3g} nats above PPCA's (its {names[column]} is "
    place += f"{m['ppca_gap_top_value']:.6g}, outside the training rows' range"
    said = [w for w in m["warnings"] if place in w]
    assert len(said) == 1
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["warnings"] == m["warnings"]
    # vaekit evaluate --data names it too, from the given file's columns.
    capsys.readouterr()
    assert cli.main(["evaluate", str(tmp_path / "run"), "--data", str(tmp_path / "test.csv")]) == 0
    printed = capsys.readouterr()
    assert place in printed.out + printed.err


def test_a_split_knows_the_file_rows_it_holds(tmp_path):
    from vaekit.runfolder import split_rows

    path = tmp_path / "t.csv"
    np.savetxt(path, np.arange(40.0).reshape(20, 2), delimiter=",", header="a,b", comments="")
    config = vk.runs.validate_config({"data": {"path": str(path), "test_fraction": 0.3, "split_seed": 3}})
    train_rows, held_rows = split_rows(20, 0.3, 3)
    held, train = vk.runs.load_data(config, test=True), vk.runs.load_data(config)
    assert held.rows.tolist() == held_rows.tolist() and train.rows.tolist() == train_rows.tolist()
    assert held.x[:, 0].tolist() == (2.0 * held_rows).tolist()  # row r of the file holds 2r, 2r + 1
    whole = vk.runs.load_data(vk.runs.validate_config({"data": {"path": str(path)}}))
    assert whole.rows is None
    # A run's metrics name the top point's row in the file, for the held-out and the training column.
    config = vk.runs.validate_config({**config, "model": {"z_dim": 1}, "evaluation": SMALL_EVAL})
    model = vk.runs.build_model(config, train)
    m = vk.runs.run_metrics(model, train, held, config)
    assert m["ppca_gap_top_row"] == held_rows[m["ppca_gap_top_point"]]
    assert m["train"]["ppca_gap_top_row"] == train_rows[m["train"]["ppca_gap_top_point"]]


def test_t_quantiles_are_students():
    stats = pytest.importorskip("scipy.stats")
    for df in range(1, 400):
        assert diagnostics.t_quantile_975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=1e-3), df
