"""Closed-form Campbell moments (hitchhiker.moments): check values, quadrature, numerics, gradients.

Library-only: torch and numpy. The symbolic check against the SymPy derivation is tests/test_campbell.py.
"""
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from hitchhiker import INDICATORS, RelaxedPoisson, relaxed_mean, relaxed_variance
from hitchhiker.indicators import get_indicator

COMPACT = [name for name, ind in INDICATORS.items() if ind.compact]
ALL = list(INDICATORS)
#: Var/lambda = 1 - c tau for tau <= 1 (the compact ramps' variance deficit slope).
DEFICIT = {"linear": 1 / 3, "cubic": 9 / 35, "quintic": 50 / 231, "cosine": 1 / 4}
F64 = torch.float64


def factors(name, tau):
    """(mean/lambda, variance/lambda) as Python floats, in float64."""
    tau = torch.tensor(tau, dtype=F64)
    return relaxed_mean(1.0, tau, name).item(), relaxed_variance(1.0, tau, name).item()


def campbell_by_quadrature(name, tau, power):
    """int_0^inf f((1 - t)/tau)^power dt by composite Gauss-Legendre on the smooth pieces (numpy only).

    Independent of the closed forms: it evaluates the indicator itself (hitchhiker.indicators).
    Compact ramps are smooth between the knots 1 - tau, 1, 1 + tau and zero beyond 1 + tau; the
    sigmoid is cut at 1 + 40 tau, where the neglected tail is tau * softplus(-40) < 5e-18 tau.
    """
    f = get_indicator(name)
    end = 1.0 + tau * (1.0 if f.compact else 40.0)
    knots = sorted({0.0, end, *(p for p in (1.0 - tau, 1.0, 1.0 + tau) if 0.0 < p < end)})
    nodes, weights = np.polynomial.legendre.leggauss(30)
    total = 0.0
    for a, b in zip(knots[:-1], knots[1:]):
        edges = np.linspace(a, b, 41)  # 40 panels per piece
        mid, half = (edges[1:] + edges[:-1]) / 2, (edges[1:] - edges[:-1]) / 2
        t = (mid[:, None] + half[:, None] * nodes[None, :]).ravel()
        g = f(torch.tensor((1.0 - t) / tau, dtype=F64)).numpy() ** power
        total += float(np.sum(g.reshape(mid.size, -1) * weights[None, :] * half[:, None]))
    return total


@pytest.mark.parametrize("name", COMPACT)
def test_compact_ramps_have_exact_mean_and_linear_variance_deficit(name):
    for tau in (1e-3, 0.1, 0.35, 0.5, 1.0):
        mean, var = factors(name, tau)
        assert mean == 1.0  # exactly, not approximately
        assert var == pytest.approx(1 - DEFICIT[name] * tau, rel=1e-15)


def test_cubic_check_values():
    assert factors("cubic", 0.35) == pytest.approx((1.0, 1 - 9 * 0.35 / 35), rel=1e-15)
    assert factors("cubic", 2.0)[0] == pytest.approx(135 / 128, rel=1e-15)  # 27*5/(16*8): biased for tau > 1


def test_sigmoid_check_values():
    for tau in (0.05, 0.5, 1.0, 3.0):
        softplus = math.log1p(math.exp(1 / tau))
        sigmoid = 1 / (1 + math.exp(-1 / tau))
        mean, var = factors("sigmoid", tau)
        assert mean == pytest.approx(tau * softplus, rel=1e-14)
        assert var == pytest.approx(tau * (softplus - sigmoid), rel=1e-14)
    assert 0.06 < factors("sigmoid", 0.5)[0] - 1 < 0.07  # the sigmoid's mean excess at tau = 0.5


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("tau", [0.05, 0.5, 1.0, 1.3, 2.0, 7.0])
def test_moments_match_quadrature_of_the_campbell_integrals(name, tau):
    mean, var = factors(name, tau)
    assert mean == pytest.approx(campbell_by_quadrature(name, tau, 1), rel=1e-12)
    assert var == pytest.approx(campbell_by_quadrature(name, tau, 2), rel=1e-12)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("tau", [0.3, 1.7])
