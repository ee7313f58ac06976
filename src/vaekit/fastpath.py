"""A hand-written forward and backward pass of the ELBO for the common VAE configuration.

Why it exists (and is longer than ``loss.backward()``): for the lecture's networks
(2 -> 128 -> 128 -> 4 and back, batch 256) the matrix products of a step are only part of its
cost; autograd's graph, the ``torch.distributions`` objects and many tiny kernels are the rest.
Writing the gradient of this one loss by hand (``threshold_backward`` for ReLU, closed forms for
the Gaussian and the KL) removes that bookkeeping: on the 2-core benchmark machine ``fit`` went
from 0.79x to 0.47x of a straightforward PyTorch loop's CPU time (README, Performance).
``fit`` uses it only when :func:`supports` says the structure is covered *and* the engine has
proved itself on the first batch against autograd through the objective (same loss, terms and
gradients to float32 rounding); otherwise it trains through autograd, and says why in a debug log.

Covered: ``VAE`` with ReLU MLPs, ``Gaussian(variance=<number>)``, no condition or a condition
without a trainable embedding (``OneHot``, ``Continuous(embed=0)``), with or without
``standardize``, the standard normal prior, objective ``ELBO`` (any beta, warm-up, free bits).
Everything else (learned variances or priors, Bernoulli, IWAE, embedded continuous conditions,
other activations, and any model whose numbers differ, e.g. a subclass overriding ``decode``)
trains through autograd.

Every function accepts either one model's tensors, weights (out, in) and data (B, D), or ``M``
stacked models, weights (M, out, in) and data (M, B, D): :mod:`vaekit.sweep` trains many models in
one pass with the same code. Results equal the autograd path to float rounding (tested), not bit
for bit: sums are taken in a different order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vaekit.distributions import LOG_2PI, LOGVAR_MAX, LOGVAR_MIN, Gaussian
from vaekit.models import VAE
from vaekit.nn import ConditionedMLP
from vaekit.posteriors import DiagonalGaussianHead

_ENABLED = True
_threshold_backward = torch.ops.aten.threshold_backward.default


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Context in which ``fit`` always uses the generic autograd loop (for comparisons and tests)."""
    global _ENABLED
    before, _ENABLED = _ENABLED, False
    try:
        yield
    finally:
        _ENABLED = before


def _linears(net: nn.Module) -> list[nn.Linear] | None:
    """The Linear layers of a Linear/ReLU stack, or None when it is anything else."""
    if not isinstance(net, nn.Sequential):
        return None
    layers = list(net)
    linears = layers[0::2]
    if not all(type(m) is nn.Linear for m in linears) or not all(type(m) is nn.ReLU for m in layers[1::2]):
        return None
    return linears if len(layers) % 2 == 1 else None


def supports(model: nn.Module, objective: object) -> bool:
    """True when the model's structure is one :func:`elbo_step` computes (a necessary condition only).

    Structure is not behaviour: a subclass may override ``decode_batch``, a user may patch
    ``prior``. ``fit`` therefore uses the fast path only after it has proved itself: same loss,
    terms and gradients as autograd through ``objective`` on the first batch (see
    :class:`ElboEngine` and ``vaekit.trainer``).
    """
    # The objective is recognised by its kind, not its class: fastpath sits below objectives in the
    # import order, and a look-alike objective is caught by the proof anyway.
    if not _ENABLED or getattr(objective, "kind", None) != "elbo" or not isinstance(model, VAE):
        return False
    # The head the model decodes with, not the spec it was built from (either may be swapped).
    if getattr(model.likelihood_head, "constraint", "none") != "none":
        return False  # the closed-form gradients know nothing of a constrained mean
    if not isinstance(model.likelihood, Gaussian) or getattr(model.likelihood_head, "mode", None) != "fixed":
        return False
    if getattr(model.likelihood_head, "log_columns", ()):
        return False  # the closed forms are for a Gaussian in data units, not a log-normal
    if getattr(model.likelihood_head, "df_mode", "none") != "none":
        return False  # nor for Student's t
    # The diagonal Gaussian posterior's head and MLP trunks: anything else (a flow, a conv net) is autograd's.
    if type(getattr(model, "posterior_head", None)) is not DiagonalGaussianHead:
        return False
    for net in (model.encoder, model.decoder):
        if type(net) is not ConditionedMLP:
            return False
        if net.embed is not None and type(net.embed) is not nn.Identity:
            return False
        if _linears(net.net) is None:
            return False
    # Every trainable tensor must be one whose gradient elbo_step computes (no learned prior, ...).
    covered = {id(t) for t in parameters(model)[0]}
    return all(id(p) in covered for p in model.parameters() if p.requires_grad)


