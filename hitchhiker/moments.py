r"""Campbell's theorem in closed form: the mean and variance of a relaxed EAT count.

For a Poisson process of intensity :math:`\lambda` on :math:`[0, \infty)` and the relaxed count
:math:`\tilde z = \sum_i f((1 - t_i)/\tau)`, Campbell's theorem gives, with the substitution
:math:`x = (1 - t)/\tau`,

.. math::
    \frac{\mathbb E[\tilde z]}{\lambda} = \tau\, F_1(1/\tau), \qquad
    \frac{\operatorname{Var}[\tilde z]}{\lambda} = \tau\, F_2(1/\tau), \qquad
    F_p(v) = \int_{-\infty}^{v} f(x)^p \, dx .

**Sigmoid** (:math:`f = \sigma`): :math:`F_1(v) = \operatorname{softplus}(v)` and
:math:`F_2(v) = \operatorname{softplus}(v) - \sigma(v)`, so

.. math::
    \frac{\mathbb E[\tilde z]}{\lambda} = \tau \operatorname{softplus}(1/\tau)
        = 1 + \tau \operatorname{softplus}(-1/\tau), \qquad
    \frac{\operatorname{Var}[\tilde z]}{\lambda} = 1 + \tau \operatorname{softplus}(-1/\tau)
        - \tau\, \sigma(1/\tau).

The right-hand forms (:math:`\operatorname{softplus}(a) = a + \operatorname{softplus}(-a)`) only
ever exponentiate :math:`-1/\tau`, so they neither overflow nor lose the leading 1 for small
:math:`\tau` (the bias :math:`\tau \log(1 + e^{-1/\tau})` is kept to full relative precision).

**Compact ramps** (:math:`f = 0` for :math:`x \le -1`, :math:`f = 1` for :math:`x \ge 1`): with the
window integral :math:`P_p(v) = \int_{-1}^{v} f(x)^p\,dx` for :math:`v \in [-1, 1]`,

.. math::
    \frac{\mathbb E[\tilde z]}{\lambda} =
        \begin{cases} 1 - \tau\,(1 - P_1(1)) & \tau \le 1 \\ \tau\, P_1(1/\tau) & \tau > 1 \end{cases}
    \qquad
    \frac{\operatorname{Var}[\tilde z]}{\lambda} =
        \begin{cases} 1 - \tau\,(1 - P_2(1)) & \tau \le 1 \\ \tau\, P_2(1/\tau) & \tau > 1 \end{cases}

(for :math:`\tau > 1` the window :math:`[1 - \tau, 1 + \tau]` crosses :math:`t = 0`). The ramps are
symmetric about :math:`x = 0`, so :math:`P_1(1) = 1` and the mean is exact for :math:`\tau \le 1`:

=========  ================================================================  ======================
indicator  :math:`P_1(v)`, :math:`P_2(v)`                                    Var/λ for τ ≤ 1
=========  ================================================================  ======================
linear     :math:`(1+v)^2/4`, :math:`(1+v)^3/12`                             :math:`1 - \tau/3`
cubic      :math:`(1+v)^3(3-v)/16`, :math:`(1+v)^5(5v^2 - 25v + 33)/560`     :math:`1 - 9\tau/35`
quintic    :math:`(1+v)^4(v^2-4v+5)/32`,                                     :math:`1 - 50\tau/231`
           :math:`(1+v)^7(189v^4 - 1323v^3 + 3752v^2 - 5096v + 2840)/59136`
cosine     :math:`\frac{1+v}{2} - \frac{\cos(\pi v/2)}{\pi}`,                :math:`1 - \tau/4`
           :math:`\frac{3(1+v)}{8} - \frac{\cos(\pi v/2)}{\pi}`
           :math:`- \frac{\sin \pi v}{8\pi}`
=========  ================================================================  ======================

The polynomials are evaluated expanded about :math:`v = 0` (Horner, integer coefficients), which is
well conditioned on the :math:`v = 1/\tau \in (0, 1)` that the wide branch needs.

Every formula is written once, as a function of ``tau`` and a namespace ``ns``: here ``ns`` is
torch; :mod:`hitchhiker.book.campbell` derives the same moments with SymPy from the indicator
definitions in :mod:`hitchhiker.indicators`, and the tests check, symbolically and numerically,
that the two agree. Nothing here needs SymPy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F

from ._validation import as_float_tensor, broadcast_pair, check_param, compute_dtype, finite_nonnegative
from .indicators import get_indicator


def _horner(v, coefficients: Sequence[int], denominator: int):
    """sum_k coefficients[k] v^k / denominator (integers, so SymPy gets exact rationals)."""
    out = 0
    for c in reversed(coefficients):
        out = out * v + c
    return out / denominator


# Window integrals P_p(v) = int_{-1}^{v} f(x)^p dx of the compact ramps, expanded about v = 0.
def _linear_p1(v, ns):
    return _horner(v, (1, 2, 1), 4)


def _linear_p2(v, ns):
    return _horner(v, (1, 3, 3, 1), 12)


def _cubic_p1(v, ns):
    return _horner(v, (3, 8, 6, 0, -1), 16)


def _cubic_p2(v, ns):
    return _horner(v, (33, 140, 210, 105, -35, -42, 0, 5), 560)


def _quintic_p1(v, ns):
    return _horner(v, (5, 16, 15, 0, -5, 0, 1), 32)


def _quintic_p2(v, ns):
    return _horner(v, (2840, 14784, 27720, 17325, -9240, -13860, 1848, 6270, 0, -1540, 0, 189), 59136)


def _cosine_p1(v, ns):
    return (1 + v) / 2 - ns.cos(ns.pi * v / 2) / ns.pi


def _cosine_p2(v, ns):
    return 3 * (1 + v) / 8 - ns.cos(ns.pi * v / 2) / ns.pi - ns.sin(ns.pi * v) / (8 * ns.pi)


def _ramp_factor(window_integral: Callable) -> Callable:
    """tau F_p(1/tau) of a compact ramp from its window integral P_p (see the module docstring)."""

    def factor(tau, ns):
        one = tau * 0 + 1  # P_p(1) in tau's own type: a tensor of ones, or SymPy's exact 1
        return ns.branch(
            tau,
            narrow=lambda t: 1 - t * (1 - window_integral(one, ns)),
            wide=lambda t: t * window_integral(1 / t, ns),
        )

    return factor


def _sigmoid_mean(tau, ns):
    return 1 + tau * ns.softplus(-ns.inv(tau))


def _sigmoid_variance(tau, ns):
    x = ns.inv(tau)
    return 1 + tau * ns.softplus(-x) - tau * ns.sigmoid(x)


@dataclass(frozen=True)
class CampbellFactors:
    """``mean(tau, ns)`` = E[z~]/lambda and ``variance(tau, ns)`` = Var[z~]/lambda of one indicator.

    ``ns`` supplies ``pi, cos, sin, softplus, sigmoid``, ``inv(tau)`` (1/tau) and
    ``branch(tau, narrow, wide)`` (``narrow(tau)`` for tau <= 1, else ``wide(tau)``). For a compact
    ramp ``window_integrals`` holds (P_1, P_2), each a function ``(v, ns)``.
    """

    mean: Callable
    variance: Callable
    window_integrals: Optional[tuple] = None


CAMPBELL_FACTORS = {
    "sigmoid": CampbellFactors(_sigmoid_mean, _sigmoid_variance),
    **{
        name: CampbellFactors(_ramp_factor(p1), _ramp_factor(p2), (p1, p2))
        for name, (p1, p2) in {
            "cubic": (_cubic_p1, _cubic_p2),
            "linear": (_linear_p1, _linear_p2),
            "quintic": (_quintic_p1, _quintic_p2),
            "cosine": (_cosine_p1, _cosine_p2),
        }.items()
    },
}


class _TorchNS:
    """The functions the formulas need, on tensors."""

    pi = math.pi
    cos = staticmethod(torch.cos)
    sin = staticmethod(torch.sin)
    softplus = staticmethod(F.softplus)
    sigmoid = staticmethod(torch.sigmoid)

    @staticmethod
    def inv(tau: torch.Tensor) -> torch.Tensor:
        """1/tau, with tau clamped from below where e^{-1/tau} is already exactly 0 in tau's dtype.

        The clamp changes no value (softplus(-1/tau) and 1 - sigmoid(1/tau) are 0 either way) but
        keeps backward from forming 0 * inf = NaN via d(1/tau)/dtau = -1/tau^2 for tiny tau.
        """
        return 1 / tau.clamp(min=1 / (-2 * math.log(torch.finfo(tau.dtype).tiny)))

    @staticmethod
    def branch(tau, narrow, wide):
        # Each branch sees tau only on its own domain, so neither can produce inf/NaN (nor a NaN
        # gradient through the branch torch.where discards).
        return torch.where(tau <= 1, narrow(tau.clamp(max=1.0)), wide(tau.clamp(min=1.0)))


def _check_values(rate: torch.Tensor, tau: torch.Tensor, caller: str) -> None:
    try:
        check_param(finite_nonnegative, rate, "rate", "non-negative and finite")
        # tau = 0 is allowed: every formula tends continuously to the Poisson's (1, 1) there.
        check_param(finite_nonnegative, tau, "temperature", "non-negative and finite")
    except RuntimeError as err:  # a value check is data-dependent control flow, which vmap refuses
        if "vmap" not in str(err):
            raise
        raise RuntimeError(
            f"{caller} checks its arguments' values, which torch.func.vmap cannot do; "
            f"pass validate_args=False to {caller} under vmap"
        ) from err


def _moment(rate, temperature, indicator, which: str, validate_args: bool) -> torch.Tensor:
    name = get_indicator(indicator).name
    rate = as_float_tensor(rate, "rate")
    tau = as_float_tensor(temperature, "temperature", like=rate)
    rate, tau = broadcast_pair(rate, tau)
    if validate_args:
        _check_values(rate, tau, f"relaxed_{which}")
    out_dtype = rate.dtype
    work = compute_dtype(out_dtype)  # half precision is evaluated in float32, as the samplers do
    factor = getattr(CAMPBELL_FACTORS[name], which)(tau.to(work), _TorchNS)
    return (rate.to(work) * factor).to(out_dtype)


def relaxed_mean(rate, temperature, indicator: str = "cubic", *, validate_args: bool = True) -> torch.Tensor:
    r""":math:`\mathbb E[\tilde z] = \lambda\, \tau F_1(1/\tau)` for EAT with the given indicator.

    Args:
        rate: :math:`\lambda \ge 0`, a number or tensor (integers are promoted to the default float).
        temperature: :math:`\tau \ge 0`, broadcastable with ``rate`` (``ValueError`` otherwise);
            :math:`\tau = 0` gives the Poisson limit :math:`\lambda`.
        indicator: ``"cubic"`` (default), ``"sigmoid"``, ``"linear"``, ``"quintic"`` or ``"cosine"``.
        validate_args: check the values of ``rate`` and ``temperature`` (a host sync; pass ``False``
            under ``torch.func.vmap``, which cannot branch on values).

    Returns the broadcast shape in the promoted floating dtype, on ``rate``'s device,
    differentiable in ``rate`` and ``temperature``. The formulas are in :mod:`hitchhiker.moments`;
    for the compact ramps the mean is exactly :math:`\lambda` when :math:`\tau \le 1`.
    """
    return _moment(rate, temperature, indicator, "mean", validate_args)


def relaxed_variance(rate, temperature, indicator: str = "cubic", *,
                     validate_args: bool = True) -> torch.Tensor:
    r""":math:`\operatorname{Var}[\tilde z] = \lambda\, \tau F_2(1/\tau)` for EAT with the given indicator.

    Arguments and return value as for :func:`relaxed_mean`. For the compact ramps
    :math:`\operatorname{Var}[\tilde z] = \lambda (1 - c\,\tau)` when :math:`\tau \le 1`, with
    :math:`c = 1/3, 9/35, 50/231, 1/4` for the linear, cubic, quintic and cosine ramps.

    >>> relaxed_variance(torch.tensor([10.0]), 0.35)            # 10 (1 - 9 x 0.35 / 35)
    tensor([9.1000])
    >>> relaxed_mean(torch.tensor([10.0]), 0.35), relaxed_mean(10.0, 2.0)  # exact for tau <= 1 only
    (tensor([10.]), tensor(10.5469))
    """
    return _moment(rate, temperature, indicator, "variance", validate_args)
