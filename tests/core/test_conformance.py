"""PyTorch's generic distribution checks applied to both relaxations, and bad inputs.

Modelled on torch's test/distributions/test_distributions.py: sample shapes, batch shapes, expand,
support, arg_constraints, validate_args on/off, has_rsample, mean/variance shapes, dtype and device
preservation, and log_prob against torch.distributions.Poisson for every dtype combination. Every
bad input must raise TypeError/ValueError naming the argument. (Autograd modes:
test_autograd_modes.py.)
"""
import warnings

import numpy as np
import pytest
import torch
from torch.distributions import Poisson

from hitchhiker import GumbelSoftmaxPoisson, RelaxedPoisson
from hitchhiker.distributions import TRUNCATION_TOLERANCE, default_n_categories, truncation_tail_mass

CLASSES = [RelaxedPoisson, GumbelSoftmaxPoisson]
FLOATS = [torch.float32, torch.float64]


def make(cls, rate, tau=0.2, **kw):
    return cls(rate, tau, **kw)


# ----------------------------------------------------------------------------- shapes

@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("sample_shape", [(), (2,), (2, 3)])
@pytest.mark.parametrize("batch", [(), (4,), (3, 1)])
def test_sample_and_rsample_shapes(cls, sample_shape, batch):
    d = make(cls, torch.full(batch, 3.0))
    assert d.batch_shape == batch and d.event_shape == ()
    for draw in (d.sample(sample_shape), d.rsample(sample_shape)):
        assert draw.shape == sample_shape + batch
        assert bool(d.support.check(draw).all())
    assert d.log_prob(d.sample(sample_shape)).shape == sample_shape + batch


@pytest.mark.parametrize("cls", CLASSES)
def test_expand_then_sample_and_log_prob(cls):
    d = make(cls, torch.tensor([1.0, 4.0]), hard=True)
    e = d.expand((3, 2))
    assert type(e) is cls and e.batch_shape == (3, 2) and e.hard is True
    assert e.rsample((5,)).shape == (5, 3, 2)
    assert e.log_prob(torch.ones(3, 2)).shape == (3, 2)
    torch.testing.assert_close(e.log_prob(torch.ones(3, 2))[0], d.log_prob(torch.ones(2)))
    if cls is GumbelSoftmaxPoisson:
        assert e.n_categories == d.n_categories
    else:
        assert e.indicator is d.indicator
    assert e._validate_args == d._validate_args


@pytest.mark.parametrize("cls", CLASSES)
def test_arg_constraints_has_rsample_and_support(cls):
    d = make(cls, torch.tensor([0.0, 2.0]))
    assert d.has_rsample and set(d.arg_constraints) == {"rate", "temperature"}
    for name, constraint in d.arg_constraints.items():
        assert bool(constraint.check(getattr(d, name)).all())
    assert not bool(d.support.check(torch.tensor(-1.0)))


def test_mean_and_variance_shapes():
    d = RelaxedPoisson(torch.full((3, 1), 5.0), torch.full((2,), 0.2))
    assert d.mean.shape == (3, 2) and d.variance.shape == (3, 2)
    assert d.stddev.shape == (3, 2)
    with pytest.raises(NotImplementedError):
        GumbelSoftmaxPoisson(torch.ones(2), 0.2).mean  # noqa: B018 -- no closed form


@pytest.mark.parametrize("cls", CLASSES)
def test_validate_args_on_and_off(cls):
    with pytest.raises(ValueError, match="rate"):
        cls(torch.tensor([-1.0]), 0.1, validate_args=True)
    with pytest.raises(ValueError, match="temperature"):
        cls(torch.tensor([1.0]), 0.0, validate_args=True)
    d = cls(torch.tensor([-1.0]), 0.1, validate_args=False, **(
        {"n_categories": 5} if cls is GumbelSoftmaxPoisson else {}))
    assert d.log_prob(torch.tensor([-1.0])).shape == (1,)  # no value check either
    with pytest.raises(ValueError):
        make(cls, torch.ones(1), validate_args=True).log_prob(torch.tensor([-1.0]))


