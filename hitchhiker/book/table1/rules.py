r"""From the book's results tables to the paper's Table 1: one explicit rule, applied to the data.

Rows are the three relaxations, ``"eat-cubic"``, ``"eat-sigmoid"`` and ``"gsm"``. Each column gets a
rating ``"good"``, ``"fair"`` or ``"poor"`` (``"n/a"`` when the evidence is missing) from one number
per method, its *evidence*, compared with two thresholds (:class:`Thresholds`): ``good`` when the
evidence is at most the first, ``fair`` when at most the second, ``poor`` above.

=======================  ===========================  ==================================================
column                   results table                evidence (smaller is better)
=======================  ===========================  ==================================================
distributional fidelity  ``fidelity.csv``             worst moment error over the grid,
                                                      :math:`\max_{\lambda,\tau}\max(|m-1|, |v-1|)` of
                                                      the mean and variance ratios :math:`m, v`
gradient bias            ``gradients.csv``            worst ``BiasEnergy`` over the grid beyond Monte
                                                      Carlo error: ``bias_energy_exact`` where the
                                                      closed form exists (EAT), else ``bias_energy``
                                                      minus its noise floor ``bias_energy_floor``
                                                      (:math:`\lesssim 0.1` negligible,
                                                      :math:`\gtrsim 1` dominates the true gradient)
gradient variance        ``gradients.csv``            median ``noise_energy`` over the grid, divided by
                                                      the lowest median among the three methods
temperature robustness   ``pvae.csv``, ``poglm.csv``  relative spread of the seed-averaged loss over
                                                      :math:`\tau`, :math:`s = (\max_\tau L -
                                                      \min_\tau L) / |\min_\tau L|`, divided by the
                                                      smallest :math:`s` of the three methods (at least
                                                      ``negligible_spread``); the worse of the two tasks
                                                      (:math:`L` = ``val_nelbo``, resp. ``-test_elbo``;
                                                      POGLM rows with ``regime == "paper"`` when the
                                                      table has a ``regime`` column; the seeds run at
                                                      every :math:`\tau`; fixed-:math:`\tau` P-VAE
                                                      runs left out)
=======================  ===========================  ==================================================

**Which gradient setup.** ``gradients.csv`` holds two setups (its ``setup`` column); the gradient
columns are rated on :data:`GRADIENT_SETUP` = ``"natural-patches"``, the paper's setup (external data
and decoder, every latent at one rate), and :func:`gradient_setup_sensitivity` shows the ratings on
every setup side by side. Rows whose Hessian is indefinite for some data item
(``indefinite_fraction > 0``, rates :math:`\lambda \lesssim 1`) are left out of both gradient
columns: their energy ratios are not meaningful. Fixed-cap rows (method names ``fixed-cap-...``) are
not among the rated methods.

**Generalizability (non-Poisson data)** is measured on the latent COM-Poisson and negative-binomial
models of ``generalization.csv`` (:func:`hitchhiker.book.generalization.generalization_evidence`):
a method's evidence is its worst relative test-ELBO gap to the best method over every family and
dispersion, each method at its best temperature; ``good`` within 1%, ``fair`` within 3%
(:data:`~hitchhiker.book.generalization.GENERALIZATION_THRESHOLDS`), ``poor`` beyond. What each
relaxation can *represent* (:data:`REPRESENTS`: an EAT sample is a relaxed Poisson count, GSM any
distribution on :math:`0, \dots, K-1`) is a fact about the samplers, not a rating.

**Recommendation.** Each method scores the mean of its measured ratings (good 2, fair 1, poor 0;
``n/a`` left out). The labels are then handed out in this order, each to one method:

1. ``"Default choice"``: the highest score (ties: better fidelity rating, then the order of
   :data:`TABLE_METHODS`);
2. ``"Non-Poisson data"``: among the others, the one with the best generalizability evidence, if
   its generalizability rating is better than the default choice's (a label earned by measurement:
   when every method rates the same, nobody gets it);
3. ``"Max smoothness"``: among the rest, a relaxation of the highest smoothness of all
   (:data:`SMOOTHNESS`: the sigmoid is :math:`C^\infty` with a nonzero gradient for every arrival,
   the cubic ramp only :math:`C^1`).

A method left without a label gets ``"-"``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from ..._validation import check_n_categories
from ...diagnostics import BIAS_THRESHOLDS, VARIANCE_THRESHOLDS
from ...distributions import truncation_tail_mass as library_tail_mass
from ..common.results import load_results

#: The rows of Table 1, in the paper's order.
TABLE_METHODS = ("eat-cubic", "eat-sigmoid", "gsm")
#: The rated columns, in the paper's order (the last column is the recommendation).
MEASURED_COLUMNS = ("distributional fidelity", "gradient bias", "gradient variance",
                    "temperature robustness")
GENERALIZABILITY = "generalizability"
RECOMMENDATION = "recommendation"
COLUMNS = MEASURED_COLUMNS + (GENERALIZABILITY, RECOMMENDATION)
#: Ratings from worst to best; their index is the score.
RATING_LEVELS = ("poor", "fair", "good")
MISSING = "n/a"
LABELS = ("Default choice", "Non-Poisson data", "Max smoothness")
#: The gradient setup Table 1 rates the gradient columns on (the paper's; see the module docstring).
GRADIENT_SETUP = "natural-patches"
#: The POGLM regime the robustness column reads when poglm.csv has a ``regime`` column.
POGLM_REGIME = "paper"
#: Which results table each measured column reads.
EVIDENCE_SOURCES = {
    "distributional fidelity": ("fidelity",),
    "gradient bias": ("gradients",),
    "gradient variance": ("gradients",),
    "temperature robustness": ("pvae", "poglm"),
    "generalizability": ("generalization",),
}
RESULT_NAMES = ("fidelity", "gradients", "pvae", "poglm", "generalization")
#: What each relaxation can represent: Poisson only (EAT) or any distribution on 0..K-1 (GSM).
REPRESENTS = {"eat-cubic": "Poisson only", "eat-sigmoid": "Poisson only",
              "gsm": "any distribution on 0..K-1"}
#: Differentiability class of the relaxed sample in the rate (``math.inf`` for smooth).
SMOOTHNESS = {"eat-cubic": 1, "eat-sigmoid": math.inf, "gsm": math.inf}


@dataclass(frozen=True)
class Thresholds:
    """The two cut-offs (``good`` at or below the first, ``fair`` at or below the second) per column.

    * fidelity: worst relative moment error; 0.2 (within 20% everywhere) and 0.5.
    * bias: the paper's own scale for ``BiasEnergy``: 0.1 negligible, 1 dominates.
    * variance: median ``NoiseEnergy`` relative to the best method: within 1.5x and 3x.
    * robustness: relative spread of the task loss across temperatures, relative to the most robust
      method: within 1.5x and 3x. ``negligible_spread`` (0.25% of the loss) is the smallest divisor,
      so that differences between spreads that are all negligible are not magnified.
    """

    fidelity: tuple = (0.2, 0.5)
    bias: tuple = BIAS_THRESHOLDS
    variance: tuple = VARIANCE_THRESHOLDS
    robustness: tuple = (1.5, 3.0)
    negligible_spread: float = 0.0025

    def __post_init__(self):
        for name in ("fidelity", "bias", "variance", "robustness"):
            pair = getattr(self, name)
            if len(pair) != 2 or not 0 <= pair[0] <= pair[1]:
                raise ValueError(f"thresholds {name}={pair!r} must be (good, fair) with 0 <= good <= fair")
        if not (isinstance(self.negligible_spread, (int, float)) and self.negligible_spread > 0):
            raise ValueError(f"negligible_spread must be > 0, got {self.negligible_spread!r}")

    def for_column(self, column: str) -> tuple:
        key = {"distributional fidelity": "fidelity", "gradient bias": "bias",
               "gradient variance": "variance", "temperature robustness": "robustness"}
        if column not in key:
            raise ValueError(f"column={column!r} is not one of {MEASURED_COLUMNS}")
        return getattr(self, key[column])


def rate_value(value: float, good: float, fair: float) -> str:
    """``"good"`` if ``value <= good``, ``"fair"`` if ``value <= fair``, else ``"poor"``; NaN gives ``"n/a"``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if value <= good:
        return "good"
    if value <= fair:
        return "fair"
    return "poor"


