"""The model family, measured: every member on the same data, training budget and evaluation.

Two data sets, each model trained with ``--seeds`` seeds (mean ± sd reported):

* **ring** (the lecture's data: 8 modes, radius 3, std 0.25; 2000 training points, 2000 test
  points from another seed). Test NLL in nats per point by quadrature over the 2-D latent
  (where z is 2-D) and by IWAE with k=1000; the floor is the data entropy, 2.1447 nats.
* **digits** (scikit-learn's bundled 8x8 digits, binarised at 8/16; 1437 training and 360 test
  images, a fixed split). Test NLL by IWAE (k=1000), the negative ELBO, their gap, and the
  reconstruction error (mean squared error of the reconstructed grey levels, in [0, 1]).

Speed: CPU seconds per epoch of each model (process time: with one thread, the time the model
takes, less disturbed by other processes than wall time) next to the plain VAE's on the same data
(the ring's VAE trains on the hand-written fast path; ``vae-autograd`` is the same VAE through
autograd), and the ratios of floating-point operations and of ATen operations (kernel calls) of
one training step through autograd (forward and backward, counted by
``torch.utils.flop_counter`` and a dispatch mode).

Usage: PYTHONPATH=src python benchmarks/family.py [--seeds 3] [--ring-epochs 400]
       [--digits-epochs 100] [--only ring|digits] [--models vae,vae-iaf,...] [--threads 1] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

import vaekit as vk
from vaekit import fastpath, metrics
from vaekit.models.base import not_applicable
from vaekit.objectives import default_objective

RING_ENTROPY = metrics.ring_entropy()
BATCH, LR = 256, 1e-3
IWAE_K = 5  # the IWAE objective's k: vaekit's default, and what peer_pythae.py trains Pythae's IWAE with


# --------------------------------------------------------------------------- the members
def ring_models() -> dict[str, Callable[[int], torch.nn.Module]]:
    """Name -> builder(seed) of each member on the ring: the lecture's trunk and likelihood."""
    common = {"hidden": (128, 128), "likelihood": vk.Gaussian(variance=0.1)}
    return {
        "vae": lambda s: vk.VAE(2, 2, seed=s, **common),
        "vae-autograd": lambda s: vk.VAE(2, 2, seed=s, **common),
        "vae-iaf": lambda s: vk.VAE(2, 2, posterior=vk.IAF(steps=4), seed=s, **common),
        "vae-planar": lambda s: vk.VAE(2, 2, posterior=vk.Planar(steps=8), seed=s, **common),
        "vae-mixture": lambda s: vk.VAE(2, 2, prior=vk.MixturePrior(8), seed=s, **common),
        "vae-vamp": lambda s: vk.VAE(2, 2, prior=vk.VampPrior(50), seed=s, **common),
        "vae-iaf-mixture": lambda s: vk.VAE(2, 2, posterior=vk.IAF(steps=4), prior=vk.MixturePrior(8), seed=s, **common),
        "vae-iaf-vamp": lambda s: vk.VAE(2, 2, posterior=vk.IAF(steps=4), prior=vk.VampPrior(50), seed=s, **common),
        "vae-planar-mixture": lambda s: vk.VAE(2, 2, posterior=vk.Planar(steps=8), prior=vk.MixturePrior(8), seed=s, **common),
        "vae-iwae": lambda s: vk.VAE(2, 2, seed=s, **common),
        "hierarchical": lambda s: vk.HierarchicalVAE(x_dim=2, z_dims=(2, 2), seed=s, **common),
        "vqvae": lambda s: vk.VQVAE(x_dim=2, codebook_size=64, code_dim=2, seed=s, **common),
    }


def digits_models() -> dict[str, Callable[[int], torch.nn.Module]]:
    """Name -> builder(seed) of each member on the binarised digits (Bernoulli likelihood)."""
    mlp = {"hidden": (256, 128), "likelihood": vk.Bernoulli()}
    image = {"x_shape": (1, 8, 8), "likelihood": vk.Bernoulli()}
    return {
        "vae": lambda s: vk.VAE(64, 8, seed=s, **mlp),
        "vae-iaf": lambda s: vk.VAE(64, 8, posterior=vk.IAF(steps=4), seed=s, **mlp),
        "vae-vamp": lambda s: vk.VAE(64, 8, prior=vk.VampPrior(50), seed=s, **mlp),
        "vae-iwae": lambda s: vk.VAE(64, 8, seed=s, **mlp),
        "hierarchical": lambda s: vk.HierarchicalVAE(x_dim=64, z_dims=(8, 4), seed=s, **mlp),
        "vae-conv2d": lambda s: vk.VAE(z_dim=8, encoder=vk.Conv2d(channels=(32, 64)), hidden=(128,), seed=s, **image),
        "vqvae": lambda s: vk.VQVAE(x_dim=64, codebook_size=64, code_dim=8, seed=s, **mlp),
        **vq_grid_members(image),
    }