def test_moments_match_scipy_quadrature(name, tau):
    """A second, adaptive quadrature (scipy, when installed) for the closed forms."""
    quad = pytest.importorskip("scipy.integrate").quad
    f = get_indicator(name)
    end = 1.0 + tau * (1.0 if f.compact else 40.0)
    points = [p for p in (1.0 - tau, 1.0, 1.0 + tau) if 0 < p < end]
    for power, value in zip((1, 2), factors(name, tau)):
        def g(t):
            return float(f(torch.tensor((1.0 - t) / tau, dtype=F64))) ** power

        expected, _ = quad(g, 0.0, end, points=points, limit=200, epsabs=1e-13, epsrel=1e-12)
        assert value == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("name", COMPACT)
def test_branches_meet_at_tau_one(name):
    below, above = factors(name, 1.0), factors(name, 1.0 + 1e-12)
    assert below == pytest.approx(above, rel=1e-11)


@pytest.mark.parametrize("name", ALL)
def test_numerics_are_finite_at_tiny_and_huge_tau_in_float32(name):
    tau = torch.tensor([1e-4, 1e-3, 0.01, 50.0], dtype=torch.float32, requires_grad=True)
    rate = torch.tensor(3.0, dtype=torch.float32, requires_grad=True)
    mean, var = relaxed_mean(rate, tau, name), relaxed_variance(rate, tau, name)
    assert mean.dtype == torch.float32
    assert torch.isfinite(mean).all() and torch.isfinite(var).all()
    # tau -> 0 recovers the Poisson moments
    torch.testing.assert_close(mean[0], torch.tensor(3.0), rtol=1e-3, atol=0)
    torch.testing.assert_close(var[0], torch.tensor(3.0), rtol=1e-3, atol=0)
    (mean.sum() + var.sum()).backward()
    assert torch.isfinite(tau.grad).all() and torch.isfinite(rate.grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ALL)
