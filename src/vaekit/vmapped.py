"""Many models of one architecture trained in one pass with ``torch.func`` (any model, autograd).

The sweep's second engine, for models the hand-written fast path does not cover (learned
variances, Bernoulli, learned priors, embedded conditions, other activations): the models'
tensors are stacked (``torch.func.stack_module_state``) and one ``vmap`` over
``grad(functional_call(...))`` computes every model's loss and gradients through the objective
itself, so anything that honours the model contract trains here.

Randomness is drawn outside ``vmap``, per model, from that model's own generator state in the
order ``fit`` draws it (shuffle, then one reparameterisation noise per batch, then the monitor),
so that model ``i`` equals ``fit(model_i, seed=s_i)`` to float rounding. That needs a posterior
whose ``rsample`` is ``loc + scale * eps`` (a diagonal Gaussian); other posteriors are not
vmapped (the sweep then trains one model after another and says so).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.distributions import Independent, Normal
from torch.func import functional_call, grad, stack_module_state, vmap

from vaekit.history import History
from vaekit.metrics import probe_posterior

_BETA1, _BETA2, _EPS = 0.9, 0.999, 1e-8  # torch.optim.Adam's defaults, as used by fit


def supported(model: nn.Module) -> bool:
    """Whether the model's posterior is a diagonal Gaussian, whose noise can be drawn outside vmap."""
    qz = probe_posterior(model)
    return type(qz) is Independent and type(qz.base_dist) is Normal and qz.event_shape == (model.z_dim,)


class _Step(nn.Module):
    """One batch of the objective for one model, with the reparameterisation noise given."""

    def __init__(self, model: nn.Module, objective: Callable[..., Any]) -> None:
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, x: torch.Tensor, c: torch.Tensor | None, eps: torch.Tensor, epoch: int) -> tuple[torch.Tensor, dict]:
        model = self.model
        encode = model.encode_batch

        def encode_with_noise(xb: torch.Tensor, cb: torch.Tensor | None = None) -> Independent:
            qz = encode(xb, cb)
            return _GivenNoise(qz, eps)

        model.encode_batch = encode_with_noise  # instance attribute on the template copy only
        try:
            out = self.objective(model, x, c, epoch=epoch)
        finally:
            del model.encode_batch
        return out.loss.mean(), {k: v.sum(0) for k, v in out.record().items()}


class _GivenNoise(Independent):
    """q(z|x) whose ``rsample()`` uses the noise drawn outside vmap: loc + scale * eps."""

    def __init__(self, qz: Independent, eps: torch.Tensor) -> None:
        super().__init__(qz.base_dist, qz.reinterpreted_batch_ndims, validate_args=False)
        self._eps = eps

    def rsample(self, sample_shape: torch.Size | tuple = ()) -> torch.Tensor:
        if tuple(sample_shape) != ():
            raise NotImplementedError("noise is given for one draw per point only")
        return self.base_dist.loc + self.base_dist.scale * self._eps


