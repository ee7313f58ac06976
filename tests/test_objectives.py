"""vaekit.objectives: LossOutput, ELBO (beta, warm-up, free bits) and IWAE against hand computations.

The hand computations are the lecture's formulas written out in float64 from the model's own
encode_batch / decode_batch outputs, with the objective's noise reproduced by drawing under the
same seed. They sum the same terms in another order, so they agree with the library to the
rounding bound of :func:`_assert_rounding` (tests/numerics.py), not bit for bit. Monte Carlo
checks state their noise level where they make them.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

import vaekit as vk
from numerics import _report, gamma
from vaekit.errors import InputError
from vaekit.objectives import LossOutput

# Cross-implementation comparisons: scripts/portability.sh reruns these under other CPU kernels.
pytestmark = pytest.mark.numerics

F64 = torch.float64
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
D, Z = 3, 2


def _model(**kwargs) -> vk.VAE:
    return vk.VAE(D, Z, hidden=(8,), seed=0, **kwargs).double()


def _x(n: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, D, dtype=F64, generator=torch.Generator().manual_seed(seed))


def _seeded(call, seed: int = 0):
    """``call()`` with torch's global RNG seeded: the objective and the hand computation draw the same noise."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return call()


def _assert_rounding(actual: torch.Tensor, expected: torch.Tensor, magnitude: torch.Tensor, n: int, what: str) -> None:
    """Two float64 computations of the same sums agree to 2 gamma_n times the sum of their terms' magnitudes.

    Higham's bound for one computation of a sum of products is gamma_n times the sum of the
    magnitudes of its terms (n roundings along the longest chain); two computations differ by at
    most twice that. Each caller counts its n; transcendental functions (exp, log) are counted as
    two roundings, for library functions accurate to one ulp rather than correctly rounded.
    """
    bound = 2 * gamma(n, F64) * magnitude.detach()
    error = (actual.detach() - expected.detach()).abs()
    worst = (error / bound).argmax()
    _report("rounding", error.flatten()[worst].item(), bound.flatten()[worst].item())
    assert bool((error <= bound).all()), f"{what}: error {error.max().item():.3g} exceeds the bound {bound.min().item():.3g}"


def _gaussian_terms(model: vk.VAE, x: torch.Tensor, mean: torch.Tensor):
    """The lecture's energy sum (x - mean)^2 / (2 sigma^2), its nll and the nll's term magnitudes."""
    # The head keeps sigma = sqrt(0.1) rounded to float32 (see test_distributions.py); use that sigma.
    variance = model.likelihood_head.fixed_std[0].item() ** 2
    energy = ((x - mean) ** 2).sum(-1) / (2 * variance)
    constant = x.shape[-1] * 0.5 * math.log(2 * math.pi * variance)
    magnitude = energy + x.shape[-1] * (abs(0.5 * math.log(variance)) + HALF_LOG_2PI)
    return energy, energy + constant, magnitude


# ---------------------------------------------------------------------------- LossOutput
def test_loss_output_records_loss_then_terms_in_order():
    loss, b, a = torch.zeros(2), torch.ones(2), torch.full((2,), 2.0)
    out = LossOutput(loss, {"b": b, "a": a})
    record = out.record()
    assert list(record) == ["loss", "b", "a"]
    assert record["loss"] is loss and record["b"] is b and record["a"] is a
    assert out.a is a and out.loss is loss
    assert LossOutput(loss).record() == {"loss": loss}


def test_loss_output_names_its_terms_when_one_is_missing():
    out = LossOutput(torch.zeros(2), {"kl": torch.ones(2), "b": torch.ones(2)})
    with pytest.raises(AttributeError, match=r"^LossOutput has no term 'codebook'; terms are \['b', 'kl'\]$"):
        out.codebook  # noqa: B018
    assert not hasattr(LossOutput(torch.zeros(2)), "kl")
    # copy builds an instance without __init__ and probes it for __setstate__: no recursion.
    assert copy.copy(out).kl is out.kl


