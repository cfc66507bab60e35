r"""Matched fidelity: the temperature at which an EAT relaxation has a given variance ratio.

A temperature :math:`\tau` is not the same quantity across relaxations: the cubic's is a ramp
half-width, the sigmoid's a logistic scale. To compare methods like with like, fix the *fidelity*
instead, measured by the variance ratio

.. math:: r(\tau) = \frac{\operatorname{Var}[\tilde z]}{\lambda} = \tau\, F_2(1/\tau), \qquad
          F_2(v) = \int_{-\infty}^{v} f(x)^2\, dx,

Campbell's closed form (:mod:`hitchhiker.moments`, which owns the formulas; nothing is re-derived
here). For EAT it does not depend on the rate :math:`\lambda`: the arrivals of a rate-:math:`\lambda`
process are the unit-rate ones rescaled, and both moments are linear in :math:`\lambda`.

**Shape of** :math:`r(\tau)`. Since :math:`F_2' = f^2`,

.. math:: \frac{dr}{d\tau} = F_2(1/\tau) - \frac1\tau\, f(1/\tau)^2 .

For the compact ramps :math:`r = 1 - c\tau` on :math:`\tau \le 1` (:math:`c = 1/3, 9/35, 50/231, 1/4`
for linear, cubic, quintic, cosine) with a continuous slope at :math:`\tau = 1`; the sigmoid has
:math:`r = 1 - \tau\,[\sigma(1/\tau) - \operatorname{softplus}(-1/\tau)]`, so :math:`r \approx 1 - \tau`
for small :math:`\tau` and :math:`r \ge 1 - \tau` always. **No indicator is monotone on**
:math:`(0, \infty)`: as :math:`\tau \to \infty`, :math:`r \approx \tau F_2(0) \to \infty` (more and more
arrivals beyond the horizon get partial weight). Each :math:`r` decreases from 1 at :math:`\tau = 0`
to a single minimum :math:`r_{\min}` at :math:`\tau^*` (where :math:`dr/d\tau = 0`) and increases
after it. For the linear ramp, :math:`r = (\tau + 1)^3 / (12\tau^2)` for :math:`\tau > 1`, so
:math:`\tau^* = 2` and :math:`r_{\min} = 9/16`; the others, found numerically from the closed forms
(see :func:`turning_point`), have :math:`r_{\min} \approx 0.569` (cubic, :math:`\tau^* \approx 2.83`),
0.579 (sigmoid, 0.864), 0.571 (quintic, 3.47), 0.570 (cosine, 2.94). A ratio in
:math:`(r_{\min}, 1)` is reached twice; :func:`temperature_for_variance_ratio` returns the
**smallest** such :math:`\tau`, on the decreasing branch :math:`(0, \tau^*]`, where the relaxation is
closest to the exact count. It checks, once per indicator, that :math:`dr/d\tau < 0` on that branch.

**The mean.** For the compact ramps the relaxed mean is exactly :math:`\lambda` for :math:`\tau \le 1`
but exceeds it above (the window :math:`[1-\tau, 1+\tau]` then crosses :math:`t = 0`): by Campbell the
cubic's mean is :math:`135/128 \approx 1.055\,\lambda` at :math:`\tau = 2` and :math:`1.16\,\lambda`
at :math:`\tau^*`. Matching a variance ratio below :math:`1 - c` therefore costs mean bias, and the
function warns about it (``biased_mean``). The sigmoid's mean,
:math:`\lambda[1 + \tau\operatorname{softplus}(-1/\tau)]`, exceeds :math:`\lambda` at every
:math:`\tau` (by :math:`1.9\times10^{-4}` at :math:`\tau = 0.15`, 6.3% at 0.5); it is not warned about.
"""
from __future__ import annotations

import functools
import math
import warnings

import torch

from ._validation import _broadcast_shapes, as_float_tensor, check_param, check_same_device, finite_positive
from .estimators import EAT_METHODS, METHODS, STRAIGHT_THROUGH_METHODS
from .moments import relaxed_mean, relaxed_variance

_F64 = torch.float64
_BIASED_MEAN = ("warn", "error", "ignore")


