"""vaekit vs PCA: held-out NLL of `vaekit train` against probabilistic PCA on public tables.

For each table bundled with scikit-learn (wine: 178 x 13, breast cancer: 569 x 30, diabetes:
442 x 10, iris: 150 x 4; nothing is downloaded), each latent size and each setting, trains with
``vk.runs.train`` exactly as ``vaekit train --data FILE.csv --z-dim Z --test-fraction 0.3``
would (all other settings the defaults, or the lecture's recipe), and prints the
held-out ``iwae_nll`` (k=100) next to ``ppca_nll`` (PPCA fitted on the same training part),
both in nats per row in the table's own units, as mean and spread over the training seeds.
The sample-quality metrics are cut to a minimum (they do not enter the table).

Usage: PYTHONPATH=src python benchmarks/vs_pca.py [--seeds 3] [--epochs 400] [--work DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import vaekit as vk

SETTINGS = {
    "defaults (standardised, learned variance)": {},
    "lecture recipe (--no-standardize --variance 0.1)": {"standardize": False, "variance": 0.1},
}
# Tables the defaults were chosen on (wine, breast cancer) and tables they were not tuned on.
TABLES = {"wine": "load_wine", "breast_cancer": "load_breast_cancer", "diabetes": "load_diabetes", "iris": "load_iris"}


def tables(folder: Path, names: list[str]) -> dict[str, str]:
    """The bundled tables as CSV files with a header row: name -> path."""
    from sklearn import datasets

    out = {}
    for name in names:
        bunch = getattr(datasets, TABLES[name])()
        columns = [f"c{i}" for i in range(bunch.data.shape[1])]
        path = folder / f"{name}.csv"
        rows = "".join(",".join(repr(float(v)) for v in row) + "\n" for row in bunch.data)
        path.write_text(",".join(columns) + "\n" + rows)
        out[name] = str(path)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=400)
    parser.add_argument("--z", default="2,5")
    parser.add_argument("--tables", default="wine,breast_cancer", help=f"comma separated, of {sorted(TABLES)}")
    parser.add_argument("--settings", default="all", help="'defaults' for the defaults only")
    parser.add_argument("--work", default=None, help="folder for the CSV files and run folders (default: a temporary one)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="vs_pca-"))
    work.mkdir(parents=True, exist_ok=True)
    print("| table | z | setting | vaekit held-out iwae_nll | PPCA held-out nll | vaekit train iwae_nll | PPCA train nll |")
    print("|---|---|---|---|---|---|---|")
    chosen = SETTINGS if args.settings == "all" else {k: v for k, v in SETTINGS.items() if k.startswith(args.settings)}
    for name, path in tables(work, args.tables.split(",")).items():
        for z in [int(v) for v in args.z.split(",")]:
            for label, model in chosen.items():
                held, train, ppca, ppca_train = [], [], [], []
                started = time.perf_counter()
                for seed in range(args.seeds):
                    config = {
                        "data": {"path": path, "test_fraction": 0.3, "split_seed": 0},
                        "model": {"z_dim": z, **model},
                        "training": {"seed": seed, "epochs": args.epochs},
                        "evaluation": {"n_samples": 200, "permutations": 1, "quadrature_grid": 20},
                    }
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        run = vk.runs.train(config, work / f"{name}-z{z}-{'std' if model else 'def'}-s{seed}", force=True)
                    held.append(run.metrics["iwae_nll"])
                    train.append(run.metrics["train"]["iwae_nll"])
                    ppca.append(run.metrics["ppca_nll"])
                    ppca_train.append(run.metrics["train"]["ppca_nll"])
                seconds = time.perf_counter() - started

                def show(values: list[float]) -> str:
                    v = np.asarray(values, dtype=np.float64)
                    return f"{np.median(v):.4g} [{v.min():.4g}, {v.max():.4g}]" if len(v) > 1 else f"{v[0]:.4g}"

                print(
                    f"| {name} | {z} | {label} | {show(held)} | {ppca[0]:.4g} | {show(train)} | {ppca_train[0]:.4g} |"
                    f"  <!-- {seconds:.0f} s -->",
                    flush=True,
                )


if __name__ == "__main__":
    main()
