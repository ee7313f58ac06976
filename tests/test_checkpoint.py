"""Checkpoints: atomic writes, bit-exact resume (in process and after kill -9 / Ctrl-C), NaN faults."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

import vaekit as vk
from vaekit import checkpoint as ck
from vaekit import fastpath
from vaekit.checkpoint import nan_safe_equal

SRC = Path(__file__).resolve().parents[1] / "src"
SCRIPT = Path(__file__).resolve().parent / "train_script.py"
X, LABELS = vk.data.ring(n=300, seed=0)


def make_model(**kw):
    kw = {"hidden": (16, 16), "seed": 0, **kw}
    return vk.VAE(2, 2, **kw)


def train(model, epochs=6, x=X, **kw):
    kw = {"batch_size": 64, "seed": 1, "monitors": {"diversity": vk.Diversity(n_samples=64, every=2)}, **kw}
    return vk.fit(model, x, epochs=epochs, **kw)


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


class InterruptAt(vk.Callback):
    """Raise KeyboardInterrupt at the end of epoch ``at`` (counting from 1), like Ctrl-C."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_epoch_end(self, epoch, record, model):
        if epoch + 1 == self.at:
            raise KeyboardInterrupt


def manifest(folder: Path) -> dict:
    return json.loads((folder / "checkpoint" / "checkpoint.json").read_text())


