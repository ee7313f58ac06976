"""Train on a .npy file several times larger than a memory budget; report peak RSS.

    python benchmarks/streaming.py [--gib 4] [--budget-gib 1.5] [--folder /tmp] [--epochs 1]

Writes a float32 file of ``--gib`` GiB (rows of 128 columns: 8 latent factors through a random
linear map plus noise), then trains a standardising VAE on it for ``--epochs`` epochs in a child
process through ``vk.NpyBlocks`` and reads the child's peak resident set size (ru_maxrss). The
file is deleted at the end. The issue's goal: a 4 GB file trains with peak RSS under 1.5 GB.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

COLUMNS = 128
CHUNK_ROWS = 1 << 18


def write_file(path: Path, gib: float, seed: int = 0) -> int:
    """Write the data without ever holding more than one chunk; return the number of rows."""
    rows = int(gib * 2**30 / (4 * COLUMNS))
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((8, COLUMNS)).astype(np.float32)
    header = {"descr": "<f4", "fortran_order": False, "shape": (rows, COLUMNS)}
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        for start in range(0, rows, CHUNK_ROWS):
            n = min(CHUNK_ROWS, rows - start)
            z = rng.standard_normal((n, 8), dtype=np.float32)
            x = z @ mixing + 0.1 * rng.standard_normal((n, COLUMNS), dtype=np.float32)
            f.write(x.astype("<f4").tobytes())
    return rows


CHILD = """
import json, sys, time, torch, vaekit as vk
torch.set_num_threads(2)
source = vk.NpyBlocks(sys.argv[1])
model = vk.VAE(x_dim=source.row_shape[0], z_dim=8, hidden=(128, 128), standardize=True, likelihood=vk.Gaussian("learned"), seed=0)
start = time.perf_counter()
history = vk.fit(model, source, epochs=int(sys.argv[2]), batch_size=4096, seed=0, monitors={})
print(json.dumps({"seconds": time.perf_counter() - start, "loss": history.columns["loss"], "rows": source.n}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gib", type=float, default=4.0)
    parser.add_argument("--budget-gib", type=float, default=1.5)
    parser.add_argument("--folder", default="/tmp")
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    path = Path(args.folder) / "vaekit-streaming-bench.npy"
    try:
        t0 = time.perf_counter()
        rows = write_file(path, args.gib)
        written = time.perf_counter() - t0
        done = subprocess.run([sys.executable, "-c", CHILD, str(path), str(args.epochs)], capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(done.stderr)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 2**30  # ru_maxrss is KiB on Linux
        size_gib = path.stat().st_size / 2**30
        print(f"file: {size_gib:.2f} GiB, {rows:,} rows x {COLUMNS} float32 columns (written in {written:.0f} s)")
        print(f"training: {args.epochs} epoch(s) in {result['seconds']:.0f} s, loss {result['loss']}")
        ratio = size_gib / peak_gib
        print(f"peak RSS of the training process: {peak_gib:.2f} GiB (budget {args.budget_gib} GiB; file/peak = {ratio:.1f}x)")
        print("within budget" if peak_gib < args.budget_gib else "OVER BUDGET")
    finally:
        path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
