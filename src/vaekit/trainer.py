"""``fit``: the training loop. It knows nothing about VAEs.

The loop needs only a model with ``parameters()``, ``prepare_x`` / ``prepare_condition``
(input checking) and an objective returning per-sample terms. Side effects (progress, early
stopping, checkpoints) go through callbacks; per-epoch measurements through monitors.

Why it is fast: the whole data set lives on the device and batches are index slices of it
(no DataLoader); per-batch terms are summed on the device and read back once per epoch (no
``.item()`` per step); Adam updates all tensors in one fused/foreach call.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit import distributed
from vaekit.checkpoint import Checkpointer, fit_settings, nonfinite_message, rescue_note
from vaekit.errors import InputError, InputTypeError, TrainingError, describe
from vaekit.history import History
from vaekit.models.base import not_applicable
from vaekit.monitors import Diversity
from vaekit.numerics import step_accumulation, within_rounding
from vaekit.objectives import default_objective
from vaekit.streaming import NpyBlocks, column_moments, shuffled_batches
from vaekit.validate import positive_float, positive_int

logger = logging.getLogger(__name__)

Progress = Callable[[int, int, dict[str, Any]], None]


class Callback:
    """Hook into training; override what you need. Return True from ``on_epoch_end`` to stop."""

    def on_train_begin(self, model: torch.nn.Module, history: History) -> None:
        """Called once before the first epoch."""

    def on_epoch_end(self, epoch: int, record: dict[str, Any], model: torch.nn.Module) -> bool | None:
        """Called after every epoch (0-based) with that epoch's values."""
        return None

    def on_train_end(self, model: torch.nn.Module, history: History) -> None:
        """Called once after the last epoch (also after early stopping)."""

    def state(self) -> dict[str, torch.Tensor]:
        """Tensors a resumed run needs to continue exactly as an uninterrupted one; saved with each checkpoint."""
        return {}

    def load_state(self, tensors: dict[str, torch.Tensor], history: History, model: torch.nn.Module) -> bool | None:
        """Continue a resumed run: called after :meth:`on_train_begin` when ``fit`` resumes.

        ``tensors`` are what :meth:`state` gave ({} when the checkpoint holds none), ``history``
        the epochs trained so far. Return True when the interrupted run had already decided to
        stop after its last epoch (``fit`` then trains no further epoch).
        """
        return None


