"""Network building blocks: MLP trunks and the one condition-injection mechanism."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vaekit.conditions import Condition

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
}


def mlp(in_features: int, hidden: Sequence[int], out_features: int, activation: str = "relu") -> nn.Sequential:
    """Linear -> activation for each hidden width, then a final Linear to ``out_features``."""
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
        width = h
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


class ConditionedMLP(nn.Module):
    """An MLP whose input is ``cat(inputs, embed(c))``.

    Every conditional network (encoder and decoder, one-hot or continuous) goes through this
    one class, so a new condition type needs only a new spec, never a copied network.

    Parameters
    ----------
    in_features : int
        Width of the unconditioned input (x for the encoder, z for the decoder).
    condition : OneHot, Continuous or None
        What the network is conditioned on; ``None`` gives a plain MLP.

    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        *,
        condition: Condition | None = None,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.embed = condition.embedding() if condition is not None else None
        extra = condition.embedding_dim if condition is not None else 0
        self.net = mlp(in_features + extra, hidden, out_features, activation)

    def forward(self, inputs: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """(B, in_features) and prepared condition (B, C) -> (B, out_features)."""
        if self.embed is not None:
            inputs = torch.cat([inputs, self.embed(c)], dim=-1)  # (B, in + E)
        return self.net(inputs)
