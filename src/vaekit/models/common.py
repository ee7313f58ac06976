"""What every vaekit model shares: its data side, its config and its public interface.

:class:`ModelBase` implements, once, the parts of the contract (:mod:`vaekit.models.base`) that
do not depend on the latent structure: the architecture and its JSON form, building from them,
input checking (data, latent codes, conditions), standardisation, ``decode``, ``sample``,
``reconstruct`` and ``save``. A model subclasses it and supplies ``encode_batch``, ``prior``
and, unless its decoder is ``self.decoder`` with ``self.likelihood_head``, ``decode_batch``.
It must set ``self._architecture`` (its config dataclass) and call :meth:`_register_scaling`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.distributions import Bernoulli as TorchBernoulli
from torch.distributions import Distribution, Normal, StudentT

from vaekit.conditions import broadcast_condition
from vaekit.configs import spec_types
from vaekit.constraints import check_shape as check_constraint_shape
from vaekit.distributions import Bernoulli, LogColumns, draw, posterior_mean
from vaekit.errors import InputError, InputTypeError, describe
from vaekit.io import save
from vaekit.models.base import flat_dim
from vaekit.nn import ACTIVATIONS
from vaekit.validate import float_matrix, positive_int

logger = logging.getLogger(__name__)

# How standardize=True scales the columns (ModelBase.set_scaling_moments).
STANDARDIZE_SCALES = ("column", "global")


def check_spec(value: Any, role: str, *, name: str | None = None, none_ok: bool = False) -> None:
    """Refuse anything but a registered spec of ``role`` for parameter ``name``."""
    if isinstance(value, spec_types(role)):
        return
    names = " or ".join(f"vaekit.{c.__name__}({'...' if dataclasses.fields(c) else ''})" for c in spec_types(role))
    names += ", or None" if none_ok else ""
    raise InputTypeError(f"{name or role} must be {names}. Got {describe(value)} instead.")


def layer_widths(value: Any, name: str) -> tuple[int, ...]:
    """A sequence of positive layer widths as a tuple; raises naming ``name``."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise InputTypeError(f"{name} must be a sequence of layer widths. Got {describe(value)} instead.")
    return tuple(positive_int(h, f"{name}[i]") for h in value)


def check_data_fields(config: Any) -> None:
    """Check the fields the model configs share, in the config's ``__post_init__``.

    ``x_dim``, ``x_shape`` (normalised: None for flat data), ``hidden`` (normalised to a tuple),
    ``likelihood``, ``condition``, ``activation``, ``standardize`` and, where the config has
    them, the ``encoder``/``decoder`` trunks (which must accept the data's shape). One copy of
    these rules serves every model, so ``VAE(...)``, ``VQVAE(...)``, model files and run configs
    refuse the same values with the same messages.
    """
    if config.x_shape is not None:
        shape = point_shape(config.x_shape, "x_shape")
        if positive_int(config.x_dim, "x_dim") != flat_dim(shape):
            raise InputError(f"x_dim must be the product of x_shape {list(shape)}. Got {config.x_dim} instead.")
        object.__setattr__(config, "x_shape", None if shape == (config.x_dim,) else shape)
    positive_int(config.x_dim, "x_dim")
    object.__setattr__(config, "hidden", layer_widths(config.hidden, "hidden"))
    check_spec(config.likelihood, "likelihood")
    if config.condition is not None:
        check_spec(config.condition, "condition", none_ok=True)
    shape = (config.x_dim,) if config.x_shape is None else config.x_shape
    if hasattr(config, "encoder"):
        check_spec(config.encoder, "trunk", name="encoder")
        config.encoder.check_shape(shape, "encoder")
        if config.decoder is not None:
            check_spec(config.decoder, "trunk", name="decoder", none_ok=True)
            config.decoder.check_shape(shape, "decoder")
    if config.activation not in ACTIVATIONS:
        raise InputError(f"activation must be one of {sorted(ACTIVATIONS)}. Got {config.activation!r} instead.")
    if not isinstance(config.standardize, bool):
        raise InputTypeError(f"standardize must be True or False. Got {describe(config.standardize)} instead.")
    check_constraint_shape(getattr(config.likelihood, "constraint", "none"), shape)
    check_columns = getattr(config.likelihood, "check_columns", None)
    if check_columns is not None:
        check_columns(config.x_dim)
    scale = getattr(config, "standardize_scale", "column")
    if scale not in STANDARDIZE_SCALES:
        raise InputError(f"standardize_scale must be one of {list(STANDARDIZE_SCALES)}. Got {scale!r} instead.")
    if config.standardize and isinstance(config.likelihood, Bernoulli):
        raise InputError("standardize must be False with a Bernoulli likelihood (data must stay in [0, 1]). Got True instead.")


