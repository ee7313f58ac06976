"""Per-epoch training record, written to and read back from CSV."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vaekit.errors import FileFormatError


class History:
    """Per-epoch values of every logged quantity.

    ``history.loss`` (and any other column name) is a list with one float per epoch;
    vector quantities such as ``kl_per_dim`` hold one list per epoch.
    Typical columns: loss, reconstruction (lecture units), reconstruction_nll, kl, kl_per_dim,
    neg_elbo (nats), diversity, and the same with a ``val_`` prefix when a validation set is given.
    """

    def __init__(self, columns: dict[str, list[Any]] | None = None) -> None:
        self.columns: dict[str, list[Any]] = {k: list(v) for k, v in (columns or {}).items()}
        self.seconds: float = 0.0  # wall time of training; not part of equality
        # Whether fit trained with a proven accelerated engine (vaekit.fastpath); not part of equality.
        self.fast_path: bool = False

    def append(self, record: dict[str, Any]) -> None:
        """Add one epoch's values."""
        n = len(self)
        for key, value in record.items():
            column = self.columns.setdefault(key, [math.nan] * n)
            column.append(value)
        for column in self.columns.values():
            if len(column) == n:
                column.append(math.nan)

    def __len__(self) -> int:
        return max((len(v) for v in self.columns.values()), default=0)

    def __getattr__(self, name: str) -> list[Any]:
        columns = self.__dict__.get("columns", {})
        if name in columns:
            return columns[name]
        raise AttributeError(f"History has no column {name!r}; columns are {sorted(columns)}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, History) and self.columns == other.columns

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self)):
            yield {k: v[i] for k, v in self.columns.items()}

    def last(self) -> dict[str, Any]:
        """Values of the final epoch."""
        return {k: v[-1] for k, v in self.columns.items()}

    def truncate(self, n_epochs: int) -> None:
        """Keep only the first ``n_epochs`` epochs."""
        for key in self.columns:
            del self.columns[key][n_epochs:]

    def __repr__(self) -> str:
        return f"History({len(self)} epochs, columns={sorted(self.columns)})"

    # ------------------------------------------------------------------ CSV
    def to_csv(self, path: str | Path) -> None:
        """Write one row per epoch; vector columns become ``name[0]``, ``name[1]``, ..."""
        Path(path).write_text(self.csv_text(), newline="")

    def csv_text(self) -> str:
        """The CSV that :meth:`to_csv` writes, as a string (float values round-trip exactly)."""
        header, rows = ["epoch"], [[i + 1] for i in range(len(self))]
        for key, column in self.columns.items():
            width = len(column[0]) if column and isinstance(column[0], list) else 0
            header += [f"{key}[{j}]" for j in range(width)] if width else [key]
            for row, value in zip(rows, column):
                row.extend(value if width else [value])
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(header)
        writer.writerows([[repr(float(v)) if not isinstance(v, int) else v for v in row] for row in rows])
        return buffer.getvalue()

    @classmethod
    def from_csv(cls, path: str | Path) -> History:
        """Read a file written by :meth:`to_csv` (float values round-trip exactly)."""
        try:
            with open(path, newline="") as handle:
                rows = list(csv.reader(handle))
            header, body = rows[0], rows[1:]
            columns: dict[str, list[Any]] = {}
            for j, name in enumerate(header[1:], start=1):
                values = [float(r[j]) for r in body]
                if name.endswith("]") and "[" in name:
                    base = name[: name.index("[")]
                    vectors = columns.setdefault(base, [[] for _ in body])
                    for vec, v in zip(vectors, values):
                        vec.append(v)
                else:
                    columns[name] = values
        except (OSError, IndexError, ValueError) as err:
            raise FileFormatError(f"{path} is not a vaekit history CSV: {err}") from err
        return cls(columns)