def test_elbo_records_the_documented_terms():
    model, x = _model(), _x(4)
    out = vk.ELBO()(model, x)
    assert list(out.record()) == ["loss", "reconstruction", "reconstruction_nll", "kl", "kl_per_dim", "neg_elbo"]
    assert out.kl is out.terms["kl"]
    with pytest.raises(AttributeError) as info:
        out.codebook  # noqa: B018
    terms = "['kl', 'kl_per_dim', 'neg_elbo', 'reconstruction', 'reconstruction_nll']"
    assert str(info.value) == f"LossOutput has no term 'codebook'; terms are {terms}"


# ---------------------------------------------------------------------------- ELBO closed forms
def test_elbo_terms_are_the_lecture_closed_forms():
    model, x = _model(), _x(6)
    out = _seeded(lambda: vk.ELBO()(model, x))
    z = _seeded(lambda: model.encode_batch(x).rsample())
    mu, logvar = model.encoder(x).chunk(2, dim=-1)  # the network's raw outputs
    assert bool((logvar.abs() < 12).all())  # inside the clamp: the encoder's std is exp(logvar / 2)
    energy, nll, magnitude = _gaussian_terms(model, x, model.decode_batch(z).mean)
    # Per term at most 8 operations (16 roundings counted as above), then D - 1 additions.
    _assert_rounding(out.reconstruction, energy, energy, D + 16, "reconstruction")
    _assert_rounding(out.reconstruction_nll, nll, magnitude, D + 16, "reconstruction_nll")
    # The lecture's KL from the encoder's log-variance: -1/2 (1 + log s^2 - mu^2 - s^2) per dimension.
    kl_dim = -0.5 * (1 + logvar - mu**2 - logvar.exp())
    kl_magnitude = 0.5 * (1 + logvar.abs() + mu**2 + logvar.exp())
    _assert_rounding(out.kl_per_dim, kl_dim, kl_magnitude, 16, "kl_per_dim")
    _assert_rounding(out.kl, kl_dim.sum(-1), kl_magnitude.sum(-1), Z + 16, "kl")
    # The objective forms these from the same tensors with exactly these operations: equal.
    assert torch.equal(out.kl, out.kl_per_dim.sum(-1))
    assert torch.equal(out.neg_elbo, out.reconstruction_nll + out.kl)
    assert torch.equal(out.loss, out.neg_elbo)  # beta = 1
    assert all(v.shape == (6,) for k, v in out.record().items() if k != "kl_per_dim")
    assert out.kl_per_dim.shape == (6, Z)


def test_beta_at_follows_the_linear_warmup():
    objective = vk.ELBO(beta=2.0, warmup_epochs=4)
    assert [objective.beta_at(epoch) for epoch in range(6)] == [0.5, 1.0, 1.5, 2.0, 2.0, 2.0]
    assert objective.beta_at(None) == 2.0
    assert [vk.ELBO(warmup_epochs=3).beta_at(epoch) for epoch in range(4)] == [1 / 3, 2 / 3, 1.0, 1.0]
    assert [vk.ELBO(beta=3.0).beta_at(epoch) for epoch in (0, 10, None)] == [3.0, 3.0, 3.0]


@pytest.mark.parametrize(
    ("objective", "epoch"),
    [
        (vk.ELBO(beta=2.0, warmup_epochs=4), 0),
        (vk.ELBO(beta=2.0, warmup_epochs=4), 2),
        (vk.ELBO(beta=2.0, warmup_epochs=4), 9),
        (vk.ELBO(beta=2.0, warmup_epochs=4), None),
        (vk.ELBO(beta=4.0), 3),
        (vk.ELBO(beta=0.0), None),
    ],
)
def test_loss_weights_the_kl_by_beta_at_the_epoch(objective, epoch):
    model, x = _model(), _x(5)
    out = _seeded(lambda: objective(model, x, epoch=epoch))
    assert torch.equal(out.loss, out.reconstruction_nll + objective.beta_at(epoch) * out.kl)
    # neg_elbo is the bound itself, whatever the weight.
    assert torch.equal(out.neg_elbo, _seeded(lambda: vk.ELBO()(model, x)).neg_elbo)


# ---------------------------------------------------------------------------- free bits
FREE_BITS_X = torch.tensor([[0.0, 0.5], [2.0, -1.0]], dtype=F64)