class ModelBase(nn.Module):
    """Shared implementation of the model contract's data side (see the module docstring).

    Attributes a subclass sets: ``x_shape``, ``x_dim``, ``z_dim``, ``condition``,
    ``standardize`` and ``_architecture``; buffers ``x_shift``/``x_scale`` (D,) come from
    :meth:`_register_scaling`.
    """

    def _register_scaling(self) -> None:
        """Standardisation statistics (D,); identity until fit() (or the user) sets them."""
        self.register_buffer("x_shift", torch.zeros(self.x_dim))
        self.register_buffer("x_scale", torch.ones(self.x_dim))

    # ------------------------------------------------------------------ configuration
    @property
    def architecture(self) -> Any:
        """Everything needed to rebuild this architecture: the model's config dataclass, checked."""
        return self._architecture

    @property
    def config(self) -> dict[str, Any]:
        """The architecture as JSON (``model.json``'s ``config``)."""
        return self.architecture.to_dict()

    @classmethod
    def from_architecture(cls, arch: Any, *, seed: int | None = None) -> Any:
        """Build an untrained model from its config dataclass (initial weights seeded with ``seed``)."""
        kwargs = {f.name: getattr(arch, f.name) for f in dataclasses.fields(arch) if f.name not in ("x_dim", "x_shape")}
        return cls(x_shape=arch.shape, seed=seed, **kwargs)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Any:
        """Build an untrained model from :attr:`config` (checked: keys, types, ranges)."""
        return cls.from_architecture(cls.config_class.from_dict(config))

    @property
    def device(self) -> torch.device:
        """Device the weights live on."""
        return self.x_shift.device

    @property
    def dtype(self) -> torch.dtype:
        """Floating-point type of the weights (float32 unless the user called ``.double()``)."""
        return self.x_shift.dtype

    def log_transform(self, x: torch.Tensor) -> torch.Tensor:
        """Rows (..., D) in the user's units -> the likelihood's own units (log columns logged; else x itself)."""
        transform = getattr(self.likelihood_head, "log_transform", None)
        return x if transform is None else transform(x)

    def network_input(self, x: torch.Tensor) -> torch.Tensor:
        """Prepared rows (B, D) -> what the encoder reads: log columns logged, then standardised if the model standardises."""
        x = self.log_transform(x)
        return (x - self.x_shift) / self.x_scale if self.standardize else x

    def set_scaling(self, x: torch.Tensor) -> None:
        """Store mean and std of training data ``x`` (N, D) when the model standardises, then :meth:`initialise_from_data`.

        The moments are those of the log of log columns (what the networks see).
        """
        if self.standardize:
            xt = self.log_transform(x)
            self.set_scaling_moments(xt.mean(dim=0), xt.std(dim=0, correction=0))
        self.initialise_from_data(x)

    def set_scaling_moments(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store the training data's column mean and population std, each (D,), when the model standardises.

        With ``standardize_scale="global"`` every column is divided by one scale, the root mean
        square of the column stds, so distances between points keep their geometry (curves,
        images); ``"column"`` (the default) gives each column unit variance.
        """
        if not self.standardize:
            return
        if getattr(self, "standardize_scale", "column") == "global":
            std = std.pow(2).mean().sqrt().expand_as(std)
        # A constant column would divide by zero; leave it unscaled.
        std = torch.where(std > 1e-8, std, torch.ones_like(std))
        self.x_shift.copy_(mean)
        self.x_scale.copy_(std)

    def initialise_from_data(self, x: torch.Tensor) -> None:
        """Data-dependent initial weights: every submodule with ``initialise(xs, latent_dim)`` gets the standardised rows.

        ``x`` (N, D) is prepared training data (``fit`` passes all of it, or a stream's first
        block). Only :class:`vaekit.nn.PCAResidual` has such a method; it acts once (its
        ``initialised`` buffer is saved with the weights), so a second ``fit`` or a resumed run
        keeps the trained weights.
        """
        targets = [m for m in self.modules() if m is not self and callable(getattr(m, "initialise", None))]
        if not targets:
            return
        xs = self.network_input(x)
        for module in targets:
            if module.initialise(xs, self.z_dim):
                logger.info("%s initialised from the principal components of %d rows", type(module).__name__, len(xs))

    # ------------------------------------------------------------------ input checking
    def prepare_x(self, x: Any, name: str = "x") -> torch.Tensor:
        """Validate data (N, D) or (N, *x_shape): finite float (N, D) on the model's device, in its dtype.

        The likelihood spec's ``check_data`` hook then refuses values outside its support (a
        Bernoulli's [0, 1]), so every model and every entry point (fit, evaluate, encode,
        reconstruct, the metrics) checks the same way.
        """
        xt = float_matrix(flat_rows(x, self.x_shape), name, width=self.x_dim)
        check = getattr(self.likelihood, "check_data", None)
        if check is not None:
            check(xt, name)
        return xt.to(self.device, self.dtype)

    def prepare_z(self, z: Any, name: str = "z") -> torch.Tensor:
        """Validate latent codes: finite float (N, z_dim); returned on the model's device, in its dtype."""
        return float_matrix(z, name, width=self.z_dim).to(self.device, self.dtype)

    def prepare_condition(self, c: Any, n: int, name: str = "condition") -> torch.Tensor | None:
        """Validate a condition for ``n`` rows against the model's condition spec."""
        if self.condition is None:
            if c is not None:
                raise InputError(
                    f"{name} must be None: this model is unconditional (built without condition=). Got {describe(c)} instead."
                )
            return None
        if c is None:
            raise InputError(f"{name} is required: this model was built with condition={self.condition}. Got None instead.")
        prepared = self.condition.prepare(broadcast_condition(self.condition, c, n), name)
        if prepared.shape[0] != n:
            raise InputError(f"{name} must have one row per data row ({n}). Got {prepared.shape[0]} rows instead.")
        return prepared.to(self.device, self.dtype)

    # ------------------------------------------------------------------ batch interface
    def decode_batch(self, z: torch.Tensor, c: torch.Tensor | None = None) -> Distribution:
        """p(x|z,c) for prepared tensors z (B, Z), c (B, C), in the user's units; no checks.

        The default reads ``self.decoder`` (a trunk module) and ``self.likelihood_head``.
        """
        h = in_chunks(self.decoder, z, c)  # (B, out)
        if self.standardize:
            return self.likelihood_head(h, self.x_shift, self.x_scale)
        return self.likelihood_head(h, None, None)

    # ------------------------------------------------------------------ public interface
    def encode(self, x: Any, condition: Any = None) -> Distribution:
        """q(z|x, c) for user data (checked): a distribution over (N, Z).

        Parameters
        ----------
        x : array (N, D)
        condition : array (N,) labels for OneHot, (N, dim) values for Continuous; a single
            label/value is broadcast to every row.

        """
        xt = self.prepare_x(x)
        c = self.prepare_condition(condition, xt.shape[0])
        return self.encode_batch(xt, c)

    def decode(self, z: Any, condition: Any = None) -> Distribution:
        """p(x|z, c) in the user's units; ``.mean`` has shape (N, D)."""
        zt = self.prepare_z(z)
        c = self.prepare_condition(condition, zt.shape[0])
        return self.decode_batch(zt, c)

    def prior_draws(self, n: int, generator: torch.Generator, c: torch.Tensor | None = None) -> torch.Tensor:
        """Z ~ p(z): (n, Z), following from ``generator`` alone (see :func:`vaekit.distributions.draw`).

        ``c`` (the prepared condition of the n draws) is for a prior that depends on it (the VQ-VAE's).
        """
        return draw(self.prior(), (n,), generator)

    @torch.no_grad()
    def sample(self, n: int, condition: Any = None, *, seed: int | None = None, noise: bool = False) -> np.ndarray:
        """Draw z ~ p(z) and decode: numpy (n, D).

        Returns the decoder means (the lecture's samples) unless ``noise=True``, which draws
        x ~ p(x|z, c) instead.
        """
        n = positive_int(n, "n")
        generator = torch.Generator(device=self.device)
        if seed is not None:
            generator.manual_seed(seed)
        else:
            generator.seed()
        c = self.prepare_condition(condition, n)
        px = self.decode_batch(self.prior_draws(n, generator, c), c)
        if not noise:
            return self.shaped(px.mean.cpu().numpy())
        return self.shaped(sample_with(px, generator).cpu().numpy())

    @torch.no_grad()
    def reconstruct(self, x: Any, condition: Any = None) -> np.ndarray:
        """Decode the posterior mean of each point: numpy (N, D) of p(x | E[z|x], c) means.

        E[z|x] is exact for a diagonal Gaussian posterior, the mean of 64 seeded draws for a flow.
        """
        xt = self.prepare_x(x)
        c = self.prepare_condition(condition, xt.shape[0])
        return self.shaped(self.decode_batch(posterior_mean(self.encode_batch(xt, c)), c).mean.cpu().numpy())

    def shaped(self, rows: np.ndarray) -> np.ndarray:
        """Flat rows (N, D) viewed as (N, *x_shape)."""
        return rows.reshape(rows.shape[0], *self.x_shape)

    def save(self, path: str | Path) -> Path:
        """Write ``model.safetensors`` and ``model.json`` into folder ``path``; see :func:`vaekit.save`."""
        return save(self, path)


