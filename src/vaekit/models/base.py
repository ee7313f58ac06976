"""The model contract: what every layer of vaekit may rely on, and nothing else.

A vaekit model is a ``torch.nn.Module`` that describes a latent-variable model with three
distributions and the code around them. The trainer, the objectives, the metrics, the figures,
the report, the model files, the sweep and the command line use only what
:class:`LatentVariableModel` lists, so a new model (a flow posterior, a learned prior, a
hierarchy, discrete codes) is one module plus one line in :data:`MODELS`, and the conformance
suite (``tests/test_conformance.py``) then checks it everywhere.

Shapes: ``N`` points (``B`` in a batch), data ``x_shape`` (``(D,)`` vectors, ``(P, 2)`` or
``(C, L)`` curves, ``(C, H, W)`` images), ``Z`` latent dimensions, ``C`` prepared condition width.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch
from torch.distributions import Distribution

from vaekit.configs import check_type
from vaekit.errors import InputError, InputTypeError
from vaekit.io import MODEL_CLASSES, register_model


@runtime_checkable
class LatentVariableModel(Protocol):
    """The contract every vaekit model honours.

    Attributes
    ----------
    x_shape : tuple of int
        Shape of one data point; arrays are passed as (N, *x_shape) (or (N, D) flat, D the product).
    z_dim : int
        Z, the width of the latent code the prior and posterior are defined over.
    condition : spec or None
        ``vaekit.OneHot`` / ``vaekit.Continuous`` for a conditional model.
    config_class : type
        The model's :class:`ModelConfig` dataclass (class attribute).
    architecture : ModelConfig
        Everything needed to rebuild the untrained model (a frozen dataclass);
        ``type(model).from_architecture(model.architecture)`` does so, and
        ``type(model).from_config(model.config)`` from the JSON form.
    config : dict
        ``architecture.to_dict()``: the JSON form stored in ``model.json`` and checkpoints.

    Methods
    -------
    prepare_x(x) -> Tensor (N, *x_shape)
        Validate user data (numpy or torch) and move it to the model's device and dtype.
    prepare_condition(c, n) -> Tensor (N, C) or None
        Validate a condition for ``n`` rows (a single value is broadcast).
    set_scaling(x)
        Learn data statistics before training (a no-op for models that do not standardise).
    encode_batch(x, c) -> Distribution
        q(z|x, c) for prepared tensors: batch shape (B,), event shape (Z,). Needs ``rsample``
        (reparameterised) and ``log_prob``; nothing else is assumed (no ``.base_dist``, no
        ``.mean``: a flow posterior has neither).
    prior() -> Distribution
        p(z), event shape (Z,): may be learned (a module of the model) or, for hierarchical
        models, depend on a parent latent. Needs ``log_prob`` and ``sample``.
    decode_batch(z, c) -> Distribution
        p(x|z, c) in the user's units, event shape x_shape. Needs ``log_prob`` and ``mean``.
    encode(x, condition) / decode(z, condition) / sample(n, condition, seed=, noise=) /
    reconstruct(x, condition)
        The same with input checking and numpy outputs for humans.
    from_architecture(arch) / from_config(dict) / examples()
        Class methods: build from a config dataclass or its JSON form; ``examples()`` names small
        architectures covering every option, which the conformance suite checks.

    Optional hooks (a model without them loses nothing the objectives need):

    kl_terms(x, c, qz, z) -> dict of name -> Tensor (B,)
        Named parts of KL(q(z|x, c) || p(z)) given the draw z ~ q (B, Z), e.g. one per latent
        layer of a hierarchy (``kl_layer0``, ...), each as cheap and low-variance as the model
        can make it; their sum must equal the KL in expectation. The objectives then use that sum
        as the KL and log every part (History columns).
    latent_layers : tuple of int
        How the latent code splits into consecutive layers (sizes summing to Z); the metrics
        then report KL and active units per layer.

    Loss terms are the objectives' business (:mod:`vaekit.objectives`): they return a
    ``LossOutput`` whose ``terms`` dict carries any per-sample quantity a model produces
    (per-layer KL, codebook and commitment terms) to History and reports.

    Optional members (read with ``getattr``, so a model without them is a continuous-latent VAE):

    default_objective : str (class attribute)
        The kind of objective (``"vq"``) :func:`vaekit.fit`, the sweep and ``vaekit train`` train
        with when none is given, built with its defaults; ``"elbo"`` when absent
        (:func:`vaekit.objectives.default_objective`).
    metrics_not_applicable : dict name -> reason
        Metrics that do not exist for this model (see :func:`not_applicable` for the names).
        They are left out of :func:`vaekit.metrics.evaluate` (whose ``notes`` give the reason),
        of History, the figures and the report, and the conformance suite skips their checks;
        never reported as 0. May depend on the model's state (a prior fitted after training).
    fit_prior(x, condition)
        A prior fitted after training (the VQ-VAE's code prior); ``vaekit train`` calls it on the
        training data before evaluating, and until it has run ``sample`` and ``prior`` raise.
    evaluation_metrics(x, c) -> dict
        Model-specific numbers over prepared test tensors, added to ``evaluate()``.

    Discrete codes (VQ-VAE) map onto the contract as follows: ``z_dim`` is G * code_dim (G codes
    per point, one codebook vector of width code_dim each); ``encode_batch`` returns a point mass
    at the quantised code z_q whose ``rsample`` is the straight-through estimate (value z_q,
    gradient into the encoder output) and whose ``log_prob`` is the log-mass under counting
    measure (0 at z_q, -inf elsewhere: not a density); ``prior()`` is the fitted code prior
    (autoregressive over the G codes), a mixture of point masses with the same kind of ``log_prob``. No KL
    between the two is a density ratio, so KL, ELBO and IWAE are declared not applicable.

    """

    config_class: ClassVar[type[ModelConfig]]
    x_shape: tuple[int, ...]
    z_dim: int
    condition: Any

    @property
    def architecture(self) -> ModelConfig: ...
    @property
    def config(self) -> dict[str, Any]: ...
    def prepare_x(self, x: Any, name: str = "x") -> torch.Tensor: ...
    def prepare_condition(self, c: Any, n: int, name: str = "condition") -> torch.Tensor | None: ...
    def set_scaling(self, x: torch.Tensor) -> None: ...
    def encode_batch(self, x: torch.Tensor, c: torch.Tensor | None = None) -> Distribution: ...
    def prior(self) -> Distribution: ...
    def decode_batch(self, z: torch.Tensor, c: torch.Tensor | None = None) -> Distribution: ...
    def sample(self, n: int, condition: Any = None, *, seed: int | None = None, noise: bool = False) -> np.ndarray: ...
    @classmethod
    def from_architecture(cls, arch: Any, *, seed: int | None = None) -> LatentVariableModel: ...
    @classmethod
    def examples(cls) -> dict[str, Any]: ...


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Base of the per-architecture config dataclasses (nanoGPT's ``GPTConfig``).

    Fields are plain values or spec objects (likelihood, condition, prior) that have
    ``to_config()``; :attr:`SPECS` maps such a field to its ``from_config`` function. io, runs,
    the CLI and the sweep read these fields instead of keeping their own lists.
    """

    SPECS: ClassVar[dict[str, Any]] = {}
    # Fields added after files of this architecture were first written: a file may lack them,
    # and their defaults reproduce what such a file meant. Every other field is required.
    ADDED: ClassVar[frozenset[str]] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (tuples become lists, specs their ``to_config()``)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in self.SPECS:
                value = None if value is None else value.to_config()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def check_json(cls, config: Any, *, name: str = "config") -> None:
        """Check a JSON form's keys and value types; spec contents are checked by :meth:`from_dict`.

        Only the fields in :attr:`ADDED` may be missing (files written before they existed).
        """
        types = cls.field_types()
        if not isinstance(config, dict):
            raise InputTypeError(f"{name} must be an object with the keys {sorted(types)}. Got {config!r} instead.")
        required = set(types) - cls.ADDED
        unknown, missing = sorted(set(config) - set(types)), sorted(required - set(config))
        if unknown or missing:
            raise InputError(f"{name} has unknown keys {unknown} / missing keys {missing}.")
        for key, value in config.items():
            check_type(value, types[key], f"{name}.{key}")

    @classmethod
    def from_dict(cls, config: Any, *, name: str = "config") -> ModelConfig:
        """Check a JSON form (:meth:`check_json`) and build the config, specs included."""
        cls.check_json(config, name=name)
        kwargs = {}
        for key, value in config.items():
            if key in cls.SPECS:
                kwargs[key] = cls.SPECS[key](value)
            else:
                kwargs[key] = tuple(value) if isinstance(value, list) else value
        return cls(**kwargs)

    @classmethod
    def field_types(cls) -> dict[str, Any]:
        """Field name -> the type its JSON value must have (spec fields: dict or None)."""
        hints = typing.get_type_hints(cls)
        return {f.name: (dict | None) if f.name in cls.SPECS else hints[f.name] for f in dataclasses.fields(cls)}


def flat_dim(x_shape: tuple[int, ...]) -> int:
    """D = the number of values in one data point of shape ``x_shape``."""
    return math.prod(x_shape)


# Model class name (the "class" field of model.json) -> class: the table io.load builds from (it
# lives in io, which imports no model, so that imports run one way). A new model adds itself with
# the @register decorator and one import line in models/__init__.py.
MODELS = MODEL_CLASSES
register = register_model


def model_class(name: Any) -> type:
    """The registered model class called ``name`` (the package's __init__ imports, so registers, every model)."""
    if name not in MODELS:
        raise InputError(f"model class must be one of {sorted(MODELS)}. Got {name!r} instead.")
    return MODELS[name]


# The names a model may declare in ``metrics_not_applicable``, and what each one removes.
NOT_APPLICABLE_NAMES: dict[str, str] = {
    "kl": "KL(q || p): the kl / kl_per_dim History columns and metrics, and the ELBO and IWAE objectives",
    "neg_elbo": "the negative ELBO (History column and metric)",
    "kl_per_dim": "the per-dimension KL (metric, History column and figure)",
    "iwae_nll": "the importance-weighted estimate of -log p(x)",
    "quadrature_nll": "-log p(x) by quadrature over a 2-D latent plane",
    "active_units": "latent_mean_variance and active_units",
    "diversity": "everything that samples the model: the per-epoch diversity monitor, sample-quality metrics, "
    "the samples figures",
}


def not_applicable(model: Any) -> dict[str, str]:
    """Metric name -> reason, for the metrics ``model`` declares not applicable (empty for a VAE).

    The names are those of :data:`NOT_APPLICABLE_NAMES`.
    """
    return dict(getattr(model, "metrics_not_applicable", None) or {})
