"""Data larger than memory: a ``.npy`` file read in shuffled blocks of rows.

``vk.fit(model, vk.NpyBlocks("big.npy"))`` trains without loading the file. Each epoch visits
the blocks in a fresh random order and the rows of each block in a fresh random order (both
drawn from the training RNG, so a seed gives the same epochs every time); consecutive rows of
that stream form the batches, so every row is seen exactly once per epoch and only batches
that straddle two blocks mix them. Only one block (plus one batch) is held in memory.

The file is memory-mapped to read its layout (shape, dtype, where the data start); blocks are
then read with positioned reads, so the pages read do not stay in the process's resident
memory as the pages of a mapping would.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.errors import FileFormatError, InputError
from vaekit.validate import positive_int

FLOAT32_MAX = float(np.finfo(np.float32).max)

BLOCK_ROWS = 65536
"""Default rows per block: 32 MiB of float32 at 128 columns."""


class NpyBlocks:
    """A ``.npy`` array (N, *row_shape) read block by block; pass it to :func:`vaekit.fit` as ``x``.

    Parameters
    ----------
    path : str or Path
        A C-ordered ``.npy`` file of a float or integer dtype (no pickled objects).
    block_rows : int, default 65536
        Rows read at a time: memory for one block is ``block_rows * row size``. The shuffle
        mixes rows within a block and the order of the blocks.

    Attributes
    ----------
    n : int            rows
    row_shape : tuple  shape of one row, e.g. (128,) or (64, 2)
    dtype : numpy dtype

    """

    def __init__(self, path: str | Path, *, block_rows: int = BLOCK_ROWS) -> None:
        self.path = Path(path)
        self.block_rows = positive_int(block_rows, "block_rows")
        try:
            mapped = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as err:
            raise FileFormatError(f"{self.path}: cannot read as a .npy array ({err}).") from None
        if not isinstance(mapped, np.memmap) or mapped.ndim < 2:
            raise InputError(f"NpyBlocks needs an array of rows, (N, D) or (N, *row_shape). Got shape {mapped.shape} instead.")
        if not mapped.flags.c_contiguous:
            raise InputError(f"NpyBlocks needs C order (rows contiguous on disk). Got Fortran order in {self.path.name} instead.")
        if mapped.dtype.kind not in "fiu":
            raise InputError(f"NpyBlocks needs numbers (a float or integer dtype). Got {mapped.dtype} in {self.path} instead.")
        self.n = int(mapped.shape[0])
        self.row_shape = tuple(int(s) for s in mapped.shape[1:])
        self.dtype = mapped.dtype
        self.offset = int(mapped.offset)
        self.row_items = int(np.prod(self.row_shape))
        del mapped  # the layout is all that was needed; no page of data was touched

    @property
    def n_blocks(self) -> int:
        return math.ceil(self.n / self.block_rows)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) as an in-memory array (stop - start, *row_shape)."""
        count = (stop - start) * self.row_items
        where = self.offset + start * self.row_items * self.dtype.itemsize
        with open(self.path, "rb") as f:
            rows = np.fromfile(f, dtype=self.dtype, count=count, offset=where)
        if rows.size != count:
            raise FileFormatError(f"{self.path}: the file ends before row {stop} (truncated?).")
        return rows.reshape((stop - start, *self.row_shape))

    def rows(self, indices: Sequence[int]) -> np.ndarray:
        """The rows at ``indices`` (in that order), read one by one: (len(indices), *row_shape)."""
        size = self.row_items * self.dtype.itemsize
        out = np.empty((len(indices), *self.row_shape), dtype=self.dtype)
        with open(self.path, "rb") as f:
            for i, row in enumerate(indices):
                f.seek(self.offset + int(row) * size)
                raw = f.read(size)
                if len(raw) != size:
                    raise FileFormatError(f"{self.path}: the file ends before row {int(row)} (truncated?).")
                out[i] = np.frombuffer(raw, dtype=self.dtype).reshape(self.row_shape)
        return out

    def blocks(self) -> Iterator[tuple[int, int]]:
        """(start, stop) of every block, in file order."""
        for start in range(0, self.n, self.block_rows):
            yield start, min(self.n, start + self.block_rows)

    def fingerprint(self) -> str:
        """SHA-256 of the file's bytes, read in blocks (what a resumed run must train on)."""
        digest = hashlib.sha256()
        with open(self.path, "rb") as f:
            while chunk := f.read(1 << 24):
                digest.update(chunk)
        return "file:" + digest.hexdigest()

    def __repr__(self) -> str:
        return f"NpyBlocks({str(self.path)!r}, n={self.n}, row_shape={self.row_shape}, block_rows={self.block_rows})"


