r"""Soft indicators that replace the hard step :math:`\mathbb 1[t < 1]` in the EAT construction.

Every indicator is a function :math:`f(x)` of the scaled distance to the horizon,
:math:`x = (1 - t)/\tau`, with :math:`f(x) \to 1` as :math:`x \to \infty` and :math:`f(x) \to 0` as
:math:`x \to -\infty`.

* ``sigmoid``: :math:`f(x) = \sigma(x)`, smooth with infinite support.
* compact ramps: :math:`f(x) = s(u)`, :math:`u = \mathrm{clamp}(x/2 + 1/2, 0, 1)`, so :math:`f = 1`
  for :math:`t \le 1-\tau`, :math:`f = 0` for :math:`t \ge 1+\tau`, and :math:`f = 1/2` at :math:`t = 1`.
  ``cubic`` (Hermite smoothstep) :math:`s(u) = 3u^2 - 2u^3`; ``linear`` :math:`s = u`;
  ``quintic`` :math:`s = 6u^5 - 15u^4 + 10u^3`; ``cosine`` :math:`s = (1 - \cos \pi u)/2`.

The ramp polynomials are written once and evaluated both on torch tensors (the samplers) and on
SymPy symbols (:mod:`hitchhiker.book.campbell` derives the Campbell moments from these very
definitions; :mod:`hitchhiker.moments` ships the results as plain torch code, checked against it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch


def _cubic(u, ns):
    return 3 * u**2 - 2 * u**3


def _d_cubic(u, ns):
    return 6 * u - 6 * u**2


def _linear(u, ns):
    return u


def _d_linear(u, ns):
    return u * 0 + 1


def _quintic(u, ns):
    return 6 * u**5 - 15 * u**4 + 10 * u**3


def _d_quintic(u, ns):
    return 30 * u**4 - 60 * u**3 + 30 * u**2


def _cosine(u, ns):
    return (1 - ns.cos(ns.pi * u)) / 2


def _d_cosine(u, ns):
    return ns.pi * ns.sin(ns.pi * u) / 2


def _sigmoid(x, ns):
    return 1 / (1 + ns.exp(-x))


@dataclass(frozen=True)
class Indicator:
    """A soft indicator.

    ``ramp(u, ns)`` / ``d_ramp(u, ns)`` define compact indicators on :math:`u \\in [0, 1]`
    (``ns`` is ``torch`` or ``sympy``); the sigmoid has ``ramp = None`` and ``logistic`` set.
    """

    name: str
    ramp: Optional[Callable] = None
    d_ramp: Optional[Callable] = None
    logistic: Optional[Callable] = None

    @property
    def compact(self) -> bool:
        """True when f is exactly 1 left of ``x = 1`` and exactly 0 right of ``x = -1``."""
        return self.ramp is not None

    def half_width(self, dtype: torch.dtype) -> float:
        """Half-width of the window in x-units outside which f is constant (to dtype resolution).

        Outside ``|x| <= half_width`` the sigmoid differs from 0 or 1 by less than ``eps(dtype)/4``,
        i.e. below what the dtype can even represent next to 1.
        """
        if self.compact:
            return 1.0
        return math.log(4.0 / torch.finfo(dtype).eps)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """f(x) on a tensor."""
        if self.ramp is not None:  # compact
            u = (0.5 * x + 0.5).clamp(0.0, 1.0)
            return self.ramp(u, _TorchNS)
        return torch.sigmoid(x)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        """f'(x) on a tensor (zero outside the ramp for compact indicators)."""
        if self.d_ramp is not None:  # compact
            inside = (x > -1) & (x < 1)
            u = (0.5 * x + 0.5).clamp(0.0, 1.0)
            return torch.where(inside, 0.5 * self.d_ramp(u, _TorchNS), torch.zeros_like(x))
        s = torch.sigmoid(x)
        return s * (1 - s)


class _TorchNS:
    """The few functions the ramp definitions need, on tensors."""

    pi = math.pi
    cos = staticmethod(torch.cos)
    sin = staticmethod(torch.sin)
    exp = staticmethod(torch.exp)


INDICATORS = {
    "sigmoid": Indicator("sigmoid", logistic=_sigmoid),
    "cubic": Indicator("cubic", _cubic, _d_cubic),
    "linear": Indicator("linear", _linear, _d_linear),
    "quintic": Indicator("quintic", _quintic, _d_quintic),
    "cosine": Indicator("cosine", _cosine, _d_cosine),
}


def get_indicator(name) -> Indicator:
    """Look an indicator up by name; an unknown name raises ``ValueError`` listing the valid ones."""
    if isinstance(name, Indicator):
        return name
    try:
        return INDICATORS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"indicator={name!r} is not a known soft indicator; choose one of {sorted(INDICATORS)}"
        ) from None