def test_gradients_stay_exact_where_one_over_tau_squared_overflows(name, dtype):
    """At tau = 1e-30 (float32: 1/tau^2 = inf) the slopes are the tau -> 0 limits, not NaN or inf."""
    tau = torch.tensor(1e-30, dtype=dtype, requires_grad=True)
    mean, var = relaxed_mean(2.0, tau, name), relaxed_variance(2.0, tau, name)
    (d_mean,) = torch.autograd.grad(mean, tau)
    (d_var,) = torch.autograd.grad(var, tau)
    slope = 1.0 if name == "sigmoid" else DEFICIT[name]
    assert mean.item() == 2.0 and d_mean.item() == 0.0
    assert var.item() == pytest.approx(2.0, rel=1e-6)
    assert d_var.item() == pytest.approx(-2.0 * slope, rel=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_gradcheck_in_rate_and_temperature(name):
    rate = torch.tensor([0.5, 3.0, 40.0, 7.0], dtype=F64, requires_grad=True)
    tau = torch.tensor([0.05, 0.4, 1.6, 6.0], dtype=F64, requires_grad=True)  # both branches, off the kink
    for fn in (relaxed_mean, relaxed_variance):
        assert torch.autograd.gradcheck(lambda r, t: fn(r, t, name), (rate, tau))


def test_dtype_shape_and_device_follow_the_input():
    rate64 = torch.tensor([[1.0], [2.0]], dtype=F64)
    out = relaxed_variance(rate64, torch.tensor([0.1, 0.5, 2.0]), "quintic")
    assert out.dtype == F64 and out.shape == (2, 3) and out.device == rate64.device
    assert relaxed_mean(3.0, 0.5).dtype == torch.get_default_dtype()
    assert relaxed_mean(torch.tensor(3), 2.0).item() == pytest.approx(3 * 135 / 128)  # int rate promoted
    half = relaxed_variance(torch.tensor(3.0, dtype=torch.float16), 1e-3, "sigmoid")
    assert half.dtype == torch.float16 and torch.isfinite(half)
    torch.testing.assert_close(half.float(), torch.tensor(3 * (1 - 1e-3)), rtol=1e-3, atol=0)


def test_bad_arguments_raise_value_errors_naming_them():
    with pytest.raises(ValueError, match="indicator"):
        relaxed_mean(1.0, 0.5, "tanh")
    with pytest.raises(ValueError, match="temperature"):
        relaxed_variance(1.0, torch.tensor([0.5, float("nan")]))
    with pytest.raises(ValueError, match="temperature"):
        relaxed_mean(1.0, -0.5, "sigmoid")
    with pytest.raises(ValueError, match="rate"):
        relaxed_mean(torch.tensor([1.0, -2.0]), 0.5)
    with pytest.raises(ValueError, match="shape"):
        relaxed_mean(torch.ones(3), torch.ones(2))


@pytest.mark.parametrize("name", ALL)
def test_vmap_and_func_grad(name):
    rate = torch.tensor([0.5, 3.0, 40.0], dtype=F64)
    tau = torch.tensor([0.1, 0.7, 2.5], dtype=F64)
    batched = torch.func.vmap(lambda r, t: relaxed_variance(r, t, name, validate_args=False))(rate, tau)
    torch.testing.assert_close(batched, relaxed_variance(rate, tau, name), rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="validate_args=False"):
        torch.func.vmap(lambda r: relaxed_mean(r, 0.5, name))(rate)
    slopes = torch.func.vmap(torch.func.grad(lambda t: relaxed_mean(1.0, t, name, validate_args=False)))(tau)
    tau.requires_grad_(True)
    (expected,) = torch.autograd.grad(relaxed_mean(1.0, tau, name).sum(), tau)
    torch.testing.assert_close(slopes, expected)


@pytest.mark.parametrize("name", ALL)
def test_zero_temperature_is_the_poisson_limit(name):
    tau = torch.tensor([0.0, 1e-3], dtype=F64, requires_grad=True)
    mean, var = relaxed_mean(4.0, tau, name), relaxed_variance(4.0, tau, name)
    assert mean[0].item() == 4.0 and var[0].item() == 4.0
    (grad,) = torch.autograd.grad(var.sum(), tau)
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("name,tau", [("cubic", 0.5), ("cubic", 2.0), ("sigmoid", 0.5), ("linear", 1.5)])
def test_pathwise_gradient_is_unbiased_for_the_relaxed_mean(name, tau):
    """E[dz~/dlambda] = dE[z~]/dlambda (= 1 exactly for the cubic with tau <= 1)."""
    n, rate0 = 40_000, 6.0
    torch.manual_seed(0)
    rate = torch.full((n,), rate0, dtype=F64, requires_grad=True)
    RelaxedPoisson(rate, tau, name).rsample().sum().backward()
    per_sample = rate.grad
    estimate, se = per_sample.mean().item(), (per_sample.std() / math.sqrt(n)).item()
    scalar = torch.tensor(rate0, dtype=F64, requires_grad=True)
    (target,) = torch.autograd.grad(relaxed_mean(scalar, tau, name), scalar)
    assert abs(estimate - target.item()) < 4 * se
    if name == "cubic" and tau <= 1:
        assert target.item() == 1.0
    else:  # the test can tell the relaxed mean's slope from the Poisson's slope of 1
        assert abs(target.item() - 1.0) > 8 * se


def test_first_call_is_milliseconds_and_imports_no_sympy():
    """The moments are plain code: no SymPy at import or at the first call (it took 5-14 s)."""
    code = (
        "import sys, time, torch, hitchhiker as h\n"
        "rate, tau = torch.tensor([3.0, 5.0]), torch.tensor([0.1, 2.0])\n"
        "start = time.perf_counter()\n"
        "for name in h.INDICATORS:\n"
        "    h.relaxed_mean(rate, tau, name), h.relaxed_variance(rate, tau, name)\n"
        "print(time.perf_counter() - start, 'sympy' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds, sympy_loaded = out.stdout.split()
    assert sympy_loaded == "False"
    assert float(seconds) < 0.5  # ten first calls; generous for a loaded machine
