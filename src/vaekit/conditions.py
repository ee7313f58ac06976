"""Condition specifications for conditional VAEs.

A condition spec is a small frozen dataclass: it validates the user's condition values, turns
them into a float tensor the networks read, and builds the embedding module that injects them.
``VAE(condition=OneHot(8))`` and ``VAE(condition=Continuous(1, embed=16))`` use the same class
and the same injection code (:class:`vaekit.nn.ConditionInput`); only the spec differs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from vaekit.configs import register_spec, spec_from_config
from vaekit.errors import InputError, InputTypeError, describe
from vaekit.validate import float_matrix, positive_int, to_numpy


@register_spec("condition")
@dataclass(frozen=True)
class OneHot:
    """A categorical condition: integer labels ``0 .. n_classes - 1``, fed one-hot.

    Parameters
    ----------
    n_classes : int
        Number of categories (>= 2).

    """

    n_classes: int
    kind: ClassVar[str] = "onehot"
    FROM_DATA: ClassVar[tuple[str, ...]] = ("n_classes",)

    def __post_init__(self) -> None:
        positive_int(self.n_classes, "OneHot.n_classes", minimum=2)

    @property
    def in_features(self) -> int:
        """Width of the prepared condition tensor."""
        return self.n_classes

    @property
    def embedding_dim(self) -> int:
        """Width of the embedding that is concatenated to the network input."""
        return self.n_classes

    def prepare(self, labels: Any, name: str = "condition") -> torch.Tensor:
        """Validate labels of shape (N,) or (N, 1); return one-hot float32 (N, n_classes)."""
        values = float_matrix(labels, name, width=1, allow_vector=True)[:, 0]  # (N,)
        # Check integrality on the values as given: float32 would round 0.99999999 to 1.0 and
        # accept it silently, and print 0.1 as 0.10000000149011612.
        given = torch.as_tensor(to_numpy(labels, name) if not isinstance(labels, torch.Tensor) else labels.detach().cpu())
        given = given.reshape(-1).to(torch.float64) if given.numel() == values.numel() else values.double()
        rounded = values.round()
        if not bool((given.round() == given).all()):
            bad = given[given.round() != given][0].item()
            raise InputError(
                f"{name} must hold integer class labels for OneHot({self.n_classes}). Got the non-integer value {bad} instead."
            )
        out_of_range = (rounded < 0) | (rounded >= self.n_classes)
        if bool(out_of_range.any()):
            bad = int(rounded[out_of_range][0].item())
            raise InputError(
                f"{name} must hold labels in 0..{self.n_classes - 1} for OneHot({self.n_classes}). Got the label {bad} instead."
            )
        return nn.functional.one_hot(rounded.long(), self.n_classes).to(torch.float32)

    def embedding(self) -> nn.Module:
        """The one-hot vector is used as is."""
        return nn.Identity()

    def to_config(self) -> dict[str, Any]:
        """JSON-ready description (inverse of :func:`condition_from_config`)."""
        return {"type": self.kind, **asdict(self)}


@register_spec("condition")
@dataclass(frozen=True)
class Continuous:
    """A real-valued condition of ``dim`` columns, passed through a small embedding MLP.

    Parameters
    ----------
    dim : int
        Number of condition columns (default 1, e.g. a radius).
    embed : int
        Width of the embedding MLP ``Linear(dim, embed) -> ReLU -> Linear(embed, embed)``;
        0 feeds the raw values instead.
    shift, scale : tuple of float (dim,), default () (none)
        The networks read ``(c - shift) / scale``: values with a small spread (an airfoil's
        thickness, 0.11 ± 0.05 chord) are otherwise nearly constant inputs that the model
        learns to ignore. Conditions are given and returned in the user's units either way.
        :meth:`fitted` sets them to the mean and standard deviation of training conditions;
        ``vaekit train`` does so for conditions computed from shapes (:mod:`vaekit.design`; the
        airfoils' ``label`` is their thickness).

    """

    dim: int = 1
    embed: int = field(default=16, metadata={"help": "width of the embedding MLP of a continuous condition (0: raw values)"})
    shift: tuple[float, ...] = ()
    scale: tuple[float, ...] = ()
    kind: ClassVar[str] = "continuous"
    FROM_DATA: ClassVar[tuple[str, ...]] = ("dim", "shift", "scale")

    def __post_init__(self) -> None:
        positive_int(self.dim, "Continuous.dim")
        positive_int(self.embed, "Continuous.embed", minimum=0)
        for name in ("shift", "scale"):
            value = getattr(self, name)
            if not isinstance(value, (tuple, list)) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in value
            ):
                raise InputTypeError(f"Continuous.{name} must be a tuple of finite numbers. Got {describe(value)} instead.")
            object.__setattr__(self, name, tuple(float(v) for v in value))
        if (len(self.shift), len(self.scale)) not in ((0, 0), (self.dim, self.dim)):
            raise InputError(
                f"Continuous.shift and Continuous.scale must both be empty or both hold dim={self.dim} numbers. "
                f"Got {len(self.shift)} and {len(self.scale)} numbers instead."
            )
        if any(v <= 0 for v in self.scale):
            raise InputError(f"Continuous.scale must hold numbers > 0. Got {self.scale} instead.")

    @classmethod
    def fitted(cls, values: Any, *, embed: int = 16) -> Continuous:
        """A spec for conditions like ``values`` (N, dim) (or (N,)): shift and scale their mean and std.

        A column with no spread keeps scale 1.
        """
        c = float_matrix(values, "values", allow_vector=True).double()  # (N, dim)
        std = c.std(0, unbiased=False)
        std = torch.where(std > 0, std, torch.ones_like(std))
        return cls(c.shape[1], embed, tuple(c.mean(0).tolist()), tuple(std.tolist()))

    @property
    def in_features(self) -> int:
        """Width of the prepared condition tensor."""
        return self.dim

    @property
    def embedding_dim(self) -> int:
        """Width of the embedding that is concatenated to the network input."""
        return self.embed or self.dim

    def prepare(self, values: Any, name: str = "condition") -> torch.Tensor:
        """Validate values of shape (N, dim) (or (N,) when dim is 1); return float32 (N, dim)."""
        return float_matrix(values, name, width=self.dim, allow_vector=True)

    def embedding(self) -> nn.Module:
        """Small MLP that lifts the values (shifted and scaled, when set) before they join the network input."""
        layers: list[nn.Module] = [_Affine(self.shift, self.scale)] if self.scale else []
        if self.embed:
            layers += [nn.Linear(self.dim, self.embed), nn.ReLU(), nn.Linear(self.embed, self.embed)]
        if not layers:
            return nn.Identity()
        return nn.Sequential(*layers)

    def to_config(self) -> dict[str, Any]:
        """JSON-ready description (inverse of :func:`condition_from_config`)."""
        out = {"type": self.kind, **asdict(self)}
        if not self.scale:  # unscaled: the form files had before shift and scale existed
            del out["shift"], out["scale"]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


class _Affine(nn.Module):
    """``(c - shift) / scale``, constants of the spec (rebuilt from it, so not in the state dict)."""

    def __init__(self, shift: tuple[float, ...], scale: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor(shift, dtype=torch.float32), persistent=False)
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32), persistent=False)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return (c - self.shift.to(c.dtype)) / self.scale.to(c.dtype)  # (B, dim)


Condition = OneHot | Continuous


def condition_from_config(config: dict[str, Any] | None) -> Condition | None:
    """Rebuild a condition spec from :meth:`to_config` output (``None`` stays ``None``)."""
    if config is None:
        return None
    return spec_from_config(config, "condition", "condition")


def broadcast_condition(condition: Condition, value: Any, n: int) -> Any:
    """Expand one label (OneHot) or one value vector (Continuous) to ``n`` rows.

    A scalar, a single row (shape (1,) or (1, C)) or, for ``Continuous(dim)``, a vector of shape
    (dim,) is repeated ``n`` times. Arrays that already hold one row per sample pass through
    unchanged, to be validated by :meth:`prepare`.
    """
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    width = condition.in_features if isinstance(condition, Continuous) else 1
    if array.ndim == 0:
        return np.full((n, width), array)
    if isinstance(condition, Continuous) and array.shape == (condition.dim,):
        return np.broadcast_to(array, (n, condition.dim)).copy()
    if n > 1 and array.ndim in (1, 2) and array.shape[0] == 1:
        return np.repeat(array.reshape(1, -1), n, axis=0)
    return value
