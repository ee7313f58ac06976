"""A vaekit program for tests/test_distributed.py, run under torchrun (or alone, for reference).

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_worker.py MODE OUT

MODE ``train`` fits four models (the VAE, a one-hot CVAE, a hierarchical VAE, an EMA VQ-VAE) on the ring,
the VAE on the ring streamed from a .npy file, and a VAE for 10 epochs with a checkpoint in
OUT/checkpointed; rank 0 (or the lone process) writes each History to OUT/<name>.json. MODE
``one`` fits the VAE only. MODE ``kill`` trains and kills rank 1 with SIGKILL after its third
epoch.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import torch

import vaekit as vk
from vaekit import distributed

EPOCHS = 20
BATCH = 250  # 1000 points: 4 global batches per epoch, 125 rows per rank with 2 ranks


def models() -> dict[str, tuple[torch.nn.Module, bool, object]]:
    """name -> (model, conditional, objective or None for the model's default)."""
    return {
        "vae": (vk.VAE(x_dim=2, z_dim=2, hidden=(32, 32), seed=0), False, None),
        "cvae": (vk.VAE(x_dim=2, z_dim=2, hidden=(32, 32), condition=vk.OneHot(8), seed=0), True, None),
        "hierarchical": (vk.HierarchicalVAE(x_dim=2, z_dims=(2, 2), hidden=(32, 32), seed=0), False, None),
        # EMA codebook statistics are reduced over ranks; dead-code restarts come from rank 0's
        # share of the data (not one process's), so they are left out of this exact comparison.
        "vqvae-ema": (
            vk.VQVAE(x_dim=2, codebook_size=16, code_dim=2, hidden=(32, 32), seed=0),
            False,
            vk.VQ(ema=0.9, restart_dead=False),
        ),
    }


def streamed(x, path: Path) -> vk.NpyBlocks:
    """``x`` as a .npy file read in blocks of 300 rows (4 blocks for 1000 rows)."""
    np.save(path, x)
    return vk.NpyBlocks(path, block_rows=300)


def main(mode: str, out: Path) -> None:
    torch.set_num_threads(1)
    x, labels = vk.data.ring(1000, seed=0)
    rank = int(os.environ.get("RANK", "0"))
    if mode == "kill":

        def progress(epoch: int, epochs: int, record: dict) -> None:
            if rank == 1 and epoch == 3:
                os.kill(os.getpid(), signal.SIGKILL)

        vk.fit(vk.VAE(x_dim=2, z_dim=2, hidden=(32, 32), seed=0), x, epochs=1000, batch_size=BATCH, progress=progress)
        return
    results = {}
    chosen = models() if mode == "train" else {"vae": models()["vae"]}  # "one": the VAE only
    for name, (model, conditional, objective) in chosen.items():
        condition = labels if conditional else None
        history = vk.fit(model, x, condition, objective=objective, epochs=EPOCHS, batch_size=BATCH, seed=0)
        results[name] = {"columns": history.columns, "fast_path": history.fast_path}
    if mode == "train":  # streamed from a file in shuffled blocks (each rank reads its own copy)
        source = streamed(x, out / f"ring-rank{rank}.npy")
        history = vk.fit(models()["vae"][0], source, epochs=EPOCHS, batch_size=BATCH, seed=0)
        results["streamed"] = {"columns": history.columns, "fast_path": history.fast_path}
        model = vk.VAE(x_dim=2, z_dim=2, hidden=(32, 32), seed=0)
        vk.fit(model, x, epochs=EPOCHS // 2, batch_size=BATCH, seed=0, checkpoint_dir=out / "checkpointed")
    if rank == 0:
        for name, result in results.items():
            (out / f"{name}.json").write_text(json.dumps(result))
    distributed.leave()  # every rank done: leave together, before the rendezvous store goes away


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
