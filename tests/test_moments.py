"""Campbell moments: SymPy results vs the paper's check values, quadrature, numerics and sampling."""
import math

import numpy as np
import pytest
import sympy as sp
import torch
from scipy.integrate import quad

from hitchhiker import INDICATORS, RelaxedPoisson, get_indicator
from hitchhiker.moments import LAMBDA, TAU, campbell_moments, relaxed_mean, relaxed_variance

COMPACT = [name for name, ind in INDICATORS.items() if ind.compact]
ALL = list(INDICATORS)


def branches(expr):
    """(tau <= 1 branch, tau > 1 branch) of a Piecewise moment, divided by lambda."""
    pw = sp.expand(expr / LAMBDA)
    assert isinstance(pw, sp.Piecewise), pw
    (narrow, cond), (wide, _) = pw.args
    assert cond == (TAU <= 1)
    return narrow, wide


def campbell_by_quadrature(name, tau, power):
    """lambda-free integral of f((1 - t)/tau)^power over t in [0, inf), numerically."""
    f = get_indicator(name)

    def g(t):
        return float(f(torch.tensor((1.0 - t) / tau, dtype=torch.float64))) ** power

    edge = 1.0 + tau * (1.0 if f.compact else 40.0)
    points = [p for p in (1.0 - tau, 1.0, 1.0 + tau) if 0 < p < edge]
    value, _ = quad(g, 0.0, edge, points=points, limit=200, epsabs=1e-13, epsrel=1e-12)
    return value


def test_symbols_are_lambda_and_tau():
    for name in ALL:
        for moment in campbell_moments(name):
            assert {s.name for s in moment.free_symbols} == {"lambda", "tau"}


def test_cubic_check_values():
    mean, var = campbell_moments("cubic")
    mean_narrow, _ = branches(mean)
    var_narrow, _ = branches(var)
    assert mean_narrow == 1  # E[z~] = lambda exactly for tau <= 1
    assert sp.simplify(var_narrow - (1 - sp.Rational(9, 35) * TAU)) == 0


def test_sigmoid_check_values():
    mean, var = campbell_moments("sigmoid")
    softplus = sp.log(1 + sp.exp(1 / TAU))
    sigmoid = 1 / (1 + sp.exp(-1 / TAU))
    assert sp.simplify(mean - LAMBDA * TAU * softplus) == 0
    assert sp.simplify(var - LAMBDA * TAU * (softplus - sigmoid)) == 0


@pytest.mark.parametrize("name", COMPACT)
def test_compact_ramps_have_exact_mean_and_linear_variance_deficit(name):
    narrow_mean, _ = branches(campbell_moments(name)[0])
    narrow_var, _ = branches(campbell_moments(name)[1])
    assert narrow_mean == 1
    # Var/lambda = 1 - c tau with 0 < c < 1 for every ramp (linear: c = 1/3, cosine: 1/4, ...)
    slope = sp.diff(narrow_var, TAU)
    assert slope.free_symbols == set() and -1 < slope < 0
    assert narrow_var.subs(TAU, 0) == 1


@pytest.mark.parametrize("name", COMPACT)
def test_branches_meet_at_tau_one(name):
    for moment in campbell_moments(name):
        narrow, wide = branches(moment)
        assert sp.simplify(narrow.subs(TAU, 1) - wide.subs(TAU, 1)) == 0


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("tau", [0.05, 0.5, 1.0, 1.3, 2.0, 7.0])
def test_moments_match_quadrature_of_the_campbell_integrals(name, tau):
    mean, var = campbell_moments(name)
    for moment, power in ((mean, 1), (var, 2)):
        symbolic = float(moment.subs({LAMBDA: 1, TAU: tau}))
        assert symbolic == pytest.approx(campbell_by_quadrature(name, tau, power), rel=1e-9, abs=1e-12)


def test_wide_cubic_mean_is_no_longer_exact():
    mean, _ = campbell_moments("cubic")
    assert float(mean.subs({LAMBDA: 1, TAU: 2})) == pytest.approx(1.0546875)  # 27*5/(16*8)


@pytest.mark.parametrize("name", ALL)
def test_numeric_callables_match_sympy(name):
    taus = np.concatenate([np.logspace(-2, 1, 40), [1.0, 0.999999, 1.000001]])
    rates = np.linspace(0.1, 150.0, taus.size)
    mean, var = campbell_moments(name)
    f_mean, f_var = (sp.lambdify((LAMBDA, TAU), m, "mpmath") for m in (mean, var))
    got_mean = relaxed_mean(torch.tensor(rates), torch.tensor(taus), name)
    got_var = relaxed_variance(torch.tensor(rates), torch.tensor(taus), name)
    assert got_mean.dtype == torch.float64 and got_mean.shape == (taus.size,)
    for i, (rate, tau) in enumerate(zip(rates, taus)):
        assert got_mean[i].item() == pytest.approx(float(f_mean(rate, tau)), rel=1e-10)
        assert got_var[i].item() == pytest.approx(float(f_var(rate, tau)), rel=1e-10)


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


@pytest.mark.parametrize("name,tau", [("cubic", 0.5), ("cubic", 2.0), ("sigmoid", 0.5), ("linear", 1.5)])
def test_pathwise_gradient_is_unbiased_for_the_relaxed_mean(name, tau):
    """E[dz~/dlambda] = dE[z~]/dlambda (= 1 exactly for the cubic with tau <= 1)."""
    n, rate0 = 40_000, 6.0
    rate = torch.full((n,), rate0, dtype=torch.float64, requires_grad=True)
    RelaxedPoisson(rate, tau, name).rsample().sum().backward()
    per_sample = rate.grad
    estimate, se = per_sample.mean().item(), (per_sample.std() / math.sqrt(n)).item()
    scalar = torch.tensor(rate0, dtype=torch.float64, requires_grad=True)
    (target,) = torch.autograd.grad(relaxed_mean(scalar, tau, name), scalar)
    assert abs(estimate - target.item()) < 4 * se
    if name == "cubic" and tau <= 1:
        assert target.item() == pytest.approx(1.0, abs=1e-12)
    else:  # the test can tell the relaxed mean's slope from the Poisson's slope of 1
        assert abs(target.item() - 1.0) > 8 * se


def test_unknown_indicator_raises_value_error():
    with pytest.raises(ValueError, match="indicator"):
        campbell_moments("tanh")
