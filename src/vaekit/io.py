"""Saving and loading models: safetensors weights + JSON metadata, written atomically.

Nothing here unpickles: a pickle file (``.pt``, ``.pkl``, ...) is refused, and ``model.json`` is
checked (format, version, keys, types) before any tensor is built.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_bytes

from vaekit._version import __version__
from vaekit.errors import FileFormatError, InputError, InputTypeError, describe
from vaekit.validate import PICKLE_SUFFIXES

FORMAT = "vaekit-model"
FORMAT_VERSION = 1
WEIGHTS, METADATA = "model.safetensors", "model.json"
# Buffers set from the training data by fit(): its statistics, and whether a data-dependent
# start (vaekit.nn.PCAResidual) has run. Matched on the last part of the buffer's name.
_DATA_BUFFERS = {"x_shift", "x_scale", "initialised"}


# The model classes load() can build, keyed by the "class" field of model.json. model.py fills it
# (register_model), so that io needs nothing from the layers above it: imports run model -> io.
MODEL_CLASSES: dict[str, type[torch.nn.Module]] = {}


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the new one.

    The bytes go to a temporary file in the same folder, are flushed and fsynced, then renamed
    over ``path`` (atomic on POSIX); the folder is fsynced so the rename itself survives a crash.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            # mkstemp creates the file private (0600); give it the permissions open() would.
            os.fchmod(handle.fileno(), 0o666 & ~_current_umask())
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(path: str | Path) -> None:
    """Flush a folder's entries to disk, so that a rename into it survives a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    """Text version of :func:`atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def register_model(cls: type[torch.nn.Module]) -> type[torch.nn.Module]:
    """Make :func:`load` build ``cls`` for model files whose ``class`` is ``cls.__name__``; return ``cls``.

    ``cls`` must offer ``from_config(config)`` and a ``config`` property; used as a class decorator.
    """
    MODEL_CLASSES[cls.__name__] = cls
    return cls


