"""The truncation-free EAT sampler against a plain full-arrival reference, in distribution.

The reference (:func:`full_arrival_eat`, below) materialises every arrival up to a cap far beyond the
indicator's window (mean + 8 standard deviations + 30 arrivals of the process up to 1 + h tau, tail mass
below 1e-12), so it is exact; its gradient comes from autograd through t = S / lambda. The fast path
(:class:`hitchhiker.RelaxedPoisson`) must give the same joint distribution of (sample, gradient): means,
variances and the covariance agree within Monte Carlo standard errors, and two-sample
Kolmogorov-Smirnov tests (:func:`ks_pvalue`, asymptotic, no SciPy) do not reject.
"""
import math

import numpy as np
import pytest
import torch

import hitchhiker._eat as eat
from hitchhiker import RelaxedPoisson
from hitchhiker._eat import _ramp_value_and_slope, eat_pathwise
from hitchhiker.indicators import get_indicator
from hitchhiker.moments import relaxed_mean, relaxed_variance


def full_arrival_eat(rate, temperature, indicator, horizon):
    r"""EAT from every arrival before ``horizon`` (with margin): :math:`\sum_i f((1 - S_i/\lambda)/\tau)`."""
    mean = float(rate.detach().max()) * horizon
    n = int(math.ceil(mean + 8 * math.sqrt(mean) + 30))
    waits = torch.empty(rate.shape + (n,), dtype=rate.dtype).exponential_()
    times = waits.cumsum(-1) / rate.unsqueeze(-1)
    return get_indicator(indicator)((1 - times) / temperature.unsqueeze(-1)).sum(-1)


def ks_pvalue(x, y):
    """Two-sample Kolmogorov-Smirnov p-value (asymptotic Kolmogorov law, Stephens' correction)."""
    x, y = np.sort(np.asarray(x)), np.sort(np.asarray(y))
    grid = np.concatenate([x, y])
    d = np.abs(np.searchsorted(x, grid, side="right") / x.size
               - np.searchsorted(y, grid, side="right") / y.size).max()
    en = math.sqrt(x.size * y.size / (x.size + y.size))
    lam = (en + 0.12 + 0.11 / en) * d
    if lam < 0.2:
        return 1.0
    return float(min(1.0, 2 * sum((-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam)
                                  for k in range(1, 101))))


def test_ks_pvalue_accepts_same_law_and_rejects_shift():
    rng = np.random.default_rng(0)
    assert ks_pvalue(rng.normal(size=4000), rng.normal(size=4000)) > 1e-3
    assert ks_pvalue(rng.normal(size=4000), rng.normal(0.2, size=4000)) < 1e-5


N = 4000  # draws per (lambda, tau) and estimator
N_CAMPBELL = 48_000  # fast-path draws compared with the closed-form moments
Z_TOL = 4.5  # standard errors; ~60 comparisons per run, each fails with probability ~7e-6


def _fast(rate, tau, indicator, tau_grad=False):
    """Samples and per-element pathwise gradients from the fast sampler."""
    lam = rate.clone().requires_grad_(True)
    t = tau.clone().requires_grad_(tau_grad)
    z = RelaxedPoisson(lam, t, indicator=indicator).rsample()
    grads = torch.autograd.grad(z.sum(), [lam, t] if tau_grad else [lam])
    return z.detach(), [g.detach() for g in grads]


def _reference(rate, tau, indicator, tau_grad=False):
    """The same from the full-arrival reference with a cap far beyond the window."""
    horizon = 1 + get_indicator(indicator).half_width(rate.dtype) * float(tau.max())
    lam = rate.clone().requires_grad_(True)
    t = tau.clone().requires_grad_(tau_grad)
    z = full_arrival_eat(lam, t, indicator, horizon)
    grads = torch.autograd.grad(z.sum(), [lam, t] if tau_grad else [lam])
    return z.detach(), [g.detach() for g in grads]


def _mean_se(x):
    x = x.double()
    return float(x.mean()), float(x.std() / math.sqrt(x.numel()))


def _var_se(x):
    x = x.double()
    c = x - x.mean()
    var = float((c**2).mean())
    return var, math.sqrt(max(float((c**4).mean()) - var**2, 0.0) / x.numel())


def _cov_se(x, y):
    x, y = x.double(), y.double()
    prod = (x - x.mean()) * (y - y.mean())
    return float(prod.mean()), float(prod.std() / math.sqrt(x.numel()))


def _assert_same(name, stat_a, stat_b):
    (a, se_a), (b, se_b) = stat_a, stat_b
    se = math.hypot(se_a, se_b) + 1e-6 * max(abs(a), abs(b), 1.0)
    assert abs(a - b) <= Z_TOL * se, f"{name}: fast {a:.6g} vs reference {b:.6g} (se {se:.3g})"