def _indicator(method) -> str:
    """The EAT indicator behind ``method``, or a clear refusal naming the argument."""
    if not isinstance(method, str):
        raise TypeError(f"method must be a method name (str), got {type(method).__name__} {method!r}")
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not one of {METHODS}")
    if method == "gsm":
        raise ValueError(
            "method='gsm' has no closed-form variance ratio (its truncated softmax has no Campbell "
            "moments, and its ratio depends on the rate); estimate it by Monte Carlo over a grid of "
            "temperatures, e.g. hitchhiker.moment_ratios(GumbelSoftmaxPoisson(rate, tau).rsample((n,)), "
            "rate, dim=0).variance, with its standard error")
    if method in STRAIGHT_THROUGH_METHODS or method == "score":
        raise ValueError(
            f"method={method!r} has no temperature-dependent variance deficit: its forward value is "
            "the exact Poisson count (Var/rate = 1 at every temperature); only the EAT relaxations "
            f"{EAT_METHODS} can be matched on the variance ratio")
    if method not in EAT_METHODS:  # "exact"
        raise ValueError(f"method={method!r} draws no sample, so it has no variance ratio; "
                         f"choose one of {EAT_METHODS}")
    return method.split("-", 1)[1]


def _positive_rate(rate) -> torch.Tensor:
    rate = as_float_tensor(rate, "rate")
    check_param(finite_positive, rate, "rate", "finite and > 0")
    return rate


def _pair(rate: torch.Tensor, other: torch.Tensor, name: str):
    """Broadcast ``rate`` and ``other``; ``ValueError`` naming both on a shape or device mismatch."""
    shape = _broadcast_shapes(rate.shape, other.shape)
    if shape is None:
        raise ValueError(f"rate of shape {tuple(rate.shape)} and {name} of shape {tuple(other.shape)} "
                         "cannot be broadcast together")
    other = check_same_device(other, name, rate.device)
    return shape, torch.promote_types(rate.dtype, other.dtype)


def _ratio(tau: torch.Tensor, indicator: str) -> torch.Tensor:
    """Var/lambda at temperatures ``tau`` (float64): Campbell's closed form from :mod:`.moments`."""
    return relaxed_variance(1.0, tau, indicator, validate_args=False)


def _slope(tau: torch.Tensor, indicator: str) -> torch.Tensor:
    """dr/dtau by autograd through the closed form."""
    with torch.enable_grad():
        tau = tau.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(_ratio(tau, indicator).sum(), tau)
    return grad


def _bisect(predicate, lo: torch.Tensor, hi: torch.Tensor, max_steps: int = 200):
    """Shrink brackets ``[lo, hi]`` (0 < lo < hi) at the geometric midpoint until adjacent floats.

    ``predicate(mid)`` True moves ``lo`` up, False moves ``hi`` down. Halving ``log(hi/lo)`` reaches
    float64 resolution in about 60 steps for any bracket within ``[1e-16, 1e16]``.
    """
    for _ in range(max_steps):
        mid = torch.sqrt(lo * hi)
        mid = torch.where((mid > lo) & (mid < hi), mid, (lo + hi) / 2)
        open_ = (mid > lo) & (mid < hi)
        if not bool(open_.any()):
            break
        go_up = predicate(mid) & open_
        lo = torch.where(go_up, mid, lo)
        hi = torch.where(open_ & ~go_up, mid, hi)
    return lo, hi


def turning_point(method: str) -> tuple:
    r"""``(tau_star, r_min)``: where the EAT method's variance ratio :math:`r(\tau)` is smallest.

    Found by bisection on the sign of :math:`dr/d\tau` (autograd through Campbell's closed form) in
    float64, then checked: :math:`dr/d\tau < 0` at 4,000 log-spaced temperatures in
    :math:`[10^{-8}\tau^*, \tau^*)` and :math:`> 0` at :math:`2\tau^*` (``RuntimeError`` otherwise, a
    bug, not a user error). Cached per method.

    >>> tau_star, r_min = turning_point("eat-linear")   # (tau + 1)^3 / (12 tau^2) for tau > 1
    >>> round(tau_star, 12), round(r_min, 15)
    (2.0, 0.5625)
    """
    return _turning_point(_indicator(method))


