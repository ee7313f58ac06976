"""Run folders: config schema and TOML round trip, data loading, staged folders, JSON/PNG writers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import vaekit as vk
from vaekit import runs
from vaekit.errors import FileFormatError, InputError, InputTypeError


def test_defaults_are_the_lecture_recipe():
    c = runs.default_config()
    assert c["data"] | {"options": {}} == {
        "name": "ring",
        "path": "",
        "n": 2000,
        "seed": 0,
        "options": {},
        "columns": [],
        "condition": "",
        "condition_type": "onehot",
        "exclude": [],
        "label": "",
        "log_columns": [],
        "log_offset": 0.0,
        "header": "auto",
        "stream": "auto",
        "test_path": "",
        "test_fraction": 0.0,
        "split_seed": 0,
    }
    assert (c["model"]["z_dim"], c["model"]["hidden"], c["model"]["variance"]) == (2, [128, 128], 0.1)
    t = c["training"]
    assert (t["epochs"], t["batch_size"], t["lr"], t["seed"], t["beta"]) == (400, 256, 1e-3, 0, 1.0)


def test_validate_fills_defaults_and_converts_ints_to_floats():
    c = runs.validate_config({"training": {"beta": 4, "epochs": 7}, "model": {"variance": 1}})
    assert c["training"]["beta"] == 4.0 and isinstance(c["training"]["beta"], float)
    assert c["model"]["variance"] == 1.0 and isinstance(c["model"]["variance"], float)
    assert c["training"]["epochs"] == 7 and c["training"]["lr"] == 1e-3


@pytest.mark.parametrize(
    ("config", "error", "message"),
    [
        ({"trainig": {}}, InputError, "unknown section(s) ['trainig']"),
        ({"training": {"epoch": 3}}, InputError, "[training] has unknown key(s) ['epoch']"),
        ({"training": {"epochs": "ten"}}, InputTypeError, "[training] epochs must be an integer. Got 'ten' instead."),
        ({"training": {"epochs": 2.5}}, InputTypeError, "[training] epochs must be an integer. Got 2.5 instead."),
        (
            {"training": {"objective": "vae"}},
            InputError,
            "[training] objective must be one of ['elbo', 'iwae', 'vq']. Got 'vae' instead.",
        ),
        ({"model": {"hidden": [128, "x"]}}, InputTypeError, "[model] hidden must be a list of integers. Got [128, 'x'] instead."),
        ({"model": {"standardize": 1}}, InputTypeError, "[model] standardize must be true or false. Got 1 instead."),
        ({"training": {"epochs": 0}}, InputError, "epochs must be an integer >= 1. Got 0 instead."),
        ({"training": {"lr": -1.0}}, InputError, "lr must be a finite number > 0. Got -1.0 instead."),
        ({"data": {"name": "rings"}}, InputError, "[data] name must be one of"),
        ({"data": {"name": "ring", "path": "a.csv"}}, InputError, "exactly one of name"),
        ({"data": {"condition": "colour"}}, InputError, "condition for a built-in dataset must be one of ['label', 'radius']"),
        ({"training": {"patience": 5}}, InputError, "patience (early stopping) needs val_fraction > 0"),
        ({"model": {"variance": "big"}}, InputTypeError, "[model] variance must be a number or one of ['learned', 'per_point']"),
        ({"training": 3}, InputTypeError, "[training] must be a table"),
        ({"data": {"test_fraction": 1.0}}, InputError, "[data] test_fraction must be in [0, 1) (0: off). Got 1.0 instead."),
        ({"data": {"test_fraction": -0.1}}, InputError, "[data] test_fraction must be in [0, 1) (0: off). Got -0.1 instead."),
        ({"data": {"test_fraction": "a"}}, InputTypeError, "[data] test_fraction must be a number. Got 'a' instead."),
        (
            {"data": {"test_fraction": 0.2, "test_path": "t.csv"}},
            InputError,
            "[data] needs at most one of test_path (--test-data) and test_fraction (--test-fraction). "
            "Got test_path='t.csv' and test_fraction=0.2 instead.",
        ),
    ],
)
def test_validate_names_the_bad_key(config, error, message):
    with pytest.raises(error) as info:
        runs.validate_config(config, source="cfg.toml")
    assert message in str(info.value)
    assert str(info.value).startswith("cfg.toml")


def test_a_path_replaces_the_default_dataset():
    c = runs.validate_config({"data": {"path": "/x/points.csv"}})
    assert (c["data"]["name"], c["data"]["path"]) == ("", "/x/points.csv")


def test_config_toml_round_trip(tmp_path):
    c = runs.validate_config({"data": {"options": {"modes": 6, "std": 0.5}}, "training": {"beta": 2.5}})
    runs.write_config(tmp_path / "config.toml", c)
    text = (tmp_path / "config.toml").read_text()
    assert text.startswith("# vaekit run configuration")
    assert runs.read_config(tmp_path) == c  # a folder means its config.toml


def test_bad_toml_is_a_file_format_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[training\nepochs = 3\n")
    with pytest.raises(FileFormatError, match=r"bad.toml is not valid TOML"):
        runs.read_config(path)
    with pytest.raises(FileFormatError, match=r"does not exist"):
        runs.read_config(tmp_path / "missing.toml")


def test_builtin_data_with_conditions_matches_the_library():
    base = {"data": {"n": 300, "seed": 3, "condition": "label", "condition_type": "onehot"}}
    d = runs.load_data(runs.validate_config(base))
    x, y = vk.data.ring(300, seed=3)
    np.testing.assert_array_equal(d.x, x)
    np.testing.assert_array_equal(d.condition, y)
    np.testing.assert_array_equal(d.labels, y)
    assert d.columns == ["x0", "x1"]
    radius = runs.load_data(runs.validate_config({"data": {"n": 300, "condition": "radius", "condition_type": "continuous"}}))
    np.testing.assert_array_equal(radius.condition, vk.data.radius(vk.data.ring(300, seed=0)[0]))
    test = runs.load_data(runs.validate_config(base), test=True)
    np.testing.assert_array_equal(test.x, vk.data.ring(300, seed=4)[0])  # held-out draw: seed + 1
    assert "test sample" in test.description


def test_dataset_options_are_filled_and_checked():
    c = runs.validate_config({"data": {"options": {"modes": 4}}})
    assert runs.dataset_options(c) == {"modes": 4, "radius": 3.0, "std": 0.25}
    c["data"]["options"] = {"arms": 3}
    with pytest.raises(
        InputError, match=r"options.arms is not an option of dataset 'ring'; its options are \['modes', 'radius', 'std'\]"
    ):
        runs.load_data(c)


def test_a_real_valued_label_cannot_be_onehot():
    c = runs.validate_config({"data": {"name": "swiss_roll", "n": 50, "condition": "label"}})
    with pytest.raises(InputError, match="use --condition label:continuous"):
        runs.load_data(c)


def test_csv_with_text_labels(tmp_path):
    path = tmp_path / "points.csv"
    path.write_text("a,b,group\n1,2,red\n3,4,blue\n5,6,red\n")
    c = runs.validate_config({"data": {"path": str(path), "condition": "group"}})
    d = runs.load_data(c)
    np.testing.assert_array_equal(d.x, [[1, 2], [3, 4], [5, 6]])
    assert d.label_names == ["blue", "red"]
    np.testing.assert_array_equal(d.condition, [1, 0, 1])
    model = runs.build_model(c, d)
    assert model.condition == vk.OneHot(2)


def test_build_model_and_objective_follow_the_config():
    c = runs.validate_config(
        {
            "model": {"z_dim": 3, "hidden": [16], "likelihood": "gaussian", "variance": "learned", "standardize": True},
            "training": {"objective": "iwae", "iwae_k": 7, "grad_clip": 0.0, "val_fraction": 0.25},
            "data": {"n": 40},
        }
    )
    model = runs.build_model(c, runs.load_data(c))
    assert model.config["z_dim"] == 3 and model.config["hidden"] == [16] and model.standardize
    assert model.likelihood == vk.Gaussian(variance="learned")
    kwargs = runs.fit_kwargs(c)
    assert kwargs["objective"] == vk.IWAE(k=7)
    assert kwargs["grad_clip"] is None and kwargs["val"] == 0.25


def test_out_folder_rules(tmp_path):
    assert runs.check_out(tmp_path / "new", force=False) == tmp_path / "new"
    (tmp_path / "empty").mkdir()
    runs.check_out(tmp_path / "empty", force=False)  # an empty folder is fine
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep")
    with pytest.raises(InputError, match=r"already exists; use --force"):
        runs.check_out(tmp_path / "full", force=False)
    runs.check_out(tmp_path / "full", force=True)
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="is a file, not a folder"):
        runs.check_out(tmp_path / "file", force=True)


def test_commit_partial_replaces_the_old_folder_whole(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("old")
    staging = runs.start_partial(out)
    assert staging == tmp_path / "run.partial" and list(staging.iterdir()) == []
    (staging / "new.txt").write_text("new")
    runs.commit_partial(staging, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no partial, no old copy left
    assert [p.name for p in out.iterdir()] == ["new.txt"]


def test_start_partial_clears_a_stale_staging_folder(tmp_path):
    stale = tmp_path / "run.partial"
    stale.mkdir()
    (stale / "junk").write_text("x")
    assert list(runs.start_partial(tmp_path / "run").iterdir()) == []


def test_json_writer_turns_nan_into_null(tmp_path):
    runs.write_json(tmp_path / "m.json", {"a": math.nan, "b": np.float32(1.5), "c": [np.inf, 2]})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": None, "b": 1.5, "c": [None, 2]}


def test_require_run_points_at_an_interrupted_run(tmp_path):
    (tmp_path / "r.partial").mkdir()
    with pytest.raises(FileFormatError, match=r"vaekit train --resume"):
        runs.require_run(tmp_path / "r")
    (tmp_path / "r").mkdir()
    with pytest.raises(FileFormatError, match="model.json is missing"):
        runs.require_run(tmp_path / "r")


def test_save_figures_writes_png(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    (path,) = runs.save_figures(tmp_path / "figures", {"line": fig})
    assert path.name == "line.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------- held-out data
def write_csv(path, x, columns) -> str:
    path.write_text(",".join(columns) + "\n" + "".join(",".join(repr(float(v)) for v in row) + "\n" for row in x))
    return str(path)


def test_test_fraction_split_is_reproducible_disjoint_and_complete(tmp_path):
    x = np.arange(200, dtype=np.float32).reshape(100, 2)  # row i holds 2i, 2i+1: rows are recognisable
    path = write_csv(tmp_path / "t.csv", x, ["a", "b"])
    config = runs.validate_config({"data": {"path": path, "test_fraction": 0.25, "split_seed": 7}})
    train, test = runs.load_data(config), runs.load_data(config, test=True)
    rows_train, rows_test = (train.x[:, 0] // 2).astype(int), (test.x[:, 0] // 2).astype(int)
    assert len(rows_test) == 25 and len(rows_train) == 75
    assert set(rows_train).isdisjoint(rows_test) and set(rows_train) | set(rows_test) == set(range(100))
    assert list(rows_train) == sorted(rows_train)  # the file's order is kept
    assert (train.held_out, test.held_out) == (False, True)
    assert test.description == f"{path} (100 rows): test part (25 rows) of the split test_fraction=0.25, split_seed=7"
    again = runs.load_data(runs.validate_config({"data": {"path": path, "test_fraction": 0.25, "split_seed": 7}}), test=True)
    np.testing.assert_array_equal(again.x, test.x)
    other = runs.load_data(runs.validate_config({"data": {"path": path, "test_fraction": 0.25, "split_seed": 8}}), test=True)
    assert not np.array_equal(other.x, test.x)
    # the split is numpy's permutation with the seed: the same on every machine
    expected = np.sort(np.random.default_rng(7).permutation(100)[:25])
    np.testing.assert_array_equal(rows_test, expected)


def test_test_fraction_splits_a_builtin_sample_too():
    config = runs.validate_config({"data": {"n": 50, "seed": 3, "test_fraction": 0.2}})
    train, test = runs.load_data(config), runs.load_data(config, test=True)
    whole = vk.data.ring(50, seed=3)[0]
    assert len(train.x) == 40 and len(test.x) == 10
    np.testing.assert_array_equal(np.sort(np.concatenate([train.x, test.x]), 0), np.sort(whole, 0))
    np.testing.assert_array_equal(np.sort(np.concatenate([train.labels, test.labels])), np.sort(vk.data.ring(50, seed=3)[1]))


def test_a_split_too_small_for_either_side_is_refused(tmp_path):
    path = write_csv(tmp_path / "t.csv", np.zeros((10, 2)), ["a", "b"])
    config = runs.validate_config({"data": {"path": path, "test_fraction": 0.1}})
    with pytest.raises(
        InputError,
        match=r"^\[data\] test_fraction=0\.1 of 10 rows must leave at least 2 rows on each side of the split\. "
        r"Got 9 training and 1 test rows instead\.$",
    ):
        runs.load_data(config)


def test_test_path_must_have_the_training_columns(tmp_path):
    train = write_csv(tmp_path / "train.csv", np.ones((5, 3)), ["a", "b", "c"])
    good = write_csv(tmp_path / "good.csv", np.zeros((4, 4)), ["c", "x", "a", "b"])  # order and extras do not matter
    config = runs.validate_config({"data": {"path": train, "columns": ["a", "b", "c"], "test_path": good}})
    test = runs.load_data(config, test=True)
    assert test.held_out and test.columns == ["a", "b", "c"] and test.x.shape == (4, 3)
    bad = write_csv(tmp_path / "bad.csv", np.zeros((4, 2)), ["a", "b"])
    config["data"]["test_path"] = bad
    with pytest.raises(InputError) as info:
        runs.load_data(config, test=True)
    assert str(info.value).startswith(f"[data] test_path (--test-data) {bad}: ")
    assert "'c'" in str(info.value)


def test_a_file_without_held_out_data_says_so(tmp_path):
    path = write_csv(tmp_path / "t.csv", np.ones((5, 2)), ["a", "b"])
    test = runs.load_data(runs.validate_config({"data": {"path": path}}), test=True)
    assert test.held_out is False and test.description == f"{path} (5 rows)"


# ---------------------------------------------------------------------------- the run pipeline in Python
# Two epochs on 300 points with cheap metrics keep each run to a few seconds.
SMALL = {
    "data": {"n": 300},
    "model": {"hidden": [16, 16]},
    "training": {"epochs": 2},
    "evaluation": {"k": 5, "n_samples": 200, "quadrature_grid": 20, "permutations": 10},
}
SAME_FILES = ("history.csv", "model.safetensors", "model.json", "config.toml")


def write_toml(path, config) -> str:
    import tomli_w

    path.write_text(tomli_w.dumps(config))
    return str(path)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The same settings trained by ``vaekit train --config`` and by ``vk.runs.train``; the calls seen."""
    from vaekit import cli

    folder = tmp_path_factory.mktemp("pipeline")
    toml = write_toml(folder / "small.toml", SMALL)
    assert cli.main(["train", "--config", toml, "--out", str(folder / "cli"), "-q"]) == 0
    calls = []
    run = vk.runs.train(
        SMALL,
        folder / "lib",
        progress=lambda epoch, epochs, record: calls.append(("epoch", epoch, epochs, record["loss"])),
        status=lambda text: calls.append(("status", text)),
    )
    return folder, run, calls


