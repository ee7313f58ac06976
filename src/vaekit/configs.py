"""The registry of spec classes, and turning JSON/TOML dictionaries back into spec objects.

A *spec* is a small frozen dataclass that describes one part of a model: its likelihood, its
prior, its condition, its posterior, its encoder or decoder trunk. Each registers itself here
under a role and a ``kind`` (its name in JSON, TOML and on the command line), so that io, the run
pipeline, the CLI and the sweep read one table instead of keeping their own lists.

Spec fields may carry ``metadata={"help": "..."}`` (shown by ``vaekit train --help``). A field
listed in the class attribute ``FROM_DATA`` (a condition's class count) is set from the data by
the run pipeline, never by a user setting.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from vaekit.errors import InputError, InputTypeError, describe

# Role -> kind -> spec class. Filled by @register_spec in the modules that define the specs.
SPECS: dict[str, dict[str, type]] = {"likelihood": {}, "prior": {}, "condition": {}, "posterior": {}, "trunk": {}}


def register_spec(role: str):
    """Class decorator: enter a spec class in :data:`SPECS` under ``role`` and its ``kind``."""

    def add(cls: type) -> type:
        kinds = SPECS[role]
        if cls.kind in kinds and kinds[cls.kind] is not cls:
            raise ValueError(f"two {role} specs are called {cls.kind!r}: {kinds[cls.kind]} and {cls}")
        kinds[cls.kind] = cls
        return cls

    return add


def spec_types(role: str) -> tuple[type, ...]:
    """The registered spec classes of ``role`` (for isinstance checks and messages)."""
    return tuple(SPECS[role].values())


def spec_from_config(config: Any, registry: dict[str, type] | str, name: str) -> Any:
    """Build the dataclass named by ``config["type"]`` from ``registry``.

    Unknown types, unknown keys and values of the wrong type are refused with a message that
    names ``name`` and the key, before the spec's own range checks run. ``registry`` is a role
    of :data:`SPECS` or a kind -> class table. List values become tuples (specs are frozen).
    """
    if isinstance(registry, str):
        registry = SPECS[registry]
    if not isinstance(config, dict):
        raise InputTypeError(f"{name} must be a table/dict with a 'type' key. Got {describe(config)} instead.")
    kind = config.get("type")
    if kind not in registry:
        raise InputError(f"{name}.type must be one of {sorted(registry)}. Got {kind!r} instead.")
    cls = registry[kind]
    hints = typing.get_type_hints(cls)
    fields = {f.name: hints[f.name] for f in dataclasses.fields(cls)}
    unknown = sorted(set(config) - set(fields) - {"type"})
    if unknown:
        raise InputError(f"{name} ({kind}) has unknown key(s) {unknown}; allowed keys are {sorted(fields)}.")
    required = sorted(f.name for f in dataclasses.fields(cls) if f.default is f.default_factory is dataclasses.MISSING)
    missing = [key for key in required if key not in config]
    if missing:
        raise InputError(f"{name} ({kind}) is missing required key(s) {missing}. Got keys {sorted(config)} instead.")
    kwargs = {}
    for key, value in config.items():
        if key == "type":
            continue
        check_type(value, fields[key], f"{name}.{key}")
        kwargs[key] = tuple(value) if isinstance(value, list) else value
    return cls(**kwargs)


def check_type(value: Any, annotation: Any, name: str) -> None:
    """Refuse ``value`` unless it matches a simple annotation (int, float, str, bool, tuples, unions)."""
    if not _matches(value, annotation):
        raise InputTypeError(f"{name} must be of type {_show(annotation)}. Got {describe(value)} instead.")


def _matches(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return True
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return any(_matches(value, arg) for arg in typing.get_args(annotation))
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if origin in (tuple, list):
        args = typing.get_args(annotation)
        inner = args[0] if args else Any
        return isinstance(value, (list, tuple)) and all(_matches(v, inner) for v in value)
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def _show(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
