"""vaekit vs PCA: held-out NLL of `vaekit train` against probabilistic PCA on public tables.

Each table is a CSV file of numeric columns with a header row: the scikit-learn tables named by
``--tables`` (wine: 178 x 13, breast cancer: 569 x 30, iris: 150 x 4, diabetes: 442 x 10,
linnerud: 20 x 6 with its 3 targets as columns; bundled, nothing is downloaded), and every
``*.csv`` in the folders given with ``--folder`` (e.g. the statsmodels datasets, ids dropped).
For each table, latent size and setting, trains with ``vk.runs.train`` exactly as ``vaekit
train --data FILE.csv --z-dim Z --test-fraction 0.3`` would (all other settings the defaults,
or the setting's changes), and prints the held-out ``iwae_nll`` (k=100) next to ``ppca_nll``
(PPCA fitted on the same training part), both in nats per row in the table's own units, as
median [min, max] over the training seeds, with the batch size that the defaults chose and the
active latent units. The sample-quality metrics are cut to a minimum and the figures are not
drawn unless ``--figures`` (neither enters the table). The defaults were chosen on wine,
breast cancer and iris ("tuned" in the table); every other table is "untuned". A latent size
above 2 runs only on tables of at least ``--wide`` (8) columns, and never z >= columns.
The statsmodels tables of the README: ``pip download --no-deps statsmodels``, unzip, and copy
the numeric columns of ``statsmodels/datasets/*/*.csv`` (ids and years dropped) to a folder.

Usage: PYTHONPATH=src python benchmarks/vs_pca.py [--tables wine,iris] [--folder DIR ...]
       [--z 2,5] [--seeds 3] [--settings defaults|gaussian|no|batch|lecture|all] [--work DIR] [--figures]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import vaekit as vk

# Setting -> config sections that it changes from the defaults.
SETTINGS = {
    "defaults": {},
    # The older settings keep the Gaussian decoder they were measured with (df = "none").
    "gaussian (--df none: the Gaussian decoder, the defaults before Student's t)": {"model": {"df": "none"}},
    "no split (--val-fraction 0 --df none, the defaults before val_fraction 'auto')": {
        "model": {"df": "none"},
        "training": {"val_fraction": 0.0},
    },
    "batch 256 (--batches-per-epoch 0 --val-fraction 0 --df none, the defaults before batches_per_epoch)": {
        "model": {"df": "none"},
        "training": {"batches_per_epoch": 0, "val_fraction": 0.0},
    },
    "lecture recipe (--no-standardize --variance 0.1 --val-fraction 0 --df none)": {
        "model": {"standardize": False, "variance": 0.1, "df": "none"},
        "training": {"val_fraction": 0.0},
    },
}
TABLES = {
    "wine": "load_wine",
    "breast_cancer": "load_breast_cancer",
    "iris": "load_iris",
    "diabetes": "load_diabetes",
    "linnerud": "load_linnerud",
}
TUNED = ("wine", "breast_cancer", "iris")  # the tables the defaults were chosen on


def sklearn_tables(folder: Path, names: list[str]) -> dict[str, Path]:
    """The bundled scikit-learn tables as CSV files with a header row: name -> path."""
    from sklearn import datasets

    out = {}
    for name in names:
        bunch = getattr(datasets, TABLES[name])()
        x = np.hstack([bunch.data, bunch.target]) if name == "linnerud" else bunch.data  # linnerud: 3 + 3 measurements
        path = folder / f"{name}.csv"
        rows = "".join(",".join(repr(float(v)) for v in row) + "\n" for row in x)
        path.write_text(",".join(f"c{i}" for i in range(x.shape[1])) + "\n" + rows)
        out[name] = path
    return out


def n_columns(path: Path) -> int:
    """Number of columns of a CSV file (its header row)."""
    with open(path, newline="") as handle:
        return len(next(csv.reader(handle)))


def show(values: list[float]) -> str:
    """median [min, max] of the seeds' values."""
    v = np.asarray(values, dtype=np.float64)
    return f"{np.median(v):.4g} [{v.min():.4g}, {v.max():.4g}]" if len(v) > 1 else f"{v[0]:.4g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--z", default="2,5", help="latent sizes, comma separated")
    parser.add_argument("--wide", type=int, default=8, help="a latent size above 2 runs on tables of at least this many columns")
    parser.add_argument("--tables", default="wine,breast_cancer,iris", help=f"comma separated, of {sorted(TABLES)}; '' for none")
    parser.add_argument("--folder", action="append", default=[], help="a folder of CSV tables (numeric columns, header row)")
    parser.add_argument("--test-fraction", type=float, default=0.3)
    parser.add_argument("--settings", default="defaults", help="comma separated prefixes of the settings, or 'all'")
    parser.add_argument("--work", default=None, help="folder for the CSV files and run folders (default: a temporary one)")
    parser.add_argument("--figures", action="store_true", help="draw each run's figures (slow: most of a run's time)")
    args = parser.parse_args()
    if not args.figures:  # the figures do not enter the table; drawing them takes longer than training a small table
        from vaekit import report, runs

        runs.save_figures = lambda folder, figures, **kwargs: []
        report.run_figures = lambda *args, **kwargs: {}
    work = Path(args.work or tempfile.mkdtemp(prefix="vs_pca-"))
    work.mkdir(parents=True, exist_ok=True)
    paths = sklearn_tables(work, [t for t in args.tables.split(",") if t])
    for folder in args.folder:
        paths |= {p.stem: p for p in sorted(Path(folder).glob("*.csv"))}
    prefixes = args.settings.split(",")
    chosen = {k: v for k, v in SETTINGS.items() if args.settings == "all" or any(k.startswith(p) for p in prefixes)}
    print(
        "| table | rows x columns | z | setting | batch size | active units | vaekit held-out iwae_nll | PPCA held-out nll "
        "| vaekit train iwae_nll | PPCA train nll |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, path in paths.items():
        columns = n_columns(path)
        rows = sum(1 for _ in open(path)) - 1
        kind = "tuned" if name in TUNED else "untuned"
        for z in [int(v) for v in args.z.split(",")]:
            if z >= columns or (z > 2 and columns < args.wide):
                continue
            for label, change in chosen.items():
                held, train, ppca, ppca_train, epochs, active = [], [], [], [], set(), []
                started = time.perf_counter()
                for seed in range(args.seeds):
                    config = {
                        "data": {"path": str(path), "test_fraction": args.test_fraction, "split_seed": 0},
                        "model": {"z_dim": z, **change.get("model", {})},
                        "training": {"seed": seed, **change.get("training", {})},
                        "evaluation": {"n_samples": 200, "permutations": 1, "quadrature_grid": 20},
                    }
                    tag = label.split(" ")[0]
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        run = vk.runs.train(config, work / f"{name}-z{z}-{tag}-s{seed}", force=True)
                    held.append(run.metrics["iwae_nll"])
                    train.append(run.metrics["train"]["iwae_nll"])
                    ppca.append(run.metrics["ppca_nll"])
                    ppca_train.append(run.metrics["train"]["ppca_nll"])
                    epochs.add(run.config["training"]["batch_size"])
                    active.append(str(run.metrics.get("active_units")))
                seconds = time.perf_counter() - started
                print(
                    f"| {name} ({kind}) | {rows} x {columns} | {z} | {label} | {'/'.join(map(str, sorted(epochs)))} "
                    f"| {','.join(active)} | {show(held)} | {ppca[0]:.4g} | {show(train)} | {ppca_train[0]:.4g} |"
                    f"  <!-- {seconds:.0f} s -->",
                    flush=True,
                )


if __name__ == "__main__":
    main()