def test_train_writes_the_folder_that_vaekit_train_writes(pair):
    folder, run, _ = pair
    assert run.path == folder / "lib" and not (folder / "lib.partial").exists()
    for name in SAME_FILES:
        assert (folder / "lib" / name).read_bytes() == (folder / "cli" / name).read_bytes(), name
    expected = {"config.toml", "run.json", "model.safetensors", "model.json", "history.csv", "metrics.json", "report.html"}
    assert {p.name for p in (folder / "lib").iterdir()} == expected | {"figures"}
    assert sorted(p.name for p in (folder / "lib" / "figures").iterdir()) == sorted(
        p.name for p in (folder / "cli" / "figures").iterdir()
    )
    assert run.info["command"] == "vaekit.runs.train"
    assert runs.read_json(folder / "cli" / "run.json")["command"] == "vaekit train"


def test_train_reports_every_epoch_and_each_stage(pair):
    _, run, calls = pair
    assert calls == [
        ("status", runs.STAGE_TRAINING),
        ("epoch", 1, 2, run.history.loss[0]),
        ("epoch", 2, 2, run.history.loss[1]),
        ("status", runs.STAGE_RESULTS),
    ]


def test_train_from_a_toml_path_equals_the_dict(pair, tmp_path):
    folder, _, _ = pair
    run = vk.runs.train(write_toml(tmp_path / "small.toml", SMALL), tmp_path / "run")
    for name in SAME_FILES:
        assert (tmp_path / "run" / name).read_bytes() == (folder / "lib" / name).read_bytes(), name
    assert run.config == runs.read_config(folder / "lib")


