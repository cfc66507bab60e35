"""hitchhiker.counts: COM-Poisson and negative binomial categoricals, their truncation bounds, and GSM
over them (library only: torch, no scipy; the scipy comparisons are in tests/test_counts_scipy.py)."""
import math

import pytest
import torch

from hitchhiker import GumbelSoftmaxPoisson
from hitchhiker.counts import (
    ConwayMaxwellPoisson,
    gumbel_softmax_counts,
    negative_binomial,
    negative_binomial_logits,
    negative_binomial_tail_bound,
)
from hitchhiker.distributions import TRUNCATION_TOLERANCE


def long_series_log_z(rate: float, nu: float, n_terms: int = 1000) -> float:
    """log Z(rate, nu) from n_terms float64 terms (an independent, much longer series)."""
    k = torch.arange(n_terms, dtype=torch.float64)
    return float(torch.logsumexp(k * math.log(rate) - nu * torch.lgamma(k + 1), 0))


# ------------------------------------------------------------------------------------- COM-Poisson
@pytest.mark.parametrize("rate", [0.1, 1.0, 7.5, 40.0])
def test_nu_one_is_the_poisson(rate):
    com = ConwayMaxwellPoisson(torch.tensor(rate, dtype=torch.float64),
                               torch.tensor(1.0, dtype=torch.float64))
    # Z(lambda, 1) = e^lambda, up to the proven truncation bound
    assert 0 <= rate - float(com.log_normalizer()) <= float(com.truncation_bound()) + 1e-12
    k = torch.arange(0, 30, dtype=torch.float64)
    expected = torch.distributions.Poisson(torch.tensor(rate, dtype=torch.float64)).log_prob(k)
    assert torch.allclose(com.log_prob(k), expected, atol=float(com.truncation_bound()) + 1e-12)


@pytest.mark.parametrize("rate", [0.3, 4.0, 25.0])
def test_nu_two_normaliser_is_a_bessel_function(rate):
    """sum_k lambda^k / (k!)^2 = I_0(2 sqrt(lambda))."""
    com = ConwayMaxwellPoisson(torch.tensor(rate, dtype=torch.float64),
                               torch.tensor(2.0, dtype=torch.float64))
    closed = math.log(float(torch.special.i0(torch.tensor(2 * math.sqrt(rate), dtype=torch.float64))))
    assert -1e-12 <= closed - float(com.log_normalizer()) <= float(com.truncation_bound()) + 1e-12


@pytest.mark.parametrize("rate", [0.2, 0.5, 0.8])
def test_small_nu_tends_to_the_geometric(rate):
    """nu -> 0, lambda < 1: Z -> 1 / (1 - lambda), p(k) -> (1 - lambda) lambda^k."""
    com = ConwayMaxwellPoisson(torch.tensor(rate, dtype=torch.float64),
                               torch.tensor(1e-4, dtype=torch.float64))
    assert abs(float(com.log_normalizer()) + math.log(1 - rate)) < 1e-3
    k = torch.arange(6, dtype=torch.float64)
    geometric = math.log(1 - rate) + k * math.log(rate)
    assert torch.allclose(com.log_prob(k), geometric, atol=2e-3)


@pytest.mark.parametrize("rate,nu", [(0.5, 0.3), (3.0, 0.5), (10.0, 1.0), (50.0, 2.0), (2.0, 0.25)])
def test_default_truncation_meets_the_tolerance_and_matches_a_long_series(rate, nu):
    com = ConwayMaxwellPoisson(torch.tensor(rate, dtype=torch.float64), torch.tensor(nu, dtype=torch.float64))
    bound = float(com.truncation_bound())
    assert bound <= TRUNCATION_TOLERANCE
    error = long_series_log_z(rate, nu) - float(com.log_normalizer())
    assert -1e-12 <= error <= bound * (1 + 1e-9) + 1e-12   # the bound holds (log(1 + d) <= d)


@pytest.mark.parametrize("rate,nu,k", [(5.0, 1.0, 12), (3.0, 0.5, 20), (20.0, 2.0, 9), (0.9, 0.1, 30)])
def test_the_bound_is_a_bound_on_the_dropped_mass(rate, nu, k):
    com = ConwayMaxwellPoisson(torch.tensor(rate, dtype=torch.float64), torch.tensor(nu, dtype=torch.float64))
    terms = torch.arange(2000, dtype=torch.float64)
    log_t = terms * math.log(rate) - nu * torch.lgamma(terms + 1)
    tail = float(torch.logsumexp(log_t[k:], 0).exp() / torch.logsumexp(log_t[:k], 0).exp())
    bound = float(com.truncation_bound(k))
    assert tail <= bound

