import math

import numpy as np
import pytest

import vaekit as vk
from vaekit.errors import FileFormatError, InputError


def test_ring_shapes_dtypes_and_reproducible():
    x, y = vk.data.ring(n=500, modes=8, radius=3.0, std=0.25, seed=3)
    assert x.shape == (500, 2) and x.dtype == np.float32
    assert y.shape == (500,) and y.dtype == np.int64
    assert set(np.unique(y)) <= set(range(8))
    x2, y2 = vk.data.ring(n=500, seed=3)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert not np.array_equal(x, vk.data.ring(n=500, seed=4)[0])


def test_ring_points_sit_around_their_mode_centre():
    x, y = vk.data.ring(n=20000, modes=8, radius=3.0, std=0.25, seed=0)
    offsets = x - vk.data.ring_centres(8, 3.0)[y]
    assert np.allclose(offsets.mean(0), 0, atol=0.01)
    assert np.allclose(offsets.std(0), 0.25, rtol=0.02)


def test_ring_log_density_matches_mixture_entropy():
    # Modes 9 std apart barely overlap, so the entropy is log K + log(2 pi e s^2) = 2.1447 nats.
    x, _ = vk.data.ring(n=200000, seed=1)
    closed_form = math.log(8) + 1 + math.log(2 * math.pi * 0.25**2)
    assert closed_form == pytest.approx(2.1447, abs=1e-4)
    assert -vk.data.ring_log_density(x).mean() == pytest.approx(closed_form, abs=0.01)


def test_radius_condition():
    x = np.array([[3.0, 4.0], [0.0, -2.0]], dtype=np.float32)
    assert np.allclose(vk.data.radius(x), [[5.0], [2.0]])


@pytest.mark.parametrize("name", ["moons", "circles", "swiss_roll", "pinwheel"])
def test_toy_datasets(name):
    x, y = vk.data.DATASETS[name](n=300, seed=0)
    assert x.shape == (300, 2) and x.dtype == np.float32 and len(y) == 300
    assert np.isfinite(x).all()
    assert np.array_equal(x, vk.data.DATASETS[name](n=300, seed=0)[0])


def test_digits_are_bundled_images_in_unit_range():
    x, y = vk.data.digits()
    assert x.shape == (1797, 64) and 0 <= x.min() and x.max() <= 1
    assert set(np.unique(y)) == set(range(10))


def test_ring_rejects_bad_arguments():
    with pytest.raises(InputError, match=r"n must be an integer >= 1\. Got 0 instead"):
        vk.data.ring(n=0)
    with pytest.raises(InputError, match=r"std must be a finite number > 0\. Got -1.0 instead"):
        vk.data.ring(std=-1)


def test_load_table_csv_with_columns_and_text_labels(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b,kind,r\n1,2,cat,0.5\n3,4,dog,1.5\n5,6,cat,2.5\n")
    table = vk.data.load_table(path, columns=["b", "a"], condition="kind")
    assert table.x.tolist() == [[2, 1], [4, 3], [6, 5]]
    assert table.label_names == ["cat", "dog"]
    assert table.condition[:, 0].tolist() == [0, 1, 0]
    default = vk.data.load_table(path, condition="r", columns=["a"])
    assert default.condition.tolist() == [[0.5], [1.5], [2.5]]


def test_load_table_npy(tmp_path):
    path = tmp_path / "d.npy"
    np.save(path, np.arange(12, dtype=np.float64).reshape(4, 3))
    table = vk.data.load_table(path, condition="2")
    assert table.columns == ["0", "1"] and table.x.shape == (4, 2)
    assert table.condition[:, 0].tolist() == [2, 5, 8, 11]


@pytest.mark.parametrize(
    ("text", "kwargs", "error", "message"),
    [
        ("", {}, FileFormatError, "is empty: expected a header row and data rows"),
        ("a,b\n", {}, FileFormatError, "has a header but no data rows"),
        ("a,b\n1,2\n3\n", {}, FileFormatError, r"line 3: expected 2 values \(as in the header\) but found 1"),
        ("a,b\n1,x\n", {}, InputError, r"column 'b' of .* must be numeric\. Got 'x' in data row 1 instead"),
        ("a,b\n1,nan\n", {}, InputError, r"column 'b' of .* must hold finite float32 values\. Got 'nan' in data row 1"),
        ("a,b\n1,2\n", {"columns": ["c"]}, InputError, r"columns names unknown column\(s\) \['c'\]"),
        ("a,b\n1,2\n", {"condition": "z"}, InputError, r"condition names unknown column\(s\) \['z'\]"),
    ],
)
def test_load_table_bad_input(tmp_path, text, kwargs, error, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(error, match=message):
        vk.data.load_table(path, **kwargs)


def test_load_table_missing_file(tmp_path):
    with pytest.raises(FileFormatError, match="does not exist"):
        vk.data.load_table(tmp_path / "nope.csv")


def test_train_val_split_partitions_rows():
    x = np.arange(20).reshape(10, 2)
    y = np.arange(10)
    xt, xv, yt, yv = vk.data.train_val_split(x, y, val_fraction=0.3, seed=0)
    assert len(xv) == 3 and len(xt) == 7
    assert sorted(np.concatenate([yt, yv]).tolist()) == list(range(10))
    assert np.array_equal(xt[:, 0] // 2, yt)