@dataclass
class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    With ``restore_best`` the model's weights are reset to the best epoch's at the end.
    """

    patience: int = 20
    monitor: str = "val_loss"
    min_delta: float = 0.0
    restore_best: bool = True

    def __post_init__(self) -> None:
        positive_int(self.patience, "EarlyStopping.patience")
        positive_float(self.min_delta, "EarlyStopping.min_delta", allow_zero=True)
        self.best = math.inf
        self.best_epoch = -1
        self.seen = 0  # epochs whose value has been compared
        self._best_state: dict[str, torch.Tensor] | None = None

    def on_train_begin(self, model: torch.nn.Module, history: History) -> None:
        self.best, self.best_epoch, self.seen, self._best_state = math.inf, -1, 0, None

    def on_epoch_end(self, epoch: int, record: dict[str, Any], model: torch.nn.Module) -> bool:
        if self.monitor not in record:
            raise InputError(
                f"EarlyStopping.monitor must be a logged quantity {sorted(record)}. Got {self.monitor!r} instead "
                "(val_* quantities need fit(val=...))."
            )
        if self._compare(epoch, record[self.monitor]) and self.restore_best:
            self._best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return self._patience_ran_out(epoch)

    def _compare(self, epoch: int, value: float) -> bool:
        """Take epoch ``epoch``'s monitored value into account; True when it is the new best."""
        self.seen = epoch + 1
        if value < self.best - self.min_delta:
            self.best, self.best_epoch = value, epoch
            return True
        return False

    def _patience_ran_out(self, epoch: int) -> bool:
        """Whether training stops after epoch ``epoch``: ``patience`` epochs since the best one."""
        return epoch - self.best_epoch >= self.patience

    def on_train_end(self, model: torch.nn.Module, history: History) -> None:
        if self.restore_best and self._best_state is not None:
            model.load_state_dict(self._best_state)

    def state(self) -> dict[str, torch.Tensor]:
        """The monitor's name, the epochs seen, the best one, its value and (``restore_best``) its weights.

        A snapshot is taken before the callbacks see its epoch, so ``seen`` is one short of the
        snapshot's epoch; :meth:`load_state` replays the rest from the history.
        """
        out = {"monitor": torch.tensor(list(self.monitor.encode()), dtype=torch.uint8)}
        out |= {"seen": torch.tensor(self.seen), "best_epoch": torch.tensor(self.best_epoch)}
        if self.best_epoch >= 0:  # before that, best is inf
            out["best"] = torch.tensor(self.best, dtype=torch.float64)
        for name, value in (self._best_state or {}).items():
            out[f"weights.{name}"] = value
        return out

    def load_state(self, tensors: dict[str, torch.Tensor], history: History, model: torch.nn.Module) -> bool:
        """Continue a resumed run with the best epoch (and weights) that the interrupted run had found.

        The epochs that the saved state has not seen (the snapshot's own epoch; every epoch when
        the checkpoint holds no state of this stopper) are replayed from the history's
        ``monitor`` column. Weights are known only for the last epoch trained (the model as
        resumed), so a best epoch among the others without saved weights is refused rather than
        restoring the wrong weights at the end. Returns True when the patience had already run
        out after the last epoch (the interrupted run had stopped).
        """
        if "seen" in tensors:
            saved = bytes(tensors["monitor"].tolist()).decode() if "monitor" in tensors else self.monitor
            if saved != self.monitor:
                raise InputError(
                    f"resume: EarlyStopping.monitor must match the checkpoint's early stopping ({saved!r}). "
                    f"Got {self.monitor!r} instead."
                )
            self.seen, self.best_epoch = int(tensors["seen"]), int(tensors["best_epoch"])
            self.best = float(tensors["best"]) if "best" in tensors else math.inf
            weights = {k[len("weights.") :]: v for k, v in tensors.items() if k.startswith("weights.")}
            self._best_state = weights or None
        column = history.columns.get(self.monitor, [])
        last = len(column) - 1
        replayed_from = self.seen
        for epoch in range(self.seen, len(column)):  # the same comparisons on_epoch_end made
            self._compare(epoch, column[epoch])
        if self.restore_best and self.best_epoch >= 0 and (self.best_epoch >= replayed_from or self._best_state is None):
            if self.best_epoch != last:
                raise InputError(
                    f"resume: EarlyStopping(restore_best=True) needs the weights of the best epoch so far "
                    f"({self.best_epoch + 1}), which the checkpoint does not hold (it holds no such state of this "
                    "early stopping: written without it, with restore_best=False, or with the callbacks in another "
                    "order). Resume with EarlyStopping(restore_best=False) or without early stopping, or train again."
                )
            self._best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return last >= 0 and self._patience_ran_out(last)