# ----------------------------------------------------------------------------- dtypes and devices

@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("dtype", FLOATS)
def test_dtype_is_preserved(cls, dtype):
    rate = torch.tensor([0.5, 7.0], dtype=dtype, requires_grad=True)
    d = make(cls, rate)
    z = d.rsample((3,))
    assert z.dtype == dtype and d.sample().dtype == dtype and d.temperature.dtype == dtype
    (g,) = torch.autograd.grad(z.sum(), rate)
    assert g.dtype == dtype
    assert d.log_prob(torch.tensor([1, 2])).dtype == dtype


@pytest.mark.parametrize("rate_dtype", FLOATS)
@pytest.mark.parametrize("value_dtype", [torch.int32, torch.int64, torch.float32, torch.float64])
@pytest.mark.parametrize("cls", CLASSES)
def test_log_prob_equals_torch_poisson_for_every_dtype_combination(cls, rate_dtype, value_dtype):
    """Before: the rate was cast to the value's dtype: [-1.307, 0.000] instead of [-1.361, -0.300]."""
    rate = torch.tensor([2.5, 0.3, 17.2], dtype=rate_dtype)
    value = torch.tensor([2, 0, 15]).to(value_dtype)
    out = make(cls, rate).log_prob(value)
    expected_dtype = (torch.promote_types(rate_dtype, value_dtype) if value_dtype.is_floating_point
                      else rate_dtype)
    assert out.dtype == expected_dtype
    reference = Poisson(rate.double()).log_prob(value.double())
    tol = 1e-12 if expected_dtype == torch.float64 else 1e-5
    torch.testing.assert_close(out.double(), reference, rtol=tol, atol=tol)


def test_log_prob_of_the_issue_example():
    out = RelaxedPoisson(torch.tensor([2.5, 0.3]), 0.1).log_prob(torch.tensor([2, 0]))
    torch.testing.assert_close(out, torch.tensor([-1.3606, -0.3]), atol=1e-4, rtol=0)


@pytest.mark.parametrize("cls", CLASSES)
def test_device_follows_the_rate(cls):
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        rate = torch.tensor([1.0, 3.0], device=device, requires_grad=True)
        d = make(cls, rate, tau=torch.tensor(0.2))  # a 0-dim CPU temperature is moved, as in torch
        z = d.rsample((2,))
        assert z.device == rate.device and d.sample().device == rate.device
        (g,) = torch.autograd.grad(z.sum(), rate)
        assert g.device == rate.device


# ----------------------------------------------------------------------------- bad inputs

@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("hard", ["no", "", 1, 0, None, 1.0, torch.tensor(True)])
def test_hard_must_be_a_bool(cls, hard):
    """Before: hard="no" counted as True."""
    with pytest.raises(TypeError, match="hard"):
        make(cls, torch.ones(2), hard=hard)


@pytest.mark.parametrize("cls", CLASSES)
def test_numpy_bools_are_bools(cls):
    assert make(cls, torch.ones(2), hard=np.bool_(True)).hard is True
    assert make(cls, torch.ones(2), hard=False).hard is False


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("name", ["rate", "temperature"])
@pytest.mark.parametrize("bad", [torch.tensor([2.0 + 1.0j]), 2.0 + 1.0j, torch.tensor([True]), True,
                                 "3", None, object()])
def test_non_real_rate_or_temperature_is_refused(cls, name, bad):
    """Before: a complex rate silently lost its imaginary part; a boolean counted as 0/1."""
    args = {"rate": torch.tensor([2.0]), "temperature": 0.1, name: bad}
    with pytest.raises(TypeError, match=name):
        cls(args["rate"], args["temperature"])


@pytest.mark.parametrize("cls", CLASSES)
def test_integer_and_numpy_rates_are_converted_exactly(cls):
    d = make(cls, torch.tensor([3, 4]))
    assert d.rate.dtype == torch.get_default_dtype() and d.rate.tolist() == [3.0, 4.0]
    d = make(cls, np.array([3.0, 4.0]), tau=np.float64(0.2))
    assert d.rate.dtype == torch.float64 and d.rsample().shape == (2,)


