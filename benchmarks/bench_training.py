"""Training speed of vaekit against a straightforward PyTorch loop, side by side in one process.

Recipe (the lecture's): ring data, 2000 points, VAE 2 -> 128 -> 128 -> 2, Gaussian likelihood
with variance 0.1, beta 1, batch 256, Adam lr 1e-3, 400 epochs, diversity of 2048 prior samples
after every epoch.

Prints, in one run:
  * the arithmetic bound (only the matrix products of the run, with preallocated outputs),
  * the straightforward loop (DataLoader, torch.optim.Adam, autograd, .item() per batch),
    written here from the recipe and started from the same initial weights as vaekit's model,
  * vaekit.fit (fast path) and vaekit.fit with the fast path disabled (generic autograd loop),
  * vaekit.sweep of 16 models (variance 0.01 .. 5 x 4 seeds) against 16 sequential loops,
  * test IWAE NLL (nats, k importance samples) of every trained model, and inference throughput.

Usage: PYTHONPATH=src python benchmarks/bench_training.py [--epochs 400] [--seeds 3] [--quick]
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time

import torch
from torch import nn

import vaekit as vk
from vaekit import fastpath

VARIANCE, BATCH, LR, HIDDEN, N_DIV = 0.1, 256, 1e-3, 128, 2048


# --------------------------------------------------------------------------- timing
class Clock:
    """Wall time and CPU time of a run, with one tick per epoch.

    The machine these numbers come from is shared with other jobs, which stretches wall time
    by whatever share of the cores they take. CPU time (``time.process_time``: this process's
    user + system time) counts only the time we actually ran; with one thread
    (``--threads 1``) it is what the run costs on an otherwise idle core. With more threads it
    also counts threads spinning at barriers, so compare CPU times only at one thread.
    """

    def __init__(self) -> None:
        self.start = (time.perf_counter(), time.process_time())
        self.ends: list[tuple[float, float]] = []

    def tick(self, *_args) -> None:
        self.ends.append((time.perf_counter(), time.process_time()))

    @property
    def times(self) -> tuple[float, float]:
        """(wall, cpu) seconds from start to the last tick."""
        return self.ends[-1][0] - self.start[0], self.ends[-1][1] - self.start[1]

    def scaled(self, epochs: int) -> tuple[float, float]:
        """(wall, cpu) extrapolated from the epochs timed to ``epochs``."""
        factor = epochs / len(self.ends)
        wall, cpu = self.times
        return wall * factor, cpu * factor


def show(name: str, times: tuple[float, float], base: tuple[float, float] | None = None, base_name: str = "") -> None:
    line = f"{name:<44s} wall {times[0]:7.2f} s   cpu {times[1]:7.2f} s"
    if base is not None:
        line += f"   = {times[0] / base[0]:.3f} (wall) / {times[1] / base[1]:.3f} (cpu) x {base_name}"
    print(line)


# --------------------------------------------------------------------------- reference loop
class RefVAE(nn.Module):
    """The recipe's network written the plain way: separate mean and log-variance layers."""

    def __init__(self, x_dim: int = 2, z_dim: int = 2, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(x_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.mu, self.logvar = nn.Linear(hidden, z_dim), nn.Linear(hidden, z_dim)
        self.dec = nn.Sequential(
            nn.Linear(z_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, x_dim)
        )
        self.z_dim = z_dim

    def forward(self, x):
        h = self.trunk(x)
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.dec(z), mu, logvar

    @torch.no_grad()
    def copy_from(self, model: vk.VAE) -> RefVAE:
        """Same initial weights as a vaekit VAE (its last encoder layer holds [mean; logvar])."""
        enc, dec = model.encoder.net, model.decoder.net
        self.trunk[0].load_state_dict(enc[0].state_dict())
        self.trunk[2].load_state_dict(enc[2].state_dict())
        z = self.z_dim
        self.mu.weight.copy_(enc[4].weight[:z]), self.mu.bias.copy_(enc[4].bias[:z])
        self.logvar.weight.copy_(enc[4].weight[z:]), self.logvar.bias.copy_(enc[4].bias[z:])
        self.dec.load_state_dict(dec.state_dict())
        return self


def reference_loop(model: RefVAE, x: torch.Tensor, epochs: int, seed: int, variance: float = VARIANCE, tick=None) -> dict:
    """A straightforward training loop for the recipe; returns per-epoch mean loss and diversity."""
    torch.manual_seed(seed)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=BATCH, shuffle=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    losses, diversities = [], []
    for _ in range(epochs):
        model.train()
        total = 0.0
        for (xb,) in loader:
            x_rec, mu, logvar = model(xb)
            recon = ((xb - x_rec) ** 2).sum(1) / (2 * variance)
            kl = -0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(1)
            loss = (recon + kl).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * xb.shape[0]
        model.eval()
        with torch.no_grad():
            samples = model.dec(torch.randn(N_DIV, model.z_dim))
            diversities.append(samples.var(0, unbiased=False).mean().item())
        losses.append(total / x.shape[0])
        if tick is not None:
            tick()
    return {"loss": losses, "diversity": diversities}


# --------------------------------------------------------------------------- quality
@torch.no_grad()
def iwae_nll(encode, decode, variance: float, x: torch.Tensor, k: int, seed: int) -> float:
    """Mean -log p(x) in nats, importance-weighted with k samples from q(z|x) (Burda et al.)."""
    gen = torch.Generator().manual_seed(seed)
    mu, logvar = encode(x)  # (N, Z)
    std = (0.5 * logvar).exp()
    eps = torch.randn(k, *mu.shape, generator=gen)  # (K, N, Z)
    z = mu + eps * std
    loc = decode(z.reshape(-1, z.shape[-1])).view(k, x.shape[0], -1)  # (K, N, D)
    d = x.shape[1]
    log_px = -((x - loc) ** 2).sum(-1) / (2 * variance) - 0.5 * d * math.log(2 * math.pi * variance)
    log_pz = -0.5 * (z**2).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)
    log_qz = -0.5 * (eps**2).sum(-1) - std.log().sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)
    log_w = log_px + log_pz - log_qz  # (K, N)
    return float(-(torch.logsumexp(log_w, 0) - math.log(k)).mean())


