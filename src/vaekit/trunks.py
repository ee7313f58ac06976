"""Trunk specs: the networks between the data and the latent code.

A trunk spec builds two modules for a model:

- ``encoder(x_shape, out_features, condition, hidden, activation)``: a module mapping flat data
  (B, D) and a prepared condition (B, C) (or None) to (B, out_features);
- ``decoder(z_dim, x_shape, outputs_per_value, condition, hidden, activation)``: a module mapping
  z (B, Z) and the condition to (B, k * D), k = ``outputs_per_value``, laid out as k blocks of
  D values each in the data's flat order (block 0 the means; a per-point Gaussian's block 1 its
  variances), which is what the likelihood heads read.

``hidden`` (the model's MLP shorthand) gives the widths of the dense layers; the decoder's
default is the encoder's mirror. Convolutional trunks (:mod:`vaekit.conv`) register themselves
under the same role.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from torch import nn

from vaekit.conditions import Condition
from vaekit.configs import register_spec, spec_from_config
from vaekit.nn import ConditionedMLP


@register_spec("trunk")
@dataclass(frozen=True)
class MLP:
    """Fully connected trunk: the encoder's hidden widths are ``hidden``, the decoder's reversed.

    The condition (if any) is embedded and concatenated to the input of each network.
    """

    kind: ClassVar[str] = "mlp"

    def encoder(
        self, x_shape: tuple[int, ...], out_features: int, condition: Condition | None, hidden: Sequence[int], activation: str
    ) -> nn.Module:
        """(B, D), (B, C) -> (B, out_features)."""
        d = _flat(x_shape)
        return ConditionedMLP(d, tuple(hidden), out_features, condition=condition, activation=activation)

    def decoder(
        self,
        z_dim: int,
        x_shape: tuple[int, ...],
        outputs_per_value: int,
        condition: Condition | None,
        hidden: Sequence[int],
        activation: str,
    ) -> nn.Module:
        """(B, Z), (B, C) -> (B, k * D), k = ``outputs_per_value``."""
        d = _flat(x_shape)
        return ConditionedMLP(z_dim, tuple(hidden)[::-1], outputs_per_value * d, condition=condition, activation=activation)

    def to_config(self) -> dict[str, Any]:
        """JSON-ready description (inverse of :func:`trunk_from_config`)."""
        return {"type": self.kind, **asdict(self)}


def _flat(x_shape: tuple[int, ...]) -> int:
    d = 1
    for n in x_shape:
        d *= n
    return d


def trunk_from_config(config: dict[str, Any] | None) -> Any:
    """Rebuild a trunk spec from :meth:`to_config` output (``None`` stays ``None``: the default)."""
    if config is None:
        return None
    return spec_from_config(config, "trunk", "trunk")
