r"""Compare relaxations at matched fidelity instead of at equal nominal temperature.

A temperature :math:`\tau` does not mean the same thing across methods: the cubic's is a ramp
half-width (variance ratio :math:`1 - 9\tau/35`), the sigmoid's a logistic scale (ratio
:math:`\approx 1 - \tau`), GSM's a softmax temperature. The *variance ratio*
:math:`v = \operatorname{Var}[\tilde z]/\lambda` is a common axis: how much of the Poisson's spread
a relaxation keeps. For EAT it is Campbell's closed form (:func:`hitchhiker.relaxed_variance`,
the same at every rate); for GSM it is measured.

:func:`campbell_temperature` inverts the closed form for an EAT method; :func:`variance_ratio_axis`
gives each row of a :func:`~hitchhiker.book.fidelity.sweep.fidelity_grid`
table its :math:`v`; :func:`at_variance_ratio` interpolates a method's statistics, linearly in
:math:`v` between the grid's temperatures, to a target :math:`v`; :func:`matched_comparison` puts
the methods side by side at the reference method's own variance ratios.

>>> import pandas as pd
>>> grid = pd.DataFrame({"method": ["eat-sigmoid"] * 2, "rate": [5.0, 5.0], "temperature": [0.1, 0.2],
...                      "var_ratio": [0.9, 0.8], "var_ratio_theory": [0.9, 0.8],
...                      "w1_normalised": [0.1, 0.3], "w1_normalised_se": [0.01, 0.01]})
>>> out = at_variance_ratio(grid, "eat-sigmoid", 5.0, 0.85, statistics=["w1_normalised"])
>>> round(out["temperature"], 3), round(out["w1_normalised"], 3)
(0.15, 0.2)
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from ...estimators import PATHWISE_METHODS, check_method
from ...matching import temperature_for_variance_ratio

#: Statistics :func:`at_variance_ratio` interpolates by default (each with its ``_se``).
MATCHED_STATISTICS = ("w1_normalised", "mean_ratio")


def campbell_temperature(method: str, target: float) -> float:
    r"""The temperature at which an EAT method keeps the variance ratio ``target`` (Campbell's theorem).

    The library's :func:`hitchhiker.temperature_for_variance_ratio` at :math:`\lambda = 1` (the ratio
    :math:`\tau F_2(1/\tau)` is the same at every rate), with ``target = 1`` giving :math:`\tau = 0`.
    The ratio falls from 1 at :math:`\tau = 0` to a minimum (0.569 at :math:`\tau \approx 2.8` for the
    cubic, 0.579 at
    :math:`\tau \approx 0.86` for the sigmoid) and rises again beyond it; the temperature returned is
    the one below the minimum. ``ValueError`` for a ``target`` outside [minimum, 1] or a method
    without a closed form (GSM: use :func:`at_variance_ratio` on measured values).

    >>> round(campbell_temperature("eat-cubic", 1 - 9 * 0.5 / 35), 6)   # the cubic's 1 - 9 tau / 35
    0.5
    """
    check_method(method, ("eat-cubic", "eat-sigmoid"))
    if float(target) == 1.0:
        return 0.0  # the whole variance is kept only in the limit tau -> 0
    one = torch.ones((), dtype=torch.float64)  # float64 throughout (Python floats would give float32)
    try:
        tau = temperature_for_variance_ratio(method, one * float(target), one, biased_mean="ignore")
    except ValueError as err:
        raise ValueError(f"target={target!r} cannot be matched: {err}") from None
    return float(tau)


def variance_ratio_axis(grid: pd.DataFrame) -> pd.Series:
    """Each row's variance ratio: Campbell's closed form for EAT, the measured one for GSM."""
    missing = {"method", "var_ratio", "var_ratio_theory"} - set(grid.columns)
    if missing:
        raise ValueError(f"grid lacks the columns {sorted(missing)}")
    theory = grid["var_ratio_theory"].where(grid["method"] != "gsm")
    return theory.fillna(grid["var_ratio"]).rename("variance_ratio")


def at_variance_ratio(grid: pd.DataFrame, method: str, rate: float, target: float,
                      statistics=MATCHED_STATISTICS) -> dict:
    r"""``method``'s temperature and statistics at rate ``rate`` where its variance ratio is ``target``.

    Linear interpolation in the variance ratio (:func:`variance_ratio_axis`) between the two grid
    temperatures that bracket ``target``; the standard error of an interpolated statistic
    :math:`(1-w)a + wb` is :math:`\sqrt{(1-w)^2 s_a^2 + w^2 s_b^2}`. Raises ``ValueError`` if
    ``target`` is outside the variance ratios the grid reaches at that rate, or if they do not fall
    strictly as :math:`\tau` grows (then no single temperature matches).
    """
    check_method(method, PATHWISE_METHODS)
    missing = [name for name in statistics if name not in grid.columns]
    if missing:
        raise ValueError(f"statistics {missing} are not columns of grid")
    cells = grid[(grid["method"] == method) & (grid["rate"] == float(rate))].sort_values("temperature")
    if len(cells) < 2:
        raise ValueError(f"grid has fewer than two temperatures for method={method!r}, rate={rate!r}")
    axis = variance_ratio_axis(cells).to_numpy(float)
    if not (np.diff(axis) < 0).all():
        raise ValueError(f"the variance ratio of method={method!r} at rate={rate!r} does not fall "
                         f"strictly with the temperature ({np.round(axis, 4).tolist()}): no unique match")
    target = float(target)
    if not (axis[-1] <= target <= axis[0]):
        raise ValueError(f"target={target!r} is outside the variance ratios [{axis[-1]:.4f}, {axis[0]:.4f}] "
                         f"that method={method!r} reaches on the grid at rate={rate!r}")
    j = min(int(np.searchsorted(-axis, -target, side="left")), len(axis) - 1)
    i = max(j - 1, 0)
    w = 0.0 if i == j else (axis[i] - target) / (axis[i] - axis[j])
    lo, hi = cells.iloc[i], cells.iloc[j]
    out = {"method": method, "rate": float(rate), "variance_ratio": target,
           "temperature": float((1 - w) * lo["temperature"] + w * hi["temperature"])}
    for name in statistics:
        out[name] = float((1 - w) * lo[name] + w * hi[name])
        if f"{name}_se" in cells.columns:
            out[f"{name}_se"] = math.hypot((1 - w) * lo[f"{name}_se"], w * hi[f"{name}_se"])
    return out


def matched_comparison(grid: pd.DataFrame, reference: str = "eat-cubic", others=("eat-sigmoid", "gsm"),
                       rates=None, statistics=MATCHED_STATISTICS) -> pd.DataFrame:
    """Every method at the variance ratios the ``reference`` method has at its grid temperatures.

    One row per (rate, reference temperature, method) with ``reference_temperature``, the common
    ``variance_ratio``, the method's matching ``temperature`` and its interpolated statistics
    (:func:`at_variance_ratio`; the reference's own cells need no interpolation). Targets that
    another method does not reach within the grid's temperatures at that rate are left out of the
    table for that method only.
    """
    rates = sorted(grid["rate"].unique()) if rates is None else [float(r) for r in rates]
    rows = []
    for rate in rates:
        ref = grid[(grid["method"] == reference) & (grid["rate"] == rate)].sort_values("temperature")
        for _, cell in ref.assign(variance_ratio=variance_ratio_axis(ref)).iterrows():
            target = cell["variance_ratio"]
            rows.append({**at_variance_ratio(grid, reference, rate, target, statistics),
                         "reference_temperature": cell["temperature"]})
            for method in others:
                try:
                    matched = at_variance_ratio(grid, method, rate, target, statistics)
                except ValueError as err:
                    if "outside" not in str(err):
                        raise
                    continue
                rows.append({**matched, "reference_temperature": cell["temperature"]})
    return pd.DataFrame(rows)
