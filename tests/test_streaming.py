"""Data larger than memory: vk.NpyBlocks streams a .npy file in shuffled blocks."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest
import torch

import vaekit as vk
from vaekit.errors import InputError
from vaekit.streaming import column_moments, column_range, convert_command, csv_to_npy, shuffled_batches, too_large_for_memory

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def write(tmp_path, array, name="data.npy"):
    path = tmp_path / name
    np.save(path, array)
    return path


def test_every_row_once_per_epoch_in_full_batches(tmp_path):
    ids = np.arange(1000, dtype=np.float32).reshape(-1, 1)  # row i holds i
    source = vk.NpyBlocks(write(tmp_path, ids), block_rows=300)  # blocks of 300, 300, 300, 100
    torch.manual_seed(0)
    epochs = [[b[0] for b in shuffled_batches(source, torch.as_tensor, None, 128)] for _ in range(2)]
    for batches in epochs:
        assert [len(b) for b in batches] == [128] * 7 + [104]  # only the last batch is short
        seen = torch.cat(batches)[:, 0].long()
        assert torch.equal(seen.sort().values, torch.arange(1000))  # each row exactly once
    first, second = (torch.cat(b)[:, 0] for b in epochs)
    assert not torch.equal(first, second)  # a fresh order every epoch
    # Within a block the rows are shuffled, and a block's rows stay together: the stream is
    # the blocks in some order, each a permutation of its own rows.
    blocks = (first // 300).long()
    changes = int((blocks[1:] != blocks[:-1]).sum())
    assert changes == 3


def test_the_same_seed_gives_the_same_run(tmp_path):
    x, _ = vk.data.ring(600, seed=0)
    source = vk.NpyBlocks(write(tmp_path, x), block_rows=256)
    runs = [vk.fit(vk.VAE(2, 2, hidden=(16,), seed=0), source, epochs=3, batch_size=100, seed=s) for s in (1, 1, 2)]
    assert runs[0].columns == runs[1].columns
    assert runs[0].columns["loss"] != runs[2].columns["loss"]


def test_streamed_moments_equal_numpy(tmp_path):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((1003, 5)) * [1, 10, 100, 1e3, 1e-3] + [5, -3, 1e4, 0, 7]).astype(np.float32)
    source = vk.NpyBlocks(write(tmp_path, x), block_rows=97)
    mean, std = column_moments(source, lambda a: torch.as_tensor(a))
    np.testing.assert_allclose(mean.numpy(), x.astype(np.float64).mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(std.numpy(), x.astype(np.float64).std(0), rtol=1e-12)
    model = vk.VAE(5, 2, hidden=(8,), standardize=True, seed=0)
    vk.fit(model, source, epochs=1, batch_size=128)
    np.testing.assert_allclose(model.x_shift.numpy(), x.mean(0), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(model.x_scale.numpy(), x.std(0), rtol=1e-5)


def test_streamed_column_range_is_every_rows(tmp_path):
    from vaekit.runfolder import RunData, _place_top_point

    rng = np.random.default_rng(0)
    x = (rng.standard_normal((1003, 2, 3)) * 100).astype(np.float32)  # rows of shape (2, 3): 6 flat columns
    source = vk.NpyBlocks(write(tmp_path, x), block_rows=97)
    low, high = column_range(source)
    flat = x.reshape(1003, 6).astype(np.float64)
    assert low.tolist() == flat.min(0).tolist() and high.tolist() == flat.max(0).tolist()
    # A float64 file: the range as float32 holds the rows (as a run's sample and the model see them).
    wide = rng.standard_normal((50, 2)) / 3
    low64, high64 = column_range(vk.NpyBlocks(write(tmp_path, wide, "wide.npy"), block_rows=7))
    assert high64.tolist() == wide.astype(np.float32).max(0).astype(np.float64).tolist()
    assert low64.tolist() == wide.astype(np.float32).min(0).astype(np.float64).tolist()
    # The PPCA gap's top point is placed against every training row, not the sample a streamed run holds in x.
    sample = flat[:10].astype(np.float32)
    train = RunData(sample, None, None, [str(i) for i in range(6)], stream=source)
    point = flat[500:501].astype(np.float32)  # a training row: inside the whole range, likely outside the sample's
    assert ((point[0] < sample.min(0)) | (point[0] > sample.max(0))).any()
    held = RunData(point, None, None, train.columns, held_out=True, rows=np.array([500]))
    metrics = {"ppca_gap_top_point": 0, "ppca_gap_top_column": 0, "ppca_gap_top_value": 1.0, "ppca_gap_top_train_range": [0, 0]}
    _place_top_point(metrics, held, train)
    assert metrics == {"ppca_gap_top_point": 0, "ppca_gap_top_row": 500}
    far = RunData(np.full((1, 6), 1e6, dtype=np.float32), None, None, train.columns, held_out=True)
    metrics = {"ppca_gap_top_point": 0}
    _place_top_point(metrics, far, train)
    assert metrics["ppca_gap_top_train_range"] == [low[metrics["ppca_gap_top_column"]], high[metrics["ppca_gap_top_column"]]]
    assert "ppca_gap_top_row" not in metrics  # a file of its own, in memory: point 0 is its row 0
    # The training rows themselves (held_out False) are not placed again: no pass over the file.
    own = {"ppca_gap_top_point": 0}
    _place_top_point(own, dataclasses.replace(far, held_out=False), train)
    assert own == {"ppca_gap_top_point": 0}


def test_curves_and_conditions_stream(tmp_path):
    rng = np.random.default_rng(1)
    curves = rng.standard_normal((200, 16, 2)).astype(np.float32)
    labels = rng.integers(0, 3, 200)
    model = vk.VAE(x_shape=(16, 2), z_dim=2, hidden=(16,), condition=vk.OneHot(3), seed=0)
    history = vk.fit(model, vk.NpyBlocks(write(tmp_path, curves), block_rows=64), labels, epochs=2, batch_size=50)
    assert len(history) == 2 and np.isfinite(history.columns["loss"]).all()


def test_bad_streamed_input(tmp_path):
    expected = r"NpyBlocks needs an array of rows, \(N, D\) or \(N, \*row_shape\). Got shape \(5,\) instead."
    with pytest.raises(InputError, match=expected):
        vk.NpyBlocks(write(tmp_path, np.zeros(5, np.float32)))
    with pytest.raises(InputError, match="NpyBlocks needs C order"):
        vk.NpyBlocks(write(tmp_path, np.asfortranarray(np.zeros((5, 3), np.float32))))
    with pytest.raises(InputError, match="block_rows"):
        vk.NpyBlocks(write(tmp_path, np.zeros((5, 3), np.float32)), block_rows=0)
    source = vk.NpyBlocks(write(tmp_path, np.zeros((50, 2), np.float32)))
    with pytest.raises(InputError, match=r"val must be arrays \(x_val, condition_val\) when x is streamed"):
        vk.fit(vk.VAE(2, 2, hidden=(8,)), source, val=0.2, epochs=1)


def test_csv_converts_to_npy_in_chunks(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1001, 4)).astype(np.float32)
    csv_path = tmp_path / "t.csv"
    csv_path.write_text("a,b,c,d\n" + "\n".join(",".join(repr(float(v)) for v in row) for row in x) + "\n")
    rows, columns = csv_to_npy(csv_path, tmp_path / "t.npy", chunk_rows=100)
    assert (rows, columns) == (1001, ["a", "b", "c", "d"])
    np.testing.assert_array_equal(np.load(tmp_path / "t.npy"), x)
    assert vk.NpyBlocks(tmp_path / "t.npy").n == 1001


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b\n1,2\n3,x\n", "line 3 has a cell that is not a number: 'x'."),
        ("a,b\n1,2\n3\n", "line 3 has 1 cells, the header names 2."),
        ("a,b\n1,nan\n", "line 2 has a NaN, an infinite value or a value beyond float32's range."),
        ("a,b\n", "the file has a header but no data rows."),
    ],
)
def test_csv_conversion_names_the_bad_line_and_leaves_nothing(tmp_path, text, message):
    (tmp_path / "t.csv").write_text(text)
    with pytest.raises(vk.FileFormatError, match=re.escape(message)):
        csv_to_npy(tmp_path / "t.csv", tmp_path / "t.npy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]


def test_vaekit_convert_command(tmp_path, capsys):
    from vaekit.cli import main

    (tmp_path / "t.csv").write_text("a,b\n1,2\n3,4\n")
    assert main(["convert", str(tmp_path / "t.csv"), str(tmp_path / "t.npy")]) == 0
    assert "wrote" in capsys.readouterr().out
    np.testing.assert_array_equal(np.load(tmp_path / "t.npy"), [[1, 2], [3, 4]])
    assert main(["convert", str(tmp_path / "t.csv"), str(tmp_path / "t.npy")]) == 2  # exists: needs --force
    assert "pass --force to replace it" in capsys.readouterr().err


def test_large_csv_detection(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a\n1\n")
    assert not too_large_for_memory(path)
    assert too_large_for_memory(path, expansion=1e12)  # 4 bytes x 1e12 exceeds any machine's memory
    assert convert_command(path) == f"vaekit convert {path} {tmp_path / 't.npy'}"


def _low_rank(n: int = 600, d: int = 6) -> np.ndarray:
    rng = np.random.default_rng(4)
    return (rng.standard_normal((n, 2)) @ rng.standard_normal((2, d)) + 0.1 * rng.standard_normal((n, d))).astype(np.float32)


def test_vaekit_train_streams_a_npy_file(tmp_path):
    from vaekit import runfolder
    from vaekit.cli import main

    np.save(tmp_path / "x.npy", _low_rank())
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "x.npy"), "--stream", "--epochs", "2", "--out", str(out), "--quiet"]) == 0
    config = runfolder.read_config(out)
    assert config["data"]["stream"] is True
    info = json.loads((out / "run.json").read_text())
    assert info["split"]["n_train"] == 600 and "streamed in blocks" in info["data"]
    assert runfolder.load_data(config).rows.tolist() == list(range(600))  # the sample's rows of the file: all 600
    again = vk.runs.train(config, tmp_path / "again")  # config.toml redoes the run
    assert again.history.columns == vk.runs.open_run(out).history.columns


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"stream": True, "test_fraction": 0.2}, "[data] test_fraction needs the rows of"),
        ({"stream": True, "condition": "0"}, "[data] stream reads whole rows of"),
    ],
)
def test_streamed_runs_refuse_what_needs_the_rows_in_memory(tmp_path, data, message):
    np.save(tmp_path / "x.npy", _low_rank())
    config = {"data": {"path": str(tmp_path / "x.npy"), **data}, "training": {"epochs": 1}}
    with pytest.raises(InputError, match=re.escape(message)):
        vk.runs.train(config, tmp_path / "run")
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()


def test_stream_applies_to_npy_files_only(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n1,2\n3,4\n")
    with pytest.raises(InputError, match=re.escape("[data] stream = true reads a .npy file in blocks")):
        vk.runs.train({"data": {"path": str(tmp_path / "x.csv"), "stream": True}}, tmp_path / "run")


def test_a_csv_too_large_for_memory_names_the_conversion(tmp_path, monkeypatch):
    from vaekit import streaming

    path = tmp_path / "big.csv"
    path.write_text("a,b\n" + "1,2\n" * 1000)
    monkeypatch.setattr(streaming, "available_memory", lambda: 4096)  # 4 KiB left: 8 KB of CSV is too much
    with pytest.raises(InputError) as caught:
        vk.data.load_table(path)
    message = str(caught.value)
    assert "is too large to read into memory here" in message
    assert message.endswith(f"vaekit convert {path} {tmp_path / 'big.npy'}")


def test_csv_conversion_refuses_a_headerless_file_and_float32_overflow(tmp_path):
    (tmp_path / "t.csv").write_text("1,2\n3,4\n")
    with pytest.raises(vk.FileFormatError, match="the first row is all numbers, so it is not a header"):
        csv_to_npy(tmp_path / "t.csv", tmp_path / "t.npy")
    (tmp_path / "t.csv").write_text("a,b\n1,1e39\n")
    with pytest.raises(vk.FileFormatError, match="line 2 has a NaN, an infinite value or a value beyond float32's range"):
        csv_to_npy(tmp_path / "t.csv", tmp_path / "t.npy")
    assert not (tmp_path / "t.npy").exists()
