"""``log_rate=`` (issue 24): the official code's parameter, on both relaxations."""
import math

import pytest
import torch

from hitchhiker import GumbelSoftmaxPoisson, RelaxedPoisson

CLASSES = [RelaxedPoisson, GumbelSoftmaxPoisson]
F64 = torch.float64


def _draw(cls, seed, sample_shape=(2000,), **kwargs):
    torch.manual_seed(seed)
    return cls(temperature=0.3, **kwargs).rsample(sample_shape)


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_log_rate_matches_the_rate_path_sample_and_gradient(cls, dtype):
    """Same seed, same draws; the gradient to log_rate is the rate's gradient times the rate."""
    log_rate = torch.tensor([-3.0, 0.0, 1.5, 4.0], dtype=dtype, requires_grad=True)
    rate = log_rate.detach().exp().requires_grad_()
    weights = torch.linspace(0.5, 2.0, 4, dtype=dtype)
    z_log = _draw(cls, 7, log_rate=log_rate)
    z_rate = _draw(cls, 7, rate=rate)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(z_log, z_rate, **tol)
    (g_log,) = torch.autograd.grad((z_log * weights).sum(), log_rate)
    (g_rate,) = torch.autograd.grad((z_rate * weights).sum(), rate)
    torch.testing.assert_close(g_log, g_rate * rate.detach(), **tol)
    assert g_log.dtype == dtype and torch.isfinite(g_log).all()


@pytest.mark.parametrize("cls", CLASSES)
def test_log_prob_and_moments_agree_with_the_rate_path(cls):
    log_rate = torch.tensor([-1.0, 2.0], dtype=F64)
    by_log, by_rate = cls(log_rate=log_rate, temperature=0.2), cls(log_rate.exp(), 0.2)
    z = torch.tensor([[0.0, 3.0], [1.5, 7.0]], dtype=F64)
    torch.testing.assert_close(by_log.log_prob(z), by_rate.log_prob(z))
    torch.testing.assert_close(by_log.log_rate, log_rate)
    torch.testing.assert_close(by_rate.log_rate, log_rate)
    if cls is RelaxedPoisson:
        torch.testing.assert_close(by_log.mean, by_rate.mean)
        torch.testing.assert_close(by_log.variance, by_rate.variance)
    else:
        torch.testing.assert_close(by_log.logits(), by_rate.logits())
        assert by_log.n_categories == by_rate.n_categories
    expanded = by_log.expand((3, 2))
    assert expanded.log_rate.shape == (3, 2) and expanded.rsample().shape == (3, 2)


@pytest.mark.parametrize("cls", CLASSES)
def test_large_log_rates_stay_finite_or_are_refused_clearly(cls):
    """exp(log_rate) overflows float32 above 88.7: anything above log(9.2e18) = 43.67 is refused
    (no count that large can be drawn), and everything below it is finite in float32."""
    for bad in (43.7, 88.0, 100.0, 1e4, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="log_rate must be below 43.66"):
            cls(log_rate=torch.tensor([0.0, bad]), temperature=0.1)
    if cls is GumbelSoftmaxPoisson:   # K ~ 8.6e18 categories cannot be allocated: GSM's top is its memory
        log_rate = torch.tensor([math.log(5e4)], requires_grad=True)
        z = cls(log_rate=log_rate, temperature=0.1).rsample()
    else:  # rate e^43.6 = 8.6e18; at tau = 1e-8 the window 1 +- tau is below float32 resolution: exact counts
        log_rate = torch.tensor([43.6], requires_grad=True)
        z = cls(log_rate=log_rate, temperature=1e-8).rsample()
    (grad,) = torch.autograd.grad(z.sum(), log_rate)
    rate = log_rate.detach().exp().item()
    assert torch.isfinite(z).all() and torch.isfinite(grad).all() and z.dtype == torch.float32
    assert abs(z.item() - rate) < 6 * math.sqrt(rate) + 1e-6 * rate


def test_float16_log_rates_are_limited_by_float16_samples():
    with pytest.raises(ValueError, match="float16"):
        RelaxedPoisson(log_rate=torch.tensor([11.1], dtype=torch.float16), temperature=0.1)
    z = RelaxedPoisson(log_rate=torch.tensor([10.9], dtype=torch.float16), temperature=0.1).rsample()
    assert torch.isfinite(z).all() and z.dtype == torch.float16


@pytest.mark.parametrize("cls", CLASSES)
def test_very_small_and_minus_infinite_log_rates(cls):
    """log_rate = -inf is a rate of 0; -200 underflows exp in float32 (and GSM's logits use the log
    rate itself, so its category probabilities stay exact)."""
    log_rate = torch.tensor([-math.inf, -200.0, 0.0], requires_grad=True)
    d = cls(log_rate=log_rate, temperature=0.2)
    z = d.rsample((50,))
    (grad,) = torch.autograd.grad(z.sum(), log_rate)
    assert torch.isfinite(z).all() and torch.isfinite(grad).all()
    assert (z[:, :2] == 0).all()
    lp = d.log_prob(torch.tensor([0.0, 1.0, 2.0]))
    assert lp[0] == 0 and lp[1] == -200.0 and torch.isfinite(lp).all()
    if cls is GumbelSoftmaxPoisson:
        logits = d.logits()
        assert torch.isfinite(logits).all() and logits[1, 1] == -200.0


@pytest.mark.parametrize("cls", CLASSES)
def test_exactly_one_of_rate_and_log_rate(cls):
    with pytest.raises(ValueError, match="exactly one of rate and log_rate"):
        cls(torch.ones(2), 0.1, log_rate=torch.zeros(2))
    with pytest.raises(TypeError, match="needs a rate \\(or log_rate="):
        cls(temperature=0.1)
    with pytest.raises(TypeError, match="temperature"):
        cls(log_rate=torch.zeros(2))
    with pytest.raises(TypeError, match="log_rate"):
        cls(log_rate="1.0", temperature=0.1)
    with pytest.raises(ValueError, match="log_rate of shape \\(3,\\) and temperature of shape \\(2,\\)"):
        cls(log_rate=torch.zeros(3), temperature=torch.full((2,), 0.1))
