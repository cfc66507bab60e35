"""The SymPy derivation (hitchhiker.book.campbell) against the closed forms the library ships.

Symbolically (the shipped formulas evaluated on SymPy symbols equal the derived integrals) and
numerically in float64 (the torch code equals the derivation to 1e-12 relative), plus the
derivation's own check values and an independent quadrature.
"""
import numpy as np
import pytest
import torch

sp = pytest.importorskip("sympy")
quad = pytest.importorskip("scipy.integrate").quad

from hitchhiker import INDICATORS, relaxed_mean, relaxed_variance  # noqa: E402
from hitchhiker.book.campbell import (  # noqa: E402
    LAMBDA,
    SYMPY_NS,
    TAU,
    campbell_moments,
    shipped_moments,
    window_integral,
)
from hitchhiker.indicators import get_indicator  # noqa: E402
from hitchhiker.moments import CAMPBELL_FACTORS  # noqa: E402

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


def test_every_indicator_ships_a_closed_form():
    assert set(CAMPBELL_FACTORS) == set(INDICATORS)


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL)
def test_shipped_closed_forms_equal_the_sympy_derivation(name):
    for shipped, derived in zip(shipped_moments(name), campbell_moments(name)):
        assert sp.simplify((shipped - derived).rewrite(sp.log)) == 0, (shipped, derived)


@pytest.mark.slow
@pytest.mark.parametrize("name", COMPACT)
def test_shipped_window_integrals_equal_their_derivation(name):
    v = sp.Symbol("v", real=True)
    for power, shipped in zip((1, 2), CAMPBELL_FACTORS[name].window_integrals):
        assert sp.simplify(shipped(v, SYMPY_NS) - window_integral(name, power, v)) == 0


def test_window_integral_refuses_the_sigmoid():
    with pytest.raises(ValueError, match="sigmoid"):
        window_integral("sigmoid", 1)


@pytest.mark.parametrize("name", ALL)
def test_numeric_closed_forms_match_the_derivation_in_float64(name):
    taus = np.concatenate([np.logspace(-2, 1, 40), [1.0, 0.999999, 1.000001]])
    rates = np.linspace(0.1, 150.0, taus.size)
    mean, var = campbell_moments(name)
    f_mean, f_var = (sp.lambdify((LAMBDA, TAU), m, "mpmath") for m in (mean, var))
    got_mean = relaxed_mean(torch.tensor(rates), torch.tensor(taus), name)
    got_var = relaxed_variance(torch.tensor(rates), torch.tensor(taus), name)
    assert got_mean.dtype == torch.float64 and got_mean.shape == (taus.size,)
    for i, (rate, tau) in enumerate(zip(rates, taus)):
        assert got_mean[i].item() == pytest.approx(float(f_mean(rate, tau)), rel=1e-12)
        assert got_var[i].item() == pytest.approx(float(f_var(rate, tau)), rel=1e-12)


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
def test_derivation_matches_quadrature_of_the_campbell_integrals(name, tau):
    mean, var = campbell_moments(name)
    for moment, power in ((mean, 1), (var, 2)):
        symbolic = float(moment.subs({LAMBDA: 1, TAU: tau}))
        assert symbolic == pytest.approx(campbell_by_quadrature(name, tau, power), rel=1e-9, abs=1e-12)


def test_wide_cubic_mean_is_no_longer_exact():
    mean, _ = campbell_moments("cubic")
    assert float(mean.subs({LAMBDA: 1, TAU: 2})) == pytest.approx(1.0546875)  # 27*5/(16*8)


def test_unknown_indicator_raises_value_error():
    with pytest.raises(ValueError, match="indicator"):
        campbell_moments("tanh")
    with pytest.raises(ValueError, match="indicator"):
        shipped_moments("tanh")
