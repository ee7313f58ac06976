"""A hierarchical VAE with top-down (ladder) inference (Sønderby et al., 2016).

Generative model over L latent layers z_1 (next to x) ... z_L (top)::

    p(z_L) = N(0, I),   p(z_l | z_{l+1}) = N(mu_p(z_{l+1}), diag sigma_p^2(z_{l+1})),   p(x | z_1, c).

Inference runs a deterministic bottom-up pass d_1 = f_1(x, c), d_l = f_l(d_{l-1}) that gives
per-layer Gaussian parameters (mu_hat_l, sigma_hat_l), then samples top-down::

    q(z_L | x) = N(mu_hat_L, sigma_hat_L^2),
    q(z_l | z_{l+1}, x) = N(mu_q, sigma_q^2),  sigma_q^-2 = sigma_hat_l^-2 + sigma_p^-2,
                                               mu_q = sigma_q^2 (mu_hat_l sigma_hat_l^-2 + mu_p sigma_p^-2),

the precision-weighted combination of the bottom-up estimate and the generative top-down
prediction (the top-down networks are shared by p and q, as in the Ladder VAE).

Contract mapping (:mod:`vaekit.models.base`): the latent code is the concatenation
``[z_1, ..., z_L]`` (bottom layer first), so ``z_dim = sum(z_dims)``; ``encode_batch`` and
``prior`` return :class:`TopDownGaussian` distributions over that concatenation, and
``decode_batch`` reads z_1, the first ``z_dims[0]`` values. The KL of the ELBO is the sum of the
per-layer terms of :meth:`HierarchicalVAE.kl_terms` (the model's optional KL hook).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import nn
from torch.distributions import Distribution, Normal, constraints

from vaekit.conditions import Condition
from vaekit.distributed import batch_noise
from vaekit.distributions import LOGVAR_MAX, LOGVAR_MIN, Gaussian, Likelihood, diagonal_normal, kl_per_dimension
from vaekit.errors import InputError, InputTypeError, describe
from vaekit.models.base import ModelConfig, flat_dim, register
from vaekit.models.common import ModelBase, check_data_fields, resolve_shape
from vaekit.models.vae import VAEConfig
from vaekit.nn import ACTIVATIONS, ConditionedMLP
from vaekit.validate import positive_int

# (loc, scale) of one layer's diagonal Gaussian, each (..., d_l).
Params = tuple[torch.Tensor, torch.Tensor]


@dataclasses.dataclass(frozen=True)
class HierarchicalVAEConfig(ModelConfig):
    """Architecture of a :class:`HierarchicalVAE`: what ``model.json`` stores.

    ``z_dims`` lists the latent layers bottom (next to x) to top; every network (each bottom-up
    block, each top-down block, the decoder) has the dense widths ``hidden`` (top-down blocks
    and decoder reversed). ``x_shape`` None means flat vectors (x_dim,).
    """

    x_dim: int
    z_dims: tuple[int, ...] = dataclasses.field(
        default=(4, 2), metadata={"help": "latent layer sizes, bottom (next to x) to top, comma separated"}
    )
    hidden: tuple[int, ...] = dataclasses.field(
        default=(128, 128), metadata={"help": "hidden layer widths of every block, comma separated"}
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
    x_shape: tuple[int, ...] | None = dataclasses.field(
        default=None, metadata={"help": "shape of one data point, e.g. 64,2 for curves (default: flat columns)"}
    )

    SPECS: ClassVar[dict[str, Any]] = {k: VAEConfig.SPECS[k] for k in ("likelihood", "condition")}
    FROM_DATA: ClassVar[tuple[str, ...]] = ("x_dim", "condition")

    def __post_init__(self) -> None:
        check_data_fields(self)  # the rules every model config shares (one copy of them)
        if isinstance(self.z_dims, (str, bytes)) or not isinstance(self.z_dims, Sequence) or len(self.z_dims) == 0:
            raise InputTypeError(f"z_dims must be a non-empty sequence of layer sizes. Got {describe(self.z_dims)} instead.")
        object.__setattr__(self, "z_dims", tuple(positive_int(z, "z_dims[i]") for z in self.z_dims))
        if not self.hidden:
            raise InputError("hidden must hold at least one width (the bottom-up features). Got () instead.")

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one data point: ``x_shape``, or (x_dim,)."""
        return (self.x_dim,) if self.x_shape is None else self.x_shape