def _require(frame: pd.DataFrame, columns, name: str) -> pd.DataFrame:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks the columns {missing} (it has {list(frame.columns)})")
    return frame[frame["method"].isin(TABLE_METHODS)]


def _per_method(series: pd.Series) -> pd.Series:
    return series.reindex(list(TABLE_METHODS)).astype(float)


def fidelity_evidence(fidelity: pd.DataFrame) -> pd.Series:
    """Worst moment error :math:`\\max(|m - 1|, |v - 1|)` over all rates and temperatures, per method."""
    frame = _require(fidelity, ("method", "mean_ratio", "var_ratio"), "fidelity")
    error = pd.concat([(frame["mean_ratio"] - 1).abs(), (frame["var_ratio"] - 1).abs()], axis=1).max(axis=1)
    return _per_method(error.groupby(frame["method"]).max())


def gradient_rows(gradients: pd.DataFrame, setup: str | None = GRADIENT_SETUP) -> pd.DataFrame:
    """The rows of ``gradients`` that the gradient columns rate.

    Those of ``setup`` when the table has a ``setup`` column (``ValueError`` naming the setups it
    has if none match; ``setup=None`` keeps every setup), without rows whose Hessian is indefinite
    for some item (``indefinite_fraction > 0``) when that column exists.
    """
    frame = gradients
    if setup is not None and "setup" in frame.columns:
        frame = frame[frame["setup"] == setup]
        if frame.empty:
            raise ValueError(f"gradients has no rows of setup={setup!r} (it has "
                             f"{sorted(gradients['setup'].dropna().unique())})")
    if "indefinite_fraction" in frame.columns:
        frame = frame[~(frame["indefinite_fraction"].astype(float) > 0)]
    return frame


