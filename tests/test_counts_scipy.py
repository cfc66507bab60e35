"""hitchhiker.counts against independent references: scipy.stats for the negative binomial, Poisson and
geometric, and a 1000-term float64 series (scipy's gammaln) for the COM-Poisson normaliser."""
import math

import numpy as np
import pytest
import torch
from scipy import special, stats

from hitchhiker.counts import (
    ConwayMaxwellPoisson,
    negative_binomial,
    negative_binomial_logits,
    negative_binomial_tail_bound,
)


def series_log_z(rate: float, nu: float, n_terms: int = 1000) -> float:
    k = np.arange(n_terms, dtype=np.float64)
    return float(special.logsumexp(k * math.log(rate) - nu * special.gammaln(k + 1)))


@pytest.mark.parametrize("rate,nu", [(0.5, 0.3), (2.0, 0.5), (8.0, 1.0), (30.0, 1.5), (200.0, 3.0),
                                     (1.5, 0.25), (9.5 ** 0.6, 0.6)])
def test_com_normaliser_against_a_long_series(rate, nu):
    com = ConwayMaxwellPoisson(torch.tensor(rate, dtype=torch.float64), torch.tensor(nu, dtype=torch.float64))
    reference = series_log_z(rate, nu)
    error = reference - float(com.log_normalizer())
    assert -1e-12 <= error <= float(com.truncation_bound()) + 1e-12
    assert error <= 1e-4


@pytest.mark.parametrize("rate,nu", [(3.0, 0.5), (12.0, 2.0)])
def test_com_pmf_against_the_long_series_pmf(rate, nu):
    com = ConwayMaxwellPoisson(torch.tensor(rate, dtype=torch.float64), torch.tensor(nu, dtype=torch.float64))
    k = np.arange(com.n_categories)
    reference = k * math.log(rate) - nu * special.gammaln(k + 1) - series_log_z(rate, nu)
    np.testing.assert_allclose(com.log_prob(torch.from_numpy(k)).numpy(), reference, atol=1e-4)


@pytest.mark.parametrize("rate", [0.4, 6.0, 60.0])
def test_com_with_nu_one_is_scipy_poisson(rate):
    f64 = torch.float64
    com = ConwayMaxwellPoisson(torch.tensor(rate, dtype=f64), torch.tensor(1.0, dtype=f64))
    k = np.arange(com.n_categories)
    # equal up to the truncation of the normaliser (at most the proven bound)
    np.testing.assert_allclose(com.log_prob(torch.from_numpy(k)).numpy(), stats.poisson.logpmf(k, rate),
                               atol=float(com.truncation_bound()) + 1e-12, rtol=0)


@pytest.mark.parametrize("rate", [0.3, 0.7])
def test_com_with_small_nu_is_close_to_scipy_geometric(rate):
    f64 = torch.float64
    com = ConwayMaxwellPoisson(torch.tensor(rate, dtype=f64), torch.tensor(1e-5, dtype=f64))
    k = np.arange(8)
    # geometric on 0, 1, ...: nbinom with one success, success probability 1 - rate
    np.testing.assert_allclose(com.log_prob(torch.from_numpy(k)).numpy(), stats.nbinom.logpmf(k, 1, 1 - rate),
                               atol=1e-3)


@pytest.mark.parametrize("mean,r", [(0.5, 0.7), (4.0, 2.0), (10.0, 1.0), (10.0, 20.0), (7.0, 150.0)])
def test_negative_binomial_against_scipy(mean, r):
    nb = negative_binomial(torch.tensor(mean, dtype=torch.float64), torch.tensor(r, dtype=torch.float64))
    p_success = r / (r + mean)                          # scipy's p: probability of a "success"
    k = np.arange(80)
    np.testing.assert_allclose(nb.log_prob(torch.from_numpy(k).double()).numpy(),
                               stats.nbinom.logpmf(k, r, p_success), atol=1e-9)
    logits = negative_binomial_logits(nb.expand((1,)), 400)[0].numpy()
    np.testing.assert_allclose(logits, stats.nbinom.logpmf(np.arange(400), r, p_success), atol=1e-9)
    for n_categories in (10, 40, 120):
        tail = stats.nbinom.sf(n_categories - 1, r, p_success)       # P(X >= K)
        bound = float(negative_binomial_tail_bound(nb, n_categories))
        assert tail <= bound * (1 + 1e-9)
        assert bound <= 1.0 / (1 - min(0.999, float(torch.sigmoid(nb.logits)) * max(1, (n_categories + r)
                                                                                     / (n_categories + 1)))) \
            * stats.nbinom.pmf(n_categories, r, p_success) * (1 + 1e-9)


def test_com_sampling_against_the_pmf_by_chi_square():
    torch.manual_seed(0)
    com = ConwayMaxwellPoisson.from_mean(torch.tensor(4.0, dtype=torch.float64), torch.tensor(0.6))
    draws = com.sample((20_000,)).long().numpy()
    probs = com.logits().exp().numpy()
    keep = probs * 20_000 >= 5
    observed = np.bincount(draws, minlength=len(probs))
    chi2 = ((observed[keep] - 20_000 * probs[keep]) ** 2 / (20_000 * probs[keep])).sum()
    assert stats.chi2.sf(chi2, keep.sum() - 1) > 1e-3
