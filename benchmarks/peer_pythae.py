"""Peer comparison with Pythae 0.1.2: the models Pythae has, on family.py's data, budget and evaluation.

Two modes, two interpreters (this file never imports vaekit in ``run``):

* ``export`` (vaekit's venv) writes the exact arrays of ``benchmarks/family.py`` to ``--data-dir``:
  ``ring_train_s{seed}.npy`` / ``ring_test_s{seed}.npy`` for seeds 0..2 (``family.ring_data``) and
  ``digits_train.npy`` / ``digits_test.npy`` (``family.digits_data``).
* ``run`` (Pythae's venv) trains Pythae's VAE, VAE_IAF, VAMP, IWAE and VQVAE with Pythae's own
  ``BaseTrainer`` on those arrays and prints family.py's markdown tables (mean ± sd over seeds).
* ``speed`` (Pythae's venv with vaekit importable: ``PYTHONPATH=src`` plus safetensors) times
  vaekit's IAF (``vk.fit`` as family.py runs it, and without its per-epoch diversity monitor) and
  Pythae's VAE_IAF on the ring in one process, alternating, in CPU seconds per epoch (process
  time, one thread): side by side, so other load on the machine disturbs both alike.

Usage::

    PYTHONPATH=src .venv/bin/python benchmarks/peer_pythae.py export --data-dir /tmp/peer-data
    /tmp/pythae-venv/bin/python benchmarks/peer_pythae.py run --data-dir /tmp/peer-data \
        [--seeds 3] [--ring-epochs 400] [--digits-epochs 100] [--threads 1] [--json FILE]
    PYTHONPATH=src:<dir holding safetensors> /tmp/pythae-venv/bin/python benchmarks/peer_pythae.py speed \
        [--epochs 20] [--repeats 3]

What is matched to family.py
----------------------------
* Networks: ring MLP 2 -> 128 -> 128 -> z=2 (ReLU) and the mirror decoder; digits 64 -> 256 -> 128 -> z=8
  and mirror with a sigmoid output (BCE). Gaussian encoders have two linear heads (mean, log-variance),
  the same function class as vaekit's single 2Z head.
* Budget: epochs, batch 256, Adam lr 1e-3, seeds 0..seeds-1 (model init seeded with ``torch.manual_seed``,
  then ``BaseTrainerConfig(seed=...)`` seeds the trainer). Time is the wall time of ``trainer.train()``
  divided by the epochs (evaluation excluded; Pythae's per-epoch best-model ``deepcopy`` and its final
  ``save_model`` are part of its training, so they are included).
* Evaluation: test NLL by Pythae's own ``get_nll`` with 1000 importance samples from its posterior
  (``n_samples=1000, batch_size=1000``: one pass of 1000 copies per test point; with n_samples <= batch_size
  get_nll uses ``batch_size`` samples, vae_model.py:142-156), seeded with ``torch.manual_seed(0)``.
  ``get_nll`` returns the mean *log*-likelihood despite its name (vae_model.py:197-198), so NLL = -get_nll.
  Digits also get recon_mse: squared error of the decoded posterior mean (mean of 64 flow draws for the
  IAF, as vaekit's ``reconstruct``) against the binary test images, as family.py computes it; the JSON also
  holds ``recon_mse_sampled`` from Pythae's ``model.reconstruct`` (one posterior draw).
* Ring likelihood: vaekit uses N(x; m, 0.1 I); Pythae's "mse" loss and get_nll assume unit variance.
  Pythae trains and is evaluated on x * sqrt(10) (unit variance there is variance 0.1 in original units)
  and NLL_original = NLL_scaled - D/2 log 10 with D = 2 (checked numerically by ``self_check`` at start).
  The networks divide their input by sqrt(10) and multiply the decoder output by sqrt(10) (fixed
  constants, no parameters), so in original units they are exactly vaekit's networks, init included.

What differs (stated, not corrected)
------------------------------------
* VQ-VAE loss scaling (vq_vae/vq_vae_utils.py:52-62, vq_vae/vq_vae_model.py:126-135): Pythae's commitment
  and codebook terms are ``F.mse_loss(..., reduction="mean")``, i.e. one scalar averaged over the batch
  *and* the code dimensions (per point ||z_e - e||^2 / code_dim), added to a reconstruction term that is
  the per-point *sum* of squared errors (no 1/2, no variance; "mse" always, no BCE option) averaged over
  the batch. vaekit's VQ objective (objectives.VQ) uses per-point squared norms *summed* over the code
  dimensions next to the per-point reconstruction NLL of the model's likelihood (Bernoulli on digits,
  N(m, 0.1 I) on the ring), averaged over the batch, and restarts dead codes each epoch (Pythae does not).
* Pythae's VQVAE quantises each coordinate separately (a codebook of 1-D codes) when the encoder returns a
  flat (B, C) embedding: it reshapes to (B, 1, 1, C) and permutes to (B, 1, C, 1), so the code dimension
  becomes 1 (vq_vae_model.py:60-67 and 95-99). Workaround here: the VQ encoder returns (B, C, 1, 1) and
  the decoder flattens its input, giving 64 codes of dimension code_dim as in vaekit.
* Pythae's IAF is not conditioned on x: ``self.iaf_flow.inverse(z)`` gets z only (vae_iaf_model.py:84
  and 186); its MADE blocks see z alone (normalizing_flows/iaf/iaf_model.py:82-107), with unbounded
  log-scales. vaekit's IAF feeds a context vector h(x) (16 values from the encoder) into every step and
  bounds |log-scale| <= 3. Matched otherwise: 4 steps (n_made_blocks=4), one hidden layer of 32 units
  (n_hidden_in_made=1, hidden_size=32; ReLU in Pythae's MADE, ELU in vaekit), order reversed between steps.
* VAMP: Pythae's pseudo-inputs go through ``Hardtanh(0, 1)`` (vamp_model.py:53-57), made for images in
  [0, 1]; on the ring (scaled units) they can only lie in [0, 1]^2, i.e. [0, 0.32]^2 in original units,
  near the ring's empty centre. vaekit's VampPrior pseudo-inputs are unconstrained. 50 components in both
  (family.py's ``vae-vamp`` on the ring and the digits).
* IWAE: trained with k=5 samples (vaekit's IWAE objective default; Pythae's default is 10). Pythae's
  training loss is the gradient surrogate -sum_k w~_k log w_k (iwae_model.py:123-133), not the bound, so
  the own bound reported (``iwae5_bound``) is get_nll with 5 samples, i.e. the IWAE-5 estimate on the test
  set. family.py's ``vae-iwae`` is vaekit's VAE trained with ``vk.IWAE(k=5)``.
* Which weights are evaluated: without an eval set Pythae's trainer keeps the epoch with the lowest
  training loss (base_trainer.py:131 and 466-474, ``keep_best_on_train``) and saves that as final_model; that model is
  evaluated here, as a Pythae user would load it. vaekit evaluates the last epoch.
* Pythae feeds batches through a per-item ``Dataset.__getitem__`` and a DataLoader (as users run it);
  vaekit's ``fit`` slices tensors. Time per epoch includes that.

Pythae quirks worked around: logging (``logging.disable(INFO)`` during training), tqdm bars
(``TQDM_DISABLE=1``), and VAMP's get_nll print (stdout redirected).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported by pythae

BATCH, LR = 256, 1e-3
RING_SCALE = math.sqrt(10.0)  # unit variance on x * sqrt(10) = variance 0.1 on x
RING_D = 2
NLL_SAMPLES = 1000
IWAE_K = 5
RECON_FLOW_DRAWS = 64
EXPORT_SEEDS = 3
# Pythae model -> the family.py member it stands next to (None: no counterpart there).
PEERS = {
    "ring": {"VAE": "vae", "VAE_IAF": "vae-iaf", "VAMP": "vae-vamp", "IWAE": "vae-iwae", "VQVAE": "vqvae"},
    "digits": {"VAE": "vae", "VAE_IAF": "vae-iaf", "VAMP": "vae-vamp", "IWAE": "vae-iwae", "VQVAE": "vqvae"},
}


# --------------------------------------------------------------------------- export (vaekit's venv)
def export(data_dir: Path) -> None:
    """Write family.py's arrays with vaekit (imports benchmarks/family.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import family  # needs vaekit importable (PYTHONPATH=src)

    data_dir.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for seed in range(EXPORT_SEEDS):
        arrays[f"ring_train_s{seed}"], arrays[f"ring_test_s{seed}"] = family.ring_data(seed)
    arrays["digits_train"], arrays["digits_test"] = family.digits_data()
    for name, a in arrays.items():
        np.save(data_dir / f"{name}.npy", a)
        print(f"  {name}.npy {a.shape} {a.dtype}")


