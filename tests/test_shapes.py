"""vaekit.shapes and vaekit.shape_metrics: properties, validity, roughness, MMD, reconstruction errors of curves."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest

import vaekit as vk
from airfoil_shapes import formula_properties, naca4, selig
from vaekit import shape_metrics, shapes
from vaekit.data.airfoil_files import normalise


def naca_shape(code: str, points: int = 64, n: int = 120) -> np.ndarray:
    upper, lower = naca4(code, n)
    return normalise(selig(upper, lower), Path(code), points)


def contour_shape(contour: np.ndarray) -> np.ndarray:
    """A (P, 2) shape whose contour (leading edge once) is ``contour`` (P - 1, 2)."""
    half = (len(contour) + 1) // 2
    return np.concatenate([contour[:half], contour[half - 1 :]])


def test_properties_of_a_dense_naca_0012_equal_the_formula():
    # 4000 points per surface: interpolation error is negligible; the formula's chord is the farthest-point chord.
    props = shapes.airfoil_properties(naca_shape("0012", points=8000, n=4001)[None])
    truth = formula_properties("0012")
    assert props.thickness[0] == pytest.approx(truth["thickness"], abs=2e-5)
    assert props.thickness_x[0] == pytest.approx(truth["thickness_x"], abs=0.005)  # the 401-station grid's spacing
    assert props.camber[0] == pytest.approx(0.0, abs=1e-12)


def test_properties_are_vertical_thickness_and_mean_line_of_a_hand_made_shape():
    # Upper y = 0.1 sin(pi x), lower y = -0.05 sin(pi x): thickness 0.15 and camber 0.025, both at x = 0.5.
    s = 0.5 * (1 - np.cos(np.linspace(0, np.pi, 200)))
    upper = np.stack([s, 0.1 * np.sin(np.pi * s)], 1)
    lower = np.stack([s, -0.05 * np.sin(np.pi * s)], 1)
    props = shapes.airfoil_properties(np.concatenate([upper[::-1], lower])[None])
    # Linear interpolation between points 0.008 apart: error <= y'' h^2 / 8 = 0.15 pi^2 0.008^2 / 8 = 1.2e-5.
    assert props.thickness[0] == pytest.approx(0.15, abs=1.5e-5)
    assert props.camber[0] == pytest.approx(0.025, abs=1.5e-5)
    assert props.thickness_x[0] == pytest.approx(0.5, abs=0.004)
    assert props.camber_x[0] == pytest.approx(0.5, abs=0.004)


def test_validity_accepts_naca_sections_and_names_each_defect():
    good = np.stack([naca_shape(code) for code in ("0012", "2412", "4415", "6409")])
    check = shapes.validity(good)
    assert check.valid.tolist() == [True] * 4 and check.counts == {}

    base = naca_shape("2412")
    crossed = base.copy()
    crossed[10:22, 1] *= -1  # the middle of the upper surface dips below the lower one
    backwards = base.copy()
    backwards[40, 0] = backwards[42, 0] + 0.01  # lower surface: x goes back by 0.01
    open_te = base.copy()
    open_te[0, 1] += 0.03  # upper trailing edge 3% chord above the lower one
    nan = base.copy()
    nan[5, 0] = np.nan
    flat = base.copy()
    flat[:, 1] = 0.0
    check = shapes.validity(np.stack([base, crossed, backwards, open_te, nan, flat]))
    assert check.valid.tolist() == [True, False, False, False, False, False]
    assert check.counts == {"crossed_surfaces": 1, "non_monotone_x": 1, "open_trailing_edge": 1, "non_finite": 1, "flat": 1}
    assert [check.first_reason(i) for i in range(6)] == [
        "",
        "crossed_surfaces",
        "non_monotone_x",
        "open_trailing_edge",
        "non_finite",
        "flat",
    ]


def test_validity_tolerances_are_the_documented_ones():
    base = naca_shape("0012")
    gaps = []
    for gap in (0.019, 0.021):
        s = base.copy()
        s[0, 1], s[-1, 1] = gap / 2, -gap / 2
        gaps.append(s)
    steps = []
    for step in (0.0019, 0.0021):
        s = base.copy()
        s[45, 0] = s[44, 0] - step
        steps.append(s)
    check = shapes.validity(np.stack(gaps + steps))
    assert check.valid.tolist() == [True, False, True, False]
    assert shapes.TE_GAP == 0.02 and shapes.X_BACKSTEP == 0.002


def test_roughness_is_zero_on_a_circle_and_16a2_on_a_zigzag():
    theta = np.linspace(0.2, 2.0 * np.pi - 0.2, 63)
    circle = contour_shape(np.stack([np.cos(theta), np.sin(theta)], 1))
    a = 0.1
    heading = np.where(np.arange(62) % 2 == 0, 0.0, a)  # turning angles +a, -a, +a, ...
    steps = 0.05 * np.stack([np.cos(heading), np.sin(heading)], 1)
    zigzag = contour_shape(np.concatenate([[[0.0, 0.0]], np.cumsum(steps, 0)]))
    rough = shapes.roughness(np.stack([circle, zigzag]))
    assert rough[0] == pytest.approx(0.0, abs=1e-24)
    assert rough[1] == pytest.approx(16 * a**2, rel=1e-9)


def test_roughness_grows_with_coordinate_noise():
    base = naca_shape("2412")
    rng = np.random.default_rng(0)
    noisy = [base + sigma * rng.standard_normal(base.shape) for sigma in (0.0, 1e-4, 1e-3)]
    rough = shapes.roughness(np.stack(noisy))
    assert rough[0] < rough[1] < rough[2]
    assert rough[2] > 10 * rough[0]


def test_mmd_is_near_zero_for_one_distribution_and_significant_for_a_shifted_one():
    train, _ = vk.data.airfoils("train")
    test, _ = vk.data.airfoils("test")
    rng = np.random.default_rng(0)  # random rows: the set is sorted by name, and families share name prefixes
    a, b = train[rng.choice(len(train), 300, replace=False)], test[rng.choice(len(test), 300, replace=False)]
    same, p_same = shape_metrics.mmd(a, a, permutations=100)
    assert abs(same) <= 2.0 / len(a)  # the unbiased estimate of identical samples: -(2/n) (1 - mean kernel)
    split, p_split = shape_metrics.mmd(a, b, permutations=200)
    assert p_split > 0.01  # a random split of one set: no evidence of a difference
    thicker = b * [1.0, 1.3]  # every y scaled: thickness and camber +30%
    shifted, p_shifted = shape_metrics.mmd(a, thicker, permutations=200)
    assert p_shifted == pytest.approx(1 / 201)  # beats every permutation
    assert shifted > 10 * abs(split)
    assert p_same == pytest.approx(1.0)


def test_reconstruction_errors_of_known_offsets():
    x = np.stack([naca_shape("0012"), naca_shape("4415")])
    out = shapes.reconstruction_errors(x, x + [0.03, 0.04])
    assert out["mean_point_error"] == pytest.approx(0.05, rel=1e-9)
    assert out["mean_max_point_error"] == pytest.approx(0.05, rel=1e-9)
    one = x.copy()
    one[0, 7] += [0.0, 0.1]
    one[1, 50] += [0.2, 0.0]
    out = shapes.reconstruction_errors(x, one)
    assert out["mean_point_error"] == pytest.approx(0.3 / (2 * 64), rel=1e-9)
    assert out["mean_max_point_error"] == pytest.approx(0.15, rel=1e-9)
    with pytest.raises(vk.InputError, match=r"^x_hat must have the shape of x \(2, 64, 2\)\. Got shape \(1, 64, 2\) instead\.$"):
        shapes.reconstruction_errors(x, x[:1])


def test_curve_metrics_keys_and_values_on_exact_reconstructions():
    data = vk.data.airfoils("test")[0][::4]
    out = shape_metrics.curve_metrics(data, data, data, permutations=20)
    assert sorted(out) == sorted(
        [
            "recon_mean_point_error",
            "recon_mean_max_point_error",
            "valid_fraction_data",
            "valid_fraction_samples",
            "roughness_data",
            "roughness_samples",
            "roughness_ratio",
            "thickness_data",
            "thickness_samples",
            "camber_data",
            "camber_samples",
            "mmd2",
            "mmd_p_value",
        ]
    )
    assert out["recon_mean_point_error"] == 0.0 and out["recon_mean_max_point_error"] == 0.0
    assert out["valid_fraction_data"] == 1.0 and out["valid_fraction_samples"] == 1.0
    assert out["roughness_ratio"] == pytest.approx(1.0)
    assert out["thickness_samples"] == out["thickness_data"]
    assert all(isinstance(v, float) for v in out.values())


def test_curve_metrics_say_when_no_sample_is_finite(caplog):
    data = np.stack([naca_shape("0012"), naca_shape("2412")])
    samples = np.full_like(data, np.nan)
    with caplog.at_level(logging.WARNING, logger="vaekit.shape_metrics"):
        out = shape_metrics.curve_metrics(data, data, samples)
    assert "0 of 2 samples are finite" in caplog.text
    assert out["valid_fraction_samples"] == 0.0
    assert math.isnan(out["mmd2"]) and math.isnan(out["roughness_ratio"])


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (None, vk.InputTypeError, "shapes must be an array of shape (N, P, 2). Got None instead."),
        (np.zeros((3, 64)), vk.InputError, "with an even number of points P >= 4. Got shape (3, 64) instead."),
        (np.zeros((3, 63, 2)), vk.InputError, "with an even number of points P >= 4. Got shape (3, 63, 2) instead."),
        (np.zeros((0, 64, 2)), vk.InputError, "shapes must hold at least one shape. Got shape (0, 64, 2) instead."),
    ],
)
def test_bad_shapes_are_refused(value, error, message):
    with pytest.raises(error) as info:
        shapes.validity(value)
    assert str(info.value).endswith(message)
