"""Run folders: the unit of work of the command line.

A run folder holds everything one training run produced and everything needed to redo it::

    config.toml          every setting (data, model, training); ``vaekit train --config`` re-runs it
    run.json             what the data turned out to be (columns, label names, ...) and timings
    model.safetensors    weights            model.json   architecture (see :mod:`vaekit.io`)
    history.csv          one row per epoch  metrics.json  evaluation numbers
    figures/*.png        report.html        (written by :mod:`vaekit.report`)

This module reads and validates ``config.toml``, turns it into data, a model and ``fit``
arguments, and creates folders so that a failed run never stands in place of a good one: the
run is written into ``<out>.partial`` and renamed into place when it is complete.
:func:`train` and :func:`sweep` are the whole pipelines behind ``vaekit train`` and
``vaekit sweep``; :func:`open_run` reads a run folder back.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import shutil
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from vaekit import data as vkdata
from vaekit.configs import check_type
from vaekit.errors import FileFormatError, InputError, InputTypeError, RunInterrupted, TrainingError, describe
from vaekit.io import atomic_write_bytes, atomic_write_text, fsync_dir

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

# Section -> key -> (annotation, default). TOML has no null, so "off" is 0 or "".
SCHEMA: dict[str, dict[str, tuple[Any, Any]]] = {
    "data": {
        "name": (str, "ring"),  # a built-in dataset (vaekit.data.DATASETS) ...
        "path": (str, ""),  # ... or a CSV / .npy / .parquet file (exactly one of the two)
        "n": (int, 2000),  # built-in generators: number of points
        "seed": (int, 0),  # built-in generators: data seed
        "options": (dict, {}),  # built-in generators: extra keyword arguments (modes, radius, ...)
        "columns": (list[str], []),  # files: data columns (empty: all but the condition)
        "condition": (str, ""),  # "label" / "radius" for built-ins, a column name for files
        "condition_type": (Literal["onehot", "continuous"], "onehot"),
    },
    "model": {
        "z_dim": (int, 2),
        "hidden": (list[int], [128, 128]),
        "activation": (str, "relu"),
        "likelihood": (Literal["gaussian", "bernoulli"], "gaussian"),
        "variance": (float | Literal["learned", "per_point"], 0.1),
        "min_variance": (float, 1e-4),
        "standardize": (bool, False),
        "condition_embed": (int, 16),
    },
    "training": {
        "epochs": (int, 400),
        "batch_size": (int, 256),
        "lr": (float, 1e-3),
        "seed": (int, 0),  # initial weights, shuffling and noise
        "objective": (Literal["elbo", "iwae"], "elbo"),
        "beta": (float, 1.0),
        "warmup_epochs": (int, 0),
        "free_bits": (float, 0.0),
        "iwae_k": (int, 5),
        "val_fraction": (float, 0.0),  # 0: no validation split
        "patience": (int, 0),  # early stopping on val_loss; 0: off
        "grad_clip": (float, 0.0),  # 0: off
        "weight_decay": (float, 0.0),
        "device": (str, "cpu"),
        "checkpoint_every": (int, 0),  # 0: fit's default
    },
    "evaluation": {  # settings of vaekit.metrics.evaluate (metrics.json)
        "k": (int, 100),  # importance samples of the IWAE estimate
        "n_samples": (int, 2000),  # model samples for the sample-quality metrics
        "quadrature_grid": (int, 0),  # cells per axis of the 2-D quadrature; 0: 200 for 2-D data, 60 otherwise
        "permutations": (int, 200),  # permutations of the MMD test
    },
}

BUILTIN_CONDITIONS = ("label", "radius")
RING_KEYS = ("modes", "radius", "std")


# ---------------------------------------------------------------------------- config
def default_config() -> dict[str, dict[str, Any]]:
    """A fresh copy of every default setting (the lecture's ring recipe)."""
    return {section: {k: _copy(v[1]) for k, v in keys.items()} for section, keys in SCHEMA.items()}


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else dict(value) if isinstance(value, dict) else value


def validate_config(config: Any, *, source: str = "config") -> dict[str, dict[str, Any]]:
    """Check a (partial) config against :data:`SCHEMA`; return it complete, with defaults filled in.

    Raises
    ------
    InputError, InputTypeError
        An unknown section or key, a value of the wrong type or out of range; the message names
        ``source`` and the key (e.g. ``[training] epochs``).

    """
    if not isinstance(config, dict):
        raise InputTypeError(f"{source} must be a table of sections {sorted(SCHEMA)}. Got {describe(config)} instead.")
    unknown = sorted(set(config) - set(SCHEMA))
    if unknown:
        raise InputError(f"{source} has unknown section(s) {unknown}; allowed sections are {sorted(SCHEMA)}.")
    out = default_config()
    for section, values in config.items():
        if not isinstance(values, dict):
            raise InputTypeError(f"{source}: [{section}] must be a table. Got {describe(values)} instead.")
        bad = sorted(set(values) - set(SCHEMA[section]))
        if bad:
            raise InputError(f"{source}: [{section}] has unknown key(s) {bad}; allowed keys are {sorted(SCHEMA[section])}.")
        for key, value in values.items():
            annotation = SCHEMA[section][key][0]
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
    _check_ranges(out, source)
    return out


_EXPECTED = {int: "an integer", float: "a number", str: "a string", bool: "true or false", dict: "a table"}
_EXPECTED |= {list[int]: "a list of integers", list[str]: "a list of strings"}


def _expected(annotation: Any) -> str:
    if annotation in _EXPECTED:
        return _EXPECTED[annotation]
    if typing.get_origin(annotation) is Literal:
        return f"one of {list(typing.get_args(annotation))}"
    words = [a for part in typing.get_args(annotation) if typing.get_origin(part) is Literal for a in typing.get_args(part)]
    return f"a number or one of {words}"  # float | Literal[...]


def _check_ranges(config: dict[str, dict[str, Any]], source: str) -> None:
    d, m, t = config["data"], config["model"], config["training"]
    if bool(d["name"]) == bool(d["path"]):
        raise InputError(
            f"{source}: [data] needs exactly one of name (a built-in dataset) and path (a file). "
            f"Got name={d['name']!r} and path={d['path']!r} instead."
        )
    if d["name"] and d["name"] not in vkdata.DATASETS:
        raise InputError(f"{source}: [data] name must be one of {sorted(vkdata.DATASETS)}. Got {d['name']!r} instead.")
    if d["name"] and d["condition"] and d["condition"] not in BUILTIN_CONDITIONS:
        raise InputError(
            f"{source}: [data] condition for a built-in dataset must be one of {list(BUILTIN_CONDITIONS)}. "
            f"Got {d['condition']!r} instead."
        )
    minimum = {"n": 1, "z_dim": 1, "condition_embed": 0, "epochs": 1, "batch_size": 1, "warmup_epochs": 0}
    minimum |= {"iwae_k": 1, "patience": 0, "checkpoint_every": 0, "k": 1, "n_samples": 2, "quadrature_grid": 0}
    minimum |= {"permutations": 1}
    for section in config.values():
        for key, value in section.items():
            if key in minimum and value < minimum[key]:
                raise InputError(f"{source}: {key} must be an integer >= {minimum[key]}. Got {value} instead.")
    if not m["hidden"] or any(h < 1 for h in m["hidden"]):
        raise InputError(f"{source}: [model] hidden must be a non-empty list of widths >= 1. Got {m['hidden']} instead.")
    positive = {"lr": t["lr"], "min_variance": m["min_variance"]}
    if not isinstance(m["variance"], str):
        positive["variance"] = m["variance"]
    for key, value in positive.items():
        if not (math.isfinite(value) and value > 0):
            raise InputError(f"{source}: {key} must be a finite number > 0. Got {value} instead.")
    for key in ("beta", "free_bits", "grad_clip", "weight_decay"):
        if not (math.isfinite(t[key]) and t[key] >= 0):
            raise InputError(f"{source}: [training] {key} must be a finite number >= 0. Got {t[key]} instead.")
    if not 0.0 <= t["val_fraction"] < 1.0:
        raise InputError(f"{source}: [training] val_fraction must be in [0, 1). Got {t['val_fraction']} instead.")
    if t["patience"] and not t["val_fraction"]:
        raise InputError(f"{source}: [training] patience (early stopping) needs val_fraction > 0. Got val_fraction=0 instead.")


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
    if data.get("path") and not Path(data["path"]).is_absolute():
        data["path"] = str((Path(path).parent / data["path"]).resolve())
    return sections


def complete_config(config: Any, *, source: str = "config") -> dict[str, dict[str, Any]]:
    """:func:`validate_config`, plus the two conveniences of ``vaekit train``.

    A relative ``[data] path`` becomes absolute (relative to the working directory), so the
    config.toml of the run works from anywhere; digits data default to a Bernoulli likelihood
    unless ``[model] likelihood`` is given.
    """
    complete = validate_config(config, source=source)
    path = complete["data"]["path"]
    if path and not Path(path).is_absolute():
        complete["data"]["path"] = str(Path(path).resolve())
    if complete["data"]["name"] == "digits" and "likelihood" not in config.get("model", {}):
        complete["model"]["likelihood"] = "bernoulli"
    return complete


def config_text(config: dict[str, dict[str, Any]]) -> str:
    """TOML text of ``config`` with a header that says how to re-run it."""
    import tomli_w

    header = (
        "# vaekit run configuration: every setting of this run.\n"
        "# Re-run it with: vaekit train --config config.toml --out NEW_DIR\n\n"
    )
    return header + tomli_w.dumps(config)


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

    """

    x: np.ndarray
    condition: np.ndarray | None
    labels: np.ndarray | None
    columns: list[str]
    label_names: list[str] | None = None
    description: str = ""


def load_data(config: dict[str, dict[str, Any]], *, test: bool = False) -> RunData:
    """Load the data of ``config["data"]``.

    With ``test=True`` a built-in generator that takes a seed draws a fresh sample with
    ``seed + 1`` (a held-out test set of the same size); other data are returned as is.
    """
    d = config["data"]
    if d["path"]:
        return _load_file(d)
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
    x, y = fn(**kwargs)
    labels = y if np.issubdtype(y.dtype, np.integer) else None
    condition = None
    if d["condition"] == "label":
        condition = y.astype(np.int64) if d["condition_type"] == "onehot" else y.astype(np.float32).reshape(-1, 1)
        if d["condition_type"] == "onehot" and labels is None:
            raise InputError(
                f"condition 'label' of dataset {d['name']!r} is a real number, not a class; "
                "use --condition label:continuous. Got onehot instead."
            )
    elif d["condition"] == "radius":
        if d["condition_type"] != "continuous":
            raise InputError("condition 'radius' must be continuous (radius:continuous). Got onehot instead.")
        condition = vkdata.radius(x)
    shown = ", ".join(f"{k}={v}" for k, v in kwargs.items())
    which = "test sample" if test and "seed" in params else "data"
    return RunData(x, condition, labels, [f"x{i}" for i in range(x.shape[1])], None, f"{d['name']}({shown}) {which}")


def dataset_options(config: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The built-in dataset's options with its defaults filled in (so config.toml shows them all)."""
    d = config["data"]
    if d["path"]:
        return dict(d["options"])
    params = inspect.signature(vkdata.DATASETS[d["name"]]).parameters
    defaults = {k: p.default for k, p in params.items() if k not in ("n", "seed") and p.default is not inspect.Parameter.empty}
    return defaults | dict(d["options"])


def _load_file(d: dict[str, Any]) -> RunData:
    table = vkdata.load_table(d["path"], d["columns"] or None, d["condition"] or None)
    condition, labels = table.condition, None
    if condition is not None and d["condition_type"] == "onehot":
        if condition.shape[1] != 1 or not np.all(condition == np.round(condition)) or condition.min() < 0:
            raise InputError(
                f"condition column {d['condition']!r} of {d['path']} must hold class labels (text, or integers >= 0) "
                "for onehot; use COLUMN:continuous for numbers. Got non-integer or negative values instead."
            )
        labels = condition[:, 0].astype(np.int64)
        condition = labels
    return RunData(table.x, condition, labels, table.columns, table.label_names, f"{d['path']} ({len(table.x)} rows)")


def condition_spec(config: dict[str, dict[str, Any]], data: RunData):
    """The model's condition spec for this data, or None."""
    from vaekit.conditions import Continuous, OneHot

    if data.condition is None:
        return None
    if config["data"]["condition_type"] == "onehot":
        n_classes = max(int(data.condition.max()) + 1, len(data.label_names or []))
        if n_classes < 2:
            raise InputError(f"a onehot condition needs at least 2 classes. Got {n_classes} instead.")
        return OneHot(n_classes)
    return Continuous(data.condition.shape[1], embed=config["model"]["condition_embed"])


def build_model(config: dict[str, dict[str, Any]], data: RunData):
    """An untrained VAE for ``config`` and ``data`` (initial weights seeded with [training] seed)."""
    from vaekit.distributions import Bernoulli, Gaussian
    from vaekit.models import VAE

    m = config["model"]
    if m["likelihood"] == "bernoulli":
        likelihood = Bernoulli()
    else:
        likelihood = Gaussian(variance=m["variance"], min_variance=m["min_variance"])
    return VAE(
        data.x.shape[1],
        m["z_dim"],
        hidden=tuple(m["hidden"]),
        likelihood=likelihood,
        condition=condition_spec(config, data),
        activation=m["activation"],
        standardize=m["standardize"],
        seed=config["training"]["seed"],
    )


def build_objective(config: dict[str, dict[str, Any]]):
    """The training objective of ``config["training"]``."""
    from vaekit.objectives import ELBO, IWAE

    t = config["training"]
    if t["objective"] == "iwae":
        return IWAE(k=t["iwae_k"])
    return ELBO(beta=t["beta"], warmup_epochs=t["warmup_epochs"], free_bits=t["free_bits"])


def fit_kwargs(config: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Keyword arguments for :func:`vaekit.fit` from ``config["training"]`` (no data, no callbacks)."""
    t = config["training"]
    kwargs: dict[str, Any] = {
        "objective": build_objective(config),
        "epochs": t["epochs"],
        "batch_size": t["batch_size"],
        "lr": t["lr"],
        "seed": t["seed"],
        "device": t["device"],
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
    """Parse a TOML file (no schema check): missing file or bad syntax raise FileFormatError."""
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"config file {path} does not exist.")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise FileFormatError(f"{path} is not valid TOML: {err}.") from None


# ---------------------------------------------------------------------------- evaluation
def evaluate_run(model, data: RunData, config: dict[str, dict[str, Any]], *, seed: int = 0) -> dict[str, Any]:
    """:func:`vaekit.metrics.evaluate` of ``model`` on ``data`` with the ``[evaluation]`` settings.

    Ring data add the ring metrics (exact NLL of the data, mode coverage); dataset labels add
    the latent k-NN accuracy of an unconditional model.
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
    return dict(evaluate(model, data.x, data.condition, **kwargs))


# ---------------------------------------------------------------------------- pipelines
_PY_NAMES = ("out", "force=True")


@dataclass
class Run:
    """A complete run folder and what it holds; :func:`train` returns one, :func:`open_run` reads one.

    Attributes
    ----------
    path : Path
        The run folder.
    config : dict
        Every setting, section -> key -> value, as in ``config.toml``.
    model : VAE
        The trained model (``model.safetensors`` and ``model.json``).
    history : History
        One value per epoch of every logged quantity (``history.csv``).
    metrics : dict
        The evaluation numbers of ``metrics.json``; a NaN or infinite value is None.
    info : dict
        ``run.json``: the data's description, columns and label names, the vaekit version, the
        command that made the run and the training time.

    """

    path: Path
    config: dict[str, dict[str, Any]]
    model: Any
    history: Any
    metrics: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)


def open_run(path: str | Path) -> Run:
    """Read the run folder ``path`` (written by :func:`train` or ``vaekit train``).

    Raises
    ------
    FileFormatError
        ``path`` is not a run folder, or one of its files is missing or unreadable.

    """
    from vaekit.history import History
    from vaekit.io import load

    folder = require_run(path)
    history_path = folder / HISTORY
    if not history_path.is_file():
        raise FileFormatError(f"{history_path} does not exist.")
    return Run(
        path=folder,
        config=read_config(folder / CONFIG),
        model=load(folder),
        history=History.from_csv(history_path),
        metrics=read_json(folder / METRICS),
        info=read_json(folder / RUN_INFO),
    )


def _settings(config: Any) -> dict[str, dict[str, Any]]:
    """A complete, validated copy of ``config``: a dict of settings or the path of a TOML file."""
    if isinstance(config, (str, os.PathLike)):
        return complete_config(read_config_file(config), source=str(config))
    return complete_config(config, source="config")


def train(
    config: Any,
    out: str | Path,
    *,
    force: bool = False,
    resume: bool = False,
    progress: typing.Callable[[int, int, dict[str, Any]], None] | None = None,
    status: typing.Callable[[str], None] | None = None,
    command: str = "vaekit.runs.train",
) -> Run:
    """Train a VAE as ``config`` says and write the run folder ``out``, exactly as ``vaekit train``.

    The folder is written into ``<out>.partial`` (with checkpoints while training) and renamed to
    ``out`` only when complete: config.toml, model.safetensors, model.json, history.csv,
    metrics.json (on a held-out sample of a built-in dataset), run.json, figures/*.png and
    report.html. On CPU the same config gives the same files bit for bit.

    Parameters
    ----------
    config : dict, str, Path or None
        Settings, section -> key -> value, as in :func:`default_config` (missing keys take the
        defaults; see :func:`complete_config`), or the path of a TOML file such as a run's
        ``config.toml``. With ``resume=True``, None takes the interrupted run's settings.
    out : str or Path
        The run folder to write.
    force : bool, default False
        Replace a non-empty ``out``; the old folder is removed only once the new one is complete.
    resume : bool, default False
        Continue the run to ``out`` that was interrupted (its ``<out>.partial`` folder) from the
        last checkpoint; on CPU the result equals an uninterrupted run bit for bit. Only
        ``epochs``, ``lr``, ``grad_clip``, ``weight_decay`` and ``[evaluation]`` may differ from
        the interrupted run's settings.
    progress : callable(epoch, epochs, record), optional
        Called after every epoch, as :func:`vaekit.fit`'s ``progress``.
    status : callable(text), optional
        Called when the run moves on: with :data:`STAGE_TRAINING` before training and with
        :data:`STAGE_RESULTS` before the metrics, figures and report are computed.
    command : str, default "vaekit.runs.train"
        How the run was made, recorded in run.json.

    Returns
    -------
    Run
        The folder, the complete config, the trained model, its History and the metrics.

    Raises
    ------
    InputError, InputTypeError
        A bad setting (the message names the key), ``out`` exists and ``force`` is False (nothing
        is written), or ``resume=True`` without an interrupted run to ``out``.
    FileFormatError
        The config file or the data file is missing or unreadable.
    TrainingError
        The loss or the weights became NaN/inf. When a checkpoint had been written,
        ``<out>.partial`` keeps the last good state and the message says how to resume with a
        lower learning rate; otherwise nothing is left behind.
    RunInterrupted
        Ctrl-C (KeyboardInterrupt). ``<out>.partial`` keeps the last checkpoint when there is
        one (``resumable``), and the message says how to go on.

    Notes
    -----
    With ``resume=True`` no failure removes ``<out>.partial``: a resume that the checkpoint
    refuses (another model, fewer epochs than already trained, ...) leaves the interrupted run
    and its config.toml as they were.

    """
    out = Path(out)
    staging = partial_path(out)
    if resume and not (staging / CONFIG).is_file():
        raise InputError(
            f"resume=True needs {staging}, the folder that an interrupted run to {out} leaves behind. Got no such folder instead."
        )
    config = read_config(staging / CONFIG) if resume and config is None else _settings(config)
    check_out(out, force=force, names=_PY_NAMES)
    # Imported here so that monkeypatched or reloaded trainers are the ones used.
    from vaekit.trainer import EarlyStopping, fit

    config["data"]["options"] = dataset_options(config)
    data = load_data(config)
    if data.columns and config["data"]["path"]:
        config["data"]["columns"] = list(data.columns)  # make the file's column choice explicit
    test_data = load_data(config, test=True)
    model = build_model(config, data)
    kwargs = fit_kwargs(config)
    if config["training"]["patience"]:
        kwargs["callbacks"] = [EarlyStopping(patience=config["training"]["patience"])]
    if not resume:
        start_partial(out)
    kwargs["checkpoint_dir"] = staging
    if config["training"]["checkpoint_every"]:
        kwargs["checkpoint_every"] = config["training"]["checkpoint_every"]
    if resume:
        kwargs["resume"] = staging
    previous = (staging / CONFIG).read_text(encoding="utf-8") if resume else ""
    write_config(staging / CONFIG, config)
    checkpoint = staging / "checkpoint"

    def discard() -> None:
        # A fresh run leaves nothing behind; an interrupted run being resumed was there before
        # this call and stays, so a refused or failed resume can be tried again.
        if not resume:
            shutil.rmtree(staging, ignore_errors=True)

    try:
        if status is not None:
            status(STAGE_TRAINING)
        history = fit(model, data.x, data.condition, progress=progress, **kwargs)
    except KeyboardInterrupt:
        if checkpoint.is_dir():
            raise RunInterrupted(f"interrupted: resume with 'vaekit train --resume {out}'", out=out, resumable=True) from None
        discard()
        raise RunInterrupted("interrupted: nothing was saved yet", out=out, resumable=False) from None
    except TrainingError as err:
        if checkpoint.is_dir():
            # Keep the last good state: the run can go on with a lower learning rate.
            hint = f"Resume from the last good epoch with 'vaekit train --resume {out} --lr {config['training']['lr'] / 10:g}'."
            raise TrainingError(f"{err} {hint}") from None
        discard()
        raise
    except BaseException:
        if resume:  # e.g. settings the checkpoint refuses: the staged run keeps the settings it resumes with
            atomic_write_text(staging / CONFIG, previous)
        discard()
        raise
    try:
        if status is not None:
            status(STAGE_RESULTS)
        metrics, info = _write_results(staging, out, config, model, history, data, test_data, command)
        for leftover in staging.glob("checkpoint*"):
            _remove(leftover)  # the finished model replaces the checkpoints
        commit_partial(staging, out)
    except KeyboardInterrupt:
        if checkpoint.is_dir():
            message = f"interrupted: the trained model is kept; finish with 'vaekit train --resume {out}'"
            raise RunInterrupted(message, out=out, resumable=True) from None
        discard()
        raise
    except BaseException:
        discard()
        raise
    logger.info("wrote run folder %s (%d epochs in %.1f s)", out, len(history), history.seconds)
    return Run(path=out, config=config, model=model, history=history, metrics=metrics, info=info)


def _write_results(staging: Path, out: Path, config, model, history, data: RunData, test_data: RunData, command: str):
    """Everything after training: model, history, metrics, run info, figures, report; returns (metrics, info)."""
    from vaekit import __version__, report
    from vaekit.io import save

    save(model, staging)
    write_history(staging / HISTORY, history)
    metrics = {"evaluated_on": test_data.description, **evaluate_run(model, test_data, config)}
    write_json(staging / METRICS, metrics)
    info = {
        "vaekit_version": __version__,
        "command": command,
        "data": data.description,
        "columns": data.columns,
        "condition": config["data"]["condition"] or None,
        "label_names": data.label_names,
        "epochs_trained": len(history),
        "train_seconds": round(history.seconds, 3),
    }
    write_json(staging / RUN_INFO, info)
    save_figures(staging / FIGURES, report.run_figures(model, data, history))
    report.write_report(staging, data=data, model=model, name=out.name)
    return _as_read(metrics), _as_read(info)


def _as_read(value: Any) -> Any:
    """``value`` as :func:`read_json` gives it back from the file :func:`write_json` writes."""
    return json.loads(json.dumps(_jsonable(value), allow_nan=False))


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def sweep(
    config: Any,
    over: dict[str, list[Any]],
    out: str | Path,
    *,
    force: bool = False,
    progress: typing.Callable[[int, int], None] | None = None,
):
    """Train one model per combination of ``over`` and write the folder ``out``, exactly as ``vaekit sweep``.

    The folder (staged in ``<out>.partial``, renamed when complete) holds config.toml, sweep.csv
    (one row per model), models/NN/ (each loadable with :func:`vaekit.load`) and, for 2-D
    unconditional data, sweep.png.

    Parameters
    ----------
    config : dict, str or Path
        Settings as for :func:`train`; ``[training] objective`` must be "elbo".
    over : dict
        Swept hyperparameter -> values, as for :func:`vaekit.sweep` (the grid is the product).
    out : str or Path
        The folder to write.
    force : bool, default False
        Replace a non-empty ``out``; the old folder is removed only once the new one is complete.
    progress : callable(epoch, epochs), optional
        Called after every epoch, as :func:`vaekit.sweep`'s ``progress``.

    Returns
    -------
    SweepResult
        As :func:`vaekit.sweep` returns it.

    Raises
    ------
    InputError, InputTypeError
        A bad setting or grid (the message names it), or ``out`` exists and ``force`` is False.

    """
    from vaekit.io import save
    from vaekit.sweep import sweep as sweep_models

    config = _settings(config)
    if config["training"]["objective"] != "elbo":
        raise InputError(f"[training] objective must be 'elbo' for a sweep. Got {config['training']['objective']!r} instead.")
    out = check_out(out, force=force, names=_PY_NAMES)
    config["data"]["options"] = dataset_options(config)
    data = load_data(config)
    template = build_model(config, data)
    training = config["training"]
    kwargs = {k: training[k] for k in ("epochs", "batch_size", "lr", "seed", "weight_decay")}
    result = sweep_models(
        template, data.x, data.condition, over=over, objective=build_objective(config), progress=progress, **kwargs
    )
    staging = start_partial(out)
    try:
        write_config(staging / CONFIG, config)
        write_table(staging / "sweep.csv", result.table)
        for i, model in enumerate(result.models):
            save(model, staging / "models" / f"{i:02d}")
        if template.x_dim == 2 and template.condition is None:
            save_figures(staging, {"sweep": result.figure(data.x)})
        commit_partial(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("wrote sweep folder %s (%d models)", out, len(result.models))
    return result
