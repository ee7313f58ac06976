"""Numbers for people: the one formatter behind tables, figure titles, the report and the CLI.

Imports nothing from vaekit, so every layer can use it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def format_value(value: Any, digits: int = 6, *, missing: str | None = None, nested: bool = True) -> str:
    """``value`` as short text: floats to ``digits`` significant digits, anything else as ``str``.

    Parameters
    ----------
    value : Any
        A float (numpy float64 included), a list of values, None or anything printable.
    digits : int, default 6
        Significant digits of a float (``format(value, f".{digits}g")``).
    missing : str, optional
        Shown for None and for NaN or infinite floats; by default they read "None", "nan", "inf".
    nested : bool, default True
        Format a list element by element, in brackets; ``False`` prints it as ``str`` does.

    """
    if value is None and missing is not None:
        return missing
    if isinstance(value, float):
        return missing if missing is not None and not math.isfinite(value) else f"{value:.{digits}g}"
    if nested and isinstance(value, list):
        return "[" + ", ".join(format_value(v, digits, missing=missing) for v in value) + "]"
    return str(value)


def float32_text(value: float) -> str:
    """``value`` as ``%g`` text when that reads back as the same float32 (the data's precision), else 9 digits.

    For bounds in messages ("raise log_offset above 123454320"): ``%g``'s 6 digits can print a
    number below the one needed (1.23454e+08), and 9 digits hold any float32 exactly.
    """
    short = f"{value:g}"
    return short if np.float32(float(short)) == np.float32(value) else f"{value:.9g}"
