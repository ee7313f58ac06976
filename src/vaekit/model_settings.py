"""The ``[model]`` section of a run config, derived from the model and spec registries.

A run config is flat TOML, so a model's architecture (a :class:`~vaekit.models.ModelConfig`
dataclass whose fields may be spec objects) is flattened into keys:

- ``type``: the model kind (``vae``, ...), from :data:`vaekit.models.MODELS`;
- a plain field keeps its name (``z_dim``, ``hidden``); an optional tuple field is ``[]`` for None;
- a spec field is its kind (``prior = "mixture"``), and the chosen kind's parameters follow
  as ``<prefix><parameter>`` (``prior_components``); the prefix is the field name and ``_``
  unless the field's metadata says otherwise (the likelihood's is empty: ``variance``). An
  optional spec field (``decoder``) is ``""`` for None;
- fields the data decides (``x_dim``; the condition's kind and size) are not settings; a
  condition's other parameters are (``condition_embed``).

Which keys apply depends on the choices (``prior_components`` only with ``prior = "mixture"``);
a key that does not apply is refused unless it holds its default (files written by vaekit 0.1
list every key). Help texts come from the fields' ``metadata["help"]``. A new model or spec
class therefore gets its settings, its checks and its ``vaekit train`` flags with no edit here.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Literal

from vaekit.configs import SPECS
from vaekit.errors import InputError, InputTypeError, ShapeError

MODEL_KEY = "type"
DEFAULT_MODEL = "vae"


@dataclass(frozen=True)
class Setting:
    """One ``[model]`` key: its TOML type, its default, its help and where it applies."""

    annotation: Any
    default: Any
    help: str
    applies: str  # e.g. "prior = 'mixture'"; "" for keys that apply whatever the choices


def model_kinds() -> dict[str, type]:
    """Model kind (the ``type`` setting) -> registered model class."""
    from vaekit.models import MODELS

    return {cls.kind: cls for cls in MODELS.values()}


def applicable_settings(config: dict[str, Any], condition_kind: str | None) -> dict[str, Setting]:
    """The keys that apply to the choices in ``config`` (a partial ``[model]`` section), with defaults.

    ``condition_kind`` is the data's condition kind (``onehot``, ``continuous``) or None.
    """
    kinds = model_kinds()
    cls = kinds[config.get(MODEL_KEY, DEFAULT_MODEL)]
    out = {MODEL_KEY: _model_setting()}
    for f in dataclasses.fields(cls.config_class):
        if f.name == "condition":
            chosen = condition_kind
        elif f.name in cls.config_class.SPECS:
            chosen = config.get(f.name, _default_kind(f))
        else:
            chosen = None
        out |= _field_settings(cls.config_class, f, chosen)
    return out


def all_settings() -> dict[str, Setting]:
    """Every ``[model]`` key of every model and spec kind (for type checks and command-line flags).

    A key several kinds share keeps one annotation; its default is None where they disagree.
    """
    out: dict[str, Setting] = {MODEL_KEY: _model_setting()}
    for cls in model_kinds().values():
        for f in dataclasses.fields(cls.config_class):
            role = f.metadata.get("role", f.name)
            choices = list(SPECS[role]) if f.name in cls.config_class.SPECS else [None]
            for chosen in choices:
                for key, setting in _field_settings(cls.config_class, f, chosen).items():
                    known = out.get(key)
                    if known is None:
                        out[key] = setting
                        continue
                    if known.annotation != setting.annotation:
                        raise TypeError(f"[model] {key} has two types: {known.annotation} and {setting.annotation}")
                    if known.default != setting.default:
                        known = out[key] = dataclasses.replace(known, default=None)
                    if setting.applies and setting.applies not in known.applies:  # a key several kinds share
                        out[key] = dataclasses.replace(known, applies=f"{known.applies} or {setting.applies}")
    return out


def _model_setting() -> Setting:
    return Setting(Literal[tuple(model_kinds())], DEFAULT_MODEL, "model family", "")


def _field_settings(config_class: type, f: dataclasses.Field, chosen: str | None) -> dict[str, Setting]:
    """The keys one field of a model config contributes when its spec kind is ``chosen``."""
    help_text = f.metadata.get("help", "")
    if f.name not in config_class.SPECS:
        return {} if f.name in config_class.FROM_DATA else {f.name: Setting(*_plain(f, config_class), help_text, "")}
    role, prefix = f.metadata.get("role", f.name), f.metadata.get("prefix", f.name + "_")
    out = {}
    if f.name not in config_class.FROM_DATA:  # the data decides the condition's kind
        default_kind = _default_kind(f)
        choices = tuple(SPECS[role]) + (("",) if default_kind == "" else ())
        out[f.name] = Setting(Literal[choices], default_kind, f"{help_text}: {', '.join(SPECS[role])}", "")
    if chosen:
        spec = SPECS[role][chosen]
        applies = f"the data has a {chosen} condition" if f.name == "condition" else f"{f.name} = {chosen!r}"
        for p in dataclasses.fields(spec):
            if p.name not in getattr(spec, "FROM_DATA", ()):
                out[prefix + p.name] = Setting(*_plain(p, spec), p.metadata.get("help", ""), applies)
    return out


def complete(config: dict[str, Any], condition_kind: str | None, source: str) -> dict[str, Any]:
    """A checked, complete ``[model]`` section: the applicable keys, defaults filled in.

    Types were checked against :func:`all_settings`. Raises InputError for a key that does not
    apply to the choices (unless it holds a default, as in vaekit 0.1 files), and for values the
    model or a spec refuses (checked by building the architecture with placeholder data).
    """
    settings = applicable_settings(config, condition_kind)
    for key, value in config.items():
        if key not in settings and value not in _defaults_of(key):
            raise InputError(
                f"{source}: [model] {key} = {value!r} has no effect with these settings: it applies when "
                f"{_where(key)}. Remove it or change that setting."
            )
    out = {key: config.get(key, s.default) for key, s in settings.items()}
    try:
        architecture(out, x_dim=None, condition=condition(out, condition_kind, size=2))
    except ShapeError as err:
        if out.get("x_shape"):
            raise ShapeError(f"{source}: [model] {err}") from None
        # No x_shape given: the data's own shape (a (N, P, 2) .npy) decides, checked when the model is built.
    except (InputError, InputTypeError) as err:
        raise type(err)(f"{source}: [model] {err}") from None
    return out


def architecture(settings: dict[str, Any], *, x_dim: int | None, condition: Any) -> Any:
    """The model's config dataclass for a complete ``[model]`` section and the data's facts.

    ``x_dim`` None (checking only) takes the product of ``x_shape``, or 1.
    """
    cls = model_kinds()[settings[MODEL_KEY]]
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls.config_class):
        if f.name == "condition":
            kwargs["condition"] = condition
        elif f.name in cls.config_class.SPECS:
            kind = settings[f.name]
            if not kind:
                kwargs[f.name] = None
                continue
            role, prefix = f.metadata.get("role", f.name), f.metadata.get("prefix", f.name + "_")
            spec = SPECS[role][kind]
            data_given = getattr(spec, "FROM_DATA", ())  # set by the run pipeline (vaekit.runs.build_model)
            given = [p for p in dataclasses.fields(spec) if p.name not in data_given]
            params = {p.name: _from_toml(settings[prefix + p.name], p) for p in given}
            kwargs[f.name] = spec(**params)
        elif f.name not in cls.config_class.FROM_DATA:
            kwargs[f.name] = _from_toml(settings[f.name], f)
    if "x_dim" in {f.name for f in dataclasses.fields(cls.config_class)}:
        shape = kwargs.get("x_shape")
        if x_dim is None:
            x_dim = _product(shape) if shape else 1
        elif shape is not None and _product(shape) != x_dim:
            raise InputError(f"x_shape {list(shape)} has {_product(shape)} values per point, but the data has {x_dim} columns.")
        kwargs["x_dim"] = x_dim
    return cls.config_class(**kwargs)


def member_names() -> list[str]:
    """The names ``vaekit demo --model`` takes: every model kind, then every VAE option kind.

    An option kind is a registered posterior or prior other than the default (``iaf``,
    ``mixture``, ...): ``vaekit demo --model iaf`` is the VAE with that posterior.
    """
    names = list(model_kinds())
    vae_fields = {f.name: f for f in dataclasses.fields(model_kinds()[DEFAULT_MODEL].config_class)}
    for field_name in ("posterior", "prior"):
        default = _default_kind(vae_fields[field_name])
        names += [kind for kind in SPECS[field_name] if kind != default and kind not in names]
    return names


def member_settings(name: str) -> dict[str, Any]:
    """The partial ``[model]`` section of a name from :func:`member_names`."""
    if name in model_kinds():
        return {MODEL_KEY: name}
    for field_name in ("posterior", "prior"):
        if name in SPECS[field_name]:
            return {MODEL_KEY: DEFAULT_MODEL, field_name: name}
    raise InputError(f"model must be one of {member_names()}. Got {name!r} instead.")


def settings_of(arch: Any, model_kind: str) -> dict[str, Any]:
    """The ``[model]`` section that rebuilds ``arch`` (inverse of :func:`architecture`)."""
    out: dict[str, Any] = {MODEL_KEY: model_kind}
    for f in dataclasses.fields(arch):
        value = getattr(arch, f.name)
        if f.name in arch.SPECS:
            prefix = f.metadata.get("prefix", f.name + "_")
            if f.name != "condition":
                out[f.name] = "" if value is None else value.kind
            if value is not None:
                for p in dataclasses.fields(value):
                    if p.name not in getattr(value, "FROM_DATA", ()):
                        out[prefix + p.name] = _to_toml(getattr(value, p.name))
        elif f.name not in arch.FROM_DATA:
            out[f.name] = _to_toml(value)
    return out


# ---------------------------------------------------------------------------- helpers
def _plain(f: dataclasses.Field, owner: type) -> tuple[Any, Any]:
    """(TOML annotation, TOML default) of a dataclass field."""
    annotation = typing.get_type_hints(owner)[f.name]
    args = typing.get_args(annotation)
    optional = type(None) in args
    if optional:
        rest = [a for a in args if a is not type(None)]
        annotation = rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]  # noqa: UP007
    if typing.get_origin(annotation) is tuple:
        annotation = list[typing.get_args(annotation)[0]]
    elif optional:
        raise TypeError(f"{owner.__name__}.{f.name}: only optional tuples have a TOML form ([] for None)")
    if "choices" in f.metadata:
        annotation = Literal[tuple(f.metadata["choices"])]
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    return annotation, _to_toml(default)


def _to_toml(value: Any) -> Any:
    return [] if value is None else list(value) if isinstance(value, tuple) else value


def _from_toml(value: Any, f: dataclasses.Field) -> Any:
    if isinstance(value, list):
        return tuple(value) if value or f.default is not None else None
    return value


def _default_kind(f: dataclasses.Field) -> str:
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    return "" if default is None else default.kind


def _kinds_help(role: str) -> str:
    return ": " + ", ".join(SPECS[role])


def _owners(key: str) -> list[Setting]:
    """``key``'s setting under every model and spec kind that has it."""
    found = []
    for cls in model_kinds().values():
        for f in dataclasses.fields(cls.config_class):
            role = f.metadata.get("role", f.name)
            for chosen in list(SPECS[role]) if f.name in cls.config_class.SPECS else [None]:
                setting = _field_settings(cls.config_class, f, chosen).get(key)
                if setting is not None:
                    found.append(setting)
    return found


