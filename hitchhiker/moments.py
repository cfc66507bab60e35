r"""Campbell's theorem, symbolically: the relaxed EAT moments in closed form.

For a Poisson process of intensity :math:`\lambda` on :math:`[0, \infty)` and
:math:`\tilde z = \sum_i g(t_i)`, Campbell's theorem gives

.. math::  \mathbb E[\tilde z] = \lambda \int_0^\infty g(t)\,dt, \qquad
           \operatorname{Var}[\tilde z] = \lambda \int_0^\infty g(t)^2\,dt,

and with :math:`g(t) = f((1 - t)/\tau)` both integrals follow from the indicator's own definition
in :mod:`hitchhiker.indicators` (nothing is typed in by hand). The compact ramps give a
``Piecewise`` in :math:`\tau` (the window :math:`[1-\tau, 1+\tau]` crosses :math:`t = 0` when
:math:`\tau > 1`). The numeric callables (:func:`relaxed_mean`, :func:`relaxed_variance`) are
compiled from the same expressions and are what :class:`~hitchhiker.RelaxedPoisson` reports.
"""
from __future__ import annotations

import functools
import math

import sympy as sp
import torch
import torch.nn.functional as F

from .indicators import get_indicator

LAMBDA = sp.Symbol("lambda", positive=True)
TAU = sp.Symbol("tau", positive=True)
_T = sp.Symbol("t", positive=True)
_X = sp.Symbol("x", real=True)


class softplus(sp.Function):
    """log(1 + e^x), kept as a named function so numerics can use the overflow-free form."""

    def fdiff(self, argindex=1):
        return 1 / (1 + sp.exp(-self.args[0]))


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
    """Relaxed mean and variance of EAT with the given indicator, as SymPy expressions.

    Returns ``(mean, variance)`` in the symbols ``lambda`` and ``tau`` (:data:`LAMBDA`, :data:`TAU`).

    >>> mean, var = campbell_moments("cubic")
    >>> mean.subs(TAU, sp.Rational(1, 2))
    lambda
    """
    first, second = _campbell_integrals(get_indicator(indicator).name)
    return LAMBDA * first, LAMBDA * second


def _stable(expr):
    """Rewrite e^{1/tau} terms into forms that do not overflow for small tau.

    log(1 + e^a) becomes softplus(a); every remaining e^{1/tau} is written as 1/q with
    q = e^{-1/tau} in (0, 1), so e^a/(1 + e^a) becomes 1/(1 + q), which underflows gracefully.
    """
    a = sp.Wild("a")
    q = sp.Symbol("q", positive=True)
    expr = expr.replace(sp.log(sp.exp(a) + 1), softplus(a))
    expr = sp.cancel(expr.subs(sp.exp(1 / TAU), 1 / q))
    return expr.subs(q, sp.exp(-1 / TAU))


_TORCH_FUNCS = {
    "softplus": F.softplus, "log": torch.log, "exp": torch.exp, "cos": torch.cos,
    "sin": torch.sin, "sqrt": torch.sqrt, "pi": math.pi,
}


def _compile(expr):
    """Turn an expression in tau into a torch function of a tau tensor (Piecewise -> torch.where)."""
    if isinstance(expr, sp.Piecewise):
        (narrow, _), (wide, _) = expr.args  # conditions are tau <= 1 and otherwise
        f_narrow, f_wide = _compile(narrow), _compile(wide)

        def piecewise(tau):
            # Evaluate each branch only on its own domain so that neither can produce inf/NaN.
            return torch.where(tau <= 1, f_narrow(tau.clamp(max=1.0)), f_wide(tau.clamp(min=1.0)))

        return piecewise
    fn = sp.lambdify(TAU, _stable(expr), modules=[_TORCH_FUNCS, "math"])
    return lambda tau: fn(tau) + torch.zeros_like(tau)  # constants broadcast to tau's shape


@functools.lru_cache(maxsize=None)
def _moment_factors(indicator: str):
    """Numeric (mean/lambda, variance/lambda) as torch functions of tau."""
    mean, var = campbell_moments(indicator)
    return _compile(sp.expand(mean / LAMBDA)), _compile(sp.expand(var / LAMBDA))


def relaxed_mean(rate, temperature, indicator: str = "cubic") -> torch.Tensor:
    """E[z~] for EAT with the given indicator (Campbell's theorem), differentiable in both inputs."""
    rate, tau = torch.broadcast_tensors(torch.as_tensor(rate), torch.as_tensor(temperature))
    return rate * _moment_factors(get_indicator(indicator).name)[0](tau.to(rate.dtype))


def relaxed_variance(rate, temperature, indicator: str = "cubic") -> torch.Tensor:
    """Var[z~] for EAT with the given indicator (Campbell's theorem), differentiable in both inputs."""
    rate, tau = torch.broadcast_tensors(torch.as_tensor(rate), torch.as_tensor(temperature))
    return rate * _moment_factors(get_indicator(indicator).name)[1](tau.to(rate.dtype))