# --------------------------------------------------------------------------- self-check
def self_check() -> float:
    """Max |log N(x; m, 0.1 I) - [Pythae's unit-variance log p(sqrt10 x | sqrt10 m) + D/2 log 10]| (float64)."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    x = 3 * torch.randn(4096, RING_D, generator=g, dtype=torch.float64)
    m = x + torch.randn(4096, RING_D, generator=g, dtype=torch.float64)
    reference = torch.distributions.Normal(m, math.sqrt(0.1)).log_prob(x).sum(-1)
    xs, ms = RING_SCALE * x, RING_SCALE * m
    # Pythae's get_nll expression for "mse" (vae_model.py:173-178): -0.5 * sum sq. error - D/2 log(2 pi)
    pythae = -0.5 * F.mse_loss(ms, xs, reduction="none").sum(-1) - RING_D / 2 * math.log(2 * math.pi)
    err = float((reference - (pythae + RING_D / 2 * math.log(10.0))).abs().max())
    if not err < 1e-9:
        raise AssertionError(f"ring rescaling identity fails: max error {err:.3g}")
    return err


# --------------------------------------------------------------------------- Pythae models (Pythae's venv)
def pythae_models(dataset: str):
    """Name -> builder(seed) of each Pythae model, with family.py's networks for ``dataset``."""
    import torch
    from pythae.models import (
        IWAE,
        VAE,
        VAE_IAF,
        VAMP,
        VQVAE,
        IWAEConfig,
        VAE_IAF_Config,
        VAEConfig,
        VAMPConfig,
        VQVAEConfig,
    )
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from torch import nn

    def mlp(sizes: list[int]) -> nn.Sequential:
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        return nn.Sequential(*layers)

    class Encoder(BaseEncoder):
        """x (scaled by ``scale``) -> trunk -> mean and log-variance (or a (B, C, 1, 1) VQ embedding)."""

        def __init__(self, x_dim: int, hidden: list[int], z_dim: int, scale: float, kind: str) -> None:
            BaseEncoder.__init__(self)
            self.scale, self.kind = scale, kind
            self.trunk = mlp([x_dim, *hidden])
            self.embedding = nn.Linear(hidden[-1], z_dim)
            self.log_var = nn.Linear(hidden[-1], z_dim) if kind == "gaussian" else None

        def forward(self, x: torch.Tensor) -> ModelOutput:
            h = self.trunk(x.reshape(x.shape[0], -1) / self.scale)
            if self.log_var is None:  # VQ: 4-D so that Pythae's codebook has code_dim-dimensional codes
                return ModelOutput(embedding=self.embedding(h)[:, :, None, None])
            return ModelOutput(embedding=self.embedding(h), log_covariance=self.log_var(h))

    class Decoder(BaseDecoder):
        """z -> mirror trunk -> mean (times ``scale``) or Bernoulli probabilities (sigmoid)."""

        def __init__(self, x_dim: int, hidden: list[int], z_dim: int, scale: float, sigmoid: bool) -> None:
            BaseDecoder.__init__(self)
            self.scale = scale
            self.trunk = mlp([z_dim, *hidden[::-1]])
            self.out = nn.Linear(hidden[0], x_dim)
            self.sigmoid = sigmoid

        def forward(self, z: torch.Tensor) -> ModelOutput:
            out = self.out(self.trunk(z.reshape(z.shape[0], -1)))
            return ModelOutput(reconstruction=torch.sigmoid(out) if self.sigmoid else out * self.scale)

    if dataset == "ring":
        x_dim, hidden, z_dim, scale, loss, code_dim = 2, [128, 128], 2, RING_SCALE, "mse", 2
    else:
        x_dim, hidden, z_dim, scale, loss, code_dim = 64, [256, 128], 8, 1.0, "bce", 8
    sigmoid = loss == "bce"
    common = {"input_dim": (x_dim,), "latent_dim": z_dim, "reconstruction_loss": loss}

    def nets(kind: str = "gaussian", z: int = z_dim) -> dict:
        return {
            "encoder": Encoder(x_dim, hidden, z, scale, kind),
            "decoder": Decoder(x_dim, hidden, z, scale, sigmoid),
        }

    def seeded(build):
        def make(seed: int):
            torch.manual_seed(seed)
            return build()

        return make

    return {
        "VAE": seeded(lambda: VAE(VAEConfig(**common), **nets())),
        "VAE_IAF": seeded(
            lambda: VAE_IAF(VAE_IAF_Config(**common, n_made_blocks=4, n_hidden_in_made=1, hidden_size=32), **nets())
        ),
        "VAMP": seeded(lambda: VAMP(VAMPConfig(**common, number_components=50), **nets())),
        "IWAE": seeded(lambda: IWAE(IWAEConfig(**common, number_samples=IWAE_K), **nets())),
        "VQVAE": seeded(
            lambda: VQVAE(
                VQVAEConfig(
                    input_dim=(x_dim,),
                    latent_dim=code_dim,
                    num_embeddings=64,
                    commitment_loss_factor=0.25,
                    quantization_loss_factor=1.0,
                ),
                **nets("vq", code_dim),
            )
        ),
    }