def bias_evidence(gradients: pd.DataFrame) -> pd.Series:
    r"""Worst bias energy beyond Monte Carlo error over all rates and temperatures, per method.

    A measured ``bias_energy`` from :math:`N` gradient samples carries the noise floor
    ``bias_energy_floor`` :math:`= \mathrm{NoiseEnergy}/N` even for an unbiased estimator, so each row
    contributes ``bias_energy_exact`` (the closed-form bias, when the column has a value) or else
    :math:`\max(0, \text{bias\_energy} - \text{bias\_energy\_floor})` (or the raw ``bias_energy`` when
    the table has no floor column).
    """
    frame = _require(gradients, ("method", "bias_energy"), "gradients")
    bias = frame["bias_energy"].astype(float)
    if "bias_energy_floor" in frame.columns:
        bias = (bias - frame["bias_energy_floor"].astype(float)).clip(lower=0.0)
    if "bias_energy_exact" in frame.columns:
        exact = frame["bias_energy_exact"].astype(float)
        bias = exact.where(exact.notna(), bias)
    return _per_method(bias.groupby(frame["method"]).max())


def variance_evidence(gradients: pd.DataFrame) -> pd.Series:
    """Median ``noise_energy`` per method divided by the lowest such median among the methods."""
    frame = _require(gradients, ("method", "noise_energy"), "gradients")
    median = _per_method(frame.groupby("method")["noise_energy"].median())
    best = median.min()
    if not best > 0:
        return median * math.nan
    return median / best


