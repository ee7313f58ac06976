"""The lecture's experiment in one call: reconstruction variance from 0.01 to 5.0.

Trains one VAE per variance (and seed) with ``vk.sweep``, prints the table and writes the
comparison figure (decoded prior samples over the training data).

Usage: PYTHONPATH=src python benchmarks/variance_sweep.py [--epochs 400] [--out sweep_variance.png]
"""

from __future__ import annotations

import argparse

import matplotlib
import torch

import vaekit as vk

matplotlib.use("Agg")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=400)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--out", default="sweep_variance.png")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    x, _ = vk.data.ring(2000, seed=0)
    over = {"variance": [0.01, 0.1, 0.5, 1.0, 5.0], "seed": list(range(args.seeds))}
    result = vk.sweep(vk.VAE(2, 2), x, over=over, epochs=args.epochs)
    print(f"{len(result.models)} models, {args.epochs} epochs, {result.seconds:.1f} s (vectorised={result.vectorised})")
    print(result.format_table())
    result.figure(x).savefig(args.out, dpi=110)
    print(f"figure: {args.out}")


if __name__ == "__main__":
    main()