def test_too_few_categories_raise_naming_the_argument():
    with pytest.raises(ValueError, match="n_categories=10"):
        ConwayMaxwellPoisson(torch.tensor([5.0]), torch.tensor(0.5), n_categories=10)
    with pytest.raises(ValueError, match="n_categories=15"):   # rho >= 1: no bound at all
        ConwayMaxwellPoisson(torch.tensor([100.0]), torch.tensor(1.0), n_categories=15)
    with pytest.raises(ValueError, match="n_categories"):
        ConwayMaxwellPoisson(torch.tensor([5.0]), torch.tensor(1.0), validate_args=False)
    with pytest.raises(ValueError, match="even n_categories"):
        ConwayMaxwellPoisson(log_rate=torch.tensor([50.0]), dispersion=torch.tensor(0.01))


def test_bad_arguments_are_refused_by_name():
    with pytest.raises(ValueError, match="rate"):
        ConwayMaxwellPoisson(torch.tensor([-1.0]), torch.tensor(1.0))
    with pytest.raises(ValueError, match="dispersion"):
        ConwayMaxwellPoisson(torch.tensor([1.0]), torch.tensor(0.0))
    with pytest.raises(ValueError, match="exactly one"):
        ConwayMaxwellPoisson(torch.tensor([1.0]), torch.tensor(1.0), log_rate=torch.tensor([0.0]))
    with pytest.raises(TypeError, match="rate"):
        ConwayMaxwellPoisson(torch.tensor([1.0 + 1j]), torch.tensor(1.0))
    with pytest.raises(ValueError, match="rate .* and dispersion"):
        ConwayMaxwellPoisson(torch.ones(3), torch.ones(2))
    with pytest.raises(ValueError, match="tolerance"):
        ConwayMaxwellPoisson(torch.ones(3), 1.0, tolerance=0.0)
    with pytest.raises(TypeError, match="validate_args"):
        ConwayMaxwellPoisson(torch.ones(3), 1.0, validate_args="yes")
    with pytest.raises(ValueError, match="value"):
        ConwayMaxwellPoisson(torch.ones(3), 1.0).log_prob(torch.tensor(-1.0))
    with pytest.raises(ValueError, match="mean"):
        ConwayMaxwellPoisson.from_mean(torch.tensor([0.2]), torch.tensor(0.25))


def test_from_mean_is_the_paper_parameterisation_and_close_to_the_mean():
    mean, nu = torch.tensor([4.0, 10.0], dtype=torch.float64), torch.tensor([0.5, 2.0], dtype=torch.float64)
    com = ConwayMaxwellPoisson.from_mean(mean, nu)
    assert torch.allclose(com.log_rate, nu * torch.log(mean + (nu - 1) / (2 * nu)))
    assert torch.allclose(com.mean, mean, rtol=0.03)          # an approximation, good at these means
    # over-dispersed below nu = 1, under-dispersed above (variance ~ mean / nu)
    assert com.variance[0] > com.mean[0] and com.variance[1] < com.mean[1]


def test_score_identity_d_log_z_d_log_rate_is_the_mean():
    log_rate = torch.tensor([0.3, 1.7], dtype=torch.float64, requires_grad=True)
    nu = torch.tensor([0.6, 1.8], dtype=torch.float64, requires_grad=True)
    com = ConwayMaxwellPoisson(log_rate=log_rate, dispersion=nu)
    grad_rate, grad_nu = torch.autograd.grad(com.log_normalizer().sum(), (log_rate, nu))
    k = torch.arange(com.n_categories, dtype=torch.float64)
    probs = com.logits().exp().detach()
    assert torch.allclose(grad_rate, com.mean.detach(), atol=1e-10)
    assert torch.allclose(grad_nu, -(probs * torch.lgamma(k + 1)).sum(-1), atol=1e-10)


def test_sampling_matches_the_pmf():
    torch.manual_seed(0)
    com = ConwayMaxwellPoisson.from_mean(torch.tensor(6.0, dtype=torch.float64), torch.tensor(0.5))
    draws = com.sample((40_000,))
    assert draws.shape == (40_000,) and draws.dtype == torch.float64
    assert torch.equal(draws, draws.round())
    se = math.sqrt(float(com.variance) / 40_000)
    assert abs(float(draws.mean()) - float(com.mean)) < 4 * se
    probs = com.logits().exp()
    freq = torch.bincount(draws.long(), minlength=com.n_categories).double() / 40_000
    assert (freq - probs).abs().max() < 5 * math.sqrt(float(probs.max()) / 40_000)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_dtype_is_preserved(dtype):
    com = ConwayMaxwellPoisson(torch.tensor([2.0, 3.0], dtype=dtype), torch.tensor(0.7, dtype=dtype))
    assert com.sample((3,)).dtype == dtype
    assert com.mean.dtype == dtype
    assert com.log_prob(torch.tensor([1, 2])).dtype == (torch.float32 if dtype == torch.float16 else dtype)