def fit(
    model: torch.nn.Module,
    x: Any,
    condition: Any = None,
    *,
    objective: Callable[..., Any] | None = None,
    epochs: int = 100,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int | None = 0,
    val: Any = None,
    device: str | torch.device | None = None,
    callbacks: Sequence[Callback] = (),
    progress: Progress | None = None,
    monitors: dict[str, Callable[..., float]] | None = None,
    grad_clip: float | None = None,
    weight_decay: float = 0.0,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 10,
    resume: str | Path | None = None,
    precision: str = "float32",
) -> History:
    """Train ``model`` on data ``x`` (and condition) with Adam; return the per-epoch History.

    Parameters
    ----------
    model : VAE (or any model with ``prepare_x``/``prepare_condition``)
    x : array (N, D)
        Training data (numpy or torch).
    condition : array (N,) or (N, C), optional
        Condition for a conditional model.
    objective : callable, default: the model's ``default_objective`` (``ELBO()`` for a VAE)
        ``objective(model, x, c, epoch=...) -> LossOutput``. If it has ``epoch_begin(model)`` /
        ``epoch_end(model, epoch) -> dict``, they run around every training epoch and the dict
        joins that epoch's History record (whole-epoch quantities such as codebook perplexity).
    epochs, batch_size, lr : training schedule (every epoch visits every point once, the last
        batch may be smaller).
    seed : int or None, default 0
        Seeds shuffling, reparameterisation noise and monitors; the same seed on CPU gives the
        same History and weights bit for bit. ``None`` uses torch's global generator.
    val : float, array (M, D), or (x_val, condition_val), optional
        A fraction in (0, 1) holds out that share of ``x`` (drawn with ``seed``); arrays are used
        as given. Adds ``val_*`` columns (objective terms on the validation set) to History.
    device : str or torch.device, optional
        Moves the model there (``"cuda"``, ``"cpu"``); default: where the model is.
    callbacks : sequence of Callback
        E.g. ``EarlyStopping(patience=20)``.
    progress : callable(epoch, epochs, record), optional
        Called after every epoch (epoch counts from 1).
    monitors : dict name -> callable(model, x, c) -> float, optional
        Per-epoch measurements; default ``{"diversity": Diversity()}`` (2048 prior samples), or
        none for a model that declares ``diversity`` not applicable (it cannot sample yet).
    grad_clip : float, optional
        Clip the global gradient norm to this value.
    weight_decay : float, default 0
        Adam's L2 penalty.
    checkpoint_dir : str or Path, optional
        Run folder: model, optimizer, RNG state, epoch and History are saved atomically to
        ``checkpoint_dir/checkpoint/`` every ``checkpoint_every`` epochs, at the end, on Ctrl-C
        (KeyboardInterrupt, re-raised after saving) and when training fails (last finite epoch).
        Defaults to ``resume`` when resuming.
    checkpoint_every : int, default 10
        Epochs between scheduled checkpoints.
    resume : str or Path, optional
        Folder of an earlier run's checkpoint (the run folder or its ``checkpoint/``). Training
        continues from the saved epoch up to ``epochs``; on CPU the final weights and History
        equal those of an uninterrupted run bit for bit. The model's config, the data,
        ``batch_size``, ``seed``, ``objective``, ``monitors`` and ``val`` must match the saved
        run; a changed ``lr``, ``weight_decay`` or ``grad_clip`` is applied with a warning.
    precision : {"float32", "bf16"}, default "float32"
        ``"bf16"`` runs the training forward passes under ``torch.autocast`` with bfloat16
        (weights, optimizer and validation stay float32); mostly worth it on a GPU. The
        hand-written fast path is float32 only and is not used.

    Distributed training: called inside a ``torchrun`` process (WORLD_SIZE > 1), ``fit`` joins
    the process group and trains with DistributedDataParallel; see :mod:`vaekit.distributed`.
    ``x`` may also be a :class:`vaekit.NpyBlocks` (a .npy file larger than memory, streamed
    in shuffled blocks; see :mod:`vaekit.streaming`).

    Raises
    ------
    TrainingError
        The loss or the weights became NaN/inf; the message names the epoch and the likely
        cause. With checkpointing, the last good state is saved and restored into ``model``.
    FileFormatError
        ``resume`` names a missing, truncated or tampered checkpoint.

    Returns
    -------
    History
        One value per epoch for every term of the objective (loss, reconstruction,
        reconstruction_nll, kl, kl_per_dim, neg_elbo), every monitor, and ``val_*`` columns.

    """
    epochs = positive_int(epochs, "epochs")
    batch_size = positive_int(batch_size, "batch_size")
    lr = positive_float(lr, "lr")
    weight_decay = positive_float(weight_decay, "weight_decay", allow_zero=True)
    if grad_clip is not None:
        grad_clip = positive_float(grad_clip, "grad_clip")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise InputTypeError(f"seed must be an int or None. Got {describe(seed)} instead.")
    checkpoint_every = positive_int(checkpoint_every, "checkpoint_every")
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {list(PRECISIONS)}. Got {precision!r} instead.")
    for name, value in (("checkpoint_dir", checkpoint_dir), ("resume", resume)):
        if value is not None and not isinstance(value, (str, Path)):
            raise InputTypeError(f"{name} must be a folder path (str or Path) or None. Got {describe(value)} instead.")
    objective = default_objective(model) if objective is None else objective
    if not callable(objective):
        raise InputTypeError(f"objective must be callable, e.g. vaekit.ELBO(). Got {describe(objective)} instead.")
    if progress is not None and not callable(progress):
        raise InputTypeError(
            f"progress must be a callable(epoch, epochs, record) or None. Got {describe(progress)} instead "
            "(fit prints nothing itself; pass None for no progress)."
        )
    if monitors is None:
        monitors = {} if "diversity" in not_applicable(model) else {"diversity": Diversity()}
    monitors = dict(monitors)
    epoch_begin, epoch_end = getattr(objective, "epoch_begin", None), getattr(objective, "epoch_end", None)
    requested = torch.device(device) if device is not None else model.device
    world = distributed.join(requested)
    if world.active and requested.type == "cuda":
        requested = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))  # one GPU per rank
    if requested != model.device:
        model.to(requested)
    target = model.device

    if isinstance(x, NpyBlocks):  # larger than memory: streamed in shuffled blocks (vaekit.streaming)
        if isinstance(val, float):
            raise InputError(
                "val must be arrays (x_val, condition_val) when x is streamed from a file (NpyBlocks); "
                f"a fraction would need the rows in memory. Got val={val} instead."
            )
        source = x
        c_all = model.prepare_condition(condition, source.n)
        x_all = model.prepare_x(source.read(0, min(source.n, source.block_rows)))  # the first block: probes, monitors
        x_val, c_val = _validation_set(model, val, x_all, c_all, seed)
        transform = getattr(model, "log_transform", lambda rows: rows)  # log columns: moments of what the networks see
        model.set_scaling_moments(*column_moments(source, lambda block: transform(model.prepare_x(block))))
        model.initialise_from_data(x_all)  # a data-dependent start (PCAResidual) reads the first block
    else:
        source = None
        x_all = model.prepare_x(x)
        c_all = model.prepare_condition(condition, x_all.shape[0])
        x_val, c_val = _validation_set(model, val, x_all, c_all, seed)
        if isinstance(val, float):
            x_all, c_all = _drop_rows(x_all, c_all, val, seed)
        model.set_scaling(x_all)
    data = _EpochData(x_all, c_all, source, _block_reader(model))
    if world.active:
        _check_shards(data.n, batch_size, world.size)

    history = History()
    checkpointer = None
    if checkpoint_dir is not None or resume is not None:
        settings = fit_settings(
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            weight_decay=weight_decay,
            grad_clip=grad_clip,
            objective=objective,
            monitors=monitors,
            val=val,
            data=(x_all if source is None else source.fingerprint(), c_all, x_val, c_val),
        )
        folder = checkpoint_dir if checkpoint_dir is not None else resume
        checkpointer = Checkpointer(folder, every=checkpoint_every, settings=settings, model=model, callbacks=callbacks)
    forked = [target.index or 0] if target.type == "cuda" else []
    with torch.random.fork_rng(devices=forked, enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        elif world.active:  # unseeded: rank 0's RNG state everywhere, so all ranks draw alike
            torch.set_rng_state(distributed.broadcast_from_writer(torch.get_rng_state()))
            if target.type == "cuda":
                cuda_state = torch.cuda.get_rng_state(target)
                torch.cuda.set_rng_state(distributed.broadcast_from_writer(cuda_state), target)
        optimizer = _adam(model, lr, weight_decay, target)
        first = 0 if resume is None else checkpointer.resume(resume, model, optimizer, history)
        train_objective = _autocast(objective, target, PRECISIONS[precision])  # validation stays float32
        engine = step = None
        if world.active:  # DDP synchronises autograd's gradients: the generic path
            step = _ddp_step(model, train_objective, x_all[:4], _rows(c_all, 4), first, target)
        elif precision == "float32":
            engine = proven_accelerator(model, objective, x_all[:batch_size], _rows(c_all, batch_size), first, target)
        history.fast_path = engine is not None
        for cb in callbacks:
            cb.on_train_begin(model, history)
        if resume is not None and checkpointer.restore_callbacks(model, history):
            first = epochs  # the interrupted run had stopped early: nothing is left to train
        start = time.perf_counter()
        try:
            for epoch in range(first, epochs):
                if epoch_begin is not None:
                    epoch_begin(model)
                if world.active:
                    record = _train_epoch_distributed(step, model, optimizer, data, batch_size, epoch, grad_clip, world)
                else:
                    record = _train_epoch(model, train_objective, engine, optimizer, data, batch_size, epoch, grad_clip)
                if epoch_end is not None:
                    record.update(epoch_end(model, epoch))
                if not math.isfinite(record["loss"]):
                    note = rescue_note(checkpointer)
                    what = f"the loss became {record['loss']}"
                    raise TrainingError(nonfinite_message(what, epoch + 1, model, lr, grad_clip, note))
                if x_val is not None:
                    record.update(_evaluate(model, objective, x_val, c_val, batch_size, epoch, prefix="val_"))
                model.eval()
                for name, monitor in monitors.items():
                    every = getattr(monitor, "every", 1)
                    due = (epoch + 1) % every == 0 or epoch == epochs - 1
                    record[name] = monitor(model, x_all, _rows(c_all, x_all.shape[0])) if due else math.nan
                # Every rank measured the same (same weights, same RNG state); rank 0's record is kept
                # everywhere so that callbacks (early stopping) surely decide alike.
                record = distributed.broadcast_from_writer(record)
                history.append(record)
                if checkpointer is not None:  # snapshot of this epoch; written when due
                    checkpointer.epoch_end(epoch + 1, model, optimizer, history, seconds=time.perf_counter() - start)
                if progress is not None:
                    progress(epoch + 1, epochs, record)
                stop = [bool(cb.on_epoch_end(epoch, record, model)) for cb in callbacks]
                if any(stop):
                    logger.info("stopping early after epoch %d", epoch + 1)
                    break
        except BaseException:
            # Ctrl-C, NaN or any failure: keep the last completed, finite epoch on disk and in the model.
            if checkpointer is not None:
                checkpointer.rescue(model)
            raise
        if checkpointer is not None:
            checkpointer.write()  # the end of training (also after early stopping)
        history.seconds = time.perf_counter() - start
        for cb in callbacks:
            cb.on_train_end(model, history)
    model.eval()
    logger.info("trained %d epochs in %.2f s; final %s", len(history), history.seconds, _summary(history.last()))
    return history


def _adam(model: torch.nn.Module, lr: float, weight_decay: float, device: torch.device) -> torch.optim.Optimizer:
    # The fused kernel updates all parameters in one call: on CPU it is the fastest of the
    # three implementations for these small networks, measured in benchmarks/.
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay, fused=True)


