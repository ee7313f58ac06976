"""Training on several processes with torch.distributed: DistributedDataParallel under ``torchrun``.

``vk.fit`` called inside a ``torchrun`` process (or ``vaekit train --nproc N``) trains with DDP:

* the process group starts from torchrun's environment (``RANK``, ``WORLD_SIZE``,
  ``MASTER_ADDR``...), with gloo on CPU and nccl on CUDA;
* every rank draws the same random numbers as one process would: the same global permutation
  per epoch, cut into global batches of ``batch_size`` rows of which each rank takes a
  contiguous share, and for its share the rows of the noise one process draws for the whole
  global batch (:func:`batch_rows`). Each rank's loss is scaled so that DDP's gradient average
  is the gradient of the global batch's mean. N ranks at batch B therefore take the steps one
  process takes at batch B, up to float rounding; the trainer proves the noise sharing on a
  probe batch before training and checks every epoch that the ranks' RNG streams agree;
* epoch terms are sums all-reduced over ranks and divided by the number of rows: exact means
  over all points, with no padded duplicates (unlike ``DistributedSampler``);
* the RNG state is the same on every rank, so a checkpoint written with N ranks resumes with M
  (one process included) and continues the same stream;
* only rank 0 writes (checkpoints, run folder, report); every rank holds the same History
  (rank 0's record is broadcast), so callbacks such as early stopping decide alike;
* collectives time out after :data:`TIMEOUT_SECONDS` (``VAEKIT_DIST_TIMEOUT`` overrides), so a
  rank that dies cannot hang the others for ever; torchrun itself stops the job when a rank exits.

This module is the only one that talks to torch.distributed; with one process every helper
is a no-op.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.distributions import normal as torch_normal

from vaekit.errors import InputError

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS = 120.0
"""How long a collective waits for the other ranks before it fails (``VAEKIT_DIST_TIMEOUT``)."""


@dataclass(frozen=True)
class World:
    """Where this process stands: ``rank`` of ``size`` processes (size 1: no distribution)."""

    rank: int = 0
    size: int = 1

    @property
    def active(self) -> bool:
        return self.size > 1


def launched_size() -> int:
    """WORLD_SIZE as torchrun sets it (1 outside torchrun)."""
    raw = os.environ.get("WORLD_SIZE", "1")
    try:
        return int(raw)
    except ValueError:
        raise InputError(f"the environment variable WORLD_SIZE must be an integer. Got {raw!r} instead.") from None


def current() -> World:
    """The process group this process belongs to now (World() when there is none)."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def env_rank() -> int:
    """The rank torchrun gave this process, before or without a process group (0 outside torchrun)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0") or 0)


def timeout_seconds() -> float:
    """Seconds a collective waits for the other ranks: ``VAEKIT_DIST_TIMEOUT`` or :data:`TIMEOUT_SECONDS`."""
    raw = os.environ.get("VAEKIT_DIST_TIMEOUT")
    if raw is None:
        return TIMEOUT_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise InputError(f"VAEKIT_DIST_TIMEOUT must be a positive number of seconds. Got {raw!r} instead.")
    return value


def join(device: torch.device) -> World:
    """Start (or join) the process group torchrun describes; return this process's World.

    Outside torchrun (WORLD_SIZE unset or 1) nothing happens. The backend is nccl for a CUDA
    model and gloo otherwise; a group someone else started is used as it is.
    """
    if dist.is_available() and dist.is_initialized():
        return current()
    if launched_size() <= 1:
        return World()
    if not dist.is_available():
        raise InputError("WORLD_SIZE > 1 asks for distributed training, but this torch build has no torch.distributed.")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_seconds()))
    world = current()
    logger.info("joined the process group: rank %d of %d (%s)", world.rank, world.size, backend)
    return world


def leave() -> None:
    """Leave the process group in step with the other ranks, once every rank has finished its work.

    Every rank waits at a barrier, then tears its group down while the rendezvous store is still
    up. A rank that simply exits can find the store's host gone (two torchrun agents, one per
    machine: the store lives in one of them) and abort with SIGABRT after its work is done,
    which torchrun then reports as a failed run. A no-op without a process group; call it only
    where every rank gets to it (after a completed run), or the barrier waits for the timeout.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all ranks in place (no-op with one process); returns it."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_tensors_from_writer(tensors: Sequence[torch.Tensor]) -> None:
    """Overwrite every rank's ``tensors`` in place with rank 0's (no-op with one process)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        for t in tensors:
            dist.broadcast(t, src=0)


def broadcast_from_writer(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (a picklable Python object; no-op with one process)."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shard_bounds(total: int, world: World) -> tuple[int, int]:
    """(offset, rows) of this rank's contiguous share of a global batch of ``total`` rows.

    Shares differ by at most one row; with more ranks than rows some shares are empty.
    """
    base, extra = divmod(total, world.size)
    return world.rank * base + min(world.rank, extra), base + (1 if world.rank < extra else 0)


# ------------------------------------------------------------------ one noise stream for all ranks
_window: tuple[int, int, int] | None = None  # (offset, rows, total) while a rank runs its share


def batch_noise(shape: Sequence[int], dtype: torch.dtype | None, device: torch.device | str | None) -> torch.Tensor:
    """Standard normal noise of ``shape`` (..., B, Z), the same numbers one process would use.

    Outside :func:`batch_rows` it is ``torch.randn(shape)``. Inside, where this rank runs rows
    [offset, offset + rows) of a global batch of ``total`` rows, it draws the noise of the whole
    global batch, (..., total, Z), as one process would, and returns this rank's rows. Every
    rank thus consumes the global RNG exactly as one process does: the permutation, the noise
    and every later draw agree with a single-process run.
    """
    window = _window
    if window is None or len(shape) < 2 or shape[-2] != window[1]:
        return torch.empty(shape, dtype=dtype, device=device).normal_()
    offset, rows, total = window
    full = (*shape[:-2], total, shape[-1])
    return torch.empty(full, dtype=dtype, device=device).normal_().narrow(-2, offset, rows)


@contextlib.contextmanager
def batch_rows(offset: int, rows: int, total: int) -> Iterator[None]:
    """Run this rank's rows [offset, offset + rows) of a global batch of ``total`` rows.

    Reparameterised Gaussian draws (torch's ``Normal.rsample``, whose noise torch takes from
    ``torch.distributions.normal._standard_normal``, and vaekit's own :func:`batch_noise`)
    come from the global batch's noise. The trainer proves on a probe batch, before training,
    that this covers every random draw of the model and objective (:func:`check_noise_sharing`).
    """
    global _window
    saved_window, saved_draw = _window, torch_normal._standard_normal
    _window = (offset, rows, total)
    torch_normal._standard_normal = batch_noise
    try:
        yield
    finally:
        _window, torch_normal._standard_normal = saved_window, saved_draw


def rng_digest(device: torch.device) -> int:
    """A 63-bit fingerprint of the global RNG state(s) that training draws from."""
    state = torch.get_rng_state().numpy().tobytes()
    if device.type == "cuda":
        state += torch.cuda.get_rng_state(device).numpy().tobytes()
    return int.from_bytes(hashlib.sha256(state).digest()[:8], "little") >> 1


def same_on_all_ranks(value: int, device: torch.device) -> bool:
    """Whether an integer is the same on every rank (one all-reduce of min and -max)."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return True
    where = device if device.type == "cuda" else torch.device("cpu")
    t = torch.tensor([value, -value], dtype=torch.int64, device=where)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t[0]) == value == -int(t[1])