def column_moments(source: NpyBlocks, prepare: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and population std of every column (D,), in one pass over the blocks (Chan's merge, float64)."""
    count, mean, m2 = 0, None, None
    for start, stop in source.blocks():
        x = prepare(source.read(start, stop)).double()  # (R, D)
        n_b = x.shape[0]
        mean_b = x.mean(0)
        m2_b = ((x - mean_b) ** 2).sum(0)
        if mean is None:
            count, mean, m2 = n_b, mean_b, m2_b
            continue
        delta = mean_b - mean
        total = count + n_b
        mean = mean + delta * (n_b / total)
        m2 = m2 + m2_b + delta**2 * (count * n_b / total)
        count = total
    return mean, (m2 / count).sqrt()


def column_range(source: NpyBlocks) -> tuple[np.ndarray, np.ndarray]:
    """The lowest and highest value of every flat column (D,) as float32 holds it, in one pass over the blocks.

    float32 first, as the model and a run's sample see the rows: a float64 file's extreme rounded
    outward would otherwise put its own row outside the range.
    """
    low = high = None
    for start, stop in source.blocks():
        block = source.read(start, stop).reshape(stop - start, -1).astype(np.float32).astype(np.float64)  # (R, D)
        low = block.min(0) if low is None else np.minimum(low, block.min(0))
        high = block.max(0) if high is None else np.maximum(high, block.max(0))
    return low, high


def shuffled_batches(
    source: NpyBlocks, prepare: Any, c_all: torch.Tensor | None, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """One epoch of batches (B, D) from ``source``: blocks in random order, rows shuffled within each.

    ``prepare`` turns a block (R, *row_shape) into the model's (R, D) tensor; ``c_all`` (N, C) is
    the in-memory condition, or None. Draws from torch's global RNG: randperm of the blocks,
    then a randperm of each block's rows as it is read.
    """
    order = torch.randperm(source.n_blocks)
    carry_x: torch.Tensor | None = None
    carry_c: torch.Tensor | None = None
    for b in order.tolist():
        start, stop = b * source.block_rows, min(source.n, (b + 1) * source.block_rows)
        x = prepare(source.read(start, stop))  # (R, D)
        perm = torch.randperm(stop - start, device=x.device)
        x = x[perm]
        c = None if c_all is None else c_all[start:stop][perm.to(c_all.device)]
        if carry_x is not None:
            x = torch.cat([carry_x, x])
            c = None if c is None else torch.cat([carry_c, c])
        full = (x.shape[0] // batch_size) * batch_size
        for i in range(0, full, batch_size):
            yield x[i : i + batch_size], None if c is None else c[i : i + batch_size]
        carry_x, carry_c = (x[full:], None if c is None else c[full:]) if full < x.shape[0] else (None, None)
    if carry_x is not None:
        yield carry_x, carry_c


def csv_to_npy(csv_path: str | Path, npy_path: str | Path, *, chunk_rows: int = 65536) -> tuple[int, list[str]]:
    """Convert a numeric CSV with a header row to a float32 ``.npy``, in constant memory.

    Two passes: the first counts the rows and checks that every cell is a finite number, the
    second writes them chunk by chunk after the ``.npy`` header. The output is written to a
    temporary name and renamed when complete. Returns (rows, column names).

    Raises FileFormatError naming the line and column of the first bad cell.
    """
    import csv

    from vaekit.io import fsync_dir

    csv_path, npy_path = Path(csv_path), Path(npy_path)
    if npy_path.suffix != ".npy":
        raise InputError(f"the output of a CSV conversion must be a .npy path. Got {npy_path.name!r} instead.")

    def rows() -> Iterator[tuple[int, list[float]]]:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            next(reader, None)
            for line, cells in enumerate(reader, start=2):
                if not cells:
                    continue
                try:
                    values = [float(cell) for cell in cells]
                except ValueError:
                    bad = next(c for c in cells if not _is_number(c))
                    raise FileFormatError(f"{csv_path}: line {line} has a cell that is not a number: {bad!r}.") from None
                if len(values) != width or not all(math.isfinite(v) and abs(v) <= FLOAT32_MAX for v in values):
                    what = (
                        f"{len(values)} cells, the header names {width}"
                        if len(values) != width
                        else "a NaN, an infinite value or a value beyond float32's range"
                    )
                    raise FileFormatError(f"{csv_path}: line {line} has {what}.")
                yield line, values

    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), None)
    except OSError as err:
        raise FileFormatError(f"{csv_path}: cannot read ({err.strerror}).") from None
    if not header:
        raise FileFormatError(f"{csv_path}: the file is empty; a header row of column names is expected.")
    if all(_is_number(cell) for cell in header):
        raise FileFormatError(
            f"{csv_path}: the first row is all numbers, so it is not a header; vaekit convert needs a header row of column "
            "names (add one, e.g. c0,c1,...)."
        )
    width = len(header)
    chunk_rows = max(1, min(chunk_rows, (1 << 20) // width))  # about a million cells per chunk, whatever the width
    n = sum(1 for _ in rows())
    if n == 0:
        raise FileFormatError(f"{csv_path}: the file has a header but no data rows.")
    partial = npy_path.with_name(npy_path.name + ".partial")
    with open(partial, "wb") as out:
        np.lib.format.write_array_header_1_0(out, {"descr": "<f4", "fortran_order": False, "shape": (n, width)})
        chunk: list[list[float]] = []
        for _, values in rows():
            chunk.append(values)
            if len(chunk) == chunk_rows:
                out.write(np.asarray(chunk, dtype="<f4").tobytes())
                chunk = []
        if chunk:
            out.write(np.asarray(chunk, dtype="<f4").tobytes())
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, npy_path)
    fsync_dir(npy_path.parent)
    return n, header


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (``MemAvailable`` of /proc/meminfo), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None


CSV_EXPANSION = 12.0
"""Bytes of memory a parsed CSV cell takes per byte of its text (Python lists of str, then float32)."""


def too_large_for_memory(path: str | Path, *, expansion: float = CSV_EXPANSION) -> bool:
    """Whether reading the CSV at ``path`` into memory would likely exhaust the memory available."""
    available = available_memory()
    return available is not None and Path(path).stat().st_size * expansion > available


def too_large_message(path: str | Path) -> str:
    """The error for a CSV too large to read: its size, the memory available, and the one-line conversion."""
    size, available = Path(path).stat().st_size, available_memory() or 0
    return (
        f"{path} ({size / 2**30:.2f} GiB) is too large to read into memory here: parsed, a CSV takes about "
        f"{CSV_EXPANSION:g} times its size, and {available / 2**30:.2f} GiB are available. Convert it once to a .npy, "
        f"which vaekit trains on in blocks without loading it: {convert_command(path)}"
    )


def should_stream(path: str | Path, stream: bool | str) -> bool:
    """Whether ``[data] stream`` (True, False or "auto") streams the .npy at ``path``.

    "auto" streams a file larger than a quarter of the memory available (per local rank under
    torchrun): loading it would take its size again in float32 copies on the way to the model.
    Each rank decides for itself; on machines with different memory, say ``stream`` explicitly.
    """
    if stream != "auto":
        return bool(stream)
    available = available_memory()
    # Under torchrun every local rank would load its own copy: each gets its share of the memory.
    local_ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return available is not None and Path(path).stat().st_size * 4 * local_ranks > available


def convert_command(csv_path: str | Path) -> str:
    """The one-line command that converts ``csv_path`` to a .npy next to it."""
    path = Path(csv_path)
    return f"vaekit convert {path} {path.with_suffix('.npy')}"
