r"""The decision guide's measurements: how the ratings depend on the gradient setup, what the
temperature trades, and how much a truncated GSM drops.

>>> round(truncation_tail_mass(20.0, 21), 3)      # K = rate + 1 categories drop 44% of Poisson(20)
0.441
"""
from __future__ import annotations

import math

import pandas as pd
import torch

from ..._validation import check_n_categories
from ...distributions import truncation_tail_mass as library_tail_mass
from ...estimators import PATHWISE_METHODS, check_method, relaxed_sample
from .evidence import (
    GRADIENT_DECODERS,
    GRADIENT_SETUP,
    TABLE_METHODS,
    bias_evidence,
    gradient_rows,
    variance_evidence,
)
from .rules import Thresholds, _check_thresholds, rate_column

#: The gradient columns, whose evidence depends on the setup.
GRADIENT_COLUMNS = ("gradient bias", "gradient variance")
#: Label of the natural-patch setup re-rated with the official fixed-cap sampler's EAT rows.
FIXED_CAP_VARIANT = "natural-patches, fixed cap"


def gradient_setup_sensitivity(gradients: pd.DataFrame, thresholds: Thresholds | None = None,
                               with_fixed_cap: bool = True) -> pd.DataFrame:
    r"""How Table 1's gradient columns depend on the setup they are measured on.

    One row per (setup, method): the evidence and the rating of ``gradient bias`` and ``gradient
    variance`` on each setup of ``gradients`` (its ``setup`` column; with a ``decoder`` column, each
    other decoder of a setup is one more setup labelled ``"<setup>, <decoder>"``, the rated decoder of
    :data:`~hitchhiker.book.table1.evidence.GRADIENT_DECODERS` keeping the plain setup label). With
    ``with_fixed_cap`` and fixed-cap rows present, one more setup, :data:`FIXED_CAP_VARIANT`: the
    natural-patch rows with each EAT method's rows replaced by those of its fixed-cap sampler
    (``fixed-cap-eat-...``, rated on the measured bias beyond the noise floor, as it has no closed
    form).
    """
    thresholds = _check_thresholds(thresholds)
    if "setup" not in gradients.columns:
        raise ValueError("gradients lacks the column 'setup' (one row set per setup is needed)")
    variants, natural = {}, None
    for setup in gradients["setup"].dropna().unique():
        if "decoder" not in gradients.columns:
            variants[setup] = gradient_rows(gradients, setup)
            continue
        main = GRADIENT_DECODERS.get(setup)
        decoders = list(gradients.loc[gradients["setup"] == setup, "decoder"].dropna().unique())
        for decoder in sorted(decoders, key=lambda d: d != main):      # the rated decoder first
            variants[setup if decoder == main else f"{setup}, {decoder}"] = gradient_rows(
                gradients, setup, decoder)
    natural = variants.get(GRADIENT_SETUP)
    if with_fixed_cap and natural is not None and natural["method"].str.startswith("fixed-cap-").any():
        capped = natural[natural["method"].str.startswith("fixed-cap-")].copy()
        capped["method"] = capped["method"].str.replace("fixed-cap-", "", regex=False)
        kept = natural[~natural["method"].isin(capped["method"].unique())
                       & ~natural["method"].str.startswith("fixed-cap-")]
        variants[FIXED_CAP_VARIANT] = pd.concat([kept, capped], ignore_index=True)
    parts = []
    for setup, rows in variants.items():
        part = pd.DataFrame({"bias evidence": bias_evidence(rows),
                             "variance evidence": variance_evidence(rows)})
        part["gradient bias"] = rate_column(part["bias evidence"], "gradient bias", thresholds)
        part["gradient variance"] = rate_column(part["variance evidence"], "gradient variance", thresholds)
        part.insert(0, "setup", setup)
        parts.append(part.reset_index().rename(columns={"index": "method"}))
    return pd.concat(parts, ignore_index=True).set_index(["setup", "method"])


def temperature_tradeoff(methods=TABLE_METHODS, rate: float = 10.0, temperatures=(0.05, 0.1, 0.2, 0.5),
                         n_samples: int = 20_000, device=None) -> pd.DataFrame:
    r"""What the temperature trades, measured at one rate: fidelity against gradient noise.

    For each method and :math:`\tau`, ``n_samples`` independent relaxed samples :math:`\tilde z_n` at
    rate :math:`\lambda` and their pathwise derivatives :math:`\partial\tilde z_n/\partial\lambda`.

    Returns a DataFrame with ``method, temperature``, the sample moment ratios ``mean_ratio`` =
    :math:`\overline{\tilde z}/\lambda` and ``var_ratio`` = :math:`\widehat{\mathrm{Var}}\,\tilde z/\lambda`
    with standard errors (``_se``; for the variance :math:`\approx` ratio :math:`\sqrt{(\kappa - 1)/N}`
    with the sample kurtosis :math:`\kappa`), and ``grad_mean``, ``grad_var``: mean and variance of
    the derivative (the mean estimates :math:`\partial\mathbb E\tilde z/\partial\lambda`, 1 for the
    exact Poisson).
    """
    if not (isinstance(rate, (int, float)) and rate > 0 and math.isfinite(rate)):
        raise ValueError(f"rate must be a finite number > 0, got {rate!r}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 2:
        raise ValueError(f"n_samples must be an integer >= 2, got {n_samples!r}")
    rows = []
    for method in methods:
        check_method(method, PATHWISE_METHODS)
        for tau in temperatures:
            if not (tau > 0 and math.isfinite(tau)):
                raise ValueError(f"temperatures must be finite and > 0, got {tau!r}")
            rates = torch.full((n_samples,), float(rate), dtype=torch.float64, device=device,
                               requires_grad=True)
            z = relaxed_sample(method, rates, float(tau))
            (grad,) = torch.autograd.grad(z.sum(), rates)
            z, grad = z.detach(), grad.detach()
            centred = z - z.mean()
            var = float(centred.pow(2).mean()) * n_samples / (n_samples - 1)
            kurtosis = float(centred.pow(4).mean()) / max(float(centred.pow(2).mean()) ** 2, 1e-300)
            rows.append({
                "method": method, "rate": float(rate), "temperature": float(tau),
                "mean_ratio": float(z.mean()) / rate,
                "mean_ratio_se": math.sqrt(var / n_samples) / rate,
                "var_ratio": var / rate,
                "var_ratio_se": var / rate * math.sqrt(max(kurtosis - 1, 0.0) / n_samples),
                "grad_mean": float(grad.mean()),
                "grad_mean_se": float(grad.std()) / math.sqrt(n_samples),
                "grad_var": float(grad.var()),
                "n_samples": n_samples,
            })
    return pd.DataFrame(rows)


def truncation_tail_mass(rate: float, n_categories: int) -> float:
    r"""Poisson mass that a GSM truncated to ``n_categories`` = :math:`K` values drops,
    :math:`P(z \ge K) = P(K, \lambda)` (the regularised lower incomplete gamma function)."""
    if not (isinstance(rate, (int, float)) and rate > 0 and math.isfinite(rate)):
        raise ValueError(f"rate must be a finite number > 0, got {rate!r}")
    check_n_categories(n_categories)
    # One owner: the same tail the Gumbel-softmax distribution warns about.
    return library_tail_mass(torch.tensor([float(rate)], dtype=torch.float64), n_categories)
