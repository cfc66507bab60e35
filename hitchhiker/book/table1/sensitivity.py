r"""Table 1 that could have come out otherwise: the ratings recomputed under other thresholds, another
temperature range and another axis, and which of them move.

:func:`sensitivity_ratings` recomputes the whole of Table 1
(:func:`~hitchhiker.book.table1.rules.recommendation_table`, the book's one rule) for each *variant* of
:func:`variants`:

* every column's two thresholds :math:`\times 0.5` and :math:`\times 1.5` (one column at a time,
  then all at once); for generalizability these are the seed-spread rule's floor and :math:`z`
  (:class:`~hitchhiker.book.table1.rules.Thresholds`), so :math:`\times 0.5` lets smaller test-ELBO
  gaps count;
* the fidelity evidence over :math:`\tau \le 1` instead of the grid's :math:`\tau \le 0.5` (the
  stored ``fidelity.csv`` plus the warmer temperatures of :data:`WARM_TEMPERATURES`, measured by
  :func:`warm_fidelity` with the same sampler and sample sizes), with and without :math:`W_1`;
* the rule's switches turned back: fidelity from the moments alone (no :math:`W_1`), temperature
  robustness relative to the most robust method (the former rule), gradient variance on the paper's
  absolute scale for one sample;
* the **matched-fidelity axis**: each method's rows restricted to the temperatures at which it keeps
  at least the variance ratio EAT-cubic keeps at the grid's warmest :math:`\tau`
  (:func:`on_matched_axis`), so every method is rated over (about) the same amount of relaxation
  instead of the same nominal :math:`\tau`. On a grid the others' warmest matched temperature keeps
  a little *more* variance than the reference, so this axis leans slightly their way.

:func:`moved` lists the (method, column) cells that differ from the nominal table and
:func:`sensitivity_summary` writes one line per variant.

>>> import pandas as pd
>>> base = pd.DataFrame({"gradient bias": ["good", "good"], "recommendation": ["Default choice", "-"]},
...                     index=["eat-cubic", "gsm"])
>>> other = base.assign(**{"gradient bias": ["good", "fair"]})
>>> moved(base, other)
[('gsm', 'gradient bias', 'good', 'fair')]
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..fidelity.sweep import PAPER_RATES, campbell_ratios, fidelity_grid
from .evidence import TABLE_METHODS
from .rules import (
    COLUMNS,
    GENERALIZABILITY,
    MEASURED_COLUMNS,
    RECOMMENDATION,
    Thresholds,
    recommendation_table,
)

__all__ = ["DISPLAY_NAMES", "MATCHED_REFERENCE", "NOMINAL", "RATED_COLUMNS", "SHORT_COLUMNS", "WARM_FIDELITY",
           "WARM_TEMPERATURES", "matched_temperatures", "moved", "on_matched_axis", "sensitivity_ratings",
           "sensitivity_summary", "variance_ratio_at", "variants", "warm_fidelity", "warm_fidelity_table"]

#: Temperatures above the stored fidelity grid's 0.5 that the "fidelity to tau = 1" variant adds.
WARM_TEMPERATURES = (0.6, 0.7, 0.8, 0.9, 1.0)
#: The results table of the fidelity grid at :data:`WARM_TEMPERATURES`.
WARM_FIDELITY = "fidelity_warm"
#: The name of the nominal variant (the table as the book rates it).
NOMINAL = "as stated"
#: The matched axis's reference: EAT-cubic at the grid's warmest temperature.
MATCHED_REFERENCE = ("eat-cubic", 0.5)
#: Columns whose evidence depends on the temperature range of each table.
RATED_COLUMNS = MEASURED_COLUMNS + (GENERALIZABILITY,)


def warm_fidelity(n_samples: int = 10_000, n_trials: int = 10, rates=PAPER_RATES,
                  temperatures=WARM_TEMPERATURES, seed: int | None = 0, device=None) -> pd.DataFrame:
    """The fidelity grid (:func:`~hitchhiker.book.fidelity.fidelity_grid`, same columns) at the
    temperatures above 0.5; the defaults are the stored ``fidelity.csv``'s sample sizes, so its rows
    and these are comparable (and their :math:`W_1` share one sampling floor)."""
    return fidelity_grid(rates=rates, temperatures=temperatures, n_samples=n_samples, n_trials=n_trials,
                         seed=seed, device=device)


def warm_fidelity_table(directory=None) -> pd.DataFrame:
    """The stored :data:`WARM_FIDELITY` table (``book/results/fidelity_warm.csv``), or, where it is
    missing, :func:`warm_fidelity` measured now at the scale's sample sizes (default: the stored
    ones, 10,000 draws x 10 trials per cell, about 100 CPU-s) and saved (at default or paper scale
    only, :func:`~hitchhiker.book.save_results`). A damaged file is an error, never re-measured."""
    from ..common.results import load_results, save_results
    from ..common.scale import by_scale

    try:
        return load_results(WARM_FIDELITY, directory)
    except FileNotFoundError:
        pass
    table = warm_fidelity(n_samples=by_scale(smoke=2_000, default=10_000, paper=10_000),
                          n_trials=by_scale(smoke=4, default=10, paper=10))
    save_results(table, WARM_FIDELITY, directory)
    return table


def variance_ratio_at(method: str, temperature: float, fidelity: pd.DataFrame | None = None) -> float:
    r"""How much of the Poisson variance ``method`` keeps at ``temperature``: Campbell's closed form for
    EAT (the same at every rate), and for GSM the median over rates of the measured ``var_ratio`` of
    ``fidelity`` at that temperature (``ValueError`` if ``fidelity`` lacks it)."""
    if method != "gsm":
        return float(campbell_ratios(method, temperature)[1])
    if fidelity is None:
        raise ValueError("fidelity is needed for GSM's variance ratio (it has no closed form)")
    at_tau = np.isclose(fidelity["temperature"].astype(float), float(temperature), rtol=0, atol=1e-9)
    rows = fidelity[(fidelity["method"] == "gsm") & at_tau]
    if rows.empty:
        raise ValueError(f"fidelity has no GSM rows at temperature={temperature!r}: GSM's variance ratio "
                         f"there is not measured")
    return float(rows["var_ratio"].median())


def matched_temperatures(temperatures, method: str, fidelity: pd.DataFrame | None = None,
                         reference=MATCHED_REFERENCE) -> list:
    """The ``temperatures`` at which ``method`` keeps at least the variance ratio that the reference
    method keeps at its reference temperature (:func:`variance_ratio_at`)."""
    ref_method, ref_tau = reference
    target = variance_ratio_at(ref_method, ref_tau, fidelity)
    return [t for t in temperatures
            if variance_ratio_at(method, float(t), fidelity) >= target - 1e-12]


def on_matched_axis(results: dict, fidelity: pd.DataFrame | None = None,
                    reference=MATCHED_REFERENCE) -> dict:
    r"""``results`` with each Table 1 method's rows restricted to its matched temperatures
    (:func:`matched_temperatures`; GSM's variance ratios read from ``fidelity``, default
    ``results["fidelity"]``). Rows of other methods (exact, score, ...) and rows without a temperature
    are kept; a table without a ``temperature`` column is kept whole."""
    fidelity = results.get("fidelity") if fidelity is None else fidelity
    out = {}
    for name, table in results.items():
        if table is None or "temperature" not in table.columns:
            out[name] = table
            continue
        keep = pd.Series(True, index=table.index)
        temps = table["temperature"].astype(float)
        for method in TABLE_METHODS:
            rows = table["method"] == method
            grid = sorted(temps[rows].dropna().unique())
            allowed = matched_temperatures(grid, method, fidelity, reference)
            keep &= ~rows | temps.isin(allowed)
        out[name] = table[keep]
    return out


def variants(results: dict, warm: pd.DataFrame | None = None, thresholds: Thresholds | None = None) -> dict:
    """``{name: (results, thresholds)}``: the nominal table first, then every variant of the module
    docstring (the ``tau <= 1`` variant only when ``warm`` rows are given)."""
    base = Thresholds() if thresholds is None else thresholds
    out = {NOMINAL: (results, base)}
    for column in RATED_COLUMNS:
        for factor in (0.5, 1.5):
            out[f"{column} thresholds x{factor:g}"] = (results, base.scaled(factor, [column]))
    for factor in (0.5, 1.5):
        out[f"all thresholds x{factor:g}"] = (results, base.scaled(factor))
    if warm is not None and results.get("fidelity") is not None:
        wider = pd.concat([results["fidelity"], warm], ignore_index=True)
        out["fidelity over tau <= 1"] = ({**results, "fidelity": wider}, base)
    out["fidelity from the moments alone (no W1)"] = (results, _replace(base, fidelity_w1=False))
    if warm is not None and results.get("fidelity") is not None:
        out["fidelity over tau <= 1, moments alone"] = ({**results, "fidelity": wider},
                                                         _replace(base, fidelity_w1=False))
    out["robustness relative to the most robust"] = (
        results, _replace(base, robustness_relative=True, robustness=(1.5, 3.0)))
    out["variance absolute, paper's scale, one sample"] = (
        results, _replace(base, variance_relative=False, variance=(0.1, 1.0)))
    if results.get("fidelity") is not None:
        out["matched fidelity axis"] = (on_matched_axis(results), base)
    return out


def _replace(thresholds: Thresholds, **changes) -> Thresholds:
    from dataclasses import replace

    return replace(thresholds, **changes)


def sensitivity_ratings(results: dict, warm: pd.DataFrame | None = None,
                        thresholds: Thresholds | None = None) -> dict:
    """``{variant: Table 1}``: :func:`~hitchhiker.book.table1.rules.recommendation_table` under every
    variant of :func:`variants` (the first is :data:`NOMINAL`)."""
    return {name: recommendation_table(tables, rule) for name, (tables, rule) in
            variants(results, warm, thresholds).items()}


def moved(nominal: pd.DataFrame, other: pd.DataFrame, columns=None) -> list:
    """``[(method, column, nominal rating, other rating)]`` for every cell of ``columns`` (default:
    every column the two tables share, in :data:`~hitchhiker.book.table1.rules.COLUMNS` order) that
    differs."""
    if columns is None:
        columns = [c for c in COLUMNS if c in nominal.columns and c in other.columns]
    return [(m, c, nominal.loc[m, c], other.loc[m, c]) for c in columns for m in nominal.index
            if nominal.loc[m, c] != other.loc[m, c]]


#: The short column names of :func:`sensitivity_summary`.
SHORT_COLUMNS = {"distributional fidelity": "fidelity", "gradient bias": "bias",
                 "gradient variance": "variance", "temperature robustness": "robustness",
                 GENERALIZABILITY: "generalizability"}
#: Plain display names of the methods.
DISPLAY_NAMES = {"eat-cubic": "EAT-cubic", "eat-sigmoid": "EAT-sigmoid", "gsm": "GSM"}


def sensitivity_summary(ratings: dict, labels=None) -> pd.DataFrame:
    """One row per variant (the nominal table left out) and one column per method: the ratings of that
    method that move (``"fidelity fair → poor"``, several joined by ``"; "``, ``"-"`` for none), and
    ``recommendation``: the labels that move, or ``"unchanged"``. ``labels`` maps method names to the
    column names (default :data:`DISPLAY_NAMES`)."""
    labels = DISPLAY_NAMES if labels is None else labels
    nominal = ratings[NOMINAL]
    rows = {}
    for name, table in ratings.items():
        if name == NOMINAL:
            continue
        row = {}
        for method in nominal.index:
            cells = [(c, a, b) for m, c, a, b in moved(nominal, table, list(RATED_COLUMNS)) if m == method]
            row[labels.get(method, method)] = "; ".join(f"{SHORT_COLUMNS[c]} {a} \u2192 {b}"
                                                        for c, a, b in cells) or "-"
        labels_moved = moved(nominal, table, [RECOMMENDATION])
        row["recommendation"] = "; ".join(f"{labels.get(m, m)}: {a} \u2192 {b}"
                                          for m, _, a, b in labels_moved) or "unchanged"
        rows[name] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "variant"
    return out
