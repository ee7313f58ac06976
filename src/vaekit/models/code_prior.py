"""An autoregressive prior over a grid of discrete codes, for the VQ-VAE.

p(k_1, ..., k_G | c) = prod_g p(k_g | k_<g, c), positions in raster order, computed in one pass by
a masked MLP over the one-hot codes (MADE, Germain et al., 2015): the network's connections are
masked so that the logits of position g read only the codes at positions before g (and the
condition, which every layer reads unmasked). With G = 1 the logits are the output bias (plus
the condition's term): a categorical.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from vaekit.conditions import Condition
from vaekit.models.common import CHUNK_ROWS
from vaekit.nn import ACTIVATIONS

logger = logging.getLogger(__name__)


class MaskedLinear(nn.Linear):
    """A Linear layer whose weight is multiplied by a fixed 0/1 ``mask`` (out_features, in_features)."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__(mask.shape[1], mask.shape[0])
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """(B, in_features) -> (B, out_features)."""
        return F.linear(h, self.weight * self.mask, self.bias)


class CodePriorNet(nn.Module):
    """Logits of p(k_g | k_<g, c) for every grid position g at once (MADE over the one-hot grid).

    Parameters
    ----------
    grid : int
        G, the number of code positions (raster order).
    codebook_size : int
        K, the number of values of each code.
    hidden : tuple of int
        Widths of the masked hidden layers. Hidden unit j of every layer has degree
        ``j % max(G - 1, 1)`` and reads the codes at positions <= its degree; position g's
        logits read the hidden units of degree < g.
    condition : OneHot, Continuous or None
        Embedded and added (through an unmasked Linear) to every layer, output included.

    """

    def __init__(
        self,
        grid: int,
        codebook_size: int,
        hidden: Sequence[int],
        condition: Condition | None = None,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.grid, self.codebook_size = grid, codebook_size
        degree = torch.arange(grid).repeat_interleave(codebook_size)  # (G * K,) the position of each one-hot input
        layers, previous = [], degree
        for width in hidden:
            d = torch.arange(width) % max(grid - 1, 1)  # (width,)
            layers.append(MaskedLinear((d[:, None] >= previous[None, :]).float()))
            previous = d
        self.layers = nn.ModuleList(layers)
        self.out = MaskedLinear((degree[:, None] > previous[None, :]).float())  # strictly earlier positions only
        self.act = ACTIVATIONS[activation]()
        self.embed = condition.embedding() if condition is not None else None
        e = condition.embedding_dim if condition is not None else 0
        widths = [*hidden, grid * codebook_size]
        self.context = nn.ModuleList(nn.Linear(e, w) for w in widths) if condition is not None else None

    def reset(self, log_marginals: torch.Tensor) -> None:
        """Fresh hidden weights (torch's RNG); output weights and condition terms zero, output bias ``log_marginals`` (G, K).

        The network then starts as the independent categorical per position of those marginals.
        """
        for layer in self.layers:
            layer.reset_parameters()
        nn.init.zeros_(self.out.weight)
        with torch.no_grad():
            self.out.bias.copy_(log_marginals.reshape(-1))
        if self.context is not None:
            for layer in self.context:
                layer.reset_parameters()
            nn.init.zeros_(self.context[-1].weight)
            nn.init.zeros_(self.context[-1].bias)

    def _hidden(self, codes: torch.Tensor, e: torch.Tensor | None) -> torch.Tensor:
        """The last hidden layer (B, H) (the one-hot codes themselves if there is none)."""
        offsets = torch.arange(self.grid, device=codes.device) * self.codebook_size
        if not self.layers:
            return F.one_hot(codes, self.codebook_size).to(self.out.weight.dtype).flatten(1)  # (B, G * K)
        first = self.layers[0]
        # The first layer applied to one-hot inputs, as a sum of the G weight columns they select.
        h = F.embedding_bag(codes + offsets, (first.weight * first.mask).T, mode="sum") + first.bias  # (B, H)
        for i, layer in enumerate(self.layers):
            if i > 0:
                h = layer(h)
            if e is not None:
                h = h + self.context[i](e)
            h = self.act(h)
        return h

    def forward(self, codes: torch.Tensor, c: torch.Tensor | None = None, *, position: int | None = None) -> torch.Tensor:
        """Codes (B, G) int64 and prepared condition (B, C) -> logits (B, G, K), or (B, K) of one ``position``."""
        e = None if self.embed is None else self.embed(c)  # (B, E)
        h = self._hidden(codes, e)
        rows = slice(None) if position is None else slice(position * self.codebook_size, (position + 1) * self.codebook_size)
        out = F.linear(h, (self.out.weight * self.out.mask)[rows], self.out.bias[rows])  # (B, G * K) or (B, K)
        if e is not None:
            ctx = self.context[-1]
            out = out + F.linear(e, ctx.weight[rows], ctx.bias[rows])
        return out if position is not None else out.view(codes.shape[0], self.grid, self.codebook_size)

    def log_prob(self, codes: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """The log-mass log p(codes | c) in nats: codes (B, G) -> (B,); in blocks of rows without gradients."""
        if torch.is_grad_enabled() or codes.shape[0] <= CHUNK_ROWS:
            logp = torch.log_softmax(self(codes, c), -1)  # (B, G, K)
            return logp.gather(-1, codes[..., None]).squeeze(-1).sum(-1)
        blocks = range(0, codes.shape[0], CHUNK_ROWS)
        return torch.cat([self.log_prob(codes[i : i + CHUNK_ROWS], None if c is None else c[i : i + CHUNK_ROWS]) for i in blocks])

    @torch.no_grad()
    def sample(self, n: int, c: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw n code grids (n, G) int64, drawn ancestrally in raster order (G passes of the network)."""
        codes = torch.zeros(n, self.grid, dtype=torch.long, device=self.out.weight.device)
        for g in range(self.grid):
            probs = torch.softmax(self(codes, c, position=g), -1)  # (n, K): reads codes[:, :g] only
            codes[:, g] = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        return codes


def fit_code_prior(
    net: CodePriorNet,
    codes: torch.Tensor,
    c: torch.Tensor | None,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    smoothing: float,
) -> dict[str, float]:
    """Fit ``net`` to codes (N, G) (and conditions (N, C)) by maximum likelihood; torch's RNG; returns NLLs.

    The network is reset to the independent categorical of the smoothed code frequencies of each
    position, p_g(k) = (n_gk + smoothing) / (N + K smoothing), the maximum-likelihood answer for
    G = 1 without a condition, which is then final (no training). Otherwise Adam runs ``epochs``
    epochs of shuffled mini-batches.

    Returns
    -------
    dict
        ``independent_nll`` and ``nll``: mean negative log-likelihood of the codes, nats per point,
        under the independent categorical and under the fitted prior.

    """
    n, grid = codes.shape
    k = net.codebook_size
    counts = torch.stack([torch.bincount(codes[:, g], minlength=k) for g in range(grid)]).to(net.out.weight)  # (G, K)
    log_marginals = torch.log(counts + smoothing) - math.log(n + k * smoothing)
    net.reset(log_marginals)
    independent = -float(log_marginals.gather(1, codes.T).sum(0).mean())
    if grid > 1 or net.embed is not None:
        optimizer = torch.optim.Adam(net.parameters(), lr=lr)
        with torch.enable_grad():
            for _ in range(epochs):
                order = torch.randperm(n, device=codes.device)
                for i in range(0, n, batch_size):
                    rows = order[i : i + batch_size]
                    loss = -net.log_prob(codes[rows], None if c is None else c[rows]).mean()
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
    with torch.no_grad():
        nll = -float(net.log_prob(codes, c).mean())
    return {"independent_nll": independent, "nll": nll}