class TopDownGaussian(Distribution):
    """A chain of diagonal Gaussians over ``[z_1, ..., z_L]``, sampled top-down.

    z_L ~ N(top); then, for l = L-1 ... 1, z_l ~ N(conditional(l, z_{l+1})), combined by
    precision with ``evidence[l]`` where evidence is given. The prior is such a chain (top
    N(0, I), conditionals p(z_l | z_{l+1})), and so is the ladder posterior: the same
    conditionals with the bottom-up evidence (mu_hat_l, sigma_hat_l), and top q(z_L|x). Not a
    product of marginals: each layer depends on the sampled layer above.

    Parameters
    ----------
    top : (loc, scale), each (*batch, d_L)
    conditional : callable(l, z_parent) -> (loc, scale)
        Layer l's parameters (..., d_l) given z_{l+1} (..., d_{l+1}) (0-based l).
    sizes : tuple of int
        (d_1, ..., d_L), bottom first.
    evidence : list of (loc, scale), each (*batch, d_l), optional
        Per-layer Gaussian factors that multiply the conditionals (layers below the top).

    """

    arg_constraints: ClassVar[dict] = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(
        self,
        top: Params,
        conditional: Callable[[int, torch.Tensor], Params],
        sizes: tuple[int, ...],
        evidence: list[Params] | None = None,
    ) -> None:
        self.top, self.conditional, self.sizes, self.evidence = top, conditional, sizes, evidence
        super().__init__(top[0].shape[:-1], torch.Size([sum(sizes)]), validate_args=False)

    def split(self, z: torch.Tensor) -> list[torch.Tensor]:
        """(..., Z) -> [z_1 (..., d_1), ..., z_L (..., d_L)]."""
        return list(z.split(self.sizes, dim=-1))

    def combined(self, i: int, params: Params) -> Params:
        """Layer i's parameters from the conditional's ``params``, with the evidence factor if any."""
        return params if self.evidence is None else precision_weighted(self.evidence[i], params)

    def layer_params(self, z: torch.Tensor) -> list[Params]:
        """(loc, scale) of every layer, bottom first, with each parent z_{l+1} read from ``z`` (..., Z)."""
        layers = self.split(z)
        return [self.combined(i, self.conditional(i, layers[i + 1])) for i in range(len(self.sizes) - 1)] + [self.top]

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """Sum over layers of log N(z_l; loc_l(z_{l+1}), scale_l^2): (*sample, *batch) for z (*sample, *batch, Z)."""
        parts = zip(self.split(z), self.layer_params(z))
        return sum(Normal(loc, scale, validate_args=False).log_prob(zl).sum(-1) for zl, (loc, scale) in parts)

    def rsample(self, sample_shape: torch.Size | Sequence[int] = ()) -> torch.Tensor:
        """Ancestral, reparameterised draws (*sample_shape, *batch, Z) from torch's global RNG."""
        return self._top_down(torch.Size(sample_shape), noise=True)

    @property
    def mean(self) -> torch.Tensor:
        """The top-down pass with every layer at its conditional mean, (*batch, Z).

        Exact for the top layer; for a lower layer it is E[z_l | z_{l+1} = the pass's value],
        which equals E[z_l] only where the top-down networks are affine. Deterministic, so
        reconstructions and latent figures are reproducible.
        """
        return self._top_down(torch.Size(), noise=False)

    def _top_down(self, sample_shape: torch.Size, *, noise: bool) -> torch.Tensor:
        loc, scale = self.top
        shape = sample_shape + loc.shape
        z = loc + scale * batch_noise(shape, loc.dtype, loc.device) if noise else loc.expand(shape)
        layers = [z]
        for i in reversed(range(len(self.sizes) - 1)):
            loc, scale = self.combined(i, self.conditional(i, z))  # (*sample, *batch, d_i)
            z = loc + scale * batch_noise(loc.shape, loc.dtype, loc.device) if noise else loc
            layers.append(z)
        return torch.cat(layers[::-1], dim=-1)


def _gaussian(h: torch.Tensor) -> Params:
    """Network output (..., 2d) -> (loc, scale), log-variance clamped like the VAE posterior's."""
    loc, logvar = h.chunk(2, dim=-1)
    return loc, (0.5 * logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)).exp()