def test_open_run_round_trips(pair):
    import torch

    folder, run, _ = pair
    opened = vk.runs.open_run(folder / "lib")
    assert opened.path == run.path
    assert opened.config == run.config
    assert opened.history == run.history and len(opened.history) == 2
    assert opened.metrics == run.metrics and opened.metrics == runs.read_json(folder / "lib" / "metrics.json")
    assert opened.info == run.info
    assert opened.model.config == run.model.config
    mine, theirs = opened.model.state_dict(), run.model.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_metrics_json_has_held_out_and_train_columns(pair):
    folder, run, _ = pair
    metrics = runs.read_json(folder / "lib" / "metrics.json")
    assert metrics["held_out"] is True and "test sample" in metrics["evaluated_on"]
    train = metrics["train"]
    assert train["held_out"] is False and train["n_points"] == 300 and "test sample" not in train["evaluated_on"]
    assert "warning" not in metrics and train.keys() >= {"iwae_nll", "ppca_nll", "pca_mse", "reconstruction_mse"}
    # the baselines are fitted on the training sample and scored on both
    from vaekit.baselines import PCA, PPCA

    x_train, x_test = vk.data.ring(300, seed=0)[0], vk.data.ring(300, seed=1)[0]
    assert metrics["ppca_nll"] == pytest.approx(PPCA(2).fit(x_train).nll(x_test), rel=1e-12)
    assert train["ppca_nll"] == pytest.approx(PPCA(2).fit(x_train).nll(x_train), rel=1e-12)
    assert metrics["pca_mse"] == pytest.approx(PCA(2).fit(x_train).mse(x_test), rel=1e-12)
    info = runs.read_json(folder / "lib" / "run.json")
    assert info["split"] == {
        "held_out": True,
        "test_data": metrics["evaluated_on"],
        "test_fraction": None,
        "split_seed": None,
        "n_train": 300,
        "n_test": 300,
    }
    page = (folder / "lib" / "report.html").read_text()
    assert "<th>metric</th><th>held-out</th><th>train</th><th>meaning</th>" in page
    assert f"<th>ppca_nll</th><td>{metrics['ppca_nll']:.6g}</td><td>{train['ppca_nll']:.6g}</td>" in page