def _free_bits_model() -> vk.VAE:
    """A linear encoder with known per-dimension KL (prior N(0, I)) on FREE_BITS_X.

    dim 0: mean 3, std 1 -> KL 4.5 for both points; dim 1: mean 0.3, log-variance -0.5 ->
    KL 0.098 for both; dim 2: mean x_0 -> KL 0 and 2 (batch mean 1). All exact but dim 1's.
    """
    model = vk.VAE(2, 3, hidden=(), seed=0).double()
    linear = model.encoder.net[0]
    with torch.no_grad():
        linear.weight.zero_()
        linear.weight[2, 0] = 1.0
        linear.bias.copy_(torch.tensor([3.0, 0.3, 0.0, 0.0, -0.5, 0.0]))
    return model


def _kl_bias_gradient(objective):
    """The encoder bias gradient of the KL part of the loss, and the LossOutput."""
    model = _free_bits_model()
    out = objective(model, FREE_BITS_X)
    # loss - nll: the nll's gradient cancels exactly (1 - 1 accumulates on the same node).
    (out.loss - out.reconstruction_nll).sum().backward()
    return model.encoder.net[0].bias.grad, out


def test_free_bits_floor_dimensions_whose_batch_mean_kl_is_below_it():
    grad, out = _kl_bias_gradient(vk.ELBO(free_bits=0.5))
    kl_dim = out.kl_per_dim.detach()
    assert kl_dim[:, 0].tolist() == [4.5, 4.5] and kl_dim[:, 2].tolist() == [0.0, 2.0]
    assert bool((kl_dim[:, 1] < 0.5).all())
    # Dim 1 (batch mean under 0.5) costs exactly 0.5; dim 2 (mean 1.0) costs its own KL, even the
    # point whose KL is 0: the floor is on the batch mean, not per point (which would give 5.5).
    # The penalties 4.5 + 0.5 + {0, 2} are exact; loss and loss - nll are one rounding each.
    penalty = torch.tensor([5.0, 7.0], dtype=F64)
    magnitude = out.reconstruction_nll.abs() + 2 * penalty
    _assert_rounding(out.loss - out.reconstruction_nll, penalty, magnitude, 2, "penalised KL")
    # The reported KL is the true one, floor or not.
    assert torch.equal(out.kl, out.kl_per_dim.sum(-1))
    # The floored dimension gets no gradient (bias rows 1 and 4: its mean and log-variance); the
    # others get dKL/dmean = mean, summed over the batch: 3 + 3 and 0 + 2.
    assert grad[1] == 0 and grad[4] == 0
    assert grad[0] == 6.0 and grad[2] == 2.0
    plain, _ = _kl_bias_gradient(vk.ELBO())
    assert plain[1] != 0 and plain[4] != 0  # without the floor dim 1's KL pulls on its mean and variance
    assert torch.equal(grad[[0, 2, 3, 5]], plain[[0, 2, 3, 5]])


def test_free_bits_refuse_a_kl_that_does_not_split():
    model = _model(prior=vk.MixturePrior(3))
    message = (
        "ELBO.free_bits needs a KL that splits over latent dimensions (a diagonal Gaussian posterior and prior). "
        "Got free_bits=0.1 with q=Independent, p=MixtureSameFamily instead."
    )
    with pytest.raises(InputError) as info:
        vk.ELBO(free_bits=0.1)(model, _x(4))
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: vk.ELBO(beta=-1), InputError, "ELBO.beta must be a finite number >= 0. Got -1.0 instead."),
        (lambda: vk.ELBO(beta="1"), vk.InputTypeError, "ELBO.beta must be a real number >= 0. Got '1' instead."),
        (lambda: vk.ELBO(warmup_epochs=-1), InputError, "ELBO.warmup_epochs must be an integer >= 0. Got -1 instead."),
        (lambda: vk.ELBO(free_bits=math.nan), InputError, "ELBO.free_bits must be a finite number >= 0. Got nan instead."),
        (lambda: vk.IWAE(k=0), InputError, "IWAE.k must be an integer >= 1. Got 0 instead."),
    ],
)
def test_objectives_refuse_bad_arguments(make, error, message):
    with pytest.raises(error) as info:
        make()
    assert str(info.value) == message


def test_to_config():
    assert vk.ELBO(beta=2.0, warmup_epochs=3, free_bits=0.1).to_config() == {
        "type": "elbo",
        "beta": 2.0,
        "warmup_epochs": 3,
        "free_bits": 0.1,
    }
    assert vk.IWAE(k=7).to_config() == {"type": "iwae", "k": 7}