def nll_of_vaekit(model: vk.VAE, x: torch.Tensor, k: int) -> float:
    def encode(xb):
        qz = model.encode_batch(xb)
        return qz.mean, 2 * qz.stddev.log()

    return iwae_nll(encode, lambda z: model.decode_batch(z).mean, model.likelihood.variance, x, k, seed=123)


def nll_of_reference(model: RefVAE, x: torch.Tensor, k: int, variance: float = VARIANCE) -> float:
    def encode(xb):
        h = model.trunk(xb)
        return model.mu(h), model.logvar(h)

    return iwae_nll(encode, model.dec, variance, x, k, seed=123)


# --------------------------------------------------------------------------- arithmetic bound
def arithmetic_bound(epochs: int, n: int, models: int = 1, x_dim: int = 2, z_dim: int = 2, hidden: int = HIDDEN) -> float:
    """Seconds for only the matrix products of a training run (forward, backward, diversity).

    Every product runs with a preallocated output, so this is what the arithmetic costs with
    no autograd, optimizer, Python or allocation overhead. ``models`` > 1 uses batched
    products (M, B, in) x (M, in, out), as a sweep does. Timed over a fraction of the epochs
    and scaled.
    """
    layers = [(x_dim, hidden), (hidden, hidden), (hidden, 2 * z_dim), (z_dim, hidden), (hidden, hidden), (hidden, x_dim)]
    batches = [BATCH] * (n // BATCH) + ([n % BATCH] if n % BATCH else [])
    mm = torch.bmm if models > 1 else torch.mm

    def t(*shape):
        return torch.randn(models, *shape) if models > 1 else torch.randn(*shape)

    def tr(a):
        return a.transpose(-1, -2)

    plans = []
    for b in sorted(set(batches)):
        ops = []
        for i, (fan_in, fan_out) in enumerate(layers):
            x_in, w, dy = t(b, fan_in), t(fan_out, fan_in), t(b, fan_out)
            ops.append((x_in, tr(w), t(b, fan_out)))  # forward  (B, in) @ (in, out)
            ops.append((tr(dy), x_in, t(fan_out, fan_in)))  # dW = dY^T X
            if i != 0:
                ops.append((dy, w, t(b, fan_in)))  # dX = dY W
        plans.append((b, ops))
    div_ops = [(t(N_DIV, fi), tr(t(fo, fi)), t(N_DIV, fo)) for fi, fo in layers[3:]]
    run_epochs = max(1, epochs // 8)
    ops_of = dict(plans)
    for _ in range(2):  # warm-up
        for a, b_, out in ops_of[batches[0]]:
            mm(a, b_, out=out)
    clock = Clock()
    for _ in range(run_epochs):
        for b in batches:
            for a, b_, out in ops_of[b]:
                mm(a, b_, out=out)
        for a, b_, out in div_ops:
            mm(a, b_, out=out)
        clock.tick()
    return clock.scaled(epochs)


# --------------------------------------------------------------------------- inference
def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


@torch.no_grad()
def inference_rate(model: vk.VAE, n: int = 1_000_000, chunk: int | None = None) -> tuple[float, float]:
    """Points per second of encode(x).mean and decode(z).mean on n points (under no_grad).

    ``chunk=None`` passes all n points to the public ``model.encode`` / ``model.decode`` at once;
    a chunk size feeds ``encode_batch`` / ``decode_batch`` that many rows at a time, which keeps
    the (chunk, 128) activations in cache instead of allocating n x 128 floats per layer.
    """
    x = torch.randn(n, model.x_dim)

    def encode(xs):
        if chunk is None:
            return model.encode(xs).mean
        return torch.cat([model.encode_batch(xs[i : i + chunk]).mean for i in range(0, xs.shape[0], chunk)])

    def decode(zs):
        if chunk is None:
            return model.decode(zs).mean
        return torch.cat([model.decode_batch(zs[i : i + chunk]).mean for i in range(0, zs.shape[0], chunk)])

    encode(x[:1000]), decode(torch.randn(1000, model.z_dim))
    z, t_enc = timed(encode, x)
    x_back, t_dec = timed(decode, z)
    assert x_back.shape == x.shape
    return n / t_enc, n / t_dec


# --------------------------------------------------------------------------- main
def spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} (min {min(values):.4f}, max {max(values):.4f}, n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=400)
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the reference loop and of fit (quality spread)")
    parser.add_argument("--k", type=int, default=1000, help="importance samples of the test IWAE NLL")
    parser.add_argument("--full-sequential", action="store_true", help="really run 16 sequential reference loops")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 4 epochs, 1 seed, k=16, 2x2 sweep")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.seeds, args.k = 4, 1, 16
    if args.threads:
        torch.set_num_threads(args.threads)
    x_np, _ = vk.data.ring(2000, seed=0)
    xt_np, _ = vk.data.ring(2000, seed=1)
    x, x_test = torch.from_numpy(x_np), torch.from_numpy(xt_np)
    n, epochs = x.shape[0], args.epochs
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"recipe: ring n={n}, hidden {HIDDEN}x2, batch {BATCH}, {epochs} epochs, diversity every epoch ({N_DIV} samples)")

    # Warm-up: first calls pay for lazy initialisation (thread pools, kernels) in both loops.
    warm = vk.VAE(2, 2, seed=0)
    reference_loop(RefVAE().copy_from(warm), x, 1, 0), vk.fit(warm, x, epochs=1)
    vk.sweep(warm, x, over={"seed": [0, 1]}, epochs=1)

    bound = arithmetic_bound(epochs, n)
    print("\nEach time: wall clock and this process's CPU time (see Clock: compare CPU times at --threads 1).")
    show("arithmetic bound, 1 model", bound)

    ref_t, fit_t, ref_nll, fit_nll, fit_models, fit_hist = [], [], [], [], [], []
    for seed in range(args.seeds):
        model = vk.VAE(2, 2, likelihood=vk.Gaussian(variance=VARIANCE), seed=seed)
        ref = RefVAE().copy_from(model)
        clock_ref = Clock()
        reference_loop(ref, x, epochs, seed, tick=clock_ref.tick)
        clock_fit = Clock()
        history = vk.fit(model, x, epochs=epochs, batch_size=BATCH, lr=LR, seed=seed, progress=clock_fit.tick)
        ref_t.append(clock_ref.times), fit_t.append(clock_fit.times)
        fit_models.append(model), fit_hist.append(history)
        ref_nll.append(nll_of_reference(ref, x_test, args.k)), fit_nll.append(nll_of_vaekit(model, x_test, args.k))
        print(
            f"seed {seed}: straightforward {ref_t[-1][0]:6.2f} s, vk.fit {fit_t[-1][0]:6.2f} s (wall); "
            f"test IWAE NLL ref {ref_nll[-1]:.4f} fit {fit_nll[-1]:.4f}; final diversity fit {history.diversity[-1]:.3f}"
        )
    generic_model = vk.VAE(2, 2, likelihood=vk.Gaussian(variance=VARIANCE), seed=0)
    clock_gen = Clock()
    with fastpath.disabled():
        vk.fit(generic_model, x, epochs=epochs, batch_size=BATCH, lr=LR, seed=0, progress=clock_gen.tick)
    drift = max((a - b).abs().max().item() for a, b in zip(generic_model.parameters(), fit_models[0].parameters()))

    def mean2(pairs):
        return statistics.mean(p[0] for p in pairs), statistics.mean(p[1] for p in pairs)

    ref_mean = mean2(ref_t)
    print()
    show(f"straightforward loop (mean of {len(ref_t)})", ref_mean)
    show("arithmetic bound, 1 model", bound, ref_mean, "straightforward")
    show(f"vk.fit, fast path (mean of {len(fit_t)})", mean2(fit_t), ref_mean, "straightforward")
    show("vk.fit, generic autograd (seed 0)", clock_gen.times, ref_mean, "straightforward")
    print(
        f"  fast vs generic path, seed 0: max |weight difference| after {epochs} epochs = {drift:.2e}, "
        f"test IWAE NLL generic {nll_of_vaekit(generic_model, x_test, args.k):.4f} vs fast {fit_nll[0]:.4f}"
    )
    print(f"test IWAE NLL (k={args.k}) straightforward: {spread(ref_nll)}")
    print(f"test IWAE NLL (k={args.k}) vk.fit:          {spread(fit_nll)}")

    variances = [0.01, 0.1, 1.0, 5.0] if not args.quick else [0.1, 1.0]
    seeds = list(range(4)) if not args.quick else [0, 1]
    count = len(variances) * len(seeds)
    bound_m = arithmetic_bound(epochs, n, models=count)
    bound_seq = (count * bound[0], count * bound[1])
    clock_sweep = Clock()
    over = {"variance": variances, "seed": seeds}
    result = vk.sweep(vk.VAE(2, 2), x, over=over, epochs=epochs, batch_size=BATCH, lr=LR, progress=clock_sweep.tick)
    sweep_t = clock_sweep.times
    if args.full_sequential:
        seq = []
        for seed in seeds:
            for v in variances:
                m = vk.VAE(2, 2, likelihood=vk.Gaussian(variance=v), seed=seed)
                clock = Clock()
                reference_loop(RefVAE().copy_from(m), x, epochs, seed, v, tick=clock.tick)
                seq.append(clock.times)
        seq_t, how = (sum(p[0] for p in seq), sum(p[1] for p in seq)), "measured"
    else:
        seq_t, how = (count * ref_mean[0], count * ref_mean[1]), f"{count} x the straightforward loop above"
    best_bound = min(bound_m, bound_seq)
    print(f"\nsweep of {count} models (variance {variances} x seed {seeds}):")
    show(f"arithmetic bound, {count} batched", bound_m)
    show(f"arithmetic bound, {count} x 1 model", bound_seq)
    show(f"{count} sequential loops ({how})", seq_t)
    show("vk.sweep", sweep_t, best_bound, "the lower bound")
    print(
        f"  speed-up of vk.sweep over {count} sequential loops: {seq_t[0] / sweep_t[0]:.2f} x (wall), "
        f"{seq_t[1] / sweep_t[1]:.2f} x (cpu)"
    )
    # Equality with fit: the sweep's (variance 0.1, seed 0) model against fit's seed-0 model above.
    i = next(j for j, row in enumerate(result.table) if row["variance"] == 0.1 and row["seed"] == 0)
    same = max((a - b).abs().max().item() for a, b in zip(result.models[i].parameters(), fit_models[0].parameters()))
    print(f"  swept (variance 0.1, seed 0) vs vk.fit alone: max |weight difference| after {epochs} epochs = {same:.2e}")
    row = result.table[i]
    print(f"  final-epoch neg_elbo: swept {row['neg_elbo']:.4f}, vk.fit alone {fit_hist[0].neg_elbo[-1]:.4f}")
    print(result.format_table())

    n_inf = 100_000 if args.quick else 1_000_000
    print()
    for chunk in (None, 4096, 16384):
        enc, dec = inference_rate(fit_models[0], n_inf, chunk)
        how = "public encode/decode, all at once" if chunk is None else f"encode_batch/decode_batch, chunks of {chunk}"
        print(f"inference ({n_inf:,} points, {how}): encode {enc:,.0f} points/s, decode {dec:,.0f} points/s")


if __name__ == "__main__":
    main()
