"""Curve metrics of plain VAEs on the bundled airfoils (train split), measured on the test split.

Trains ``vk.VAE(x_shape=(64, 2), hidden=(128, 128), standardize=True)`` for each latent size,
then reports :func:`vaekit.shape_metrics.curve_metrics` of the test split's reconstructions
and of 1000 prior samples (decoder means), the validity failures of the samples by reason, and
a reference row: the test split against the train split (what a perfect sampler would score).

Usage: PYTHONPATH=src python benchmarks/airfoils.py [--epochs 300] [--z 2,8] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import time

import vaekit as vk
from vaekit import shape_metrics, shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--z", default="2,8")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    x, _ = vk.data.airfoils("train")
    xt, _ = vk.data.airfoils("test")
    for z in [int(v) for v in args.z.split(",")]:
        model = vk.VAE(x_shape=(64, 2), z_dim=z, hidden=(128, 128), standardize=True, seed=args.seed)
        start = time.perf_counter()
        vk.fit(model, x, epochs=args.epochs, batch_size=128, lr=1e-3, seed=args.seed)
        seconds = time.perf_counter() - start
        samples = model.sample(1000, seed=args.seed)
        row = shape_metrics.curve_metrics(xt, model.reconstruct(xt), samples)
        row |= {"train_seconds": round(seconds, 1), "sample_failures": shapes.validity(samples).counts}
        print(f"z={z}", json.dumps(row), flush=True)
    print("reference (test vs train)", json.dumps(shape_metrics.curve_metrics(xt, xt, x)))


if __name__ == "__main__":
    main()
