"""The library's own error types.

Every problem with user input raises a subclass of :class:`VaekitError`, so callers (and the
CLI) can tell "you gave me something wrong" apart from a bug. The subclasses also derive from
the matching built-in (``ValueError``/``TypeError``/``FileNotFoundError``) so ordinary
``except ValueError`` code keeps working.
"""

from __future__ import annotations


class VaekitError(Exception):
    """Base class of every error vaekit raises on purpose."""


class InputError(VaekitError, ValueError):
    """A value has the right type but is not acceptable (shape, range, NaN, ...)."""


class ShapeError(InputError):
    """A setting that does not fit the data's shape (x_shape).

    A run config without ``x_shape`` is checked for it only once the data, and so its shape, is known.
    """


class InputTypeError(VaekitError, TypeError):
    """A value has the wrong type."""


class FileFormatError(VaekitError, ValueError):
    """A file vaekit was asked to read is missing, truncated, tampered with or not ours."""


class TrainingError(VaekitError, RuntimeError):
    """Training cannot go on (for example the loss became NaN)."""


class RunInterrupted(VaekitError):
    """A run folder was not finished because of Ctrl-C (KeyboardInterrupt).

    The message says what was kept and how to go on. Not a KeyboardInterrupt itself, so the
    caller can tell "stopped on purpose, state saved" apart from any other interruption.

    Attributes
    ----------
    out : Path
        The run folder that was being written.
    resumable : bool
        True when ``<out>.partial`` holds a checkpoint to resume from
        (``vaekit.runs.train(..., resume=True)`` or ``vaekit train --resume``).

    """

    def __init__(self, message: str, *, out, resumable: bool) -> None:
        super().__init__(message)
        self.out = out
        self.resumable = resumable


def describe(value: object) -> str:
    """Short, safe description of ``value`` for an error message ("Got ... instead.")."""
    shape = getattr(value, "shape", None)
    if shape is not None:
        dtype = getattr(value, "dtype", "")
        return f"{type(value).__name__} of shape {tuple(shape)} and dtype {dtype}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class AirfoilFileError(FileFormatError):
    """An airfoil coordinate file that cannot be read as one shape.

    Attributes
    ----------
    reason : str
        A short stable key (e.g. ``"non_numeric"``, ``"crossed_surfaces"``) that
        :func:`vaekit.data.load_airfoils` counts skipped files by.

    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
