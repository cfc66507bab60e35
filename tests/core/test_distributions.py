"""RelaxedPoisson and GumbelSoftmaxPoisson: exact moments, unbiased gradients, validation, dtypes."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hitchhiker import GumbelSoftmaxPoisson, RelaxedPoisson
from hitchhiker.distributions import default_n_categories
from hitchhiker.moments import relaxed_mean, relaxed_variance

F64 = torch.float64


def mean_and_se(x):
    x = x.double()
    return x.mean().item(), (x.std() / math.sqrt(x.numel())).item()


def variance_and_se(x):
    """Sample variance and its standard error sqrt(Var[(x - mean)^2] / n)."""
    x = x.double()
    sq = (x - x.mean()) ** 2
    return x.var().item(), (sq.std() / math.sqrt(x.numel())).item()


def relaxed_samples(rate, tau, indicator, n, **kw):
    return RelaxedPoisson(torch.tensor(rate, dtype=F64), tau, indicator, **kw).rsample((n,))


@pytest.mark.parametrize("indicator", ["cubic", "sigmoid"])
@pytest.mark.parametrize("rate,tau", [(0.5, 0.1), (2.0, 0.02), (2.0, 0.5), (20.0, 0.2),
                                      (100.0, 0.05), (100.0, 0.5), (5.0, 1.5)])
def test_moments_match_campbell(indicator, rate, tau):
    n = 40_000 if indicator == "cubic" else 20_000
    z = relaxed_samples(rate, tau, indicator, n)
    mean, se_m = mean_and_se(z)
    var, se_v = variance_and_se(z)
    assert abs(mean - relaxed_mean(rate, tau, indicator).item()) < 4.5 * se_m
    assert abs(var - relaxed_variance(rate, tau, indicator).item()) < 4.5 * se_v


@pytest.mark.slow
def test_no_truncation_bias_at_lambda100_tau05():
    """The official fixed-cap code gets this case badly wrong; ours must match Campbell closely."""
    tau = 0.5
    z = relaxed_samples(100.0, tau, "cubic", 200_000)
    assert abs(z.mean().item() / 100.0 - 1) < 0.005
    assert abs(z.var().item() / 100.0 / (1 - 9 * tau / 35) - 1) < 0.02
    zs = relaxed_samples(100.0, tau, "sigmoid", 100_000)
    assert abs(zs.mean().item() / relaxed_mean(100.0, tau, "sigmoid").item() - 1) < 0.005
    assert abs(zs.var().item() / relaxed_variance(100.0, tau, "sigmoid").item() - 1) < 0.02


@pytest.mark.parametrize("indicator", ["cubic", "sigmoid", "linear", "quintic", "cosine"])
@pytest.mark.parametrize("rate,tau", [(3.0, 0.3), (30.0, 0.1), (2.0, 2.0)])
def test_pathwise_gradient_is_unbiased_for_the_relaxed_mean(indicator, rate, tau):
    """E[dz~/dlambda] = dE[z~]/dlambda (exactly 1 for compact ramps when tau <= 1)."""
    n = 40_000
    lam = torch.full((n,), rate, dtype=F64, requires_grad=True)
    z = RelaxedPoisson(lam, tau, indicator).rsample()
    (grad,) = torch.autograd.grad(z.sum(), lam)
    target_rate = torch.tensor(rate, dtype=F64, requires_grad=True)
    (target,) = torch.autograd.grad(relaxed_mean(target_rate, tau, indicator), target_rate)
    mean, se = mean_and_se(grad)
    assert abs(mean - target.item()) < 4.5 * se + 1e-9


def test_temperature_gradient_is_unbiased():
    n, rate, tau = 40_000, 10.0, 0.4
    t = torch.full((n,), tau, dtype=F64, requires_grad=True)
    z = RelaxedPoisson(torch.tensor(rate, dtype=F64), t, "sigmoid").rsample()
    (grad,) = torch.autograd.grad(z.sum(), t)
    t0 = torch.tensor(tau, dtype=F64, requires_grad=True)
    (target,) = torch.autograd.grad(relaxed_mean(rate, t0, "sigmoid"), t0)
    mean, se = mean_and_se(grad)
    assert abs(mean - target.item()) < 4.5 * se


def test_mixed_rates_in_one_batch():
    rates = torch.tensor([1e-3, 0.7, 12.0, 150.0, 1000.0], dtype=F64)
    z = RelaxedPoisson(rates, 0.3, "cubic").rsample((20_000,))
    se = (z.std(0) / math.sqrt(z.shape[0]))
    assert torch.all((z.mean(0) - rates).abs() < 4.5 * se + 1e-6)
    var_se = ((z - z.mean(0)) ** 2).std(0) / math.sqrt(z.shape[0])
    assert torch.all((z.var(0) - rates * (1 - 9 * 0.3 / 35)).abs() < 4.5 * var_se + 1e-6)


def test_straight_through_forward_is_the_exact_count_with_the_relaxed_gradient():
    lam = torch.full((5000,), 7.0, dtype=F64, requires_grad=True)
    torch.manual_seed(7)
    z_soft = RelaxedPoisson(lam, 0.2, "cubic").rsample()
    (g_soft,) = torch.autograd.grad(z_soft.sum(), lam)
    torch.manual_seed(7)
    z_hard = RelaxedPoisson(lam, 0.2, "cubic", hard=True).rsample()
    (g_hard,) = torch.autograd.grad(z_hard.sum(), lam)
    assert torch.equal(z_hard, z_hard.round())
    assert torch.equal(g_hard, g_soft)  # same arrivals, same relaxed gradient
    # the hard count of the same arrivals: it differs from the relaxed count only through ramp arrivals
    assert (z_hard - z_soft).abs().max() < 0.2 * 7 * 2 + 10
    mean, se = mean_and_se(z_hard)
    assert abs(mean - 7.0) < 4.5 * se
    var, se_v = variance_and_se(z_hard)
    assert abs(var - 7.0) < 4.5 * se_v  # exact Poisson: no variance deficit


def test_sample_draws_exact_poisson_counts_without_gradient():
    lam = torch.tensor([3.0, 40.0], requires_grad=True)
    d = RelaxedPoisson(lam, 0.5)
    s = d.sample((30_000,))
    assert not s.requires_grad and torch.equal(s, s.round())
    assert torch.allclose(s.mean(0), lam.detach(), rtol=0.03)
    assert torch.allclose(s.var(0), lam.detach(), rtol=0.06)


def test_log_prob_is_the_poisson_log_pmf_extended_by_lgamma():
    lam = torch.tensor([0.5, 4.0, 30.0], dtype=F64)
    d = RelaxedPoisson(lam, 0.1)
    k = torch.tensor([0.0, 3.0, 31.0], dtype=F64)
    assert torch.allclose(d.log_prob(k), torch.distributions.Poisson(lam).log_prob(k))
    x = torch.tensor([0.3, 2.5, 29.7], dtype=F64)
    expected = x * lam.log() - lam - torch.lgamma(x + 1)
    assert torch.allclose(d.log_prob(x), expected)
    with pytest.raises(ValueError):
        d.log_prob(torch.tensor([-1.0, 0.0, 0.0], dtype=F64))


def test_mean_and_variance_properties():
    d = RelaxedPoisson(torch.tensor([100.0], dtype=F64), 0.5, "cubic")
    assert torch.allclose(d.mean, torch.tensor([100.0], dtype=F64))
    assert torch.allclose(d.variance, torch.tensor([100.0 * (1 - 4.5 / 35)], dtype=F64))
    hard = RelaxedPoisson(torch.tensor([9.0]), 0.5, hard=True)
    assert torch.equal(hard.mean, torch.tensor([9.0])) and torch.equal(hard.variance, torch.tensor([9.0]))


def test_shapes_and_broadcasting():
    d = RelaxedPoisson(torch.ones(3, 1), torch.full((4,), 0.1))
    assert d.batch_shape == (3, 4)
    assert d.rsample((2, 5)).shape == (2, 5, 3, 4)
    assert d.sample().shape == (3, 4)
    assert d.expand((2, 3, 4)).rsample().shape == (2, 3, 4)
    g = GumbelSoftmaxPoisson(torch.ones(3, 1), torch.full((4,), 0.1), n_categories=8)
    assert g.rsample((2,)).shape == (2, 3, 4)
    assert g.rsample_onehot((2,)).shape == (2, 3, 4, 8)
    assert RelaxedPoisson(2.0, 0.1).rsample((7,)).shape == (7,)


def test_gsm_mean_close_to_rate_at_small_temperature():
    for rate in (0.5, 5.0, 40.0):
        d = GumbelSoftmaxPoisson(torch.tensor(rate, dtype=F64), 0.05)
        z = d.rsample((20_000,))
        mean, se = mean_and_se(z)
        assert abs(mean - rate) < 0.02 * rate + 5 * se
        y = d.rsample_onehot((10,))
        assert torch.allclose(y.sum(-1), torch.ones((), dtype=F64))


def test_gsm_hard_is_an_exact_truncated_poisson_draw_with_gradient():
    lam = torch.full((20_000,), 6.0, dtype=F64, requires_grad=True)
    z = GumbelSoftmaxPoisson(lam, 0.5, hard=True).rsample()
    assert torch.equal(z, z.round())
    mean, se = mean_and_se(z)
    assert abs(mean - 6.0) < 4.5 * se
    (g,) = torch.autograd.grad(z.sum(), lam)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_gsm_default_truncation_covers_the_tail():
    assert default_n_categories(torch.tensor([1.0, 100.0])) == math.floor(100 + 40 + 5)
    d = GumbelSoftmaxPoisson(torch.tensor([2.0, 100.0]), 0.1)
    assert d.n_categories == 145


# ----------------------------------------------------------------------------- validation

bad_rates = st.one_of(
    st.floats(max_value=-1e-12, allow_infinity=False, allow_nan=False),
    st.just(float("nan")), st.just(float("inf")), st.just(float("-inf")),
)
bad_temperatures = st.one_of(
    st.floats(max_value=0.0, allow_infinity=False, allow_nan=False),
    st.just(float("nan")), st.just(float("inf")),
)
good_rates = st.floats(min_value=0.0, max_value=1e3)


@settings(max_examples=40, deadline=None)
@given(bad=bad_rates, good=good_rates, cls=st.sampled_from([RelaxedPoisson, GumbelSoftmaxPoisson]))
def test_bad_rate_raises_value_error_naming_rate(bad, good, cls):
    with pytest.raises(ValueError, match="rate"):
        cls(torch.tensor([good, bad]), 0.1)


@settings(max_examples=40, deadline=None)
@given(bad=bad_temperatures, cls=st.sampled_from([RelaxedPoisson, GumbelSoftmaxPoisson]))
def test_bad_temperature_raises_value_error_naming_temperature(bad, cls):
    with pytest.raises(ValueError, match="temperature"):
        cls(torch.tensor([1.0, 2.0]), bad)


@settings(max_examples=20, deadline=None)
@given(name=st.text(min_size=0, max_size=12).filter(
    lambda s: s not in {"cubic", "sigmoid", "linear", "quintic", "cosine"}))
def test_unknown_indicator_raises(name):
    with pytest.raises(ValueError, match="indicator"):
        RelaxedPoisson(torch.ones(2), 0.1, indicator=name)


@settings(max_examples=20, deadline=None)
@given(a=st.integers(2, 6), b=st.integers(2, 6))
def test_mismatched_shapes_raise(a, b):
    if a == b:
        return
    with pytest.raises(ValueError, match="rate.*temperature"):
        RelaxedPoisson(torch.ones(a), torch.full((b,), 0.1))
    with pytest.raises(ValueError, match="rate.*temperature"):
        GumbelSoftmaxPoisson(torch.ones(a), torch.full((b,), 0.1))


@pytest.mark.parametrize("k,error", [(0, ValueError), (-3, ValueError), (2.5, TypeError),
                                     (10.0, TypeError), (True, TypeError), ("10", TypeError)])
def test_bad_n_categories_raises(k, error):
    with pytest.raises(error, match="n_categories"):
        GumbelSoftmaxPoisson(torch.ones(2), 0.1, n_categories=k)


def test_validation_can_be_switched_off():
    RelaxedPoisson(torch.tensor([-1.0]), 0.1, validate_args=False)  # no error


# ----------------------------------------------------------------------------- extremes, dtypes, devices

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", ["cubic", "sigmoid", "gsm"])
def test_extreme_rates_give_finite_samples_and_gradients(dtype, method):
    rates = torch.tensor([1e-6, 1e-3, 1.0, 1e2, 1e3, 1e4], dtype=dtype, requires_grad=True)
    for tau in (0.01, 0.1, 0.5):
        if method == "gsm":
            z = GumbelSoftmaxPoisson(rates, tau).rsample((2,))
        else:
            z = RelaxedPoisson(rates, tau, method).rsample((8,))
        (g,) = torch.autograd.grad(z.sum(), rates)
        assert torch.isfinite(z).all() and torch.isfinite(g).all()
        assert z.dtype == dtype


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("cls", [RelaxedPoisson, GumbelSoftmaxPoisson])
def test_half_precision_inputs_work(dtype, cls):
    rate = torch.tensor([0.5, 5.0, 50.0], dtype=dtype, requires_grad=True)
    z = cls(rate, 0.2).rsample((64,))
    assert z.dtype == dtype and torch.isfinite(z).all()
    (g,) = torch.autograd.grad(z.float().sum(), rate)
    assert g.dtype == dtype and torch.isfinite(g).all()
    assert abs(z.float().mean(0)[2].item() - 50.0) < 6.0


def test_integer_and_python_number_inputs():
    z = RelaxedPoisson(torch.tensor([3, 4]), 1).rsample()
    assert z.dtype == torch.get_default_dtype()
    assert RelaxedPoisson(3.0, 0.1).rsample().shape == ()


def test_zero_rate_gives_zero_count():
    z = RelaxedPoisson(torch.zeros(100, requires_grad=True), 0.3).rsample()
    assert torch.equal(z.detach(), torch.zeros(100))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("cls", [RelaxedPoisson, GumbelSoftmaxPoisson])
def test_samples_live_on_the_rate_device(cls):
    rate = torch.tensor([2.0, 30.0], device="cuda", requires_grad=True)
    z = cls(rate, 0.1).rsample((1000,))
    assert z.device == rate.device
    (g,) = torch.autograd.grad(z.sum(), rate)
    assert g.device == rate.device and torch.isfinite(g).all()
    assert torch.allclose(z.mean(0), rate.detach(), rtol=0.1)


def test_poisson_log_prob_is_the_one_log_pmf():
    from hitchhiker import poisson_log_prob

    lam = torch.tensor([0.0, 0.5, 30.0], dtype=F64)
    k = torch.tensor([0.0, 2.0, 31.0], dtype=F64)
    expected = torch.distributions.Poisson(lam[1:]).log_prob(k[1:])
    out = poisson_log_prob(k, lam)
    assert out[0].item() == 0.0 and torch.allclose(out[1:], expected)
    d = GumbelSoftmaxPoisson(lam[1:], 0.1)
    assert torch.allclose(d.log_prob(k[1:]), expected)


def test_gsm_logits_have_the_derivatives_of_k_log_rate_to_second_order():
    """The logits' value comes from a float64 computation, their derivatives from a zero-valued term:
    both must match the plain float64 formula k log(lambda) - log k!, first and second order."""
    from hitchhiker import GumbelSoftmaxPoisson

    rate = torch.tensor([0.3, 2.0, 9.0], dtype=torch.float32, requires_grad=True)
    logits = GumbelSoftmaxPoisson(rate, 0.5, n_categories=12).logits()
    k = torch.arange(12, dtype=torch.float64)
    reference = k * rate.detach().double().log().unsqueeze(-1) - torch.lgamma(k + 1)
    torch.testing.assert_close(logits.double(), reference, rtol=0, atol=1e-5)
    weights = torch.linspace(-1, 1, 12)
    (grad,) = torch.autograd.grad((logits * weights).sum(), rate, create_graph=True)
    expected = (k.float() * weights).sum() / rate.detach()                   # sum_k w_k k / lambda
    torch.testing.assert_close(grad, expected)
    (second,) = torch.autograd.grad(grad.sum(), rate)
    torch.testing.assert_close(second, -(k.float() * weights).sum() / rate.detach() ** 2)
