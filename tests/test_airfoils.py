"""Airfoil files (Selig, Lednicer), their normalisation, the bundled UIUC set and the airfoils dataset."""

from __future__ import annotations

import hashlib
import json
import logging
import runpy
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import vaekit as vk
from airfoil_shapes import formula_properties, naca4, selig, transform, write_lednicer, write_selig
from vaekit import runfolder, shapes
from vaekit.data import airfoil_files as af
from vaekit.errors import AirfoilFileError

ROOT = Path(__file__).resolve().parents[1]


def naca_file(tmp_path: Path, code: str, **kwargs) -> Path:
    upper, lower = naca4(code)
    return write_selig(tmp_path / f"naca{code}.dat", selig(upper, lower), f"NACA {code}")


def test_layout_of_a_read_shape(tmp_path):
    shape = vk.data.read_airfoil(naca_file(tmp_path, "2412"))
    assert shape.dtype == np.float32 and shape.shape == (64, 2)
    np.testing.assert_array_equal(shape[31], [0.0, 0.0])  # the leading edge, stored on both surfaces
    np.testing.assert_array_equal(shape[32], [0.0, 0.0])
    np.testing.assert_allclose(0.5 * (shape[0] + shape[-1]), [1.0, 0.0], atol=1e-7)  # trailing-edge midpoint
    assert shape[1:31, 1].min() > 0 and shape[33:63, 1].max() < 0.02  # upper first, above; lower after
    assert np.all(np.diff(shape[:32, 0]) < 0) and np.all(np.diff(shape[32:, 0]) > 0)
    assert vk.data.read_airfoil(naca_file(tmp_path, "2412"), points=16).shape == (16, 2)


@pytest.mark.parametrize("code", ["0012", "2412", "4415"])
def test_naca_sections_keep_the_formula_thickness_and_camber(tmp_path, code):
    """64 points, linear interpolation: thickness within 3e-4 chord, camber within 2.5e-3, positions within 0.025.

    The camber tolerance is wider for a reason: the leading edge is the point farthest from the
    trailing edge, which on a cambered NACA nose lies slightly above the formula's (0, 0), so the
    chord line tilts and lowers the camber by about 0.001 for 2412 and 0.003 for 4415 (the dense
    reference below shows it), on top of an interpolation error of about 5e-4.
    """
    truth = formula_properties(code)
    props = shapes.airfoil_properties(vk.data.read_airfoil(naca_file(tmp_path, code))[None])
    assert props.thickness[0] == pytest.approx(truth["thickness"], abs=3e-4)
    assert props.thickness_x[0] == pytest.approx(truth["thickness_x"], abs=0.025)
    assert props.camber[0] == pytest.approx(truth["camber"], abs=3.5e-3 if code == "4415" else 1.5e-3)
    if truth["camber"]:
        assert props.camber_x[0] == pytest.approx(truth["camber_x"], abs=0.025)
    # Against the same normalisation of a dense (8000-point) contour: only the resampling differs.
    upper, lower = naca4(code, 4001)
    dense = shapes.airfoil_properties(af.normalise(selig(upper, lower), Path(code), 8000)[None])
    assert props.thickness[0] == pytest.approx(dense.thickness[0], abs=3e-4)
    assert props.camber[0] == pytest.approx(dense.camber[0], abs=7e-4)


def test_naca_0012_and_2412_nominal_values(tmp_path):
    t12 = shapes.airfoil_properties(vk.data.read_airfoil(naca_file(tmp_path, "0012"))[None])
    c24 = shapes.airfoil_properties(vk.data.read_airfoil(naca_file(tmp_path, "2412"))[None])
    assert t12.thickness[0] == pytest.approx(0.12, abs=3e-4) and t12.thickness_x[0] == pytest.approx(0.30, abs=0.025)
    assert c24.camber[0] == pytest.approx(0.02, abs=1.5e-3) and c24.camber_x[0] == pytest.approx(0.40, abs=0.025)


