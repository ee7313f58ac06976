"""The bad-input corpus (tests/bad_inputs/) and damaged model files: each gives its exact message."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_bytes

import vaekit as vk
from vaekit.conditions import condition_from_config
from vaekit.distributions import likelihood_from_config

CORPUS = Path(__file__).resolve().parent / "bad_inputs"
EXPECTED = {k: v for k, v in json.loads((CORPUS / "expected.json").read_text()).items() if not k.startswith("_")}
GOOD = {"bom_ok.csv"}


def run_case(case: dict, path: Path) -> None:
    """Load the file as the manifest says, then fit one epoch when the case has a fit step."""
    if case.get("reader") == "airfoil":  # a Selig or Lednicer coordinate file: nothing to load_table or fit
        assert not {"load", "fit"} & set(case), case
        vk.data.read_airfoil(path)
        return
    table = vk.data.load_table(path, **case.get("load", {}))
    fit = case.get("fit")
    if fit:
        likelihood = likelihood_from_config(fit["likelihood"]) if "likelihood" in fit else None
        model = vk.VAE(
            fit["x_dim"], 2, hidden=(4,), likelihood=likelihood, condition=condition_from_config(fit.get("condition")), seed=0
        )
        condition = table.condition
        if "condition_file" in fit:
            condition = vk.data.load_table(CORPUS / fit["condition_file"]).x
        vk.fit(model, table.x, condition, epochs=1)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_file_gives_its_exact_message(name):
    case = EXPECTED[name]
    path = CORPUS / case.get("file", name)
    with pytest.raises(vk.VaekitError) as info:
        run_case(case, path)
    assert type(info.value).__name__ == case["error"]
    assert str(info.value) == case["message"].format(path=path)


def test_every_corpus_file_has_an_expectation():
    listed = {case.get("file", name) for name, case in EXPECTED.items()}
    listed |= {case["fit"]["condition_file"] for case in EXPECTED.values() if "condition_file" in case.get("fit", {})}
    on_disk = {p.name for p in CORPUS.iterdir()} - {"expected.json"}
    assert on_disk - GOOD == listed


def test_byte_order_mark_is_not_part_of_the_first_column_name():
    table = vk.data.load_table(CORPUS / "bom_ok.csv")
    assert table.columns == ["x", "y"]
    np.testing.assert_array_equal(table.x, np.array([[1, 2], [3, 4]], dtype=np.float32))


def test_loader_argument_types():
    with pytest.raises(vk.InputTypeError, match=r"^path must be a file path \(str or Path\)\. Got None instead\.$"):
        vk.data.load_table(None)
    with pytest.raises(vk.InputTypeError, match=r"^condition must be a list of column names \(strings\)\. Got 3 instead\.$"):
        vk.data.load_table(CORPUS / "nan_rows.csv", condition=3)
    with pytest.raises(vk.FileFormatError, match=r"is a folder; expected a CSV, \.npy or \.parquet file\.$"):
        vk.data.load_table(CORPUS)


def test_npy_header_promising_a_huge_array_is_refused_without_allocating(tmp_path):
    path = tmp_path / "huge.npy"
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 1)))
    header["shape"] = (10**9, 10**4)  # 80 TB promised, a few bytes delivered
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        handle.write(b"\0" * 16)
    with pytest.raises(
        vk.FileFormatError, match=r"the header promises 80000000000000 bytes of data for shape \(1000000000, 10000\)"
    ):
        vk.data.load_table(path)


def test_object_npy_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "objects.npy"
    np.save(path, np.array([[Marker(tmp_path)]], dtype=object), allow_pickle=True)
    with pytest.raises(vk.FileFormatError, match=r"object arrays are refused \(they need pickle\)"):
        vk.data.load_table(path)
    assert not (tmp_path / "executed").exists()


# ---------------------------------------------------------------------------- model files
class Marker:
    """Unpickling this object creates the file ``executed``: proof that a pickle was loaded."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __reduce__(self):
        return (Path.touch, (self.folder / "executed",))


