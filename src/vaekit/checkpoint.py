"""Training checkpoints: save a run's full state, resume it bit for bit, guard against NaN.

A checkpoint is a folder ``checkpoint/`` inside the run folder, holding

* ``state-<epoch>.safetensors``: model weights, optimizer tensors and RNG states (no pickle);
* ``checkpoint.json``: epoch, History, fit settings, model config, the optimizer's non-tensor
  state and the SHA-256 of the state file it belongs to.

``checkpoint.json`` is the commit point. A new state file is written first (temp file, fsync,
rename), then the JSON is swapped in the same way, and only then are older state files removed.
A crash at any moment therefore leaves ``checkpoint.json`` naming a complete state file whose
hash it knows: the last good checkpoint is never replaced by a half-written one.

:class:`Checkpointer` keeps an in-memory copy of the state after every completed epoch, so
that an interruption (Ctrl-C) or a numerical fault can still save (and restore) the last
completed, finite epoch even between two scheduled writes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_bytes

from vaekit import distributed
from vaekit._version import __version__
from vaekit.errors import FileFormatError, InputError, TrainingError
from vaekit.history import History
from vaekit.io import atomic_write_bytes, atomic_write_text, read_versioned_json, refuse_pickle, unwrap

logger = logging.getLogger(__name__)

FORMAT = "vaekit-checkpoint"
FORMAT_VERSION = 1
FOLDER, MANIFEST = "checkpoint", "checkpoint.json"
_STATE_NAME = re.compile(r"state-\d{6,}\.safetensors")
_TENSOR, _TUPLE, _ITEMS = "__tensor__", "__tuple__", "__items__"

# Settings that change the computation itself: resuming with a different value cannot continue
# the same run, so it is refused. Other settings (lr, weight_decay, grad_clip, epochs) may change
# on resume, e.g. to lower lr after a NaN; a warning says the result then differs.
STRICT_SETTINGS = ("batch_size", "seed", "objective", "monitors", "data_sha256", "val")


def checkpoint_folder(path: str | Path) -> Path:
    """The ``checkpoint/`` folder for a run folder ``path`` (or ``path`` itself if it is one)."""
    path = Path(path)
    refuse_pickle(path)
    if (path / MANIFEST).is_file() or path.name == FOLDER:
        return path
    return path / FOLDER


def describe_callable(obj: Any) -> str:
    """Stable description of an objective or monitor, equal across processes.

    Dataclass specs (``ELBO(beta=1.0, ...)``) are described by their repr; other callables by
    their qualified name (a plain repr would contain a memory address).
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return repr(obj)
    kind = obj if callable(obj) and hasattr(obj, "__qualname__") else type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