def vq_grid_members(image: dict) -> dict[str, Callable[[int], torch.nn.Module]]:
    """The VQ-VAE over a grid of codes (conv trunk, no dense layers): the single-code member's K and code_dim.

    Two stride-2 blocks turn the 8x8 digit into a 2x2 grid (G = 4 codes), one block into 4x4 (G = 16).
    """
    vq = {"codebook_size": 64, "code_dim": 8, **image}
    return {
        "vqvae-grid2x2": lambda s: vk.VQVAE(encoder=vk.Conv2d(channels=(32, 64)), seed=s, **vq),
        "vqvae-grid4x4": lambda s: vk.VQVAE(encoder=vk.Conv2d(channels=(32,)), seed=s, **vq),
    }


# Members that differ from another only by their objective: the model's own objective otherwise.
OBJECTIVES = {"vae-iwae": lambda: vk.IWAE(k=IWAE_K)}
# Members trained through autograd although fit would prove and use the hand-written fast path
# (vaekit.fastpath): the reference for the time of the members that train through autograd.
AUTOGRAD = {"vae-autograd"}


def objective_for(name: str, model: torch.nn.Module):
    """The member's objective: ``OBJECTIVES[name]``, else the model's own with its defaults
    (VQ(commitment=0.25) for the VQ-VAE, the ELBO for the others)."""
    return OBJECTIVES[name]() if name in OBJECTIVES else default_objective(model)


# --------------------------------------------------------------------------- data
def ring_data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    return vk.data.ring(2000, seed=seed)[0], vk.data.ring(2000, seed=seed + 1000)[0]


def digits_data() -> tuple[np.ndarray, np.ndarray]:
    x, _ = vk.data.digits()
    x = (x > 0.5).astype(np.float32)  # binarised at 8/16 (the loader scales to [0, 1])
    order = np.random.default_rng(0).permutation(len(x))
    return x[order[:1437]], x[order[1437:]]


