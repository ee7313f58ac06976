"""The one value formatter, in the variants its callers use (report, CLI, sweep table, plot titles)."""

from __future__ import annotations

import importlib

import numpy as np

from vaekit.formatting import bound_text, format_value

plots = importlib.import_module("vaekit.plots")
VALUES = [1 / 3, 123456789.0, float("nan"), float("inf"), None, 1234, "text", [0.5, float("nan"), None], np.float64(0.123456789)]


def test_default_is_six_significant_digits_and_python_spellings():  # vaekit evaluate
    assert [format_value(v) for v in VALUES] == [
        "0.333333", "1.23457e+08", "nan", "inf", "None", "1234", "text", "[0.5, nan, None]", "0.123457",
    ]  # fmt: skip


def test_missing_replaces_none_and_non_finite_floats():  # report.html
    assert [format_value(v, missing="n/a") for v in VALUES] == [
        "0.333333", "1.23457e+08", "n/a", "n/a", "n/a", "1234", "text", "[0.5, n/a, n/a]", "0.123457",
    ]  # fmt: skip


def test_digits_and_flat_lists():  # SweepResult.format_table
    assert [format_value(v, 4, nested=False) for v in VALUES] == [
        "0.3333", "1.235e+08", "nan", "inf", "None", "1234", "text", "[0.5, nan, None]", "0.1235",
    ]  # fmt: skip
    assert format_value([1.0, 2.0], 4, nested=False) == "[1.0, 2.0]" and format_value([1.0, 2.0], 4) == "[1, 2]"


def test_plot_titles_give_every_element_three_digits():
    assert plots._fmt(np.array([[1.5, 2.25]], dtype=np.float32)) == "1.5, 2.25"
    assert plots._fmt(np.float32(0.1234567)) == "0.123"
    assert plots._fmt(1234) == "1.23e+03" and plots._fmt(np.array([True, False])) == "1, 0"


def test_bound_text_is_short_but_never_below_the_bound():
    assert bound_text(3.0) == "3"
    for value in (float(np.float32(0.1)), 1000000064.0, float(np.float32(123454321)), 1 / 3, 2.5e-12):
        text = bound_text(value)
        assert float(text) >= value, (value, text)
    assert bound_text(1000000064.0) == "1.0000001e+09"  # %g: 1e+09, and 1.00000006e+09 is below it too
    assert bound_text(float(np.float32(0.1))) == "0.1000000015"
