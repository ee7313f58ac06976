"""Training on several processes (torch.distributed, gloo, CPU): DDP under torchrun.

The launches are shared by module-scoped fixtures so that the whole file stays well under two
minutes: one torchrun with 2 ranks trains every model of tests/ddp_worker.py, and each test
compares its output with the same program in this process.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import vaekit as vk
from vaekit import distributed
from vaekit.errors import InputError, TrainingError
from vaekit.trainer import check_noise_sharing

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[0] / "src"
WORKER = HERE / "ddp_worker.py"
sys.path.insert(0, str(HERE))
import ddp_worker  # noqa: E402

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def _env(**extra: str) -> dict:
    return {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", **extra}


def _close(a, b, rtol: float = 1e-5) -> float:
    """Largest relative difference of two History columns (lists of floats or of lists)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-3)))


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> Path:
    """OUT of `torchrun --nproc_per_node 2 ddp_worker.py train OUT`."""
    out = tmp_path_factory.mktemp("ddp")
    done = subprocess.run([*TORCHRUN, str(WORKER), "train", str(out)], env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> dict[str, vk.History]:
    torch.set_num_threads(1)
    x, labels = vk.data.ring(1000, seed=0)
    kw = {"epochs": ddp_worker.EPOCHS, "batch_size": ddp_worker.BATCH, "seed": 0}
    out = {}
    for name, (model, conditional, objective) in ddp_worker.models().items():
        out[name] = vk.fit(model, x, labels if conditional else None, objective=objective, **kw)
    source = ddp_worker.streamed(x, tmp_path_factory.mktemp("stream") / "ring.npy")
    out["streamed"] = vk.fit(ddp_worker.models()["vae"][0], source, **kw)
    return out


@pytest.mark.parametrize("name", ["vae", "cvae", "hierarchical", "vqvae-ema", "streamed"])
def test_two_ranks_take_one_process_steps(two_ranks, one_process, name):
    """Same History columns, every epoch's terms equal to float rounding (the issue asks 0.5% of the final loss)."""
    ranks = json.loads((two_ranks / f"{name}.json").read_text())
    alone = one_process[name]
    assert sorted(ranks["columns"]) == sorted(alone.columns)
    assert len(ranks["columns"]["loss"]) == ddp_worker.EPOCHS
    assert not ranks["fast_path"]  # DDP synchronises autograd's gradients
    for column, values in alone.columns.items():
        assert _close(ranks["columns"][column], values) < 1e-4, column
    final = abs(ranks["columns"]["loss"][-1] / alone.columns["loss"][-1] - 1)
    assert final < 1e-5


def test_checkpoint_of_two_ranks_resumes_in_one_process(two_ranks, tmp_path):
    """A checkpoint written by 2 ranks after 10 epochs continues, in 1 process, the uninterrupted run."""
    torch.set_num_threads(1)
    x, _ = vk.data.ring(1000, seed=0)
    kw = {"epochs": ddp_worker.EPOCHS, "batch_size": ddp_worker.BATCH, "seed": 0}
    resumed = vk.fit(vk.VAE(x_dim=2, z_dim=2, hidden=(32, 32), seed=0), x, resume=two_ranks / "checkpointed", **kw)
    alone = vk.fit(vk.VAE(x_dim=2, z_dim=2, hidden=(32, 32), seed=0), x, **kw)
    assert len(resumed) == ddp_worker.EPOCHS
    for column, values in alone.columns.items():
        assert _close(resumed.columns[column], values) < 1e-4, column


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_nodes_on_one_machine_take_one_process_steps(one_process, tmp_path):
    """Two torchrun agents (--nnodes 2, one process each) meeting at a localhost c10d rendezvous."""
    port = _free_port()
    agent = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=2",
        "--nproc_per_node=1",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=localhost:{port}",
        "--rdzv-id=vaekit-test",
        str(WORKER),
        "one",
        str(tmp_path),
    ]
    nodes = [subprocess.Popen(agent, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    try:
        logs = [node.communicate(timeout=240)[0] for node in nodes]
    finally:
        for node in nodes:
            node.kill()
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(log[-2000:] for log in logs)
    ranks = json.loads((tmp_path / "vae.json").read_text())
    assert _close(ranks["columns"]["loss"], one_process["vae"].columns["loss"]) < 1e-4


def test_a_killed_rank_ends_the_job_with_a_clear_error(tmp_path):
    start = time.monotonic()
    done = subprocess.run(
        [*TORCHRUN, str(WORKER), "kill", str(tmp_path)], env=_env(), capture_output=True, text=True, timeout=180
    )
    elapsed = time.monotonic() - start
    assert done.returncode != 0
    report = done.stdout + done.stderr
    assert "SIGKILL" in report and "rank" in report, report[-3000:]
    assert elapsed < 120  # bounded: torchrun stops the surviving rank instead of letting it wait


def test_vaekit_train_nproc_writes_one_run_folder(tmp_path):
    """`vaekit train --nproc 2` gives the run folder of one process, written once, by rank 0."""
    flags = ["train", "--epochs", "3", "--n", "400", "--quiet"]
    two = subprocess.run(
        [sys.executable, "-m", "vaekit", *flags, "--out", str(tmp_path / "two"), "--nproc", "2"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run(
        [sys.executable, "-m", "vaekit", *flags, "--out", str(tmp_path / "one")], env=_env(), capture_output=True, text=True
    )
    assert one.returncode == 0, one.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]  # no .partial left, nothing else written
    rows = [np.loadtxt(tmp_path / d / "history.csv", delimiter=",", skiprows=1, ndmin=2) for d in ("two", "one")]
    np.testing.assert_allclose(rows[0], rows[1], rtol=1e-4)
    assert json.loads((tmp_path / "two" / "run.json").read_text())["processes"] == 2
    assert json.loads((tmp_path / "one" / "run.json").read_text())["processes"] == 1


# ----------------------------------------------------------------------------- in one process
@pytest.mark.parametrize(("total", "size"), [(250, 2), (7, 3), (2, 4), (1000, 1)])
def test_shards_cover_the_batch_once(total, size):
    bounds = [distributed.shard_bounds(total, distributed.World(rank, size)) for rank in range(size)]
    rows = [r for offset, n in bounds for r in range(offset, offset + n)]
    assert rows == list(range(total))
    assert max(n for _, n in bounds) - min(n for _, n in bounds) <= 1


def test_batch_noise_is_the_rows_of_the_whole_batch():
    torch.manual_seed(3)
    whole = torch.randn(5, 10, 3)  # (k, B, Z), as IWAE draws
    torch.manual_seed(3)
    with distributed.batch_rows(4, 3, 10):
        part = torch.distributions.Normal(torch.zeros(5, 3, 3), 1.0).rsample()
    torch.testing.assert_close(part, whole[:, 4:7], rtol=0, atol=0)
    assert torch.equal(torch.randn(2), torch.randn(2)) is False  # the window is gone: plain draws again


def test_a_model_drawing_noise_elsewhere_is_refused():
    model = vk.VAE(x_dim=2, z_dim=2, hidden=(8,), seed=0)
    x = torch.randn(4, 2)

    def objective(model, x, c, epoch=0):
        out = vk.ELBO()(model, x, c, epoch=epoch)
        out.loss = out.loss + 1e-3 * torch.rand(x.shape[0])  # noise per local row: not shareable
        return out

    with pytest.raises(TrainingError, match="cannot be trained on several ranks exactly"):
        check_noise_sharing(model, objective, x, None, 0, torch.device("cpu"))
    check_noise_sharing(model, vk.ELBO(), x, None, 0, torch.device("cpu"))  # the ELBO's noise is shared


def test_timeout_setting_is_checked(monkeypatch):
    monkeypatch.setenv("VAEKIT_DIST_TIMEOUT", "soon")
    with pytest.raises(InputError, match="VAEKIT_DIST_TIMEOUT must be a positive number of seconds. Got 'soon' instead."):
        distributed.timeout_seconds()
    monkeypatch.setenv("VAEKIT_DIST_TIMEOUT", "30")
    assert distributed.timeout_seconds() == 30.0


@pytest.mark.parametrize(
    ("n", "batch", "ranks", "message"),
    [
        (1001, 250, 2, "the last batch has 1 row, fewer than the 2 ranks. batch_size=249 would do."),
        (1000, 1, 2, "each batch has 1 row, fewer than the 2 ranks. batch_size=2 would do."),
    ],
)
def test_schedules_that_leave_a_rank_without_rows_are_refused(n, batch, ranks, message):
    from vaekit.trainer import _check_shards

    with pytest.raises(InputError, match=re.escape(message)):
        _check_shards(n, batch, ranks)
    _check_shards(1000, 250, 2)  # even batches, and a last batch with a row per rank, pass
    _check_shards(1001, 250, 1)


@pytest.mark.parametrize("flag", [["--nproc", "2"], ["--nproc=2"], ["--np", "2"], ["--npro=2"]])
def test_nproc_is_removed_from_the_workers_command_line_in_every_spelling(flag):
    from vaekit.cli import _without_nproc

    assert _without_nproc(["train", *flag, "--n", "400", "--epochs", "3"]) == ["train", "--n", "400", "--epochs", "3"]


def test_nproc_inside_torchrun_is_refused(monkeypatch, capsys):
    from vaekit.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["train", "--nproc", "2", "--epochs", "1"]) == 2
    assert "--nproc starts torchrun, and this process is already one of a torchrun job's 2 ranks" in capsys.readouterr().err
