"""Run folders: the unit of work of the command line.

A run folder holds everything one training run produced and everything needed to redo it::

    config.toml          every setting (data, model, training); ``vaekit train --config`` re-runs it
    run.json             what the data turned out to be (columns, label names, ...) and timings
    model.safetensors    weights            model.json   architecture (see :mod:`vaekit.io`)
    history.csv          one row per epoch  metrics.json  evaluation numbers
    figures/*.png        report.html        (written by :mod:`vaekit.report`)

:func:`train` and :func:`sweep` are the whole pipelines behind ``vaekit train`` and
``vaekit sweep``; :func:`open_run` reads a run folder back. A failed run never stands in place
of a good one: the run is written into ``<out>.partial`` and renamed into place when complete.
Reading and validating ``config.toml``, turning it into data, a model and ``fit`` arguments,
and the folder's files live one layer down in :mod:`vaekit.runfolder` (the report reads run
folders through it too); every public name of it is re-exported here.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vaekit import distributed
from vaekit.errors import FileFormatError, InputError, InputTypeError, RunInterrupted, TrainingError, describe
from vaekit.io import atomic_write_text
from vaekit.runfolder import (  # noqa: F401  (re-exported: vk.runs.<name> is the public face)
    BUILTIN_CONDITIONS,
    CONFIG,
    FIGURES,
    HISTORY,
    LONG_COLUMN_LIST,
    METRICS,
    NO_HELD_OUT,
    PARTIAL_SUFFIX,
    REPORT,
    RING_KEYS,
    RUN_INFO,
    SCHEMA,
    SECTIONS,
    STAGE_RESULTS,
    STAGE_TRAINING,
    USER_BATCHES_PER_EPOCH,
    RunData,
    _jsonable,  # noqa: F401
    apply_auto_log_columns,
    apply_auto_validation,
    apply_batches_per_epoch,
    batch_size_for,
    build_model,
    build_objective,
    check_log_support,
    check_out,
    commit_partial,
    complete_config,
    condition_spec,
    config_text,
    dataset_options,
    default_config,
    evaluate_run,
    fit_kwargs,
    is_nonempty,
    load_data,
    metric_columns,
    older_run_settings,
    older_run_settings_of,
    partial_path,
    read_config,
    read_config_file,
    read_json,
    read_toml,
    require_run,
    save_figures,
    section_schema,
    start_partial,
    validate_config,
    write_config,
    write_history,
    write_json,
    write_table,
)

logger = logging.getLogger(__name__)

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
    metrics.json (held-out numbers next to the training data's: see :func:`run_metrics`),
    run.json (with the split's sources, sizes and seed), figures/*.png and report.html. On CPU
    the same config gives the same files bit for bit.

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
    # Under torchrun every rank trains; only rank 0 touches the run folder (see vaekit.distributed).
    writer = distributed.env_rank() == 0
    if writer:
        check_out(out, force=force, names=_PY_NAMES)
    # Imported here so that monkeypatched or reloaded trainers are the ones used.
    from vaekit.trainer import fit

    config["data"]["options"] = dataset_options(config)
    data = load_data(config)
    if data.columns and config["data"]["path"]:
        _make_explicit(config["data"], data)
    test_data = load_data(config, test=True)
    chosen = _apply_data_rules(config, data, test_data)
    model = build_model(config, data)
    if test_data.held_out:  # refused now, not after training: held-out values outside the model's support
        check_log_support(model.likelihood, test_data, "test data")
        model.prepare_x(test_data.x, "test data")
    kwargs = _training_kwargs(config)
    if not resume and writer:
        start_partial(out)
    kwargs["checkpoint_dir"] = staging
    if config["training"]["checkpoint_every"]:
        kwargs["checkpoint_every"] = config["training"]["checkpoint_every"]
    if resume:
        kwargs["resume"] = staging
    previous = (staging / CONFIG).read_text(encoding="utf-8") if resume else ""
    if writer:
        write_config(staging / CONFIG, config)
    checkpoint = staging / "checkpoint"

    def discard() -> None:
        # A fresh run leaves nothing behind; an interrupted run being resumed was there before
        # this call and stays, so a refused or failed resume can be tried again.
        if not resume and writer:
            shutil.rmtree(staging, ignore_errors=True)

    threads = TorchThreads(config["training"]["threads"])  # for training and the results
    history = None
    try:
        if status is not None:
            status(STAGE_TRAINING)
        history = fit(model, data.x if data.stream is None else data.stream, data.condition, progress=progress, **kwargs)
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
        if resume and writer:  # e.g. settings the checkpoint refuses: the staged run keeps the settings it resumes with
            atomic_write_text(staging / CONFIG, previous)
        discard()
        raise
    finally:
        if history is None:
            threads.close()
    if not writer:  # the other ranks are done: rank 0 evaluates and writes the run folder
        threads.close()
        return Run(path=out, config=config, model=model, history=history, metrics={}, info={})
    try:
        if status is not None:
            status(STAGE_RESULTS)
        metrics, info = _write_results(staging, out, config, model, history, data, test_data, command, chosen)
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
    finally:
        threads.close()
    logger.info("wrote run folder %s (%d epochs in %.1f s)", out, len(history), history.seconds)
    return Run(path=out, config=config, model=model, history=history, metrics=metrics, info=info)


def _write_results(
    staging: Path, out: Path, config, model, history, data: RunData, test_data: RunData, command: str, chosen: dict[str, str]
):
    """Everything after training: model, history, metrics, run info, figures, report; returns (metrics, info)."""
    import torch

    from vaekit import report
    from vaekit._version import __version__
    from vaekit.diagnostics import run_warnings
    from vaekit.io import save

    fit_prior = getattr(model, "fit_prior", None)
    if fit_prior is not None:  # a prior fitted after training (the VQ-VAE's code prior): before save and metrics
        fit_prior(data.x, data.condition)
    save(model, staging)
    write_history(staging / HISTORY, history)
    metrics = run_metrics(model, data, test_data, config)
    # Said out loud (metrics.json, report, CLI, log): a collapsed run looks like any other in its numbers.
    metrics["warnings"] = run_warnings(metrics, data.x, config, model=model, columns=data.columns)
    write_json(staging / METRICS, metrics)
    info = {
        "vaekit_version": __version__,
        "command": command,
        "data": data.description,
        "columns": data.columns,
        "condition": config["data"]["condition"] or None,
        "label_names": data.label_names,
        "label": config["data"]["label"] or None,
        "label_classes": data.label_classes,
        "threads": config["training"]["threads"] or torch.get_num_threads(),
        "split": split_info(config, data, test_data),
        "epochs_trained": len(history),
        "train_seconds": round(history.seconds, 3),
        "processes": distributed.current().size,
        "chosen": chosen,
    }
    write_json(staging / RUN_INFO, info)
    save_figures(staging / FIGURES, report.run_figures(model, data, history))
    report.write_report(staging, data=data, model=model, name=out.name)
    return _as_read(metrics), _as_read(info)


class DataFit(typing.NamedTuple):
    """What :func:`fit_data` returns: the trained model, its History and every setting used."""

    model: Any
    history: Any
    config: dict[str, dict[str, Any]]


# [data] path of an array given to fit_data: a file's defaults apply, and nothing reads the path.
ARRAY_PATH = "<array>"


def fit_data(
    x: Any,
    *,
    z_dim: int = 2,
    columns: typing.Sequence[str] | None = None,
    model: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    seed: int = 0,
) -> DataFit:
    """Train on your own array with the defaults that ``vaekit train --data FILE`` gives a file.

    ``vk.VAE(...)`` and ``vk.fit(...)`` keep the lecture's recipe (a fixed variance of 0.1, no
    standardisation, batches of 256), which is right for the ring and wrong for a table whose
    columns run into the hundreds (README "vaekit vs PCA"). This applies a file's defaults
    instead: standardised inputs, a learned variance, Student's t (``df = "learned"``), columns
    that span decades on a log scale, about 10 batches per epoch, and from 48 rows a 20%
    validation split with early stopping; then trains as :func:`train` would on the same rows,
    without writing a run folder (the same weights bit for bit on CPU; tested).

    Parameters
    ----------
    x : array (N, D) or (N, *x_shape)
        Your data, in their own units (numpy or torch; float32 precision); curves (N, P, 2) and
        images keep their shape.
    z_dim : int, default 2
        The latent size.
    columns : sequence of str, optional
        Distinct names of the D columns (for log columns and messages; default "0", "1", ...,
        as a ``.npy`` file's columns are named).
    model, training : dict, optional
        ``[model]`` and ``[training]`` settings that override the defaults (the keys of
        config.toml, e.g. ``{"hidden": [64, 64]}``, ``{"epochs": 200}``); ``z_dim`` and ``seed``
        are the arguments above, and no checkpoints are written (``checkpoint_every`` is refused).
    seed : int, default 0
        The training seed ([training] seed).

    Returns
    -------
    DataFit
        ``(model, history, config)``: ``config`` holds every setting used, with the choices made
        from the rows (``config["data"]["log_columns"]``, ``config["training"]["batch_size"]``,
        ``val_fraction``) and the column names; its ``[data] path`` is the placeholder
        :data:`ARRAY_PATH`: to train the same model from a file, save the rows and give its path.

    """
    import torch

    from vaekit.models.common import flat_rows
    from vaekit.trainer import fit
    from vaekit.validate import float_matrix

    for name, value in (("model", model), ("training", training)):
        if value is not None and not isinstance(value, dict):
            raise InputTypeError(f"{name} must be a dict of [{name}] settings. Got {describe(value)} instead.")
    given = sorted({"z_dim"} & set(model or {})) + sorted({"seed", "checkpoint_every"} & set(training or {}))
    if given:
        raise InputError(
            "model and training must leave out z_dim, seed and checkpoint_every (z_dim and seed are fit_data's own "
            f"arguments; it writes no checkpoints). Got {given} instead."
        )
    # Curves and images (N, *x_shape) keep their shape; anything else is checked as a table (N, D).
    shape = tuple(x.shape[1:]) if isinstance(x, (np.ndarray, torch.Tensor)) and x.ndim > 2 else None
    rows = float_matrix(x if shape is None else flat_rows(x, shape), "x").numpy()  # (N, D) float32
    if columns is None:
        names = [str(i) for i in range(rows.shape[1])]
    elif isinstance(columns, str) or not all(isinstance(name, str) for name in columns):
        raise InputTypeError(f"columns must be a list of column names (str). Got {describe(columns)} instead.")
    else:
        names = list(columns)
    if len(names) != rows.shape[1]:
        raise InputError(f"columns must name the {rows.shape[1]} columns of x. Got {len(names)} names instead.")
    if len(set(names)) != len(names):
        repeated = sorted({name for name in names if names.count(name) > 1})
        raise InputError(f"columns must be distinct names. Got {repeated} more than once instead.")
    settings = {
        "data": {"path": ARRAY_PATH},
        "model": {"z_dim": z_dim, **(model or {})},
        "training": {"seed": seed, **(training or {})},
    }
    config = complete_config(settings, source="fit_data settings")
    config["data"]["path"] = ARRAY_PATH  # not a file: complete_config made it absolute
    if len(names) <= LONG_COLUMN_LIST:
        config["data"]["columns"] = list(names)  # as a run records a file's columns
    data = RunData(x=rows, condition=None, labels=None, columns=names, description=f"an array of {len(rows)} rows", x_shape=shape)
    _apply_data_rules(config, data)
    built = build_model(config, data)
    kwargs = _training_kwargs(config)
    threads = TorchThreads(config["training"]["threads"])
    try:
        history = fit(built, data.x, None, **kwargs)
    finally:
        threads.close()
    return DataFit(built, history, config)


def _training_kwargs(config: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """:func:`vaekit.fit`'s keyword arguments for ``config``, with early stopping when ``patience`` is set.

    Shared by :func:`train` and :func:`fit_data`, so the two train the same rows the same way.
    """
    from vaekit.trainer import EarlyStopping

    kwargs = fit_kwargs(config)
    if config["training"]["patience"]:
        kwargs["callbacks"] = [EarlyStopping(patience=config["training"]["patience"])]
    return kwargs


def _apply_data_rules(config: dict[str, dict[str, Any]], data: RunData, test: RunData | None = None) -> dict[str, str]:
    """Settings chosen from the data's rows: key -> why, also logged.

    ``[data] log_columns = "auto"`` -> the columns that span decades (``test``: held-out rows they
    must be able to score); ``[training] val_fraction = "auto"`` -> a validation split with early
    stopping, or none; then ``batches_per_epoch`` -> batch_size, from the rows left for training.
    """
    n_rows = data.x.shape[0] if data.stream is None else data.stream.n
    notes = {
        "log_columns": apply_auto_log_columns(config, data, test),
        "val_fraction": apply_auto_validation(config, n_rows, streamed=data.stream is not None),
        "batch_size": apply_batches_per_epoch(config, n_rows),
    }
    for note in notes.values():
        if note:
            logger.info("%s", note)
    return {key: note for key, note in notes.items() if note}


def _make_explicit(d: dict[str, Any], data: RunData) -> None:
    """Record in ``[data]`` what the file turned out to be, so config.toml redoes the run from it alone.

    A CSV's header choice becomes true or false, and a short column list is written out; a long
    one chosen as "all but the excluded" stays ``columns = []`` with its ``exclude`` list.
    """
    if Path(d["path"]).suffix.lower() not in (".npy", ".parquet"):
        d["header"] = data.has_header
    if d["columns"] or len(data.columns) <= LONG_COLUMN_LIST:
        d["columns"] = list(data.columns)


class TorchThreads:
    """Run with ``n`` torch CPU threads (0: leave torch's setting) and put the old setting back on ``close``."""

    def __init__(self, n: int) -> None:
        import torch

        self.previous = torch.get_num_threads()
        if n:
            torch.set_num_threads(n)
            logger.info("training with %d torch thread(s)", n)

    def close(self) -> None:
        import torch

        torch.set_num_threads(self.previous)


def run_metrics(model, data: RunData, test_data: RunData, config: dict[str, dict[str, Any]], *, seed: int = 0) -> dict[str, Any]:
    """The contents of metrics.json: held-out numbers at the top level, the training data's under ``"train"``.

    The top level is :func:`evaluate_run` on ``test_data`` (so ``metrics["iwae_nll"]`` is the
    held-out number); ``"train"`` holds the same metrics on the training data ``data``. Both fit
    the PCA/PPCA baselines on ``data``. Without held-out data (``test_data.held_out`` False: a
    file and neither ``test_path`` nor ``test_fraction``) the top level is on the training data,
    there is no ``"train"`` and ``"warning"`` says so (:data:`vaekit.runfolder.NO_HELD_OUT`).
    """
    metrics = evaluate_run(model, test_data, config, seed=seed, train=data)
    if test_data.held_out:
        metrics["train"] = evaluate_run(model, data, config, seed=seed, train=data)
    else:
        warnings.warn(NO_HELD_OUT, UserWarning, stacklevel=2)  # the command line prints it as one line
        metrics = {"warning": NO_HELD_OUT, **metrics}
    return metrics


def evaluate_on(
    run: str | Path,
    data: str | os.PathLike,
    *,
    n: int | None = None,
    seed: int = 0,
    add_to_report: str | None = None,
    name: str = "data",
) -> dict[str, Any]:
    """A finished run's metrics on other data, as ``vaekit evaluate RUN --data DATA [--add-to-report]``.

    Parameters
    ----------
    run : str or Path
        The run folder.
    data : str or Path
        A built-in dataset's name (``vaekit.data.DATASETS``) or a data file, read with the run's
        ``[data]`` settings (columns by name, its condition, log columns checked).
    n : int, optional
        The sample size of a built-in dataset (default: the run's).
    seed : int, default 0
        Seed of the estimators (IWAE, diversity).
    add_to_report : str, optional
        A label: the metrics are also stored under ``added[label]`` in the run's metrics.json
        (one more column in report.html, which is rewritten; a label already there is
        replaced). Nothing else of the run changes, and if the report cannot be rebuilt
        metrics.json is put back as it was.
    name : str, default "data"
        How messages name ``data`` (the command line: "--data").

    Returns
    -------
    dict
        :func:`evaluate_run`'s metrics on ``data`` with the run's PCA/PPCA baselines fitted on its
        training data, and ``warnings`` (:func:`vaekit.diagnostics.run_warnings`; whether the
        model saw these rows is not checked, so they read "on the data given"). When the training
        data cannot be read, the baselines are fitted on ``data`` and the first warning says so.

    """
    from vaekit.data import DATASETS
    from vaekit.diagnostics import run_warnings
    from vaekit.io import load

    if not isinstance(data, (str, os.PathLike)):
        raise InputTypeError(f"{name} must be a built-in dataset's name or a file path. Got {describe(data)} instead.")
    for key, value, least in (("seed", seed, 0), ("n", n, 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
            raise InputError(f"{key} must be an integer >= {least}. Got {value!r} instead.")
    if add_to_report is not None:
        _check_label(add_to_report)
    folder = require_run(run)
    if not (folder / CONFIG).is_file():
        raise FileFormatError(f"{folder} has no {CONFIG}; cannot tell which data to evaluate on.")
    config, model = read_config(folder / CONFIG), load(folder)
    text = os.fspath(data)
    if text in DATASETS:
        source = {"name": text, "path": ""}
    elif Path(text).is_file():
        source = {"name": "", "path": str(Path(text).resolve())}
    else:
        raise InputError(f"{name} must be a built-in dataset ({sorted(DATASETS)}) or an existing file. Got {text!r} instead.")
    caveats = []
    try:
        train = load_data(config)
    except (ValueError, TypeError, OSError) as err:
        train = None
        caveats.append(f"the training data cannot be read ({err}); the baselines are fitted on {name}")
        logger.warning("%s", caveats[-1])
    override = dict(config["data"], test_path="", test_fraction=0.0, **source)
    if n is not None:
        override["n"] = n
    given = load_data(validate_config({**config, "data": override}, source="evaluate settings"))
    given.held_out = None  # the user's data: whether the model saw them is not checked
    check_log_support(model.likelihood, given, name, trained=True)
    metrics = evaluate_run(model, given, config, seed=seed, train=train)
    where = "on the data given"
    metrics["warnings"] = caveats + run_warnings(metrics, given.x, config, where=where, model=model, columns=given.columns)
    if add_to_report is not None:
        add_to_report_column(folder, add_to_report, metrics)
    return metrics


def _check_label(label: Any) -> None:
    if not isinstance(label, str) or not label:
        raise InputError(f"add_to_report must be a non-empty label (str). Got {label!r} instead.")


def add_to_report_column(run: str | Path, label: str, metrics: dict[str, Any]) -> bool:
    """Store ``metrics`` under ``added[label]`` in the run's metrics.json and rewrite report.html.

    Both are written atomically; a label already there is replaced, everything else is kept, and
    if the report cannot be rebuilt metrics.json is put back as it was. ``metrics`` are usually
    :func:`evaluate_on`'s (which calls this with its ``add_to_report``). Returns True when
    ``label`` was there before (replaced), False when the column is new.
    """
    from vaekit import report

    _check_label(label)
    folder = require_run(run)
    path = folder / METRICS
    before = path.read_text(encoding="utf-8") if path.is_file() else None
    saved = read_json(path) if before is not None else {}
    replaced = label in saved.get("added", {})
    saved.setdefault("added", {})[label] = metrics
    write_json(path, saved)
    try:
        report.write_report(folder)
    except BaseException:
        if before is not None:  # the report could not be rebuilt: metrics.json goes back to what it was
            atomic_write_text(path, before)
        raise
    return replaced


def split_info(config: dict[str, dict[str, Any]], data: RunData, test_data: RunData) -> dict[str, Any]:
    """What run.json records of the train / held-out split: sources, sizes, fraction and seed."""
    d = config["data"]
    return {
        "held_out": test_data.held_out,
        "test_data": test_data.description if test_data.held_out else None,
        "test_fraction": d["test_fraction"] or None,
        "split_seed": d["split_seed"] if d["test_fraction"] else None,
        "n_train": len(data.x) if data.stream is None else data.stream.n,
        "n_test": len(test_data.x) if test_data.held_out else 0,
    }


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
        As :func:`vaekit.sweep` returns it, with ``chosen``: the settings chosen from the data's
        rows and why (the notes ``vaekit sweep`` prints).

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
    if config["training"]["val_fraction"] == "auto":
        config["training"]["val_fraction"] = 0.0  # a sweep trains on every row, without early stopping
    chosen = _apply_data_rules(config, data)
    template = build_model(config, data)
    training = config["training"]
    kwargs = {k: training[k] for k in ("epochs", "batch_size", "lr", "seed", "weight_decay")}
    threads = TorchThreads(training["threads"])
    try:
        result = sweep_models(
            template, data.x, data.condition, over=over, objective=build_objective(config), progress=progress, **kwargs
        )
    finally:
        threads.close()
    result.chosen = chosen
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
