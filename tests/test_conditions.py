"""vaekit.conditions: the condition specs, their prepared tensors, broadcasting and JSON form.

The same checks seen through a model (``VAE.encode(x, condition)``) are in test_model.py.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

import vaekit as vk
from vaekit.conditions import broadcast_condition, condition_from_config
from vaekit.errors import InputError, InputTypeError


def _exact(message: str) -> str:
    """A pattern matching exactly ``message``."""
    return "^" + re.escape(message) + "$"


# ---------------------------------------------------------------------------- OneHot
@pytest.mark.parametrize(
    "labels",
    [
        np.array([2, 0, 1, 0]),
        np.array([[2], [0], [1], [0]]),
        [2.0, 0.0, 1.0, -0.0],
        torch.tensor([2, 0, 1, 0]),
    ],
    ids=["ints", "column", "integral-floats", "tensor"],
)
def test_onehot_prepare_gives_float32_one_hot_rows(labels):
    prepared = vk.OneHot(3).prepare(labels)
    expected = torch.tensor([[0, 0, 1], [1, 0, 0], [0, 1, 0], [1, 0, 0]], dtype=torch.float32)
    assert prepared.dtype == torch.float32
    assert torch.equal(prepared, expected)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([0, 0.5, 7], "condition must hold integer class labels for OneHot(3). Got the non-integer value 0.5 instead."),
        ([0, 1, 3, -1], "condition must hold labels in 0..2 for OneHot(3). Got the label 3 instead."),
        ([0, -1, 3], "condition must hold labels in 0..2 for OneHot(3). Got the label -1 instead."),
        (np.zeros((4, 2)), "condition must have 1 columns (shape (N, 1)). Got shape (4, 2) instead."),
        ([0, np.nan], "condition must be finite (no NaN or inf). Got 1 bad row(s), the first at row 1: [nan] instead."),
        (np.zeros(0), "condition must hold at least one row. Got an empty array of shape (0, 1) instead."),
    ],
    ids=["non-integer", "too-large", "negative", "two-columns", "nan", "empty"],
)
def test_onehot_prepare_refuses_with_its_message(labels, message):
    with pytest.raises(InputError, match=_exact(message)):
        vk.OneHot(3).prepare(labels)


def test_onehot_prepare_names_the_argument():
    with pytest.raises(InputError, match=_exact("labels must hold labels in 0..1 for OneHot(2). Got the label 2 instead.")):
        vk.OneHot(2).prepare([2], name="labels")


# ---------------------------------------------------------------------------- Continuous
@pytest.mark.parametrize(
    ("spec", "values", "expected"),
    [
        (vk.Continuous(1), np.array([1.5, -2.0]), [[1.5], [-2.0]]),
        (vk.Continuous(1), [[1.5], [-2.0]], [[1.5], [-2.0]]),
        (vk.Continuous(2, embed=0), np.array([[1.5, -2.0], [0.25, 3.0]]), [[1.5, -2.0], [0.25, 3.0]]),
        (vk.Continuous(2), torch.tensor([[1, 2]]), [[1.0, 2.0]]),
    ],
)
def test_continuous_prepare_gives_float32_rows(spec, values, expected):
    prepared = spec.prepare(values)
    assert prepared.dtype == torch.float32
    assert torch.equal(prepared, torch.tensor(expected, dtype=torch.float32))


@pytest.mark.parametrize(
    ("spec", "values", "message"),
    [
        (
            vk.Continuous(2),
            np.zeros(4),
            "condition must be a 2-D array of shape (N, 2). Got ndarray of shape (4,) and dtype float64 instead.",
        ),
        (vk.Continuous(2), np.zeros((4, 3)), "condition must have 2 columns (shape (N, 2)). Got shape (4, 3) instead."),
        (vk.Continuous(1), np.ones((4, 2)), "condition must have 1 columns (shape (N, 1)). Got shape (4, 2) instead."),
        (
            vk.Continuous(1),
            [1.0, np.inf, 0.0],
            "condition must be finite (no NaN or inf). Got 1 bad row(s), the first at row 1: [inf] instead.",
        ),
    ],
    ids=["vector-for-two-columns", "three-columns", "two-columns", "inf"],
)
def test_continuous_prepare_refuses_with_its_message(spec, values, message):
    with pytest.raises(InputError, match=_exact(message)):
        spec.prepare(values)


def test_continuous_prepare_refuses_non_numbers():
    with pytest.raises(
        InputTypeError, match=_exact("radius must hold numbers (float or int). Got an array of dtype <U1 instead.")
    ):
        vk.Continuous(1).prepare(np.array(["a"]), name="radius")


# ---------------------------------------------------------------------------- widths and embeddings
def test_widths_and_embedding_modules():
    onehot, raw, embedded = vk.OneHot(5), vk.Continuous(2, embed=0), vk.Continuous(2, embed=7)
    assert (onehot.in_features, onehot.embedding_dim) == (5, 5)
    assert (raw.in_features, raw.embedding_dim) == (2, 2)
    assert (embedded.in_features, embedded.embedding_dim) == (2, 7)
    assert type(onehot.embedding()) is nn.Identity
    assert type(raw.embedding()) is nn.Identity
    net = embedded.embedding()
    assert [type(m) for m in net] == [nn.Linear, nn.ReLU, nn.Linear]
    assert (net[0].in_features, net[0].out_features, net[2].in_features, net[2].out_features) == (2, 7, 7, 7)
    assert net(torch.zeros(3, 2)).shape == (3, 7)


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: vk.OneHot(1), InputError, "OneHot.n_classes must be an integer >= 2. Got 1 instead."),
        (lambda: vk.OneHot(2.0), InputTypeError, "OneHot.n_classes must be an integer >= 2. Got 2.0 instead."),
        (lambda: vk.Continuous(0), InputError, "Continuous.dim must be an integer >= 1. Got 0 instead."),
        (lambda: vk.Continuous(1, embed=-1), InputError, "Continuous.embed must be an integer >= 0. Got -1 instead."),
        (lambda: vk.Continuous(True), InputTypeError, "Continuous.dim must be an integer >= 1. Got True instead."),
    ],
)
def test_specs_refuse_bad_arguments(make, error, message):
    with pytest.raises(error, match=_exact(message)):
        make()


# ---------------------------------------------------------------------------- broadcast_condition
@pytest.mark.parametrize(
    ("spec", "value", "expected"),
    [
        (vk.OneHot(3), 2, [[2], [2], [2]]),
        (vk.OneHot(3), np.array([2]), [[2], [2], [2]]),
        (vk.OneHot(3), np.array([[2]]), [[2], [2], [2]]),
        (vk.OneHot(3), torch.tensor(2), [[2], [2], [2]]),
        (vk.Continuous(1), 1.5, [[1.5], [1.5], [1.5]]),
        (vk.Continuous(1), np.array([1.5]), [[1.5], [1.5], [1.5]]),
        # A scalar fills every column of a wider condition.
        (vk.Continuous(2), 1.5, [[1.5, 1.5], [1.5, 1.5], [1.5, 1.5]]),
        (vk.Continuous(2), np.array([1.5, -1.0]), [[1.5, -1.0], [1.5, -1.0], [1.5, -1.0]]),
        (vk.Continuous(2), [[1.5, -1.0]], [[1.5, -1.0], [1.5, -1.0], [1.5, -1.0]]),
        (vk.Continuous(2), torch.tensor([1.5, -1.0]), [[1.5, -1.0], [1.5, -1.0], [1.5, -1.0]]),
    ],
)
def test_broadcast_repeats_one_value_to_n_rows(spec, value, expected):
    out = broadcast_condition(spec, value, 3)
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, np.array(expected))
    assert torch.equal(spec.prepare(out), spec.prepare(np.array(expected)))


@pytest.mark.parametrize(
    ("spec", "value", "n"),
    [
        (vk.OneHot(3), np.array([0, 1, 2]), 3),  # one label per row
        (vk.OneHot(3), np.array([0, 1]), 3),  # the wrong number of rows: prepare's caller refuses it
        (vk.OneHot(3), np.array([2]), 1),  # already one row for one row
        (vk.Continuous(1), np.array([1.0, 2.0]), 2),
        (vk.Continuous(2), np.array([[1.0, 2.0], [3.0, 4.0]]), 2),
    ],
)
def test_broadcast_passes_one_row_per_sample_through_unchanged(spec, value, n):
    assert broadcast_condition(spec, value, n) is value


# ---------------------------------------------------------------------------- JSON form
@pytest.mark.parametrize(
    ("spec", "config"),
    [
        (vk.OneHot(8), {"type": "onehot", "n_classes": 8}),
        (vk.Continuous(2, embed=4), {"type": "continuous", "dim": 2, "embed": 4}),
        (vk.Continuous(1, embed=0), {"type": "continuous", "dim": 1, "embed": 0}),
    ],
)
def test_to_config_round_trips(spec, config):
    assert spec.to_config() == config
    assert condition_from_config(config) == spec


def test_from_config_fills_defaults_and_keeps_none():
    assert condition_from_config({"type": "continuous"}) == vk.Continuous(1, embed=16)
    assert condition_from_config(None) is None


@pytest.mark.parametrize(
    ("config", "error", "message"),
    [
        ("onehot", InputTypeError, "condition must be a table/dict with a 'type' key. Got 'onehot' instead."),
        ({"n_classes": 3}, InputError, "condition.type must be one of ['continuous', 'onehot']. Got None instead."),
        ({"type": "ordinal"}, InputError, "condition.type must be one of ['continuous', 'onehot']. Got 'ordinal' instead."),
        (
            {"type": "onehot", "n_classes": 3, "embed": 4},
            InputError,
            "condition (onehot) has unknown key(s) ['embed']; allowed keys are ['n_classes'].",
        ),
        (
            {"type": "onehot"},
            InputError,
            "condition (onehot) is missing required key(s) ['n_classes']. Got keys ['type'] instead.",
        ),
        ({"type": "continuous", "dim": True}, InputTypeError, "condition.dim must be of type int. Got True instead."),
        ({"type": "continuous", "embed": 1.5}, InputTypeError, "condition.embed must be of type int. Got 1.5 instead."),
        ({"type": "onehot", "n_classes": 1}, InputError, "OneHot.n_classes must be an integer >= 2. Got 1 instead."),
        ({"type": "continuous", "embed": -1}, InputError, "Continuous.embed must be an integer >= 0. Got -1 instead."),
    ],
)
def test_from_config_refuses_with_its_message(config, error, message):
    with pytest.raises(error, match=_exact(message)):
        condition_from_config(config)


def test_onehot_labels_are_checked_as_given_not_as_float32():
    # float32 would turn 0.99999999 into 1.0 (accepted silently) and show 0.1 as 0.10000000149011612.
    with pytest.raises(InputError, match=r"Got the non-integer value 0.99999999 instead"):
        vk.OneHot(3).prepare(np.array([2.0, 0.99999999]))
    with pytest.raises(InputError, match=r"Got the non-integer value 0.1 instead"):
        vk.OneHot(3).prepare([0.1])
    assert vk.OneHot(3).prepare(np.array([2.0, 1.0])).argmax(1).tolist() == [2, 1]