def test_lednicer_and_selig_files_of_one_section_give_one_shape(tmp_path):
    upper, lower = naca4("4415")
    a = vk.data.read_airfoil(write_selig(tmp_path / "s.dat", selig(upper, lower)))
    b = vk.data.read_airfoil(write_lednicer(tmp_path / "l.dat", upper, lower))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("angle", "scale", "shift"), [(0.7, 3.5, (2.0, -5.0)), (-2.9, 0.01, (100.0, 3.0)), (np.pi, 250.0, (0, 0))]
)
def test_normalisation_undoes_rotation_scale_and_translation(tmp_path, angle, scale, shift):
    upper, lower = naca4("2412")
    base = vk.data.read_airfoil(write_selig(tmp_path / "a.dat", selig(upper, lower)))
    moved = vk.data.read_airfoil(write_selig(tmp_path / "b.dat", transform(selig(upper, lower), angle, scale, shift)))
    np.testing.assert_allclose(moved, base, atol=2e-6)  # the files keep 8 decimals


def test_a_contour_listed_lower_surface_first_is_turned_round(tmp_path):
    upper, lower = naca4("2412")
    base = vk.data.read_airfoil(write_selig(tmp_path / "a.dat", selig(upper, lower)))
    reverse = vk.data.read_airfoil(write_selig(tmp_path / "b.dat", selig(upper, lower)[::-1]))
    np.testing.assert_array_equal(reverse, base)


def malformed_files(folder: Path) -> dict[str, int]:
    """Two usable files (good, note) and one per skip reason (two for non_numeric); returns the skip counts."""
    upper, lower = naca4("2412", 40)
    good = selig(upper, lower)
    write_selig(folder / "good.dat", good)
    write_selig(folder / "zcopy.dat", good, "the same coordinates under another name")
    (folder / "note.dat").write_text(write_selig(folder / "x", selig(*naca4("0012", 40))).read_text() + "By hand, 1990\n")
    (folder / "x").unlink()
    text = [f"{x:.6f} {y:.6f}" for x, y in good]
    (folder / "words.dat").write_text("\n".join(["name", "", *text[:10], "1.0 abc", *text[10:]]))  # line 13
    (folder / "three.dat").write_text("\n".join(["name", *[t + " 0.0" for t in text]]))
    (folder / "nan.dat").write_text("\n".join(["name", *text[:10], "0.5 nan", *text[10:]]))
    write_lednicer(folder / "counts.dat", upper, lower)
    counts = (folder / "counts.dat").read_text().replace(f"{len(upper)}.  {len(lower)}.", f"{len(upper) + 2}.  {len(lower)}.")
    (folder / "counts.dat").write_text(counts)
    write_selig(folder / "few.dat", good[[0, 20, 39, 60, 78]])
    twice = good.copy()
    twice[60] = twice[10]
    write_selig(folder / "twice.dat", twice)
    crossed = good.copy()
    crossed[5:30, 1] *= -1.0  # the rear upper surface below the lower one: a figure eight
    write_selig(folder / "crossed.dat", crossed)
    back = good.copy()
    back[15, 0] += 0.1  # a hook backwards in x on the upper surface
    write_selig(folder / "back.dat", back)
    opened = good.copy()
    opened[0, 1] += 0.05
    write_selig(folder / "open.dat", opened)
    (folder / "binary.dat").write_bytes(b"\x00\x01name\n1 2\n")
    return {
        "non_numeric": 2,
        "non_finite": 1,
        "bad_counts": 1,
        "too_few_points": 1,
        "duplicate_points": 1,
        "crossed_surfaces": 1,
        "non_monotone_x": 1,
        "open_trailing_edge": 1,
        "unreadable": 1,
        "duplicate_shape": 1,
    }


def test_malformed_files_are_skipped_and_counted_by_reason(tmp_path, caplog):
    expected = malformed_files(tmp_path)
    with caplog.at_level(logging.INFO, logger="vaekit.data.airfoil_files"):
        result = vk.data.load_airfoils(tmp_path)
    assert result.names == ["good", "note"]
    assert result.skipped == dict(sorted(expected.items()))
    assert result.files == 13 and result.notes == {"text_after_coordinates": 1}
    assert set(result.skipped) <= set(af.SKIP_REASONS)
    np.testing.assert_array_equal(result.shapes[1], vk.data.read_airfoil(tmp_path / "note.dat"))
    assert "read 13 airfoil files" in caplog.text and "kept 2" in caplog.text and "'bad_counts': 1" in caplog.text


