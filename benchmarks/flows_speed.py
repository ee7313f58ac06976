"""The flow posteriors' training speed before and after a change of ``flows.py``, side by side.

Loads a second copy of the flows module (``--before``, e.g. ``git show 930f272:src/vaekit/flows.py
> /tmp/flows_before.py``), gives it the same weights as the current one and trains both on the
ring (family.py's data, networks, batch 256, lr 1e-3, seed 0; no per-epoch monitor), alternating
the order between repeats, in CPU seconds per epoch (process time, one thread: less disturbed by
other processes than wall time). Also times the plain VAE on its fast path and through autograd,
and checks that the change keeps the math: the losses and gradients of one objective evaluation
on the same weights and noise, in float32 and float64.

Usage: PYTHONPATH=src python benchmarks/flows_speed.py --before /tmp/flows_before.py [--epochs 10] [--repeats 2]
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import torch

import vaekit as vk
import vaekit.configs as configs
from vaekit import fastpath

sys.path.insert(0, str(Path(__file__).resolve().parent))
import family  # noqa: E402  (the benchmarks folder is not a package)


def load_before(path: str):
    """The module at ``path`` as ``flows_before``; its specs are not registered (the current ones are)."""
    spec = importlib.util.spec_from_file_location("flows_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["flows_before"] = module
    register, configs.register_spec = configs.register_spec, lambda role: lambda cls: cls
    try:
        spec.loader.exec_module(module)
    finally:
        configs.register_spec = register
    return module


def pair(before, kind: str) -> dict[str, torch.nn.Module]:
    """The family member ``vae-<kind>`` (seed 0) and a copy whose posterior head is ``before``'s, same weights."""
    after = family.ring_models()[f"vae-{kind}"](0)
    spec = after.posterior_spec
    head = getattr(before, type(after.posterior_head).__name__)(getattr(before, type(spec).__name__)(**vars(spec)), after.z_dim)
    head.load_state_dict(after.posterior_head.state_dict())
    old = copy.deepcopy(after)
    old.posterior_head = head
    return {"before": old, "after": after}


def check_math(before) -> None:
    x = torch.as_tensor(family.ring_data(0)[0][: family.BATCH])
    for dtype in (torch.float32, torch.float64):
        for kind in ("iaf", "planar"):
            for objective in (vk.ELBO(), vk.IWAE(k=5)):
                models = pair(before, kind)
                generator = torch.Generator().manual_seed(3)
                with torch.no_grad():  # move every weight (the zero-initialised IAF layers too)
                    for p in models["after"].parameters():
                        p.add_(0.3 * torch.randn(p.shape, generator=generator))
                models["before"].load_state_dict(models["after"].state_dict())
                out = {}
                for name, m in models.items():
                    m.to(dtype)
                    torch.manual_seed(5)
                    loss = objective(m, x.to(dtype)).loss
                    loss.mean().backward()
                    out[name] = (loss.detach(), [p.grad for p in m.parameters()])
                (la, ga), (lb, gb) = out["before"], out["after"]
                dl = float(((la - lb).abs() / la.abs().clamp_min(1.0)).max())
                dg = max(float((a - b).abs().max() / a.abs().max().clamp_min(1e-30)) for a, b in zip(ga, gb))
                what = f"{str(dtype)[6:]} {kind} {objective.kind}"
                print(f"  {what}: max relative difference of losses {dl:.1e}, of gradients {dg:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="a copy of the flows.py to compare against")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    before = load_before(args.before)
    x = family.ring_data(0)[0]
    print("same math (one evaluation, same weights and noise):")
    check_math(before)

    def fit(model, objective, epochs) -> float:
        start = time.process_time()
        vk.fit(model, x, objective=objective, epochs=epochs, batch_size=family.BATCH, lr=family.LR, seed=0, monitors={})
        return (time.process_time() - start) / epochs

    for kind in ("iaf", "planar"):  # warm-up
        for m in pair(before, kind).values():
            fit(m, vk.ELBO(), 2)
    times: dict[str, list[float]] = {}
    for r in range(args.repeats):
        for kind in ("iaf", "planar"):
            for objective in (vk.ELBO(), vk.IWAE(k=5)):
                models = pair(before, kind)
                for which in ("before", "after")[:: 1 if r % 2 == 0 else -1]:
                    times.setdefault(f"{kind} {objective.kind} {which}", []).append(fit(models[which], objective, args.epochs))
        times.setdefault("vae fast path", []).append(fit(family.ring_models()["vae"](0), vk.ELBO(), args.epochs))
        with fastpath.disabled():
            times.setdefault("vae autograd", []).append(fit(family.ring_models()["vae"](0), vk.ELBO(), args.epochs))
    print(f"CPU ms per epoch, median of {args.repeats} ({args.epochs} epochs each):")
    fast, autograd = (statistics.median(times[k]) for k in ("vae fast path", "vae autograd"))
    for name, values in times.items():
        t = statistics.median(values)
        print(f"  {name}: {1e3 * t:.1f}  (x{t / fast:.2f} of the fast-path VAE, x{t / autograd:.2f} of the autograd VAE)")


if __name__ == "__main__":
    main()