@pytest.fixture
def saved(tmp_path):
    model = vk.VAE(2, 2, hidden=(8,), likelihood=vk.Gaussian(variance="learned"), seed=0)
    folder = tmp_path / "model"
    model.save(folder)
    return folder


def rewrite_json(folder: Path, edit) -> None:
    path = folder / "model.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


def rewrite_weights(folder: Path, edit) -> None:
    """Change the tensors and record the new hash, so the error comes from the check after the hash."""
    state = safetensors_load((folder / "model.safetensors").read_bytes())
    blob = safetensors_bytes(edit(state))
    (folder / "model.safetensors").write_bytes(blob)
    rewrite_json(folder, lambda meta: meta.update(weights_sha256=hashlib.sha256(blob).hexdigest()))


def _set_config(key, value):
    return lambda folder: rewrite_json(folder, lambda meta: meta["config"].__setitem__(key, value))


def _truncate_weights(folder):
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-40])


def _flip_weight_byte(folder):
    path = folder / "model.safetensors"
    blob = bytearray(path.read_bytes())
    blob[-10] ^= 0x01
    path.write_bytes(bytes(blob))


def _nan_weight(state):
    state["decoder.net.0.bias"][0] = float("nan")
    return state


def _float64(state):
    return {k: v.double() for k, v in state.items()}


def _garbage_with_hash(folder):
    blob = b"\xff" * 64
    (folder / "model.safetensors").write_bytes(blob)
    rewrite_json(folder, lambda meta: meta.update(weights_sha256=hashlib.sha256(blob).hexdigest()))


MODEL_DAMAGE = {
    "truncated weights": (
        _truncate_weights,
        "{w} cannot be read: it does not match the SHA-256 recorded in model.json (the file is truncated or was modified).",
    ),
    "tampered weights": (
        _flip_weight_byte,
        "{w} cannot be read: it does not match the SHA-256 recorded in model.json (the file is truncated or was modified).",
    ),
    "weights not safetensors": (_garbage_with_hash, "{w} cannot be read (Error while deserializing"),
    "nan weights": (
        lambda f: rewrite_weights(f, _nan_weight),
        "{w}: tensor(s) ['decoder.net.0.bias'] hold NaN or inf; the model is corrupted.",
    ),
    "float64 weights": (lambda f: rewrite_weights(f, _float64), "{w} does not match model.json: tensors differ, e.g. "),
    "missing weights": (lambda f: (f / "model.safetensors").unlink(), "{f}: model.safetensors is missing."),
    "json truncated": (
        lambda f: (f / "model.json").write_text((f / "model.json").read_text()[:50]),
        "{j} is not valid JSON (",
    ),
    "future version": (
        lambda f: rewrite_json(f, lambda m: m.update(format_version=2)),
        "{j} has format_version 2; this vaekit (0.1.0) reads version 1.",
    ),
    "not a vaekit file": (
        lambda f: rewrite_json(f, lambda m: m.update(format="keras")),
        "{j} is not a vaekit model file (format must be 'vaekit-model').",
    ),
    "unknown class": (lambda f: rewrite_json(f, lambda m: m.update({"class": "GAN"})), "{j}: unknown model class 'GAN'"),
    "unknown key": (
        lambda f: rewrite_json(f, lambda m: m["config"].update(depth=3)),
        "{j}: config has unknown keys ['depth'] / missing keys [].",
    ),
    "wrong type": (_set_config("x_dim", "2"), "{j}: config.x_dim must be of type int. Got '2' instead."),
    "bool as int": (_set_config("z_dim", True), "{j}: config.z_dim must be of type int. Got True instead."),
    "out of range": (_set_config("x_dim", 0), "{j}: invalid config: x_dim must be an integer >= 1. Got 0 instead."),
    "negative width": (_set_config("hidden", [-8]), "{j}: invalid config: hidden[i] must be an integer >= 1. Got -8 instead."),
    "absurd size": (_set_config("hidden", [10**12]), "{w} does not match model.json: tensors differ, e.g. "),
    "too many layers": (_set_config("hidden", [8] * 10_000), "{j}: config.hidden has more layers than model.safetensors holds"),
    "bad variance": (
        lambda f: rewrite_json(f, lambda m: m["config"]["likelihood"].update(variance=-1.0)),
        "{j}: invalid config: Gaussian.variance must be a finite number > 0. Got -1.0 instead.",
    ),
    "unknown likelihood": (
        lambda f: rewrite_json(f, lambda m: m["config"].update(likelihood={"type": "poisson"})),
        "{j}: invalid config: likelihood.type must be one of ['bernoulli', 'gaussian']. Got 'poisson' instead.",
    ),
    "no hash": (
        lambda f: rewrite_json(f, lambda m: m.pop("weights_sha256")),
        "{j}: 'weights_sha256' must be the 64-digit SHA-256 of model.safetensors.",
    ),
}