@pytest.mark.parametrize(
    ("name", "reason", "detail"),
    [
        ("words.dat", "non_numeric", "line 13 must hold two numbers x y. Got '1.0 abc' instead"),
        ("nan.dat", "non_finite", "coordinates must be finite. Got NaN or infinity instead"),
        ("counts.dat", "bad_counts", "the counts line promises 42 + 40 points. Got 80 instead"),
        ("twice.dat", "duplicate_points", "contour points 11 and 61 must differ. Got [0.84736801, 0.02921182] twice instead"),
        (
            "open.dat",
            "open_trailing_edge",
            "the normalised shape must pass vaekit.shapes.validity. Got open_trailing_edge instead",
        ),
    ],
)
def test_each_malformed_file_names_its_reason(tmp_path, name, reason, detail):
    malformed_files(tmp_path)
    with pytest.raises(AirfoilFileError) as info:
        vk.data.read_airfoil(tmp_path / name)
    assert info.value.reason == reason
    assert str(info.value) == f"{tmp_path / name}: {detail} ({reason})."
    assert isinstance(info.value, vk.FileFormatError)


def test_loader_argument_errors(tmp_path):
    with pytest.raises(vk.InputError, match=r"^points must be an even integer >= 8 \(P/2 on each surface\)\. Got 9 instead\.$"):
        vk.data.read_airfoil(naca_file(tmp_path, "0012"), points=9)
    with pytest.raises(vk.FileFormatError, match=r"airfoil file .*missing\.dat does not exist\.$"):
        vk.data.read_airfoil(tmp_path / "missing.dat")
    with pytest.raises(vk.InputTypeError, match=r"^folder must be a folder path \(str or Path\)\. Got 3 instead\.$"):
        vk.data.load_airfoils(3)
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        vk.FileFormatError, match=r"must hold airfoil files matching '\*\.dat'\. Got 0 files, none usable, instead\.$"
    ):
        vk.data.load_airfoils(tmp_path / "empty")


def test_bundled_set_counts_and_validity():
    bundled = vk.data.bundled_airfoils()
    assert bundled.shapes.shape == (2114, 64, 2) and bundled.shapes.dtype == np.float32
    assert bundled.files == 2174
    assert bundled.skipped == {"duplicate_shape": 24, "non_numeric": 21, "open_trailing_edge": 15}
    assert bundled.notes == {"text_after_coordinates": 334}
    assert len(set(bundled.names)) == 2114 and "naca2412" in bundled.names
    check = shapes.validity(bundled.shapes)
    assert check.valid.all(), check.counts
    props = shapes.airfoil_properties(bundled.shapes[[bundled.names.index("naca0012")]])
    assert props.thickness[0] == pytest.approx(0.12, abs=1e-3)


def test_bundled_file_is_small_pickle_free_package_data_with_its_licence():
    path = af.BUNDLED
    assert path.stat().st_size < 3_000_000
    with np.load(path, allow_pickle=False) as npz:
        assert str(npz["source"]).startswith("aerosandbox-4.2.10-py3-none-any.whl sha256:42f4b5b4a67f828f")
        assert npz["names"].dtype.kind == "U"
    assert "MIT License" in (path.parent / "AEROSANDBOX_LICENSE.txt").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"vaekit.data" = ["airfoils.npz", "AEROSANDBOX_LICENSE.txt"]' in pyproject


def test_make_airfoils_script_rebuilds_from_a_wheel(tmp_path, monkeypatch, capsys):
    upper, lower = naca4("2412", 40)
    wheel = tmp_path / "aerosandbox-0.0-py3-none-any.whl"
    folder = tmp_path / "files"
    folder.mkdir()
    expected = malformed_files(folder)
    with zipfile.ZipFile(wheel, "w") as z:
        for path in sorted(folder.iterdir()):
            z.write(path, f"aerosandbox/geometry/airfoil/airfoil_database/{path.name}")
        z.writestr("aerosandbox-0.0.dist-info/licenses/LICENSE.txt", "MIT License\ntest\n")
    out = tmp_path / "out.npz"
    monkeypatch.setattr(sys, "argv", ["make_airfoils.py", str(wheel), "--out", str(out)])
    runpy.run_path(str(ROOT / "scripts" / "make_airfoils.py"), run_name="__main__")
    summary = json.loads(capsys.readouterr().out)
    assert summary["sha256"] == hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert (summary["files"], summary["kept"], summary["skipped"]) == (13, 2, dict(sorted(expected.items())))
    monkeypatch.setattr(af, "BUNDLED", out)
    rebuilt = af.bundled_airfoils()
    np.testing.assert_array_equal(rebuilt.shapes[0], vk.data.read_airfoil(folder / "good.dat"))
    assert rebuilt.names == ["good", "note"] and rebuilt.skipped == summary["skipped"]
    assert (tmp_path / "AEROSANDBOX_LICENSE.txt").read_text() == "MIT License\ntest\n"