def _assert_same_distribution(label, fast, ref):
    for what, x, y in zip(("sample", "d/d rate", "d/d tau"), fast, ref):
        _assert_same(f"{label} mean of {what}", _mean_se(x), _mean_se(y))
        _assert_same(f"{label} variance of {what}", _var_se(x), _var_se(y))
        if x.std() > 0:
            p = ks_pvalue(x.numpy(), y.numpy())
            assert p > 1e-5, f"{label} {what}: KS test rejects (p = {p:.2g})"
    # The joint law: covariance between the sample and its rate gradient.
    _assert_same(f"{label} cov(sample, gradient)", _cov_se(fast[0], fast[1]), _cov_se(ref[0], ref[1]))


GRID = [  # (indicator, lambda, tau): compact windows with and without clipping at t = 0, and sigmoid
    ("cubic", 1.0, 0.05), ("cubic", 1.0, 0.5), ("cubic", 10.0, 0.1), ("cubic", 100.0, 0.05),
    ("cubic", 100.0, 0.1), ("cubic", 100.0, 0.5), ("cubic", 1000.0, 0.05), ("cubic", 1000.0, 0.1),
    ("cubic", 1000.0, 0.5), ("cubic", 10.0, 2.0), ("quintic", 30.0, 0.3),
    ("sigmoid", 1.0, 0.1), ("sigmoid", 10.0, 0.5), ("sigmoid", 100.0, 0.05), ("sigmoid", 1000.0, 0.02),
]


SLOW = {("sigmoid", 1000.0, 0.02), ("cubic", 1000.0, 0.5), ("cubic", 1.0, 0.05)}


@pytest.mark.parametrize("indicator,lam,tau", [
    pytest.param(*case, marks=pytest.mark.slow) if case in SLOW else case for case in GRID])
