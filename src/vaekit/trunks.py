"""Trunk specs: the networks between the data and the latent code.

A trunk spec builds two modules for a model:

- ``encoder(x_shape, out_features, condition, hidden, activation)``: a module mapping flat data
  (B, D) and a prepared condition (B, C) (or None) to (B, out_features);
- ``decoder(z_dim, x_shape, outputs_per_value, condition, hidden, activation)``: a module mapping
  z (B, Z) and the condition to (B, k * D), k = ``outputs_per_value``, laid out as k blocks of
  D values each in the data's flat order (block 0 the means; a per-point Gaussian's block 1 its
  variances), which is what the likelihood heads read.

- ``check_shape(x_shape, name)``: refuse a data shape the trunk cannot read (run when the
  model's config is built, so a bad pairing fails before any training).

``hidden`` (the model's MLP shorthand) gives the widths of the dense layers; the decoder's
default is the encoder's mirror. :class:`Conv1d` (curves) and :class:`Conv2d` (images) put
stride-2 conv blocks between the data and those dense layers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from torch import nn

from vaekit.conditions import Condition
from vaekit.configs import register_spec, spec_from_config
from vaekit.errors import InputError, InputTypeError, ShapeError, describe
from vaekit.nn import ConditionedMLP, ConvDecoder, ConvEncoder, ConvGridDecoder, ConvGridEncoder, stride_plan
from vaekit.nn import PCAResidual as PCAResidualNet
from vaekit.validate import positive_int


class _Dense:
    """What the dense trunks share: one network each way, fed flat rows; ``_network`` builds it.

    The encoder maps (B, D) to ``out_features`` through ``hidden``, the decoder maps (B, Z) to
    k * D through ``hidden`` reversed.
    """

    kind: ClassVar[str]

    def _network(
        self, in_features: int, hidden: tuple[int, ...], out_features: int, *, role: str, data_dim: int, **kwargs: Any
    ) -> nn.Module:
        raise NotImplementedError

    def encoder(
        self, x_shape: tuple[int, ...], out_features: int, condition: Condition | None, hidden: Sequence[int], activation: str
    ) -> nn.Module:
        """(B, D), (B, C) -> (B, out_features)."""
        d = math.prod(x_shape)
        extra = {"condition": condition, "activation": activation}
        return self._network(d, tuple(hidden), out_features, role="encoder", data_dim=d, **extra)

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
        d = math.prod(x_shape)
        extra = {"condition": condition, "activation": activation}
        return self._network(z_dim, tuple(hidden)[::-1], outputs_per_value * d, role="decoder", data_dim=d, **extra)

    def to_config(self) -> dict[str, Any]:
        """JSON-ready description (inverse of :func:`trunk_from_config`)."""
        return {"type": self.kind, **asdict(self)}


@register_spec("trunk")
@dataclass(frozen=True)
class MLP(_Dense):
    """Fully connected trunk: the encoder's hidden widths are ``hidden``, the decoder's reversed.

    The condition (if any) is embedded and concatenated to the input of each network.
    """

    kind: ClassVar[str] = "mlp"

    def _network(
        self, in_features: int, hidden: tuple[int, ...], out_features: int, *, role: str, data_dim: int, **kwargs: Any
    ) -> nn.Module:
        return ConditionedMLP(in_features, hidden, out_features, **kwargs)

    def check_shape(self, x_shape: tuple[int, ...], name: str) -> None:
        """Any shape: the MLP reads flat rows."""


@register_spec("trunk")
@dataclass(frozen=True)
class PCAResidual(_Dense):
    """PCA plus a learned nonlinear residual: a linear map that starts at the data's PCA, plus an MLP.

    Each network is ``linear(input) + mlp(input, c)`` (:class:`vaekit.nn.PCAResidual`). When
    ``fit`` first sees the training data, the encoder's linear map is set to the whitened
    projection on the top Z principal components and the decoder's to PCA's reconstruction; the
    MLP residuals (widths ``hidden``, reversed for the decoder) start at zero. Training therefore
    starts from (about) probabilistic PCA, the baseline a design engineer trusts, and can only
    add what a linear map cannot do. Works on any data shape (it reads flat rows); the principal
    directions come from at most 10,000 rows, so D up to a few thousand columns is cheap.
    """

    kind: ClassVar[str] = "pca"

    def _network(
        self, in_features: int, hidden: tuple[int, ...], out_features: int, *, role: str, data_dim: int, **kwargs: Any
    ) -> nn.Module:
        return PCAResidualNet(in_features, hidden, out_features, role=role, data_dim=data_dim, **kwargs)

    def check_shape(self, x_shape: tuple[int, ...], name: str) -> None:
        """Any shape up to :data:`MAX_PCA_COLUMNS` columns (a D x D eigendecomposition initialises it)."""
        d = math.prod(x_shape)
        if d > MAX_PCA_COLUMNS:
            raise ShapeError(
                f"{name}=PCAResidual() needs data of at most {MAX_PCA_COLUMNS} values per row "
                f"(it starts from a {d} x {d} eigendecomposition). Got x_shape {tuple(x_shape)} ({d} values) instead; "
                "use the MLP or a conv trunk."
            )


# The largest row a PCAResidual accepts: its D x D float64 eigendecomposition is then about a second.
MAX_PCA_COLUMNS = 4096


class _Conv:
    """What :class:`Conv1d` and :class:`Conv2d` share; a subclass says how x_shape maps to a grid."""

    channels: tuple[int, ...]
    kernel: int
    kind: ClassVar[str]
    RANK: ClassVar[int]  # the number of axes of the x_shape the trunk reads

    def __post_init__(self) -> None:
        name = type(self).__name__
        if isinstance(self.channels, (str, bytes)) or not isinstance(self.channels, Sequence):
            raise InputTypeError(f"{name}.channels must be a sequence of channel counts. Got {describe(self.channels)} instead.")
        if not self.channels:
            raise InputError(f"{name}.channels must hold at least one channel count (one per conv block). Got () instead.")
        object.__setattr__(self, "channels", tuple(positive_int(ch, f"{name}.channels[i]") for ch in self.channels))
        kernel = positive_int(self.kernel, f"{name}.kernel")
        if kernel % 2 == 0:
            # An even kernel with stride 2 cannot keep the sizes at ceil(n / 2) and centred.
            raise InputError(f"{name}.kernel must be an odd integer >= 1. Got {kernel} instead.")

    def _grid(self, x_shape: tuple[int, ...]) -> tuple[int, tuple[int, ...], bool]:
        """(data channels C, spatial sizes, channels_last) of data of shape x_shape."""
        raise NotImplementedError

    def _layout(self) -> str:
        """The x_shape the trunk reads, in words, for messages."""
        raise NotImplementedError

    def check_shape(self, x_shape: tuple[int, ...], name: str) -> None:
        """Refuse an ``x_shape`` without the axes this trunk convolves over."""
        if len(x_shape) != self.RANK:
            hint = " (flat columns need x_shape, e.g. --x-shape 1,8,8 or x_shape=(1, 8, 8))" if len(x_shape) == 1 else ""
            raise ShapeError(
                f"x_shape must have {self.RANK} axes {self._layout()} for {name}={self}{hint}. "
                f"Got x_shape {tuple(x_shape)} instead."
            )

    def encoder(
        self, x_shape: tuple[int, ...], out_features: int, condition: Condition | None, hidden: Sequence[int], activation: str
    ) -> nn.Module:
        """(B, D), (B, C) -> (B, out_features): conv blocks, flatten, dense ``hidden``."""
        self.check_shape(x_shape, "encoder")
        data_channels, spatial, last = self._grid(x_shape)
        return ConvEncoder(
            data_channels,
            spatial,
            self.channels,
            self.kernel,
            tuple(hidden),
            out_features,
            condition=condition,
            activation=activation,
            channels_last=last,
        )

    def decoder(
        self,
        z_dim: int,
        x_shape: tuple[int, ...],
        outputs_per_value: int,
        condition: Condition | None,
        hidden: Sequence[int],
        activation: str,
    ) -> nn.Module:
        """(B, Z), (B, C) -> (B, k * D): dense ``hidden`` reversed, transposed conv blocks."""
        self.check_shape(x_shape, "decoder")
        data_channels, spatial, last = self._grid(x_shape)
        return ConvDecoder(
            z_dim,
            data_channels,
            spatial,
            self.channels,
            self.kernel,
            tuple(hidden)[::-1],
            outputs_per_value,
            condition=condition,
            activation=activation,
            channels_last=last,
        )

    def grid_shape(self, x_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Spatial sizes of the encoder's last feature map on data of shape ``x_shape``: (L',) or (H', W')."""
        self.check_shape(x_shape, "encoder")
        return tuple(stride_plan(self._grid(x_shape)[1], len(self.channels))[0][-1])

    def grid_encoder(self, x_shape: tuple[int, ...], code_dim: int, condition: Condition | None, activation: str) -> nn.Module:
        """(B, D), (B, C) -> (B, G * code_dim): conv blocks, then one code vector per position of the last map."""
        data_channels, spatial, last = self._grid(x_shape)
        return ConvGridEncoder(
            data_channels,
            spatial,
            self.channels,
            self.kernel,
            code_dim,
            condition=condition,
            activation=activation,
            channels_last=last,
        )

    def grid_decoder(
        self, code_dim: int, x_shape: tuple[int, ...], outputs_per_value: int, condition: Condition | None, activation: str
    ) -> nn.Module:
        """(B, G * code_dim), (B, C) -> (B, k * D): the mirror of :meth:`grid_encoder`."""
        data_channels, spatial, last = self._grid(x_shape)
        return ConvGridDecoder(
            code_dim,
            data_channels,
            spatial,
            self.channels,
            self.kernel,
            outputs_per_value,
            condition=condition,
            activation=activation,
            channels_last=last,
        )

    def to_config(self) -> dict[str, Any]:
        """JSON-ready description (inverse of :func:`trunk_from_config`); ``channels`` as a list, as JSON reads it back."""
        return {"type": self.kind, **asdict(self), "channels": list(self.channels)}