# Rows per network call. One (1e6 x 128) activation matrix spills out of cache; blocks of 8192
# rows stay in it, which made encode/decode of 1e6 points about 3-4x faster on a 2-core CPU.
CHUNK_ROWS = 8192


def in_chunks(net: nn.Module, inputs: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    """``net(inputs, c)`` evaluated over blocks of rows and concatenated: (N, out)."""
    n = inputs.shape[0]
    if n <= CHUNK_ROWS:
        return net(inputs, c)
    blocks = [net(inputs[i : i + CHUNK_ROWS], None if c is None else c[i : i + CHUNK_ROWS]) for i in range(0, n, CHUNK_ROWS)]
    return torch.cat(blocks)


def sample_with(px: Distribution, generator: torch.Generator) -> torch.Tensor:
    """Draw from a Normal, Student's t or Bernoulli ``px`` with an explicit generator (rsample has none).

    Student's t: torch draws its chi-square from the global generator only, so the draws come
    from numpy's generator seeded by ``generator`` (the same seed gives the same samples). On a
    log column a t draw far in the tail can exceed float32 after the exp (inf).
    """
    if type(px) is LogColumns:
        drawn = px.from_base(sample_with(px.base, generator))
        beyond = int((~torch.isfinite(drawn)).sum())
        if beyond:  # said, not silent: a log-t's tail beyond float32 reads inf
            logger.warning("%d sampled values on log columns exceed float32 after the exp and read inf", beyond)
        return drawn
    base = px.base_dist
    if type(base) is Normal:
        noise = torch.randn(base.loc.shape, generator=generator, device=base.loc.device, dtype=base.loc.dtype)
        return base.loc + base.scale * noise
    if type(base) is StudentT:
        seed = int(torch.randint(0, 2**62, (), generator=generator, device=generator.device))
        df = base.df.detach().cpu().double().numpy()  # (N, D): the head expands it to the rows
        noise = torch.as_tensor(np.random.default_rng(seed).standard_t(df), dtype=base.loc.dtype, device=base.loc.device)
        return base.loc + base.scale * noise
    if type(base) is TorchBernoulli:
        return torch.bernoulli(base.probs, generator=generator)
    raise NotImplementedError(f"sampling with a generator from {type(base).__name__}: not a likelihood vaekit knows")


def point_shape(x_dim: Any, name: str = "x_dim") -> tuple[int, ...]:
    """x_dim (an int D or a shape) -> the shape of one point, checked."""
    if isinstance(x_dim, (tuple, list)):
        if not x_dim:
            raise InputError(f"{name} must be a positive int or a non-empty shape such as (8, 8). Got () instead.")
        return tuple(positive_int(d, f"{name}[i]") for d in x_dim)
    return (positive_int(x_dim, name),)


def flat_rows(x: Any, x_shape: tuple[int, ...]) -> Any:
    """(N, *x_shape) arrays -> (N, D); anything else passes through for float_matrix to check."""
    shape = getattr(x, "shape", None)
    if len(x_shape) > 1 and shape is not None and tuple(shape[1:]) == x_shape:
        return x.reshape(shape[0], -1)
    return x


def resolve_shape(x_dim: Any, x_shape: Any) -> tuple[int, ...]:
    """The shape of one point from a model constructor's ``x_dim`` or ``x_shape`` (exactly one given)."""
    if (x_dim is None) == (x_shape is None):
        raise InputError(f"give exactly one of x_dim and x_shape. Got x_dim={x_dim!r} and x_shape={x_shape!r} instead.")
    return point_shape(x_dim if x_shape is None else x_shape, "x_dim" if x_shape is None else "x_shape")