# --------------------------------------------------------------------------- measuring
class OpCounter(TorchDispatchMode):
    """Counts the ATen operations dispatched inside it (forward and autograd's backward alike)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def step_cost(name: str, model: torch.nn.Module, x: np.ndarray) -> tuple[int, int]:
    """Floating-point operations and ATen operations of one training step through autograd
    (objective forward + backward, no optimizer) on one batch."""
    xt = model.prepare_x(x[:BATCH])
    objective = objective_for(name, model)
    with FlopCounterMode(display=False) as counter, OpCounter() as ops:
        objective(model, xt, None).loss.mean().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops(), ops.count


def measure(
    name: str, build: Callable[[int], torch.nn.Module], train: np.ndarray, test: np.ndarray, *, epochs: int, seed: int, ring: bool
):
    model = build(seed)
    with fastpath.disabled() if name in AUTOGRAD else contextlib.nullcontext():
        start = time.process_time()  # CPU time: less disturbed than wall time by other processes on the machine
        history = vk.fit(model, train, objective=objective_for(name, model), epochs=epochs, batch_size=BATCH, lr=LR, seed=seed)
        seconds = (time.process_time() - start) / epochs
    row = {"model": name, "seed": seed, "s_per_epoch": seconds, "fast_path": history.fast_path}
    is_vq = "iwae_nll" in not_applicable(model)  # a discrete code: no density, no IWAE
    if not is_vq:
        row["iwae_nll"] = -metrics.log_likelihood(model, test, k=1000, seed=0)
        row["neg_elbo"] = metrics.neg_elbo(model, test, samples=100, seed=0)
        row["gap"] = row["neg_elbo"] - row["iwae_nll"]
    if ring and not is_vq and model.z_dim == 2:
        row["quadrature_nll"] = -float(metrics.quadrature_log_likelihood(model, test).log_p.mean())
    if not ring:
        row["recon_mse"] = float(np.mean((model.reconstruct(test).reshape(len(test), -1) - test) ** 2))
    if is_vq and not ring:
        row |= vq_code_bound(model, train, test, seed)
    return row, model


def vq_code_bound(model: torch.nn.Module, train: np.ndarray, test: np.ndarray, seed: int) -> dict[str, float]:
    """A VQ-VAE's test NLL bound, nats per point, once its code prior is fitted on the training codes.

    log p(x) = log sum_k p(k) p(x|k) >= log p(k(x)) + log p(x|k(x)) for the codes k(x) of x, so
    ``prior_nll_codes + reconstruction_nll`` bounds the NLL from above, comparable with IWAE's.
    """
    model.fit_prior(train, seed=seed)
    prior_nll = -float(np.mean(model.prior_log_prob(model.codes(test))))
    with torch.no_grad():
        xt = model.prepare_x(test)
        recon_nll = -float(model.decode_batch(model.encode_batch(xt).mean).log_prob(xt).mean())
    return {"prior_nll_codes": prior_nll, "test_reconstruction_nll": recon_nll, "nll_bound": prior_nll + recon_nll}


def summarise(rows: list[dict], key: str) -> str:
    values = [r[key] for r in rows if key in r and math.isfinite(r[key])]
    if not values:
        return "n/a"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def run(dataset: str, members: dict, args) -> list[dict]:
    rows, flops, ops = [], {}, {}
    for name, build in members.items():
        for seed in range(args.seeds):
            train, test = ring_data(seed) if dataset == "ring" else digits_data()
            epochs = args.ring_epochs if dataset == "ring" else args.digits_epochs
            row, model = measure(name, build, train, test, epochs=epochs, seed=seed, ring=dataset == "ring")
            rows.append(row)
            print(
                f"  {dataset} {name} seed {seed}: " + ", ".join(f"{k} {v:.4g}" for k, v in row.items() if isinstance(v, float)),
                flush=True,
            )
        flops[name], ops[name] = step_cost(name, build(0), train)
    base_time = statistics.mean(r["s_per_epoch"] for r in rows if r["model"] == "vae")
    autograd = [r["s_per_epoch"] for r in rows if r["model"] in AUTOGRAD]
    autograd_time = statistics.mean(autograd) if autograd else math.nan
    keys = (
        ["quadrature_nll", "iwae_nll", "neg_elbo", "gap"] if dataset == "ring" else ["iwae_nll", "neg_elbo", "gap", "recon_mse"]
    )
    print(
        f"\n{dataset}: mean ± sd over {args.seeds} seeds" + (f" (data entropy {RING_ENTROPY:.4f})" if dataset == "ring" else "")
    )
    print("| model | " + " | ".join(keys) + " | s/epoch | time ratio | vs autograd VAE | FLOP ratio | op ratio |")
    print("|---" * (len(keys) + 6) + "|")
    for name in members:
        mine = [r for r in rows if r["model"] == name]
        t = statistics.mean(r["s_per_epoch"] for r in mine)
        cells = [summarise(mine, k) for k in keys]
        cells += [f"{t:.3f}", f"{t / base_time:.2f}", f"{t / autograd_time:.2f}"]
        cells += [f"{flops[name] / flops['vae']:.2f}", f"{ops[name] / ops['vae']:.2f}"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    for r in rows:
        r["flops"], r["aten_ops"] = flops[r["model"]], ops[r["model"]]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--ring-epochs", type=int, default=400)
    parser.add_argument("--digits-epochs", type=int, default=100)
    parser.add_argument("--only", choices=["ring", "digits"])
    parser.add_argument("--models", help="comma-separated subset of the members")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (s/epoch is CPU time: with more threads it sums theirs)"
    )
    parser.add_argument("--json", help="also write every row to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"vaekit {vk.__version__}, torch {torch.__version__}, {platform.machine()}, {args.threads} threads")
    results = {}
    for dataset, members in (("ring", ring_models()), ("digits", digits_models())):
        if args.only and args.only != dataset:
            continue
        if args.models:
            wanted = set(args.models.split(","))
            members = {k: v for k, v in members.items() if k in wanted or k == "vae"}
        results[dataset] = run(dataset, members, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