_CHANNELS_HELP = "output channels of the conv blocks, comma separated; each block halves the spatial axes"
_KERNEL_HELP = "odd kernel size of the conv blocks"


@register_spec("trunk")
@dataclass(frozen=True)
class Conv2d(_Conv):
    """Convolutional trunk for images of shape ``x_shape = (C, H, W)`` (flat rows in (C, H, W) order).

    The encoder is ``len(channels)`` blocks of conv(``kernel``, stride 2) -> FiLM -> activation
    (each halves H and W, rounding up; an axis that reached 1 stays 1), then dense layers of the
    model's ``hidden`` widths. The decoder mirrors it with transposed convs that return exactly
    (C, H, W), odd sizes included. A condition modulates every conv block (FiLM, starting as the
    identity) and is concatenated at the dense layers.

    Parameters
    ----------
    channels : tuple of int, default (32, 64)
        Output channels of the encoder's conv blocks (the decoder's in reverse).
    kernel : int, default 3
        Odd kernel size.

    """

    channels: tuple[int, ...] = field(default=(32, 64), metadata={"help": _CHANNELS_HELP})
    kernel: int = field(default=3, metadata={"help": _KERNEL_HELP})
    kind: ClassVar[str] = "conv2d"
    RANK: ClassVar[int] = 3

    def _layout(self) -> str:
        return "(C, H, W)"

    def _grid(self, x_shape: tuple[int, ...]) -> tuple[int, tuple[int, ...], bool]:
        return x_shape[0], tuple(x_shape[1:]), False


