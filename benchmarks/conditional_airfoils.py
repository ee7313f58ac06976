"""Adherence of thickness-conditioned airfoil models: the README's "Conditional design" table.

For each seed, the run of ``vaekit train --data airfoils --condition thickness:continuous
--z-dim 6`` (all other settings at their defaults) and, with ``--raw``, the same model fed the
thickness unscaled (``vk.Continuous(1)`` without shift and scale, what vaekit did before). Both
are scored by :func:`vaekit.design.condition_adherence` on the 423 held-out airfoils: 50 targets
at the 5%..95% quantiles of their thickness, 20 samples (decoder means) each.

Usage: PYTHONPATH=src python benchmarks/conditional_airfoils.py [--seeds 0,1,2] [--raw] [--epochs 400]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

import vaekit as vk
from vaekit import design, runfolder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=400)
    parser.add_argument("--raw", action="store_true", help="also the unscaled condition")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for seed in [int(s) for s in args.seeds.split(",")]:
        settings = {
            "data": {"name": "airfoils", "condition": "thickness", "condition_type": "continuous"},
            "model": {"z_dim": 6},
            "training": {"epochs": args.epochs, "seed": seed},
        }
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            run = vk.runs.train(settings, f"{folder}/run")
            row = {k: v for k, v in run.metrics.items() if k.startswith("adherence")}
            print(f"seed={seed} scaled", json.dumps(row | {"seconds": round(time.perf_counter() - start, 1)}), flush=True)
        if not args.raw:
            continue
        config = runfolder.complete_config(settings)
        data, test = runfolder.load_data(config), runfolder.load_data(config, test=True)
        model = runfolder.build_model(config, data)
        raw = vk.VAE(x_shape=model.x_shape, z_dim=6, hidden=model.hidden, standardize=True, condition=vk.Continuous(1), seed=seed)
        vk.fit(raw, data.x, data.condition, **runfolder.fit_kwargs(config))
        targets = design.adherence_targets(test.condition)
        row = design.condition_adherence(raw, targets, "thickness", reference=data.condition)
        print(f"seed={seed} raw", json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
