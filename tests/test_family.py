"""Every continuous-latent member of the family, trained on the ring, against independent facts.

The members are the names ``vaekit demo --model`` takes (every model kind, and the VAE with each
non-default posterior or prior), built through the run pipeline with the lecture's settings, so
a newly registered member is checked here with no further code. Slow: about 100 epochs each.
"""

from __future__ import annotations

import numpy as np
import pytest

import vaekit as vk
from vaekit import metrics, model_settings, runs
from vaekit.models.base import not_applicable

EPOCHS, N_TEST = 100, 400


@pytest.fixture(scope="module", params=model_settings.member_names())
def trained(request):
    config = runs.validate_config({"model": model_settings.member_settings(request.param), "training": {"epochs": EPOCHS}})
    data = runs.load_data(config)
    model = runs.build_model(config, data)
    if "iwae_nll" in not_applicable(model):
        pytest.skip(f"{request.param}: {not_applicable(model)['iwae_nll']}")  # a discrete code: no IWAE bound
    vk.fit(model, data.x, **runs.fit_kwargs(config))
    x_test = vk.data.ring(N_TEST, seed=123)[0]
    return request.param, model, x_test


@pytest.mark.slow
def test_iwae_rises_with_k(trained):
    # IWAE_k rises with k in expectation, towards log p(x). Each point's expectation is estimated
    # by averaging 100 / k independent IWAE_k estimates (100 importance samples per point for every
    # k); the paired per-point differences are averaged over 400 test points. No step may fall by
    # more than three standard errors of that mean, and k = 1 -> 100 must rise by more than three
    # (a step can be flat where the posterior is already close to exact: a VampPrior's 10 -> 100).
    name, model, x = trained

    def expected_iwae(k: int) -> np.ndarray:
        return np.mean([metrics.iwae_log_likelihood(model, x, k=k, seed=1000 * k + r) for r in range(100 // k)], axis=0)

    def mean_and_se(diff: np.ndarray) -> tuple[float, float]:
        return float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(len(diff)))

    k1, k10, k100 = (expected_iwae(k) for k in (1, 10, 100))
    for low, high in ((k1, k10), (k10, k100)):
        rise, se = mean_and_se(high - low)
        assert rise > -3 * se, (name, rise, se)
    rise, se = mean_and_se(k100 - k1)
    assert rise > 3 * se, (name, rise, se)


@pytest.mark.slow
def test_iwae_1000_agrees_with_quadrature_on_the_ring(trained):
    # The quadrature integrates p(x|z) p(z) over the 2-D latent on a grid and does not use the
    # posterior; IWAE with k=1000 uses it. With a trained posterior the two agree within 0.05 nats.
    name, model, x = trained
    if model.z_dim != 2:
        pytest.skip(f"{name}: quadrature needs a 2-D latent (z_dim {model.z_dim})")
    iwae = metrics.log_likelihood(model, x, k=1000, seed=0)
    quadrature = metrics.quadrature_log_likelihood(model, x)
    assert float(quadrature.error.max()) < 0.01, name  # the grid resolves p(x)
    assert abs(iwae - float(quadrature.log_p.mean())) < 0.05, (name, iwae, float(quadrature.log_p.mean()))
