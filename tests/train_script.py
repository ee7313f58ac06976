"""A small training run driven from a subprocess by test_checkpoint.py (kill -9 / Ctrl-C tests).

Usage: python train_script.py OUT_DIR [--resume] [--epochs N] [--every N]

Trains a VAE on the ring with checkpoints in OUT_DIR, then writes the final model to
OUT_DIR/model and the History to OUT_DIR/history.json. On Ctrl-C it prints how to resume and
exits with 130, as ``vaekit train`` does.
"""

from __future__ import annotations

import argparse
import json
import sys

import vaekit as vk


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--every", type=int, default=1)
    args = parser.parse_args()
    x, _ = vk.data.ring(n=2000, seed=0)
    model = vk.VAE(x_dim=2, z_dim=2, hidden=(64, 64), likelihood=vk.Gaussian(variance="learned"), seed=0)
    try:
        history = vk.fit(
            model,
            x,
            epochs=args.epochs,
            batch_size=32,
            lr=2e-3,
            seed=3,
            monitors={"diversity": vk.Diversity(n_samples=256, every=2)},
            checkpoint_dir=args.out,
            checkpoint_every=args.every,
            resume=args.out if args.resume else None,
            progress=lambda epoch, epochs, record: print(f"epoch {epoch}/{epochs}", flush=True),
        )
    except KeyboardInterrupt:
        print(f"interrupted; resume with: train_script.py {args.out} --resume", flush=True)
        return 130
    model.save(f"{args.out}/model")
    with open(f"{args.out}/history.json", "w") as handle:
        json.dump(history.columns, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