def pvae_rows(pvae: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``pvae`` that temperature robustness rates: the grid's runs (not the exact model
    trained longer, ``grid_part == "long"``) with the official annealed temperature (not the
    ``tau_schedule == "fixed"`` comparison), where the table has those columns."""
    frame = pvae
    if "grid_part" in frame.columns:
        frame = frame[frame["grid_part"] != "long"]
    if "tau_schedule" in frame.columns:
        frame = frame[frame["tau_schedule"] != "fixed"]
    return frame


def loss_spread(frame: pd.DataFrame, loss: pd.Series) -> pd.Series:
    """Relative spread of the seed-averaged ``loss`` across temperatures, per method.

    With a ``seed`` column, each method's average is over the seeds it ran at *every* temperature, so
    that a temperature run with more seeds than another does not shift its mean by what a seed does
    (a cut grid: three seeds at some temperatures, one at the others).
    """
    if "seed" in frame:
        keep = pd.Series(True, index=frame.index)
        for _, rows in frame.groupby("method"):
            seeds_per_tau = rows.groupby("temperature")["seed"].agg(set)
            common = set.intersection(*seeds_per_tau) if len(seeds_per_tau) else set()
            keep[rows.index] = rows["seed"].isin(common)
        frame, loss = frame[keep], loss[keep]
    by_cell = loss.groupby([frame["method"], frame["temperature"]]).mean()
    spread = {}
    for method, per_tau in by_cell.groupby(level=0):
        if len(per_tau) < 2:  # one temperature says nothing about robustness to it
            continue
        low, high = per_tau.min(), per_tau.max()
        spread[method] = (high - low) / abs(low) if low != 0 else math.inf
    return _per_method(pd.Series(spread, dtype=float))


def relative_to_most_robust(spread: pd.Series, negligible_spread: float = 0.0025) -> pd.Series:
    """``spread`` divided by the smallest spread among the methods, or by ``negligible_spread`` if larger."""
    best = spread.min(skipna=True)
    if pd.isna(best):
        return spread
    return spread / max(float(best), negligible_spread)


def robustness_evidence(pvae: pd.DataFrame | None = None, poglm: pd.DataFrame | None = None,
                        negligible_spread: float = 0.0025) -> pd.Series:
    """Per task, each method's relative spread across temperatures (:func:`loss_spread`) divided by
    the most robust method's (:func:`relative_to_most_robust`); the worse of the tasks given."""
    ratios = []
    if pvae is not None:
        frame = pvae_rows(_require(pvae, ("method", "temperature", "val_nelbo"), "pvae"))
        ratios.append(relative_to_most_robust(loss_spread(frame, frame["val_nelbo"]), negligible_spread))
    if poglm is not None:
        frame = _require(poglm, ("method", "temperature", "test_elbo"), "poglm")
        ratios.append(relative_to_most_robust(loss_spread(frame, -frame["test_elbo"]), negligible_spread))
    if not ratios:
        return _per_method(pd.Series(dtype=float))
    return pd.concat(ratios, axis=1).max(axis=1, skipna=True).reindex(list(TABLE_METHODS))


def load_available_results(directory: str | Path | None = None, names=RESULT_NAMES) -> dict:
    """``{name: DataFrame or None}``: every results table Table 1 uses, ``None`` where it is missing."""
    tables = {}
    for name in names:
        try:
            tables[name] = load_results(name, directory)
        except FileNotFoundError:
            tables[name] = None
    return tables


def missing_evidence(results: dict) -> dict:
    """``{column: [missing table names]}`` for the measured columns that lack (some of) their tables."""
    out = {}
    for column, names in EVIDENCE_SOURCES.items():
        absent = [n for n in names if results.get(n) is None]
        if absent:
            out[column] = absent
    return out


def _fidelity_column(results: dict, thresholds: Thresholds) -> pd.Series:
    fidelity = results.get("fidelity")
    return _per_method(pd.Series(dtype=float)) if fidelity is None else fidelity_evidence(fidelity)


def _bias_column(results: dict, thresholds: Thresholds) -> pd.Series:
    gradients = results.get("gradients")
    return _per_method(pd.Series(dtype=float)) if gradients is None else bias_evidence(gradients)