# --------------------------------------------------------------------------- measuring
def train(model, x: np.ndarray, *, epochs: int, seed: int, clock=time.perf_counter):
    """Pythae's BaseTrainer as a user runs it; returns (the model it keeps, seconds per epoch of ``clock``)."""
    import torch
    from pythae.data.datasets import BaseDataset
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    data = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    with tempfile.TemporaryDirectory() as out:
        config = BaseTrainerConfig(
            output_dir=out, num_epochs=epochs, learning_rate=LR, per_device_train_batch_size=BATCH, seed=seed
        )
        logging.disable(logging.INFO)
        try:
            trainer = BaseTrainer(model, train_dataset=BaseDataset(data, torch.zeros(len(data))), training_config=config)
            start = clock()
            trainer.train()
            seconds = (clock() - start) / epochs
        finally:
            logging.disable(logging.NOTSET)
    kept = trainer._best_model  # what trainer saves as final_model (lowest training loss without an eval set)
    kept.eval()
    return kept, seconds


def mean_log_likelihood(model, x, samples: int) -> float:
    """Pythae's get_nll (which returns the mean log-likelihood) with exactly ``samples`` draws per point."""
    import torch

    torch.manual_seed(0)
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        return float(model.get_nll(x, n_samples=samples, batch_size=samples))


