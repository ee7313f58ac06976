"""Property-based fuzzing: anything a user can hand vaekit either loads correctly or raises VaekitError.

Never a raw traceback from deep inside numpy/torch/safetensors, never a hang (each example runs
under a wall-clock alarm). Example counts are modest so the file runs in well under a minute.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import signal
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import vaekit as vk
from vaekit.conditions import condition_from_config
from vaekit.distributions import likelihood_from_config

# CI runs a fixed, modest set of examples; VAEKIT_FUZZ_EXAMPLES=2000 explores more (randomly).
_EXAMPLES = int(os.environ.get("VAEKIT_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=_EXAMPLES or 150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=not _EXAMPLES,
)
SECONDS_PER_EXAMPLE = 10


@contextlib.contextmanager
def no_hang(seconds: float = SECONDS_PER_EXAMPLE):
    """Fail (instead of hanging the suite) when the body runs longer than ``seconds``."""
    if sys.platform == "win32":  # pragma: no cover - no SIGALRM
        yield
        return

    def alarm(signum, frame):
        raise AssertionError(f"hung: took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def loads_or_refuses(call):
    """Run ``call``; return its result, or None when it raised one of vaekit's own errors."""
    with no_hang():
        try:
            return call()
        except vk.VaekitError:
            return None


# ---------------------------------------------------------------------------- strategies
NUMBER_TEXT = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**40), 10**40).map(str),
    st.sampled_from(["nan", "inf", "-inf", "1e39", "-1e-50", "0x10", "1_000", " 2.5 ", "", "NaN", "١٢"]),
)
CELL = st.one_of(NUMBER_TEXT, st.text(max_size=6), st.sampled_from(['"', "a,b", "\n", "\r\n", '""x""', "\x00", "\ufeff"]))
NAMES = st.text(min_size=0, max_size=4)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def csv_text(header: list[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


@st.composite
def csv_files(draw):
    header = draw(st.lists(NAMES, min_size=1, max_size=4))
    width = len(header)
    ragged = draw(st.booleans())
    row = st.lists(CELL, min_size=1 if ragged else width, max_size=width + 1 if ragged else width)
    rows = draw(st.lists(row, max_size=6))
    text = csv_text(header, rows)
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(text)))
        text = text[:cut]
    return header, text


def column_choice(header):
    names = st.sampled_from(header) | NAMES
    return st.none() | st.lists(names, max_size=3)


def check_table(table, path):
    assert isinstance(table, vk.data.Table)
    assert table.x.dtype == np.float32 and table.x.ndim == 2 and table.x.shape[0] >= 1
    assert table.x.shape[1] == len(table.columns) >= 1
    assert np.isfinite(table.x).all()
    if table.condition is not None:
        assert table.condition.dtype == np.float32 and table.condition.shape == (table.x.shape[0], len(table.condition_columns))
        assert np.isfinite(table.condition).all()


# ---------------------------------------------------------------------------- CSV / NPY loader
@FUZZ
@given(data=st.data())
def test_csv_loader_loads_or_raises_its_own_error(data):
    header, text = data.draw(csv_files())
    columns = data.draw(column_choice(header))
    condition = data.draw(st.none() | st.sampled_from(header) | NAMES)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "data.csv"
        path.write_text(text, encoding="utf-8", newline="")
        table = loads_or_refuses(lambda: vk.data.load_table(path, columns=columns, condition=condition))
        if table is not None:
            check_table(table, path)


@FUZZ
@given(st.binary(max_size=300), st.sampled_from([".csv", ".npy", ".txt", ""]))
def test_loader_survives_arbitrary_bytes(blob, suffix):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"data{suffix}"
        path.write_bytes(blob)
        table = loads_or_refuses(lambda: vk.data.load_table(path))
        if table is not None:
            check_table(table, path)


DTYPES = st.one_of(
    hnp.boolean_dtypes(),
    hnp.integer_dtypes(),
    hnp.unsigned_integer_dtypes(),
    hnp.floating_dtypes(),
    hnp.complex_number_dtypes(),
    hnp.unicode_string_dtypes(max_len=3),
    hnp.datetime64_dtypes(),
)