def _variance_column(results: dict, thresholds: Thresholds) -> pd.Series:
    gradients = results.get("gradients")
    return _per_method(pd.Series(dtype=float)) if gradients is None else variance_evidence(gradients)


def _robustness_column(results: dict, thresholds: Thresholds) -> pd.Series:
    poglm = results.get("poglm")
    if poglm is not None and "regime" in poglm.columns:
        poglm = poglm[poglm["regime"] == POGLM_REGIME]
    return robustness_evidence(results.get("pvae"), poglm, thresholds.negligible_spread)


#: One function per measured column: ``(results, thresholds) -> evidence per method`` (a Series
#: indexed like :data:`TABLE_METHODS`, NaN where missing). A new column is one more entry here.
EVIDENCE_FUNCTIONS = {
    "distributional fidelity": _fidelity_column,
    "gradient bias": _bias_column,
    "gradient variance": _variance_column,
    "temperature robustness": _robustness_column,
}


def _generalization(results: dict) -> pd.DataFrame:
    """``evidence`` and ``rating`` per method of :data:`TABLE_METHODS` from ``generalization.csv``
    (NaN and ``"n/a"`` when it is missing)."""
    from ..generalization.model import generalization_evidence

    frame = results.get("generalization")
    if frame is None:
        return pd.DataFrame({"evidence": math.nan, "rating": MISSING}, index=list(TABLE_METHODS))
    out = generalization_evidence(frame)[["evidence", "rating"]].reindex(list(TABLE_METHODS))
    return out.fillna({"rating": MISSING})


def _check_thresholds(thresholds) -> Thresholds:
    thresholds = Thresholds() if thresholds is None else thresholds
    if not isinstance(thresholds, Thresholds):
        raise ValueError(f"thresholds must be a Thresholds instance, got {type(thresholds).__name__}")
    return thresholds


def evidence_table(results: dict, thresholds: Thresholds | None = None,
                   gradient_setup: str | None = GRADIENT_SETUP) -> pd.DataFrame:
    """One number per (method, measured column): what :func:`recommendation_table` rates (NaN = missing).

    The gradient columns read the rows of ``gradient_setup`` (:func:`gradient_rows`).
    """
    unknown = set(results) - set(RESULT_NAMES)
    if unknown:
        raise ValueError(f"results has unknown tables {sorted(unknown)}; expected {RESULT_NAMES}")
    thresholds = _check_thresholds(thresholds)
    results = dict(results)
    if results.get("gradients") is not None:
        results["gradients"] = gradient_rows(results["gradients"], gradient_setup)
    columns = {column: EVIDENCE_FUNCTIONS[column](results, thresholds) for column in MEASURED_COLUMNS}
    columns[GENERALIZABILITY] = _generalization(results)["evidence"]
    table = pd.DataFrame(columns, index=list(TABLE_METHODS))
    table.index.name = "method"
    return table


def recommend(ratings: pd.DataFrame) -> pd.Series:
    """The recommendation column from the ratings (rule in the module docstring)."""
    score = ratings[list(MEASURED_COLUMNS)].apply(
        lambda row: _mean_score([RATING_LEVELS.index(r) for r in row if r in RATING_LEVELS]), axis=1)
    fidelity = ratings["distributional fidelity"].map(
        lambda r: RATING_LEVELS.index(r) if r in RATING_LEVELS else -1)
    order = {m: i for i, m in enumerate(TABLE_METHODS)}
    ranked = sorted(ratings.index, key=lambda m: (-score[m], -fidelity[m], order.get(m, len(order))))
    labels = {m: "-" for m in ratings.index}
    default = ranked[0]
    labels[default] = "Default choice"
    rest = [m for m in ranked if m != default]
    def general(m):
        r = ratings.loc[m, GENERALIZABILITY] if GENERALIZABILITY in ratings else MISSING
        return RATING_LEVELS.index(r) if r in RATING_LEVELS else -1
    better = [m for m in rest if general(m) > general(default)]
    if better:
        best = max(better, key=general)               # ranked order breaks ties
        labels[best] = "Non-Poisson data"
        rest.remove(best)
    top = max(SMOOTHNESS.get(m, 0) for m in ratings.index)
    smoothest = [m for m in rest if SMOOTHNESS.get(m, 0) == top]
    if smoothest:
        labels[smoothest[0]] = "Max smoothness"
    return pd.Series(labels, name=RECOMMENDATION).reindex(ratings.index)