def test_fast_path_matches_full_arrival_reference(indicator, lam, tau):
    torch.manual_seed(int(lam * 1000 + tau * 100))
    rate = torch.full((N,), lam, dtype=torch.float64)
    temperature = torch.full((N,), tau, dtype=torch.float64)
    z, (g,) = _fast(rate, temperature, indicator)
    z_ref, (g_ref,) = _reference(rate, temperature, indicator)
    _assert_same_distribution(f"{indicator} lambda={lam} tau={tau}", (z, g), (z_ref, g_ref))
    # Campbell's closed form, on a larger (cheap) fast sample: E[z], Var[z], E[dz/dlambda] = E[z]/lambda.
    mean = float(relaxed_mean(torch.tensor(lam), torch.tensor(tau), indicator))
    var = float(relaxed_variance(torch.tensor(lam), torch.tensor(tau), indicator))
    z, (g,) = _fast(rate.repeat(N_CAMPBELL // N), temperature.repeat(N_CAMPBELL // N), indicator)
    _assert_same("Campbell mean", _mean_se(z), (mean, 0.0))
    _assert_same("Campbell variance", _var_se(z), (var, 0.0))
    _assert_same("Campbell gradient", _mean_se(g), (mean / lam, 0.0))


@pytest.mark.parametrize("indicator,lam,tau", [("cubic", 50.0, 0.2), ("cubic", 5.0, 1.5),
                                               ("sigmoid", 20.0, 0.3)])
def test_temperature_gradient_matches_reference(indicator, lam, tau):
    torch.manual_seed(7)
    rate = torch.full((N,), lam, dtype=torch.float64)
    temperature = torch.full((N,), tau, dtype=torch.float64)
    z, (g, g_tau) = _fast(rate, temperature, indicator, tau_grad=True)
    z_ref, (g_ref, g_tau_ref) = _reference(rate, temperature, indicator, tau_grad=True)
    _assert_same_distribution(f"{indicator} lambda={lam} tau={tau}", (z, g, g_tau),
                              (z_ref, g_ref, g_tau_ref))


@pytest.mark.slow
def test_mixed_rates_and_temperatures_in_one_batch():
    """Each element gets its own law, whatever the other rates (no padding to the largest)."""
    torch.manual_seed(3)
    rates = torch.tensor([0.3, 1000.0, 4.0, 100.0, 25.0], dtype=torch.float64)
    taus = torch.tensor([0.1, 0.05, 1.5, 0.5, 0.2], dtype=torch.float64)  # 1.5: clipped window
    reps = 1000
    rate, temperature = rates.repeat(reps), taus.repeat(reps)
    fast = _fast(rate, temperature, "cubic", tau_grad=True)
    ref = _reference(rate, temperature, "cubic", tau_grad=True)
    flat_fast = [fast[0]] + fast[1]
    flat_ref = [ref[0]] + ref[1]
    for j, (lam, tau) in enumerate(zip(rates.tolist(), taus.tolist())):
        _assert_same_distribution(f"element lambda={lam} tau={tau}",
                                  [v.view(reps, -1)[:, j] for v in flat_fast],
                                  [v.view(reps, -1)[:, j] for v in flat_ref])


@pytest.mark.parametrize("tau", [0.1, torch.tensor([0.1, 2.0, 0.3, 0.5])])
@pytest.mark.parametrize("indicator", ["cubic", "sigmoid"])
def test_chunking_gives_identical_values(tau, indicator):
    """A tiny chunk (slices splitting elements) reproduces the one-step result with the same seed."""
    rate = torch.tensor([0.0, 3.0, 40.0, 200.0], dtype=torch.float64).repeat(10)
    temperature = torch.as_tensor(tau, dtype=rate.dtype).expand(4).repeat(10)
    outs = []
    for chunk in (None, 13, 1000):
        torch.manual_seed(11)
        outs.append(eat_pathwise(rate, temperature, get_indicator(indicator), chunk=chunk,
                                 with_temperature_grad=True))
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)  # up to summation order


def test_chunk_size_bounds_the_work_per_step(monkeypatch):
    """The default step covers max(ARRIVAL_CHUNK, n) arrivals, never all of a large rate's arrivals."""
    sizes = []
    real_segment_sum = eat._segment_sum

    def spy(values, lengths):
        sizes.append(values.numel())
        return real_segment_sum(values, lengths)

    monkeypatch.setattr(eat, "_segment_sum", spy)
    monkeypatch.setattr(eat, "ARRIVAL_CHUNK", 1000)
    rate = torch.full((100,), 5000.0, requires_grad=True)
    z = RelaxedPoisson(rate, 0.5).rsample()  # ~5e5 window arrivals
    z.sum().backward()
    assert max(sizes) == 1000 and sum(sizes) > 400 * 1000


def test_straight_through_uses_the_same_arrivals_and_gradient():
    rate = torch.tensor([0.5, 7.0, 120.0]).repeat(100).requires_grad_(True)
    torch.manual_seed(5)
    z_soft = RelaxedPoisson(rate, 0.2).rsample()
    (g_soft,) = torch.autograd.grad(z_soft.sum(), rate)
    torch.manual_seed(5)
    z_hard = RelaxedPoisson(rate, 0.2, hard=True).rsample()
    (g_hard,) = torch.autograd.grad(z_hard.sum(), rate)
    torch.testing.assert_close(g_hard, g_soft)
    assert torch.equal(z_hard, z_hard.round())
    assert (z_hard - z_soft).abs().max() < 0.5 * 0.2 * rate.max() + 10  # same arrivals, coupled


def test_fused_cubic_matches_the_indicator_definition():
    u = torch.linspace(0, 1, 101, dtype=torch.float64)
    value, slope = _ramp_value_and_slope(get_indicator("cubic"), u, True, True)
    x = 2 * u - 1
    cubic = get_indicator("cubic")
    torch.testing.assert_close(value, cubic(x))
    torch.testing.assert_close(slope[1:-1], cubic.derivative(x)[1:-1])


def test_zero_rate_empty_batch_and_dtypes():
    rate = torch.tensor([0.0, 0.0, 2.0], requires_grad=True)
    z = RelaxedPoisson(rate, 0.3).rsample((10,))
    (g,) = torch.autograd.grad(z.sum(), rate)
    assert torch.all(z[:, :2] == 0) and torch.all(g[:2] == 0) and torch.isfinite(g).all()
    assert RelaxedPoisson(torch.empty(0), 0.1).rsample().shape == (0,)
    for dtype in (torch.float16, torch.float32, torch.float64):
        lam = torch.full((5,), 30.0, dtype=dtype, requires_grad=True)
        z = RelaxedPoisson(lam, 0.1).rsample()
        z.sum().backward()
        assert z.dtype == dtype and lam.grad.dtype == dtype


def test_no_gradient_work_without_requires_grad():
    z = RelaxedPoisson(torch.full((3,), 10.0), 0.1).rsample()
    assert not z.requires_grad
    with torch.no_grad():
        rate = torch.full((3,), 10.0, requires_grad=True)
        assert not RelaxedPoisson(rate, 0.1).rsample().requires_grad


def test_double_backward_raises_instead_of_returning_zero():
    rate = torch.full((4,), 20.0, requires_grad=True)
    z = RelaxedPoisson(rate, 0.1).rsample()
    (g,) = torch.autograd.grad(z.sum(), rate, create_graph=True)  # first order works
    with pytest.raises(RuntimeError):
        torch.autograd.grad(g.sum(), rate)


def test_bad_chunk_raises():
    with pytest.raises(ValueError, match="chunk"):
        eat_pathwise(torch.ones(2), torch.ones(2), get_indicator("cubic"), chunk=0)


def test_full_arrival_gradient_is_the_pathwise_formula():
    """Autograd through t = S/lambda gives sum_i f'(x_i) t_i / (tau lambda) (the formula we attach)."""
    lam = torch.tensor([30.0], dtype=torch.float64, requires_grad=True)
    tau = torch.tensor([0.2], dtype=torch.float64)
    torch.manual_seed(1)
    z = full_arrival_eat(lam, tau, "cubic", 1.2)
    (g,) = torch.autograd.grad(z.sum(), lam)
    n = int(math.ceil(30 * 1.2 + 8 * math.sqrt(30 * 1.2) + 30))
    torch.manual_seed(1)
    gaps = torch.empty((1, n), dtype=torch.float64).exponential_()
    t = gaps.cumsum(-1) / lam.detach()
    cubic = get_indicator("cubic")
    expected = (cubic.derivative((1 - t) / 0.2) * t / (0.2 * lam.detach())).sum(-1)
    torch.testing.assert_close(g, expected)
    assert np.isfinite(float(g))