# ---------------------------------------------------------------------------- Monte Carlo KL (mixture prior)
M = 20000  # draws for the Monte Carlo checks: each compares to 4 standard errors (a 6e-5 two-sided tail)


def _one_point_repeated(model: vk.VAE, seed: int = 3):
    """The ELBO of one point, M times: M independent one-sample KL estimates, and q(z|x) of that point."""
    x = _x(1, seed)
    out = _seeded(lambda: vk.ELBO()(model, x.repeat(M, 1)))
    return out, model.encode_batch(x)


def _mean_and_standard_error(values) -> tuple[float, float]:
    values = torch.as_tensor(values, dtype=F64).detach()
    return values.mean().item(), values.std().item() / math.sqrt(len(values))


def test_mixture_prior_kl_is_log_q_minus_log_p_at_the_drawn_z():
    model, x = _model(prior=vk.MixturePrior(3)), _x(5)
    out = _seeded(lambda: vk.ELBO()(model, x))
    qz = model.encode_batch(x)
    z = _seeded(lambda: qz.rsample())
    assert torch.equal(out.kl, qz.log_prob(z) - model.prior().log_prob(z))
    assert list(out.record()) == ["loss", "reconstruction", "reconstruction_nll", "kl", "neg_elbo"]
    assert torch.equal(out.neg_elbo, out.reconstruction_nll + out.kl)


def test_one_component_mixture_kl_averages_to_the_gaussian_closed_form():
    model = _model(prior=vk.MixturePrior(1))
    with torch.no_grad():
        model.prior_net.means.copy_(torch.tensor([[0.5, -1.0]]))
        model.prior_net.log_scales.copy_(torch.tensor([[0.3, -0.2]]))
    out, qz = _one_point_repeated(model)
    m, s = qz.base_dist.loc[0], qz.base_dist.scale[0]
    mp, sp = model.prior_net.means[0].detach(), model.prior_net.log_scales[0].detach().exp()
    closed = (torch.log(sp / s) + (s**2 + (m - mp) ** 2) / (2 * sp**2) - 0.5).sum().item()
    mean, se = _mean_and_standard_error(out.kl)
    assert abs(mean - closed) <= 4 * se, (mean, closed, se)


def test_mixture_kl_matches_an_independent_estimate():
    model = _model(prior=vk.MixturePrior(3, init_scale=2.0))
    out, qz = _one_point_repeated(model)
    # Independent estimate: numpy draws and the densities written out by hand.
    m, s = (t[0].detach().numpy() for t in (qz.base_dist.loc, qz.base_dist.scale))
    means = model.prior_net.means.detach().numpy()  # (K, Z)
    log_scales = model.prior_net.log_scales.detach().numpy()
    logits = model.prior_net.logits.detach().numpy()
    assert np.all(np.abs(log_scales) < 9)  # inside the prior's clamp
    z = m + s * np.random.default_rng(0).standard_normal((M, Z))
    log_q = (-0.5 * ((z - m) / s) ** 2 - np.log(s) - HALF_LOG_2PI).sum(-1)
    components = (-0.5 * ((z[:, None, :] - means) / np.exp(log_scales)) ** 2 - log_scales - HALF_LOG_2PI).sum(-1)
    log_weights = logits - np.logaddexp.reduce(logits)
    log_p = np.logaddexp.reduce(log_weights + components, axis=1)
    independent, se_independent = _mean_and_standard_error(log_q - log_p)
    mean, se = _mean_and_standard_error(out.kl)
    assert abs(mean - independent) <= 4 * math.hypot(se, se_independent), (mean, independent, se, se_independent)