def test_a_run_on_a_file_with_test_fraction_and_one_without(tmp_path):
    x = vk.data.ring(120, seed=0)[0]
    path = write_csv(tmp_path / "t.csv", x, ["a", "b"])
    config = {**SMALL, "data": {"path": path, "test_fraction": 0.25, "split_seed": 1}, "training": {"epochs": 1}}
    run = vk.runs.train(config, tmp_path / "split")
    assert run.metrics["n_points"] == 30 and run.metrics["train"]["n_points"] == 90
    assert run.info["split"] | {"test_data": None} == {
        "held_out": True,
        "test_data": None,
        "test_fraction": 0.25,
        "split_seed": 1,
        "n_train": 90,
        "n_test": 30,
    }
    assert runs.read_config(tmp_path / "split")["data"]["test_fraction"] == 0.25
    with pytest.warns(UserWarning, match=r"^no held-out data: these numbers are on the training data"):
        alone = vk.runs.train({**config, "data": {"path": path}}, tmp_path / "alone")
    assert alone.metrics["warning"] == runs.NO_HELD_OUT and alone.metrics["held_out"] is False
    assert "train" not in alone.metrics and alone.metrics["n_points"] == 120
    page = (tmp_path / "alone" / "report.html").read_text()
    assert f"<p class=warning><strong>Warning: {runs.NO_HELD_OUT}.</strong></p>" in page
    assert "<th>training data (no held-out data)</th>" in page


