"""The ``vaekit`` command line: every command with ``--epochs 1``, run folders, exit codes."""

from __future__ import annotations

import csv
import functools
import html
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import vaekit as vk
from vaekit import cli, model_settings, runs

SRC = Path(__file__).resolve().parents[1] / "src"
README = Path(__file__).resolve().parents[1] / "README.md"
# Small metric settings keep each run to a second or two; the defaults are tested by the newcomer path.
EVAL = ["--eval-k", "5", "--eval-n-samples", "200", "--eval-quadrature-grid", "20", "--eval-permutations", "10"]
FAST = ["--n", "300", "--epochs", "1", "--hidden", "16,16", *EVAL, "-q"]


def vaekit(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``python -m vaekit`` in a fresh process (stdout/stderr not a TTY)."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run(
        [sys.executable, "-m", "vaekit", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], np.array(rows[1:], dtype=np.float64)


@pytest.fixture(scope="module")
def ring_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "ring"
    assert cli.main(["train", "--data", "ring", *FAST, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def cvae_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "cvae"
    assert cli.main(["train", "--data", "ring", "--condition", "label:onehot", *FAST, "--out", str(out)]) == 0
    return out


# ---------------------------------------------------------------------------- train / demo
def test_train_writes_a_complete_run_folder(ring_run):
    names = sorted(p.name for p in ring_run.iterdir())
    assert names == sorted(
        ["config.toml", "run.json", "model.safetensors", "model.json", "history.csv", "metrics.json", "figures", "report.html"]
    )
    assert not runs.partial_path(ring_run).exists()
    assert sorted(p.name for p in (ring_run / "figures").iterdir()) != []
    config = runs.read_config(ring_run)
    assert config["data"] | {} == config["data"] and config["data"]["n"] == 300
    assert config["data"]["options"] == {"modes": 8, "radius": 3.0, "std": 0.25}  # every setting is written out
    assert config["model"]["hidden"] == [16, 16] and config["training"]["epochs"] == 1
    history = vk.History.from_csv(ring_run / "history.csv")
    assert len(history) == 1 and set(history.columns) >= {"loss", "kl", "kl_per_dim", "diversity"}
    metrics = json.loads((ring_run / "metrics.json").read_text())
    assert metrics["evaluated_on"].startswith("ring(") and "test sample" in metrics["evaluated_on"]
    model = vk.load(ring_run)
    assert model.config["hidden"] == [16, 16]


def test_demo_with_one_epoch(tmp_path, capsys):
    code, out, err = run_main(capsys, "demo", "--epochs", "1", "--n", "200", "--out", str(tmp_path / "demo"))
    assert code == 0, err
    assert f"wrote {tmp_path / 'demo'}/" in out and "report.html" in out
    config = runs.read_config(tmp_path / "demo")
    expected = runs.default_config()
    expected["training"]["epochs"], expected["data"]["n"] = 1, 200
    expected["data"]["options"] = {"modes": 8, "radius": 3.0, "std": 0.25}
    assert config == expected  # the lecture recipe, apart from the two flags
    assert (tmp_path / "demo" / "report.html").is_file()


@pytest.mark.parametrize("name", [n for n in model_settings.member_names() if n != "vae"])
def test_demo_shows_each_family_member(name, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(capsys, "demo", "--model", name, "--epochs", "1", "--n", "200")
    assert code == 0, err
    folder = tmp_path / "runs" / f"demo-{name}"
    config = runs.read_config(folder)
    assert model_settings.member_settings(name).items() <= config["model"].items()
    own = getattr(model_settings.model_kinds().get(name), "default_objective", "elbo")
    expected = runs.default_config()["training"] | {"epochs": 1, "objective": own}
    assert config["training"] == expected  # the lecture's recipe otherwise
    assert (folder / "report.html").is_file()


def test_demo_refuses_an_unknown_member(capsys):
    code, _, err = run_main(capsys, "demo", "--model", "gan")
    assert code == 2 and "argument --model: invalid choice: 'gan' (choose from" in err


def test_existing_run_is_refused_without_force(ring_run, capsys):
    before = (ring_run / "model.safetensors").read_bytes()
    code, _, err = run_main(capsys, "train", "--data", "ring", *FAST, "--out", str(ring_run))
    assert code == 2
    assert err == f"error: run folder {ring_run} already exists; use --force to replace it, or choose another --out.\n"
    assert (ring_run / "model.safetensors").read_bytes() == before


def test_force_replaces_the_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "--data", "moons", *FAST, "--out", str(out)]) == 0
    (out / "stray.txt").write_text("from before")
    assert cli.main(["train", "--data", "moons", *FAST, "--seed", "1", "--out", str(out), "--force"]) == 0
    assert not (out / "stray.txt").exists()
    assert runs.read_config(out)["training"]["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_config_rerun_is_bit_for_bit(tmp_path, capsys):
    first, second = tmp_path / "a", tmp_path / "b"
    args = [
        "--data",
        "ring",
        "--n",
        "400",
        "--epochs",
        "3",
        "--hidden",
        "32,32",
        "--beta",
        "2",
        "--warmup-epochs",
        "2",
        *EVAL,
        "-q",
    ]
    assert cli.main(["train", *args, "--out", str(first)]) == 0
    assert cli.main(["train", "--config", str(first / "config.toml"), "--out", str(second), "-q"]) == 0
    for name in ("history.csv", "model.safetensors", "model.json", "config.toml"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_flags_override_the_config_file(tmp_path, capsys):
    (tmp_path / "c.toml").write_text('[data]\nname = "moons"\nn = 100\n[training]\nepochs = 1\nbeta = 3\n[model]\nhidden = [8]\n')
    assert cli.main(["train", "--config", str(tmp_path / "c.toml"), "--beta", "0.5", "--out", str(tmp_path / "r"), "-q"]) == 0
    config = runs.read_config(tmp_path / "r")
    assert (config["data"]["name"], config["training"]["beta"], config["model"]["hidden"]) == ("moons", 0.5, [8])


def test_train_on_a_csv_with_a_condition_column(tmp_path, capsys):
    x, y = vk.data.ring(200, seed=0)
    path = tmp_path / "points.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["a", "b", "mode"])
        writer.writerows([[float(p[0]), float(p[1]), f"m{label}"] for p, label in zip(x, y)])
    out = tmp_path / "run"
    code, _, err = run_main(
        capsys, "train", "--data", str(path), "--condition", "mode:onehot", "--epochs", "1", *EVAL, "--out", str(out), "-q"
    )
    assert code == 0, err
    config = runs.read_config(out)
    assert config["data"]["path"] == str(path.resolve()) and config["data"]["columns"] == ["a", "b"]
    model = vk.load(out)
    assert model.condition == vk.OneHot(8)
    info = json.loads((out / "run.json").read_text())
    assert info["label_names"] == [f"m{i}" for i in range(8)]
    # encode reads the run's columns and maps the text labels back to the training codes
    z_path = tmp_path / "z.csv"
    assert cli.main(["encode", str(out), str(path), "-o", str(z_path), "-q"]) == 0
    _, z = read_csv(z_path)
    expected = model.encode(x, y).mean.detach().numpy()
    np.testing.assert_allclose(z, expected, rtol=1e-6, atol=1e-6)
    # a class given by name
    assert cli.main(["sample", str(out), "-n", "5", "--condition", "m3", "-o", str(tmp_path / "s.csv"), "-q"]) == 0
    _, s = read_csv(tmp_path / "s.csv")
    np.testing.assert_allclose(s, model.sample(5, 3, seed=0), rtol=1e-6, atol=1e-6)


def test_relative_data_path_in_a_config_is_relative_to_the_file(tmp_path, capsys, monkeypatch):
    (tmp_path / "cfg").mkdir()
    np.save(tmp_path / "cfg" / "x.npy", vk.data.moons(100, seed=0)[0])
    (tmp_path / "cfg" / "c.toml").write_text('[data]\npath = "x.npy"\n[training]\nepochs = 1\n[model]\nhidden = [8]\n')
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "--config", "cfg/c.toml", *EVAL, "--out", "r", "-q"]) == 0
    config = runs.read_config(tmp_path / "r")
    assert config["data"]["path"] == str(tmp_path / "cfg" / "x.npy") and config["data"]["columns"] == ["0", "1"]


def test_train_on_digits_uses_bernoulli(tmp_path, capsys):
    out = tmp_path / "digits"
    assert cli.main(["train", "--data", "digits", "--epochs", "1", "--hidden", "32", *EVAL, "--out", str(out), "-q"]) == 0
    assert vk.load(out).likelihood == vk.Bernoulli()
    assert runs.read_config(out)["model"]["likelihood"] == "bernoulli"


# ---------------------------------------------------------------------------- other commands
def test_evaluate_prints_and_writes_json(ring_run, tmp_path, capsys):
    code, out, _ = run_main(capsys, "evaluate", str(ring_run), "--json", "-o", str(tmp_path / "m.json"))
    assert code == 0
    printed = json.loads(out)
    assert printed == json.loads((tmp_path / "m.json").read_text())
    saved = json.loads((ring_run / "metrics.json").read_text())
    for column in (printed, saved, printed["train"], saved["train"]):
        column.pop("iwae_seconds")
    assert printed == saved  # the same held-out sample and training data, settings and seed
    code, out, _ = run_main(capsys, "evaluate", str(ring_run))
    assert code == 0 and re.search(r"^evaluated_on\s+ring\(", out, re.M)


def test_evaluate_on_other_data(ring_run, tmp_path, capsys):
    x, _ = vk.data.moons(50, seed=0)
    np.save(tmp_path / "m.npy", x)
    code, out, _ = run_main(capsys, "evaluate", str(ring_run), "--data", str(tmp_path / "m.npy"), "--json")
    assert code == 0
    assert json.loads(out)["evaluated_on"].endswith("m.npy (50 rows)")


@pytest.mark.parametrize("suffix", [".csv", ".npy"])
def test_sample_matches_the_library(ring_run, tmp_path, capsys, suffix):
    path = tmp_path / f"s{suffix}"
    code, out, _ = run_main(capsys, "sample", str(ring_run), "-n", "7", "--seed", "3", "-o", str(path))
    assert code == 0 and out == f"wrote 7 samples to {path}\n"
    expected = vk.load(ring_run).sample(7, seed=3)
    if suffix == ".csv":
        header, got = read_csv(path)
        assert header == ["x0", "x1"]
        np.testing.assert_array_equal(got.astype(np.float32), expected)  # float repr round-trips exactly
    else:
        np.testing.assert_array_equal(np.load(path), expected)


def test_sample_to_stdout(ring_run, capsys):
    code, out, _ = run_main(capsys, "sample", str(ring_run), "-n", "2")
    assert code == 0 and out.splitlines()[0] == "x0,x1" and len(out.splitlines()) == 3


def test_sample_conditional(cvae_run, tmp_path, capsys):
    model = vk.load(cvae_run)
    assert cli.main(["sample", str(cvae_run), "-n", "6", "--condition", "5", "-o", str(tmp_path / "s.npy"), "-q"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), model.sample(6, 5, seed=0))
    code, _, err = run_main(capsys, "sample", str(cvae_run), "-n", "6")
    assert code == 2 and err == "error: --condition is required: this model is conditional (onehot with 8 classes).\n"
    code, _, err = run_main(capsys, "sample", str(cvae_run), "-n", "6", "--condition", "9")
    assert code == 2 and err == "error: --condition must be a class label 0..7. Got 9 instead.\n"


def test_sample_pictures_of_images_and_curves(tmp_path, capsys):
    import matplotlib.image as mpimg

    digits = tmp_path / "digits"
    assert cli.main(["train", "--data", "digits", "--epochs", "1", "--hidden", "16", *EVAL, "-q", "--out", str(digits)]) == 0
    rng = np.random.default_rng(0)
    t = np.linspace(0.0, 2 * np.pi, 12, endpoint=False)
    a, b = rng.uniform(0.8, 1.2, (200, 1)), rng.uniform(0.1, 0.4, (200, 1))  # ellipses of varying thickness
    np.save(tmp_path / "curves.npy", np.stack([a * np.cos(t), b * np.sin(t)], -1).reshape(200, 24).astype(np.float32))
    curves = tmp_path / "curves"
    train = ["train", "--data", str(tmp_path / "curves.npy"), "--x-shape", "12,2", "--epochs", "1", "--hidden", "16"]
    assert cli.main([*train, *EVAL, "-q", "--out", str(curves)]) == 0
    for run in (digits, curves):
        path = tmp_path / f"{run.name}.png"
        code, out, _ = run_main(capsys, "sample", str(run), "-n", "12", "-o", str(path))
        assert code == 0 and out == f"wrote 12 samples to {path}\n"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        pixels = mpimg.imread(path)
        assert pixels.shape[0] >= 300 and pixels.shape[1] >= 300 and pixels[..., :3].std() > 0.01
    code, out, _ = run_main(capsys, "sample", str(curves), "-n", "120", "-o", str(tmp_path / "s.svg"))
    assert code == 0 and out == f"wrote 120 samples to {tmp_path / 's.svg'} (the picture shows the first 100)\n"
    svg = (tmp_path / "s.svg").read_text()
    assert svg.startswith("<?xml") and "120 samples (the first 100 of 120)" in svg  # the title says what is left out
    assert cli.main(["sample", str(digits), "-n", "4", "-o", str(tmp_path / "s.pdf"), "-q"]) == 0
    assert (tmp_path / "s.pdf").read_bytes()[:5] == b"%PDF-"


def test_report_redraws_figures_in_standardized_units(ring_run, tmp_path, capsys):
    code, _, err = run_main(capsys, "report", str(ring_run), "--units", "standardized")
    assert code == 2 and err == (
        "error: units='standardized' needs a model built with standardize=True (it has no data mean and scale). "
        "Got a model that trains in data units instead.\n"
    )
    out = tmp_path / "std"
    assert cli.main(["train", "--data", "ring", *FAST, "--standardize", "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in (out / "figures").glob("*.png")}
    code, said, _ = run_main(capsys, "report", str(out), "--units", "standardized")
    assert code == 0 and said == f"redrew {len(before)} figures in standardized units\nwrote {out / 'report.html'}\n"
    after = {p.name: p.read_bytes() for p in (out / "figures").glob("*.png")}
    assert after.keys() == before.keys() and after["reconstruction.png"] != before["reconstruction.png"]
    assert after["history.png"] == before["history.png"]  # no data-space panel: the same picture
    assert run_main(capsys, "report", str(out), "--units", "data")[0] == 0
    assert {p.name: p.read_bytes() for p in (out / "figures").glob("*.png")} == before  # back, bit for bit


def test_encode_decode_round_trip(ring_run, tmp_path, capsys):
    x, _ = vk.data.ring(20, seed=5)
    with open(tmp_path / "x.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([["x0", "x1"], *x.tolist()])
    model = vk.load(ring_run)
    assert cli.main(["encode", str(ring_run), str(tmp_path / "x.csv"), "-o", str(tmp_path / "z.csv"), "--std", "-q"]) == 0
    header, z = read_csv(tmp_path / "z.csv")
    assert header == ["z0", "z1", "z0_std", "z1_std"]
    qz = model.encode(x)
    np.testing.assert_array_equal(z[:, :2].astype(np.float32), qz.mean.detach().numpy())
    np.testing.assert_array_equal(z[:, 2:].astype(np.float32), qz.stddev.detach().numpy())
    assert cli.main(["decode", str(ring_run), str(tmp_path / "z.csv"), "-o", str(tmp_path / "r.npy"), "-q"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "r.npy"), model.reconstruct(x))


def test_decode_conditional_needs_a_condition(cvae_run, tmp_path, capsys):
    np.save(tmp_path / "z.npy", np.zeros((3, 2), dtype=np.float32))
    code, _, err = run_main(capsys, "decode", str(cvae_run), str(tmp_path / "z.npy"))
    assert code == 2 and "--condition is required" in err
    code, out, _ = run_main(capsys, "decode", str(cvae_run), str(tmp_path / "z.npy"), "--condition", "2")
    assert code == 0
    expected = vk.load(cvae_run).decode(np.zeros((3, 2)), 2).mean.detach().numpy()
    np.testing.assert_array_equal(np.array([r.split(",") for r in out.splitlines()[1:]], dtype=np.float32), expected)


def test_report_command_rewrites_the_page(ring_run, capsys):
    page = ring_run / "report.html"
    page.write_text("stale")
    code, out, _ = run_main(capsys, "report", str(ring_run))
    assert code == 0 and out == f"wrote {page}\n"
    assert page.read_text().startswith("<!DOCTYPE html>")


# ---------------------------------------------------------------------------- help, errors, exit codes
@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_command_has_help_with_examples(command, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([command, "--help"])
    assert info.value.code == 0
    assert f"vaekit {command}" in capsys.readouterr().out.split("examples:")[1]


def test_top_level_help_names_the_main_job(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "vaekit demo" in out and all(c in out for c in cli.COMMANDS)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--data", "rings"], "error: --data: unknown dataset 'rings'; built-in datasets are"),
        (["train", "--data", "nope.csv"], "error: --data: data file nope.csv does not exist."),
        (["train", "--data", "ring", "--condition", "label"], "error: --condition must be NAME:onehot or NAME:continuous"),
        (["train", "--data", "ring", "--condition", "colour:onehot"], "condition for a built-in dataset must be one of"),
        (["train", "--epochs", "ten"], "error: argument --epochs: invalid int value: 'ten'"),
        (["train", "--objective", "gan"], "error: argument --objective: invalid choice: 'gan'"),
        (["train", "--data", "ring", "--epochs", "0"], "epochs must be an integer >= 1. Got 0 instead."),
        (["train", "--option", "arms=3", "--epochs", "1"], "options.arms is not an option of dataset 'ring'"),
        (["sample", "missing-run", "-n", "3"], "error: run folder missing-run does not exist."),
        (["sample"], "error: the following arguments are required: DIR, -n (see 'vaekit sample --help')"),
        (["frobnicate"], "error: argument COMMAND: invalid choice: 'frobnicate'"),
        (["encode", "RUN", "missing.csv"], "error: file missing.csv does not exist."),
        (["sample", "RUN", "-n", "3", "-o", "s.txt"], "error: -o s.txt: the output file must end in .csv or .npy."),
        (
            ["sample", "RUN", "-n", "3", "-o", "s.png"],
            "error: -o s.png: a picture needs image data (x_shape (H, W) or (1, H, W), or a perfect-square number of "
            "columns >= 16) or curves (x_shape (P, 2)). Got a table of 2 columns instead; write the samples as numbers "
            "with -o s.csv (or .npy).\n",
        ),
    ],
)
def test_bad_usage_exits_2_with_one_line(args, message, ring_run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [str(ring_run) if a == "RUN" else a for a in args]
    code, out, err = run_main(capsys, *args, "--out", str(tmp_path / "o")) if args[0] == "train" else run_main(capsys, *args)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert message in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.partial").exists()


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("name", "content", "flags", "message"),
    [
        ("bad-column.csv", "a,b\n1,2\n3,4\n", ["--columns", "a,c"], "columns names unknown column(s) ['c']"),
        ("text.csv", "a,b\n1,2\n3,x\n", [], "column 'b' of {path} must be numeric. Got 'x' in data row 2 instead."),
        ("ragged.csv", "a,b\n1,2\n3\n", [], "{path}, line 3: expected 2 values (as in the header) but found 1."),
        ("nan.csv", "a,b\n1,2\n3,nan\n", [], "column 'b' of {path} must hold finite float32 values"),
        ("cond.csv", "a,b\n1,2\n3,4\n", ["--condition", "g:onehot"], "condition names unknown column(s) ['g']"),
    ],
)
def test_bad_data_files_exit_2(tmp_path, capsys, name, content, flags, message):
    path = write(tmp_path / name, content)
    code, _, err = run_main(capsys, "train", "--data", str(path), "--epochs", "1", *flags, "--out", str(tmp_path / "o"))
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert message.format(path=path.resolve()) in err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[training\nepochs = 1\n", "is not valid TOML"),
        ("[training]\nepoch = 1\n", "[training] has unknown key(s) ['epoch']"),
        ("[training]\nepochs = '1'\n", "[training] epochs must be an integer. Got '1' instead."),
        ("[modle]\n", "unknown section(s) ['modle']"),
        (
            '[model]\nlikelihood = "poisson"\n',
            "[model] likelihood must be one of ['gaussian', 'bernoulli']. Got 'poisson' instead.",
        ),
    ],
)
def test_bad_toml_exits_2_naming_the_key(tmp_path, capsys, text, message):
    path = write(tmp_path / "c.toml", text)
    code, _, err = run_main(capsys, "train", "--config", str(path), "--out", str(tmp_path / "o"))
    assert code == 2 and err.startswith(f"error: {path}") and message in err and err.count("\n") == 1


def test_unwritable_out_exits_2(tmp_path, capsys):
    (tmp_path / "file.txt").write_text("")
    code, _, err = run_main(capsys, "train", *FAST, "--out", str(tmp_path / "file.txt" / "run"))
    assert code == 2 and err == f"error: {tmp_path / 'file.txt' / 'run.partial'}: Not a directory\n"


def test_warnings_are_one_line(monkeypatch, capsys, tmp_path):
    import warnings

    def warn(*args, **kwargs):
        warnings.warn("the sky\nis falling", UserWarning, stacklevel=1)
        raise KeyboardInterrupt

    import vaekit.trainer

    monkeypatch.setattr(vaekit.trainer, "fit", warn)
    code, _, err = run_main(capsys, "train", *FAST, "--out", str(tmp_path / "o"))
    assert code == 130 and err == "warning: the sky is falling\ninterrupted: nothing was saved yet\n"


def test_missing_config_file(tmp_path, capsys):
    code, _, err = run_main(capsys, "train", "--config", str(tmp_path / "nope.toml"))
    assert code == 2 and err == f"error: config file {tmp_path / 'nope.toml'} does not exist.\n"


def test_bad_input_in_a_real_process_has_no_traceback(tmp_path):
    result = vaekit("train", "--data", "ring", "--condition", "radius:onehot", "--epochs", "1", "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert result.stderr == "error: condition 'radius' must be continuous (radius:continuous). Got onehot instead.\n"
    assert result.stdout == ""


def test_unexpected_failure_exits_1(monkeypatch, capsys, tmp_path):
    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(runs, "evaluate_run", boom)
    code, _, err = run_main(capsys, "train", *FAST, "--out", str(tmp_path / "o"))
    assert code == 1
    assert err == "error: unexpected RuntimeError: disk on fire (rerun with --debug for the traceback)\n"
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.partial").exists()  # no half folder left
    with pytest.raises(RuntimeError, match="disk on fire"):
        cli.main(["train", *FAST, "--out", str(tmp_path / "o"), "--debug"])


def test_training_failure_exits_1(monkeypatch, capsys, tmp_path):
    code, _, err = run_main(capsys, "train", *FAST, "--lr", "1e30", "--out", str(tmp_path / "o"))
    assert code == 1 and err.startswith("error: training failed: the loss became")
    assert not (tmp_path / "o.partial").exists()


class StopAt(vk.Callback):
    """Press Ctrl-C after epoch ``epoch`` (1-based)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, epoch, record, model):
        if epoch + 1 == self.epoch:
            raise KeyboardInterrupt


def interrupt_fit_at(monkeypatch, epoch: int) -> None:
    import vaekit.trainer

    real_fit = vaekit.trainer.fit

    @functools.wraps(real_fit)  # keeps fit's signature, which the CLI inspects
    def fit(*args, **kwargs):
        return real_fit(*args, **{**kwargs, "callbacks": [*kwargs.get("callbacks", ()), StopAt(epoch)]})

    monkeypatch.setattr(vaekit.trainer, "fit", fit)


def test_ctrl_c_exits_130_and_resume_is_bit_for_bit(monkeypatch, capsys, tmp_path):
    args = ["--data", "ring", "--n", "300", "--epochs", "6", "--hidden", "16", "--checkpoint-every", "2", *EVAL, "-q"]
    assert cli.main(["train", *args, "--out", str(tmp_path / "whole")]) == 0
    capsys.readouterr()  # the whole run's own warnings (six epochs lose to PPCA) are not the cut run's
    out = tmp_path / "cut"
    with monkeypatch.context() as patch:
        interrupt_fit_at(patch, 3)
        code, _, err = run_main(capsys, "train", *args, "--out", str(out))
    assert code == 130
    assert err == f"interrupted: resume with 'vaekit train --resume {out}'\n"
    assert not out.exists() and (tmp_path / "cut.partial" / "checkpoint").is_dir()
    code, _, err = run_main(capsys, "train", "--resume", str(out), "-q")
    assert code == 0, err
    assert not (tmp_path / "cut.partial").exists() and not (out / "checkpoint").exists()
    for name in ("history.csv", "model.safetensors", "config.toml"):
        assert (out / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name


def test_ctrl_c_after_training_keeps_the_model(monkeypatch, capsys, tmp_path):
    args = ["--data", "ring", "--n", "300", "--epochs", "3", "--hidden", "16", *EVAL, "-q"]
    assert cli.main(["train", *args, "--out", str(tmp_path / "whole")]) == 0
    capsys.readouterr()  # the whole run's own warnings are not the cut run's
    out = tmp_path / "cut"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(runs, "evaluate_run", interrupted)
        code, _, err = run_main(capsys, "train", *args, "--out", str(out))
    assert code == 130
    assert err == f"interrupted: the trained model is kept; finish with 'vaekit train --resume {out}'\n"
    code, _, err = run_main(capsys, "train", "--resume", str(out), "-q")
    assert code == 0, err
    for name in ("history.csv", "model.safetensors", "metrics.json"):
        whole, resumed = (tmp_path / "whole" / name).read_bytes(), (out / name).read_bytes()
        if name == "metrics.json":  # timings differ
            whole, resumed = (re.sub(rb'"iwae_seconds": [^,]+', b"", t) for t in (whole, resumed))
        assert whole == resumed, name


def test_ctrl_c_before_anything_was_saved(monkeypatch, capsys, tmp_path):
    import vaekit.trainer

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(vaekit.trainer, "fit", interrupted)
    code, _, err = run_main(capsys, "train", *FAST, "--out", str(tmp_path / "o"))
    assert code == 130 and err == "interrupted: nothing was saved yet\n"
    assert list(tmp_path.iterdir()) == []


def test_resume_refuses_changed_settings(tmp_path, capsys):
    code, _, err = run_main(capsys, "train", "--resume", str(tmp_path / "r"), "--beta", "2")
    assert code == 2 and "only --epochs, --lr, --grad-clip, --weight-decay and --eval-* may change. Got --beta instead." in err


def test_resume_without_an_interrupted_run(tmp_path, capsys):
    code, _, err = run_main(capsys, "train", "--resume", str(tmp_path / "r"))
    assert code == 2
    partial = tmp_path / "r.partial"
    assert err == f"error: --resume {tmp_path / 'r'}: nothing to resume: {partial} (left by an interrupted run) does not exist.\n"


def test_no_progress_output_when_not_a_terminal(tmp_path):
    result = vaekit(
        "train", "--data", "ring", "--n", "200", "--epochs", "2", "--hidden", "8", *EVAL, "--out", str(tmp_path / "o")
    )
    assert result.returncode == 0, result.stderr
    # No progress bar: stderr holds at most "warning:" lines (two epochs may well lose to PPCA).
    assert all(line.startswith("warning: ") for line in result.stderr.splitlines())
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("trained 2 epochs in ") and lines[1].startswith(f"wrote {tmp_path / 'o'}/")
    quiet = vaekit(
        "train", "--data", "ring", "--n", "200", "--epochs", "2", "--hidden", "8", *EVAL, "--out", str(tmp_path / "q"), "-q"
    )
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == result.stderr


def test_progress_bar_on_a_terminal(tmp_path):
    import pty

    leader, follower = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "120", "TERM": "xterm"}
    args = ["train", "--data", "ring", "--n", "200", "--epochs", "3", "--hidden", "8", *EVAL, "--out", str(tmp_path / "o")]
    proc = subprocess.Popen([sys.executable, "-m", "vaekit", *args], stderr=follower, stdout=subprocess.PIPE, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=120)
    os.close(leader)
    text = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0
    assert "training" in text and "3/3" in text and re.search(r"loss \d+\.\d{4}\s+KL \d+\.\d{4}", text)


# ---------------------------------------------------------------------------- the newcomer path
def readme_main_command() -> list[str]:
    """Arguments of the main-job command on the README's first screen (after set-up)."""
    text = README.read_text()
    section = text.split("## Two commands", 1)[1]
    block = re.search(r"```(?:bash|sh|console)\n(.*?)```", section, re.S).group(1)
    line = next(line for line in block.splitlines() if "vaekit demo" in line)
    return re.search(r"\bvaekit (demo[^#]*)", line).group(1).split()


def test_readme_main_job_command_is_demo():
    assert readme_main_command()[0] == "demo"


def check_demo_folder(folder: Path) -> None:
    assert (folder / "report.html").is_file()
    page = (folder / "report.html").read_text()
    assert "Latent explorer" in page and "http://" not in page and "https://" not in page
    model = vk.load(folder)
    assert model.config["hidden"] == [128, 128] and model.z_dim == 2


def test_newcomer_path_short(tmp_path):
    """The README's command, shortened to 2 epochs, from an empty folder in a fresh process."""
    result = vaekit(*readme_main_command(), "--epochs", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    check_demo_folder(tmp_path / "runs" / "demo")
    again = vaekit(*readme_main_command(), "--epochs", "2", cwd=tmp_path)
    assert again.returncode == 2 and "already exists; use --force" in again.stderr


@pytest.mark.slow
def test_newcomer_path_full(tmp_path):
    """The README's main-job command exactly as written: 400 epochs of the lecture recipe."""
    result = vaekit(*readme_main_command(), cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "runs" / "demo"
    check_demo_folder(folder)
    history = vk.History.from_csv(folder / "history.csv")
    assert len(history) == 400
    metrics = json.loads((folder / "metrics.json").read_text())
    # A trained ring VAE: the test ELBO is far below the 1-epoch value (about 9 nats) and the
    # samples spread over the ring (diversity near r^2/2 + s^2 = 4.56 for full coverage).
    assert metrics["neg_elbo"] < 4.0
    assert 3.0 < history.diversity[-1] < 5.5


# ---------------------------------------------------------------------------- sweep
def test_sweep_command_writes_table_models_and_figure(tmp_path, capsys):
    out = tmp_path / "sw"
    args = ["--data", "ring", "--n", "300", "--hidden", "16", "--epochs", "3", "-q"]
    code, _, err = run_main(capsys, "sweep", "--set", "variance=0.1,5", "--set", "seed=0,1", *args, "--out", str(out))
    assert code == 0, err
    header, table = read_csv(out / "sweep.csv")
    assert header[:2] == ["variance", "seed"] and "neg_elbo" in header
    assert table[:, :2].tolist() == [[0.1, 0], [0.1, 1], [5.0, 0], [5.0, 1]]
    assert (out / "sweep.png").is_file() and (out / "config.toml").is_file()
    # The command is the library call: the same grid through vk.sweep gives the same table.
    x, _ = vk.data.ring(n=300, seed=0)
    expected = vk.sweep(vk.VAE(2, 2, hidden=(16,)), x, over={"variance": [0.1, 5.0], "seed": [0, 1]}, epochs=3)
    assert np.allclose(table[:, 2:], [[row[k] for k in header[2:]] for row in expected.table], rtol=1e-12)
    model = vk.load(out / "models" / "03")
    assert model.likelihood == vk.Gaussian(5.0)
    assert np.array_equal(model.sample(5, seed=0), expected.models[3].sample(5, seed=0))
    again, _, err = run_main(capsys, "sweep", "--set", "seed=0", *args, "--out", str(out))
    assert again == 2 and "already exists; use --force" in err


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("colour=1,2", "error: --set must be KEY=V1,V2,... with KEY one of variance, beta, seed, lr. Got 'colour=1,2' instead."),
        ("seed=a", "error: --set seed needs comma-separated int values. Got 'a' instead."),
        ("variance", "error: --set must be KEY=V1,V2,... with KEY one of variance, beta, seed, lr. Got 'variance' instead."),
    ],
)
def test_sweep_bad_settings(tmp_path, capsys, setting, message):
    code, _, err = run_main(capsys, "sweep", "--set", setting, "--data", "ring", "--out", str(tmp_path / "s"))
    assert code == 2
    assert err.strip() == message
    assert not (tmp_path / "s").exists()


def test_train_with_a_learned_mixture_prior(tmp_path, capsys):
    out = tmp_path / "mix"
    mixture = ["--prior", "mixture", "--prior-components", "4"]
    code, _, err = run_main(capsys, "train", "--data", "ring", *FAST, *mixture, "--out", str(out))
    assert code == 0, err
    model = vk.load(out)
    assert model.prior_spec == vk.MixturePrior(4)
    assert runs.read_config(out)["model"]["prior"] == "mixture"
    metrics = json.loads((out / "metrics.json").read_text())
    assert math.isfinite(metrics["kl"]) and "kl_per_dim" not in metrics  # Monte Carlo KL: no per-dimension split
    assert (out / "report.html").is_file() and not (out / "figures" / "kl_per_dim.png").exists()
    code, _, err = run_main(capsys, "train", "--data", "ring", *FAST, "--prior", "wishart", "--out", str(tmp_path / "bad"))
    assert code == 2 and "prior" in err and "'wishart'" in err


# ---------------------------------------------------------------------------- held-out data
@pytest.fixture(scope="module")
def split_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("split")
    x = vk.data.ring(200, seed=0)[0]
    (folder / "t.csv").write_text("a,b\n" + "".join(f"{p[0]!r},{p[1]!r}\n" for p in x.tolist()))
    out = folder / "run"
    args = ["train", "--data", str(folder / "t.csv"), "--test-fraction", "0.25", "--split-seed", "3"]
    assert cli.main([*args, "--epochs", "1", "--hidden", "8", *EVAL, "-q", "--out", str(out)]) == 0
    return out


def test_train_with_test_fraction_writes_both_columns(split_run, capsys):
    metrics = json.loads((split_run / "metrics.json").read_text())
    assert (metrics["n_points"], metrics["train"]["n_points"]) == (50, 150)
    assert metrics["held_out"] is True and "ppca_nll" in metrics and "ppca_nll" in metrics["train"]
    info = json.loads((split_run / "run.json").read_text())
    assert (info["split"]["test_fraction"], info["split"]["split_seed"], info["split"]["n_test"]) == (0.25, 3, 50)
    code, out, err = run_main(capsys, "evaluate", str(split_run))
    # One epoch: the collapse and the losing-to-PPCA warnings may rightly speak; nothing else may
    # (held-out data exist).
    rightly = ("warning: posterior collapse", "warning: the model's NLL held out")
    assert code == 0 and not [line for line in err.splitlines() if not line.startswith(rightly)]
    lines = out.splitlines()
    assert re.match(r"^metric\s+held-out\s+train$", lines[0])
    row = next(line for line in lines if line.startswith("ppca_nll "))
    assert row.split()[1:] == [format(metrics["ppca_nll"], ".6g"), format(metrics["train"]["ppca_nll"], ".6g")]


def test_evaluate_add_to_report_adds_a_column_and_keeps_the_rest(split_run, tmp_path, capsys):
    before = json.loads((split_run / "metrics.json").read_text())
    figures = sorted(p.name for p in (split_run / "figures").iterdir())
    x = vk.data.ring(40, seed=9)[0]
    new = tmp_path / "new.csv"
    new.write_text("b,a\n" + "".join(f"{p[1]!r},{p[0]!r}\n" for p in x.tolist()))  # columns by name
    code, out, _ = run_main(capsys, "evaluate", str(split_run), "--data", str(new), "--add-to-report")
    assert code == 0 and "added the column 'new.csv'" in out
    after = json.loads((split_run / "metrics.json").read_text())
    added = after.pop("added")
    assert after == before  # nothing written before is lost
    assert added["new.csv"]["n_points"] == 40 and added["new.csv"]["held_out"] is None
    assert added["new.csv"]["baselines_fitted_on"] == "train_x"  # fitted on the run's training part
    page = (split_run / "report.html").read_text()
    assert "<th>metric</th><th>held-out</th><th>train</th><th>new.csv</th><th>meaning</th>" in page
    assert added["new.csv"]["warnings"]  # a few epochs of training: behind PPCA, which the report says too
    for text in added["new.csv"]["warnings"]:
        assert f"<b>Warning.</b> {html.escape('new.csv: ' + text)}</div>" in page
    assert sorted(p.name for p in (split_run / "figures").iterdir()) == figures
    code, out, _ = run_main(capsys, "evaluate", str(split_run), "--data", str(new), "--add-to-report")
    assert code == 0 and "replaced the column 'new.csv'" in out
    assert list(json.loads((split_run / "metrics.json").read_text())["added"]) == ["new.csv"]


def test_add_to_report_needs_data(split_run, capsys):
    code, _, err = run_main(capsys, "evaluate", str(split_run), "--add-to-report")
    assert code == 2
    assert err == (
        "error: --add-to-report needs --data (the run's own metrics are in the report already). Got no --data instead.\n"
    )


def test_test_data_with_other_columns_names_the_flag(tmp_path, capsys):
    (tmp_path / "train.csv").write_text("a,b\n" + "1,2\n3,4\n5,7\n" * 4)
    (tmp_path / "test.csv").write_text("a,c\n1,2\n3,4\n")
    code, _, err = run_main(
        capsys,
        "train",
        "--data",
        str(tmp_path / "train.csv"),
        "--test-data",
        str(tmp_path / "test.csv"),
        *FAST,
        "--out",
        str(tmp_path / "o"),
    )
    assert code == 2 and err.startswith(f"error: [data] test_path (--test-data) {tmp_path / 'test.csv'}: ")
    assert "'b'" in err and not (tmp_path / "o").exists()
    code, _, err = run_main(capsys, "train", "--data", str(tmp_path / "train.csv"), "--test-data", "nope.csv", *FAST)
    assert (code, err) == (2, "error: --test-data: data file nope.csv does not exist.\n")


def test_train_on_a_file_without_held_out_data_warns(tmp_path, capsys):
    (tmp_path / "train.csv").write_text("a,b\n" + "1,2\n3,4\n5,7\n" * 4)
    code, _, err = run_main(capsys, "train", "--data", str(tmp_path / "train.csv"), *FAST, "--out", str(tmp_path / "o"))
    said = err.splitlines()
    # The no-held-out warning first; after one epoch collapse and losing-to-PPCA warnings may rightly follow.
    assert code == 0 and said[0] == f"warning: {runs.NO_HELD_OUT}"
    rightly = ("warning: posterior collapse", "warning: the model's NLL on the training data")
    assert all(line.startswith(rightly) for line in said[1:])


def test_evaluate_n_draws_a_held_out_sample_of_that_size(ring_run, capsys):
    code, out, _ = run_main(capsys, "evaluate", str(ring_run), "--n", "50", "--json")
    metrics = json.loads(out)
    assert code == 0 and metrics["held_out"] is True and metrics["n_points"] == 50
    assert "n=50, seed=1)" in metrics["evaluated_on"] and "test sample" in metrics["evaluated_on"]
    assert metrics["train"]["n_points"] == 300  # the run's training data, whatever --n says


def test_train_says_which_batch_size_batches_per_epoch_chose(tmp_path, capsys):
    path = tmp_path / "few.csv"
    x = vk.data.ring(24, seed=0)[0]
    path.write_text("a,b\n" + "".join(f"{u!r},{v!r}\n" for u, v in x.tolist()))
    args = ["--data", str(path), "--epochs", "1", "--batches-per-epoch", "5", "--hidden", "16"]
    code, printed, _ = run_main(capsys, "train", *args, *EVAL, "--out", str(tmp_path / "r"))
    assert code == 0
    assert (
        "note: batch size 5 instead of 256: 24 training rows make 5 batches per epoch (batches_per_epoch = 5), "
        "so 1 epochs are 5 optimiser steps (set --batch-size or --batches-per-epoch to choose)\n"
    ) in printed
    saved = runs.read_config(tmp_path / "r")["training"]
    assert (saved["batch_size"], saved["batches_per_epoch"], saved["epochs"]) == (5, 5, 1)