def posterior_mean_reconstruction(model, x):
    """Decoder output at E[z|x]: mu, or the mean of 64 seeded IAF draws (as vaekit's reconstruct); VQ: its code."""
    import torch

    with torch.no_grad():
        if model.model_name == "VQVAE":
            return model.reconstruct(x)
        out = model.encoder(x)
        z = out.embedding
        if model.model_name == "VAE_IAF":
            g = torch.Generator().manual_seed(0)
            eps = torch.randn((RECON_FLOW_DRAWS, *z.shape), generator=g)
            z0 = (z + eps * torch.exp(0.5 * out.log_covariance)).reshape(-1, z.shape[-1])
            z = model.iaf_flow.inverse(z0).out.reshape(RECON_FLOW_DRAWS, *z.shape).mean(0)
        return model.decoder(z).reconstruction


def measure(name: str, build, train_x: np.ndarray, test_x: np.ndarray, *, epochs: int, seed: int, ring: bool) -> dict:
    import torch

    scale = RING_SCALE if ring else 1.0
    model, seconds = train(build(seed), train_x * scale, epochs=epochs, seed=seed)
    test = torch.from_numpy(np.ascontiguousarray(test_x * scale, dtype=np.float32))
    row = {"model": name, "seed": seed, "s_per_epoch": seconds}
    shift = RING_D / 2 * math.log(10.0) if ring else 0.0  # NLL_original = NLL_scaled - D/2 log 10
    if name != "VQVAE":
        row["iwae_nll"] = -mean_log_likelihood(model, test, NLL_SAMPLES) - shift
        if ring:
            row["iwae_nll_scaled"] = row["iwae_nll"] + shift
    if name == "IWAE":
        row["iwae5_bound"] = -mean_log_likelihood(model, test, IWAE_K) - shift
    target = test.reshape(len(test), -1)
    recon = posterior_mean_reconstruction(model, test).reshape(len(test), -1)
    torch.manual_seed(0)
    with torch.no_grad():
        sampled = model.reconstruct(test).reshape(len(test), -1)
    # in original units (the ring's squared errors divided by 10)
    row["recon_mse"] = float(((recon - target) ** 2).mean()) / scale**2
    row["recon_mse_sampled"] = float(((sampled - target) ** 2).mean()) / scale**2
    return row


