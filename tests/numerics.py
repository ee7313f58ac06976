"""Tolerances for comparing two ways of computing the same numbers, derived from the computation.

Why this exists: PyTorch picks its CPU kernels by instruction set (``ATEN_CPU_CAPABILITY``:
default, avx2, avx512), and each kernel sums in its own order. Two implementations that are
mathematically identical (the hand-written fast path and autograd, a batched sweep and a single
``fit``) therefore differ by rounding, by a different amount on every machine. A tolerance picked
to pass on one machine fails on the next (issue 13), so every cross-implementation comparison
uses one of the two bounds below.

1. One computation (a loss and its gradients), compared against a float64 reference.
   Each element is built from sums of products; along its longest chain it accumulates
   ``n`` roundings, with ``n`` the batch size (sums over the batch) plus the fan-in of every
   linear layer, once forward and once backward (:func:`vae_accumulation`). Higham's bound for
   such a result is ``gamma_n = n u / (1 - n u)`` (u = 2^-24 in float32, 2^-53 in float64)
   relative to the sum of the magnitudes of the terms. We measure that magnitude by the
   tensor's largest element: element-wise scales fail wherever terms cancel (a gradient of
   0.36 made of terms of size 1e3), which is exactly what broke issue 13. The worst-case
   ``n u`` is about sqrt(n) (~30 here) times larger than the typical random-walk error
   ``sqrt(n) u``; that factor absorbs the cancellation inside a tensor. Measured on the tests
   that use it, under default and avx2 kernels, the largest error is below 2% of the bound.

2. Two training runs of several Adam steps, compared in float64. Adam divides by
   ``sqrt(v) + eps`` and so can magnify a rounding difference of a gradient by up to ``lr / eps``
   (1e5 for lr 1e-3) in one step: in float32, a coordinate whose true gradient is ~1e-7 gets an
   update of either sign, and a picked atol passes or fails by luck of the kernels. In float64 the
   gradients differ by ``gamma_n * G`` (G the gradient scale), so after ``steps`` steps the
   weights differ by at most ``steps * lr / eps * gamma_n * G`` (:func:`adam_atol`): about 1e-7,
   while a real difference of the paths shows at 1e-3 and more. Measured: 1e-16.
"""

from __future__ import annotations

import copy
import os

import torch
from torch import nn

from vaekit.numerics import gamma, unit_roundoff  # noqa: F401  (re-exported for the tests)
from vaekit.numerics import step_accumulation as vae_accumulation  # noqa: F401

ADAM_EPS = 1e-8  # torch.optim.Adam's default, used by vk.fit and vk.sweep


def rounding_atol(reference: torch.Tensor, n: int, dtype: torch.dtype) -> float:
    """Bound 1: gamma_n times the largest magnitude in ``reference`` (a float64 result)."""
    return gamma(n, dtype) * float(reference.detach().abs().max())


def assert_within_rounding(actual: torch.Tensor, reference: torch.Tensor, *, n: int, dtype: torch.dtype, what: str = "") -> None:
    """``actual`` (computed in ``dtype``) equals the float64 ``reference`` up to bound 1."""
    atol = rounding_atol(reference, n, dtype)
    error = float((actual.detach().double() - reference.detach().double()).abs().max())
    _report("rounding", error, atol)
    assert error <= atol, f"{what}: error {error:.3g} exceeds the rounding bound {atol:.3g} (n={n}, {dtype})"


def mlp_rounding_bound(net: nn.Module, *inputs: torch.Tensor | None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Element-wise bound on the rounding error of ``net(*inputs)`` computed in ``dtype``, for ReLU MLPs.

    Higham (Accuracy and Stability of Numerical Algorithms, 3.5): layer l adds at most
    gamma_{k_l} |W_l| |h_{l-1}| (k_l = fan-in + 1 for the bias) and passes on |W_l| times the error
    it received (ReLU is 1-Lipschitz and |relu(t)| <= |t|). Summed over the layers this is at most
    gamma_n times the same network run with |weights| on |inputs| (n = sum of k_l), which a float64
    copy of the net computes. Tighter than bound 1 where a small output is made of large terms.
    """
    modules = list(net.modules())
    unbounded = [type(m).__name__ for m in modules if isinstance(m, (nn.SiLU, nn.GELU, nn.ELU, nn.Tanh, nn.LeakyReLU))]
    assert not unbounded, f"the bound is derived for ReLU networks; got {unbounded}"
    absolute = copy.deepcopy(net).double()
    with torch.no_grad():
        for p in absolute.parameters():
            p.abs_()
        magnitude = absolute(*[None if t is None else t.detach().double().abs() for t in inputs])
    n = sum(m.in_features + 1 for m in modules if isinstance(m, nn.Linear))
    return gamma(n, dtype) * magnitude


def adam_atol(steps: int, lr: float, n: int, grad_scale: float) -> float:
    """Bound 2: largest float64 difference of weights after ``steps`` Adam steps of two implementations."""
    return steps * lr / ADAM_EPS * gamma(n, torch.float64) * grad_scale


def grad_scale(model: nn.Module) -> float:
    """G for bound 2: the largest gradient element the model's last training step left in ``.grad``."""
    grads = [p.grad.abs().max() for p in model.parameters() if p.grad is not None]
    assert grads, "the model holds no gradients: train it first"
    return float(max(grads))


def assert_same_training(model, history, reference_model, reference_history, *, steps: int, lr: float, batch: int) -> None:
    """Two float64 training runs of the same model agree up to bound 2.

    Weights: ``adam_atol`` with G from the reference model's last gradients. History values: the
    same magnification, ``steps * lr / eps * gamma_n``, relative to each column's largest value
    (every History value is a smooth function of weights perturbed that much, relatively).
    """
    assert model.dtype == reference_model.dtype == torch.float64, "bound 2 holds in float64 only"
    n = vae_accumulation(reference_model, batch)
    atol = adam_atol(steps, lr, n, grad_scale(reference_model))
    for (name, a), b in zip(model.named_parameters(), reference_model.parameters()):
        error = float((a - b).detach().abs().max())
        _report("weights", error, atol)
        assert error <= atol, f"weight {name}: error {error:.3g} exceeds the Adam rounding bound {atol:.3g}"
    assert list(history.columns) == list(reference_history.columns)
    magnification = steps * lr / ADAM_EPS * gamma(n, torch.float64)
    for key, column in reference_history.columns.items():
        a, b = torch.tensor(history.columns[key], dtype=torch.float64), torch.tensor(column, dtype=torch.float64)
        assert torch.equal(a.isnan(), b.isnan()), key
        error = float((a - b).nan_to_num().abs().max())
        bound = magnification * float(b.nan_to_num().abs().max())
        _report("history", error, bound)
        assert error <= bound, f"History {key}: error {error:.3g} exceeds {bound:.3g}"


def _report(kind: str, error: float, bound: float) -> None:
    """With VAEKIT_NUMERICS_REPORT=FILE, append error/bound ratios (how the margins in the docstring were measured)."""
    path = os.environ.get("VAEKIT_NUMERICS_REPORT")
    if path:
        with open(path, "a") as handle:
            handle.write(f"{kind} {error / bound if bound else 0.0:.3e}\n")
