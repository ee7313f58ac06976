"""Numbers for people: the one formatter behind tables, figure titles, the report and the CLI.

Imports nothing from vaekit, so every layer can use it.
"""

from __future__ import annotations

import math
from typing import Any


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


def bound_text(value: float) -> str:
    """The shortest ``%g`` text (6 to 17 digits) of a number at least ``value``, for "above ..." in messages.

    "raise log_offset above 1.23454e+08" would name a number below the 123454320 needed; this
    gives "123454320", and "0.1000000015" for float32's 0.1 (0.10000000149...), never a smaller one.
    """
    for digits in range(6, 18):
        text = f"{value:.{digits}g}"
        if float(text) >= value:
            return text
    return repr(value)