class ElboEngine:
    """The hand-written ELBO step of one model, in the shape the trainer uses.

    ``gradients(x, c, epoch)`` draws its noise from torch's global generator exactly as
    ``qz.rsample()`` does (one (B, Z) normal draw), so that a verified engine and autograd
    consume the same random numbers in the same order.
    """

    def __init__(self, model: nn.Module, objective: Any) -> None:
        self.params, self.layout = parameters(model)
        self.const = constants(model)
        self.objective = objective

    def gradients(self, x: torch.Tensor, c: torch.Tensor | None, epoch: int) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Gradients of the batch-mean loss (``params`` order) and the batch sums of its terms."""
        eps = torch.randn(x.shape[0], self.layout.z_dim, device=x.device, dtype=x.dtype)
        beta = self.objective.beta_at(epoch)
        return elbo_step(self.params, self.layout, self.const, x, c, eps, beta, self.objective.free_bits)

    def record(self, sums: torch.Tensor, n: int, epoch: int) -> dict[str, torch.Tensor]:
        """Batch or epoch sums -> the History terms (sums over ``n`` points), as ``LossOutput.record()``."""
        return history_record(sums, self.const.nll_const, n, self.objective.beta_at(epoch))


def engine_for(model: nn.Module, objective: object) -> ElboEngine | None:
    """An :class:`ElboEngine` for this model and objective when :func:`supports` allows one, else None."""
    return ElboEngine(model, objective) if supports(model, objective) else None


@dataclass
class Layout:
    """How a flat parameter list splits into encoder and decoder layers (weights, then biases)."""

    n_encoder: int  # number of Linear layers in the encoder
    n_decoder: int
    z_dim: int


def parameters(model: nn.Module) -> tuple[list[torch.Tensor], Layout]:
    """The model's trainable tensors in engine order: encoder W0, b0, W1, b1, ..., then decoder."""
    enc, dec = _linears(model.encoder.net), _linears(model.decoder.net)
    assert enc is not None and dec is not None
    params = [t for layer in enc + dec for t in (layer.weight, layer.bias)]
    return params, Layout(len(enc), len(dec), model.z_dim)


@dataclass
class Constants:
    """Per-model fixed quantities; tensors broadcast against (..., B, D) or (..., B, Z)."""

    x_shift: torch.Tensor | None  # (D,) or (M, 1, D); None without standardisation
    x_scale: torch.Tensor | None
    x_std: torch.Tensor  # std of p(x|z) in the user's units, (D,) or (M, 1, D)
    nll_const: torch.Tensor  # sum_d log x_std_d + D/2 log(2 pi): nll = reconstruction + nll_const


def constants(model: nn.Module) -> Constants:
    """Constants of one model (unstacked shapes)."""
    std = model.likelihood_head.fixed_std
    shift = scale = None
    if model.standardize:
        shift, scale = model.x_shift, model.x_scale
        std = std * scale
    nll_const = std.log().sum(-1) + 0.5 * LOG_2PI * std.shape[-1]
    return Constants(shift, scale, std, nll_const)