def test_open_run_of_a_folder_that_is_no_run(tmp_path):
    with pytest.raises(FileFormatError, match="does not exist"):
        vk.runs.open_run(tmp_path / "nothing")


@pytest.mark.parametrize(
    ("config", "error", "message"),
    [
        ({"training": {"epoch": 3}}, InputError, r"^config: \[training\] has unknown key\(s\) \['epoch'\]"),
        ({"model": {"likelihood": "cauchy"}}, InputError, r"^config: \[model\] likelihood must be one of"),
        ({"model": {"hidden": "wide"}}, InputTypeError, r"^config: \[model\] hidden must be a list of integers"),
        ("MISSING", FileFormatError, r"^config file .*missing\.toml does not exist\.$"),
    ],
)
def test_a_bad_config_names_the_key_and_writes_nothing(tmp_path, config, error, message):
    if config == "MISSING":
        config = tmp_path / "missing.toml"
    with pytest.raises(error, match=message):
        vk.runs.train(config, tmp_path / "run")
    assert [p.name for p in tmp_path.iterdir()] == []


def test_a_bad_key_in_a_toml_file_is_reported_against_the_file(tmp_path):
    path = write_toml(tmp_path / "c.toml", {"training": {"epoch": 3}})
    with pytest.raises(InputError, match=rf"^{path}: \[training\] has unknown key\(s\) \['epoch'\]"):
        vk.runs.train(path, tmp_path / "run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]


def test_an_existing_out_needs_force_and_nothing_is_lost(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    message = r"^run folder .*run already exists; use force=True to replace it, or choose another out\.$"
    with pytest.raises(InputError, match=message):
        vk.runs.train(SMALL, out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no run.partial either


def test_resume_needs_an_interrupted_run(tmp_path):
    with pytest.raises(InputError, match=r"^resume=True needs .*run\.partial, the folder that an interrupted run"):
        vk.runs.train(None, tmp_path / "run", resume=True)


def test_ctrl_c_is_a_run_interrupted_and_resume_finishes_bit_for_bit(pair, tmp_path, monkeypatch):
    from test_cli import interrupt_fit_at

    folder, _, _ = pair
    out = tmp_path / "cut"
    config = {**SMALL, "training": {"epochs": 2, "checkpoint_every": 1}}
    with monkeypatch.context() as patch:
        interrupt_fit_at(patch, 1)
        with pytest.raises(vk.RunInterrupted) as info:
            vk.runs.train(config, out)
    assert info.value.resumable and info.value.out == out
    assert str(info.value) == f"interrupted: resume with 'vaekit train --resume {out}'"
    staged = tmp_path / "cut.partial"
    assert not out.exists() and (staged / "checkpoint").is_dir()

    def contents() -> dict[str, bytes]:
        return {str(p.relative_to(staged)): p.read_bytes() for p in staged.rglob("*") if p.is_file()}

    before = contents()
    with pytest.raises(InputError, match="resume: the model does not match the checkpoint"):
        vk.runs.train({**config, "model": {"hidden": [8]}}, out, resume=True)
    assert contents() == before  # a refused resume keeps the interrupted run as it was
    run = vk.runs.train(None, out, resume=True)  # the interrupted run's own settings
    assert len(run.history) == 2 and not (tmp_path / "cut.partial").exists()
    for name in ("history.csv", "model.safetensors"):  # config.toml differs: checkpoint_every
        assert (out / name).read_bytes() == (folder / "cli" / name).read_bytes(), name


def test_ctrl_c_before_a_checkpoint_leaves_nothing(tmp_path, monkeypatch):
    import vaekit.trainer

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(vaekit.trainer, "fit", interrupted)
    with pytest.raises(vk.RunInterrupted, match=r"^interrupted: nothing was saved yet$") as info:
        vk.runs.train(SMALL, tmp_path / "run")
    assert not info.value.resumable
    assert list(tmp_path.iterdir()) == []


def test_sweep_writes_the_folder_that_vaekit_sweep_writes(tmp_path):
    from vaekit import cli

    toml = write_toml(tmp_path / "small.toml", SMALL)
    assert cli.main(["sweep", "--config", toml, "--set", "seed=0,1", "--out", str(tmp_path / "cli"), "-q"]) == 0
    result = vk.runs.sweep(SMALL, {"seed": [0, 1]}, tmp_path / "lib")
    assert len(result.models) == 2 and not (tmp_path / "lib.partial").exists()
    names = ["config.toml", "sweep.csv", "sweep.png", "models/00/model.safetensors", "models/01/model.safetensors"]
    for name in names:
        assert (tmp_path / "lib" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes(), name


def test_sweep_needs_the_elbo_objective(tmp_path):
    with pytest.raises(InputError, match=r"^\[training\] objective must be 'elbo' for a sweep\. Got 'iwae' instead\.$"):
        vk.runs.sweep({"training": {"objective": "iwae"}}, {"seed": [0, 1]}, tmp_path / "s")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- batches_per_epoch: batch size for few rows
@pytest.mark.parametrize(
    ("n_rows", "batch_size", "batches_per_epoch", "expected"),
    [
        (105, 256, 10, 11),  # iris's training part: 10 batches of up to 11
        (125, 256, 10, 13),  # wine's
        (398, 256, 10, 40),  # breast cancer's
        (14, 256, 10, 2),  # linnerud's: 7 batches of up to 2 (never more than 10)
        (2560, 256, 10, 256),  # 10 batches of 256 already
        (2561, 256, 10, 256),  # never above the batch size asked for
        (5, 256, 10, 1),  # fewer rows than batches: one row per batch
        (105, 8, 10, 8),
        (105, 256, 0, 256),  # off
    ],
)
def test_batch_size_for_is_the_rule(n_rows, batch_size, batches_per_epoch, expected):
    assert runs.batch_size_for(n_rows, batch_size, batches_per_epoch) == expected
    if batches_per_epoch and expected < batch_size:
        # at most batches_per_epoch batches, and the smallest size that gives no more
        assert math.ceil(n_rows / expected) <= batches_per_epoch
        assert expected == 1 or math.ceil(n_rows / (expected - 1)) > batches_per_epoch


def test_batch_size_for_refuses_bad_numbers():
    with pytest.raises(InputError) as info:
        runs.batch_size_for(0, 256, 10)
    assert str(info.value) == (
        "batch_size_for needs n_rows and batch_size >= 1 and batches_per_epoch >= 0. "
        "Got n_rows=0, batch_size=256, batches_per_epoch=10 instead."
    )


def test_a_user_file_gets_batches_per_epoch_and_the_builtins_keep_the_lecture_recipe():
    assert runs.USER_BATCHES_PER_EPOCH == 10
    user = runs.validate_config({"data": {"path": "/x/t.csv"}})["training"]
    assert (user["epochs"], user["batches_per_epoch"], user["batch_size"]) == (400, 10, 256)
    for name in ("ring", "moons", "digits", "airfoils"):
        builtin = runs.validate_config({"data": {"name": name}})["training"]
        assert (builtin["batch_size"], builtin["batches_per_epoch"]) == (256, 0), name
    assert runs.default_config()["training"]["batches_per_epoch"] == 0


@pytest.mark.parametrize(
    ("training", "batch_size", "batches_per_epoch"),
    [
        ({"batch_size": 64}, 64, 0),
        ({"batches_per_epoch": 4}, 256, 4),
        ({"batches_per_epoch": 0}, 256, 0),
        ({"batch_size": 32, "batches_per_epoch": 3}, 32, 3),
        ({"epochs": 50}, 256, 10),  # epochs do not touch the batch rule
    ],
)
def test_a_user_value_wins_over_batches_per_epoch(training, batch_size, batches_per_epoch):
    t = runs.validate_config({"data": {"path": "/x/t.csv"}, "training": training})["training"]
    assert (t["batch_size"], t["batches_per_epoch"]) == (batch_size, batches_per_epoch)
    config = {"data": {"path": "/x/t.csv"}, "training": dict(t)}
    assert runs.validate_config(config)["training"] == t  # config.toml read back: the same settings


def test_apply_batches_per_epoch_counts_the_rows_after_the_validation_split():
    config = runs.validate_config({"data": {"path": "/x/t.csv"}, "training": {"val_fraction": 0.2}})
    note = runs.apply_batches_per_epoch(config, 150)  # 150 - round(150 * 0.2) = 120 rows: 10 batches of 12
    assert config["training"]["batch_size"] == 12
    assert note == (
        "batch size 12 instead of 256: 120 training rows make 10 batches per epoch (batches_per_epoch = 10), "
        "so 400 epochs are 4000 optimiser steps (set --batch-size or --batches-per-epoch to choose)"
    )
    assert runs.apply_batches_per_epoch(config, 150) == ""  # small enough already: nothing changes
    assert config["training"]["batch_size"] == 12
    many = runs.validate_config({"data": {"path": "/x/t.csv"}})  # val_fraction "auto": 640 of 3200 rows for validation
    assert runs.apply_batches_per_epoch(many, 3200) == "" and many["training"]["batch_size"] == 256
    fewer = runs.validate_config({"data": {"path": "/x/t.csv"}})  # 47 rows: 9 for validation would be too few
    runs.apply_batches_per_epoch(fewer, 47)
    assert fewer["training"]["batch_size"] == 5  # ceil(47 / 10): every row trains


@pytest.mark.parametrize("n_rows, fraction, n_val", [(25, 0.3, 8), (15, 0.5, 8), (10, 0.01, 1), (150, 0.2, 30)])
def test_the_batch_rule_counts_the_validation_rows_that_fit_holds_out(n_rows, fraction, n_val):
    # round() halves to even (25 * 0.3 = 7.5 -> 8) and at least one row is held out: the batch
    # rule must plan on the rows that fit(val=fraction) really trains on.
    from vaekit.trainer import _drop_rows, validation_rows

    x = torch.zeros(n_rows, 2)
    assert validation_rows(n_rows, fraction) == n_val
    assert _drop_rows(x, None, fraction, seed=3)[0].shape[0] == n_rows - n_val
    config = runs.validate_config({"data": {"path": "/x/t.csv"}, "training": {"val_fraction": fraction, "batches_per_epoch": 10}})
    runs.apply_batches_per_epoch(config, n_rows)
    assert config["training"]["batch_size"] == math.ceil((n_rows - n_val) / 10)


def test_train_records_the_batch_size_that_batches_per_epoch_chose(tmp_path):
    x = vk.data.ring(40, seed=0)[0]
    path = write_csv(tmp_path / "t.csv", x, ["a", "b"])
    config = {**SMALL, "data": {"path": path, "test_fraction": 0.25}, "training": {"epochs": 2}}
    run = vk.runs.train(config, tmp_path / "r")  # 30 training rows: 10 batches of 3
    assert len(run.history) == 2
    saved = runs.read_config(tmp_path / "r")["training"]
    assert (saved["batch_size"], saved["batches_per_epoch"], saved["epochs"]) == (3, 10, 2)
    assert (saved["val_fraction"], saved["patience"]) == (0.0, 0)  # "auto": 6 rows are too few to validate on
    assert run.info["chosen"] == {
        "val_fraction": "no validation split and no early stopping: 20% of 30 training rows would be 6, fewer than 10 "
        "(set --val-fraction and --patience to choose)",
        "batch_size": "batch size 3 instead of 256: 30 training rows make 10 batches per epoch (batches_per_epoch = 10), "
        "so 2 epochs are 20 optimiser steps (set --batch-size or --batches-per-epoch to choose)",
    }
    again = vk.runs.train(tmp_path / "r" / "config.toml", tmp_path / "again")  # config.toml redoes the run
    assert again.info["chosen"] == {}
    np.testing.assert_array_equal(again.history.loss, run.history.loss)  # the same batches, bit for bit


def test_a_file_with_enough_rows_trains_with_a_validation_split_and_early_stopping(tmp_path):
    # 50 training rows: 10 validate. Without early stopping star98 overfitted (held out 199.5 against 98.6 per training row).
    x = vk.data.ring(50, seed=0)[0]
    path = write_csv(tmp_path / "t.csv", x, ["a", "b"])
    run = vk.runs.train({**SMALL, "data": {"path": path}, "training": {"epochs": 3}}, tmp_path / "r")
    saved = runs.read_config(tmp_path / "r")["training"]
    assert (saved["val_fraction"], saved["patience"], saved["batch_size"]) == (0.2, 40, 4)  # 40 rows train: batches of 4
    assert run.info["chosen"]["val_fraction"] == (
        "early stopping: 10 of 50 training rows held out for validation; training stops after 40 epochs without a "
        "better validation loss and keeps the best epoch (set --val-fraction 0 to train on every row)"
    )
    assert len(run.history.val_loss) == 3
    stopped = vk.runs.train(
        {**SMALL, "data": {"path": path}, "training": {"epochs": 400, "lr": 0.5}}, tmp_path / "s"
    )  # a huge lr: the validation loss stops improving early
    best = int(np.argmin(stopped.history.val_loss))
    assert len(stopped.history) == best + 1 + 40 < 400
    # A given val_fraction is the user's choice: no "auto". A given patience is kept where the rows allow a split.
    kept = runs.validate_config({"data": {"path": path}, "training": {"val_fraction": 0.0}})["training"]
    assert (kept["val_fraction"], kept["patience"]) == (0.0, 0)
    for rows, expected in ((100, (0.2, 10)), (30, (0.0, 0))):
        patient = runs.validate_config({"data": {"path": path}, "training": {"patience": 10}})
        runs.apply_auto_validation(patient, rows, streamed=False)
        assert (patient["training"]["val_fraction"], patient["training"]["patience"]) == expected
    with pytest.raises(vk.InputError, match=r"val_fraction = 'auto' is decided by the training rows: call apply_auto_validation"):
        runs.fit_kwargs(runs.validate_config({"data": {"path": path}}))
    config = runs.validate_config({"data": {"path": path}})
    assert runs.apply_auto_validation(config, 5000, streamed=True) == (
        "no validation split and no early stopping: the file is streamed from disk (set --val-fraction and --patience to choose)"
    )
    assert config["training"]["val_fraction"] == 0.0


def test_evaluate_on_is_vaekit_evaluate_data_and_adds_a_report_column(pair, tmp_path, capsys):
    import shutil

    from vaekit import cli

    folder, run, _ = pair
    run = vk.runs.open_run(shutil.copytree(run.path, tmp_path / "copy"))  # the shared run stays as it was
    x = vk.data.ring(30, seed=5)[0]
    new = tmp_path / "new.csv"
    new.write_text("x0,x1\n" + "".join(f"{a!r},{b!r}\n" for a, b in x.tolist()))
    args = ["evaluate", str(folder / "cli"), "--data", str(new), "--seed", "2", "--json", "-o", str(tmp_path / "m.json")]
    assert cli.main(args) == 0
    capsys.readouterr()
    before = json.loads((run.path / "metrics.json").read_text())
    metrics = vk.runs.evaluate_on(run.path, new, seed=2, add_to_report="new rows")
    untimed = lambda values: {k: v for k, v in values.items() if not k.endswith("_seconds")}  # noqa: E731
    assert untimed(runs._as_read(metrics)) == untimed(runs.read_json(tmp_path / "m.json"))  # the same numbers
    assert metrics["n_points"] == 30 and metrics["held_out"] is None and isinstance(metrics["warnings"], list)
    after = runs.read_json(run.path / "metrics.json")
    assert after.pop("added") == {"new rows": runs._as_read(metrics)}
    assert after == before  # nothing written before is lost
    assert "<th>new rows</th>" in (run.path / "report.html").read_text()
    vk.runs.evaluate_on(run.path, new, n=None, add_to_report="new rows")  # the same label is replaced, not added
    assert list(runs.read_json(run.path / "metrics.json")["added"]) == ["new rows"]
    missing = str(tmp_path / "missing.csv")
    with pytest.raises(InputError) as err:
        vk.runs.evaluate_on(run.path, missing)
    known = sorted(vk.data.DATASETS)
    assert str(err.value) == f"data must be a built-in dataset ({known}) or an existing file. Got {missing!r} instead."
    bad = [
        ({"data": 5}, "data must be a built-in dataset's name or a file path. Got 5 instead."),
        ({"n": 0}, "n must be an integer >= 1. Got 0 instead."),
        ({"seed": "x"}, "seed must be an integer >= 0. Got 'x' instead."),
        ({"add_to_report": ""}, "add_to_report must be a non-empty label (str). Got '' instead."),
    ]
    for change, message in bad:
        with pytest.raises((InputError, InputTypeError)) as err:
            vk.runs.evaluate_on(run.path, **({"data": new} | change))
        assert str(err.value) == message


def test_fit_data_trains_an_array_as_vaekit_train_trains_its_file(tmp_path):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(60, 2))
    x = np.c_[z @ rng.normal(size=(2, 4)) * [1, 10, 100, 1000], np.exp(3 * rng.normal(size=60))].astype(np.float32)
    path = write_csv(tmp_path / "t.csv", x, list("abcde"))
    run = vk.runs.train({"data": {"path": path}, "training": {"epochs": 3}, "evaluation": SMALL["evaluation"]}, tmp_path / "run")
    fitted = vk.runs.fit_data(x, z_dim=2, columns=list("abcde"), training={"epochs": 3})
    expected, got = run.model.state_dict(), fitted.model.state_dict()
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)  # bit for bit
    assert len(fitted.history) == len(run.history) == 3
    # A file's defaults, not the lecture's: the choices made from the rows are those of the run.
    m, t = fitted.config["model"], fitted.config["training"]
    assert (m["standardize"], m["variance"], m["df"]) == (True, "learned", "learned")
    assert fitted.config["data"]["log_columns"] == run.config["data"]["log_columns"] == ["e"]
    assert (t["batch_size"], t["val_fraction"], t["patience"]) == (run.config["training"]["batch_size"], 0.2, 40)
    lecture = vk.VAE(5, 2)
    assert lecture.likelihood.variance == 0.1  # vk.VAE keeps the lecture's recipe


def test_fit_data_keeps_curves_and_names_its_columns():
    curves = np.random.default_rng(1).normal(size=(20, 4, 2)).astype(np.float32)
    fitted = vk.runs.fit_data(curves, z_dim=2, training={"epochs": 1})
    assert fitted.model.x_shape == (4, 2) and fitted.model.sample(3, seed=0).shape == (3, 4, 2)
    assert fitted.config["data"]["path"] == vk.runs.ARRAY_PATH and fitted.config["data"]["columns"] == list("01234567")
    table = curves.reshape(20, 8)
    bad = [
        ({"columns": ["a", "b"]}, "columns must name the 8 columns of x. Got 2 names instead."),
        ({"columns": list("abcdefga")}, "columns must be distinct names. Got ['a'] more than once instead."),
        ({"columns": "abcdefgh"}, "columns must be a list of column names (str). Got 'abcdefgh' instead."),
        ({"model": [1]}, "model must be a dict of [model] settings. Got [1] instead."),
        (
            {"model": {"z_dim": 1}, "training": {"seed": 5}},
            "model and training must leave out z_dim, seed and checkpoint_every (z_dim and seed are fit_data's own "
            "arguments; it writes no checkpoints). Got ['z_dim', 'seed'] instead.",
        ),
    ]
    for kwargs, message in bad:
        with pytest.raises((InputError, InputTypeError)) as err:
            vk.runs.fit_data(table, **kwargs)
        assert str(err.value) == message