def _rows(c: torch.Tensor | None, n: int) -> torch.Tensor | None:
    return None if c is None else c[:n]


def proven_accelerator(model, objective, x, c, epoch: int, device: torch.device):
    """The objective's accelerated step engine for this model, if it proves itself; else None.

    An objective may offer ``objective.accelerator(model)`` (ELBO offers the hand-written
    gradients of :mod:`vaekit.fastpath`). Its structural check cannot see a patched prior or an
    overridden ``decode``, so before it is used it must give, on the first batch ``x`` (B, D)
    and the same random numbers, the loss terms and gradients that autograd gives through
    ``objective`` itself, to float32 rounding (:mod:`vaekit.numerics`); and it must update every
    trainable tensor. Nothing here draws from the training RNG, so results do not depend on it.
    """
    offer = getattr(objective, "accelerator", None)
    engine = offer(model) if offer is not None else None
    if engine is None:
        return None
    params = list(engine.params)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if {id(p) for p in trainable} != {id(p) for p in params}:
        logger.debug("fast path not used: it does not update every trainable tensor of this %s", type(model).__name__)
        return None
    model.train()
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(0)
        out = objective(model, x, c, epoch=epoch)
        expected = torch.autograd.grad(out.loss.mean(), params, allow_unused=True)
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(0)
        grads, sums = engine.gradients(x, c, epoch)
        record = engine.record(sums, x.shape[0], epoch)
    n, dtype = step_accumulation(model, x.shape[0]), x.dtype
    names = {id(p): name for name, p in model.named_parameters()}
    checks = [(names[id(p)], g, torch.zeros_like(p) if e is None else e) for p, g, e in zip(params, grads, expected)]
    reference = {k: v.detach().sum(0) for k, v in out.record().items()}
    if sorted(record) != sorted(reference):
        logger.debug("fast path not used: its terms %s differ from the objective's %s", sorted(record), sorted(reference))
        return None
    checks += [(f"the {k} term", record[k], reference[k]) for k in reference]
    for what, got, want in checks:
        ok, error, bound = within_rounding(got, want, n, dtype)
        if not ok:
            logger.debug("fast path not used: %s differs from autograd by %.3g (float rounding allows %.3g)", what, error, bound)
            return None
    return engine