def rate_column(evidence: pd.Series, column: str, thresholds: Thresholds | None = None) -> list:
    """The ratings of one measured ``column`` from its evidence (:func:`rate_value` with its cut-offs)."""
    good, fair = _check_thresholds(thresholds).for_column(column)
    return [rate_value(float(v), good, fair) for v in evidence]


#: The gradient columns, whose evidence depends on the setup.
GRADIENT_COLUMNS = ("gradient bias", "gradient variance")
#: Label of the natural-patch setup re-rated with the official fixed-cap sampler's EAT rows.
FIXED_CAP_VARIANT = "natural-patches, fixed cap"


def gradient_setup_sensitivity(gradients: pd.DataFrame, thresholds: Thresholds | None = None,
                               with_fixed_cap: bool = True) -> pd.DataFrame:
    r"""How Table 1's gradient columns depend on the setup they are measured on.

    One row per (setup, method): the evidence and the rating of ``gradient bias`` and ``gradient
    variance`` on each setup of ``gradients`` (its ``setup`` column). With ``with_fixed_cap`` and
    fixed-cap rows present, one more setup, :data:`FIXED_CAP_VARIANT`: the natural-patch rows with
    each EAT method's rows replaced by those of its fixed-cap sampler (``fixed-cap-eat-...``, rated
    on the measured bias beyond the noise floor, as it has no closed form).
    """
    thresholds = _check_thresholds(thresholds)
    if "setup" not in gradients.columns:
        raise ValueError("gradients lacks the column 'setup' (one row set per setup is needed)")
    variants = {setup: gradient_rows(gradients, setup) for setup in gradients["setup"].dropna().unique()}
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


def _mean_score(scores: list) -> float:
    return sum(scores) / len(scores) if scores else 0.0


def recommendation_table(results: dict, thresholds: Thresholds | None = None,
                         gradient_setup: str | None = GRADIENT_SETUP) -> pd.DataFrame:
    """Table 1 from the results tables: ratings per method and column, and the recommendation.

    Args:
        results: ``{"fidelity": df, "gradients": df, "pvae": df, "poglm": df}``; a missing or ``None``
            table gives ``"n/a"`` in the columns that need it (:func:`load_available_results`).
        thresholds: the cut-offs (:class:`Thresholds`; defaults as documented there).
        gradient_setup: the ``setup`` of ``gradients.csv`` the gradient columns rate
            (:data:`GRADIENT_SETUP`; ignored for a table without a ``setup`` column).

    Returns:
        A DataFrame indexed by method (:data:`TABLE_METHODS`) with the columns :data:`COLUMNS`.
    """
    thresholds = _check_thresholds(thresholds)
    evidence = evidence_table(results, thresholds, gradient_setup)
    ratings = pd.DataFrame(index=evidence.index)
    for column in MEASURED_COLUMNS:
        ratings[column] = rate_column(evidence[column], column, thresholds)
    ratings[GENERALIZABILITY] = _generalization(results)["rating"].reindex(ratings.index)
    ratings[RECOMMENDATION] = recommend(ratings)
    return ratings


# ---------------------------------------------------------------------------------------------------
# The decision guide: temperature trade-off and GSM truncation, measured directly.
# ---------------------------------------------------------------------------------------------------

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
    import torch

    from ...estimators import PATHWISE_METHODS, check_method, relaxed_sample

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