def summarise(rows: list[dict], key: str) -> str:
    values = [r[key] for r in rows if key in r and math.isfinite(r[key])]
    if not values:
        return "n/a"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def load(data_dir: Path, name: str) -> np.ndarray:
    path = data_dir / f"{name}.npy"
    if not path.exists():
        sys.exit(f"{path} is missing: run the export mode first (see --help)")
    return np.load(path)


def run_dataset(dataset: str, args) -> list[dict]:
    members = pythae_models(dataset)
    rows = []
    for name, build in members.items():
        for seed in range(args.seeds):
            if dataset == "ring":
                train_x, test_x = load(args.data_dir, f"ring_train_s{seed}"), load(args.data_dir, f"ring_test_s{seed}")
            else:
                train_x, test_x = load(args.data_dir, "digits_train"), load(args.data_dir, "digits_test")
            epochs = args.ring_epochs if dataset == "ring" else args.digits_epochs
            row = measure(name, build, train_x, test_x, epochs=epochs, seed=seed, ring=dataset == "ring")
            row["vaekit_peer"] = PEERS[dataset][name]
            rows.append(row)
            print(
                f"  {dataset} {name} seed {seed}: " + ", ".join(f"{k} {v:.4g}" for k, v in row.items() if isinstance(v, float)),
                flush=True,
            )
    base_time = statistics.mean(r["s_per_epoch"] for r in rows if r["model"] == "VAE")
    keys = ["iwae_nll"] if dataset == "ring" else ["iwae_nll", "recon_mse"]
    print(f"\n{dataset} (Pythae): mean ± sd over {args.seeds} seeds, {args.threads} threads")
    print("| model | vaekit peer | " + " | ".join(keys) + " | s/epoch | time ratio |")
    print("|---" * (len(keys) + 4) + "|")
    for name in members:
        mine = [r for r in rows if r["model"] == name]
        t = statistics.mean(r["s_per_epoch"] for r in mine)
        cells = [summarise(mine, k) for k in keys]
        peer = PEERS[dataset][name] or "-"
        print(f"| {name} | {peer} | " + " | ".join(cells) + f" | {t:.3f} | {t / base_time:.2f} |")
    print(f"IWAE's own bound (IWAE-{IWAE_K} on the test set): {summarise(rows, 'iwae5_bound')}\n")
    return rows


