"""Run folders: config schema and TOML round trip, data loading, staged folders, JSON/PNG writers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

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
            "[training] objective must be one of ['elbo', 'iwae']. Got 'vae' instead.",
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
