import math

import numpy as np
import pytest
import torch

import vaekit as vk
from numerics import gamma
from vaekit.errors import InputError, InputTypeError

# Cross-implementation comparisons: scripts/portability.sh reruns these under other CPU kernels.
pytestmark = pytest.mark.numerics


@pytest.fixture(scope="module")
def ring():
    return vk.data.ring(n=600, seed=0)


def test_same_seed_gives_identical_history_and_weights(ring):
    x, y = ring
    runs = []
    for _ in range(2):
        model = vk.VAE(2, 2, hidden=(32, 32), condition=vk.OneHot(8), seed=1)
        runs.append((vk.fit(model, x, y, epochs=4, batch_size=64, seed=7, val=0.2), model))
    (h1, m1), (h2, m2) = runs
    assert h1 == h2  # every column, bit for bit
    for (k, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k
    model = vk.VAE(2, 2, hidden=(32, 32), condition=vk.OneHot(8), seed=1)
    assert vk.fit(model, x, y, epochs=4, batch_size=64, seed=8, val=0.2) != h1


def test_monitors_and_validation_draw_from_the_seeded_stream(ring):
    """README "Guarantees": one seeded stream, so other monitors or a validation set make another run."""
    x, _ = ring

    def trained(**kw):
        model = vk.VAE(2, 2, hidden=(16,), seed=1)
        vk.fit(model, x, epochs=2, batch_size=64, seed=7, **kw)
        return model.state_dict()

    def same(a, b):
        return all(torch.equal(a[k], b[k]) for k in a)

    plain = trained(monitors={})
    assert same(plain, trained(monitors={}))
    assert not same(plain, trained())  # the default diversity monitor draws its prior samples from it
    assert not same(plain, trained(monitors={}, val=x[:50]))  # so does the validation ELBO's noise


def test_fit_leaves_global_rng_untouched(ring):
    model = vk.VAE(2, 2, hidden=(8,))
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    vk.fit(model, ring[0], epochs=1, seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_history_columns_are_exact_epoch_means(ring):
    x, _ = ring
    model = vk.VAE(2, 2, hidden=(16,), seed=0)
    history = vk.fit(model, x, epochs=3, batch_size=100, val=(x[:50], None), seed=0)
    assert set(history.columns) >= {
        "loss",
        "reconstruction",
        "reconstruction_nll",
        "kl",
        "kl_per_dim",
        "neg_elbo",
        "diversity",
        "val_loss",
        "val_kl",
    }
    # The columns are float32 per-point terms summed over a batch of 100, then over 3 batches
    # (plus the 2 latent dimensions): identities between them hold up to gamma_n of their size.
    rel = gamma(100 + 3 + 2, torch.float32)
    for epoch in range(3):
        assert sum(history.kl_per_dim[epoch]) == pytest.approx(history.kl[epoch], rel=rel)
        # Gaussian(0.1) in 2-D: NLL = lecture term + log(2 pi 0.1).
        nll, lecture = history.reconstruction_nll[epoch], history.reconstruction[epoch]
        assert nll - lecture == pytest.approx(math.log(2 * math.pi * 0.1), abs=rel * (abs(nll) + abs(lecture)))
        assert history.loss[epoch] == pytest.approx(nll + history.kl[epoch], rel=rel)


def test_diversity_matches_lecture_definition(ring):
    x, _ = ring
    model = vk.VAE(2, 2, hidden=(16,), seed=0)
    history = vk.fit(model, x, epochs=2, seed=0, monitors={"diversity": vk.Diversity(n_samples=4096, every=2)})
    assert math.isnan(history.diversity[0])
    samples = model.sample(200000, seed=0)
    assert history.diversity[1] == pytest.approx(samples.var(0).mean(), rel=0.05)


def test_training_improves_the_elbo(ring):
    x, _ = ring
    model = vk.VAE(2, 2, hidden=(64, 64), seed=0)
    history = vk.fit(model, x, epochs=40, batch_size=128, lr=3e-3, seed=0, monitors={})
    assert history.neg_elbo[-1] < history.neg_elbo[0] - 5


def test_early_stopping_restores_best_weights(ring):
    x, _ = ring
    model = vk.VAE(2, 2, hidden=(16,), seed=0)
    stopper = vk.EarlyStopping(patience=2, monitor="val_loss")
    # A huge learning rate makes validation loss bounce, so patience triggers quickly.
    history = vk.fit(model, x, epochs=200, lr=0.5, val=0.25, callbacks=[stopper], seed=0, monitors={})
    assert len(history) < 200
    assert len(history) == stopper.best_epoch + 1 + stopper.patience
    assert min(history.val_loss) == stopper.best


def test_progress_must_be_a_callable_or_none(ring):
    # 0.1 accepted progress=False and failed after the first epoch with "'bool' object is not callable".
    model = vk.VAE(2, 2, hidden=(8,))
    with pytest.raises(InputTypeError, match=r"progress must be a callable\(epoch, epochs, record\) or None. Got False"):
        vk.fit(model, ring[0], epochs=1, progress=False)
    assert len(vk.fit(model, ring[0], epochs=1, progress=None, monitors={})) == 1


def test_progress_callback_sees_every_epoch(ring):
    seen = []
    vk.fit(vk.VAE(2, 2, hidden=(8,)), ring[0], epochs=3, progress=lambda e, n, r: seen.append((e, n, sorted(r))), monitors={})
    assert [s[:2] for s in seen] == [(1, 3), (2, 3), (3, 3)]
    assert "kl" in seen[0][2]


def test_history_csv_round_trip(tmp_path, ring):
    history = vk.fit(vk.VAE(2, 3, hidden=(8,)), ring[0], epochs=3, seed=0)
    history.to_csv(tmp_path / "h.csv")
    assert vk.History.from_csv(tmp_path / "h.csv") == history
    header = (tmp_path / "h.csv").read_text().splitlines()[0]
    assert "kl_per_dim[2]" in header


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"epochs": 0}, InputError, r"epochs must be an integer >= 1\. Got 0 instead"),
        ({"batch_size": 1.5}, InputTypeError, r"batch_size must be an integer >= 1\. Got 1.5 instead"),
        ({"lr": -1}, InputError, r"lr must be a finite number > 0\. Got -1.0 instead"),
        ({"val": 1.5}, InputError, r"val must be a fraction in \(0, 1\)"),
        ({"seed": "a"}, InputTypeError, r"seed must be an int or None\. Got 'a' instead"),
        ({"objective": "elbo"}, InputTypeError, r"objective must be callable"),
    ],
)
def test_fit_bad_arguments(ring, kwargs, error, message):
    with pytest.raises(error, match=message):
        vk.fit(vk.VAE(2, 2, hidden=(8,)), ring[0], **kwargs)


def test_fit_bad_data(ring):
    x, y = ring
    with pytest.raises(InputError, match=r"x must have 3 columns"):
        vk.fit(vk.VAE(3, 2), x, epochs=1)
    with pytest.raises(InputError, match=r"condition must have one row per data row \(600\)\. Got 599 rows instead"):
        vk.fit(vk.VAE(2, 2, condition=vk.OneHot(8)), x, y[:-1], epochs=1)
    bad = x.copy()
    bad[5, 1] = np.inf
    with pytest.raises(InputError, match=r"x must be finite \(no NaN or inf\)\. Got 1 bad row\(s\), the first at row 5"):
        vk.fit(vk.VAE(2, 2), bad, epochs=1)


def test_nan_loss_stops_with_a_clear_message(ring):
    model = vk.VAE(2, 2, hidden=(8,), likelihood=vk.Gaussian(1e-30), seed=0)
    with pytest.raises(vk.TrainingError, match=r"the loss became (nan|inf) in epoch 1\. Likely causes"):
        vk.fit(model, ring[0] * 1e18, epochs=3, seed=0)