@dataclass
class _EpochData:
    """The training rows: in memory (``x_all`` (N, D), ``c_all``), or streamed from ``source``.

    With a source, ``x_all`` holds its first block only (for probes and monitors); ``c_all``
    always holds every row's condition.
    """

    x_all: torch.Tensor
    c_all: torch.Tensor | None
    source: NpyBlocks | None
    prepare: Callable[[Any], torch.Tensor]

    @property
    def n(self) -> int:
        return self.x_all.shape[0] if self.source is None else self.source.n

    @property
    def device(self) -> torch.device:
        return self.x_all.device

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """One epoch of (x (B, D), c) batches in a fresh random order (torch's global RNG)."""
        if self.source is not None:
            yield from shuffled_batches(self.source, self.prepare, self.c_all, batch_size)
            return
        order = torch.randperm(self.n, device=self.device)
        for start in range(0, self.n, batch_size):
            idx = order[start : start + batch_size]
            yield self.x_all[idx], None if self.c_all is None else self.c_all[idx]


def _check_shards(n: int, batch_size: int, ranks: int) -> None:
    """Refuse a schedule where some global batch has fewer rows than there are ranks (a rank would get none).

    Every rank computes the same and raises alike, so none is left waiting in a collective.
    """
    last = n % batch_size
    if batch_size >= ranks and (last == 0 or last >= ranks):
        return
    fits = [b for b in range(max(ranks, batch_size - 64), batch_size + 65) if n % b == 0 or n % b >= ranks]
    hint = f" batch_size={min(fits, key=lambda b: abs(b - batch_size))} would do." if fits else ""
    rows = batch_size if batch_size < ranks else last
    short = f"{'each' if batch_size < ranks else 'the last'} batch has {rows} row{'s' * (rows != 1)},"
    raise InputError(
        f"batch_size must give every one of the {ranks} ranks at least one row of every global batch. "
        f"Got batch_size={batch_size} for {n} rows instead: {short} fewer than the {ranks} ranks.{hint}"
    )