def data_fingerprint(*tensors: torch.Tensor | str | None) -> str:
    """SHA-256 over the bytes of the prepared training tensors (None entries count too).

    A string stands for data that is not in memory: a streamed file's own fingerprint.
    """
    digest = hashlib.sha256()
    for t in tensors:
        if t is None or isinstance(t, str):
            digest.update(b"none;" if t is None else f"{t};".encode())
            continue
        array = t.detach().cpu().contiguous()
        digest.update(f"{tuple(array.shape)}{array.dtype};".encode())
        digest.update(array.numpy().tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------- numerical faults
def nonfinite_message(what: str, epoch: int, model: torch.nn.Module, lr: float, grad_clip: float | None, saved: str) -> str:
    """Explain a NaN/inf: which epoch, the most likely cause for this model, and what to try.

    ``what`` says what went wrong ("the loss became nan"); ``epoch`` counts from 1; ``saved``
    describes the last good checkpoint (see :meth:`Checkpointer.rescue_note`).
    """
    causes, fixes = [], []
    spec = getattr(unwrap(model), "likelihood", None)
    variance = getattr(spec, "variance", None)
    if isinstance(variance, (int, float)) and variance < 1e-3:
        causes.append(
            f"the fixed likelihood variance is very small (variance={variance:g}): the reconstruction term "
            "sum((x - mean)^2) / (2 variance) and its gradients become huge"
        )
        fixes.append("a larger variance (e.g. Gaussian(variance=0.1) or 'learned')")
    elif isinstance(variance, str) and getattr(spec, "min_variance", 1.0) < 1e-6:
        causes.append(f"min_variance={spec.min_variance:g} lets the learned variance collapse towards 0")
        fixes.append("a larger Gaussian(min_variance=...)")
    if lr >= 1e-2:
        causes.append(f"the learning rate is high (lr={lr:g})")
    if not causes:
        causes.append(f"a learning rate that is too high for this model (lr={lr:g}) or exploding gradients")
    fixes.insert(0, f"a lower lr (e.g. lr={lr / 10:g})")
    if grad_clip is None:
        fixes.append("grad_clip=1.0")
    return f"{what} in epoch {epoch}. Likely causes: {'; or '.join(causes)}. Try {', '.join(fixes)}. {saved}"


def all_finite(tensors: dict[str, torch.Tensor]) -> bool:
    """True when every floating-point tensor holds only finite values (one device sync)."""
    floats = [t.reshape(-1) for t in tensors.values() if t.is_floating_point() and t.numel()]
    return not floats or bool(torch.isfinite(torch.cat(floats)).all())


# ---------------------------------------------------------------------------- flattening
def flatten(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON-ready skeleton of ``obj`` (e.g. an optimizer state dict); tensors go to ``tensors``.

    Each tensor is replaced by ``{"__tensor__": key}``, tuples by ``{"__tuple__": [...]}`` and
    dicts with non-string keys (optimizer state is keyed by parameter index) by
    ``{"__items__": [[key, value], ...]}``.
    """
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().to("cpu", copy=True).contiguous()
        return {_TENSOR: path}
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: flatten(v, f"{path}.{k}", tensors) for k, v in obj.items()}
        return {_ITEMS: [[k, flatten(v, f"{path}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {_TUPLE: [flatten(v, f"{path}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [flatten(v, f"{path}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot checkpoint a value of type {type(obj).__name__} at {path}")


def unflatten(skeleton: Any, tensors: dict[str, torch.Tensor], where: str) -> Any:
    """Inverse of :func:`flatten`; raises FileFormatError for anything it did not write."""
    if isinstance(skeleton, dict):
        if set(skeleton) == {_TENSOR}:
            key = skeleton[_TENSOR]
            if not isinstance(key, str) or key not in tensors:
                raise FileFormatError(f"{where}: refers to tensor {key!r}, which the state file does not hold.")
            return tensors[key]
        if set(skeleton) == {_TUPLE} and isinstance(skeleton[_TUPLE], list):
            return tuple(unflatten(v, tensors, where) for v in skeleton[_TUPLE])
        if set(skeleton) == {_ITEMS} and isinstance(skeleton[_ITEMS], list):
            out = {}
            for item in skeleton[_ITEMS]:
                if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], (int, str))):
                    raise FileFormatError(f"{where}: malformed entry {str(item)[:60]}.")
                out[item[0]] = unflatten(item[1], tensors, where)
            return out
        if any(k.startswith("__") for k in skeleton):
            raise FileFormatError(f"{where}: unknown marker in {sorted(skeleton)[:4]}.")
        return {k: unflatten(v, tensors, where) for k, v in skeleton.items()}
    if isinstance(skeleton, list):
        return [unflatten(v, tensors, where) for v in skeleton]
    if skeleton is None or isinstance(skeleton, (bool, int, float, str)):
        return skeleton
    raise FileFormatError(f"{where}: unexpected value {str(skeleton)[:60]}.")  # pragma: no cover - JSON has no other types


# ---------------------------------------------------------------------------- state
@dataclass
class Snapshot:
    """Everything needed to continue training after ``epoch`` completed epochs (tensors on CPU)."""

    epoch: int
    tensors: dict[str, torch.Tensor]
    optimizer: Any  # flattened optimizer state dict (JSON skeleton)
    history_columns: dict[str, list[Any]]
    seconds: float


# Checkpoint tensors of callbacks start with this, then the callback's position and class name.
CALLBACK_PREFIX = "callback."


def callback_prefix(index: int, callback: Any) -> str:
    """``callback.<index>.<class name>.``: a resumed run gives a callback only its own kind's state."""
    return f"{CALLBACK_PREFIX}{index}.{type(callback).__name__}."


def take_snapshot(
    epoch: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    history: History,
    seconds: float = 0.0,
    callbacks: Sequence[Any] = (),
) -> Snapshot:
    """Copy model, optimizer, RNG and callback state now (at an epoch boundary); ``seconds`` of training so far.

    Each callback's ``state()`` tensors (an early stopper's best weights) are stored under
    :func:`callback_prefix` (``callback.<i>.<class name>.<name>``), so a resumed run continues
    with them (:meth:`Checkpointer.restore_callbacks`).
    """
    tensors = {f"model.{k}": v.detach().to("cpu", copy=True).contiguous() for k, v in unwrap(model).state_dict().items()}
    for i, callback in enumerate(callbacks):
        state = getattr(callback, "state", None)  # duck-typed callbacks need not have one
        for name, value in (state() if callable(state) else {}).items():
            tensors[f"{callback_prefix(i, callback)}{name}"] = value.detach().to("cpu", copy=True).contiguous()
    skeleton = flatten(optimizer.state_dict(), "optimizer", tensors)
    tensors["rng.cpu"] = torch.get_rng_state()
    device = unwrap(model).device if hasattr(unwrap(model), "device") else torch.device("cpu")
    if device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    # Columns are copied lazily (only when written); record how many epochs belong to this state.
    return Snapshot(epoch, tensors, skeleton, history.columns, seconds)


def _history_upto(columns: dict[str, list[Any]], epoch: int) -> dict[str, list[Any]]:
    return {k: list(v[:epoch]) for k, v in columns.items()}


@dataclass
class Loaded:
    """A checkpoint read back from disk."""

    epoch: int
    tensors: dict[str, torch.Tensor]
    optimizer: Any
    history: History
    settings: dict[str, Any]
    model_config: Any
    torch_version: str
    seconds: float


_MANIFEST_KEYS: dict[str, type | tuple[type, ...]] = {
    "format": str,
    "format_version": int,
    "vaekit_version": str,
    "torch_version": str,
    "epoch": int,
    "state_file": str,
    "state_sha256": str,
    "settings": dict,
    "model_config": (dict, type(None)),
    "history": dict,
    "seconds": (int, float),
    "optimizer": (dict, list),
}


def write_checkpoint(folder: Path, snap: Snapshot, settings: dict[str, Any], model_config: Any) -> Path:
    """Write ``snap`` atomically into ``folder``; return the path of ``checkpoint.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    state_name = f"state-{snap.epoch:06d}.safetensors"
    blob = safetensors_bytes(snap.tensors, metadata={"format": FORMAT})
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "vaekit_version": __version__,
        "torch_version": torch.__version__,
        "epoch": snap.epoch,
        "state_file": state_name,
        "state_sha256": hashlib.sha256(blob).hexdigest(),
        "settings": settings,
        "model_config": model_config,
        "history": _history_upto(snap.history_columns, snap.epoch),
        "seconds": snap.seconds,
        "optimizer": snap.optimizer,
    }
    text = json.dumps(manifest, indent=1) + "\n"  # NaN (epochs without a monitor value) stays NaN
    atomic_write_bytes(folder / state_name, blob)
    atomic_write_text(folder / MANIFEST, text)  # the commit point
    for old in folder.iterdir():
        stale_state = _STATE_NAME.fullmatch(old.name) and old.name != state_name
        if stale_state or (old.name.startswith(".") and old.name.endswith(".tmp")):
            old.unlink(missing_ok=True)  # earlier states and temp files left by a killed process
    logger.info("checkpoint: epoch %d written to %s", snap.epoch, folder)
    return folder / MANIFEST


def read_checkpoint(path: str | Path) -> Loaded:
    """Read and verify a checkpoint folder (or the run folder holding ``checkpoint/``).

    Raises
    ------
    FileFormatError
        Missing, truncated, tampered or wrong-version files, or a pickle file.

    """
    folder = checkpoint_folder(path)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise FileFormatError(f"resume: no checkpoint in {Path(path)} ({manifest_path} does not exist).")
    meta = read_versioned_json(manifest_path, FORMAT, FORMAT_VERSION, "checkpoint")
    for key, kind in _MANIFEST_KEYS.items():
        if key not in meta:
            raise FileFormatError(f"{manifest_path}: key {key!r} is missing.")
        if not isinstance(meta[key], kind) or isinstance(meta[key], bool):
            raise FileFormatError(f"{manifest_path}: {key!r} has the wrong type ({type(meta[key]).__name__}).")
    if meta["epoch"] < 0:
        raise FileFormatError(f"{manifest_path}: epoch must be >= 0. Got {meta['epoch']} instead.")
    if not _STATE_NAME.fullmatch(meta["state_file"]):
        raise FileFormatError(f"{manifest_path}: state_file must be a name like 'state-000010.safetensors'.")
    history = _read_history(meta["history"], meta["epoch"], manifest_path)
    state_path = folder / meta["state_file"]
    try:
        blob = state_path.read_bytes()
    except OSError as err:
        raise FileFormatError(f"{state_path} cannot be read ({err}); the checkpoint is incomplete.") from None
    if hashlib.sha256(blob).hexdigest() != meta["state_sha256"]:
        raise FileFormatError(f"{state_path} does not match the SHA-256 in {MANIFEST}: the file is truncated or tampered with.")
    try:
        tensors = safetensors_load(blob)
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise FileFormatError(f"{state_path} cannot be read ({err}); the file is corrupted.") from None
    optimizer = unflatten(meta["optimizer"], tensors, str(manifest_path))
    return Loaded(
        meta["epoch"],
        tensors,
        optimizer,
        history,
        meta["settings"],
        meta["model_config"],
        meta["torch_version"],
        float(meta["seconds"]),
    )


def _read_history(columns: Any, epoch: int, where: Path) -> History:
    if epoch and not columns:
        raise FileFormatError(f"{where}: the history is empty but the checkpoint is at epoch {epoch}.")
    for name, column in columns.items():
        ok = isinstance(column, list) and len(column) == epoch
        ok = ok and all(
            isinstance(v, (int, float)) or (isinstance(v, list) and all(isinstance(u, (int, float)) for u in v)) for v in column
        )
        if not ok:
            raise FileFormatError(f"{where}: history column {name!r} must hold {epoch} numbers (or lists of numbers).")
    return History(columns)


# ---------------------------------------------------------------------------- the fit() helper
def fit_settings(
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int | None,
    weight_decay: float,
    grad_clip: float | None,
    objective: Any,
    monitors: dict[str, Any],
    val: Any,
    data: tuple[torch.Tensor | None, ...],
) -> dict[str, Any]:
    """JSON-ready record of a fit call: what a resumed run must match (see ``STRICT_SETTINGS``).

    ``data`` holds the prepared tensors (x, c, x_val, c_val); only their SHA-256 is kept.
    """
    return {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "weight_decay": weight_decay,
        "grad_clip": grad_clip,
        "objective": describe_callable(objective),
        "monitors": {name: describe_callable(m) for name, m in monitors.items()},
        "val": val if val is None or isinstance(val, float) else "arrays",
        "data_sha256": data_fingerprint(*data),
    }


def rescue_note(checkpointer: Checkpointer | None) -> str:
    """The end of a NaN message: where the last good state is (or that none is kept)."""
    if checkpointer is None:
        return "No checkpoint was kept (pass checkpoint_dir=...)."
    return checkpointer.rescue_note()


class Checkpointer:
    """Saves and restores a training run for :func:`vaekit.fit`.

    Parameters
    ----------
    path : run folder; checkpoints go to ``path / "checkpoint"``.
    every : write every ``every`` completed epochs (and at the end, on Ctrl-C and on NaN).
    settings : fit settings from :func:`fit_settings`, recorded with each checkpoint and
        checked on resume.
    model : the model being trained; its ``config`` is recorded and checked on resume.

    """

    def __init__(
        self,
        path: str | Path,
        *,
        every: int,
        settings: dict[str, Any],
        model: torch.nn.Module,
        callbacks: Sequence[Any] = (),
    ) -> None:
        self.folder = checkpoint_folder(path)
        self.callbacks = tuple(callbacks)
        self.callback_state: dict[str, torch.Tensor] = {}  # callback.* tensors of the checkpoint resumed from
        self.every = every
        self.settings = settings
        self.epochs = settings["epochs"]
        self.model_config = getattr(unwrap(model), "config", None)
        self.snapshot: Snapshot | None = None
        self.written_epoch = -1
        self.resumed_seconds = 0.0  # training time before this fit call (when resuming)

    # -------------------------------------------------------------- resume
    def resume(self, path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, history: History) -> int:
        """Load the checkpoint at ``path`` into model, optimizer, RNG and history; return its epoch.

        Raises FileFormatError for a bad file and InputError when the model or the settings
        do not match the run that wrote it.
        """
        loaded = read_checkpoint(path)
        where = checkpoint_folder(path)
        plain = unwrap(model)
        if loaded.model_config != self.model_config:
            raise InputError(
                f"resume: the model does not match the checkpoint in {where}. The checkpoint was written for "
                f"{loaded.model_config}. Got a model with config {self.model_config} instead."
            )
        self._check_settings(loaded.settings, where)
        if loaded.epoch > self.epochs:
            raise InputError(
                f"epochs must be at least the checkpoint's epoch ({loaded.epoch}) to resume from {where}. "
                f"Got {self.epochs} instead."
            )
        state = {k[len("model.") :]: v for k, v in loaded.tensors.items() if k.startswith("model.")}
        expected = {k: (tuple(v.shape), v.dtype) for k, v in plain.state_dict().items()}
        found = {k: (tuple(v.shape), v.dtype) for k, v in state.items()}
        if expected != found:
            diff = sorted(str(d) for d in set(expected.items()) ^ set(found.items()))[:4]
            raise FileFormatError(f"{where}: the saved model tensors do not match the model, e.g. {diff}.")
        if not all_finite(state):
            raise FileFormatError(f"{where}: the saved model weights are not finite; the checkpoint is corrupted.")
        _check_optimizer_state(loaded.optimizer, optimizer, where)
        try:
            plain.load_state_dict(state)
            optimizer.load_state_dict(loaded.optimizer)
            torch.set_rng_state(_rng(loaded.tensors, "rng.cpu", where))
            if "rng.cuda" in loaded.tensors and plain.device.type == "cuda":
                torch.cuda.set_rng_state(_rng(loaded.tensors, "rng.cuda", where), plain.device)
        except (ValueError, RuntimeError, KeyError, TypeError, AttributeError, IndexError) as err:
            raise FileFormatError(f"{where}: the saved optimizer or RNG state cannot be restored ({err}).") from None
        for group in optimizer.param_groups:  # a changed lr / weight_decay applies from now on
            group["lr"], group["weight_decay"] = self.settings["lr"], self.settings["weight_decay"]
        if loaded.torch_version != torch.__version__:
            logger.warning(
                "resume: checkpoint written by torch %s, running torch %s; results may differ in the last bits",
                loaded.torch_version,
                torch.__version__,
            )
        history.columns = loaded.history.columns
        self.resumed_seconds = loaded.seconds
        self.callback_state = {k: v for k, v in loaded.tensors.items() if k.startswith(CALLBACK_PREFIX)}
        self.snapshot = take_snapshot(loaded.epoch, model, optimizer, history, loaded.seconds)
        self.snapshot.tensors.update(self.callback_state)  # until the next epoch's snapshot holds their own
        # Resuming into another checkpoint_dir: that folder does not hold this state yet.
        self.written_epoch = loaded.epoch if where.resolve() == self.folder.resolve() else -1
        logger.info("resumed from epoch %d of %s", loaded.epoch, where)
        return loaded.epoch

    def restore_callbacks(self, model: torch.nn.Module, history: History) -> bool:
        """After :meth:`resume` and the callbacks' ``on_train_begin``: give each callback its saved state.

        ``load_state(tensors, history, model)`` gets the callback's own tensors (saved under
        :func:`callback_prefix`, names without it; empty when the checkpoint holds none) and the
        resumed history. Returns True when a callback says the interrupted run had stopped.
        """
        stop = False
        for i, callback in enumerate(self.callbacks):
            prefix = callback_prefix(i, callback)
            mine = {k[len(prefix) :]: v for k, v in self.callback_state.items() if k.startswith(prefix)}
            load = getattr(callback, "load_state", None)
            if callable(load):
                stop = bool(load(mine, history, model)) or stop
        return stop

    def _check_settings(self, saved: dict[str, Any], where: Path) -> None:
        for key in STRICT_SETTINGS:
            if saved.get(key) != self.settings.get(key):
                raise InputError(
                    f"resume: {key} must match the checkpoint in {where} ({saved.get(key)!r}) to continue the same run. "
                    f"Got {self.settings.get(key)!r} instead."
                )
        for key in ("lr", "weight_decay", "grad_clip"):
            if saved.get(key) != self.settings.get(key):
                logger.warning(
                    "resume: %s changed from %r to %r; the result will differ from an uninterrupted run",
                    key,
                    saved.get(key),
                    self.settings.get(key),
                )

    # -------------------------------------------------------------- during training
    def epoch_end(
        self, epoch: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer, history: History, *, seconds: float
    ) -> None:
        """Record the state after ``epoch`` completed epochs (``seconds`` of training in this call); write it when due.

        Raises TrainingError (keeping the previous good state) when the weights are not finite.
        """
        snap = take_snapshot(epoch, model, optimizer, history, self.resumed_seconds + seconds, self.callbacks)
        # Callback state (a best value of -inf) is not training state: only weights and moments are checked.
        if not all_finite({k: v for k, v in snap.tensors.items() if not k.startswith(CALLBACK_PREFIX)}):
            raise TrainingError(
                nonfinite_message(
                    "the weights became non-finite (NaN/inf gradients)",
                    epoch,
                    model,
                    self.settings["lr"],
                    self.settings["grad_clip"],
                    self.rescue_note(),
                )
            )
        self.snapshot = snap
        if epoch % self.every == 0 or epoch >= self.epochs:
            self.write()

    def write(self) -> None:
        """Write the latest snapshot unless it is already on disk."""
        # Under torch.distributed rank 0 alone writes (every rank holds the same weights).
        if self.snapshot is None or self.snapshot.epoch == self.written_epoch or distributed.current().rank != 0:
            return
        write_checkpoint(self.folder, self.snapshot, self.settings, self.model_config)
        self.written_epoch = self.snapshot.epoch

    def rescue_note(self) -> str:
        """What :meth:`rescue` will do, for error messages."""
        if self.snapshot is None:
            return f"No good checkpoint exists yet in {self.folder}."
        return (
            f"The last good state (after epoch {self.snapshot.epoch}) is saved in {self.folder} and restored into the model; "
            f"continue with fit(..., resume={str(self.folder.parent)!r}) and a lower lr."
        )

    def rescue(self, model: torch.nn.Module) -> None:
        """After a failure or interruption: write the last good state and put it back into ``model``."""
        if self.snapshot is None:
            return
        try:
            self.write()
        except OSError as err:  # e.g. a full disk: report it, but let the original error through
            logger.error("could not save the last good checkpoint to %s: %s", self.folder, err)
        state = {k[len("model.") :]: v for k, v in self.snapshot.tensors.items() if k.startswith("model.")}
        unwrap(model).load_state_dict(state)


def _check_optimizer_state(saved: Any, optimizer: torch.optim.Optimizer, where: Path) -> None:
    """Refuse optimizer state whose layout or tensor shapes do not fit ``optimizer``'s parameters.

    torch checks little here itself: a wrong-shaped moment tensor would only fail deep inside
    the next optimizer step.
    """
    params = [p for group in optimizer.param_groups for p in group["params"]]
    ok = isinstance(saved, dict) and isinstance(saved.get("state"), dict) and isinstance(saved.get("param_groups"), list)
    ok = ok and all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in saved["param_groups"])
    if ok:
        indices = [i for g in saved["param_groups"] for i in g["params"]]
        ok = indices == list(range(len(params)))
    if ok:
        for index, entry in saved["state"].items():
            ok = ok and isinstance(index, int) and 0 <= index < len(params) and isinstance(entry, dict)
            for value in entry.values() if ok else ():
                if isinstance(value, torch.Tensor) and value.ndim and value.shape != params[index].shape:
                    ok = False
    if not ok:
        raise FileFormatError(
            f"{where}: the saved optimizer state does not fit the model's parameters; the checkpoint is corrupted."
        )


def _rng(tensors: dict[str, torch.Tensor], key: str, where: Path) -> torch.Tensor:
    value = tensors.get(key)
    if value is None or value.dtype != torch.uint8 or value.ndim != 1:
        raise FileFormatError(f"{where}: {key} must be a uint8 vector in the state file.")
    return value


def nan_safe_equal(a: Any, b: Any) -> bool:
    """Equality that treats NaN as equal to NaN (History columns hold NaN for skipped monitors)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(nan_safe_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(nan_safe_equal(u, v) for u, v in zip(a, b))
    return a == b
