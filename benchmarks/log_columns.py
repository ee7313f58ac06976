"""Log columns: ``vaekit train`` with ``[data] log_columns = []`` against ``"auto"``, held out.

For each table and latent size, ``vaekit train --data TABLE.csv --z-dim Z --test-fraction 0.3``
(split seed 0, all other settings the defaults of a file) is run twice per seed: with no log
columns and with ``--log-columns auto`` (the columns whose training values >= 0 have a skewness
above 2 and a maximum over 10 times the median; ``vaekit.runfolder.decade_columns``). Both report
the held-out IWAE NLL (k = 100) in the table's own units, next to PPCA's. Tables where the rule
chooses no column are skipped (both runs would be the same run).

    PYTHONPATH=src python benchmarks/log_columns.py TABLE.csv ... --seeds 0,1,2 --jsonl out.jsonl
    PYTHONPATH=src python benchmarks/log_columns.py --jsonl out.jsonl      # the table of a saved run

The (table, z) pairs are those of ``benchmarks/small_tables.py``: z = 2, and z = 5 on tables of
8 or more columns.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from small_tables import pairs  # noqa: E402

from vaekit import runs  # noqa: E402
from vaekit.runfolder import decade_columns, split_rows  # noqa: E402

VARIANTS = {"none": [], "auto": "auto"}


def chosen_columns(path: Path) -> list[str]:
    """The columns ``auto`` logs on the training part of ``path`` (split seed 0, 30% held out)."""
    header = path.read_text().splitlines()[0].split(",")
    x = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    train, _ = split_rows(len(x), 0.3, 0)
    return [header[j] for j in decade_columns(x[train])]


def measure(path: Path, z: int, seed: int, variant: str, df: str = "none") -> dict:
    """One run: held-out NLL, PPCA's, and the log columns and offset the run used.

    ``df``: "none", the Gaussian decoder these runs were measured with (README), or "learned"
    (Student's t, a file's default since).
    """
    config = {
        "data": {"path": str(path), "test_fraction": 0.3, "log_columns": VARIANTS[variant]},
        "model": {"z_dim": z, "df": df},
        "training": {"seed": seed, "threads": 1},
    }
    with tempfile.TemporaryDirectory() as folder:
        run = runs.train(config, Path(folder) / "run")
    d = run.config["data"]
    return {
        "table": path.stem,
        "z": z,
        "seed": seed,
        "variant": variant,
        "log_columns": d["log_columns"],
        "log_offset": d["log_offset"],
        "nll": run.metrics["iwae_nll"],
        "ppca": run.metrics["ppca_nll"],
    }


def report(results: list[dict]) -> None:
    """A markdown row per (table, z): median [min, max] over seeds of both variants, and PPCA."""
    groups: dict[tuple[str, int], dict[str, list[float]]] = {}
    ppca, columns = {}, {}
    for r in results:
        key = (r["table"], r["z"])
        groups.setdefault(key, {}).setdefault(r["variant"], []).append(r["nll"])
        ppca[key] = r["ppca"]
        if r["variant"] == "auto":
            columns[key] = (r["log_columns"], r["log_offset"])

    def cell(values: list[float] | None) -> str:
        if not values:
            return "–"
        return f"{statistics.median(values):.4g} [{min(values):.4g}, {max(values):.4g}]"

    print("| table | z | logged (offset) | none | auto | PPCA |")
    print("| --- | --- | --- | --- | --- | --- |")
    for key, by in groups.items():
        names, offset = columns.get(key, ([], 0.0))
        logged = f"{', '.join(names)} ({offset:g})" if len(names) <= 4 else f"{len(names)} columns ({offset:g})"
        print(f"| {key[0]} | {key[1]} | {logged} | {cell(by.get('none'))} | {cell(by.get('auto'))} | {ppca[key]:.4g} |")
    both = [by for by in groups.values() if by.get("none") and by.get("auto")]
    better = sum(statistics.median(by["auto"]) < statistics.median(by["none"]) for by in both)
    print(f"\nauto's median NLL is lower on {better} of {len(both)} pairs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="CSV tables")
    parser.add_argument("--z", default="2,5", help="latent sizes")
    parser.add_argument("--seeds", default="0", help="training seeds, comma separated")
    parser.add_argument("--jsonl", type=Path, help="append every result to this file; with no FILE, report it")
    parser.add_argument("--df", choices=("none", "learned"), default="none", help="none: the Gaussian of the README's runs")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    results = []
    files = [path for path in args.files if chosen_columns(path)]
    for seed in (int(s) for s in args.seeds.split(",")):
        for path, z in pairs(files, args.z):
            for variant in VARIANTS:
                results.append(measure(path, z, seed, variant, args.df))
                if args.jsonl:
                    with open(args.jsonl, "a") as handle:
                        handle.write(json.dumps(results[-1]) + "\n")
    if not args.files and args.jsonl:
        results = [json.loads(line) for line in args.jsonl.read_text().splitlines() if line.strip()]
    report(results)


if __name__ == "__main__":
    main()