@st.composite
def npy_files(draw):
    array = draw(hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)))
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    blob = buffer.getvalue()
    mode = draw(st.sampled_from(["intact", "truncate", "flip"]))
    if mode == "truncate":
        blob = blob[: draw(st.integers(0, len(blob)))]
    elif mode == "flip" and blob:
        i = draw(st.integers(0, len(blob) - 1))
        blob = blob[:i] + bytes([blob[i] ^ draw(st.integers(1, 255))]) + blob[i + 1 :]
    return array, mode, blob


@FUZZ
@given(npy_files(), st.data())
def test_npy_loader_loads_or_raises_its_own_error(npy, data):
    array, mode, blob = npy
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "data.npy"
        path.write_bytes(blob)
        width = array.shape[1] if array.ndim == 2 else 1
        condition = data.draw(st.none() | st.sampled_from([str(i) for i in range(max(width, 1))]))
        table = loads_or_refuses(lambda: vk.data.load_table(path, condition=condition))
        if table is not None:
            check_table(table, path)
        if mode == "intact" and array.ndim == 2 and array.size and array.dtype.kind in "biuf":
            values = array.astype(np.float64)
            if np.isfinite(values).all() and (np.abs(values) <= np.finfo(np.float32).max).all():
                # A good numeric file loads, with the values it holds (unless nothing is left for x).
                keep = [i for i in range(width) if str(i) != condition]
                if keep:
                    assert table is not None
                    np.testing.assert_array_equal(table.x, values[:, keep].astype(np.float32))


# ---------------------------------------------------------------------------- arrays handed to the model
@FUZZ
@given(
    hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)),
    st.sampled_from([None, vk.OneHot(3), vk.Continuous(2)]),
    st.data(),
)
def test_model_inputs_are_checked_or_refused(array, condition, data):
    model = vk.VAE(2, 2, hidden=(4,), condition=condition, seed=0)
    c = None if condition is None else data.draw(hnp.arrays(DTYPES, hnp.array_shapes(max_dims=2, max_side=4)))
    with no_hang():
        try:
            qz = model.encode(array, c)
        except vk.VaekitError:
            return
    assert torch.isfinite(qz.mean).all() and qz.mean.shape == (array.shape[0], 2)


# ---------------------------------------------------------------------------- config parser
@FUZZ
@given(JSON | st.fixed_dictionaries({"type": st.sampled_from(["gaussian", "bernoulli", "x"])}, optional={"variance": JSON}))
def test_likelihood_config_parses_or_refuses(config):
    spec = loads_or_refuses(lambda: likelihood_from_config(config))
    if spec is not None:
        assert spec.to_config()["type"] == config["type"]
        assert likelihood_from_config(spec.to_config()) == spec  # round trip


@FUZZ
@given(
    JSON | st.fixed_dictionaries({"type": st.sampled_from(["onehot", "continuous"])}, optional={"n_classes": JSON, "dim": JSON})
)
def test_condition_config_parses_or_refuses(config):
    spec = loads_or_refuses(lambda: condition_from_config(config))
    if spec is not None:
        assert condition_from_config(spec.to_config()) == spec


VALID_CONFIG = vk.VAE(2, 2, hidden=(4,), seed=0).config


@st.composite
def mutated_configs(draw):
    config = json.loads(json.dumps(VALID_CONFIG))
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["set", "drop", "add", "int"]))
        key = draw(st.sampled_from(sorted(config) or ["x_dim"]))
        if action == "set":
            config[key] = draw(JSON)
        elif action == "drop":
            config.pop(key, None)
        elif action == "add":
            config[draw(st.text(max_size=6))] = draw(JSON)
        else:  # plausible type, implausible size: must not allocate before the file is checked
            config[key] = draw(st.integers(-3, 10**15) | st.lists(st.integers(-3, 10**12), max_size=3))
    return config


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz_model")
    vk.VAE(2, 2, hidden=(4,), seed=0).save(folder)
    return folder