@functools.lru_cache(maxsize=None)
def _turning_point(indicator: str) -> tuple:
    method = f"eat-{indicator}"
    lo, hi = torch.tensor(0.5, dtype=_F64), torch.tensor(1.0, dtype=_F64)
    while float(_slope(lo, indicator)) >= 0:
        lo = lo / 2
        if lo < 1e-6:
            raise RuntimeError(f"{method}: the variance ratio does not decrease near tau = 0")
    while float(_slope(hi, indicator)) <= 0:
        hi = hi * 2
        if hi > 1e6:
            raise RuntimeError(f"{method}: the variance ratio has no minimum below tau = 1e6")
    lo, hi = _bisect(lambda t: _slope(t, indicator) < 0, lo, hi)
    tau_star = float(lo)
    grid = torch.logspace(math.log10(tau_star) - 8, math.log10(tau_star), 4001, dtype=_F64)[:-1]
    if not bool((_slope(grid, indicator) < 0).all()) or float(_slope(hi * 2, indicator)) <= 0:
        raise RuntimeError(f"{method}: the variance ratio is not unimodal as assumed; this is a bug")
    r_min = float(torch.minimum(_ratio(lo, indicator), _ratio(hi, indicator)))
    return tau_star, r_min


def variance_ratio(method: str, temperature, rate) -> torch.Tensor:
    r"""Campbell's :math:`\operatorname{Var}[\tilde z]/\lambda` of an EAT method at ``temperature``.

    :func:`hitchhiker.relaxed_variance` divided by the rate, by method name (``"eat-cubic"``,
    ``"eat-sigmoid"``, ``"eat-linear"``, ``"eat-quintic"``, ``"eat-cosine"``). For EAT it does not
    depend on the rate; the rate is checked and sets the broadcast shape. Other methods are refused
    as in :func:`temperature_for_variance_ratio`.

    >>> variance_ratio("eat-cubic", 0.5, 20.0)           # 1 - 9 tau / 35
    tensor(0.8714)

    Args:
        method: an EAT method name.
        temperature: :math:`\tau \ge 0`, a number or tensor.
        rate: :math:`\lambda > 0`, finite, broadcastable with ``temperature``.

    Returns the broadcast shape in the promoted floating dtype, differentiable in ``temperature``.
    """
    indicator = _indicator(method)
    rate = _positive_rate(rate)
    temperature = as_float_tensor(temperature, "temperature", like=rate)
    _pair(rate, temperature, "temperature")
    return relaxed_variance(rate, temperature, indicator) / rate