def _defaults_of(key: str) -> list[Any]:
    """The values ``key`` defaults to under any choice (a 0.1 file may list them)."""
    return [s.default for s in _owners(key)]


def _where(key: str) -> str:
    """Human words for the choices under which ``key`` applies."""
    return " or ".join(dict.fromkeys(s.applies for s in _owners(key) if s.applies)) or "another model type is chosen"


def condition(settings: dict[str, Any], kind: str | None, *, size: int, **from_data: Any) -> Any:
    """The data's condition spec, or None without a condition.

    ``kind`` gets its data-given size (classes or columns; its first ``FROM_DATA`` field), the
    other data-given values in ``from_data`` (a continuous condition's ``shift`` and ``scale``;
    left out: their defaults) and the ``condition_*`` settings for its other parameters.
    """
    if kind is None:
        return None
    spec = SPECS["condition"][kind]
    data_given = getattr(spec, "FROM_DATA", ())
    values: dict[str, Any] = {}
    for p in dataclasses.fields(spec):
        if p.name in from_data:
            values[p.name] = from_data[p.name]
        elif p.name == data_given[0]:
            values[p.name] = size
        elif p.name not in data_given:
            values[p.name] = settings[f"condition_{p.name}"]
    return spec(**values)


def _product(shape: tuple[int, ...]) -> int:
    out = 1
    for n in shape:
        out *= n
    return out
