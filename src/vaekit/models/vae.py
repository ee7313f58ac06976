"""The variational autoencoder: q(z|x,c), p(z) and p(x|z,c), all returned as distributions."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import torch
from torch.distributions import Distribution, Independent

from vaekit.conditions import Condition, condition_from_config
from vaekit.distributions import (
    Bernoulli,
    Gaussian,
    Likelihood,
    Prior,
    StandardNormal,
    likelihood_from_config,
    prior_from_config,
)
from vaekit.models.base import ModelConfig, flat_dim, register
from vaekit.models.common import ModelBase, check_data_fields, check_spec, in_chunks, resolve_shape
from vaekit.nn import ACTIVATIONS
from vaekit.posteriors import DiagonalGaussian, posterior_from_config
from vaekit.trunks import MLP, trunk_from_config
from vaekit.validate import positive_int

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class VAEConfig(ModelConfig):
    """Architecture of a :class:`VAE`: what ``model.json`` stores and ``VAE.from_architecture`` builds.

    Built (and so checked) by ``VAE(...)``; a bad value raises :class:`~vaekit.errors.InputError`
    naming the parameter. ``x_dim`` is D, the product of ``x_shape`` (both are stored so a reader
    sees either; ``x_shape`` None means flat vectors (D,)). ``decoder`` None mirrors the encoder.
    """

    x_dim: int
    z_dim: int = dataclasses.field(default=2, metadata={"help": "latent dimension"})
    hidden: tuple[int, ...] = dataclasses.field(
        default=(128, 128), metadata={"help": "hidden layer widths, comma separated (decoder mirrors them)"}
    )
    activation: str = dataclasses.field(default="relu", metadata={"help": "activation function", "choices": ACTIVATIONS})
    likelihood: Any = dataclasses.field(
        default_factory=Gaussian,
        metadata={"help": "decoder distribution (default: bernoulli for digits, gaussian otherwise)", "prefix": ""},
    )
    condition: Any = None
    standardize: bool = dataclasses.field(
        default=False, metadata={"help": "train on standardised data (outputs stay in data units)"}
    )
    standardize_scale: Literal["column", "global"] = dataclasses.field(
        default="column",
        metadata={"help": "standardise each column to unit variance, or all columns by one scale (global: keeps curve geometry)"},
    )
    prior: Any = dataclasses.field(default_factory=StandardNormal, metadata={"help": "p(z)"})
    x_shape: tuple[int, ...] | None = dataclasses.field(
        default=None, metadata={"help": "shape of one data point, e.g. 64,2 for curves (default: flat columns)"}
    )
    posterior: Any = dataclasses.field(default_factory=DiagonalGaussian, metadata={"help": "q(z|x)"})
    encoder: Any = dataclasses.field(default_factory=MLP, metadata={"help": "encoder trunk", "role": "trunk"})
    decoder: Any = dataclasses.field(
        default=None, metadata={"help": "decoder trunk ('' or unset: the encoder's mirror)", "role": "trunk"}
    )

    SPECS: ClassVar[dict[str, Any]] = {
        "likelihood": likelihood_from_config,
        "condition": condition_from_config,
        "prior": prior_from_config,
        "posterior": posterior_from_config,
        "encoder": trunk_from_config,
        "decoder": trunk_from_config,
    }
    # vaekit 0.1 files have none of these.
    ADDED: ClassVar[frozenset[str]] = frozenset({"prior", "x_shape", "posterior", "encoder", "decoder", "standardize_scale"})
    FROM_DATA: ClassVar[tuple[str, ...]] = ("x_dim", "condition")

    def __post_init__(self) -> None:
        check_data_fields(self)
        positive_int(self.z_dim, "z_dim")
        check_spec(self.prior, "prior")
        check_spec(self.posterior, "posterior")

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one data point: ``x_shape``, or (x_dim,)."""
        return (self.x_dim,) if self.x_shape is None else self.x_shape


