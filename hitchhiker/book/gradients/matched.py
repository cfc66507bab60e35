r"""Gradient quality at matched fidelity: each method on the variance-ratio axis beside the :math:`\tau` axis.

A temperature means different things per method (chapter 04): EAT-cubic at :math:`\tau` keeps the variance
ratio :math:`v = \operatorname{Var}[\tilde z]/\lambda = 1 - 9\tau/35`, the sigmoid about :math:`1 - \tau`,
GSM (measured) about :math:`1 - \tau` at small :math:`\tau`. So "X is quieter than Y at equal :math:`\tau`"
can be a statement about the axis rather than the methods. This module gives each row of the gradient grid
its :math:`v` (:func:`variance_ratio_axis`), the temperature at which a method keeps a given :math:`v`
(:func:`matched_temperature`) and a sweep that *measures* the other methods at the reference method's
variance ratios (:func:`matched_sweep`), so no gradient statistic is interpolated.

>>> round(matched_temperature("eat-sigmoid", 1 - 9 * 0.5 / 35, 20.0), 4)   # the cubic at tau = 0.5
0.1287
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd
import torch

from ... import matching
from ..fidelity.matched import at_variance_ratio
from .sweep import gradient_quality_sweep

__all__ = ["CAMPBELL_METHODS", "matched_sweep", "matched_temperature", "variance_ratio_axis"]

#: Methods whose variance ratio is Campbell's closed form, with the EAT law each one draws.
CAMPBELL_METHODS = {"eat-cubic": "eat-cubic", "eat-sigmoid": "eat-sigmoid", "adaptive-eat-cubic": "eat-cubic"}


def _campbell_ratio(method: str, temperature: float) -> float:
    tau = torch.tensor(float(temperature), dtype=torch.float64)
    return float(matching.variance_ratio(CAMPBELL_METHODS[method], tau, 1.0))


def variance_ratio_axis(frame: pd.DataFrame, fidelity: pd.DataFrame | None = None) -> pd.Series:
    r"""Each row's variance ratio :math:`v`: Campbell's closed form for EAT, GSM's measured one, else NaN.

    EAT-sigmoid and EAT-cubic use :func:`hitchhiker.variance_ratio` at the row's ``temperature``;
    ``adaptive-eat-cubic`` uses its ``effective_temperature`` (every latent has the same rate in the grid,
    so every :math:`\tau_k` is that value). GSM takes ``var_ratio`` from ``fidelity`` (the chapter-04
    table) at the same rate and temperature, NaN where that table has no such cell or is not given.
    Straight-through, the score function and the fixed-cap samplers get NaN: the first two draw the
    exact count (ratio 1 at every :math:`\tau`), the last is truncated (no closed form).
    """
    missing = {"method", "rate", "temperature"} - set(frame.columns)
    if missing:
        raise ValueError(f"frame lacks the columns {sorted(missing)}")
    out = pd.Series(np.nan, index=frame.index, name="variance_ratio")
    for index, row in frame.iterrows():
        if row["method"] in CAMPBELL_METHODS:
            adaptive = row["method"] == "adaptive-eat-cubic"
            tau = row["effective_temperature"] if adaptive else row["temperature"]
            out[index] = _campbell_ratio(row["method"], tau)
    gsm = frame["method"] == "gsm"
    if fidelity is not None and gsm.any():
        if not {"method", "rate", "temperature", "var_ratio"} <= set(fidelity.columns):
            raise ValueError("fidelity lacks one of the columns method, rate, temperature, var_ratio")
        measured = fidelity[fidelity["method"] == "gsm"]
        lookup = {(float(r), round(float(t), 9)): v
                  for r, t, v in zip(measured["rate"], measured["temperature"], measured["var_ratio"])}
        for index in frame.index[gsm]:
            key = (float(frame.at[index, "rate"]), round(float(frame.at[index, "temperature"]), 9))
            out[index] = lookup.get(key, np.nan)
    return out


def matched_temperature(method: str, variance_ratio: float, rate: float,
                        fidelity: pd.DataFrame | None = None) -> float:
    r"""The temperature at which ``method`` keeps the variance ratio ``variance_ratio`` at ``rate``.

    EAT-cubic and EAT-sigmoid: :func:`hitchhiker.temperature_for_variance_ratio` (Campbell, exact; a
    cubic above :math:`\tau = 1` is refused, its mean would exceed :math:`\lambda`). GSM: linear
    interpolation in the measured ``var_ratio`` of ``fidelity`` between the two temperatures that bracket
    the target at that rate (:func:`hitchhiker.book.fidelity.at_variance_ratio`); ``ValueError`` when
    ``fidelity`` is missing, lacks the rate, or does not reach the target there. Other methods are refused.
    """
    if method in ("eat-cubic", "eat-sigmoid"):
        one = torch.ones((), dtype=torch.float64)
        tau = matching.temperature_for_variance_ratio(method, one * float(variance_ratio), one * float(rate),
                                                      biased_mean="error")
        return float(tau)
    if method == "gsm":
        if fidelity is None:
            raise ValueError("method='gsm' needs fidelity= (its variance ratio is measured, not closed form)")
        return float(at_variance_ratio(fidelity, "gsm", float(rate), float(variance_ratio),
                                       statistics=())["temperature"])
    raise ValueError(f"method={method!r} has no matched temperature: use 'eat-cubic', 'eat-sigmoid' or 'gsm'")


def matched_sweep(phi: torch.Tensor, rates: Iterable[float], temperatures: Iterable[float], *,
                  reference: str = "eat-cubic", others: Iterable[str] = ("eat-sigmoid", "gsm"),
                  fidelity: pd.DataFrame | None = None, n_samples: int = 100, n_items: int = 16,
                  seed: int = 0, data: torch.Tensor | None = None, decoder: str = "custom") -> pd.DataFrame:
    r"""Gradient quality of ``others`` measured at the variance ratios of ``reference`` at ``temperatures``.

    For each rate and each reference temperature :math:`\tau_0` the target is the reference's
    :math:`v(\tau_0)`; each other method is run (:func:`gradient_quality_sweep`, the same items, samples and
    seed rule as the grid) at its :func:`matched_temperature`. Targets a method cannot reach (GSM outside its
    measured range) are left out for that method only. The reference itself is run too, so every row of one
    (rate, :math:`\tau_0`) shares its items. Returns the sweep's rows plus ``reference_temperature`` and
    ``variance_ratio``.
    """
    rows = []
    for rate in rates:
        for tau0 in temperatures:
            target = _campbell_ratio(reference, tau0)
            for method in [reference, *others]:
                try:
                    tau = float(tau0) if method == reference else matched_temperature(
                        method, target, rate, fidelity)
                except ValueError as err:
                    if "outside" not in str(err) and "fewer than two" not in str(err):
                        raise
                    continue
                cell = gradient_quality_sweep(phi, [rate], [tau], [method], n_samples, n_items, seed=seed,
                                              data=data, decoder=decoder)
                rows += [{**row, "reference_temperature": float(tau0), "variance_ratio": target}
                         for row in cell]
    if not rows:
        raise ValueError("no method could be matched at any of the given rates and temperatures")
    return pd.DataFrame(rows)