def train(
    models: list[nn.Module],
    objectives: list[Any],
    lrs: list[float],
    seeds: list[int],
    x: Any,
    condition: Any,
    *,
    epochs: int,
    batch_size: int,
    weight_decay: float,
    monitor: Callable[..., float],
    progress: Callable[[int, int], None] | None = None,
) -> list[History]:
    """Train ``models`` (same class and architecture) together; one History per model, as ``fit`` gives.

    Each model's randomness follows ``fit(model, seed=seeds[i])``: torch's global generator
    seeded with that seed, consumed in fit's order (kept per model and swapped in for its draws).
    """
    first = models[0]
    x_all, c_all = prepare_together(models, x, condition)
    params, buffers = stack_module_state(models)  # name -> (M, ...)
    params = {k: v.detach() for k, v in params.items()}  # updated in place by Adam, outside autograd
    names = list(params)
    template = copy.deepcopy(first)
    states = []
    for s in seeds:  # fit's generator: the global one, seeded with the model's seed
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s)
            states.append(torch.get_rng_state())
    count, n = len(models), x_all.shape[0]

    def loss(p: dict, b: dict, xb: torch.Tensor, cb: torch.Tensor | None, eps: torch.Tensor, epoch: int):
        state = {f"model.{k}": v for k, v in {**p, **b}.items()}
        return functional_call(_Step(template, objectives[0]), state, (xb, cb, eps, epoch))

    # One objective for all: the sweep vmaps only when every model's objective is the same.
    assert all(o == objectives[0] for o in objectives), "vmapped models must share their objective"
    step = vmap(grad(loss, has_aux=True), in_dims=(0, 0, 0, None if c_all is None else 0, 0, None))
    tensors = [params[k] for k in names]
    adam = BatchedAdam(tensors, torch.tensor(lrs, dtype=x_all.dtype), weight_decay)
    histories = [History() for _ in models]
    for epoch in range(epochs):
        orders = [_with_state(states, i, lambda: torch.randperm(n, device=x_all.device)) for i in range(count)]
        order = torch.stack(orders)  # (M, N)
        sums: dict[str, torch.Tensor] | None = None
        for start in range(0, n, batch_size):
            idx = order[:, start : start + batch_size]  # (M, B)
            xb = x_all[idx]
            cb = None if c_all is None else c_all[idx]
            shape = (idx.shape[1], first.z_dim)  # what qz.rsample() draws in fit: (B, Z)
            eps = torch.stack(
                [
                    _with_state(states, i, lambda s=shape: torch.randn(s, device=x_all.device, dtype=x_all.dtype))
                    for i in range(count)
                ]
            )
            grads, batch_sums = step({k: params[k] for k in names}, buffers, xb, cb, eps, epoch)
            adam.step(tensors, [grads[k] for k in names])
            sums = batch_sums if sums is None else {k: sums[k] + v for k, v in batch_sums.items()}
        values = {k: (v.double() / n).tolist() for k, v in sums.items()}
        _copy_into(models, params, names)
        for i, (model, history) in enumerate(zip(models, histories)):
            record = {k: v[i] for k, v in values.items()}
            due = (epoch + 1) % getattr(monitor, "every", 1) == 0 or epoch == epochs - 1
            model.eval()
            record["diversity"] = _with_state(states, i, lambda m=model: monitor(m, x_all, c_all)) if due else math.nan
            model.train()
            history.append(record)
        if progress is not None:
            progress(epoch + 1, epochs)
    for m in models:
        m.eval()
    return histories


def prepare_together(models: list[nn.Module], x: Any, condition: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Checked data (N, D) and condition (N, C) for models trained together; each learns its scaling from them."""
    x_all = models[0].prepare_x(x)
    c_all = models[0].prepare_condition(condition, x_all.shape[0])
    for m in models:
        m.set_scaling(x_all)
        m.train()
    return x_all, c_all


class BatchedAdam:
    """Adam on stacked (M, ...) tensors with one learning rate per model.

    torch's fused Adam takes one scalar lr per parameter group; giving each model its own
    group would cost one kernel call per model and tensor, so the update is written with
    foreach ops (the same formula as torch.optim.Adam).
    """

    def __init__(self, params: list[torch.Tensor], lr: torch.Tensor, weight_decay: float) -> None:
        self.exp_avg = [torch.zeros_like(p) for p in params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        self.lr = [lr.view(-1, *([1] * (p.dim() - 1))) for p in params]  # (M, 1, ...) per tensor
        self.weight_decay = weight_decay
        self.t = 0

    def step(self, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        self.t += 1
        if self.weight_decay:
            grads = torch._foreach_add(grads, params, alpha=self.weight_decay)
        torch._foreach_lerp_(self.exp_avg, grads, 1 - _BETA1)
        torch._foreach_mul_(self.exp_avg_sq, _BETA2)
        torch._foreach_addcmul_(self.exp_avg_sq, grads, grads, 1 - _BETA2)
        bias1 = 1 - _BETA1**self.t
        bias2_sqrt = math.sqrt(1 - _BETA2**self.t)
        denom = torch._foreach_sqrt(self.exp_avg_sq)
        torch._foreach_div_(denom, bias2_sqrt)
        torch._foreach_add_(denom, _EPS)
        update = torch._foreach_div(self.exp_avg, denom)
        torch._foreach_mul_(update, self.lr)
        torch._foreach_mul_(update, -1.0 / bias1)
        torch._foreach_add_(params, update)


def _with_state(states: list[torch.Tensor], i: int, draw: Callable[[], Any]) -> Any:
    """Run ``draw`` with torch's global generator in model ``i``'s state, and keep the state it leaves."""
    with torch.random.fork_rng(devices=[]):
        torch.set_rng_state(states[i])
        out = draw()
        states[i] = torch.get_rng_state()
    return out


@torch.no_grad()
def _copy_into(models: list[nn.Module], params: dict[str, torch.Tensor], names: list[str]) -> None:
    for i, m in enumerate(models):
        own = dict(m.named_parameters())
        for k in names:
            own[k].copy_(params[k][i])