def speed(epochs: int, repeats: int) -> None:
    """vaekit's IAF against Pythae's VAE_IAF on the ring, alternating in one process (CPU time)."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import family  # needs vaekit importable

    import vaekit as vk

    x, _ = family.ring_data(0)
    build = family.ring_models()["vae-iaf"]
    pythae_iaf = pythae_models("ring")["VAE_IAF"]

    def vaekit_run(monitors: dict | None) -> float:
        model = build(0)
        start = time.process_time()
        vk.fit(model, x, epochs=epochs, batch_size=BATCH, lr=LR, seed=0, monitors=monitors)
        return (time.process_time() - start) / epochs

    runs = {
        "vaekit IAF (fit as family.py: diversity monitor every epoch)": lambda: vaekit_run(None),
        "vaekit IAF (no monitor)": lambda: vaekit_run({}),
        "Pythae VAE_IAF (BaseTrainer)": lambda: train(
            pythae_iaf(0), x * RING_SCALE, epochs=epochs, seed=0, clock=time.process_time
        )[1],
    }
    for run in runs.values():  # warm-up
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(repeats):
        for name in list(runs)[:: 1 if r % 2 == 0 else -1]:
            times[name].append(runs[name]())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); ring, {epochs} epochs x {repeats} repeats")
    pythae = statistics.median(times["Pythae VAE_IAF (BaseTrainer)"])
    for name, values in times.items():
        t = statistics.median(values)
        print(f"  {name}: median {t:.4f} CPU s/epoch ({', '.join(f'{v:.4f}' for v in values)}); x{t / pythae:.2f} of Pythae")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    ex = sub.add_parser("export", help="write family.py's data with vaekit (PYTHONPATH=src, vaekit's venv)")
    ex.add_argument("--data-dir", type=Path, required=True)
    rn = sub.add_parser("run", help="train and evaluate the Pythae models (Pythae's venv)")
    rn.add_argument("--data-dir", type=Path, required=True)
    rn.add_argument("--seeds", type=int, default=3, choices=range(1, EXPORT_SEEDS + 1), metavar=f"1..{EXPORT_SEEDS}")
    rn.add_argument("--ring-epochs", type=int, default=400)
    rn.add_argument("--digits-epochs", type=int, default=100)
    rn.add_argument("--only", choices=["ring", "digits"])
    rn.add_argument("--threads", type=int, default=1)
    rn.add_argument("--json", help="also write every row to this JSON file")
    sp = sub.add_parser("speed", help="vaekit's IAF against Pythae's VAE_IAF, side by side (Pythae's venv + vaekit)")
    sp.add_argument("--epochs", type=int, default=20)
    sp.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.mode == "export":
        export(args.data_dir)
        return

    from importlib.metadata import version

    import torch

    if args.mode == "speed":
        torch.set_num_threads(1)
        speed(args.epochs, args.repeats)
        return
    torch.set_num_threads(args.threads)
    err = self_check()
    print(f"pythae {version('pythae')}, torch {torch.__version__}, {platform.machine()}, {args.threads} threads")
    print(f"self-check: log N(x; m, 0.1 I) = Pythae unit-variance log p on sqrt(10) x + log 10 (max error {err:.1e})")
    results = {}
    for dataset in ("ring", "digits"):
        if args.only and args.only != dataset:
            continue
        results[dataset] = run_dataset(dataset, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
