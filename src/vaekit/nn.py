"""Network building blocks: MLP and convolutional trunks, and how a condition is injected.

Dense layers read ``cat(inputs, embed(c))``; conv blocks are modulated by FiLM (per-channel
scale and shift from the same embedding).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from vaekit.baselines import covariance_eigen, noise_floor
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


# ---------------------------------------------------------------------------- PCA plus a residual
# Principal directions of at most this many rows (a seeded random subset) initialise a PCAResidual.
PCA_INIT_ROWS = 10_000


def principal_directions(xs: torch.Tensor, q: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Mean (D,), top-``q`` eigenvalues (q,), eigenvectors (D, q) and the mean discarded eigenvalue of rows ``xs`` (N, D).

    The float64 eigendecomposition of :func:`vaekit.baselines.covariance_eigen` (the one PCA and
    PPCA use) of at most :data:`PCA_INIT_ROWS` rows (a subset drawn with its own seed, so the
    global RNG is untouched). Each eigenvector's sign is fixed (its largest entry positive), so
    the result does not depend on the LAPACK build. Eigenvalues are raised to PPCA's
    :func:`vaekit.baselines.noise_floor`, so whitening by them never divides by zero. Tensors are
    float64 on ``xs``'s device.
    """
    if len(xs) > PCA_INIT_ROWS:  # a seeded subset, not the first rows: files are often sorted
        pick = torch.randperm(len(xs), generator=torch.Generator().manual_seed(0))[:PCA_INIT_ROWS]
        xs = xs[pick.to(xs.device)]
    mean, values, vectors = covariance_eigen(xs.detach().double().cpu().numpy())
    largest = vectors[np.abs(vectors).argmax(0), np.arange(vectors.shape[1])]
    vectors = vectors * np.where(largest < 0, -1.0, 1.0)
    floor = noise_floor(values)
    q = min(q, vectors.shape[1])
    rest = values[q:]
    discarded = max(float(rest.mean()) if len(rest) else floor, floor)

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(xs.device)

    return tensor(mean), tensor(np.maximum(values[:q], floor)), tensor(vectors[:, :q]), discarded