def save(model: torch.nn.Module, path: str | Path) -> Path:
    """Write ``model.safetensors`` and ``model.json`` into folder ``path``; return the folder.

    The weights are unwrapped from DistributedDataParallel / torch.compile first. The JSON is
    written last, so a folder with a readable ``model.json`` always has matching weights.
    """
    model = unwrap(model)
    folder = Path(path)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    wrong = sorted({str(v.dtype) for v in state.values() if v.is_floating_point() and v.dtype != torch.float32})
    if wrong:
        # load() rebuilds float32 models; refusing here keeps a file that cannot be read from being written.
        raise InputError(f"model must hold float32 weights to be saved (call model.float() first). Got {wrong} instead.")
    blob = safetensors_bytes(state, metadata={"format": FORMAT})
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "vaekit_version": __version__,
        "class": type(model).__name__,
        "config": model.config,
        "tensors": {k: list(v.shape) for k, v in state.items()},
        # Detects a truncated or edited weights file (safetensors itself only checks its header).
        "weights_sha256": hashlib.sha256(blob).hexdigest(),
    }
    atomic_write_bytes(folder / WEIGHTS, blob)
    atomic_write_text(folder / METADATA, json.dumps(meta, indent=2) + "\n")
    return folder


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def read_versioned_json(path: Path, fmt: str, version: int, what: str) -> dict[str, Any]:
    """Parse a vaekit JSON document and check its ``format`` and ``format_version`` fields.

    Shared by model files and checkpoints, so both refuse damaged or foreign files alike.
    """
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise FileFormatError(f"{path} is not valid JSON ({err}); the file is truncated or corrupted.") from None
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise FileFormatError(f"{path} is not a vaekit {what} (format must be {fmt!r}).")
    found = meta.get("format_version")
    if found != version:
        raise FileFormatError(f"{path} has format_version {found!r}; this vaekit ({__version__}) reads version {version}.")
    return meta


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Read and validate ``model.json`` in folder ``path`` (no tensors are touched)."""
    folder = model_folder(path)
    meta_path = folder / METADATA
    if not meta_path.is_file():
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            raise FileFormatError(
                f"no model at {folder}: {METADATA} is missing and the folder holds pickle file(s) {pickles[:3]}, which "
                "vaekit never loads because they can execute code."
            )
        raise FileFormatError(f"no model at {folder}: {METADATA} is missing (is this a vaekit run folder?).")
    meta = read_versioned_json(meta_path, FORMAT, FORMAT_VERSION, "model file")
    config = meta.get("config")
    if not isinstance(config, dict):
        raise FileFormatError(f"{meta_path}: 'config' must be an object.")
    model_cls = _model_class(meta)
    if model_cls is None:
        known = ", ".join(repr(name) for name in sorted(MODEL_CLASSES))
        raise FileFormatError(f"{meta_path}: unknown model class {meta.get('class')!r}; this vaekit reads {known}.")
    try:
        model_cls.config_class.check_json(config)
    except (ValueError, TypeError) as err:
        raise FileFormatError(f"{meta_path}: {err}") from None
    digest = meta.get("weights_sha256")
    if not isinstance(digest, str) or len(digest) != 64:
        raise FileFormatError(f"{meta_path}: 'weights_sha256' must be the 64-digit SHA-256 of {WEIGHTS}.")
    return meta


def _model_class(meta: dict[str, Any]) -> type[torch.nn.Module] | None:
    name = meta.get("class")
    return MODEL_CLASSES.get(name) if isinstance(name, str) else None


def model_folder(path: str | Path) -> Path:
    """The model folder for ``path``: the folder itself, or the folder of its model.json/model.safetensors."""
    if not isinstance(path, (str, Path)):
        raise InputTypeError(f"path must be a folder path (str or Path). Got {describe(path)} instead.")
    folder = Path(path)
    refuse_pickle(folder)
    if folder.is_file() and folder.name in (WEIGHTS, METADATA):
        return folder.parent
    if folder.is_file():
        raise FileFormatError(f"{folder} is a file; vaekit.load expects the folder written by model.save (or a run folder).")
    if not folder.exists():
        raise FileFormatError(f"no model at {folder}: the folder does not exist.")
    return folder


def load(path: str | Path, *, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Load a model saved with :func:`save` (or a run folder); never unpickles anything.

    Raises
    ------
    FileFormatError
        Missing, truncated, tampered or wrong-version files, or a pickle file.

    """
    meta = read_metadata(path)
    model_class = _model_class(meta)
    folder = model_folder(path)
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise FileFormatError(f"{folder}: {WEIGHTS} is missing.")
    blob = weights.read_bytes()
    if hashlib.sha256(blob).hexdigest() != meta["weights_sha256"]:
        raise FileFormatError(
            f"{weights} cannot be read: it does not match the SHA-256 recorded in {METADATA} "
            "(the file is truncated or was modified)."
        )
    try:
        state = safetensors_load(blob)
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise FileFormatError(f"{weights} cannot be read ({err}); the file is truncated or corrupted.") from None
    config = meta["config"]
    if len(config.get("hidden", ())) + 1 > len(state):  # a bound before building: each layer owns tensors in the file
        raise FileFormatError(f"{folder / METADATA}: config.hidden has more layers than {WEIGHTS} holds tensors.")
    try:
        # Built on the meta device first: a config with absurd sizes allocates nothing before
        # its shapes are compared with the tensors actually in the file.
        with torch.device("meta"):
            skeleton = model_class.from_config(config)
    except (ValueError, TypeError, RuntimeError, OverflowError) as err:
        raise FileFormatError(f"{folder / METADATA}: invalid config: {err}") from None
    expected = {k: (tuple(v.shape), v.dtype) for k, v in skeleton.state_dict().items()}
    found = {k: (tuple(v.shape), v.dtype) for k, v in state.items()}
    if expected != found:
        diff = sorted(str(d) for d in set(expected.items()) ^ set(found.items()))[:4]
        raise FileFormatError(f"{weights} does not match {METADATA}: tensors differ, e.g. {diff}.")
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise FileFormatError(f"{weights}: tensor(s) {bad[:3]} hold NaN or inf; the model is corrupted.")
    model = model_class.from_config(config)
    # Buffers other than the data statistics follow from the config (e.g. a fixed variance): an
    # edited model.json must not silently disagree with the weights it claims to describe.
    # A model lists the buffers it fits from data (a code prior, moving averages) in FITTED_BUFFERS.
    params = {name for name, _ in model.named_parameters()} | set(getattr(model, "FITTED_BUFFERS", ()))
    for name, fresh in model.state_dict().items():
        if name not in params and name.rsplit(".", 1)[-1] not in _DATA_BUFFERS and not torch.equal(fresh, state[name]):
            raise FileFormatError(f"{folder / METADATA} does not match {WEIGHTS}: {name} differs from what the config implies.")
    model.load_state_dict(state)
    return model.to(device).eval()


def refuse_pickle(path: Path) -> None:
    """Raise for a pickle file: loading one could run arbitrary code."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise FileFormatError(
            f"{path} looks like a pickle file ({path.suffix}); vaekit never loads pickles because they can "
            "execute code. Save models with model.save(folder) (safetensors + JSON)."
        )
