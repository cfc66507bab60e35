r"""Campbell's theorem, symbolically: the relaxed EAT moments derived with SymPy (needs the ``book`` extra).

For a Poisson process of intensity :math:`\lambda` on :math:`[0, \infty)` and
:math:`\tilde z = \sum_i g(t_i)`, Campbell's theorem gives

.. math::  \mathbb E[\tilde z] = \lambda \int_0^\infty g(t)\,dt, \qquad
           \operatorname{Var}[\tilde z] = \lambda \int_0^\infty g(t)^2\,dt,

and with :math:`g(t) = f((1 - t)/\tau)` both integrals follow from the indicator's own definition
in :mod:`hitchhiker.indicators` (nothing is typed in by hand). The compact ramps give a
``Piecewise`` in :math:`\tau` (the window :math:`[1-\tau, 1+\tau]` crosses :math:`t = 0` when
:math:`\tau > 1`).

The library does not run this: :mod:`hitchhiker.moments` ships the results as plain torch code,
each formula written once as a function of ``tau`` and a namespace. :func:`shipped_moments`
evaluates those very functions on SymPy symbols (:data:`SYMPY_NS`), so a test can check
``shipped == derived`` symbolically; chapter 02 shows the derivation.
"""
from __future__ import annotations

import functools

import sympy as sp

from ..indicators import get_indicator
from ..moments import CAMPBELL_FACTORS

LAMBDA = sp.Symbol("lambda", positive=True)
TAU = sp.Symbol("tau", positive=True)
_T = sp.Symbol("t", positive=True)
_X = sp.Symbol("x", real=True)


class softplus(sp.Function):
    """log(1 + e^x), kept as a named function so the shipped sigmoid moments read as they are coded.

    ``expr.rewrite(sp.log)`` spells it out.
    """

    def fdiff(self, argindex=1):
        return 1 / (1 + sp.exp(-self.args[0]))

    def _eval_rewrite_as_log(self, x, **kwargs):
        return sp.log(1 + sp.exp(x))


class SYMPY_NS:
    """The namespace :mod:`hitchhiker.moments`'s formulas take, on SymPy expressions."""

    pi = sp.pi
    cos = staticmethod(sp.cos)
    sin = staticmethod(sp.sin)
    softplus = softplus

    @staticmethod
    def sigmoid(x):
        return 1 / (1 + sp.exp(-x))

    @staticmethod
    def inv(tau):
        return 1 / tau

    @staticmethod
    def branch(tau, narrow, wide):
        return sp.Piecewise((narrow(tau), tau <= 1), (wide(tau), True))


def _campbell_integrals(name: str):
    """Return (int g dt, int g^2 dt) over t in [0, inf) for g(t) = f((1 - t)/tau)."""
    ind = get_indicator(name)
    if ind.compact:
        u = ((1 - _T) / TAU + 1) / 2  # ramp coordinate: u = 1 at t = 1 - tau, u = 0 at t = 1 + tau
        s = ind.ramp(u, sp)
        # tau <= 1: f = 1 on [0, 1 - tau], ramp on [1 - tau, 1 + tau], 0 beyond.
        narrow = [sp.integrate(1, (_T, 0, 1 - TAU)) + sp.integrate(s**p, (_T, 1 - TAU, 1 + TAU))
                  for p in (1, 2)]
        # tau > 1: the ramp starts before t = 0, so only its part on [0, 1 + tau] counts.
        wide = [sp.integrate(s**p, (_T, 0, 1 + TAU)) for p in (1, 2)]
        return tuple(
            sp.Piecewise((sp.factor(sp.simplify(n)), TAU <= 1), (sp.factor(sp.simplify(w)), True))
            for n, w in zip(narrow, wide)
        )
    # Sigmoid: substitute x = (1 - t)/tau, dt = -tau dx, t in [0, inf) <-> x in (-inf, 1/tau].
    f = ind.logistic(_X, sp)
    softplus_term = sp.log(sp.exp(1 / TAU) + 1)
    out = []
    for p in (1, 2):
        integral = sp.expand_log(sp.simplify(sp.integrate(f**p, (_X, -sp.oo, 1 / TAU))), force=True)
        # Group by log(1 + e^{1/tau}) so the result reads softplus(1/tau) - sigmoid(1/tau).
        parts = sp.collect(sp.expand(integral), softplus_term, evaluate=False)
        out.append(TAU * sum(sp.simplify(coef) * term for term, coef in parts.items()))
    return tuple(out)


@functools.lru_cache(maxsize=None)
def campbell_moments(indicator: str = "cubic"):
    """Relaxed mean and variance of EAT with the given indicator, derived with SymPy.

    Returns ``(mean, variance)`` in the symbols ``lambda`` and ``tau`` (:data:`LAMBDA`, :data:`TAU`).
    Takes seconds (SymPy integrates); :func:`hitchhiker.relaxed_mean` and
    :func:`hitchhiker.relaxed_variance` are the same results as code.

    >>> mean, var = campbell_moments("cubic")
    >>> mean.subs(TAU, sp.Rational(1, 2))
    lambda
    """
    first, second = _campbell_integrals(get_indicator(indicator).name)
    return LAMBDA * first, LAMBDA * second


def window_integral(indicator: str, power: int, v=sp.Symbol("v", real=True)):
    r"""Derived :math:`P_p(v) = \int_{-1}^{v} f(x)^p\,dx` of a compact ramp, from its definition."""
    ind = get_indicator(indicator)
    if not ind.compact:
        raise ValueError(f"indicator={ind.name!r} has no window integral (it is not a compact ramp)")
    return sp.integrate(ind.ramp((_X + 1) / 2, sp) ** power, (_X, -1, v))


def shipped_moments(indicator: str = "cubic"):
    """The closed forms :mod:`hitchhiker.moments` ships, evaluated on SymPy symbols.

    Returns ``(mean, variance)`` like :func:`campbell_moments`; the sigmoid's read in terms of
    :class:`softplus` (``.rewrite(sp.log)`` spells it out).
    """
    factors = CAMPBELL_FACTORS[get_indicator(indicator).name]
    return LAMBDA * factors.mean(TAU, SYMPY_NS), LAMBDA * factors.variance(TAU, SYMPY_NS)