@pytest.mark.parametrize("cls", CLASSES)
def test_temperature_on_another_device_is_refused(cls):
    with pytest.raises(ValueError, match="temperature"):
        cls(torch.ones(2), torch.full((2,), 0.1, device="meta"), validate_args=False)


@pytest.mark.parametrize("cls", CLASSES)
def test_bad_validate_args_and_log_prob_values(cls):
    with pytest.raises(TypeError, match="validate_args"):
        cls(torch.ones(2), 0.1, validate_args="yes")
    d = make(cls, torch.ones(2))
    with pytest.raises(TypeError, match="value"):
        d.log_prob(torch.tensor([1.0 + 1.0j, 0.0]))
    with pytest.raises(ValueError, match="value"):
        d.log_prob(torch.ones(2, device="meta"))


@pytest.mark.parametrize("k", [np.int64(12), np.int32(12), 12, torch.tensor(12)])
def test_integral_n_categories_are_accepted(k):
    """Before: np.int64 was refused."""
    d = GumbelSoftmaxPoisson(torch.ones(2), 0.1, n_categories=k)
    assert d.n_categories == 12 and type(d.n_categories) is int


@pytest.mark.parametrize("k,error", [(0, ValueError), (-2, ValueError), (12.0, TypeError),
                                     (np.float64(12), TypeError), (True, TypeError),
                                     (np.bool_(True), TypeError), ("12", TypeError),
                                     (torch.tensor(12.0), TypeError)])
def test_bad_n_categories_are_refused(k, error):
    with pytest.raises(error, match="n_categories"):
        GumbelSoftmaxPoisson(torch.ones(2), 0.1, n_categories=k)


def test_unknown_indicator_is_refused():
    with pytest.raises(ValueError, match="indicator"):
        RelaxedPoisson(torch.ones(2), 0.1, indicator="step")


# ----------------------------------------------------------------------------- GSM truncation

def _exact_tail(rate, k):
    """P(X >= k) for Poisson(rate) from the pmf itself (float64 sum of the first k terms)."""
    j = torch.arange(k, dtype=torch.float64)
    rate = torch.tensor(rate, dtype=torch.float64)
    return float(1 - torch.exp(torch.xlogy(j, rate) - rate - torch.lgamma(j + 1)).sum())


@pytest.mark.parametrize("rate,k", [(1.0, 3), (5.0, 10), (100.0, 120), (100.0, 3), (0.2, 1)])
def test_truncation_tail_mass_is_the_poisson_tail(rate, k):
    assert truncation_tail_mass(torch.tensor([0.0, rate]), k) == pytest.approx(
        _exact_tail(rate, k), rel=1e-6, abs=1e-12)  # torch's igamma: ~1e-8


def test_too_few_categories_warn_with_the_numbers():
    """Before: n_categories=3 at lambda=100 silently had sample mean 1.97."""
    with pytest.warns(UserWarning, match=r"n_categories=3.*mass 1.*largest rate 100"):
        GumbelSoftmaxPoisson(torch.tensor([2.0, 100.0]), 0.1, n_categories=3)
    with pytest.raises(ValueError, match="n_categories=3"):
        GumbelSoftmaxPoisson(torch.tensor([2.0, 100.0]), 0.1, n_categories=3, validate_args=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GumbelSoftmaxPoisson(torch.tensor([100.0]), 0.1, n_categories=3, validate_args=False)


def test_default_and_ample_truncations_never_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for rate in (0.0, 1e-3, 0.5, 1.0, 3.0, 10.0, 37.0, 100.0, 1e3, 1e4):
            d = GumbelSoftmaxPoisson(torch.tensor([rate]), 0.1)
            assert truncation_tail_mass(d.rate, d.n_categories) <= TRUNCATION_TOLERANCE
            assert d.n_categories == default_n_categories(d.rate)
        GumbelSoftmaxPoisson(torch.tensor([2.0]), 0.1, n_categories=15)
