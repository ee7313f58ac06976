"""Run folders: their config schema, data, model builders and files (everything but training).

The layer the report and the pipelines share: :mod:`vaekit.report` reads run folders with it,
and :mod:`vaekit.runs` (``vk.runs.train``) trains configs into them. Every public name here is
also reachable as ``vaekit.runs.<name>``.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import math
import os
import shutil
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from vaekit import data as vkdata
from vaekit import design, model_settings
from vaekit.conditions import Continuous
from vaekit.configs import check_type
from vaekit.distributions import support_text
from vaekit.errors import FileFormatError, InputError, InputTypeError, describe
from vaekit.formatting import bound_text
from vaekit.io import atomic_write_bytes, atomic_write_text, fsync_dir
from vaekit.streaming import NpyBlocks, column_range, should_stream
from vaekit.trainer import validation_rows

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

CONFIG, RUN_INFO, HISTORY, METRICS, FIGURES, REPORT = (
    "config.toml",
    "run.json",
    "history.csv",
    "metrics.json",
    "figures",
    "report.html",
)
PARTIAL_SUFFIX = ".partial"
# What train() tells its ``status`` callback as it moves on.
STAGE_TRAINING = "training"
STAGE_RESULTS = "computing metrics, figures and report.html"

logger = logging.getLogger(__name__)

# Section -> key -> (annotation, default). TOML has no null, so "off" is 0 or "". The [model]
# section is not listed here: vaekit.model_settings derives it from the model and spec registries.
SCHEMA: dict[str, dict[str, tuple[Any, Any]]] = {
    "data": {
        "name": (str, "ring"),  # a built-in dataset (vaekit.data.DATASETS) ...
        "path": (str, ""),  # ... or a CSV / .npy / .parquet file (exactly one of the two)
        "n": (int, 2000),  # built-in generators: number of points
        "seed": (int, 0),  # built-in generators: data seed
        "options": (dict, {}),  # built-in generators: extra keyword arguments (modes, radius, ...)
        "columns": (list[str], []),  # files: data columns (empty: all but the condition, label and excluded ones)
        "condition": (str, ""),  # "label" / "radius" for built-ins, a column name for files
        "condition_type": (Literal["onehot", "continuous"], "onehot"),
        "exclude": (list[str], []),  # files: columns that are not data (ids, names, ...)
        "label": (str, ""),  # files: a column that colours the plots; never trained on or conditioned on
        # files: data columns modelled as log(x + log_offset) (Gaussian likelihood); "auto": decade_columns()
        "log_columns": (list[str] | Literal["auto"], []),
        "log_offset": (float, 0.0),  # the offset of the log columns (1 for counts with zeros)
        "header": (bool | Literal["auto"], "auto"),  # CSV files: first row holds names ("auto": unless all numbers)
        "stream": (bool | Literal["auto"], "auto"),  # .npy files: train from disk in blocks ("auto": when large)
        "test_path": (str, ""),  # held-out data: a file with the training data's columns ...
        "test_fraction": (float, 0.0),  # ... or this share of the training data, held out (0: neither)
        "split_seed": (int, 0),  # seed of the test_fraction split
    },
    "training": {
        "epochs": (int, 400),
        "batch_size": (int, 256),
        "batches_per_epoch": (int, 0),  # few rows: batch_size ceil(rows / this), up to batch_size (0: off)
        "lr": (float, 1e-3),
        "seed": (int, 0),  # initial weights, shuffling and noise
        "objective": (Literal["elbo", "iwae", "vq"], "elbo"),  # unset: the model's default (vq for vqvae)
        "beta": (float, 1.0),
        "warmup_epochs": (int, 0),
        "free_bits": (float, 0.0),
        "iwae_k": (int, 5),
        "commitment": (float, 0.25),  # vq: weight of the commitment term
        "ema": (float, 0.0),  # vq: EMA decay of the codebook in (0, 1); 0: codebook learned by gradient
        "val_fraction": (float | Literal["auto"], 0.0),  # 0: no validation split; "auto": see AUTO_VAL_FRACTION
        "patience": (int, 0),  # early stopping on val_loss; 0: off
        "grad_clip": (float, 0.0),  # 0: off
        "weight_decay": (float, 0.0),
        "device": (str, "cpu"),
        "precision": (Literal["float32", "bf16"], "float32"),  # bf16: autocast of the training forward passes
        "checkpoint_every": (int, 0),  # 0: fit's default
        "threads": (int, 0),  # torch CPU threads during the run; 0: torch's default
    },
    "evaluation": {  # settings of vaekit.metrics.evaluate (metrics.json)
        "k": (int, 100),  # importance samples of the IWAE estimate
        "n_samples": (int, 2000),  # model samples for the sample-quality metrics
        "quadrature_grid": (int, 0),  # cells per axis of the 2-D quadrature; 0: 200 for 2-D data, 60 otherwise
        "permutations": (int, 200),  # permutations of the MMD test
    },
}

# Batches per epoch of a user's file (unless it gives batch_size): batch size ceil(rows / 10), up
# to 256, so 400 epochs are about 4000 optimiser steps, as for a table of 2,560 rows or more. In
# one batch of 256 (400 steps) iris lost to PPCA with a latent dimension collapsed; 4000 epochs of
# one batch overfitted wine and linnerud badly; see README "vaekit vs PCA".
USER_BATCHES_PER_EPOCH = 10
# A user's file also gets val_fraction = "auto" (unless val_fraction is given): when
# AUTO_VAL_FRACTION of its training rows make at least MIN_VAL_ROWS, they are held out for
# validation and training stops when their loss has not improved for AUTO_PATIENCE epochs,
# keeping the best epoch. It cut overfitting (held-out NLL, median of 3 seeds: star98 199.5 -> 120.0
# at z = 2, 152.8 -> 117.0 at z = 5; wine at z = 5 20.8 -> 18.7); a split of 2 or 3 rows decides
# by noise (README "vaekit vs PCA").
AUTO_VAL_FRACTION = 0.2
AUTO_PATIENCE = 40
MIN_VAL_ROWS = 10

# A file's column list up to this long is written out in config.toml and in messages; a longer one
# (784 pixels) is written as "all columns" (columns = []) with the excluded ones, which selects the
# same columns, and messages show its first LONG_COLUMN_LIST names.
LONG_COLUMN_LIST = 20

BUILTIN_CONDITIONS = ("label", "radius")
# Built-in datasets of curves (N, P, 2): their conditions may also be shape properties (vaekit.design).
CURVE_DATASETS = ("airfoils",)
RING_KEYS = ("modes", "radius", "std")


# ---------------------------------------------------------------------------- config
SECTIONS = ("data", "model", "training", "evaluation")


def default_config() -> dict[str, dict[str, Any]]:
    """A fresh copy of every default setting (the lecture's ring recipe)."""
    out = {section: {k: _copy(v[1]) for k, v in keys.items()} for section, keys in SCHEMA.items()}
    out["model"] = model_settings.complete({}, None, "defaults")
    return {section: out[section] for section in SECTIONS}


def section_schema(section: str) -> dict[str, tuple[Any, Any]]:
    """Key -> (annotation, default) of a section; for [model], every key of every model and spec kind."""
    if section == "model":
        return {key: (s.annotation, s.default) for key, s in model_settings.all_settings().items()}
    return SCHEMA[section]


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else dict(value) if isinstance(value, dict) else value


# The built-in airfoils' defaults (validate_config), each overridden by an explicit setting.
AIRFOIL_MODEL: dict[str, Any] = {
    "x_shape": [64, 2],
    "z_dim": 6,
    "encoder": "pca",
    "standardize": True,
    "standardize_scale": "global",
    "variance": "learned",
    "constraint": "airfoil",
}
AIRFOIL_TRAINING: dict[str, Any] = {"epochs": 1000}


def validate_config(config: Any, *, source: str = "config") -> dict[str, dict[str, Any]]:
    """Check a (partial) config against :data:`SCHEMA`; return it complete, with defaults filled in.

    The defaults are the lecture's ring recipe, except for data that it does not fit: digits get
    a Bernoulli likelihood, airfoils ``standardize = true``, and a user's file (``[data] path``)
    ``standardize = true``, ``variance = "learned"``, ``df = "learned"`` (Student's t), ``batches_per_epoch =``
    :data:`USER_BATCHES_PER_EPOCH` unless ``batch_size`` or ``batches_per_epoch`` is given, and
    ``val_fraction = "auto"`` unless ``val_fraction`` is given, and ``[data] log_columns = "auto"``
    unless ``log_columns`` is given (see :func:`apply_auto_validation`, :func:`apply_batches_per_epoch`
    and :func:`apply_auto_log_columns`, which :func:`vaekit.runs.train` calls once the rows are known).

    Raises
    ------
    InputError, InputTypeError
        An unknown section or key, a value of the wrong type or out of range; the message names
        ``source`` and the key (e.g. ``[training] epochs``).

    """
    if not isinstance(config, dict):
        raise InputTypeError(f"{source} must be a table of sections {sorted(SECTIONS)}. Got {describe(config)} instead.")
    unknown = sorted(set(config) - set(SECTIONS))
    if unknown:
        raise InputError(f"{source} has unknown section(s) {unknown}; allowed sections are {sorted(SECTIONS)}.")
    out = default_config()
    out["model"] = {}
    for section, values in config.items():
        if not isinstance(values, dict):
            raise InputTypeError(f"{source}: [{section}] must be a table. Got {describe(values)} instead.")
        schema = section_schema(section)
        bad = sorted(set(values) - set(schema))
        if bad:
            raise InputError(f"{source}: [{section}] has unknown key(s) {bad}; allowed keys are {sorted(schema)}.")
        for key, value in values.items():
            annotation = schema[key][0]
            try:
                check_type(value, annotation, f"{source}: [{section}] {key}")
            except InputTypeError:
                # A word outside the allowed ones is a bad value; anything else a bad type.
                error = InputError if typing.get_origin(annotation) is Literal and isinstance(value, str) else InputTypeError
                raise error(
                    f"{source}: [{section}] {key} must be {_expected(annotation)}. Got {describe(value)} instead."
                ) from None
            if isinstance(value, int) and not isinstance(value, bool) and annotation is not int:
                value = float(value)  # TOML `beta = 1` means 1.0
            out[section][key] = _copy(value)
        if section == "data" and values.get("path") and "name" not in values:
            out["data"]["name"] = ""  # a file replaces the default built-in dataset
    if out["data"]["path"] and "val_fraction" not in config.get("training", {}):
        # A user's file: early stopping when the rows allow a validation split; train() decides
        # (apply_auto_validation). Set before the checks, so that a given patience alone is accepted.
        out["training"]["val_fraction"] = "auto"
    if out["data"]["path"] and "log_columns" not in config.get("data", {}):
        # A user's file: columns that span decades on a log scale; train() chooses them from the
        # training rows (apply_auto_log_columns). Held out, it lowered the NLL in 64 of 69 runs (23
        # (table, z) pairs x 3 seeds) and beat PPCA in all 69, where the runs without it lost 10
        # (Florida, seizure, Bids once; README "Columns that span decades", benchmarks/log_columns.py).
        out["data"]["log_columns"] = "auto"
    _check_ranges(out, source)
    d = out["data"]
    if d["name"] == "digits" and "likelihood" not in out["model"]:
        out["model"]["likelihood"] = "bernoulli"  # the digits are grey levels in [0, 1]
    if d["name"] == "airfoils":
        # Measured on the held-out airfoils against PCA at 4, 6 and 8 components (README,
        # "Airfoils: vaekit vs PCA"): start from PCA and learn a residual, one scale for x and y
        # (chord units keep their geometry), a learned variance, every decoded shape a valid
        # airfoil, and the longer schedule the residual needs.
        m = out["model"]
        if m.get("type", "vae") == "vae" and m.get("likelihood", "gaussian") == "gaussian":
            for key, value in AIRFOIL_MODEL.items():
                m.setdefault(key, value)
            for key, value in AIRFOIL_TRAINING.items():
                if key not in config.get("training", {}):
                    out["training"][key] = value
        else:  # another model kind: only what applies to every kind
            m.setdefault("standardize", True)  # y spans about 0.1 chord: a variance of 0.1 would drown it
    if d["path"] and out["model"].get("likelihood", "gaussian") == "gaussian":
        # A user's file: columns in their own units and scales. Standardised inputs and a learned
        # variance beat probabilistic PCA on held-out data where the lecture's fixed variance of
        # 0.1 in raw units lost by 1000x (README: "vaekit vs PCA"); the ring keeps the lecture's recipe.
        out["model"].setdefault("standardize", True)
        out["model"].setdefault("variance", "learned")
        # Student's t tails: a held-out row far outside the training range costs a multiple of the
        # log of its distance, not its square, and no longer outweighs the others. Held out on 58
        # small (table, z) pairs x 5 splits it beat PPCA in 221 runs of 290 where the Gaussian did
        # in 206, and the tables of 48 rows or more kept beating it (README "Heavy tails" and
        # "vaekit vs PCA").
        out["model"].setdefault("df", "learned")
    if d["path"] and not {"batch_size", "batches_per_epoch"} & set(config.get("training", {})):
        # A user's file of few rows: 400 epochs are 400 steps when all rows fit in one batch; see
        # USER_BATCHES_PER_EPOCH. A batch size that the user gives wins; train() turns this into batch_size.
        out["training"]["batches_per_epoch"] = USER_BATCHES_PER_EPOCH
    out["model"] = model_settings.complete(out["model"], d["condition_type"] if d["condition"] else None, source)
    if "objective" not in config.get("training", {}):  # the model's own objective (vq for a VQ-VAE)
        cls = model_settings.model_kinds()[out["model"][model_settings.MODEL_KEY]]
        out["training"]["objective"] = getattr(cls, "default_objective", "elbo")
    return out


_EXPECTED = {int: "an integer", float: "a number", str: "a string", bool: "true or false", dict: "a table"}
_EXPECTED |= {list[int]: "a list of integers", list[str]: "a list of strings", bool | Literal["auto"]: "true, false or 'auto'"}
_EXPECTED |= {list[str] | Literal["auto"]: "a list of strings or 'auto'"}


def _expected(annotation: Any) -> str:
    if annotation in _EXPECTED:
        return _EXPECTED[annotation]
    if typing.get_origin(annotation) is Literal:
        return f"one of {list(typing.get_args(annotation))}"
    words = [a for part in typing.get_args(annotation) if typing.get_origin(part) is Literal for a in typing.get_args(part)]
    return f"a number or one of {words}"  # float | Literal[...]


def _check_ranges(config: dict[str, dict[str, Any]], source: str) -> None:
    d, t = config["data"], config["training"]
    if bool(d["name"]) == bool(d["path"]):
        raise InputError(
            f"{source}: [data] needs exactly one of name (a built-in dataset) and path (a file). "
            f"Got name={d['name']!r} and path={d['path']!r} instead."
        )
    if d["name"] and d["name"] not in vkdata.DATASETS:
        raise InputError(f"{source}: [data] name must be one of {sorted(vkdata.DATASETS)}. Got {d['name']!r} instead.")
    if d["name"]:
        given = [f"{key}={d[key]!r}" for key in ("exclude", "label", "log_columns") if d[key]] + (
            [f"header={d['header']!r}"] * (d["header"] != "auto")
        )
        if given:
            raise InputError(
                f"{source}: [data] exclude, label, log_columns and header apply to files (path), not to the built-in dataset "
                f"{d['name']!r}. Got {', '.join(given)} instead."
            )
    if d["stream"] is True and Path(d["path"]).suffix.lower() != ".npy":
        raise InputError(
            f"{source}: [data] stream = true reads a .npy file in blocks (convert a CSV with 'vaekit convert'). "
            f"Got {'the built-in dataset ' + repr(d['name']) if d['name'] else d['path']} instead."
        )
    if not math.isfinite(d["log_offset"]):
        raise InputError(f"{source}: [data] log_offset must be a finite number. Got {d['log_offset']} instead.")
    if d["log_offset"] != 0.0 and not d["log_columns"]:
        raise InputError(
            f"{source}: [data] log_offset (--log-offset) applies to log_columns (--log-columns): without them it must be 0. "
            f"Got {d['log_offset']:g} instead."
        )
    if t["threads"] < 0:
        raise InputError(
            f"{source}: [training] threads must be an integer >= 1 (0: torch's default). Got {t['threads']} instead."
        )
    _check_condition(d, source)
    minimum = {"n": 1, "epochs": 1, "batches_per_epoch": 0, "batch_size": 1, "warmup_epochs": 0}
    minimum |= {"iwae_k": 1, "patience": 0, "checkpoint_every": 0, "k": 1, "n_samples": 2, "quadrature_grid": 0}
    minimum |= {"permutations": 1}
    for name, section in config.items():
        for key, value in section.items():
            if name != "model" and key in minimum and value < minimum[key]:
                raise InputError(f"{source}: {key} must be an integer >= {minimum[key]}. Got {value} instead.")
    if not (math.isfinite(t["lr"]) and t["lr"] > 0):
        raise InputError(f"{source}: lr must be a finite number > 0. Got {t['lr']} instead.")
    for key in ("beta", "free_bits", "grad_clip", "weight_decay"):
        if not (math.isfinite(t[key]) and t[key] >= 0):
            raise InputError(f"{source}: [training] {key} must be a finite number >= 0. Got {t[key]} instead.")
    if not (math.isfinite(t["commitment"]) and t["commitment"] >= 0):
        raise InputError(f"{source}: [training] commitment must be a finite number >= 0. Got {t['commitment']} instead.")
    if not 0.0 <= t["ema"] < 1.0:
        raise InputError(f"{source}: [training] ema must be in [0, 1) (0: off). Got {t['ema']} instead.")
    if not 0.0 <= d["test_fraction"] < 1.0:
        raise InputError(f"{source}: [data] test_fraction must be in [0, 1) (0: off). Got {d['test_fraction']} instead.")
    if d["test_fraction"] and d["test_path"]:
        raise InputError(
            f"{source}: [data] needs at most one of test_path (--test-data) and test_fraction (--test-fraction). "
            f"Got test_path={d['test_path']!r} and test_fraction={d['test_fraction']} instead."
        )
    if t["val_fraction"] != "auto" and not 0.0 <= t["val_fraction"] < 1.0:
        raise InputError(f"{source}: [training] val_fraction must be in [0, 1) or 'auto'. Got {t['val_fraction']} instead.")
    if t["patience"] and not t["val_fraction"]:
        raise InputError(f"{source}: [training] patience (early stopping) needs val_fraction > 0. Got val_fraction=0 instead.")


def _check_condition(d: dict[str, Any], source: str) -> None:
    """The ``[data] condition``: a built-in's own condition, a column of a file, or shape properties of curves."""
    condition = d["condition"]
    if not condition:
        return
    shape_names = [part.strip() for part in condition.split(",")]
    if design.is_property_condition(condition) or (len(shape_names) > 1 and set(shape_names) & set(design.PROPERTIES)):
        design.property_names(condition, f"{source}: [data] condition")
        if d["condition_type"] != "continuous":
            raise InputError(
                f"{source}: [data] condition {condition!r} is computed from the shapes: its type must be continuous "
                f"(--condition {condition}:continuous). Got {d['condition_type']!r} instead."
            )
        if d["name"] and d["name"] not in CURVE_DATASETS:
            raise InputError(
                f"{source}: [data] condition {condition!r} is a shape property of curve data (the built-in "
                f"{list(CURVE_DATASETS)} or an .npy of shape (N, P, 2)). Got the built-in dataset {d['name']!r} instead."
            )
        return
    if d["name"] and condition not in BUILTIN_CONDITIONS:
        shapes = f" or shape properties {list(design.PROPERTIES)}" if d["name"] in CURVE_DATASETS else ""
        raise InputError(
            f"{source}: [data] condition for a built-in dataset must be one of {list(BUILTIN_CONDITIONS)}{shapes}. "
            f"Got {condition!r} instead."
        )


def read_config(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read and validate a ``config.toml`` (or the one in run folder ``path``); see :func:`validate_config`."""
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG
    return validate_config(read_toml(path), source=str(path))


def read_config_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """The sections of a TOML settings file as written (no defaults added), checked against :data:`SCHEMA`.

    Mistakes are reported against the file. A relative ``[data] path`` is made absolute,
    relative to the file's folder, so the file means the same from any working directory.
    """
    source = str(path)
    raw = read_toml(path)
    validate_config(raw, source=source)
    sections = {section: dict(values) for section, values in raw.items()}
    data = sections.get("data", {})
    for key in ("path", "test_path"):
        if data.get(key) and not Path(data[key]).is_absolute():
            data[key] = str((Path(path).parent / data[key]).resolve())
    return sections


def complete_config(config: Any, *, source: str = "config") -> dict[str, dict[str, Any]]:
    """:func:`validate_config`, plus the two conveniences of ``vaekit train``.

    A relative ``[data] path`` becomes absolute (relative to the working directory), so the
    config.toml of the run works from anywhere; digits data default to a Bernoulli likelihood
    unless ``[model] likelihood`` is given (that one is :func:`validate_config`'s).
    """
    complete = validate_config(config, source=source)
    for key in ("path", "test_path"):
        path = complete["data"][key]
        if path and not Path(path).is_absolute():
            complete["data"][key] = str(Path(path).resolve())
    return complete


# The first line of every config.toml a run writes (config_text): such a file records every
# setting its run had, so a key it lacks is one that did not exist yet (see read_toml).
RUN_CONFIG_HEADER = "# vaekit run configuration: every setting of this run.\n"


def config_text(config: dict[str, dict[str, Any]]) -> str:
    """TOML text of ``config`` with a header that says how to re-run it."""
    import tomli_w

    return RUN_CONFIG_HEADER + "# Re-run it with: vaekit train --config config.toml --out NEW_DIR\n\n" + tomli_w.dumps(config)


def write_config(path: str | Path, config: dict[str, dict[str, Any]]) -> None:
    """Write ``config`` as TOML, atomically."""
    atomic_write_text(path, config_text(config))


# ---------------------------------------------------------------------------- data
@dataclass
class RunData:
    """Data described by a config's ``[data]`` section.

    Attributes
    ----------
    x : float32 (N, D)
    condition : float32 (N, C) / int64 (N,) labels, or None
    labels : int64 (N,) class labels for colouring plots (dataset labels or one-hot codes), or None
    columns : names of the D data columns
    label_names : names of the one-hot classes (text labels of a file), or None
    description : one line saying where the data came from
    x_shape : the shape of one point when it is not flat (curves (P, 2), images), else None;
        ``x`` holds the points flattened, and :func:`build_model` gives the model this shape
    label_classes : names of the codes of a text ``[data] label`` column, or None
    has_header : False when a CSV file's first row was read as data (no header row)
    held_out : True for test data the model was not trained on (``load_data(test=True)``), False
        for its training data, None where it is not known (data given to ``vaekit evaluate --data``)
    stream : a :class:`vaekit.NpyBlocks` that training reads instead of ``x`` (a .npy too large for
        memory, ``[data] stream``); ``x`` then holds a sample of its rows for metrics and figures
    rows : int64 (N,), the rows of the whole data set (from 0) that ``x`` holds when it is a part of
        it (a ``test_fraction`` split, a streamed file's sample), else None: ``x`` holds them all, in order

    """

    x: np.ndarray
    condition: np.ndarray | None
    labels: np.ndarray | None
    columns: list[str]
    label_names: list[str] | None = None
    description: str = ""
    x_shape: tuple[int, ...] | None = None
    label_classes: list[str] | None = None
    has_header: bool = True
    held_out: bool | None = False
    stream: Any = None
    rows: np.ndarray | None = None


# Held-out data when neither test_path nor test_fraction is set and no fresh sample can be drawn.
NO_HELD_OUT = "no held-out data: these numbers are on the training data (use --test-data FILE or --test-fraction F)"


def load_data(config: dict[str, dict[str, Any]], *, test: bool = False) -> RunData:
    """Load the training data of ``config["data"]``, or with ``test=True`` its held-out data.

    The held-out data are, in this order: the file ``test_path`` (read with the training data's
    columns and condition); the ``test_fraction`` share of the rows, drawn with ``split_seed``
    (the training data are then the other rows, in their order); a fresh sample with
    ``seed + 1`` from a built-in generator that takes a seed, or the "test" part of a fixed
    built-in set with a ``split`` (the airfoils; it never overlaps the "train" part). Otherwise ``test=True`` returns the
    training data themselves with ``held_out`` False, and callers must say so (:data:`NO_HELD_OUT`).
    """
    d = config["data"]
    if test and d["test_path"]:
        return _load_test_file(d, load_data(config))
    data = _load_file(d) if d["path"] else _generate(d, test=test and not d["test_fraction"])
    if d["test_fraction"] and data.stream is not None:
        raise InputError(
            f"[data] test_fraction needs the rows of {d['path']} in memory, but the file is streamed ([data] stream). "
            "Got test_fraction > 0 instead: hold out a separate file with --test-data (test_path)."
        )
    if d["test_fraction"]:
        train, held = split_rows(len(data.x), d["test_fraction"], d["split_seed"])
        part = held if test else train
        which = f"test part ({len(held)} rows)" if test else f"training part ({len(train)} rows)"
        where = f"test_fraction={d['test_fraction']:g}, split_seed={d['split_seed']}"
        return _rows_of(data, part, f"{data.description}: {which} of the split {where}", held_out=test)
    return data


def split_rows(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint sorted row indices (train, test) covering range(n); the test side has round(fraction * n) rows.

    The same (n, fraction, seed) give the same split on every machine (numpy's PCG64).
    """
    n_test = int(round(n * fraction))
    if n_test < 2 or n - n_test < 2:
        raise InputError(
            f"[data] test_fraction={fraction:g} of {n} rows must leave at least 2 rows on each side of the split. "
            f"Got {n - n_test} training and {n_test} test rows instead."
        )
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def _rows_of(data: RunData, rows: np.ndarray, description: str, *, held_out: bool) -> RunData:
    pick = None if data.condition is None else data.condition[rows]
    labels = None if data.labels is None else data.labels[rows]
    return dataclasses.replace(
        data, x=data.x[rows], condition=pick, labels=labels, description=description, held_out=held_out, rows=rows
    )


def _load_test_file(d: dict[str, Any], train: RunData) -> RunData:
    """The held-out file ``test_path`` with the training data's columns, condition and label codes."""
    try:
        test = _load_file({**d, "path": d["test_path"], "columns": list(train.columns)})
    except (InputError, FileFormatError) as err:
        raise type(err)(f"[data] test_path (--test-data) {d['test_path']}: {err}") from None
    if test.x.shape[1] != train.x.shape[1]:
        raise InputError(
            f"[data] test_path (--test-data) {d['test_path']} must have the training data's {train.x.shape[1]} columns "
            f"{train.columns}. Got {test.x.shape[1]} columns {test.columns} instead."
        )
    if test.label_names is not None and train.label_names is not None and test.label_names != train.label_names:
        raise InputError(
            f"[data] test_path (--test-data) {d['test_path']} must have the training data's labels {train.label_names} "
            f"in column {d['condition']!r}. Got {test.label_names} instead."
        )
    test.held_out = True
    return test


def _stream_file(d: dict[str, Any]) -> RunData:
    """A .npy file trained on in blocks (``stream``), with a seeded sample of its rows in ``x``."""
    source = NpyBlocks(d["path"])
    every = [str(i) for i in range(source.row_items)]  # a .npy's column names, as load_table gives them
    given = [f"{key}={d[key]!r}" for key in ("condition", "exclude", "label") if d[key]]
    given += [f"columns={d['columns']!r}"] * (bool(d["columns"]) and list(d["columns"]) != every)
    if given:
        raise InputError(
            f"[data] stream reads whole rows of {d['path']} from disk: a choice of columns, a condition, exclude and "
            f"label need the file in memory (use [data] stream = false, or save only the data columns). "
            f"Got {', '.join(given)} instead."
        )
    rows = np.sort(np.random.default_rng(0).choice(source.n, min(source.n, STREAM_SAMPLE_ROWS), replace=False))
    x = _finite_float32(source.rows(rows).reshape(len(rows), -1), d["path"])
    description = f"{d['path']} ({source.n} rows, streamed in blocks; metrics and figures on {len(rows)} of them)"
    x_shape = source.row_shape if len(source.row_shape) > 1 else None
    return RunData(x, None, None, every, None, description, x_shape, stream=source, rows=rows)


def _finite_float32(x: np.ndarray, path: str) -> np.ndarray:
    out = x.astype(np.float32)
    if not np.isfinite(out).all():
        raise FileFormatError(f"{path} holds NaN or infinite values (or values beyond float32).")
    return out


def _generate(d: dict[str, Any], *, test: bool) -> RunData:
    """A built-in dataset's sample (with ``seed + 1`` when ``test`` and the generator takes a seed)."""
    fn = vkdata.DATASETS[d["name"]]
    params = inspect.signature(fn).parameters
    kwargs: dict[str, Any] = {}
    for key, value in d["options"].items():
        if key in ("n", "seed") or key not in params:
            allowed = sorted(set(params) - {"n", "seed"})
            raise InputError(f"[data] options.{key} is not an option of dataset {d['name']!r}; its options are {allowed}.")
        kwargs[key] = value
    if "n" in params:
        kwargs["n"] = d["n"]
    seed = d["seed"] + (1 if test else 0)
    if "seed" in params:
        kwargs["seed"] = seed
    if "split" in params:
        kwargs["split"] = "test" if test else "train"
    x, y = fn(**kwargs)
    x_shape = tuple(x.shape[1:]) if x.ndim > 2 else None
    x = x.reshape(len(x), -1)
    labels = y if np.issubdtype(y.dtype, np.integer) else None
    condition = None
    if d["condition"] == "label":
        condition = y.astype(np.int64) if d["condition_type"] == "onehot" else y.astype(np.float32).reshape(-1, 1)
        if d["condition_type"] == "onehot" and labels is None:
            raise InputError(
                f"condition 'label' of dataset {d['name']!r} is a real number, not a class; "
                "use --condition label:continuous. Got onehot instead."
            )
    elif design.is_property_condition(d["condition"]):
        condition = design.shape_condition(x.reshape(len(x), *x_shape), d["condition"])
    elif d["condition"] == "radius":
        if d["condition_type"] != "continuous":
            raise InputError("condition 'radius' must be continuous (radius:continuous). Got onehot instead.")
        condition = vkdata.radius(x)
    shown = ", ".join(f"{k}={v}" for k, v in kwargs.items())
    fresh = test and ("seed" in params or "split" in params)
    which = "test sample" if fresh else "data"
    columns = [f"x{i}" for i in range(x.shape[1])]
    return RunData(x, condition, labels, columns, None, f"{d['name']}({shown}) {which}", x_shape, held_out=fresh)


def dataset_options(config: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The built-in dataset's options with its defaults filled in (so config.toml shows them all)."""
    d = config["data"]
    if d["path"]:
        return dict(d["options"])
    params = inspect.signature(vkdata.DATASETS[d["name"]]).parameters
    defaults = {k: p.default for k, p in params.items() if k not in ("n", "seed") and p.default is not inspect.Parameter.empty}
    return defaults | dict(d["options"])


# Rows of a streamed file read into memory for the metrics, figures and report of its run.
STREAM_SAMPLE_ROWS = 10000


def _load_file(d: dict[str, Any]) -> RunData:
    if Path(d["path"]).suffix.lower() == ".npy" and Path(d["path"]).is_file() and should_stream(d["path"], d["stream"]):
        return _stream_file(d)
    shape_condition = design.is_property_condition(d["condition"]) and _curve_file(d["path"])
    try:
        table = vkdata.load_table(
            d["path"],
            d["columns"] or None,
            None if shape_condition else d["condition"] or None,
            exclude=d["exclude"],
            label=d["label"] or None,
            header=d["header"],
        )
    except InputError as err:
        if not design.is_property_condition(d["condition"]) or shape_condition:
            raise
        raise InputError(
            f"[data] condition {d['condition']!r} is computed from curves: it needs an .npy of shape (N, P, 2) "
            f"(or a column of that name). Got {d['path']}, which is neither: {err}"
        ) from None
    condition, labels = table.condition, None
    if shape_condition:
        condition = design.shape_condition(table.x.reshape(len(table.x), *table.x_shape), d["condition"])
    if condition is not None and d["condition_type"] == "onehot":
        if condition.shape[1] != 1 or not np.all(condition == np.round(condition)) or condition.min() < 0:
            raise InputError(
                f"condition column {d['condition']!r} of {d['path']} must hold class labels (text, or integers >= 0) "
                "for onehot; use COLUMN:continuous for numbers. Got non-integer or negative values instead."
            )
        labels = condition[:, 0].astype(np.int64)
        condition = labels
    if table.label is not None:
        labels = table.label  # the label column colours the plots instead of the condition
    headerless = "" if table.has_header else ", no header row"
    description = f"{d['path']} ({len(table.x)} rows{headerless})"
    return RunData(
        table.x,
        condition,
        labels,
        table.columns,
        table.label_names,
        description,
        table.x_shape,
        table.label_classes,
        table.has_header,
    )


def shape_condition_names(d: dict[str, Any]) -> str:
    """The shape properties that ``[data]``'s condition is ("thickness,camber"), or "" when it is not made of them.

    The airfoils' ``label`` is their thickness.
    """
    if d["condition"] and design.is_property_condition(d["condition"]):
        return d["condition"]
    if d["name"] in CURVE_DATASETS and d["condition"] == "label" and d["condition_type"] == "continuous":
        return "thickness"
    return ""


def _curve_file(path: str) -> bool:
    """True for an .npy file of curves (N, P, 2), P even (the layout of :mod:`vaekit.shapes`)."""
    if Path(path).suffix.lower() != ".npy" or not Path(path).is_file():
        return False
    try:
        shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
    except (ValueError, OSError, EOFError):
        return False  # load_table says what is wrong with the file
    return len(shape) == 3 and shape[2] == 2 and shape[1] >= 4 and shape[1] % 2 == 0


def condition_spec(config: dict[str, dict[str, Any]], data: RunData):
    """The model's condition spec for this data, or None."""
    if data.condition is None:
        return None
    kind = config["data"]["condition_type"]
    if kind == "onehot":
        size = max(int(data.condition.max()) + 1, len(data.label_names or []))
        if size < 2:
            raise InputError(f"a onehot condition needs at least 2 classes. Got {size} instead.")
    else:
        size = data.condition.shape[1]
    if kind == "continuous" and shape_condition_names(config["data"]):
        # Thickness is 0.11 ± 0.05 chord: unscaled, the networks learn to ignore it (README: "Conditional design").
        fitted = Continuous.fitted(data.condition)
        return model_settings.condition(config["model"], kind, size=size, shift=fitted.shift, scale=fitted.scale)
    return model_settings.condition(config["model"], kind, size=size)


def build_model(config: dict[str, dict[str, Any]], data: RunData):
    """An untrained model for ``config`` and ``data`` (initial weights seeded with [training] seed).

    ``[data] log_columns = "auto"`` that :func:`vaekit.runs.train` has not resolved yet is
    resolved here, from ``data``'s rows, and written into ``config``.
    """
    m = config["model"]
    if data.x_shape is not None and not m.get("x_shape"):
        m = m | {"x_shape": list(data.x_shape)}  # curves and images keep their shape
    arch = model_settings.architecture(m, x_dim=data.x.shape[1], condition=condition_spec(config, data))
    d = config["data"]
    if d["log_columns"] == "auto":  # not resolved by train(): from these rows alone (config records the choice)
        apply_auto_log_columns(config, data)
    if d["log_columns"]:
        arch = dataclasses.replace(arch, likelihood=_with_log_columns(arch.likelihood, d["log_columns"], d["log_offset"], data))
    cls = model_settings.model_kinds()[m[model_settings.MODEL_KEY]]
    return cls.from_architecture(arch, seed=config["training"]["seed"])


def _with_log_columns(likelihood: Any, names: list[str], offset: float, data: RunData) -> Any:
    """The likelihood spec with ``[data] log_columns`` (names of data columns) as its column indices.

    Each named column of the training rows must lie above ``-offset``: refused here, by name.
    """
    if not hasattr(likelihood, "log_columns"):
        raise InputError(
            f"[data] log_columns (--log-columns) needs a Gaussian likelihood ([model] likelihood = 'gaussian'). "
            f"Got likelihood = {likelihood.kind!r} instead."
        )
    where = {name: i for i, name in enumerate(data.columns)}
    unknown = [name for name in names if name not in where]
    if unknown:
        shown = data.columns if len(data.columns) <= LONG_COLUMN_LIST else data.columns[:LONG_COLUMN_LIST] + ["..."]
        raise InputError(
            f"[data] log_columns (--log-columns) must name data columns of {data.description}: {shown}. "
            f"Got {unknown[0]!r} instead."
        )
    if len(set(names)) != len(names):
        raise InputError(f"[data] log_columns (--log-columns) must not repeat a column. Got {names} instead.")
    spec = dataclasses.replace(likelihood, log_columns=tuple(where[name] for name in names), log_offset=offset)
    check_log_support(spec, data, "[data] log_columns")
    return spec


def check_log_support(likelihood: Any, data: Any, what: str, *, trained: bool = False) -> None:
    """Refuse rows of ``data`` at or below ``-log_offset`` in a log column of ``likelihood``, naming the column.

    ``data`` has ``x`` (N, D) and ``columns`` (a :class:`RunData`, or a :class:`vaekit.data.Table`
    read by ``vaekit encode``), and a ``description`` or, failing that, is described by its row count.

    The likelihood refuses them too (``check_data``), but by index; a run knows the names.
    ``what`` opens the message ("[data] log_columns", "test data", "--data"). Before training
    the advice is to raise the offset; for a ``trained`` model, whose offset is fixed, to train
    again. A streamed file's ``data.x`` is a sample of its rows: rows outside it are refused by
    the likelihood, by index, when training first reads them.
    """
    offset = getattr(likelihood, "log_offset", 0.0)
    for index in getattr(likelihood, "log_columns", ()):
        low = float(data.x[:, index].min()) if len(data.x) else math.inf
        if low + offset <= 0:
            name = data.columns[index] if index < len(data.columns) else f"x{index}"
            above = f"--log-offset above {bound_text(0.0 - low)}"
            fix = (
                f"the model cannot score it: train again with {above} or without the column in --log-columns"
                if trained
                else f"raise {above} or leave the column out of --log-columns"
            )
            where = f"column {name!r} of {getattr(data, 'description', f'the data ({len(data.x)} rows)')}"
            raise InputError(f"{what}: {where} {support_text(offset)}; {fix}. Got min {low:g} instead.")


def build_objective(config: dict[str, dict[str, Any]]):
    """The training objective of ``config["training"]``."""
    from vaekit.objectives import ELBO, IWAE, VQ

    t = config["training"]
    if t["objective"] == "iwae":
        return IWAE(k=t["iwae_k"])
    if t["objective"] == "vq":
        return VQ(commitment=t["commitment"], ema=t["ema"] or None)
    return ELBO(beta=t["beta"], warmup_epochs=t["warmup_epochs"], free_bits=t["free_bits"])


def batch_size_for(n_rows: int, batch_size: int, batches_per_epoch: int) -> int:
    """The batch size that cuts ``n_rows`` into about ``batches_per_epoch`` batches, never above ``batch_size``.

    ``min(batch_size, ceil(n_rows / batches_per_epoch))``: e.g. 105 rows, batch 256, 10 batches
    -> 11 (10 batches per epoch); 398 rows -> 40 (10); 14 rows -> 2 (7: never more than
    ``batches_per_epoch`` batches, fewer where the rows do not divide); 2,560 rows or more ->
    256. ``batches_per_epoch = 0`` leaves ``batch_size`` as it is.
    """
    if n_rows < 1 or batch_size < 1 or batches_per_epoch < 0:
        raise InputError(
            "batch_size_for needs n_rows and batch_size >= 1 and batches_per_epoch >= 0. "
            f"Got n_rows={n_rows}, batch_size={batch_size}, batches_per_epoch={batches_per_epoch} instead."
        )
    if not batches_per_epoch:
        return batch_size
    return max(1, min(batch_size, math.ceil(n_rows / batches_per_epoch)))


def apply_batches_per_epoch(config: dict[str, dict[str, Any]], n_rows: int) -> str:
    """Lower ``config["training"]["batch_size"]`` to :func:`batch_size_for` the training rows.

    ``n_rows`` are the training rows before the validation split (``val_fraction`` rows, as
    :func:`vaekit.fit` takes them, do not count). Returns a sentence saying what was chosen and
    why, or "" when ``batch_size`` stays as it was; config.toml then records the batch size used.
    """
    t = config["training"]
    fraction = auto_val_fraction(n_rows, streamed=False) if t["val_fraction"] == "auto" else t["val_fraction"]
    rows = n_rows - (validation_rows(n_rows, fraction) if fraction else 0)
    size = batch_size_for(max(rows, 1), t["batch_size"], t["batches_per_epoch"])
    if size == t["batch_size"]:
        return ""
    note = (
        f"batch size {size} instead of {t['batch_size']}: {rows} training rows make {math.ceil(rows / size)} batches "
        f"per epoch (batches_per_epoch = {t['batches_per_epoch']}), so {t['epochs']} epochs are "
        f"{t['epochs'] * math.ceil(rows / size)} optimiser steps (set --batch-size or --batches-per-epoch to choose)"
    )
    t["batch_size"] = size
    return note


# The rule of log_columns = "auto": a column spans decades when its values are >= 0 with a median
# above 0, a skewness above DECADES_SKEWNESS and a maximum over DECADES_RATIO times its median.
DECADES_SKEWNESS = 2.0
DECADES_RATIO = 10.0


def decade_columns(x: np.ndarray) -> list[int]:
    """Indices of the columns of ``x`` (N, D) that span decades (the rule above); none for N < 3."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 3:
        return []
    chosen = []
    for j in range(x.shape[1]):
        column = x[:, j]
        median, std = float(np.median(column)), float(column.std())
        if column.min() < 0 or median <= 0 or std == 0:
            continue
        skewness = float(((column - column.mean()) ** 3).mean() / std**3)
        if skewness > DECADES_SKEWNESS and column.max() > DECADES_RATIO * median:
            chosen.append(j)
    return chosen


def apply_auto_log_columns(config: dict[str, dict[str, Any]], data: RunData, test: RunData | None = None) -> str:
    """Resolve ``[data] log_columns = "auto"`` from the training rows; return why, or "".

    The columns :func:`decade_columns` finds are logged; ``log_offset`` becomes 1 when one of
    them holds a zero and the offset is 0. A column whose held-out rows (``test``) lie at or
    below ``-log_offset`` stays unlogged: those rows could not be scored. A streamed file (its
    rows are not in memory), curves and images, and other likelihoods get no log columns.
    config.toml then records the columns (names) and the offset used.
    """
    d = config["data"]
    if d["log_columns"] != "auto":
        return ""
    d["log_columns"], given = [], d["log_offset"]
    gaussian = config["model"].get("likelihood", "gaussian") == "gaussian"
    if data.stream is not None or data.x_shape is not None or not gaussian:
        d["log_offset"] = 0.0
        why = "a streamed file" if data.stream is not None else "not a table of a Gaussian likelihood"
        return f"no log columns: log_offset {given:g} ignored ({why})" if given else ""
    chosen = decade_columns(data.x)
    rows = data.x if test is None or not test.held_out else np.concatenate([data.x, test.x])
    lowest = rows.min(axis=0)  # (D,): training and held-out rows, every one of which must be scored
    # Offset 1 only where a zero needs it (the user's offset otherwise); held-out rows it cannot
    # score (below -offset) leave their column unlogged. A column with a zero is scorable at
    # offset 1, so it stays chosen and the offset stays needed.
    offset = 1.0 if given == 0.0 and any(lowest[j] == 0 for j in chosen) else given
    unscorable = [j for j in chosen if lowest[j] + offset <= 0]
    chosen = [j for j in chosen if j not in unscorable]
    left = "; left unlogged: " + ", ".join(data.columns[j] for j in unscorable) + " (held-out rows at or below -offset)"
    left = left if unscorable else ""
    if not chosen:
        d["log_offset"] = 0.0
        ignored = f"; log_offset {given:g} ignored" if given else ""
        return f"no log columns{left}{ignored}" if left or ignored else ""
    d["log_columns"], d["log_offset"] = [data.columns[j] for j in chosen], offset
    names = ", ".join(d["log_columns"]) if len(chosen) <= 5 else ", ".join(d["log_columns"][:5]) + f", ... ({len(chosen)})"
    model = (
        f"log(x + {offset:g}), a column has zeros" if offset and given == 0.0 else f"log(x + {offset:g})" if offset else "log(x)"
    )
    return (
        f"log scale for {names}: values >= 0 that span decades (skewness above {DECADES_SKEWNESS:g}, maximum over "
        f"{DECADES_RATIO:g} times the median), modelled as {model}; densities stay in data units{left} "
        "(set --log-columns to choose, --log-columns '' for none)"
    )


def auto_val_fraction(n_rows: int, *, streamed: bool) -> float:
    """The share of ``n_rows`` training rows that ``val_fraction = "auto"`` holds out: AUTO_VAL_FRACTION or 0."""
    return 0.0 if streamed or validation_rows(n_rows, AUTO_VAL_FRACTION) < MIN_VAL_ROWS else AUTO_VAL_FRACTION


def apply_auto_validation(config: dict[str, dict[str, Any]], n_rows: int, *, streamed: bool) -> str:
    """Resolve ``[training] val_fraction = "auto"`` for ``n_rows`` training rows; return why, or "".

    :data:`AUTO_VAL_FRACTION` of the rows are held out for validation, with early stopping after
    ``patience`` epochs (:data:`AUTO_PATIENCE` unless given) without improvement (the best
    epoch's weights are kept), when that makes at least :data:`MIN_VAL_ROWS` rows; otherwise
    (and for a streamed file, whose rows are not in memory) there is no validation split and no
    early stopping. config.toml then records the numbers used.
    """
    t = config["training"]
    if t["val_fraction"] != "auto":
        return ""
    n_val = validation_rows(n_rows, AUTO_VAL_FRACTION)
    if not auto_val_fraction(n_rows, streamed=streamed):
        t["val_fraction"], t["patience"] = 0.0, 0  # a given patience too: there is nothing to stop on
        why = (
            "the file is streamed from disk"
            if streamed
            else (f"{AUTO_VAL_FRACTION:.0%} of {n_rows} training rows would be {n_val}, fewer than {MIN_VAL_ROWS}")
        )
        return f"no validation split and no early stopping: {why} (set --val-fraction and --patience to choose)"
    t["val_fraction"], t["patience"] = AUTO_VAL_FRACTION, t["patience"] or AUTO_PATIENCE
    return (
        f"early stopping: {n_val} of {n_rows} training rows held out for validation; training stops after "
        f"{t['patience']} epochs without a better validation loss and keeps the best epoch "
        "(set --val-fraction 0 to train on every row)"
    )


def fit_kwargs(config: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Keyword arguments for :func:`vaekit.fit` from ``config["training"]`` (no data, no callbacks)."""
    t = config["training"]
    if t["val_fraction"] == "auto":
        raise InputError(
            "[training] val_fraction = 'auto' is decided by the training rows: call apply_auto_validation(config, "
            "n_rows, streamed=...) first (vaekit.runs.train does). Got val_fraction='auto' instead."
        )
    kwargs: dict[str, Any] = {
        "objective": build_objective(config),
        "epochs": t["epochs"],
        "batch_size": t["batch_size"],
        "lr": t["lr"],
        "seed": t["seed"],
        "device": t["device"],
        "precision": t["precision"],
        "weight_decay": t["weight_decay"],
        "grad_clip": t["grad_clip"] or None,
        "val": t["val_fraction"] or None,
    }
    return kwargs


# ---------------------------------------------------------------------------- folder
def partial_path(out: str | Path) -> Path:
    """Where a run to ``out`` is staged until complete: ``<out>.partial`` next to it."""
    out = Path(out)
    return out.with_name(out.name + PARTIAL_SUFFIX)


def is_nonempty(path: Path) -> bool:
    """True when ``path`` exists and is a file or a folder with something in it."""
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def check_out(out: str | Path, *, force: bool, names: tuple[str, str] = ("--out", "--force")) -> Path:
    """Refuse an existing non-empty ``out`` unless ``force``; return it as a Path.

    ``names`` are how the caller spells the two settings in the message: the command line's
    flags by default, ``("out", "force=True")`` for the Python functions.
    """
    out = Path(out)
    out_name, force_name = names
    if out.exists() and not out.is_dir():
        raise InputError(f"{out_name} {out} is a file, not a folder. Choose another {out_name}.")
    if is_nonempty(out) and not force:
        raise InputError(f"run folder {out} already exists; use {force_name} to replace it, or choose another {out_name}.")
    return out


def start_partial(out: Path) -> Path:
    """A fresh, empty staging folder for ``out`` (a stale one from a killed run is removed)."""
    staging = partial_path(out)
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    return staging


def commit_partial(staging: Path, out: Path) -> Path:
    """Move the finished ``staging`` folder to ``out``, replacing what was there.

    The old folder is first renamed aside and deleted only after the new one is in place, so at
    no moment does a half-written folder sit at ``out``.
    """
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(staging, out)
    fsync_dir(out.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return out


def write_json(path: str | Path, value: Any) -> None:
    """Pretty JSON, atomically; NaN/inf become null so every JSON reader accepts the file."""
    atomic_write_text(path, json.dumps(_jsonable(value), indent=2, allow_nan=False) + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_json(path: str | Path) -> Any:
    """Read a JSON file of a run folder."""
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"{path} does not exist.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FileFormatError(f"{path} is not valid JSON ({err}).") from None


def write_history(path: str | Path, history) -> None:
    """Write ``history`` as CSV atomically (temporary file, fsync, rename: ``io.atomic_write_text``)."""
    atomic_write_text(path, history.csv_text())


def write_table(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Write dict rows (same keys) as CSV, atomically; floats keep every digit (repr)."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(list(rows[0]))
    writer.writerows([[repr(v) if isinstance(v, float) else v for v in row.values()] for row in rows])
    atomic_write_text(path, buffer.getvalue())


def save_figures(folder: str | Path, figures: dict[str, Any], *, dpi: int = 110) -> list[Path]:
    """Save matplotlib Figures as ``folder/<key>.png`` (atomically) and close them."""
    import io

    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for key, fig in figures.items():
        buffer = io.BytesIO()
        # A fixed Software tag and no date keep the PNG bytes reproducible.
        fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": "vaekit"})
        plt.close(fig)
        path = folder / f"{key}.png"
        atomic_write_bytes(path, buffer.getvalue())
        paths.append(path)
    return paths


def require_run(path: str | Path) -> Path:
    """Check ``path`` is a run folder (has model.json); return it."""
    path = Path(path)
    if not path.is_dir():
        partial = partial_path(path)
        hint = f" (an interrupted run is in {partial}: vaekit train --resume {path})" if partial.is_dir() else ""
        raise FileFormatError(f"run folder {path} does not exist{hint}.")
    if not (path / "model.json").is_file():
        raise FileFormatError(f"{path} is not a vaekit run folder: model.json is missing.")
    return path


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file (no schema check): missing file or bad syntax raise FileFormatError.

    A run's own config.toml also gets the settings :func:`older_run_settings` finds it lacks.
    """
    raw, text = _parse_toml(Path(path))
    for (section, key), value in older_run_settings(raw, text).items():
        raw[section][key] = value
        logger.info("%s: written by a run before [%s] %s existed: %s = %r, as that run had", path, section, key, key, value)
    return raw


def _parse_toml(path: Path) -> tuple[dict[str, Any], str]:
    if not path.is_file():
        raise FileFormatError(f"config file {path} does not exist.")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM (some Windows editors write one) is not TOML
        return tomllib.loads(text), text
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise FileFormatError(f"{path} is not valid TOML: {err}.") from None


def older_run_settings(raw: dict[str, Any], text: str) -> dict[tuple[str, str], Any]:
    """(section, key) -> value for the settings a run's config.toml lacks because its run predates them.

    A file written by a run (:data:`RUN_CONFIG_HEADER` first, every section present) records
    every setting that run had, so a key it lacks did not exist then. Two such keys matter, where
    a file's default changed after they came: ``[data] log_columns`` (now ``"auto"``, which could
    log some columns) and a Gaussian's ``[model] df`` (now ``"learned"``, Student's t). A run
    before them trained without either, and today's defaults would train another model
    (``--config`` would not redo the run, ``--resume`` would refuse its checkpoint): such a file
    reads as ``log_columns = []`` and ``df = "none"``. Any other file, ``{}``.
    """
    if not text.startswith(RUN_CONFIG_HEADER) or not all(isinstance(raw.get(s), dict) for s in SECTIONS):
        return {}
    data, model = raw["data"], raw["model"]
    if not data.get("path"):
        return {}
    out: dict[tuple[str, str], Any] = {}
    if "log_columns" not in data:
        out[("data", "log_columns")] = []
    if model.get("likelihood", "gaussian") == "gaussian" and "df" not in model:
        out[("model", "df")] = "none"
    return out


def older_run_settings_of(path: str | Path) -> dict[tuple[str, str], Any]:
    """:func:`older_run_settings` of the file ``path`` (for the command line's note)."""
    return older_run_settings(*_parse_toml(Path(path)))


# ---------------------------------------------------------------------------- evaluation
def evaluate_run(
    model, data: RunData, config: dict[str, dict[str, Any]], *, seed: int = 0, train: RunData | None = None
) -> dict[str, Any]:
    """:func:`vaekit.metrics.evaluate` of ``model`` on ``data`` with the ``[evaluation]`` settings.

    Ring data add the ring metrics (exact NLL of the data, mode coverage); dataset labels add
    the latent k-NN accuracy of an unconditional model. The PCA/PPCA baselines are fitted on
    ``train`` (the run's training data; None: on ``data`` itself, and the metrics say so), and so
    is the PCA beside the curve metrics of (P, 2) data (``curves``: see :func:`vaekit.metrics.evaluate`).
    The result starts with ``evaluated_on`` (``data.description``) and ``held_out``.
    """
    from vaekit.metrics import evaluate

    e, d = config["evaluation"], config["data"]
    kwargs: dict[str, Any] = {"seed": seed, "k": e["k"], "n_samples": e["n_samples"], "permutations": e["permutations"]}
    # The quadrature costs grid^2 decoder passes per point: cheaper for wide data.
    kwargs["quadrature_grid"] = e["quadrature_grid"] or (200 if model.x_dim <= 2 else 60)
    if data.labels is not None and model.condition is None:
        kwargs["labels"] = data.labels
    if d["name"] == "ring":
        defaults = {k: p.default for k, p in inspect.signature(vkdata.ring).parameters.items() if k in RING_KEYS}
        kwargs["ring"] = defaults | {k: v for k, v in d["options"].items() if k in RING_KEYS}
    if train is not None:
        kwargs["train_x"] = train.x
    out = {"evaluated_on": data.description, "held_out": data.held_out, **evaluate(model, data.x, data.condition, **kwargs)}
    _place_top_point(out, data, train)
    return out | shape_adherence(model, data, config, seed=seed, train=train)


def _place_top_point(metrics: dict[str, Any], data: RunData, train: RunData | None) -> None:
    """The PPCA gap's top point (:func:`vaekit.metrics.largest_gap`) in the data set's terms, in place.

    Its row in the whole data set (``ppca_gap_top_row``, from 0) when ``data`` is a part of it;
    and, for rows the model did not train on, placed against every row of streamed training
    data, not the sample in ``x`` (one more pass over the file; none for the training rows
    themselves, which lie inside their own range).
    """
    from vaekit.metrics import furthest_outside

    point = metrics.get("ppca_gap_top_point")
    if point is None:
        return
    if data.rows is not None:
        metrics["ppca_gap_top_row"] = int(data.rows[point])
    # Not for the training rows themselves (held_out False): they lie inside their own range.
    if train is not None and train.stream is not None and data.held_out is not False:
        for key in ("ppca_gap_top_column", "ppca_gap_top_value", "ppca_gap_top_train_range"):
            metrics.pop(key, None)
        metrics.update(furthest_outside(data.x[point], *column_range(train.stream)))


def shape_adherence(
    model, data: RunData, config: dict[str, dict[str, Any]], *, seed: int = 0, train: RunData | None = None
) -> dict[str, Any]:
    """:func:`vaekit.design.condition_adherence` of a model of curves conditioned on shape properties; else {}.

    The targets are :data:`vaekit.design.TARGETS` rows of ``data``'s conditions spread over their
    5%..95% quantiles; the baseline's mean is that of ``train``'s conditions (else ``data``'s).
    """
    names = shape_condition_names(config["data"])
    if not names or data.condition is None or model.condition is None or not design.is_curve_shape(model.x_shape):
        return {}  # a table's column that happens to be called "thickness" is a plain condition
    reference = train.condition if train is not None and train.condition is not None else data.condition
    targets = design.adherence_targets(data.condition)
    return design.condition_adherence(model, targets, names, reference=reference, seed=seed)


def metric_columns(metrics: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The columns of a metrics.json, side by side: [(heading, metrics)].

    The top level first (headed "held-out", or "training data (no held-out data)" when it is
    on the training data, or "evaluated data" for data given to ``vaekit evaluate --data``),
    then ``"train"``, then each column that ``vaekit evaluate --add-to-report`` added.
    """
    top = {k: v for k, v in metrics.items() if k not in ("train", "added", "warnings")}  # warnings: shown apart
    held = top.get("held_out")
    heading = "held-out" if held is True else "training data (no held-out data)" if held is False else "evaluated data"
    columns = [(heading, top)]
    if isinstance(metrics.get("train"), dict):
        columns.append(("train", metrics["train"]))
    for label, values in (metrics.get("added") or {}).items():
        columns.append((label, values))
    return columns