# ---------------------------------------------------------------------------- IWAE
def test_iwae_with_one_sample_is_the_single_sample_elbo():
    model, x = _model(), _x(6)
    iwae = _seeded(lambda: vk.IWAE(k=1)(model, x))
    elbo = _seeded(lambda: vk.ELBO()(model, x))
    assert list(iwae.record()) == list(elbo.record())
    for key in elbo.terms:  # the same draw, decoded and scored by the same operations
        assert torch.equal(iwae.terms[key], elbo.terms[key]), key
    # Its loss is -log w for the one draw: nll + log q(z) - log p(z), the Monte Carlo form of nll + KL.
    qz, pz = model.encode_batch(x), model.prior()
    z = _seeded(lambda: qz.rsample())
    log_q, log_p = qz.log_prob(z), pz.log_prob(z)
    magnitude = elbo.reconstruction_nll.abs() + log_q.abs() + log_p.abs()
    _assert_rounding(iwae.loss, elbo.reconstruction_nll + log_q - log_p, magnitude, 3, "IWAE(k=1) loss")
    # In expectation over the draw it is the ELBO with the closed-form KL: on M shared draws of one
    # point the difference log q(z) - log p(z) - KL averages to 0.
    xs = _x(1, 3).repeat(M, 1)
    difference = _seeded(lambda: vk.IWAE(k=1)(model, xs)).loss - _seeded(lambda: vk.ELBO()(model, xs)).neg_elbo
    mean, se = _mean_and_standard_error(difference)
    assert abs(mean) <= 4 * se and se > 0, (mean, se)


def test_iwae_terms_are_the_hand_computed_importance_weights():
    # A conditional model, so that each of the k draws must be decoded with its own point's label.
    model, x, k = _model(condition=vk.OneHot(3)), _x(5), 4
    c = model.prepare_condition(np.array([0, 1, 2, 0, 1]), 5)
    out = _seeded(lambda: vk.IWAE(k=k)(model, x, c))
    qz = model.encode_batch(x, c)
    z = _seeded(lambda: qz.rsample((k,)))  # (k, B, Z)
    mean = model.decode_batch(z.reshape(k * 5, Z), c.repeat(k, 1)).mean.view(k, 5, D)  # row j*B + i: (z_ji, c_i)
    energy, nll, nll_magnitude = _gaussian_terms(model, x, mean)  # (k, B)
    mu, s = qz.base_dist.loc, qz.base_dist.scale
    q_terms = -0.5 * ((z - mu) / s) ** 2 - s.log() - HALF_LOG_2PI
    p_terms = -0.5 * z**2 - HALF_LOG_2PI
    log_w = -nll + p_terms.sum(-1) - q_terms.sum(-1)
    top = log_w.max(0).values
    bound = top + (log_w - top).exp().sum(0).log() - math.log(k)
    magnitude = (nll_magnitude + q_terms.abs().sum(-1) + p_terms.abs().sum(-1)).max(0).values + math.log(k)
    # n: 16 roundings per term, the sums over D or Z, 2 to combine them, k + 8 for logsumexp and log k.
    _assert_rounding(out.loss, -bound, magnitude, 16 + max(D, Z) + 2 + k + 8, "IWAE loss")
    _assert_rounding(out.reconstruction_nll, nll.mean(0), nll_magnitude.mean(0), D + 16 + k, "IWAE nll")
    _assert_rounding(out.reconstruction, energy.mean(0), energy.mean(0), D + 16 + k, "IWAE reconstruction")
    # KL: the closed form, as in the ELBO (it does not depend on the draws).
    assert torch.equal(out.kl, vk.ELBO()(model, x, c).kl)
    assert torch.equal(out.neg_elbo, out.reconstruction_nll + out.kl)
    shapes = {key: tuple(value.shape) for key, value in out.record().items()}
    assert shapes == {
        "loss": (5,),
        "reconstruction": (5,),
        "reconstruction_nll": (5,),
        "kl": (5,),
        "kl_per_dim": (5, Z),
        "neg_elbo": (5,),
    }


def test_iwae_bound_rises_with_k():
    # E[log w-bound] grows with k (Burda et al., 2016, theorem 1). Per point, the difference of two
    # independent estimates has a standard error; over 2000 points of an untrained model the mean
    # gaps were measured at about 24 (k 1 -> 5) and 18 (k 5 -> 50) standard errors. We ask for 4.
    model, x = _model(), _x(2000, seed=2)
    bounds = {k: _seeded(lambda k=k: -vk.IWAE(k=k)(model, x).loss, seed=k) for k in (1, 5, 50)}
    for low, high in [(1, 5), (5, 50)]:
        gap, se = _mean_and_standard_error(bounds[high] - bounds[low])
        assert gap > 4 * se, (low, high, gap, se)
