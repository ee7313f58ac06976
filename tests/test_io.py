import json

import numpy as np
import pytest
import torch

import vaekit as vk
from vaekit.errors import FileFormatError


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"condition": vk.OneHot(8), "standardize": True},
        {"condition": vk.Continuous(1, embed=16), "likelihood": vk.Gaussian("learned")},
        {"likelihood": vk.Gaussian("per_point"), "hidden": (32, 16, 8), "activation": "silu", "z_dim": 3},
    ],
)
def test_save_load_round_trip_is_bit_identical(tmp_path, kwargs):
    x, y = vk.data.ring(n=300, seed=0)
    kwargs = {"z_dim": 2, **kwargs}
    model = vk.VAE(2, seed=0, **kwargs)
    condition = None
    if isinstance(kwargs.get("condition"), vk.OneHot):
        condition = y
    elif isinstance(kwargs.get("condition"), vk.Continuous):
        condition = vk.data.radius(x)
    vk.fit(model, x, condition, epochs=2, seed=0)
    model.save(tmp_path / "run")
    loaded = vk.load(tmp_path / "run")
    assert loaded.config == model.config
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    c = None if condition is None else condition[:5]
    assert np.array_equal(model.sample(5, c, seed=3), loaded.sample(5, c, seed=3))
    assert torch.equal(model.encode(x[:5], c).mean, loaded.encode(x[:5], c).mean)
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert meta["format"] == "vaekit-model" and meta["vaekit_version"] == vk.__version__


def test_save_writes_no_temporary_leftovers(tmp_path):
    vk.VAE(2).save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.json", "model.safetensors"]


def test_pickle_files_are_refused_not_loaded(tmp_path):
    evil = tmp_path / "model.pt"
    torch.save({"x": 1}, evil)
    with pytest.raises(FileFormatError, match=r"looks like a pickle file \(\.pt\); vaekit never loads pickles"):
        vk.load(evil)


def test_load_errors(tmp_path):
    with pytest.raises(FileFormatError, match="the folder does not exist"):
        vk.load(tmp_path / "missing")
    folder = tmp_path / "m"
    vk.VAE(2).save(folder)
    (folder / "model.json").write_text("{not json")
    with pytest.raises(FileFormatError, match="is not valid JSON"):
        vk.load(folder)
    vk.VAE(2).save(folder)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError, match="cannot be read"):
        vk.load(folder)


def test_saved_files_get_the_usual_permissions(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        vk.VAE(2).save(tmp_path / "m")
    finally:
        os.umask(old)
    for name in ["model.json", "model.safetensors"]:
        assert stat.S_IMODE((tmp_path / "m" / name).stat().st_mode) == 0o644


def test_a_vaekit_0_1_model_file_still_loads(tmp_path):
    # vaekit 0.1 wrote no "prior" and no "x_shape": such a file is a standard-normal, flat model.
    model = vk.VAE(2, 2, hidden=(4,), seed=0)
    model.save(tmp_path)
    meta = json.loads((tmp_path / "model.json").read_text())
    del meta["config"]["prior"], meta["config"]["x_shape"]
    (tmp_path / "model.json").write_text(json.dumps(meta))
    loaded = vk.load(tmp_path)
    assert loaded.config == model.config and loaded.prior_spec == vk.StandardNormal()
    del meta["config"]["activation"]  # a field that 0.1 files always had stays required
    (tmp_path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(vk.FileFormatError, match=r"missing keys \['activation'\]"):
        vk.load(tmp_path)
