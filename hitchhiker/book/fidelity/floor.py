r"""The sampling floor of :math:`W_1`: how far apart two *exact* Poisson samples of the same size are.

A measured :math:`W_1` between ``n`` relaxed and ``n`` exact draws is never 0, even for a perfect
sampler: two independent Poisson(:math:`\lambda`) samples of size :math:`n` differ by chance. For
integer samples :math:`W_1 = \sum_k |\hat F_1(k) - \hat F_2(k)|` (the empirical CDFs), and
:math:`n(\hat F_1(k) - \hat F_2(k)) = D_k` is a sum of :math:`n` independent steps, each
:math:`\pm 1` with probability :math:`q_k = F(k)(1 - F(k))` and 0 otherwise. Given the number
:math:`M \sim \mathrm{Binomial}(n, 2q_k)` of non-zero steps, :math:`D_k` is a simple random walk of
:math:`M` steps, whose mean absolute value is :math:`M\binom{M-1}{\lfloor (M-1)/2 \rfloor}/2^{M-1}`. So

.. math::
    \mathbb E[W_1] = \frac1n \sum_k \sum_{m=1}^{n} \binom{n}{m}(2q_k)^m(1 - 2q_k)^{n-m}\,
        \frac{m\binom{m-1}{\lfloor (m-1)/2 \rfloor}}{2^{m-1}}
    \;\approx\; \frac{2}{\sqrt{\pi n}} \sum_k \sqrt{q_k}\quad (n\,q_k \gg 1),

exactly, with no sampling (:func:`w1_floor`; the normal approximation is :func:`w1_floor_normal`).
:func:`w1_ratio_by_sample_size` shows what the floor does to a ratio of two distances.
A relaxation whose measured :math:`W_1` is near this floor is indistinguishable from Poisson at that
sample size; ratios of small distances shrink towards 1 as they approach it.

>>> round(w1_floor(100.0, 10_000) / 10, 4)     # W1 / sqrt(lambda) of two exact samples of 10^4 draws
0.0182
>>> round(w1_floor(3.0, 1), 4)                 # n = 1: E|a - b| for two independent Poisson(3)
1.9123
"""
from __future__ import annotations

import math

import torch

from .sweep import _as_float


def _check(rate, n_samples) -> tuple[float, int]:
    rate = _as_float(rate, "rate")
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"rate must be finite and > 0, got {rate}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be an integer >= 1, got {n_samples!r}")
    return rate, n_samples


def _cdf_spread(rate: float) -> torch.Tensor:
    """q_k = F(k)(1 - F(k)) of Poisson(rate) for every k where it is not negligible (float64)."""
    k_max = int(rate + 40 * math.sqrt(rate) + 40)
    k = torch.arange(k_max + 1, dtype=torch.float64)
    log_pmf = k * math.log(rate) - rate - torch.lgamma(k + 1)
    cdf = torch.cumsum(log_pmf.exp(), 0).clamp(max=1.0)
    # the upper tail directly (1 - cdf loses it to rounding), summed from the right
    sf = torch.flip(torch.cumsum(torch.flip(log_pmf.exp(), [0]), 0), [0])[1:]
    sf = torch.cat([sf, sf.new_zeros(1)])
    q = cdf * sf
    return q[q > 1e-30]


def w1_floor(rate, n_samples: int) -> float:
    r"""Expected :math:`W_1` between two independent Poisson(``rate``) samples of ``n_samples`` each.

    Exact (the sum in the module docstring, in float64; the :math:`k` left out have
    :math:`F(k)(1-F(k)) < 10^{-30}`, each worth less than :math:`10^{-14}`). The expected value of a
    trial mean of such distances is the same number. Divide by :math:`\sqrt\lambda` for the book's
    :math:`W_1/\sqrt\lambda`.
    """
    rate, n = _check(rate, n_samples)
    m = torch.arange(1, n + 1, dtype=torch.float64)
    half = torch.floor((m - 1) / 2)
    # log of E|S_m| = m C(m-1, floor((m-1)/2)) / 2^(m-1), the simple random walk's mean distance
    log_walk = (m.log() + torch.lgamma(m) - torch.lgamma(half + 1) - torch.lgamma(m - half)
                - (m - 1) * math.log(2.0))
    log_choose = math.lgamma(n + 1) - torch.lgamma(m + 1) - torch.lgamma(n - m + 1)
    total = 0.0
    for q in _cdf_spread(rate).tolist():
        p = 2 * q  # <= 1/2
        total += float(torch.exp(log_choose + m * math.log(p) + (n - m) * math.log1p(-p) + log_walk).sum())
    return total / n


def w1_floor_normal(rate, n_samples: int) -> float:
    r""":math:`\frac{2}{\sqrt{\pi n}}\sum_k\sqrt{F(k)(1 - F(k))}`, the large-``n`` form of :func:`w1_floor`.

    It scales as :math:`1/\sqrt n`: quadrupling the sample size halves the floor.
    """
    rate, n = _check(rate, n_samples)
    return 2 / math.sqrt(math.pi * n) * float(_cdf_spread(rate).sqrt().sum())


def w1_ratio_by_sample_size(sample_sizes, rate: float = 100.0, temperature: float = 0.5,
                            numerator: str = "eat-sigmoid", denominator: str = "eat-cubic",
                            n_trials: int = 10, device=None, seed: int = 0):
    r"""How :math:`W_1(\text{numerator}) / W_1(\text{denominator})` moves with the sample size.

    Every measured :math:`W_1` carries the sampling floor (:func:`w1_floor`), which shrinks like
    :math:`1/\sqrt n`; it inflates the smaller distance more, so the ratio grows with :math:`n`
    towards the ratio of the distributions' own distances. One row per size: both :math:`W_1`
    (means over ``n_trials`` trials of :func:`~hitchhiker.book.fidelity.sweep.measure_fidelity`,
    seeded from ``seed`` and the size), the ratio with its standard error
    (:func:`~hitchhiker.book.fidelity.official.w1_ratio`) and the floor at that size. Torch's global
    random state is left as it was.
    """
    import pandas as pd

    from .official import w1_ratio
    from .sweep import forked_rng, measure_fidelity

    rows = []
    for n in sample_sizes:
        _check(rate, n)
        stats = {}
        for method in (numerator, denominator):
            with forked_rng(device):
                torch.manual_seed(seed + int(n))
                stats[method] = measure_fidelity(method, rate, temperature, int(n), n_trials, device)
        ratio, ratio_se = w1_ratio(stats[numerator], stats[denominator])
        rows.append({"n_samples": int(n), "n_trials": n_trials, f"w1 {numerator}": stats[numerator]["w1"],
                     f"w1 {denominator}": stats[denominator]["w1"], "w1_ratio": ratio,
                     "w1_ratio_se": ratio_se, "w1_floor": w1_floor(rate, int(n))})
    return pd.DataFrame(rows).set_index("n_samples")