@register_spec("trunk")
@dataclass(frozen=True)
class Conv1d(_Conv):
    """Convolutional trunk for curves: ``x_shape = (P, C)``, P points of C coordinates.

    Channels last by default, as curve data is usually stored ((64, 2): 64 points of (x, y));
    ``channels_last=False`` reads ``x_shape = (C, L)`` instead (C channels of L samples, as
    ``torch.nn.Conv1d``). The convolution runs along the points. Otherwise as :class:`Conv2d`.

    Parameters
    ----------
    channels : tuple of int, default (32, 64)
        Output channels of the encoder's conv blocks (the decoder's in reverse).
    kernel : int, default 3
        Odd kernel size.
    channels_last : bool, default True
        True: ``x_shape`` is (P, C) (flat rows are point after point); False: (C, L).

    """

    channels: tuple[int, ...] = field(default=(32, 64), metadata={"help": _CHANNELS_HELP})
    kernel: int = field(default=3, metadata={"help": _KERNEL_HELP})
    channels_last: bool = field(
        default=True, metadata={"help": "curves stored as (points, coordinates); false: (channels, length)"}
    )
    kind: ClassVar[str] = "conv1d"
    RANK: ClassVar[int] = 2

    def _layout(self) -> str:
        return "(P, C) (points, coordinates)" if self.channels_last else "(C, L) (channels, length)"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.channels_last, bool):
            raise InputTypeError(f"Conv1d.channels_last must be True or False. Got {describe(self.channels_last)} instead.")

    def _grid(self, x_shape: tuple[int, ...]) -> tuple[int, tuple[int, ...], bool]:
        if self.channels_last:
            return x_shape[1], (x_shape[0],), True
        return x_shape[0], (x_shape[1],), False


def trunk_from_config(config: dict[str, Any] | None) -> Any:
    """Rebuild a trunk spec from :meth:`to_config` output (``None`` stays ``None``: the default)."""
    if config is None:
        return None
    return spec_from_config(config, "trunk", "trunk")
