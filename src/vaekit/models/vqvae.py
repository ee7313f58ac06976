"""The VQ-VAE (van den Oord et al., 2017): a codebook, the straight-through gradient, a code prior.

The encoder maps x to z_e, G codes of width code_dim per point; each is replaced by its nearest
codebook vector (squared Euclidean distance, brute force over the K codes), and the decoder reads
the quantised z_q. With the MLP trunk G = 1 (one code per point, dense layers on both sides).
With a convolutional trunk (Conv1d, Conv2d) the encoder has no dense layers: each position of its
last feature map is one code (G = L' or H' * W', raster order), and the decoder (the mirror, or
any conv trunk whose grid is the same) starts from that grid of code vectors; an MLP decoder
reads the flattened grid. The code prior fitted after training is autoregressive over the grid
(:mod:`vaekit.models.code_prior`). How this meets the continuous-latent contract is written down
in :mod:`vaekit.models.base`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.distributions import Distribution, constraints

from vaekit import distributed
from vaekit.conditions import Condition, condition_from_config
from vaekit.distributions import Bernoulli, Gaussian, Likelihood, likelihood_from_config
from vaekit.errors import InputError, describe
from vaekit.io import save
from vaekit.models.base import ModelConfig, flat_dim, register
from vaekit.models.code_prior import CodePriorNet, fit_code_prior
from vaekit.models.common import ModelBase, check_data_fields, in_chunks, layer_widths, resolve_shape
from vaekit.nn import ACTIVATIONS
from vaekit.trunks import MLP, trunk_from_config
from vaekit.validate import positive_float, positive_int

logger = logging.getLogger(__name__)

# Elements of the (rows, K, code_dim) difference block of the nearest-code search.
_SEARCH_ELEMENTS = 2**22


@dataclasses.dataclass(frozen=True)
class VQVAEConfig(ModelConfig):
    """Architecture of a :class:`VQVAE` (what ``model.json`` stores); checked when built."""

    x_dim: int
    codebook_size: int = dataclasses.field(default=128, metadata={"help": "VQ-VAE: K, the number of codebook vectors"})
    code_dim: int = dataclasses.field(default=16, metadata={"help": "VQ-VAE: width of each codebook vector"})
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
    x_shape: tuple[int, ...] | None = dataclasses.field(
        default=None, metadata={"help": "shape of one data point, e.g. 64,2 for curves (default: flat columns)"}
    )
    encoder: Any = dataclasses.field(default_factory=MLP, metadata={"help": "encoder trunk", "role": "trunk"})
    decoder: Any = dataclasses.field(
        default=None, metadata={"help": "decoder trunk ('' or unset: the encoder's mirror)", "role": "trunk"}
    )
    prior_hidden: tuple[int, ...] = dataclasses.field(
        default=(256,), metadata={"help": "VQ-VAE: hidden widths of the autoregressive code prior (a masked MLP)"}
    )

    SPECS: ClassVar[dict[str, Any]] = {
        "likelihood": likelihood_from_config,
        "condition": condition_from_config,
        "encoder": trunk_from_config,
        "decoder": trunk_from_config,
    }
    FROM_DATA: ClassVar[tuple[str, ...]] = ("x_dim", "condition")

    def __post_init__(self) -> None:
        check_data_fields(self)
        positive_int(self.codebook_size, "codebook_size")
        positive_int(self.code_dim, "code_dim")
        object.__setattr__(self, "prior_hidden", layer_widths(self.prior_hidden, "prior_hidden"))
        grid = self.grid_shape
        decoder = self.encoder if self.decoder is None else self.decoder
        if grid is not None and hasattr(decoder, "grid_shape") and decoder.grid_shape(self.shape) != grid:
            raise InputError(
                f"decoder must read the encoder's grid of codes {list(grid)} (a conv trunk with as many blocks as the "
                f"encoder's, or an MLP). Got decoder={decoder}, whose grid is {list(decoder.grid_shape(self.shape))}, instead."
            )

    @property
    def grid_shape(self) -> tuple[int, ...] | None:
        """Spatial shape of the grid of codes of a conv encoder, (L',) or (H', W'); None for one code (MLP)."""
        return self.encoder.grid_shape(self.shape) if hasattr(self.encoder, "grid_shape") else None

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one data point: ``x_shape``, or (x_dim,)."""
        return (self.x_dim,) if self.x_shape is None else self.x_shape


class CodeAssignment(Distribution):
    """q(z|x) of a VQ-VAE: a point mass at the quantised code z_q; batch (B,), event (Z,), Z = G * code_dim.

    ``rsample`` is the straight-through estimate: its value is z_q exactly, its gradient flows
    into the encoder output z_e as if z_q were z_e (z_q + (z_e - sg[z_e])). ``log_prob`` is the
    log-mass under counting measure, 0 at z_q and -inf elsewhere: not a density.

    Attributes
    ----------
    z_e : (B, G, code_dim) encoder outputs.
    z_q : (B, G, code_dim) their nearest codebook vectors (differentiable w.r.t. the codebook).
    codes : (B, G) int64 indices of those vectors.

    """

    arg_constraints: ClassVar[dict] = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, z_e: torch.Tensor, z_q: torch.Tensor, codes: torch.Tensor) -> None:
        self.z_e, self.z_q, self.codes = z_e, z_q, codes
        b = z_e.shape[0]
        super().__init__(torch.Size([b]), torch.Size([z_e.shape[1] * z_e.shape[2]]), validate_args=False)

    @property
    def mean(self) -> torch.Tensor:
        """z_q as (B, Z)."""
        return self.z_q.reshape(self.z_q.shape[0], -1)

    def rsample(self, sample_shape: torch.Size | tuple = ()) -> torch.Tensor:
        """(*sample_shape, B, Z): every draw is z_q, with the straight-through gradient into z_e."""
        st = self.z_q.detach() + (self.z_e - self.z_e.detach())  # value z_q exactly
        st = st.reshape(st.shape[0], -1)
        return st.expand(torch.Size(sample_shape) + st.shape)

    def sample(self, sample_shape: torch.Size | tuple = ()) -> torch.Tensor:
        """(*sample_shape, B, Z) copies of z_q, without gradients."""
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """(*, B): 0 where ``value`` is z_q, -inf elsewhere (log-mass, not a density)."""
        hit = (value == self.mean).all(-1)
        return torch.where(hit, 0.0, -math.inf).to(self.z_q.dtype)


class CodePrior(Distribution):
    """The fitted code prior p(z | c): autoregressive over the G grid positions (a categorical for G = 1).

    Event (Z,) with Z = G * code_dim; ``log_prob`` is the log-mass of the grid of codes whose
    vectors ``value`` holds, -inf where a position is no codebook vector (a vector shared by
    several codes is read as the first of them). ``sample`` draws code grids ancestrally and
    returns their vectors. ``c`` (prepared, one row or one per point) is required by a
    conditional model wherever the network is evaluated.
    """

    arg_constraints: ClassVar[dict] = {}
    support = constraints.real_vector
    has_rsample = False

    def __init__(self, codebook: torch.Tensor, net: CodePriorNet, c: torch.Tensor | None = None) -> None:
        self.codebook, self.net, self.c = codebook, net, c  # (K, code_dim)
        super().__init__(torch.Size(), torch.Size([net.grid * codebook.shape[1]]), validate_args=False)

    def _condition(self, n: int) -> torch.Tensor | None:
        if self.net.embed is None:
            return None
        if self.c is None:
            raise InputError(
                "condition is required: the code prior of this model is conditional (model.prior(c) with prepared "
                "condition rows). Got None instead."
            )
        return self.c.expand(n, -1) if self.c.shape[0] == 1 else self.c

    def sample(self, sample_shape: torch.Size | tuple = (), generator: torch.Generator | None = None) -> torch.Tensor:
        """(*sample_shape, Z) codebook vectors of code grids drawn from the prior."""
        shape = torch.Size(sample_shape)
        n = math.prod(shape)
        codes = self.net.sample(n, self._condition(n), generator)  # (n, G)
        return self.codebook[codes].reshape(*shape, -1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """(*,): log p(codes | c) of the codes whose vectors ``value`` (*, Z) holds; -inf off the codebook."""
        lead = value.shape[:-1]
        parts = value.reshape(-1, self.net.grid, 1, self.codebook.shape[1])  # (N, G, 1, code_dim)
        match = (parts == self.codebook).all(-1)  # (N, G, K)
        on = match.any(-1).all(-1)  # (N,)
        out = torch.full(on.shape, -math.inf, dtype=self.codebook.dtype, device=value.device)
        if bool(on.any()):
            codes = match.to(torch.uint8).argmax(-1)  # (N, G) the first matching code
            out = torch.where(on, self.net.log_prob(codes, self._condition(codes.shape[0])), out)
        return out.reshape(lead)


@register
class VQVAE(ModelBase):
    """Vector-quantised autoencoder with a codebook of K vectors and a code prior fitted after training.

    Parameters
    ----------
    x_dim : int or tuple of int
        Data dimension D, or the shape of one data point (give this or ``x_shape``).
    codebook_size : int, default 128
        K, the number of codebook vectors.
    code_dim : int, default 16
        Width of each codebook vector; ``z_dim`` is G * code_dim.
    encoder : MLP, Conv1d or Conv2d, default MLP()
        The MLP gives one code per point (G = 1). A conv trunk gives a grid of codes, one per
        position of its last feature map (``grid_shape``; G = its product, raster order), with no
        dense layers, so ``hidden`` is not used by it (an MLP decoder still reads ``hidden``).
    decoder : trunk or None, default None
        None: the encoder's mirror. A conv decoder under a conv encoder must have the same grid.
    prior_hidden : tuple of int, default (256,)
        Hidden widths of the autoregressive code prior (:class:`vaekit.models.code_prior.CodePriorNet`).
    x_shape, hidden, likelihood, condition, activation, standardize, seed :
        As for :class:`vaekit.VAE`.

    Notes
    -----
    Train with ``vaekit.fit(model, x)`` (the default objective is ``VQ()``; ``VQ(ema=0.99)``
    updates the codebook by moving averages), then ``model.fit_prior(x)`` before ``sample``.
    A conditional model's code prior is conditional too (every layer reads the condition).
    Not applicable (left out of metrics, History, figures and report): KL, ELBO, IWAE,
    quadrature, active units (:attr:`metrics_not_applicable`). The codebook is initialised
    from N(0, 1); codes that stay unused are restarted on encoder outputs during training.

    """

    config_class: ClassVar[type[ModelConfig]] = VQVAEConfig
    kind: ClassVar[str] = "vqvae"
    default_objective: ClassVar[str] = "vq"  # vaekit.VQ(): the kind, so that models import no objective
    # Buffers fitted from data (io.load accepts values other than a fresh model's).
    FITTED_BUFFERS: ClassVar[frozenset[str]] = frozenset({"ema_count", "ema_sum", "prior_fitted"})
    # Defaults of fit_prior (the autoregressive fit; G = 1 without a condition is closed form).
    PRIOR_EPOCHS: ClassVar[int] = 50
    # Dead codes restart from the last this-many encoder outputs of the epoch (bounded memory).
    RESTART_POOL: ClassVar[int] = 4096
    _ALWAYS_NOT_APPLICABLE: ClassVar[dict[str, str]] = {
        "kl": "no KL: the VQ-VAE's encoder is deterministic (a point mass on a codebook vector)",
        "neg_elbo": "no ELBO: the VQ-VAE has no KL term",
        "kl_per_dim": "no KL: the VQ-VAE's encoder is deterministic",
        "iwae_nll": "no importance weights: q and p are point masses, not densities",
        "quadrature_nll": "p(z) is discrete: there is no integral over a latent plane",
        "active_units": "codes are discrete: see codes_used and perplexity",
    }

    def __init__(
        self,
        x_dim: int | Sequence[int] | None = None,
        codebook_size: int = 128,
        code_dim: int = 16,
        *,
        x_shape: Sequence[int] | None = None,
        hidden: Sequence[int] = (128, 128),
        likelihood: Likelihood | None = None,
        condition: Condition | None = None,
        activation: str = "relu",
        standardize: bool = False,
        encoder: Any = None,
        decoder: Any = None,
        prior_hidden: Sequence[int] = (256,),
        seed: int | None = None,
    ) -> None:
        shape = resolve_shape(x_dim, x_shape)
        arch = VQVAEConfig(
            x_dim=flat_dim(shape),
            codebook_size=codebook_size,
            code_dim=code_dim,
            hidden=hidden,
            activation=activation,
            likelihood=Gaussian() if likelihood is None else likelihood,
            condition=condition,
            standardize=standardize,
            x_shape=shape,
            encoder=MLP() if encoder is None else encoder,
            decoder=decoder,
            prior_hidden=prior_hidden,
        )
        super().__init__()
        self._architecture = arch
        self.x_shape = arch.shape
        self.x_dim, self.hidden, self.activation = arch.x_dim, arch.hidden, arch.activation
        self.codebook_size, self.code_dim = arch.codebook_size, arch.code_dim
        self.likelihood, self.condition, self.standardize = arch.likelihood, arch.condition, arch.standardize
        self.seed = seed
        # G codes per point: one (MLP trunk) or one per position of a conv trunk's last feature map.
        self.grid_shape = arch.grid_shape
        self.grid = 1 if self.grid_shape is None else math.prod(self.grid_shape)
        self.z_dim = self.grid * self.code_dim
        decoder_trunk = arch.encoder if arch.decoder is None else arch.decoder
        k = self.likelihood.out_features(self.x_dim) // self.x_dim
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            if self.grid_shape is None:
                self.encoder = arch.encoder.encoder(self.x_shape, self.z_dim, self.condition, self.hidden, self.activation)
            else:
                self.encoder = arch.encoder.grid_encoder(self.x_shape, self.code_dim, self.condition, self.activation)
            if self.grid_shape is not None and hasattr(decoder_trunk, "grid_decoder"):
                self.decoder = decoder_trunk.grid_decoder(self.code_dim, self.x_shape, k, self.condition, self.activation)
            else:
                self.decoder = decoder_trunk.decoder(self.z_dim, self.x_shape, k, self.condition, self.hidden, self.activation)
            self.codebook = nn.Parameter(torch.randn(self.codebook_size, self.code_dim))  # (K, code_dim)
        with torch.random.fork_rng(devices=[]):  # fit_prior re-initialises it; building it draws nothing from torch's RNG
            self.prior_net = CodePriorNet(self.grid, self.codebook_size, arch.prior_hidden, self.condition, self.activation)
        for p in self.prior_net.parameters():  # unfitted: zeros, so that equal seeds give equal state dicts
            nn.init.zeros_(p)
        self.likelihood_head = self.likelihood.head(self.x_dim)
        self._register_scaling()
        # EMA state (VQ(ema=...)): each code starts as one point at its initial position.
        self.register_buffer("ema_count", torch.ones(self.codebook_size))
        self.register_buffer("ema_sum", self.codebook.detach().clone())
        # 1.0 once fit_prior has set prior_net.
        self.register_buffer("prior_fitted", torch.zeros(()))
        self.reset_usage()

    # ------------------------------------------------------------------ configuration
    @classmethod
    def examples(cls) -> dict[str, VQVAEConfig]:
        """Small architectures for the conformance suite (see :meth:`vaekit.VAE.examples`)."""
        from vaekit.conditions import OneHot
        from vaekit.trunks import Conv1d, Conv2d

        return {
            "mlp-gaussian": VQVAEConfig(x_dim=2, codebook_size=8, code_dim=2, hidden=(16,), prior_hidden=(8,)),
            "mlp-bernoulli-onehot": VQVAEConfig(
                x_dim=16, x_shape=(4, 4), codebook_size=8, code_dim=3, hidden=(16,), likelihood=Bernoulli(), condition=OneHot(3)
            ),
            "conv2d-grid-bernoulli-onehot": VQVAEConfig(
                x_dim=64,
                x_shape=(1, 8, 8),
                codebook_size=8,
                code_dim=3,
                encoder=Conv2d(channels=(4, 8)),
                likelihood=Bernoulli(),
                condition=OneHot(3),
                prior_hidden=(16,),
            ),
            "conv1d-grid-mlp-decoder": VQVAEConfig(
                x_dim=16,
                x_shape=(8, 2),
                codebook_size=6,
                code_dim=2,
                encoder=Conv1d(channels=(4,)),
                hidden=(16,),
                prior_hidden=(8,),
            ),
        }

    @property
    def metrics_not_applicable(self) -> dict[str, str]:
        """Metric name -> why it does not exist for this model (see :func:`vaekit.models.base.not_applicable`)."""
        out = dict(self._ALWAYS_NOT_APPLICABLE)
        if not self.prior_is_fitted:
            out["diversity"] = "no samples before the code prior is fitted (model.fit_prior(x) after training)"
        return out

    @property
    def prior_is_fitted(self) -> bool:
        """Whether :meth:`fit_prior` has run (the state is saved with the model)."""
        return bool(self.prior_fitted > 0)

    # Data handling is the VAE's, unchanged.

    # ------------------------------------------------------------------ quantisation
    @torch.no_grad()
    def nearest(self, z_e: torch.Tensor) -> torch.Tensor:
        """Index of the nearest codebook vector of each row of z_e (N, code_dim): int64 (N,).

        Brute force over the K codes with the squared differences themselves (no |a|^2 - 2ab + |b|^2
        expansion, whose rounding can pick a farther code), in blocks of rows to bound memory.
        """
        rows = max(1, _SEARCH_ELEMENTS // (self.codebook_size * self.code_dim))
        out = [
            (z_e[i : i + rows, None, :] - self.codebook).pow(2).sum(-1).argmin(-1)  # (rows, K) -> (rows,)
            for i in range(0, z_e.shape[0], rows)
        ]
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.long, device=z_e.device)

    def encode_batch(self, x: torch.Tensor, c: torch.Tensor | None = None) -> CodeAssignment:
        """q(z|x, c) for prepared tensors x (B, D), c (B, C): the point mass at z_q; no checks.

        In a training pass (``self.training`` and gradients enabled) the assignments are counted
        for the epoch's perplexity and dead-code restart.
        """
        x = self.network_input(x)
        b = x.shape[0]
        z_e = in_chunks(self.encoder, x, c).view(b, self.grid, self.code_dim)  # (B, G, code_dim)
        codes = self.nearest(z_e.detach().reshape(-1, self.code_dim)).view(b, self.grid)  # (B, G)
        if self.training and torch.is_grad_enabled():
            self._count(codes, z_e.detach())
        return CodeAssignment(z_e, self.codebook[codes], codes)

    def prior(self, c: torch.Tensor | None = None) -> CodePrior:
        """p(z | c): the fitted autoregressive code prior, for prepared conditions c (B, C) or None.

        Raises before :meth:`fit_prior`.
        """
        if not self.prior_is_fitted:
            raise InputError(
                "the code prior must be fitted before sampling or asking for p(z): call model.fit_prior(x) after "
                "training. Got an unfitted prior instead."
            )
        return CodePrior(self.codebook, self.prior_net, c)

    # ------------------------------------------------------------------ training state
    def reset_usage(self) -> None:
        """Start a new epoch's count of code assignments (``VQ.epoch_begin``)."""
        self._usage = torch.zeros(self.codebook_size, dtype=torch.float64, device=self.codebook.device)
        self._pool: list[torch.Tensor] = []
        self._pooled = 0

    def _count(self, codes: torch.Tensor, z_e: torch.Tensor) -> None:
        self._usage = self._usage.to(codes.device) + torch.bincount(codes.flatten(), minlength=self.codebook_size)
        self._pool.append(z_e.reshape(-1, self.code_dim).to(self.codebook.dtype))  # float32 also under bf16 autocast
        self._pooled += self._pool[-1].shape[0]
        while self._pooled - self._pool[0].shape[0] >= self.RESTART_POOL:
            self._pooled -= self._pool.pop(0).shape[0]

    def epoch_usage(self) -> torch.Tensor:
        """Assignments per code (K,) since :meth:`reset_usage`, summed over all ranks under torch.distributed."""
        return distributed.all_reduce_sum(self._usage.clone())

    def code_usage(self) -> dict[str, float]:
        """``perplexity`` and ``codes_used`` of the assignments counted since :meth:`reset_usage` (all ranks)."""
        return usage_numbers(self.epoch_usage())

    @torch.no_grad()
    def restart_dead_codes(self) -> int:
        """Move every code unused since :meth:`reset_usage` onto a pooled encoder output; return how many.

        The outputs are drawn uniformly, with replacement, from the last :attr:`RESTART_POOL`
        encoder outputs of the epoch, with torch's global RNG. A restarted code's EMA state
        becomes one point at its new position. Nothing happens before any assignment was counted.
        Under torch.distributed a code is dead when no rank used it, and rank 0's restart (from
        the encoder outputs of its share of the data) is copied to every rank.
        """
        dead = (self.epoch_usage() == 0).nonzero().flatten()
        if dead.numel() == 0 or (not self._pool and not distributed.current().active):
            return 0
        if self._pool:
            pool = torch.cat(self._pool)
            chosen = pool[torch.randint(pool.shape[0], (dead.numel(),), device=pool.device)]
            dead = dead.to(self.codebook.device)
            self.codebook[dead] = chosen
            self.ema_sum[dead] = chosen
            self.ema_count[dead] = 1.0
        distributed.broadcast_tensors_from_writer([self.codebook, self.ema_sum, self.ema_count])
        return int(dead.numel())

    @torch.no_grad()
    def ema_update(self, z_e: torch.Tensor, codes: torch.Tensor, decay: float, *, eps: float = 1e-5) -> None:
        """One moving-average step of the codebook from a batch's z_e (B, G, code_dim) and codes (B, G).

        N_k <- decay N_k + (1 - decay) n_k and S_k <- decay S_k + (1 - decay) sum of the z_e assigned
        to k; then e_k = S_k / N~_k with Laplace smoothing N~_k = (N_k + eps) / (N + K eps) * N,
        N = sum_k N_k, so that a code with no recent points does not divide by zero.
        """
        # In the codebook's dtype: under bf16 autocast z_e is bfloat16, which would also round counts above 256.
        flat, idx = z_e.reshape(-1, self.code_dim).to(self.ema_sum.dtype), codes.flatten()
        counts = torch.bincount(idx, minlength=self.codebook_size).to(flat.dtype)  # (K,)
        sums = torch.zeros_like(self.ema_sum).index_add_(0, idx, flat)  # (K, code_dim)
        # Under torch.distributed each rank holds a share of the global batch: the moving average
        # takes the whole batch's statistics, as one process would.
        both = distributed.all_reduce_sum(torch.cat([counts[:, None], sums], dim=1))  # (K, 1 + code_dim)
        counts, sums = both[:, 0], both[:, 1:]
        self.ema_count.mul_(decay).add_(counts, alpha=1 - decay)
        self.ema_sum.mul_(decay).add_(sums, alpha=1 - decay)
        total = self.ema_count.sum()
        smoothed = (self.ema_count + eps) / (total + self.codebook_size * eps) * total
        self.codebook.copy_(self.ema_sum / smoothed[:, None])

    # ------------------------------------------------------------------ the code prior
    def fit_prior(
        self,
        x: Any,
        condition: Any = None,
        *,
        epochs: int | None = None,
        seed: int | None = None,
        smoothing: float = 0.5,
        batch_size: int = 256,
        lr: float = 1e-3,
    ) -> VQVAE:
        """Fit p(codes | c) to the codes of ``x`` (N, D) by maximum likelihood; then :meth:`sample` works.

        The prior is autoregressive over the G grid positions in raster order (a masked MLP over
        the one-hot codes, :class:`vaekit.models.code_prior.CodePriorNet`), conditioned on the
        model's condition if it has one. It starts as the independent categorical of the smoothed
        code frequencies of each position, (n_gk + smoothing) / (N + K smoothing), which for one
        code per point (G = 1) without a condition is the answer in closed form; otherwise Adam
        trains it for ``epochs`` epochs (default :attr:`PRIOR_EPOCHS`) of ``batch_size`` points.
        ``seed`` makes the fit repeatable (torch's global RNG is left as it was). The fitted
        NLL, nats per point, is logged, next to the independent categorical's; a warning says so
        if the autoregressive fit ends worse than that starting point. Saved with the model.
        Returns the model.
        """
        smoothing = positive_float(smoothing, "smoothing")
        epochs = self.PRIOR_EPOCHS if epochs is None else positive_int(epochs, "epochs")
        batch_size = positive_int(batch_size, "batch_size")
        lr = positive_float(lr, "lr")
        xt = self.prepare_x(x)
        c = self.prepare_condition(condition, xt.shape[0])
        was = self.training
        self.eval()
        try:
            with torch.no_grad():
                codes = self.encode_batch(xt, c).codes  # (N, G)
            with torch.random.fork_rng(devices=[]):
                if seed is not None:
                    torch.manual_seed(seed)
                fit = fit_code_prior(self.prior_net, codes, c, epochs=epochs, batch_size=batch_size, lr=lr, smoothing=smoothing)
        finally:
            self.train(was)
        self.prior_fitted.fill_(1.0)
        used = int(torch.unique(codes).numel())
        logger.info(
            "fitted the code prior on %d points x %d positions (%d of %d codes used): NLL %.4f nats per point "
            "(independent categorical per position: %.4f)",
            codes.shape[0], self.grid, used, self.codebook_size, fit["nll"], fit["independent_nll"],
        )  # fmt: skip
        if fit["nll"] > fit["independent_nll"] + 1e-6:
            logger.warning(
                "the autoregressive code prior fits the training codes worse (%.4f nats per point) than the independent "
                "categorical it started from (%.4f): try more epochs or a smaller lr",
                fit["nll"], fit["independent_nll"],
            )  # fmt: skip
        return self

    @torch.no_grad()
    def prior_log_prob(self, codes: Any, condition: Any = None) -> np.ndarray:
        """The log-mass log p(codes | c) under the fitted code prior, nats per point: codes (N, G) int -> numpy (N,)."""
        prior = self.prior()
        ct = torch.as_tensor(np.asarray(codes), device=self.device)
        if ct.ndim != 2 or ct.shape[1] != self.grid or ct.dtype.is_floating_point or ct.dtype == torch.bool:
            raise InputError(f"codes must be integer codes of shape (N, {self.grid}). Got {describe(codes)} instead.")
        if ct.numel() and (int(ct.min()) < 0 or int(ct.max()) >= self.codebook_size):
            raise InputError(
                f"codes must lie in [0, {self.codebook_size - 1}] (the codebook). Got values in "
                f"[{int(ct.min())}, {int(ct.max())}] instead."
            )
        c = self.prepare_condition(condition, ct.shape[0])
        return prior.net.log_prob(ct.long(), c).cpu().numpy()

    # ------------------------------------------------------------------ public interface
    @torch.no_grad()
    def codes(self, x: Any, condition: Any = None) -> np.ndarray:
        """The code index of every point: int64 numpy (N, G)."""
        xt = self.prepare_x(x)
        c = self.prepare_condition(condition, xt.shape[0])
        return self.encode_batch(xt, c).codes.cpu().numpy()

    def prior_draws(self, n: int, generator: torch.Generator, c: torch.Tensor | None = None) -> torch.Tensor:
        """Codebook vectors of code grids drawn from the fitted prior given prepared c: (n, Z) (raises before fitting)."""
        return self.prior(c).sample((n,), generator=generator)

    @torch.no_grad()
    def reconstruct(self, x: Any, condition: Any = None) -> np.ndarray:
        """Decode the quantised code of each point: numpy (N, *x_shape) of decoder means."""
        xt = self.prepare_x(x)
        c = self.prepare_condition(condition, xt.shape[0])
        return self.shaped(self.decode_batch(self.encode_batch(xt, c).mean, c).mean.cpu().numpy())

    @torch.no_grad()
    def evaluation_metrics(self, x: torch.Tensor, c: torch.Tensor | None) -> dict[str, Any]:
        """Numbers over all points of prepared x (N, D): the code usage and, once fitted, the prior's NLL.

        ``perplexity`` and ``codes_used`` count the codes at every grid position of every point;
        ``codebook_size``, ``code_grid`` (G); ``prior_nll_codes``: -log p(codes | c) under the
        fitted code prior, nats per point (absent before :meth:`fit_prior`).
        """
        was = self.training
        self.eval()
        try:
            codes = self.encode_batch(x, c).codes  # (N, G)
        finally:
            self.train(was)
        counts = torch.bincount(codes.flatten(), minlength=self.codebook_size)
        out = {**usage_numbers(counts), "codebook_size": self.codebook_size, "code_grid": self.grid}
        if self.prior_is_fitted:
            out["prior_nll_codes"] = -float(self.prior_net.log_prob(codes, c).double().mean())
        return out

    def save(self, path: str | Path) -> Path:
        """Write ``model.safetensors`` and ``model.json`` (the code prior included) into folder ``path``."""
        return save(self, path)


def usage_numbers(counts: torch.Tensor) -> dict[str, float]:
    """``perplexity`` exp(-sum p_k log p_k) of code counts (K,) and ``codes_used`` (counts > 0); NaN for no counts."""
    total = float(counts.sum())
    if total == 0:
        return {"perplexity": math.nan, "codes_used": 0.0}
    p = counts.double() / total
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return {"perplexity": float(entropy.exp()), "codes_used": float((counts > 0).sum())}
