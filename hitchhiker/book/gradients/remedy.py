r"""A rate-adaptive temperature for EAT-cubic: the low-rate remedy measured in chapter 05.

EAT-cubic's soft indicator ramps over the window :math:`[1 - \tau, 1 + \tau]`; only arrivals inside it
carry gradient, and by Campbell's theorem the window holds on average :math:`2\lambda\tau` of them. At
spike-count rates (:math:`\lambda \lesssim 1`) and a cold :math:`\tau` that is far below one arrival
(0.004 at :math:`\lambda = 0.1, \tau = 0.02`): almost every sample has zero gradient and the few that
have one are huge, so the estimator is noisy. The remedy widens the window *element by element* until it
holds a target number :math:`A` of expected arrivals,

.. math::  \tau_k = \min\Big(1,\ \max\big(\tau,\ \tfrac{A}{2\lambda_k}\big)\Big),

leaving :math:`\tau` unchanged where the rate is high enough. Capping at 1 keeps the cubic's relaxed
mean exactly :math:`\lambda_k` (Campbell: exact for :math:`\tau \le 1`) in every element; its
variance is :math:`\lambda_k(1 - 9\tau_k/35)`, so the price is a variance deficit of at most
:math:`9/35 \approx 26\%` where the rate is low, and a gradient bias
:math:`-\tfrac{9\tau_k}{35}\lambda_k d_k` that grows with :math:`\tau_k`. The temperature is a
hyper-parameter: it is computed from the *detached* rates, so no gradient flows through it.

>>> rate_adaptive_temperature(torch.tensor([0.1, 1.0, 20.0]), 0.02)
tensor([1.0000, 0.5000, 0.0250])
"""
from __future__ import annotations

import math

import torch

__all__ = ["rate_adaptive_temperature", "window_arrivals"]


def _positive_number(value, name: str) -> float:
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or value <= 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def window_arrivals(rate, temperature):
    r"""Expected number of arrivals in EAT-cubic's window, :math:`2\lambda\tau` (for :math:`\tau \le 1`).

    >>> window_arrivals(0.1, 0.02)
    0.004
    """
    if torch.is_tensor(rate) or torch.is_tensor(temperature):
        return 2 * torch.as_tensor(rate) * torch.as_tensor(temperature)
    return 2 * _positive_number(rate, "rate") * _positive_number(temperature, "temperature")


def rate_adaptive_temperature(rate: torch.Tensor, temperature: float, arrivals: float = 1.0,
                              max_temperature: float = 1.0) -> torch.Tensor:
    r"""Per-element temperature :math:`\min(\tau_{\max}, \max(\tau, A / 2\lambda_k))` (see the module).

    Args:
        rate: :math:`\lambda` (any shape, finite and > 0); detached before use.
        temperature: the nominal :math:`\tau > 0`, kept where the rate is high.
        arrivals: :math:`A > 0`, the expected arrivals the window should hold at least.
        max_temperature: :math:`\tau_{\max}` in :math:`(0, 1]`; above 1 the cubic's mean would exceed
            :math:`\lambda`, so larger values are refused.

    Returns a tensor of ``rate``'s shape, dtype and device.
    """
    if not torch.is_tensor(rate) or not rate.is_floating_point():
        raise ValueError("rate must be a floating-point tensor")
    rate = rate.detach()
    if not bool((torch.isfinite(rate) & (rate > 0)).all()):
        raise ValueError("rate must be finite and > 0 everywhere")
    temperature = _positive_number(temperature, "temperature")
    arrivals = _positive_number(arrivals, "arrivals")
    max_temperature = _positive_number(max_temperature, "max_temperature")
    if max_temperature > 1:
        raise ValueError(f"max_temperature must be <= 1 (the cubic's mean is exact only for tau <= 1), "
                         f"got {max_temperature!r}")
    if temperature > max_temperature:
        raise ValueError(f"temperature {temperature!r} exceeds max_temperature {max_temperature!r}")
    return (arrivals / (2 * rate)).clamp(min=temperature, max=max_temperature)
