"""moment_ratios and wasserstein1: agreement with NumPy/SciPy, batching, normalisation, validation.

SciPy is only the independent reference of two tests (``pytest.importorskip``): the core tests run in a
venv with torch, numpy, pytest and hypothesis alone.
"""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hitchhiker.metrics import moment_ratios, wasserstein1

finite = st.floats(-1e3, 1e3, allow_nan=False, width=64)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40).flatmap(lambda n: st.tuples(st.lists(finite, min_size=n, max_size=n),
                                                      st.lists(finite, min_size=n, max_size=n))))
def test_wasserstein1_matches_scipy(pair):
    wasserstein_distance = pytest.importorskip("scipy.stats").wasserstein_distance
    x, y = pair
    ours = wasserstein1(torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64))
    assert ours.item() == pytest.approx(wasserstein_distance(x, y), rel=1e-9, abs=1e-9)


def test_wasserstein1_batches_over_leading_dims_and_normalises():
    wasserstein_distance = pytest.importorskip("scipy.stats").wasserstein_distance
    x = torch.randn(3, 4, 500, dtype=torch.float64) * 5 + 20
    y = torch.poisson(torch.full((3, 4, 500), 20.0, dtype=torch.float64))
    ours = wasserstein1(x, y)
    assert ours.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            assert ours[i, j].item() == pytest.approx(wasserstein_distance(x[i, j], y[i, j]), rel=1e-9)
    rate = torch.tensor([1.0, 4.0, 9.0, 16.0], dtype=torch.float64)
    torch.testing.assert_close(wasserstein1(x, y, rate=rate), ours / rate.sqrt())
    # the sample dimension can be any dimension
    torch.testing.assert_close(wasserstein1(x.transpose(0, 2), y.transpose(0, 2), dim=0), ours.T)


def test_wasserstein1_of_a_shift_is_the_shift_and_symmetric():
    x = torch.rand(1000, dtype=torch.float64)
    assert wasserstein1(x, x + 2.5).item() == pytest.approx(2.5)
    assert wasserstein1(x, x.flip(0)).item() == 0.0  # order does not matter
    y = torch.randn(1000, dtype=torch.float64)
    assert wasserstein1(x, y).item() == pytest.approx(wasserstein1(y, x).item())


def test_moment_ratios_match_numpy():
    samples = torch.poisson(torch.full((5, 2000), 7.0, dtype=torch.float64))
    ratios = moment_ratios(samples, 7.0)
    np.testing.assert_allclose(ratios.mean.numpy(), samples.numpy().mean(1) / 7.0)
    np.testing.assert_allclose(ratios.variance.numpy(), samples.numpy().var(1, ddof=1) / 7.0)
    # Poisson samples: both ratios near 1 (5 trials x 2000 draws: SE ~ 0.008 and 0.03)
    assert ratios.mean.mean().item() == pytest.approx(1.0, abs=0.03)
    assert ratios.variance.mean().item() == pytest.approx(1.0, abs=0.1)


def test_moment_ratios_per_rate_and_dim():
    rate = torch.tensor([2.0, 50.0])
    samples = torch.tensor([[1.0, 3.0], [40.0, 60.0]])
    ratios = moment_ratios(samples, rate)
    torch.testing.assert_close(ratios.mean, torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(ratios.variance, torch.tensor([1.0, 4.0]))
    torch.testing.assert_close(moment_ratios(samples.T, rate, dim=0).variance, ratios.variance)
    integer = moment_ratios(torch.tensor([1, 3]), 2)  # integer counts are fine
    assert integer.mean.item() == 1.0 and integer.mean.is_floating_point()


@pytest.mark.parametrize("rate", [0.0, -1.0, math.nan, math.inf, "a"])
def test_bad_rate_raises_value_error(rate):
    with pytest.raises(ValueError, match="rate"):
        moment_ratios(torch.ones(10), rate)
    with pytest.raises(ValueError, match="rate"):
        wasserstein1(torch.ones(10), torch.ones(10), rate=rate)


def test_bad_samples_raise_value_error():
    with pytest.raises(ValueError, match="same shape"):
        wasserstein1(torch.ones(10), torch.ones(11))
    with pytest.raises(ValueError, match="at least one"):
        wasserstein1(torch.ones(0), torch.ones(0))
    with pytest.raises(ValueError, match="at least 2"):
        moment_ratios(torch.ones(1), 1.0)
    with pytest.raises(ValueError, match="samples"):
        moment_ratios(torch.tensor(3.0), 1.0)