def _linear(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if h.dim() == 2:
        return torch.addmm(b, h, w.t())
    return torch.baddbmm(b.unsqueeze(-2), h, w.mT)


def _mlp_forward(params: list[torch.Tensor], h: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """ReLU MLP; returns the output and the input of every layer (kept for the backward pass)."""
    inputs = []
    n = len(params) // 2
    for i in range(n):
        inputs.append(h)
        h = _linear(h, params[2 * i], params[2 * i + 1])
        if i < n - 1:
            h = torch.relu_(h)  # in place: the backward pass needs only the ReLU's output
    return h, inputs


def _mlp_backward(
    params: list[torch.Tensor], inputs: list[torch.Tensor], grad: torch.Tensor, need_input_grad: bool
) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """Gradients of the weights (same order as ``params``) and of the MLP's input."""
    n = len(params) // 2
    grads: list[torch.Tensor] = [grad] * (2 * n)
    for i in reversed(range(n)):
        grads[2 * i] = torch.matmul(grad.mT, inputs[i])  # (.., out, in)
        grads[2 * i + 1] = grad.sum(-2)
        if i == 0 and not need_input_grad:
            return grads, None
        grad = torch.matmul(grad, params[2 * i])  # (.., B, in)
        if i > 0:
            # inputs[i] is relu(previous pre-activation): zero exactly where the ReLU was off.
            grad = _threshold_backward(grad, inputs[i], 0)
    return grads, grad


def elbo_step(
    params: list[torch.Tensor],
    layout: Layout,
    const: Constants,
    x: torch.Tensor,
    c: torch.Tensor | None,
    eps: torch.Tensor,
    beta: float | torch.Tensor,
    free_bits: float = 0.0,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Gradients of the batch-mean ELBO loss and the batch sums of its terms.

    Parameters
    ----------
    params : weights and biases in :func:`parameters` order, each (out, in) / (out,) or stacked (M, ...).
    x : (B, D) or (M, B, D) prepared data; c : (B, C) or (M, B, C) prepared condition or None.
    eps : (B, Z) or (M, B, Z) standard normal noise (what ``qz.rsample()`` would draw).
    beta : KL weight of this epoch; a float or (M, 1, 1) per stacked model.
    free_bits : nats per latent dimension below which the batch-mean KL is not penalised.

    Returns
    -------
    grads : list of tensors shaped like ``params``.
    sums : (..., 3 + Z) batch sums of [reconstruction, kl, penalised kl, kl_per_dim...]; the
        other History terms follow from these and ``const.nll_const``.

    """
    split = 2 * layout.n_encoder
    enc, dec = params[:split], params[split:]
    batch = x.shape[-2]
    xin = x if const.x_shift is None else (x - const.x_shift) / const.x_scale
    if c is not None:
        xin = torch.cat([xin, c], dim=-1)
    out, enc_inputs = _mlp_forward(enc, xin)
    mean, logvar = out.chunk(2, dim=-1)  # (.., B, Z)
    std = (0.5 * logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)).exp()
    z = mean + eps * std
    zin = z if c is None else torch.cat([z, c], dim=-1)
    h, dec_inputs = _mlp_forward(dec, zin)
    loc = h if const.x_shift is None else h * const.x_scale + const.x_shift
    resid = (x - loc) / const.x_std  # (.., B, D)
    recon = resid.square().sum(-1, keepdim=True) / 2  # (.., B, 1)
    var = std.square()
    kl_dim = 0.5 * (var + mean.square() - 1.0 - var.log())  # (.., B, Z), as kl_per_dimension

    kl_sum = kl_dim.sum(-2)  # (.., Z)
    weight = beta / batch  # d loss_mean / d kl_id for penalised dimensions
    if free_bits > 0:
        penalised = kl_sum / batch >= free_bits  # (.., Z): batch mean not under the floor
        pen_sum = torch.where(penalised, kl_sum, free_bits * batch).sum(-1, keepdim=True)
        weight = weight * penalised.unsqueeze(-2)
    else:
        pen_sum = kl_sum.sum(-1, keepdim=True)
    sums = torch.cat([recon.sum(-2), kl_sum.sum(-1, keepdim=True), pen_sum, kl_sum], dim=-1)

    # Backward. d(nll_i)/d(loc) = -(x - loc) / std_x^2, times 1/B for the batch mean.
    scale = 1.0 / batch if const.x_scale is None else const.x_scale / batch
    dh = resid.div(const.x_std).mul_(-scale)
    dec_grads, dzin = _mlp_backward(dec, dec_inputs, dh, need_input_grad=True)
    dz = dzin if c is None else dzin[..., : layout.z_dim]
    # KL_d = (s^2 + m^2 - 1 - log s^2) / 2: dKL/dm = m, dKL/ds = s - 1/s; z = m + eps * s.
    dmean = dz + weight * mean
    dstd = dz * eps + weight * (std - 1.0 / std)
    inside = (logvar >= LOGVAR_MIN) & (logvar <= LOGVAR_MAX)  # clamp passes gradient only inside
    dlogvar = (dstd * std * 0.5).mul_(inside)
    enc_grads, _ = _mlp_backward(enc, enc_inputs, torch.cat([dmean, dlogvar], dim=-1), need_input_grad=False)
    return enc_grads + dec_grads, sums


def decode_mean(params: list[torch.Tensor], layout: Layout, const: Constants, zin: torch.Tensor) -> torch.Tensor:
    """Decoder means in the user's units for z (.., S, Z) (with the condition appended, if any)."""
    h, _ = _mlp_forward(params[2 * layout.n_encoder :], zin)
    return h if const.x_shift is None else h * const.x_scale + const.x_shift


def history_record(sums: torch.Tensor, nll_const: torch.Tensor, n: int, beta: float | torch.Tensor) -> dict[str, torch.Tensor]:
    """Epoch sums from :func:`elbo_step` -> the LossOutput terms ``fit`` logs (sums over n points)."""
    recon, kl, pen, kl_dim = sums[..., 0], sums[..., 1], sums[..., 2], sums[..., 3:]
    nll = recon + n * nll_const
    beta = beta.reshape(-1) if isinstance(beta, torch.Tensor) else beta
    return {
        "loss": nll + beta * pen,
        "reconstruction": recon,
        "reconstruction_nll": nll,
        "kl": kl,
        "kl_per_dim": kl_dim,
        "neg_elbo": nll + kl,
    }