class PCAResidual(nn.Module):
    """A linear map initialised from the training data's principal components, plus an MLP residual.

    ``forward(inputs, c) = linear(inputs) + residual(inputs, c)``, where the residual is a
    :class:`ConditionedMLP` whose last layer starts at zero. Before :meth:`initialise` the linear
    map has PyTorch's default initial weights; :meth:`initialise` (called once by the model when
    training first sees data, see :meth:`vaekit.models.common.ModelBase.initialise_from_data`)
    sets it so that the network starts as probabilistic PCA of the data it is given:

    * ``role="encoder"`` (inputs x (B, D), outputs (B, out_features)): the first Z outputs are the
      whitened principal-component scores u_j^T (x - mean) / sqrt(lambda_j) (about PPCA's
      posterior means when the noise is small against lambda_j); when there are at least 2Z
      outputs, the next Z (a posterior's log-variances) start at log(sigma^2 / lambda_j), PPCA's
      posterior variance, with sigma^2 the mean discarded eigenvalue.
    * ``role="decoder"`` (inputs z (B, Z), outputs (B, k * D)): the first block (the means) is
      mean + sum_j sqrt(lambda_j) z_j u_j, PCA's reconstruction from whitened scores; any further
      block (per-point variances) starts at zero weight.

    So training starts where PCA ends and the residual only has to learn what a linear map
    cannot. The ``initialised`` buffer (saved with the weights) makes later ``fit`` calls and
    resumed runs keep the trained weights.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        *,
        role: str,
        data_dim: int,
        condition: Condition | None = None,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if role not in ("encoder", "decoder"):
            raise ValueError(f"role must be 'encoder' or 'decoder'. Got {role!r} instead.")
        self.role, self.data_dim = role, data_dim
        self.linear = nn.Linear(in_features, out_features)
        self.residual = ConditionedMLP(in_features, hidden, out_features, condition=condition, activation=activation)
        last = self.residual.net[-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.zero_()
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def forward(self, inputs: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """(B, in_features) and prepared condition (B, C) -> (B, out_features)."""
        return self.linear(inputs) + self.residual(inputs, c)

    @torch.no_grad()
    def initialise(self, xs: torch.Tensor, latent_dim: int) -> bool:
        """Set the linear map from the principal components of ``xs`` (N, D), the data as the network sees it.

        ``latent_dim`` is the model's Z: an encoder's outputs start with Z means and, when there
        are at least 2Z outputs, Z log-variances (every posterior of :class:`vaekit.VAE`); a
        decoder's inputs are the Z latent values. Does nothing (and returns False) when already
        initialised.
        """
        if bool(self.initialised):
            return False
        weight, bias = self.linear.weight, self.linear.bias
        q = min(latent_dim, self.data_dim)
        mean, values, vectors, noise = principal_directions(xs, q)
        if self.role == "encoder":
            # The means and log-variances only: further outputs (a flow's parameters) keep their
            # random start, since a planar step at u = w = b = 0 has no gradient and never learns.
            rows = min(2 * latent_dim, weight.shape[0])
            weight[:rows] = 0.0
            bias[:rows] = 0.0
            projection = (vectors / values.sqrt()).T  # (q, D)
            weight[:q] = projection.to(weight.dtype)
            bias[:q] = -(projection @ mean).to(bias.dtype)
            if weight.shape[0] >= 2 * latent_dim:
                bias[latent_dim : latent_dim + q] = torch.log(noise / values).to(bias.dtype)
        else:
            weight.zero_()
            bias.zero_()
            weight[: self.data_dim, :q] = (vectors * values.sqrt()).to(weight.dtype)
            bias[: self.data_dim] = mean.to(bias.dtype)
        self.initialised.fill_(True)
        return True


# ---------------------------------------------------------------------------- convolutional trunks
# Convolutions of one or two spatial axes share every line below; only the layer classes differ.
_CONV: dict[int, type[nn.Module]] = {1: nn.Conv1d, 2: nn.Conv2d}
_CONV_T: dict[int, type[nn.Module]] = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d}


def stride_plan(spatial: Sequence[int], blocks: int) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """Feature-map sizes and strides of ``blocks`` stride-2 conv blocks on maps of size ``spatial``.

    Each block halves every axis longer than 1, rounding up (a kernel ``k`` odd, padding
    ``k // 2``: size n -> ceil(n / 2)); an axis that has reached 1 is not strided further, so any
    data size works with any number of blocks (L = 3 with three blocks: 3 -> 2 -> 1 -> 1).

    Returns
    -------
    sizes : list of tuple
        ``blocks + 1`` sizes: the input's, then each block's output.
    strides : list of tuple
        ``blocks`` strides, one per axis (2 or 1).

    """
    sizes, strides = [tuple(spatial)], []
    for _ in range(blocks):
        stride = tuple(2 if n > 1 else 1 for n in sizes[-1])
        strides.append(stride)
        sizes.append(tuple(-(-n // s) for n, s in zip(sizes[-1], stride)))
    return sizes, strides


class FiLM(nn.Module):
    """Feature-wise linear modulation: ``h * (1 + gamma(e)) + beta(e)``, per channel.

    The projection starts at zero, so the block starts as the identity: a conditional conv net
    begins as its unconditional self, and the condition's effect is learned.
    """

    def __init__(self, embedding_dim: int, channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(embedding_dim, 2 * channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """(B, ch, *spatial) maps and (B, E) embedding -> modulated maps of the same shape."""
        gamma, beta = self.proj(e).chunk(2, dim=-1)  # (B, ch) each
        shape = (*gamma.shape, *([1] * (h.ndim - 2)))
        return h * (1 + gamma.reshape(shape)) + beta.reshape(shape)


class _ConvNet(nn.Module):
    """What the conv encoder and decoder share: the data layout, the condition embedding, FiLM."""

    def __init__(
        self, data_channels: int, spatial: Sequence[int], condition: Condition | None, activation: str, channels_last: bool
    ) -> None:
        super().__init__()
        self.data_channels, self.spatial, self.channels_last = data_channels, tuple(spatial), channels_last
        self.embed = condition.embedding() if condition is not None else None
        self.embedding_dim = condition.embedding_dim if condition is not None else 0
        self.act = ACTIVATIONS[activation]()

    def _films(self, widths: Sequence[int]) -> nn.ModuleList | None:
        return nn.ModuleList(FiLM(self.embedding_dim, w) for w in widths) if self.embed is not None else None

    def _block(self, h: torch.Tensor, i: int, e: torch.Tensor | None) -> torch.Tensor:
        """Activation of conv block ``i``'s output, FiLM-modulated by the condition."""
        if self.films is not None:
            h = self.films[i](h, e)
        return self.act(h)

    def _embed(self, c: torch.Tensor | None) -> torch.Tensor | None:
        return None if self.embed is None else self.embed(c)  # (B, E)

    def to_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Flat rows (B, D) in the data's order -> maps (B, C, *spatial), channels first."""
        if self.channels_last:
            return x.reshape(x.shape[0], *self.spatial, self.data_channels).movedim(-1, 1)
        return x.reshape(x.shape[0], self.data_channels, *self.spatial)

    def from_maps(self, h: torch.Tensor, k: int) -> torch.Tensor:
        """Maps (B, k * C, *spatial) -> (B, k * D): k blocks of D values, each in the data's flat order."""
        if self.channels_last:
            h = h.reshape(h.shape[0], k, self.data_channels, *self.spatial).movedim(2, -1)
        return h.reshape(h.shape[0], -1)


class ConvEncoder(_ConvNet):
    """Stride-2 conv blocks, then dense layers: flat data (B, D) and condition -> (B, out_features).

    Block i is ``conv(kernel, stride 2, padding kernel // 2) -> FiLM(embed(c)) -> activation``
    (see :func:`stride_plan` for the sizes); the last maps are flattened and, with the condition
    embedding concatenated, passed through the dense ``hidden`` layers to ``out_features``.

    Parameters
    ----------
    data_channels : int
        C, the channels (coordinates) of the data.
    spatial : tuple of int
        The spatial sizes: (L,) for curves, (H, W) for images.
    channels : tuple of int
        Output channels of the conv blocks.
    channels_last : bool
        Flat rows are in (*spatial, C) order (curves of P points of C coordinates) rather than
        (C, *spatial).

    """

    def __init__(
        self,
        data_channels: int,
        spatial: Sequence[int],
        channels: Sequence[int],
        kernel: int,
        hidden: Sequence[int],
        out_features: int,
        *,
        condition: Condition | None = None,
        activation: str = "relu",
        channels_last: bool = False,
    ) -> None:
        super().__init__(data_channels, spatial, condition, activation, channels_last)
        self._down_blocks(channels, kernel)
        self.dense = mlp(math.prod(self.feature_shape) + self.embedding_dim, hidden, out_features, activation)

    def _down_blocks(self, channels: Sequence[int], kernel: int) -> None:
        """The stride-2 conv blocks (``convs``, ``films``) and the shape of their last maps (``feature_shape``)."""
        sizes, strides = stride_plan(self.spatial, len(channels))
        widths = (self.data_channels, *channels)
        conv = _CONV[len(self.spatial)]
        self.convs = nn.ModuleList(
            conv(widths[i], widths[i + 1], kernel, stride=strides[i], padding=kernel // 2) for i in range(len(channels))
        )
        self.films = self._films(channels)
        self.feature_shape = (channels[-1], *sizes[-1])

    def features(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """The last conv block's maps (B, *feature_shape), before flattening."""
        return self._features(x, self._embed(c))

    def _features(self, x: torch.Tensor, e: torch.Tensor | None) -> torch.Tensor:
        h = self.to_maps(x)  # (B, C, *spatial)
        for i, conv in enumerate(self.convs):
            h = self._block(conv(h), i, e)
        return h

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """(B, D) and prepared condition (B, C) -> (B, out_features)."""
        e = self._embed(c)
        h = self._features(x, e).flatten(1)  # (B, F)
        if e is not None:
            h = torch.cat([h, e], dim=-1)
        return self.dense(h)


class ConvDecoder(_ConvNet):
    """The encoder's mirror: dense layers, reshape, transposed conv blocks, an output conv.

    z (B, Z) and the condition -> (B, k * D), k blocks of D values in the data's flat order
    (output channel ``j * C + c`` is block j's channel c). The transposed convs undo
    :func:`stride_plan` exactly (``output_padding`` 1 where the size a block restores is even),
    so the output has the data's size for any size, odd ones included.

    Parameters
    ----------
    hidden : tuple of int
        Widths of the dense layers from z (already in decoder order).
    outputs_per_value : int
        k, the values the likelihood head reads per data value.

    Other parameters as :class:`ConvEncoder`.

    """

    def __init__(
        self,
        z_dim: int,
        data_channels: int,
        spatial: Sequence[int],
        channels: Sequence[int],
        kernel: int,
        hidden: Sequence[int],
        outputs_per_value: int,
        *,
        condition: Condition | None = None,
        activation: str = "relu",
        channels_last: bool = False,
    ) -> None:
        super().__init__(data_channels, spatial, condition, activation, channels_last)
        self.k = outputs_per_value
        start = (channels[-1], *stride_plan(spatial, len(channels))[0][-1])
        self.dense = mlp(z_dim + self.embedding_dim, hidden, math.prod(start), activation)  # first: seeded weights as before
        self._up_blocks(channels, kernel, outputs_per_value)

    def _up_blocks(self, channels: Sequence[int], kernel: int, outputs_per_value: int) -> None:
        """The transposed conv blocks (``convs``, ``films``), the output conv and the shape they start from."""
        sizes, strides = stride_plan(self.spatial, len(channels))
        self.start_shape = (channels[-1], *sizes[-1])
        conv_t, n = _CONV_T[len(self.spatial)], len(channels)
        blocks = []
        for i in reversed(range(n)):  # block i maps sizes[i + 1] back to sizes[i]
            # ConvTranspose of an odd kernel, padding k // 2: n -> (n - 1) * s + 1 + output_padding.
            pad = tuple(int(s == 2 and t % 2 == 0) for s, t in zip(strides[i], sizes[i]))
            blocks.append(
                conv_t(channels[i], channels[max(i - 1, 0)], kernel, stride=strides[i], padding=kernel // 2, output_padding=pad)
            )
        self.convs = nn.ModuleList(blocks)
        self.films = self._films([channels[max(i - 1, 0)] for i in reversed(range(n))])
        self.out = _CONV[len(self.spatial)](channels[0], outputs_per_value * self.data_channels, kernel, padding=kernel // 2)

    def features(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """The output maps (B, k * C, *spatial), channels first, before they are laid out flat."""
        e = self._embed(c)
        h = z if e is None else torch.cat([z, e], dim=-1)
        return self._up(self.act(self.dense(h)).reshape(z.shape[0], *self.start_shape), e)  # (B, ch, *sizes[-1])

    def _up(self, h: torch.Tensor, e: torch.Tensor | None) -> torch.Tensor:
        """Start maps (B, *start_shape) -> output maps (B, k * C, *spatial)."""
        for i, conv in enumerate(self.convs):
            h = self._block(conv(h), i, e)
        return self.out(h)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """(B, Z) and prepared condition (B, C) -> (B, k * D)."""
        return self.from_maps(self.features(z, c), self.k)


# ---------------------------------------------------------------------------- grids of codes
class ConvGridEncoder(ConvEncoder):
    """The conv blocks of :class:`ConvEncoder`, then a 1x1 conv to ``code_dim`` values per position.

    Flat data (B, D) and the condition (FiLM in every block) -> (B, G * code_dim): one vector per
    position of the last feature map (G = its number of positions), positions in raster order
    (row-major over ``grid_shape``), each vector's ``code_dim`` values contiguous. There are no
    dense layers.
    """

    def __init__(
        self,
        data_channels: int,
        spatial: Sequence[int],
        channels: Sequence[int],
        kernel: int,
        code_dim: int,
        *,
        condition: Condition | None = None,
        activation: str = "relu",
        channels_last: bool = False,
    ) -> None:
        _ConvNet.__init__(self, data_channels, spatial, condition, activation, channels_last)
        self._down_blocks(channels, kernel)
        self.grid_shape = tuple(self.feature_shape[1:])
        self.proj = _CONV[len(self.spatial)](channels[-1], code_dim, 1)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """(B, D) and prepared condition (B, C) -> (B, G * code_dim)."""
        h = self.proj(self._features(x, self._embed(c)))  # (B, code_dim, *grid_shape)
        return h.flatten(2).transpose(1, 2).reshape(x.shape[0], -1)  # (B, G, code_dim) flat


class ConvGridDecoder(ConvDecoder):
    """The mirror of :class:`ConvGridEncoder`: a 1x1 conv from the grid of code vectors, then the transposed blocks.

    z (B, G * code_dim) laid out as the encoder's output and the condition (FiLM in every
    transposed block) -> (B, k * D) as :class:`ConvDecoder`. There are no dense layers.
    """

    def __init__(
        self,
        code_dim: int,
        data_channels: int,
        spatial: Sequence[int],
        channels: Sequence[int],
        kernel: int,
        outputs_per_value: int,
        *,
        condition: Condition | None = None,
        activation: str = "relu",
        channels_last: bool = False,
    ) -> None:
        _ConvNet.__init__(self, data_channels, spatial, condition, activation, channels_last)
        self.k = outputs_per_value
        self._up_blocks(channels, kernel, outputs_per_value)
        self.code_dim = code_dim
        self.proj = _CONV[len(self.spatial)](code_dim, channels[-1], 1)

    def features(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """The output maps (B, k * C, *spatial), channels first, before they are laid out flat."""
        grid = self.start_shape[1:]
        h = z.reshape(z.shape[0], *grid, self.code_dim).movedim(-1, 1)  # (B, code_dim, *grid)
        return self._up(self.act(self.proj(h)), self._embed(c))