def precision_weighted(a: Params, b: Params) -> Params:
    """The product of two Gaussians, renormalised: precisions add, means weight by precision."""
    prec_a, prec_b = a[1] ** -2, b[1] ** -2
    var = 1.0 / (prec_a + prec_b)
    return (a[0] * prec_a + b[0] * prec_b) * var, var.sqrt()


@register
class HierarchicalVAE(ModelBase):
    """Hierarchical VAE with L Gaussian latent layers and top-down (ladder) inference.

    Parameters
    ----------
    x_dim : int or tuple of int
        Data dimension D, or the shape of one data point (give this or ``x_shape``).
    z_dims : sequence of int, default (4, 2)
        Latent layer sizes, bottom (next to x) to top. The latent code of the contract is the
        concatenation [z_1, ..., z_L], bottom first: ``z_dim = sum(z_dims)``.
    x_shape : tuple of int, optional
        Shape of one data point, as for :class:`vaekit.VAE`.
    hidden : sequence of int, default (128, 128)
        Dense widths of every block: bottom-up blocks use them in order (their output, the
        features d_l, has width ``hidden[-1]``), top-down blocks and the decoder reversed.
    likelihood : Gaussian or Bernoulli, default ``Gaussian(variance=0.1)``
        p(x | z_1, c).
    condition : OneHot, Continuous or None
        Injected into the first bottom-up block and the decoder (the prior is unconditional).
    activation : str, default "relu"
    standardize : bool, default False
        As for :class:`vaekit.VAE`.
    seed : int or None
        Seed for the initial weights.

    Attributes
    ----------
    latent_layers : tuple of int
        ``z_dims``: how the latent code splits into layers (read by the metrics).

    """

    config_class: ClassVar[type[ModelConfig]] = HierarchicalVAEConfig
    kind: ClassVar[str] = "hierarchical"

    def __init__(
        self,
        x_dim: int | Sequence[int] | None = None,
        z_dims: Sequence[int] = (4, 2),
        *,
        x_shape: Sequence[int] | None = None,
        hidden: Sequence[int] = (128, 128),
        likelihood: Likelihood | None = None,
        condition: Condition | None = None,
        activation: str = "relu",
        standardize: bool = False,
        seed: int | None = None,
    ) -> None:
        shape = resolve_shape(x_dim, x_shape)
        arch = HierarchicalVAEConfig(
            x_dim=flat_dim(shape),
            z_dims=z_dims,
            hidden=hidden,
            activation=activation,
            likelihood=Gaussian() if likelihood is None else likelihood,
            condition=condition,
            standardize=standardize,
            x_shape=shape,
        )
        super().__init__()
        self._architecture = arch
        self.x_shape = arch.shape
        self.x_dim, self.z_dims, self.hidden = arch.x_dim, arch.z_dims, arch.hidden
        self.latent_layers = self.z_dims
        self.z_dim = sum(self.z_dims)
        self.likelihood, self.condition, self.activation = arch.likelihood, arch.condition, arch.activation
        self.standardize, self.seed = arch.standardize, seed

        width, act = self.hidden[-1], ACTIVATIONS[self.activation]
        k = self.likelihood.out_features(self.x_dim) // self.x_dim
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            # Bottom-up: block l maps d_{l-1} (x for l = 1) to features d_l; a head reads (mu_hat_l, log sigma_hat_l^2).
            inputs = [(self.x_dim, self.condition)] + [(width, None)] * (len(self.z_dims) - 1)
            self.up = nn.ModuleList(
                ConditionedMLP(n, self.hidden[:-1], width, condition=cond, activation=self.activation) for n, cond in inputs
            )
            self.up_act = act()
            self.up_heads = nn.ModuleList(nn.Linear(width, 2 * d) for d in self.z_dims)
            # Top-down: block l maps z_{l+1} to p(z_l | z_{l+1}); shared by the prior and the posterior.
            self.down = nn.ModuleList(
                ConditionedMLP(self.z_dims[i + 1], self.hidden[::-1], 2 * self.z_dims[i], activation=self.activation)
                for i in range(len(self.z_dims) - 1)
            )
            self.decoder = ConditionedMLP(
                self.z_dims[0], self.hidden[::-1], k * self.x_dim, condition=self.condition, activation=self.activation
            )
        self.likelihood_head = self.likelihood.head(self.x_dim)
        self._register_scaling()

    # ------------------------------------------------------------------ configuration

    @classmethod
    def examples(cls) -> dict[str, HierarchicalVAEConfig]:
        """Small architectures that the conformance suite trains and checks (see :meth:`vaekit.VAE.examples`)."""
        from vaekit.conditions import OneHot
        from vaekit.distributions import Bernoulli

        return {
            "two-layer": HierarchicalVAEConfig(x_dim=2, z_dims=(2, 2), hidden=(16,)),
            "two-layer-onehot-bernoulli": HierarchicalVAEConfig(
                x_dim=16, x_shape=(4, 4), z_dims=(3, 2), hidden=(16,), condition=OneHot(3), likelihood=Bernoulli()
            ),
        }

    # The human-facing interface is VAE's, borrowed function by function rather than inherited: a
    # HierarchicalVAE is not a VAE, and code that special-cases VAE (the hand-written gradients of
    # vaekit.fastpath) must not take it for one. These read only x_shape, x_dim, z_dim, condition,
    # the scaling buffers and the batch interface below.

    # ------------------------------------------------------------------ batch interface (trusted tensors)
    def bottom_up(self, x: torch.Tensor, c: torch.Tensor | None = None) -> list[Params]:
        """The deterministic pass: (mu_hat_l, sigma_hat_l), each (B, d_l), for every layer, bottom first."""
        x = self.network_input(x)
        out, h = [], x
        for i, (block, head) in enumerate(zip(self.up, self.up_heads)):
            h = self.up_act(block(h, c if i == 0 else None))  # (B, hidden[-1])
            out.append(_gaussian(head(h)))
        return out

    def top_down(self, i: int, parent: torch.Tensor) -> Params:
        """p(z_i | z_{i+1}) (0-based layer i): (loc, scale), each (..., d_i), for ``parent`` (..., d_{i+1})."""
        return _gaussian(self.down[i](parent))

    def encode_batch(self, x: torch.Tensor, c: torch.Tensor | None = None) -> TopDownGaussian:
        """q(z|x,c) over [z_1, ..., z_L] for prepared x (B, D), c (B, C): batch (B,), event (Z,)."""
        up = self.bottom_up(x, c)
        return TopDownGaussian(up[-1], self.top_down, self.z_dims, evidence=up[:-1])

    def prior(self) -> TopDownGaussian:
        """p(z) = p(z_L) prod_l p(z_l | z_{l+1}) over [z_1, ..., z_L]: batch (), event (Z,)."""
        zeros = torch.zeros(self.z_dims[-1], device=self.device, dtype=self.dtype)
        return TopDownGaussian((zeros, torch.ones_like(zeros)), self.top_down, self.z_dims)

    def decode_batch(self, z: torch.Tensor, c: torch.Tensor | None = None) -> Distribution:
        """p(x | z_1, c) in the user's units for z (B, Z) (only its first ``z_dims[0]`` values are read)."""
        h = self.decoder(z[..., : self.z_dims[0]], c)  # (B, out)
        if self.standardize:
            return self.likelihood_head(h, self.x_shift, self.x_scale)
        return self.likelihood_head(h, None, None)

    def kl_terms(self, x: torch.Tensor, c: torch.Tensor | None, qz: TopDownGaussian, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-layer KL given the draw z ~ q (B, Z): ``{"kl_layer0": (B,), ...}``, bottom layer first.

        KL_l = KL(q(z_l | z_{l+1}, x) || p(z_l | z_{l+1})) in closed form, the parent z_{l+1}
        read from ``z`` (the top layer: KL(q(z_L|x) || N(0, I))). Their sum has the expectation of
        log q(z|x) - log p(z) with less variance (the model's KL hook, see models/base.py).
        """
        p_layers = self.prior().layer_params(z)  # the top-down networks run once, for p and q alike
        q_layers = [qz.combined(i, p) for i, p in enumerate(p_layers[:-1])] + [qz.top]
        return {
            f"kl_layer{i}": kl_per_dimension(diagonal_normal(*q), diagonal_normal(*p)).sum(-1)
            for i, (q, p) in enumerate(zip(q_layers, p_layers))
        }

    # ------------------------------------------------------------------ public interface