@pytest.mark.parametrize("damage", list(MODEL_DAMAGE))
def test_damaged_model_file_gives_clear_error(saved, damage):
    spoil, message = MODEL_DAMAGE[damage]
    spoil(saved)
    expected = message.format(f=saved, w=saved / "model.safetensors", j=saved / "model.json")
    with pytest.raises(vk.FileFormatError) as info:
        vk.load(saved)
    assert str(info.value).startswith(expected)


def test_edited_fixed_variance_disagrees_with_weights(tmp_path):
    vk.VAE(2, 2, hidden=(8,), likelihood=vk.Gaussian(variance=0.1), seed=0).save(tmp_path)
    rewrite_json(tmp_path, lambda m: m["config"]["likelihood"].update(variance=2.0))
    with pytest.raises(vk.FileFormatError) as info:
        vk.load(tmp_path)
    expected = "does not match model.safetensors: likelihood_head.fixed_std differs from what the config implies."
    assert str(info.value) == f"{tmp_path / 'model.json'} {expected}"


def test_intact_model_round_trips_from_folder_or_its_files(saved):
    original = vk.load(saved)
    for path in (saved, saved / "model.json", saved / "model.safetensors"):
        again = vk.load(path)
        assert all(torch.equal(a, b) for a, b in zip(original.state_dict().values(), again.state_dict().values()))


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".joblib", ".npz"])
def test_pickle_file_is_refused_and_never_executed(tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(pickle.dumps(Marker(tmp_path)))
    with pytest.raises(vk.FileFormatError) as info:
        vk.load(path)
    assert str(info.value) == (
        f"{path} looks like a pickle file ({suffix}); vaekit never loads pickles because they can execute code. "
        "Save models with model.save(folder) (safetensors + JSON)."
    )
    with pytest.raises(vk.FileFormatError, match=r"model\.json is missing and the folder holds pickle file\(s\) \['model"):
        vk.load(tmp_path)
    with pytest.raises(vk.FileFormatError, match=r"files are not read \(pickles can execute code\)"):
        vk.data.load_table(path)
    assert not (tmp_path / "executed").exists()


def test_load_arguments():
    with pytest.raises(vk.InputTypeError, match=r"^path must be a folder path \(str or Path\)\. Got 3 instead\.$"):
        vk.load(3)
    with pytest.raises(vk.FileFormatError, match=r"^no model at .*nowhere: the folder does not exist\.$"):
        vk.load(CORPUS / "nowhere")
    with pytest.raises(vk.FileFormatError, match=r"empty\.csv is a file; vaekit\.load expects the folder written by model\.save"):
        vk.load(CORPUS / "empty.csv")


@pytest.mark.parametrize("value", ["0", "1", "-0.1", "1.5", "nan", "a fifth"])
def test_bad_test_fraction_is_refused_naming_the_flag(value, tmp_path, capsys):
    from vaekit import cli

    code = cli.main(["train", "--data", "ring", "--test-fraction", value, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and not (tmp_path / "o").exists()
    assert err == (
        f"error: argument --test-fraction: expected a number strictly between 0 and 1 such as 0.2; got {value!r} "
        "(see 'vaekit train --help')\n"
    )
