"""Training throughput on a GPU (or any device): vaekit's MLP VAE, conv VAE and 16-model sweep, and Pythae's.

    PYTHONPATH=src .venv/bin/python benchmarks/gpu.py [--device cuda] [--rows 60000] [--epochs 3]
        [--pythae-python /tmp/pythae-venv/bin/python] [--json FILE]

Data: MNIST-shaped, 60,000 x 784 grey levels in [0, 1]: the bundled 8x8 digits upsampled
bilinearly to 28x28 and repeated (with a random sub-pixel shift per copy so that the rows
differ). Every model trains with batch 256, Adam lr 1e-3, a Bernoulli likelihood:

* ``mlp``: ``vk.VAE(x_dim=784, z_dim=16, hidden=(512, 256))``;
* ``conv``: ``vk.VAE(x_shape=(1, 28, 28), z_dim=16, encoder=vk.Conv2d(channels=(32, 64)))``;
* ``sweep``: ``vk.sweep`` of the MLP VAE over 16 combinations (4 betas x 4 seeds), all at once;
* ``mlp-bf16``: the MLP VAE with ``precision="bf16"``;
* ``pythae-mlp`` (with ``--pythae-python``): Pythae 0.1.2's VAE with the same MLP in its own
  interpreter and trainer, on the same array, same device.

Reported: training samples per second (rows x epochs / wall time of the training call, after
one warm-up epoch that is not counted), and for the sweep the same figure summed over its 16
models. ``--device cpu --rows 2048 --epochs 1`` runs the same code on a CPU in a minute.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import vaekit as vk

BATCH = 256


def mnist_shaped(rows: int, seed: int = 0) -> np.ndarray:
    """(rows, 784) float32 in [0, 1]: upsampled digits, each copy shifted by a random sub-pixel offset."""
    digits, _ = vk.data.digits()  # (1797, 64) in [0, 1]
    images = torch.as_tensor(digits, dtype=torch.float32).reshape(-1, 1, 8, 8)
    rng = np.random.default_rng(seed)
    out = []
    while sum(len(o) for o in out) < rows:
        shift = torch.as_tensor(rng.uniform(-0.5, 0.5, size=2), dtype=torch.float32)
        grid = torch.nn.functional.affine_grid(
            torch.tensor([[[1.0, 0.0, shift[0] / 8], [0.0, 1.0, shift[1] / 8]]]).expand(len(images), 2, 3),
            (len(images), 1, 28, 28),
            align_corners=False,
        )
        big = torch.nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
        out.append(big.clamp(0, 1).reshape(len(images), 784).numpy())
    return np.concatenate(out)[:rows]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def mlp() -> vk.VAE:
    return vk.VAE(x_dim=784, z_dim=16, hidden=(512, 256), likelihood=vk.Bernoulli())


def timed_fit(model, x, device: str, epochs: int, **kw) -> float:
    """Samples per second of ``vk.fit`` over ``epochs`` epochs, after one uncounted warm-up epoch."""
    vk.fit(model, x, epochs=1, batch_size=BATCH, device=device, monitors={}, **kw)
    _sync(device)
    start = time.perf_counter()
    vk.fit(model, x, epochs=epochs, batch_size=BATCH, device=device, monitors={}, **kw)
    _sync(device)
    return len(x) * epochs / (time.perf_counter() - start)


def timed_sweep(x, device: str, epochs: int) -> float:
    template = mlp().to(device)
    over = {"beta": [0.5, 1.0, 2.0, 4.0], "seed": [0, 1, 2, 3]}
    vk.sweep(template, x[: 4 * BATCH], over=over, epochs=1, batch_size=BATCH, diversity=vk.Diversity(n_samples=8, every=10**6))
    _sync(device)
    start = time.perf_counter()
    vk.sweep(template, x, over=over, epochs=epochs, batch_size=BATCH, diversity=vk.Diversity(n_samples=8, every=10**6))
    _sync(device)
    return 16 * len(x) * epochs / (time.perf_counter() - start)


PYTHAE = """
import sys, time, numpy as np, torch
from pythae.models import VAE, VAEConfig
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseEncoder
from pythae.trainers import BaseTrainer, BaseTrainerConfig
from pythae.data.datasets import BaseDataset
x = np.load(sys.argv[1]); device = sys.argv[2]; epochs = int(sys.argv[3])
class Enc(BaseEncoder):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Linear(512, 256), torch.nn.ReLU())
        self.mu, self.lv = torch.nn.Linear(256, 16), torch.nn.Linear(256, 16)
    def forward(self, x):
        h = self.net(x.reshape(len(x), -1)); return ModelOutput(embedding=self.mu(h), log_covariance=self.lv(h))
class Dec(BaseDecoder):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(16, 256), torch.nn.ReLU(), torch.nn.Linear(256, 512), torch.nn.ReLU(),
                                       torch.nn.Linear(512, 784), torch.nn.Sigmoid())
    def forward(self, z):
        return ModelOutput(reconstruction=self.net(z))
def run(n_epochs):
    model = VAE(VAEConfig(input_dim=(784,), latent_dim=16, reconstruction_loss="bce"), encoder=Enc(), decoder=Dec())
    cfg = BaseTrainerConfig(output_dir="/tmp/pythae-gpu", num_epochs=n_epochs, per_device_train_batch_size=256,
                            learning_rate=1e-3, no_cuda=not device.startswith("cuda"))
    data = torch.as_tensor(x)
    trainer = BaseTrainer(model=model, train_dataset=BaseDataset(data, torch.zeros(len(data))), training_config=cfg)
    start = time.perf_counter(); trainer.train(); return time.perf_counter() - start
run(1)
print(len(x) * epochs / run(epochs))
"""


def pythae_rate(python: str, x: np.ndarray, device: str, epochs: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.npy"
        np.save(path, x)
        done = subprocess.run([python, "-c", PYTHAE, str(path), device, str(epochs)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--rows", type=int, default=60000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--pythae-python", help="interpreter of a venv with pythae 0.1.2 (optional)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("no CUDA device here: use --device cpu for a smoke run")
    x = mnist_shaped(args.rows)
    card = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    rates = {
        "mlp": timed_fit(mlp(), x, args.device, args.epochs),
        "mlp-bf16": timed_fit(
            vk.VAE(x_dim=784, z_dim=16, hidden=(512, 256), likelihood=vk.Bernoulli()),
            x,
            args.device,
            args.epochs,
            precision="bf16",
        ),
        "conv": timed_fit(
            vk.VAE(x_shape=(1, 28, 28), z_dim=16, encoder=vk.Conv2d(channels=(32, 64)), likelihood=vk.Bernoulli()),
            x,
            args.device,
            args.epochs,
        ),
        "sweep (16 models)": timed_sweep(x, args.device, args.epochs),
    }
    if args.pythae_python:
        rates["pythae-mlp"] = pythae_rate(args.pythae_python, x, args.device, args.epochs)
    print(f"device: {card}; {args.rows} x 784 rows, batch {BATCH}, {args.epochs} timed epochs")
    print("| model | training samples/s |\n|---|---|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:,.0f} |")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"device": card, "rows": args.rows, "epochs": args.epochs, "rates": rates}, indent=1)
        )


if __name__ == "__main__":
    main()