def _block_reader(model) -> Callable[[Any], torch.Tensor]:
    """How a streamed block (numpy) becomes the model's tensor: through pinned memory when it goes to a GPU."""
    if model.device.type != "cuda":
        return model.prepare_x

    def prepare(block: Any) -> torch.Tensor:
        # Page-locked host memory: the copy to the GPU runs at full bus speed (pageable memory is staged).
        # float32 in numpy first: torch has no uint16/uint32 or big-endian tensors.
        rows = np.ascontiguousarray(block, dtype=np.float32)
        return model.prepare_x(torch.from_numpy(rows).pin_memory())

    return prepare


def _train_epoch(model, objective, engine, optimizer, data: _EpochData, batch_size, epoch, grad_clip) -> dict[str, Any]:
    model.train()
    if engine is not None:
        return _train_epoch_fast(engine, optimizer, data, batch_size, epoch, grad_clip)
    sums: dict[str, torch.Tensor] = {}
    for xb, cb in data.batches(batch_size):
        out = objective(model, xb, cb, epoch=epoch)
        _step(model, optimizer, out.loss.mean(), grad_clip)
        _accumulate(sums, out.record())
    return _means(sums, data.n)


def _step(model, optimizer, loss: torch.Tensor, grad_clip: float | None) -> None:
    """One optimizer step on ``loss`` (gradients clipped to ``grad_clip`` when given)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()


@torch.no_grad()
def _train_epoch_fast(engine, optimizer, data: _EpochData, batch_size, epoch, grad_clip) -> dict[str, Any]:
    """The same epoch as the generic loop with a proven accelerated engine (see vaekit.fastpath).

    It draws the same random numbers in the same order (randperm, then the engine's noise, as
    ``qz.rsample()``), and leaves the update to the same optimizer, so checkpoints and grad
    clipping behave as in the generic loop.
    """
    params = engine.params
    sums = None
    for xb, cb in data.batches(batch_size):
        grads, batch_sums = engine.gradients(xb, cb, epoch)
        for p, g in zip(params, grads):
            p.grad = g
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        sums = batch_sums if sums is None else sums + batch_sums
    return _means(engine.record(sums, data.n, epoch), data.n)


PRECISIONS = {"float32": None, "bf16": torch.bfloat16}
"""fit's ``precision`` -> the autocast dtype of the training forward passes (None: no autocast)."""


def _autocast(objective: Callable[..., Any], device: torch.device, dtype: torch.dtype | None) -> Callable[..., Any]:
    """``objective`` run under ``torch.autocast(dtype)``, its loss terms returned in float32."""
    if dtype is None:
        return objective

    def run(model, x, c, epoch=0):
        with torch.autocast(device_type=device.type, dtype=dtype):
            out = objective(model, x, c, epoch=epoch)
        return dataclasses.replace(out, loss=out.loss.float(), terms={k: v.float() for k, v in out.terms.items()})

    for hook in ("epoch_begin", "epoch_end"):  # whole-epoch hooks of the objective stay reachable
        if hasattr(objective, hook):
            setattr(run, hook, getattr(objective, hook))
    return run


