"""The airfoil goal: the default ``vaekit train --data airfoils`` against PCA, held out, several seeds.

For each latent size Z and seed, runs ``vaekit train --data airfoils --z-dim Z --seed S`` with
every other setting at its default, then reads the run's ``metrics.json`` ``"curves"`` (the
423 held-out airfoils; PCA with Z components fitted on the same 1691 training airfoils; 2000
prior samples per side). Prints one row per Z: the model's held-out mean and mean worst-point
error (mean and sd over seeds) next to PCA's, the model's valid-sample share (its lowest seed),
the same without the airfoil constraint, and PCA's; then whether the issue's goal holds (the
model beats PCA on both errors for every seed, and >= 99% of its samples are valid).

Usage: PYTHONPATH=src python benchmarks/airfoils.py [--z 4,6,8] [--seeds 0,1,2] [--jobs 2]
       [--out /tmp/airfoil-runs] [--extra "--epochs 400"]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def run(z: int, seed: int, out: Path, extra: list[str]) -> dict:
    folder = out / f"z{z}-s{seed}"
    command = [sys.executable, "-m", "vaekit", "train", "--data", "airfoils", "--z-dim", str(z), "--seed", str(seed)]
    command += ["--out", str(folder), "--force", "-q", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env)
    curves = json.loads((folder / "metrics.json").read_text())["curves"]
    return {"z": z, "seed": seed, "seconds": time.perf_counter() - start, **curves}


def summary(rows: list[dict]) -> dict:
    def stat(side: str, key: str) -> tuple[float, float]:
        values = [r[side][key] for r in rows]
        return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    model = rows[0]["model"]
    wins = all(r["model"][k] < r["pca"][k] for r in rows for k in ("mean_point_error", "mean_max_point_error"))
    valid = min(r["model"]["valid_fraction"] for r in rows)
    return {
        "z": rows[0]["z"],
        "seeds": [r["seed"] for r in rows],
        "model_mean_error": stat("model", "mean_point_error"),
        "pca_mean_error": rows[0]["pca"]["mean_point_error"],
        "model_worst_error": stat("model", "mean_max_point_error"),
        "pca_worst_error": rows[0]["pca"]["mean_max_point_error"],
        "model_valid_min": valid,
        "model_valid_unconstrained_min": min(r["model"].get("valid_fraction_unconstrained", valid) for r in rows),
        "model_changed_max": max(r["model"].get("constraint_changed_fraction", 0.0) for r in rows),
        "pca_valid": rows[0]["pca"]["valid_fraction"],
        "model_mmd2": stat("model", "mmd2"),
        "pca_mmd2": rows[0]["pca"]["mmd2"],
        "n_samples": rows[0]["n_samples"],
        "seconds": statistics.mean(r["seconds"] for r in rows),
        "goal": wins and valid >= 0.99,
        "has_constraint": "valid_fraction_unconstrained" in model,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--z", default="4,6,8")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("/tmp/airfoil-runs"))
    parser.add_argument("--extra", default="", help="more vaekit train flags, e.g. '--epochs 400'")
    args = parser.parse_args()
    zs, seeds = [int(v) for v in args.z.split(",")], [int(v) for v in args.seeds.split(",")]
    extra = shlex.split(args.extra)
    jobs = [(z, s) for z in zs for s in seeds]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda job: run(*job, args.out, extra), jobs))
    print(
        "| Z | vaekit mean error | PCA | vaekit mean worst-point error | PCA | valid samples (lowest seed) | "
        "without constraint | PCA valid | goal |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for z in zs:
        s = summary([r for r in results if r["z"] == z])
        print(
            f"| {z} | {s['model_mean_error'][0]:.5f} ± {s['model_mean_error'][1]:.5f} | {s['pca_mean_error']:.5f} "
            f"| {s['model_worst_error'][0]:.5f} ± {s['model_worst_error'][1]:.5f} | {s['pca_worst_error']:.5f} "
            f"| {s['model_valid_min']:.1%} | {s['model_valid_unconstrained_min']:.1%} | {s['pca_valid']:.1%} "
            f"| {'met' if s['goal'] else 'NOT met'} |"
        )
        print(json.dumps(s), file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
