"""Quantities measured on the model once per epoch (not per batch), e.g. sample diversity."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vaekit.validate import positive_int


def diversity(samples: torch.Tensor) -> float:
    """The lecture's diversity: mean over dimensions of the per-dimension variance of samples (N, D).

    Uses the population variance (divide by N). For the ring of radius r with mode std s it
    tends to r^2 / 2 + s^2 when samples cover the ring evenly (4.5625 for r=3, s=0.25).
    """
    return float(samples.var(dim=0, correction=0).mean())


@dataclass(frozen=True)
class Diversity:
    """Per-epoch monitor: diversity of ``n_samples`` decoded prior samples.

    Conditional models are sampled under conditions drawn from the training set, so the
    number describes the model under the data's own condition distribution.

    Parameters
    ----------
    n_samples : int, default 2048
        Prior samples per measurement (the lecture's 2048).
    every : int, default 1
        Measure every ``every`` epochs (and always at the last); other epochs record NaN.

    """

    n_samples: int = 2048
    every: int = 1

    def __post_init__(self) -> None:
        positive_int(self.n_samples, "Diversity.n_samples")
        positive_int(self.every, "Diversity.every")

    @torch.no_grad()
    def __call__(self, model, x: torch.Tensor, c: torch.Tensor | None) -> float:
        """Measure on ``model`` given the prepared training tensors x (N, D), c (N, C)."""
        z = model.prior().sample((self.n_samples,))  # (S, Z): N(0, I) draws the same numbers as randn
        cs = None if c is None else c[torch.randint(c.shape[0], (self.n_samples,), device=c.device)]
        return diversity(model.decode_batch(z, cs).mean)