def test_expand_and_shapes():
    com = ConwayMaxwellPoisson(torch.tensor([2.0, 3.0]), torch.tensor(0.7))
    wide = com.expand((4, 2))
    assert wide.batch_shape == (4, 2) and wide.n_categories == com.n_categories
    assert wide.sample((5,)).shape == (5, 4, 2)
    assert com.logits().shape == (2, com.n_categories)


# ------------------------------------------------------------------------------ negative binomial
def test_negative_binomial_mean_and_variance():
    mean, r = torch.tensor([3.0, 10.0], dtype=torch.float64), torch.tensor([2.0, 20.0], dtype=torch.float64)
    nb = negative_binomial(mean, r)
    assert torch.allclose(nb.mean, mean) and torch.allclose(nb.variance, mean + mean ** 2 / r)
    with pytest.raises(ValueError, match="mean"):
        negative_binomial(torch.tensor([0.0]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="dispersion"):
        negative_binomial(torch.tensor([1.0]), torch.tensor([-1.0]))


@pytest.mark.parametrize("mean,r,k", [(10.0, 1.0, 42), (10.0, 2.0, 60), (5.0, 50.0, 20), (2.0, 0.5, 30)])
def test_negative_binomial_bound_holds(mean, r, k):
    nb = negative_binomial(torch.tensor(mean, dtype=torch.float64), torch.tensor(r, dtype=torch.float64))
    counts = torch.arange(k, 20_000, dtype=torch.float64)
    tail = float(nb.log_prob(counts).exp().sum())
    bound = float(negative_binomial_tail_bound(nb, k))
    assert tail <= bound * (1 + 1e-12) and bound <= 30 * tail   # exact for the geometric (r = 1)


def test_negative_binomial_logits_are_the_pmf_and_refuse_small_truncations():
    nb = negative_binomial(torch.tensor([4.0], dtype=torch.float64), torch.tensor([3.0], dtype=torch.float64))
    logits = negative_binomial_logits(nb, 60)
    assert torch.allclose(logits[0], nb.log_prob(torch.arange(60, dtype=torch.float64).unsqueeze(-1))[:, 0])
    with pytest.raises(ValueError, match="n_categories=10"):
        negative_binomial_logits(nb, 10)
    with pytest.raises(TypeError, match="NegativeBinomial"):
        negative_binomial_logits(torch.distributions.Poisson(1.0), 10)


# ------------------------------------------------------------------------------------ GSM over them
def test_gsm_over_any_logits_reuses_the_library_sampler():
    """Same seed, same Poisson logits: gumbel_softmax_counts equals GumbelSoftmaxPoisson.rsample."""
    rate = torch.tensor([0.5, 3.0, 8.0])
    gsm = GumbelSoftmaxPoisson(rate, 0.2)
    torch.manual_seed(3)
    expected = gsm.rsample((4,))
    torch.manual_seed(3)
    assert torch.equal(gumbel_softmax_counts(gsm.logits(), 0.2, (4,)), expected)


def test_gsm_at_low_temperature_draws_the_categorical():
    torch.manual_seed(1)
    com = ConwayMaxwellPoisson.from_mean(torch.tensor(5.0), torch.tensor(2.0))
    z = gumbel_softmax_counts(com.logits(), 0.01, (20_000,))
    assert (z - z.round()).abs().mean() < 0.02
    se = math.sqrt(float(com.variance) / 20_000)
    assert abs(float(z.mean()) - float(com.mean)) < 5 * se
    hard = gumbel_softmax_counts(com.logits(), 0.5, (100,), hard=True)
    assert torch.equal(hard, hard.round())


def test_gsm_gradients_flow_to_the_family_parameters():
    nu = torch.tensor([0.5, 2.0], requires_grad=True)
    com = ConwayMaxwellPoisson.from_mean(torch.tensor([3.0, 3.0]), nu)
    gumbel_softmax_counts(com.logits(), 0.1, (8,)).sum().backward()
    assert nu.grad is not None and torch.isfinite(nu.grad).all() and (nu.grad != 0).all()


def test_gsm_refuses_bad_temperatures_and_logits():
    logits = torch.zeros(3, 5)
    with pytest.raises(ValueError, match="temperature"):
        gumbel_softmax_counts(logits, 0.0)
    with pytest.raises(TypeError, match="logits"):
        gumbel_softmax_counts(torch.zeros(3, 5, dtype=torch.long), 0.1)
    with pytest.raises(ValueError, match="temperature"):
        gumbel_softmax_counts(logits, torch.ones(4))
    with pytest.raises(TypeError, match="hard"):
        gumbel_softmax_counts(logits, 0.1, hard="no")