@register
class VAE(ModelBase):
    """Variational autoencoder, optionally conditional, with MLP or convolutional networks.

    Parameters
    ----------
    x_dim : int or tuple of int
        Data dimension D, or the shape of one data point (give this or ``x_shape``).
    z_dim : int, default 2
        Latent dimension Z.
    x_shape : tuple of int, optional
        The shape of one data point: ``(P, 2)`` curves, ``(C, H, W)`` images. Data may then be
        passed as (N, *x_shape) or flat (N, D); ``sample`` and ``reconstruct`` return
        (N, *x_shape), and figures and the report use the shape.
    hidden : sequence of int, default (128, 128)
        Hidden widths of the encoder's dense layers; the decoder mirrors them.
    likelihood : Gaussian or Bernoulli, default ``Gaussian(variance=0.1)``
        The decoder's distribution p(x|z, c).
    condition : OneHot, Continuous or None
        Makes the model a conditional VAE: c is injected into encoder and decoder.
    activation : str, default "relu"
        One of ``vaekit.nn.ACTIVATIONS``.
    standardize : bool, default False
        Learn on (x - mean) / std of the training data. The statistics are stored with the
        model and undone by :meth:`decode`, :meth:`sample` and :meth:`reconstruct`, so every
        output and every likelihood is in the user's units.
    standardize_scale : {"column", "global"}, default "column"
        With ``standardize``: "column" divides each column by its own std; "global" divides
        every column by one scale (the root mean square of the column stds), which keeps the
        Euclidean geometry of curves and images (a column of small spread is not magnified).
    prior : a prior spec, default ``StandardNormal()``
        p(z). ``MixturePrior(k)`` is a learned mixture of k Gaussians, trained with the model;
        ``VampPrior(k)`` the encoder's mixture over k learned pseudo-inputs.
    posterior : a posterior spec, default ``DiagonalGaussian()``
        The family of q(z|x, c).
    encoder : a trunk spec, default ``MLP()``
        The encoder network; its dense layers have the widths ``hidden``.
    decoder : a trunk spec or None
        The decoder network; None mirrors the encoder. ``PCAResidual()`` (encoder, decoder or
        both) starts from the training data's PCA and learns a nonlinear residual.
    seed : int or None
        Seed for the initial weights; ``None`` draws from torch's global generator.

    """

    config_class: ClassVar[type[ModelConfig]] = VAEConfig
    kind: ClassVar[str] = "vae"

    def __init__(
        self,
        x_dim: int | Sequence[int] | None = None,
        z_dim: int = 2,
        *,
        x_shape: Sequence[int] | None = None,
        hidden: Sequence[int] = (128, 128),
        likelihood: Likelihood | None = None,
        condition: Condition | None = None,
        activation: str = "relu",
        standardize: bool = False,
        standardize_scale: str = "column",
        prior: Prior | None = None,
        posterior: Any = None,
        encoder: Any = None,
        decoder: Any = None,
        seed: int | None = None,
    ) -> None:
        shape = resolve_shape(x_dim, x_shape)
        arch = VAEConfig(
            x_dim=flat_dim(shape),
            z_dim=z_dim,
            hidden=hidden,
            activation=activation,
            likelihood=Gaussian() if likelihood is None else likelihood,
            condition=condition,
            standardize=standardize,
            standardize_scale=standardize_scale,
            prior=StandardNormal() if prior is None else prior,
            x_shape=shape,
            posterior=DiagonalGaussian() if posterior is None else posterior,
            encoder=MLP() if encoder is None else encoder,
            decoder=decoder,
        )
        super().__init__()
        self._architecture = arch
        self.x_shape = arch.shape
        self.x_dim, self.z_dim, self.hidden = arch.x_dim, arch.z_dim, arch.hidden
        self.likelihood, self.condition, self.activation = arch.likelihood, arch.condition, arch.activation
        self.standardize, self.prior_spec, self.posterior_spec = arch.standardize, arch.prior, arch.posterior
        self.standardize_scale = arch.standardize_scale
        self.seed = seed

        encoder_trunk = arch.encoder
        decoder_trunk = arch.encoder if arch.decoder is None else arch.decoder
        k = self.likelihood.out_features(self.x_dim) // self.x_dim
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            out = self.posterior_spec.out_features(self.z_dim)
            self.encoder = encoder_trunk.encoder(self.x_shape, out, self.condition, self.hidden, self.activation)
            self.decoder = decoder_trunk.decoder(self.z_dim, self.x_shape, k, self.condition, self.hidden, self.activation)
            # Built after the networks: a learned prior or posterior draws its initial values from
            # the same seed without changing the networks' (the defaults draw nothing).
            self.prior_net = self.prior_spec.build(self.z_dim, self.x_shape, condition=self.condition)
            self.posterior_head = self.posterior_spec.build(self.z_dim)
        self.likelihood_head = self.likelihood.head(self.x_dim)
        self._register_scaling()

    @classmethod
    def examples(cls) -> dict[str, VAEConfig]:
        """Small architectures that cover every option: the conformance suite trains and checks each.

        Part of the model contract: a new model lists its own, and ``tests/test_conformance.py``
        runs every check (save/load, resume, History, evaluate, figures, report, sweep, bounds) on
        them with no further test code.
        """
        from vaekit.conditions import Continuous, OneHot
        from vaekit.distributions import MixturePrior, VampPrior
        from vaekit.flows import IAF, Planar
        from vaekit.trunks import Conv1d, Conv2d, PCAResidual

        small = {"z_dim": 2, "hidden": (16,)}
        return {
            "gaussian": VAEConfig(x_dim=2, **small),
            "learned-variance-onehot": VAEConfig(x_dim=2, likelihood=Gaussian("learned"), condition=OneHot(4), **small),
            "per-point-continuous-standardized": VAEConfig(
                x_dim=3, likelihood=Gaussian("per_point"), condition=Continuous(1, embed=4), standardize=True, **small
            ),
            "bernoulli-image": VAEConfig(x_dim=16, x_shape=(4, 4), likelihood=Bernoulli(), z_dim=3, hidden=(16,)),
            "mixture-prior": VAEConfig(x_dim=2, prior=MixturePrior(3), **small),
            "mixture-prior-onehot-tanh": VAEConfig(
                x_dim=2, prior=MixturePrior(2), condition=OneHot(3), activation="tanh", **small
            ),
            "vamp-prior": VAEConfig(x_dim=2, prior=VampPrior(3), **small),
            "vamp-prior-onehot-standardized": VAEConfig(
                x_dim=3, prior=VampPrior(4), condition=OneHot(3), standardize=True, **small
            ),
            "conv2d-bernoulli-image": VAEConfig(
                x_dim=64, x_shape=(1, 8, 8), encoder=Conv2d(channels=(4, 8)), likelihood=Bernoulli(), z_dim=3, hidden=(16,)
            ),
            "conv1d-curve-onehot": VAEConfig(
                x_dim=24, x_shape=(12, 2), encoder=Conv1d(channels=(4,)), condition=OneHot(3), **small
            ),
            "conv1d-per-point-continuous": VAEConfig(
                x_dim=12,
                x_shape=(6, 2),
                encoder=Conv1d(channels=(4,)),
                likelihood=Gaussian("per_point"),
                condition=Continuous(1, embed=4),
                **small,
            ),
            "iaf": VAEConfig(x_dim=2, posterior=IAF(steps=2, context=4), **small),
            "pca-residual-curve-global": VAEConfig(
                x_dim=24,
                x_shape=(12, 2),
                encoder=PCAResidual(),
                likelihood=Gaussian("learned"),
                standardize=True,
                standardize_scale="global",
                **small,
            ),
            "pca-residual-iaf-onehot": VAEConfig(
                x_dim=3, encoder=PCAResidual(), posterior=IAF(steps=1, context=2), condition=OneHot(2), **small
            ),
            "planar-onehot": VAEConfig(x_dim=2, posterior=Planar(steps=2), condition=OneHot(3), **small),
            "log-columns-standardized": VAEConfig(
                x_dim=3, likelihood=Gaussian("learned", log_columns=(0, 2), log_offset=1.0), standardize=True, **small
            ),
            "student-t-log-column-standardized": VAEConfig(
                x_dim=3,
                likelihood=Gaussian("learned", df="learned", log_columns=(1,), log_offset=1.0),
                standardize=True,
                **small,
            ),
        }

    # ------------------------------------------------------------------ batch interface (trusted tensors)
    def encode_batch(self, x: torch.Tensor, c: torch.Tensor | None = None) -> Independent:
        """q(z|x,c) for prepared tensors x (B, D), c (B, C); no checks (used by objectives)."""
        x = self.network_input(x)
        return self.posterior_head(in_chunks(self.encoder, x, c))

    def prior(self) -> Distribution:
        """p(z), event shape (Z,): N(0, I) unless the model was built with another ``prior``."""
        return self.prior_net(self)