class _ObjectiveStep(torch.nn.Module):
    """The objective's forward pass as a module: DDP synchronises the gradients of what its forward runs."""

    def __init__(self, model: torch.nn.Module, objective: Callable[..., Any]) -> None:
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, x: torch.Tensor, c: torch.Tensor | None, epoch: int):
        out = self.objective(self.model, x, c, epoch=epoch)
        # Only the loss is differentiated: logged terms leave the graph, so DDP's search for
        # unused parameters does not wait for a gradient that a logged term (the VQ-VAE's
        # codebook term under EMA updates) will never send.
        return dataclasses.replace(out, terms={k: v.detach() for k, v in out.terms.items()})


def _ddp_step(model, objective, x, c, epoch: int, device: torch.device) -> torch.nn.parallel.DistributedDataParallel:
    """The objective wrapped in DistributedDataParallel, after proving that ranks can share its noise.

    Constructing DDP copies rank 0's weights to all ranks. DDP must also know whether some
    trainable tensor gets no gradient (it then searches the graph every step); the probe step
    tells it.
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}  # a training pass may move buffers (EMA codebooks)
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        check_noise_sharing(model, objective, x, c, epoch, device)
        torch.manual_seed(0)
        loss = objective(model, x, c, epoch=epoch).loss.mean()
        unused = any(g is None for g in torch.autograd.grad(loss, trainable, allow_unused=True))
    model.load_state_dict(state)
    ids = [device.index or 0] if device.type == "cuda" else None
    # Buffers are not synchronised every step: models that keep running statistics (the VQ-VAE's
    # code counts, EMA codebooks) reduce them over ranks themselves.
    return torch.nn.parallel.DistributedDataParallel(
        _ObjectiveStep(model, objective), device_ids=ids, forward_sync_buffers=False, find_unused_parameters=unused
    )


def check_noise_sharing(model, objective, x, c, epoch: int, device: torch.device) -> None:
    """Prove that a rank running rows [1, 3) of a 4-row batch draws what one process draws for them.

    From the same RNG state, the objective on all 4 rows and on rows 1..2 inside
    :func:`vaekit.distributed.batch_rows` must give rows 1..2 the same per-row terms (to float
    rounding) and leave the RNG in the same state. Otherwise some random draw of this model or
    objective does not go through the shared noise, and ranks would silently use correlated or
    misaligned noise: that is refused.
    """
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(0)
        whole = objective(model, x[:4], _rows(c, 4), epoch=epoch).record()
        after_whole = distributed.rng_digest(device)
        torch.manual_seed(0)
        with distributed.batch_rows(1, 2, 4):
            part = objective(model, x[1:3], None if c is None else c[1:3], epoch=epoch).record()
        after_part = distributed.rng_digest(device)
    n = step_accumulation(model, 4)
    same = after_whole == after_part and sorted(whole) == sorted(part)
    for key in sorted(whole) if same else ():
        ok, _, _ = within_rounding(part[key], whole[key][1:3], n, x.dtype)
        same = same and ok
    if not same:
        raise TrainingError(
            f"{type(model).__name__} with objective {type(objective).__name__} cannot be trained on several ranks exactly: "
            "some random draw does not go through the noise the ranks share (reparameterised Normal draws and "
            "vaekit.distributed.batch_noise), so the ranks' steps would not be one process's steps. Train it in one process, "
            "or draw its noise with vaekit.distributed.batch_noise."
        )


def _train_epoch_distributed(step, model, optimizer, data: _EpochData, batch_size, epoch, grad_clip, world) -> dict[str, Any]:
    """One epoch on this rank's share of every global batch (see :mod:`vaekit.distributed`).

    The permutation and the noise are those of one process (every rank draws the same numbers
    and runs its contiguous share of each global batch of ``batch_size`` rows). A rank's loss
    is its share's sum times size/B, so that DDP's average over ranks is the gradient of the
    global batch's mean, as in one process.
    """
    model.train()
    sums: dict[str, torch.Tensor] = {}
    for xb, cb in data.batches(batch_size):
        total = xb.shape[0]
        offset, rows = distributed.shard_bounds(total, world)
        with distributed.batch_rows(offset, rows, total):
            out = step(xb[offset : offset + rows], None if cb is None else cb[offset : offset + rows], epoch)
        _step(model, optimizer, out.loss.sum() * (world.size / total), grad_clip)
        _accumulate(sums, out.record())
    if not distributed.same_on_all_ranks(distributed.rng_digest(data.device), data.device):
        raise TrainingError(
            f"the ranks' random number streams differ after epoch {epoch + 1}: some random draw depends on a rank's share "
            "of the data, so the ranks no longer take one process's steps. Train this model in one process."
        )
    # Exact epoch means over all n rows: the per-rank sums add up, nothing is padded.
    keys = list(sums)
    flat = distributed.all_reduce_sum(torch.cat([sums[k].reshape(-1).double() for k in keys]))
    i = 0
    for k in keys:
        size = sums[k].numel()
        sums[k] = flat[i : i + size].reshape(sums[k].shape)
        i += size
    return _means(sums, data.n)


@torch.no_grad()
def _evaluate(model, objective, x, c, batch_size, epoch, prefix="") -> dict[str, Any]:
    """Objective terms averaged over a data set, without gradients."""
    model.eval()
    sums: dict[str, torch.Tensor] = {}
    chunk = max(batch_size, 4096)
    for start in range(0, x.shape[0], chunk):
        cb = None if c is None else c[start : start + chunk]
        _accumulate(sums, objective(model, x[start : start + chunk], cb, epoch=epoch).record())
    return {prefix + k: v for k, v in _means(sums, x.shape[0]).items()}


def _accumulate(sums: dict[str, torch.Tensor], terms: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for key, value in terms.items():
            total = value.detach().sum(0)
            if key in sums:
                sums[key] += total
            else:
                sums[key] = total


def _means(sums: dict[str, torch.Tensor], n: int) -> dict[str, Any]:
    # One device->host transfer per epoch for all terms.
    keys = list(sums)
    flat = torch.cat([sums[k].reshape(-1) for k in keys]).double().div(n).tolist()
    record: dict[str, Any] = {}
    i = 0
    for k in keys:
        size = sums[k].numel()
        record[k] = flat[i] if sums[k].ndim == 0 else flat[i : i + size]
        i += size
    return record


def _validation_set(model, val, x_all, c_all, seed):
    if val is None:
        return None, None
    if isinstance(val, float):
        if not 0.0 < val < 1.0:
            raise InputError(f"val must be a fraction in (0, 1), an array or (x_val, condition_val). Got {val} instead.")
        idx = _holdout_index(x_all.shape[0], val, seed).to(x_all.device)
        return x_all[idx], None if c_all is None else c_all[idx]
    if isinstance(val, tuple):
        if len(val) != 2:
            raise InputError(f"val as a tuple must be (x_val, condition_val). Got a tuple of length {len(val)} instead.")
        x_val = model.prepare_x(val[0], "val[0]")
        return x_val, model.prepare_condition(val[1], x_val.shape[0], "val[1]")
    x_val = model.prepare_x(val, "val")
    return x_val, model.prepare_condition(None, x_val.shape[0], "val condition")


def validation_rows(n_rows: int, fraction: float) -> int:
    """How many of ``n_rows`` rows ``fit(val=fraction)`` holds out: ``max(1, round(n_rows * fraction))``.

    One function for the split itself and for everything that plans around it (the batch size
    from the rows left, the rule of ``val_fraction = "auto"``), so that they cannot disagree.
    """
    return max(1, round(n_rows * fraction))


def _holdout_index(n: int, fraction: float, seed: int | None) -> torch.Tensor:
    n_val = validation_rows(n, fraction)
    if n_val >= n:
        raise InputError(f"val={fraction} leaves no training rows out of {n}.")
    generator = torch.Generator().manual_seed(0 if seed is None else seed)
    return torch.randperm(n, generator=generator)[:n_val]


def _drop_rows(x_all, c_all, fraction, seed):
    keep = torch.ones(x_all.shape[0], dtype=torch.bool)
    keep[_holdout_index(x_all.shape[0], fraction, seed)] = False
    keep = keep.to(x_all.device)
    return x_all[keep], None if c_all is None else c_all[keep]


def _summary(record: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in record.items() if isinstance(v, float))
