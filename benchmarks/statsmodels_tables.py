"""The untuned tables of README "vaekit vs PCA": numeric CSVs from the datasets in the statsmodels wheel.

Reads ``statsmodels/datasets/<name>/<name>.csv`` straight from the wheel file (nothing is
installed), keeps the numeric columns, drops ids, names and years, and writes one CSV with a
header row per table into OUT, for ``benchmarks/vs_pca.py --folder OUT``.

Usage: pip download --no-deps statsmodels -d /tmp/sm
       python benchmarks/statsmodels_tables.py /tmp/sm/statsmodels-*.whl OUT
"""

from __future__ import annotations

import argparse
import csv
import io
import zipfile
from pathlib import Path

# Table -> columns that are not measurements (ids, names, years). Tables of 2 columns (engel,
# cancer) are left out: z = 2 would be as wide as the data.
TABLES = {
    "longley": ["Obs", "YEAR"],
    "stackloss": [],
    "star98": [],
    "fair": [],
    "grunfeld": ["firm", "year"],
    "ccard": [],
    "spector": ["OBS"],
    "committee": ["COMMITTEE"],
    "macrodata": ["year", "quarter"],
    "statecrime": ["state"],
    "copper": ["YEAR", "TIME"],
    "elnino": ["YEAR"],
}


def number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def numeric_table(text: str, drop: list[str], *, whitespace: bool) -> tuple[list[str], list[list[float]]]:
    """(header, rows) of the numeric columns of a CSV text (or whitespace separated), without ``drop``."""
    lines = [line for line in text.splitlines() if line.strip()]
    cells = [line.split() for line in lines] if whitespace else list(csv.reader(io.StringIO("\n".join(lines))))
    header = [name.strip("'\" \ufeff") for name in cells[0]]
    rows = cells[1:]
    keep = [i for i, name in enumerate(header) if name not in drop and all(number(row[i]) is not None for row in rows)]
    return [header[i] for i in keep], [[float(row[i]) for i in keep] for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("wheel", help="the statsmodels wheel (.whl)")
    parser.add_argument("out", help="folder for the CSV files")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(args.wheel) as wheel:
        for name, drop in TABLES.items():
            text = wheel.read(f"statsmodels/datasets/{name}/{name}.csv").decode("utf-8-sig")
            header, rows = numeric_table(text, drop, whitespace=name == "spector")
            lines = [",".join(header)] + [",".join(repr(v) for v in row) for row in rows]
            (out / f"{name}.csv").write_text("\n".join(lines) + "\n")
            print(f"{name}: {len(rows)} rows x {len(header)} columns ({', '.join(header)})")


if __name__ == "__main__":
    main()
