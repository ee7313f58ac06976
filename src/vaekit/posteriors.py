"""Posterior specs: how the encoder's output becomes q(z|x, c).

A posterior spec tells the encoder trunk how wide its output must be (``out_features``) and
builds the module that reads that output and returns q(z|x, c) as a distribution with
``rsample`` and ``log_prob`` (batch shape (B,), event shape (Z,)). The diagonal Gaussian is the
lecture's; flow posteriors (:mod:`vaekit.flows`) register themselves under the same role.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.distributions import Independent

from vaekit.configs import register_spec, spec_from_config
from vaekit.distributions import LOGVAR_MAX, LOGVAR_MIN, diagonal_normal


@register_spec("posterior")
@dataclass(frozen=True)
class DiagonalGaussian:
    """q(z|x, c) = N(mu(x, c), diag(sigma^2(x, c))): the encoder outputs mu and log sigma^2.

    The log-variance is clamped to [-18, 12] (as in the lecture's code, where it keeps exp()
    finite); the clamp passes no gradient outside that range.
    """

    kind: ClassVar[str] = "diagonal"

    def out_features(self, z_dim: int) -> int:
        """Width of the encoder output this posterior reads: mean and log-variance."""
        return 2 * z_dim

    def build(self, z_dim: int) -> nn.Module:
        """Module mapping encoder output (B, 2Z) to q(z|x, c)."""
        return DiagonalGaussianHead()

    def to_config(self) -> dict[str, Any]:
        """JSON-ready description (inverse of :func:`posterior_from_config`)."""
        return {"type": self.kind, **asdict(self)}


class DiagonalGaussianHead(nn.Module):
    """Encoder output (B, 2Z) -> N(mean, diag(exp(logvar))), logvar clamped to [-18, 12]."""

    def forward(self, h: torch.Tensor) -> Independent:
        mean, logvar = h.chunk(2, dim=-1)  # (B, Z) each
        return diagonal_normal(mean, (0.5 * logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)).exp())


def posterior_from_config(config: dict[str, Any] | None) -> Any:
    """Rebuild a posterior spec from :meth:`to_config` output (``None``: the diagonal Gaussian)."""
    if config is None:
        return DiagonalGaussian()
    return spec_from_config(config, "posterior", "posterior")