@FUZZ
@given(mutated_configs())
def test_model_json_is_validated_before_any_tensor_is_built(saved_model, config):
    meta = json.loads((saved_model / "model.json").read_text())
    meta["config"] = config
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder)
        (target / "model.safetensors").write_bytes((saved_model / "model.safetensors").read_bytes())
        (target / "model.json").write_text(json.dumps(meta))
        model = loads_or_refuses(lambda: vk.load(target))
    if model is not None:
        # Keys added after vaekit 0.1 may be missing; their defaults mean what 0.1 files meant.
        added = {"prior": {"type": "standard_normal"}, "x_shape": None, "posterior": {"type": "diagonal"}}
        added |= {"encoder": {"type": "mlp"}, "decoder": None}
        assert model.config == {**added, **config}


@FUZZ
@given(st.binary(max_size=200), st.booleans())
def test_model_weights_bytes_never_crash_the_loader(saved_model, blob, keep_hash):
    import hashlib

    meta = json.loads((saved_model / "model.json").read_text())
    if keep_hash:
        meta["weights_sha256"] = hashlib.sha256(blob).hexdigest()  # get past the hash to the parser
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder)
        (target / "model.safetensors").write_bytes(blob)
        (target / "model.json").write_text(json.dumps(meta))
        assert loads_or_refuses(lambda: vk.load(target)) is None


# ---------------------------------------------------------------------------- checkpoints
X_SMALL, _ = vk.data.ring(n=64, seed=0)


@pytest.fixture(scope="module")
def checkpoint_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz_ckpt")
    vk.fit(vk.VAE(2, 2, hidden=(4,), seed=0), X_SMALL, epochs=2, batch_size=32, monitors={}, checkpoint_dir=folder)
    return folder


@st.composite
def mutated_manifests(draw, base):
    meta = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(sorted(meta)))
        action = draw(st.sampled_from(["set", "drop", "nested"]))
        if action == "set":
            meta[key] = draw(JSON)
        elif action == "drop":
            meta.pop(key)
        elif isinstance(meta[key], dict) and meta[key]:
            inner = draw(st.sampled_from(sorted(meta[key])))
            meta[key][inner] = draw(JSON)
    return meta


@FUZZ
@given(st.data())
def test_checkpoint_manifest_is_validated(checkpoint_run, data):
    base = json.loads((checkpoint_run / "checkpoint" / "checkpoint.json").read_text())
    meta = data.draw(mutated_manifests(base))
    assume(meta != base)
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "checkpoint"
        target.mkdir()
        for path in (checkpoint_run / "checkpoint").glob("state-*"):
            (target / path.name).write_bytes(path.read_bytes())
        (target / "checkpoint.json").write_text(json.dumps(meta))
        model = vk.VAE(2, 2, hidden=(4,), seed=0)

        def resume():
            return vk.fit(model, X_SMALL, epochs=3, batch_size=32, monitors={}, resume=folder)

        history = loads_or_refuses(resume)
    if history is not None:
        assert len(history) == 3 and all(math.isfinite(v) for v in history.loss)


# ---------------------------------------------------------------------------- fit arguments
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.floats(), st.text(max_size=3), st.just([1]), st.just(np.float32(0.1))
)


@FUZZ
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "epochs": SCALARS,
            "batch_size": SCALARS,
            "lr": SCALARS,
            "seed": SCALARS,
            "grad_clip": SCALARS,
            "weight_decay": SCALARS,
            "checkpoint_every": SCALARS,
            "val": SCALARS,
        },
    )
)
def test_fit_arguments_are_checked_or_refused(kwargs):
    kwargs.setdefault("epochs", 1)
    if isinstance(kwargs["epochs"], int) and not isinstance(kwargs["epochs"], bool):
        kwargs["epochs"] = min(kwargs["epochs"], 2)
    model = vk.VAE(2, 2, hidden=(4,), seed=0)
    history = loads_or_refuses(lambda: vk.fit(model, X_SMALL, monitors={}, **kwargs))
    if history is not None:
        assert 1 <= len(history) <= 2 and all(math.isfinite(v) for v in history.loss)