def temperature_for_variance_ratio(method: str, variance_ratio, rate, *,
                                   biased_mean: str = "warn") -> torch.Tensor:
    r"""The smallest temperature at which an EAT method's :math:`\operatorname{Var}[\tilde z]/\lambda`
    equals ``variance_ratio``: the inverse of :func:`variance_ratio`, to match fidelity across relaxations.

    Solves :math:`r(\tau) = \tau F_2(1/\tau) = r` (see :mod:`hitchhiker.matching`). For the compact
    ramps and :math:`r \ge 1 - c` the inverse is closed: :math:`\tau = (1 - r)/c` (cubic:
    :math:`\tau = 35(1 - r)/9`). Otherwise (the sigmoid; the ramps' wide branch :math:`\tau > 1`) it
    bisects, in float64 and in :math:`\log\tau`, to float64 resolution on a bracket where :math:`r`
    decreases and crosses the target: :math:`[1, \tau^*]` for a ramp, :math:`[1 - r, \tau^*]` for the
    sigmoid (whose :math:`r(\tau) \ge 1 - \tau`); the round trip through
    :func:`hitchhiker.relaxed_variance` agrees to about :math:`10^{-15}`.

    The answer does not depend on the rate (Campbell's ratio is rate-free for EAT); ``rate`` is checked
    and broadcast. Above :math:`\tau = 1` a compact ramp's mean exceeds :math:`\lambda` (cubic: 5.5% at
    :math:`\tau = 2`): such an answer warns (``biased_mean``). The result is a plain tensor, not
    differentiable in ``variance_ratio``.

    Match the sigmoid to the cubic at :math:`\tau = 0.5` (ratio :math:`1 - 9/70`):

    >>> import torch
    >>> r = 1 - 9 * 0.5 / 35
    >>> tau = temperature_for_variance_ratio("eat-sigmoid", r, torch.tensor([2.0, 20.0, 100.0]))
    >>> tau
    tensor([0.1287, 0.1287, 0.1287])
    >>> variance_ratio("eat-sigmoid", tau, 2.0)
    tensor([0.8714, 0.8714, 0.8714])
    >>> temperature_for_variance_ratio("eat-cubic", torch.tensor(r, dtype=torch.float64), 2.0)
    tensor(0.5000, dtype=torch.float64)

    Args:
        method: an EAT method name (``"eat-cubic"``, ``"eat-sigmoid"``, ``"eat-linear"``,
            ``"eat-quintic"``, ``"eat-cosine"``). ``"gsm"`` is refused (no closed form: estimate its
            ratio by Monte Carlo); straight-through and ``"score"`` are refused (their forward value is
            the exact count, ratio 1 at every temperature); ``"exact"`` draws nothing.
        variance_ratio: the target :math:`r`, a number or tensor in :math:`[r_{\min}, 1)` (see
            :func:`turning_point`; ratio 1 is the exact count, :math:`\tau \to 0`).
        rate: :math:`\lambda > 0`, finite, a number or tensor broadcastable with ``variance_ratio``.
        biased_mean: what to do when some returned :math:`\tau > 1` for a compact ramp, where its
            mean is above :math:`\lambda`: ``"warn"`` (default, a ``UserWarning`` giving the largest
            mean ratio), ``"error"`` (``ValueError``) or ``"ignore"``.

    Returns:
        :math:`\tau` in the broadcast shape of ``variance_ratio`` and ``rate``, their promoted floating
        dtype, on ``rate``'s device.

    Raises:
        TypeError: ``method`` is not a string; ``variance_ratio`` or ``rate`` is not a real number or
            tensor; ``biased_mean`` is not a string.
        ValueError: unknown or unmatched ``method``; ``rate`` not finite and > 0; ``variance_ratio``
            outside :math:`[r_{\min}, 1)` (the message gives the range); shapes that do not broadcast;
            ``biased_mean`` not one of its choices, or ``"error"`` with :math:`\tau > 1`.
    """
    indicator = _indicator(method)
    if not isinstance(biased_mean, str):
        raise TypeError(f"biased_mean must be one of {_BIASED_MEAN}, got {type(biased_mean).__name__}")
    if biased_mean not in _BIASED_MEAN:
        raise ValueError(f"biased_mean must be one of {_BIASED_MEAN}, got {biased_mean!r}")
    rate = _positive_rate(rate)
    target = as_float_tensor(variance_ratio, "variance_ratio", like=rate)
    shape, dtype = _pair(rate, target, "variance_ratio")
    tau_star, r_min = turning_point(method)
    r = target.detach().to("cpu", _F64).expand(shape)
    bad = ~(torch.isfinite(r) & (r >= r_min) & (r < 1))
    if bool(bad.any()):
        raise ValueError(
            f"variance_ratio must lie in [{r_min:.6g}, 1) for method={method!r} (at every rate: "
            f"Var/rate is {r_min:.6g} at its smallest, at tau = {tau_star:.4g}, and 1 only as tau -> 0); "
            f"got values such as {r[bad].flatten()[:3].tolist()}")
    compact = indicator != "sigmoid"
    if compact:
        # r = 1 - c tau on tau <= 1 (closed-form inverse); the wide branch is bracketed by [1, tau*].
        narrow_floor = float(_ratio(torch.tensor(1.0, dtype=_F64), indicator))  # 1 - c
        c = 1 - narrow_floor
        narrow = r >= narrow_floor
        lo = torch.ones_like(r)
    else:
        # r(tau) >= 1 - tau, so r(1 - r) >= r: the bracket is [1 - r, tau*] (1 - r < 1 - r_min < tau*).
        lo = (1 - r).clamp(max=tau_star)
    lo, hi = _bisect(lambda t: _ratio(t, indicator) > r, lo, torch.full_like(r, tau_star))
    # The end of the final bracket whose ratio is closer to the target.
    tau = torch.where((_ratio(lo, indicator) - r).abs() <= (_ratio(hi, indicator) - r).abs(), lo, hi)
    if compact:
        tau = torch.where(narrow, (1 - r) / c, tau)
        above = tau > 1
        if biased_mean != "ignore" and bool(above.any()):
            worst = float(relaxed_mean(1.0, tau[above], indicator).max())
            message = (f"method={method!r}: the temperature for variance_ratio below {narrow_floor:.6g} "
                       f"is above 1 (up to {float(tau.max()):.4g}), where the relaxed mean is no longer "
                       f"the rate: up to {worst:.4g} x rate (Campbell)")
            if biased_mean == "error":
                raise ValueError(message + "; pass biased_mean='warn' or 'ignore' to accept it")
            warnings.warn(message, UserWarning, stacklevel=2)
    return tau.to(rate.device, dtype)