# ---------------------------------------------------------------------------- resume
CASES = {
    "plain": ({}, {}),
    "learned variance + val": ({"likelihood": vk.Gaussian(variance="learned")}, {"val": 0.2}),
    "onehot condition": ({"condition": vk.OneHot(8)}, {"condition": LABELS, "grad_clip": 1.0}),
    "iwae + standardize": ({"standardize": True}, {"objective": vk.IWAE(k=3)}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_resume_after_ctrl_c_equals_uninterrupted_run_bit_for_bit(tmp_path, case):
    model_kw, fit_kw = CASES[case]
    reference = make_model(**model_kw)
    expected = train(reference, **fit_kw)

    with pytest.raises(KeyboardInterrupt):
        train(make_model(**model_kw), checkpoint_dir=tmp_path, checkpoint_every=100, callbacks=[InterruptAt(3)], **fit_kw)
    assert manifest(tmp_path)["epoch"] == 3  # saved on Ctrl-C although no write was scheduled

    resumed = make_model(**model_kw)
    history = train(resumed, resume=tmp_path, **fit_kw)
    assert len(history) == 6
    assert nan_safe_equal(history.columns, expected.columns)
    assert same_weights(resumed, reference)


def _stopping_run(**kw):
    """Training that early stopping ends with a best epoch before the last (val loss bounces at lr 0.05)."""
    kw = {"epochs": 60, "lr": 0.05, "val": 0.25, "monitors": {}, **kw}
    return train(make_model(hidden=(16,)), **kw)


def test_resume_with_early_stopping_equals_uninterrupted_run_at_every_epoch(tmp_path):
    # Before 0.2 an early stopper started afresh on resume: it forgot the best epoch and weights of
    # the epochs before the interrupt, so a resumed run stopped later and restored other weights.
    reference = make_model(hidden=(16,))
    stopper = vk.EarlyStopping(patience=4)
    expected = train(reference, epochs=60, lr=0.05, val=0.25, monitors={}, callbacks=[stopper])
    stopped = len(expected)
    assert stopped < 60 and stopper.best_epoch < stopped - 1  # the weights restored are not the last epoch's
    for at in range(1, stopped):
        folder = tmp_path / f"at{at}"
        with pytest.raises(KeyboardInterrupt):
            _stopping_run(checkpoint_dir=folder, checkpoint_every=100, callbacks=[vk.EarlyStopping(patience=4), InterruptAt(at)])
        resumed_stopper = vk.EarlyStopping(patience=4)
        resumed = make_model(hidden=(16,), seed=9)
        history = train(resumed, epochs=60, lr=0.05, val=0.25, monitors={}, resume=folder, callbacks=[resumed_stopper])
        assert nan_safe_equal(history.columns, expected.columns), at
        assert (resumed_stopper.best_epoch, resumed_stopper.best) == (stopper.best_epoch, stopper.best), at
        assert same_weights(resumed, reference), at
    # Resuming a run that had stopped early (the final checkpoint, e.g. after Ctrl-C during the
    # results) trains nothing more: the stopper knows its patience had run out.
    finished = tmp_path / "finished"
    _stopping_run(checkpoint_dir=finished, callbacks=[vk.EarlyStopping(patience=4)])
    again, again_stopper = make_model(hidden=(16,), seed=9), vk.EarlyStopping(patience=4)
    history = train(again, epochs=60, lr=0.05, val=0.25, monitors={}, resume=finished, callbacks=[again_stopper])
    assert nan_safe_equal(history.columns, expected.columns) and len(history) == stopped
    assert same_weights(again, reference)


def test_a_stopper_resumed_with_other_settings_is_refused(tmp_path):
    without_weights = [vk.EarlyStopping(4, restore_best=False), InterruptAt(24)]  # its best epoch is before 24
    with pytest.raises(KeyboardInterrupt):
        _stopping_run(checkpoint_dir=tmp_path, checkpoint_every=100, callbacks=without_weights)
    needs = r"resume: EarlyStopping\(restore_best=True\) needs the weights of the best epoch so far \(\d+\)"
    with pytest.raises(vk.InputError, match=needs):
        _stopping_run(resume=tmp_path, callbacks=[vk.EarlyStopping(patience=4)])
    other = vk.EarlyStopping(patience=4, monitor="val_neg_elbo", restore_best=False)
    with pytest.raises(vk.InputError, match=r"^resume: EarlyStopping.monitor must match the checkpoint's early stopping "):
        _stopping_run(resume=tmp_path, callbacks=[other])


def test_early_stopping_added_on_resume_replays_the_history_or_says_why_it_cannot(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _stopping_run(checkpoint_dir=tmp_path, checkpoint_every=100, callbacks=[InterruptAt(8)])
    val = manifest(tmp_path)["history"]["val_loss"]
    best = int(np.argmin(val))
    assert best != 7  # the best of the 8 epochs is not the last: its weights are not in the checkpoint
    with pytest.raises(
        vk.InputError,
        match=rf"resume: EarlyStopping\(restore_best=True\) needs the weights of the best epoch so far \({best + 1}\), "
        r"which the checkpoint does not hold \(it holds no such state of this early stopping: written without it, "
        r"with restore_best=False, or with the callbacks in another order\)\. Resume with",
    ):
        _stopping_run(resume=tmp_path, callbacks=[vk.EarlyStopping(patience=4)])
    # Without restoring weights the replayed history decides exactly as an uninterrupted run.
    reference = vk.EarlyStopping(patience=4, restore_best=False)
    expected = _stopping_run(callbacks=[reference])
    replayed = vk.EarlyStopping(patience=4, restore_best=False)
    history = _stopping_run(resume=tmp_path, callbacks=[replayed])
    assert nan_safe_equal(history.columns, expected.columns)
    assert (replayed.best_epoch, replayed.best) == (reference.best_epoch, reference.best)


def test_model_rebuilt_with_other_seed_still_resumes_exactly(tmp_path):
    reference = make_model()
    expected = train(reference)
    with pytest.raises(KeyboardInterrupt):
        train(make_model(), checkpoint_dir=tmp_path, callbacks=[InterruptAt(2)])
    resumed = make_model(seed=123)  # the checkpoint's weights replace the fresh ones
    assert nan_safe_equal(train(resumed, resume=tmp_path).columns, expected.columns)
    assert same_weights(resumed, reference)


def test_checkpoint_folder_layout_and_schedule(tmp_path):
    writes = []
    original = ck.write_checkpoint
    ck.write_checkpoint = lambda folder, snap, *a: writes.append(snap.epoch) or original(folder, snap, *a)
    try:
        history = train(make_model(), epochs=7, checkpoint_dir=tmp_path, checkpoint_every=3)
    finally:
        ck.write_checkpoint = original
    assert writes == [3, 6, 7]  # every 3 epochs and at the end
    folder = tmp_path / "checkpoint"
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint.json", "state-000007.safetensors"]
    meta = manifest(tmp_path)
    assert meta["format"] == "vaekit-checkpoint" and meta["epoch"] == 7
    assert meta["model_config"] == make_model().config
    assert (
        meta["settings"]["batch_size"] == 64 and meta["settings"]["objective"] == "ELBO(beta=1.0, warmup_epochs=0, free_bits=0.0)"
    )
    assert nan_safe_equal(meta["history"], history.columns)
    # safetensors, not pickle: an 8-byte little-endian header length, then a JSON header.
    blob = (folder / "state-000007.safetensors").read_bytes()
    header = json.loads(blob[8 : 8 + int.from_bytes(blob[:8], "little")])
    assert "model.encoder.net.0.weight" in header and header["rng.cpu"]["dtype"] == "U8"
    assert any(k.startswith("optimizer.") for k in header)


def test_resume_into_another_folder(tmp_path):
    reference = make_model()
    expected = train(reference)
    first, second = tmp_path / "first", tmp_path / "second"
    _checkpointed(first)
    resumed = make_model()
    with pytest.raises(KeyboardInterrupt):  # interrupted again right away: the new folder gets the state
        train(resumed, resume=first, checkpoint_dir=second, checkpoint_every=100, callbacks=[InterruptAt(3)])
    assert manifest(first)["epoch"] == 2 and manifest(second)["epoch"] == 3
    again = make_model()
    assert nan_safe_equal(train(again, resume=second).columns, expected.columns)
    assert same_weights(again, reference)


def test_resuming_a_finished_run_trains_nothing(tmp_path):
    reference = make_model()
    expected = train(reference, checkpoint_dir=tmp_path)
    again = make_model(seed=5)
    history = train(again, resume=tmp_path)
    assert nan_safe_equal(history.columns, expected.columns)
    assert same_weights(again, reference)


def test_resume_can_extend_training(tmp_path):
    reference = make_model()
    expected = train(reference, epochs=8)
    short = make_model()
    train(short, epochs=4, checkpoint_dir=tmp_path, monitors={"diversity": vk.Diversity(n_samples=64, every=2)})
    extended = make_model()
    history = train(extended, epochs=8, resume=tmp_path)
    assert len(history) == 8
    assert history.loss == expected.loss  # epochs 1-4 from the checkpoint, 5-8 trained again
    assert same_weights(extended, reference)


# ---------------------------------------------------------------------------- mismatches
def _checkpointed(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        train(make_model(), checkpoint_dir=tmp_path, callbacks=[InterruptAt(2)])
    return tmp_path


def test_resume_refuses_another_model(tmp_path):
    folder = _checkpointed(tmp_path)
    with pytest.raises(vk.InputError, match=r"resume: the model does not match the checkpoint in .*checkpoint\. The checkpoint"):
        train(make_model(hidden=(8,)), resume=folder)


@pytest.mark.parametrize(
    ("change", "key"),
    [({"batch_size": 32}, "batch_size"), ({"seed": 2}, "seed"), ({"objective": vk.ELBO(beta=2.0)}, "objective")],
)
def test_resume_refuses_changed_settings(tmp_path, change, key):
    folder = _checkpointed(tmp_path)
    with pytest.raises(vk.InputError, match=rf"resume: {key} must match the checkpoint in .* to continue the same run\. Got "):
        train(make_model(), resume=folder, **change)


def test_resume_refuses_other_data(tmp_path):
    folder = _checkpointed(tmp_path)
    with pytest.raises(vk.InputError, match="resume: data_sha256 must match"):
        train(make_model(), x=X + 1, resume=folder)


def test_resume_with_lower_lr_warns_and_applies_it(tmp_path, caplog):
    folder = _checkpointed(tmp_path)
    model = make_model()
    with caplog.at_level(logging.WARNING, logger="vaekit.checkpoint"):
        train(model, resume=folder, lr=1e-4)
    assert "resume: lr changed from 0.001 to 0.0001" in caplog.text
    assert manifest(folder)["settings"]["lr"] == 1e-4


def test_resume_refuses_fewer_epochs_than_saved(tmp_path):
    folder = _checkpointed(tmp_path)
    with pytest.raises(
        vk.InputError, match=r"^epochs must be at least the checkpoint's epoch \(2\) to resume from .*\. Got 1 instead\.$"
    ):
        train(make_model(), epochs=1, resume=folder)


def test_resume_without_checkpoint(tmp_path):
    with pytest.raises(vk.FileFormatError, match=r"resume: no checkpoint in .* \(.*checkpoint\.json does not exist\)\."):
        train(make_model(), resume=tmp_path)


def test_resume_refuses_pickle_path(tmp_path):
    with pytest.raises(vk.FileFormatError, match=r"looks like a pickle file \(\.pt\); vaekit never loads pickles"):
        train(make_model(), resume=tmp_path / "run.pt")


def test_bad_checkpoint_arguments():
    with pytest.raises(vk.InputError, match="checkpoint_every must be an integer >= 1. Got 0 instead."):
        train(make_model(), checkpoint_every=0)
    with pytest.raises(vk.InputTypeError, match="resume must be a folder path"):
        train(make_model(), resume=3)


# ---------------------------------------------------------------------------- damaged files
def _tamper_state(folder: Path) -> None:
    state = next((folder / "checkpoint").glob("state-*.safetensors"))
    blob = bytearray(state.read_bytes())
    blob[-3] ^= 0x40
    state.write_bytes(bytes(blob))


def _edit_manifest(key, value):
    def edit(folder: Path) -> None:
        path = folder / "checkpoint" / "checkpoint.json"
        meta = json.loads(path.read_text())
        meta[key] = value
        path.write_text(json.dumps(meta))

    return edit


def _truncate_manifest(folder: Path) -> None:
    path = folder / "checkpoint" / "checkpoint.json"
    path.write_text(path.read_text()[:100])


DAMAGE = {
    "tampered state": (
        _tamper_state,
        r"does not match the SHA-256 in checkpoint\.json: the file is truncated or tampered with\.",
    ),
    "truncated json": (_truncate_manifest, r"checkpoint\.json is not valid JSON .*; the file is truncated or corrupted\."),
    "future version": (_edit_manifest("format_version", 99), r"has format_version 99; this vaekit \(.*\) reads version 1\."),
    "not ours": (_edit_manifest("format", "other"), r"is not a vaekit checkpoint \(format must be 'vaekit-checkpoint'\)\."),
    "path escape": (
        _edit_manifest("state_file", "../../etc/passwd"),
        r"state_file must be a name like 'state-000010\.safetensors'",
    ),
    "wrong type": (_edit_manifest("epoch", "2"), r"'epoch' has the wrong type \(str\)\."),
    "short history": (_edit_manifest("history", {"loss": [1.0]}), r"history column 'loss' must hold 2 numbers"),
    "missing key": (_edit_manifest("optimizer", None), r"'optimizer' has the wrong type \(NoneType\)\."),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_checkpoint_gives_clear_error(tmp_path, damage):
    spoil, message = DAMAGE[damage]
    folder = _checkpointed(tmp_path)
    spoil(folder)
    with pytest.raises(vk.FileFormatError, match=message):
        train(make_model(), resume=folder)


def test_crash_before_commit_keeps_previous_checkpoint(tmp_path, monkeypatch):
    """A crash after the new state file but before checkpoint.json is swapped leaves the old checkpoint intact."""
    folder = _checkpointed(tmp_path)  # epoch 2 on disk

    def crash(path, text):
        raise OSError("simulated power loss")

    monkeypatch.setattr(ck, "atomic_write_text", crash)
    with pytest.raises(OSError, match="simulated power loss"):
        train(make_model(), resume=folder, checkpoint_every=1)
    monkeypatch.undo()
    assert manifest(folder)["epoch"] == 2
    reference = make_model()
    expected = train(reference)
    resumed = make_model()
    assert nan_safe_equal(train(resumed, resume=folder).columns, expected.columns)
    assert same_weights(resumed, reference)


def test_crash_during_state_write_leaves_no_partial_file(tmp_path, monkeypatch):
    folder = _checkpointed(tmp_path)
    before = sorted(p.name for p in (folder / "checkpoint").iterdir())
    real_replace = os.replace

    def crash(src, dst):
        raise OSError("simulated crash during rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        train(make_model(), resume=folder, checkpoint_every=1)
    monkeypatch.setattr(os, "replace", real_replace)
    assert sorted(p.name for p in (folder / "checkpoint").iterdir()) == before  # temp file removed, old files kept
    assert manifest(folder)["epoch"] == 2


def test_leftover_temp_files_are_cleaned_on_next_write(tmp_path):
    folder = _checkpointed(tmp_path)
    junk = folder / "checkpoint" / ".state-000003.safetensors.abc.tmp"
    junk.write_bytes(b"half a file")  # what kill -9 during a write leaves behind
    train(make_model(), resume=folder)
    assert not junk.exists()


# ---------------------------------------------------------------------------- numerical faults
@dataclass(frozen=True)
class PoisonFrom:
    """ELBO whose loss turns NaN from epoch ``epoch`` (0-based) on."""

    epoch: int

    def __call__(self, model, x, c, epoch=None):
        out = vk.ELBO()(model, x, c, epoch=epoch)
        if epoch >= self.epoch:
            out.loss = out.loss * float("nan")
        return out


@dataclass(frozen=True)
class BadGradientAt:
    """ELBO with a finite loss but NaN gradients in epoch ``epoch`` (0-based)."""

    epoch: int

    def __call__(self, model, x, c, epoch=None):
        out = vk.ELBO()(model, x, c, epoch=epoch)
        if epoch == self.epoch:
            p = next(model.parameters())
            out.loss = out.loss + 0.0 * torch.sqrt(0.0 * p.sum())  # value 0, gradient 0 * inf = nan
        return out


def test_nan_loss_names_epoch_and_cause_keeps_last_good_checkpoint(tmp_path):
    reference = make_model()
    # PoisonFrom is not a plain ELBO, so it trains through autograd; the reference must too.
    with fastpath.disabled():
        train(reference, epochs=3)  # the state after 3 good epochs
    model = make_model()
    expected = (
        "the loss became nan in epoch 4. Likely causes: a learning rate that is too high for this model (lr=0.001) "
        "or exploding gradients. Try a lower lr (e.g. lr=0.0001), grad_clip=1.0. The last good state (after epoch 3) is "
        f"saved in {tmp_path / 'checkpoint'} and restored into the model; continue with fit(..., resume={str(tmp_path)!r}) "
        "and a lower lr."
    )
    with pytest.raises(vk.TrainingError) as info:
        train(model, objective=PoisonFrom(3), checkpoint_dir=tmp_path, checkpoint_every=100)
    assert str(info.value) == expected
    assert manifest(tmp_path)["epoch"] == 3
    assert same_weights(model, reference)  # the in-memory model is back at the last good state
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())


def test_nan_never_overwrites_the_last_good_checkpoint(tmp_path):
    with pytest.raises(vk.TrainingError, match="in epoch 5. "):
        train(make_model(), objective=PoisonFrom(4), checkpoint_dir=tmp_path, checkpoint_every=1)
    loaded = ck.read_checkpoint(tmp_path)
    assert loaded.epoch == 4
    assert ck.all_finite(loaded.tensors)


def test_nan_gradients_with_finite_loss_are_caught_before_saving(tmp_path):
    model = make_model()
    with pytest.raises(vk.TrainingError, match=r"^the weights became non-finite \(NaN/inf gradients\) in epoch 3\."):
        train(model, batch_size=1000, objective=BadGradientAt(2), checkpoint_dir=tmp_path)
    assert ck.read_checkpoint(tmp_path).epoch == 2
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())


def test_nan_without_checkpointing_says_so():
    with pytest.raises(vk.TrainingError, match=r"in epoch 1\. .* No checkpoint was kept \(pass checkpoint_dir=\.\.\.\)\.$"):
        train(make_model(), objective=PoisonFrom(0))


def test_tiny_fixed_variance_is_named_as_the_cause():
    model = make_model(likelihood=vk.Gaussian(variance=1e-40))
    with pytest.raises(vk.TrainingError) as info:
        train(model, epochs=2)
    message = str(info.value)
    assert message.startswith("the loss became nan in epoch 1. Likely causes: the fixed likelihood variance is very small")
    assert "(variance=1e-40)" in message and "Try a lower lr (e.g. lr=0.0001), a larger variance" in message


def test_high_learning_rate_is_named_as_the_cause():
    model = make_model()
    with pytest.raises(vk.TrainingError, match=r"Likely causes: the learning rate is high \(lr=0\.5\)\. Try a lower lr"):
        train(model, objective=PoisonFrom(0), lr=0.5)


@pytest.mark.parametrize("variance", [1e-3, 0.1, 10.0, "learned", "per_point"])
@pytest.mark.parametrize("lr", [1e-4, 1e-2])
def test_reasonable_settings_never_overflow(variance, lr):
    model = make_model(likelihood=vk.Gaussian(variance=variance))
    history = train(model, epochs=8, lr=lr)
    assert np.isfinite(history.loss).all()
    qz = model.encode(X * 100)  # far outside the data: log-variances are clamped, std stays finite and > 0
    assert torch.isfinite(qz.stddev).all() and (qz.stddev > 0).all()


def test_learned_variance_cannot_collapse_on_duplicate_points():
    x = np.repeat(np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.float32), 64, axis=0)
    for variance in ("learned", "per_point"):
        model = make_model(likelihood=vk.Gaussian(variance=variance, min_variance=1e-4))
        history = vk.fit(model, x, epochs=40, batch_size=32, lr=1e-2, seed=0, monitors={})
        assert np.isfinite(history.loss).all()
        var = model.decode(np.zeros((1, 2))).variance
        assert (var >= 1e-4 * 0.999).all()


# ---------------------------------------------------------------------------- real processes
def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}


def _default_sigint() -> None:
    """In the child, before exec: Ctrl-C's default action, so that Python raises KeyboardInterrupt.

    A test run started in the background by a non-interactive shell inherits SIGINT ignored, and
    Python leaves an ignored SIGINT ignored: the child would then finish instead of being interrupted.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt_run(cmd: list[str], checkpoint: Path, *, after_epoch: int, sig: int, timeout: float = 120.0):
    """Start ``cmd``, wait until ``checkpoint/checkpoint.json`` reports ``after_epoch`` epochs, send ``sig``.

    Works for any command line that checkpoints into ``checkpoint`` (this file's train_script.py,
    or ``vaekit train ... --out DIR`` with ``checkpoint=DIR/checkpoint``). Returns the finished
    process (returncode, stdout) and the epoch seen on disk when the signal was sent.
    """
    proc = subprocess.Popen(
        cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=_default_sigint
    )
    deadline = time.monotonic() + timeout
    seen = -1
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                seen = json.loads((checkpoint / "checkpoint.json").read_text())["epoch"]
            except (OSError, ValueError, KeyError):
                seen = -1  # not written yet (the JSON is swapped in atomically, so never half-read)
            if seen >= after_epoch:
                proc.send_signal(sig)
                break
            time.sleep(0.005)
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out, seen


def _final(run: Path):
    model = vk.load(run / "model")
    history = json.loads((run / "history.json").read_text())
    return model, history


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run = tmp_path_factory.mktemp("reference")
    subprocess.run([sys.executable, str(SCRIPT), str(run), "--epochs", "12"], env=_env(), check=True, capture_output=True)
    return _final(run)


posix_only = pytest.mark.skipif(sys.platform == "win32", reason="kill -9 and SIGINT are POSIX signals")


@pytest.mark.slow
@posix_only
def test_kill_9_mid_run_then_resume_equals_uninterrupted(tmp_path, uninterrupted):
    cmd = [sys.executable, str(SCRIPT), str(tmp_path), "--epochs", "12"]
    code, out, seen = interrupt_run(cmd, tmp_path / "checkpoint", after_epoch=3, sig=signal.SIGKILL)
    assert code == -signal.SIGKILL, out  # really killed, not finished
    saved = manifest(tmp_path)["epoch"]
    assert 3 <= seen <= saved < 12
    resumed = subprocess.run(cmd + ["--resume"], env=_env(), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert resumed.stdout.splitlines()[0] == f"epoch {saved + 1}/12"  # continued, not restarted
    model, history = _final(tmp_path)
    assert nan_safe_equal(history, uninterrupted[1])
    assert same_weights(model, uninterrupted[0])


@pytest.mark.slow
@posix_only
def test_sigint_saves_and_exits_cleanly_then_resume_equals_uninterrupted(tmp_path, uninterrupted):
    cmd = [sys.executable, str(SCRIPT), str(tmp_path), "--epochs", "12", "--every", "100"]
    # With --every 100 nothing is scheduled before the end, so wait on the progress lines instead.
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    for line in proc.stdout:
        if line.startswith("epoch 3/"):
            proc.send_signal(signal.SIGINT)
            break
    out = proc.stdout.read()
    assert proc.wait(timeout=60) == 130
    assert f"interrupted; resume with: train_script.py {tmp_path} --resume" in out
    saved = manifest(tmp_path)["epoch"]
    assert 3 <= saved < 12
    assert "Traceback" not in out
    resumed = subprocess.run(cmd + ["--resume"], env=_env(), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    model, history = _final(tmp_path)
    assert nan_safe_equal(history, uninterrupted[1])
    assert same_weights(model, uninterrupted[0])


# ---------------------------------------------------------------------------- the real `vaekit train`
CLI_TRAIN = [
    "--data",
    "ring",
    "--n",
    "300",
    "--hidden",
    "16",
    "--epochs",
    "40",
    "--checkpoint-every",
    "1",
    "-q",
    "--eval-k",
    "5",
    "--eval-n-samples",
    "200",
    "--eval-quadrature-grid",
    "20",
    "--eval-permutations",
    "10",
]


def vaekit_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "vaekit", *args]


@pytest.fixture(scope="module")
def cli_uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "whole"
    subprocess.run(vaekit_cmd("train", *CLI_TRAIN, "--out", str(out)), env=_env(), check=True, capture_output=True)
    return out


def same_run_files(a: Path, b: Path) -> None:
    for name in ("history.csv", "model.safetensors", "model.json", "config.toml"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.mark.slow
@posix_only
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_vaekit_train_interrupted_then_resumed_equals_uninterrupted(tmp_path, cli_uninterrupted, sig):
    out = tmp_path / "run"
    # The CLI trains into OUT.partial and renames it into place only when the run is complete.
    code, output, seen = interrupt_run(
        vaekit_cmd("train", *CLI_TRAIN, "--out", str(out)), tmp_path / "run.partial" / "checkpoint", after_epoch=3, sig=sig
    )
    if sig == signal.SIGKILL:
        assert code == -signal.SIGKILL, output
    else:
        assert code == 130, output
        assert output.strip().endswith(f"interrupted: resume with 'vaekit train --resume {out}'"), output
        assert "Traceback" not in output
    assert not out.exists()
    saved = json.loads((tmp_path / "run.partial" / "checkpoint" / "checkpoint.json").read_text())["epoch"]
    assert 3 <= seen <= saved < 40
    resumed = subprocess.run(vaekit_cmd("train", "--resume", str(out), "-q"), env=_env(), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    same_run_files(out, cli_uninterrupted)