def test_airfoils_dataset_split_is_fixed_and_disjoint():
    x_all, t_all = vk.data.airfoils()
    x_train, t_train = vk.data.airfoils("train")
    x_test, _ = vk.data.airfoils("test")
    assert (len(x_train), len(x_test)) == (1691, 423) and len(x_all) == 2114
    rows = {row.tobytes() for row in x_train}
    assert not any(row.tobytes() in rows for row in x_test)
    assert rows | {row.tobytes() for row in x_test} == {row.tobytes() for row in x_all}
    np.testing.assert_array_equal(t_all, shapes.airfoil_properties(x_all).thickness.astype(np.float32))
    assert t_train.dtype == np.float32
    with pytest.raises(vk.InputError, match=r"^split must be one of \['all', 'train', 'test'\]\. Got 'val' instead\.$"):
        vk.data.airfoils("val")


def test_run_config_trains_on_the_train_split_and_keeps_the_curve_shape():
    config = runfolder.validate_config({"data": {"name": "airfoils"}})
    assert config["model"]["standardize"] is True
    data, test = runfolder.load_data(config), runfolder.load_data(config, test=True)
    assert data.x.shape == (1691, 128) and test.x.shape == (423, 128)
    assert data.x_shape == (64, 2) and data.labels is None
    np.testing.assert_array_equal(data.x.reshape(-1, 64, 2), vk.data.airfoils("train")[0])
    model = runfolder.build_model(config, data)
    assert model.x_shape == (64, 2) and model.x_dim == 128
    assert model.sample(3).shape == (3, 64, 2)
    cond = runfolder.validate_config({"data": {"name": "airfoils", "condition": "label", "condition_type": "continuous"}})
    assert runfolder.load_data(cond).condition.shape == (1691, 1)


def test_npy_curves_keep_their_shape(tmp_path):
    curves = vk.data.airfoils("test")[0][:50]
    np.save(tmp_path / "shapes.npy", curves)
    table = vk.data.load_table(tmp_path / "shapes.npy")
    assert table.x_shape == (64, 2) and table.x.shape == (50, 128) and len(table.columns) == 128
    np.testing.assert_array_equal(table.x.reshape(-1, 64, 2), curves)
    config = runfolder.complete_config({"data": {"path": str(tmp_path / "shapes.npy")}})
    data = runfolder.load_data(config)
    assert data.x_shape == (64, 2)
    assert runfolder.build_model(config, data).x_shape == (64, 2)
    every = [str(i) for i in range(128)]
    np.testing.assert_array_equal(vk.data.load_table(tmp_path / "shapes.npy", every).x, table.x)  # as runs record it
    with pytest.raises(vk.InputError, match=r"Got columns=a list of 127 names and condition=None instead\.$"):
        vk.data.load_table(tmp_path / "shapes.npy", every[1:])


def test_a_run_on_npy_curves_keeps_their_shape_end_to_end(tmp_path):
    np.save(tmp_path / "shapes.npy", vk.data.airfoils("test")[0][:60])
    config = {
        "data": {"path": str(tmp_path / "shapes.npy")},
        "model": {"hidden": [16]},
        "training": {"epochs": 1},
        "evaluation": {"k": 2, "n_samples": 20, "permutations": 5, "quadrature_grid": 4},
    }
    run = vk.runs.train(config, tmp_path / "run")
    model = vk.load(tmp_path / "run")
    assert model.x_shape == (64, 2) and model.sample(2).shape == (2, 64, 2)
    # All 128 columns of the file: config.toml says so compactly (columns = [] means all), and
    # the run records the names themselves.
    assert runfolder.read_config(tmp_path / "run")["data"]["columns"] == []
    assert run.info["columns"] == [str(i) for i in range(128)]
