r"""From the evidence to the paper's Table 1: the thresholds, the ratings and the book's rule.

**Rating** (:func:`~hitchhiker.book.common.rating.rate_value`, the book's one good/fair/poor rating): a
column's evidence (:mod:`hitchhiker.book.table1.evidence`, one number per method, smaller is better) is
compared with the column's two thresholds (:class:`Thresholds`): ``"good"`` when at most the first,
``"fair"`` when at most the second, ``"poor"`` above, ``"n/a"`` when the evidence is missing. The
bias and variance thresholds are the library's (:data:`hitchhiker.diagnostics.BIAS_THRESHOLDS`,
:data:`~hitchhiker.diagnostics.VARIANCE_THRESHOLDS`), which rate the same kinds of quantity there:
bias as a *squared* ratio to the true gradient, variance relative to the quietest method. Variance is
the one column rated against the best of the three (the quietest is "good" by construction); every
other column has absolute thresholds.

**Generalizability** is rated by the non-Poisson chapter's seed-spread rule
(:func:`hitchhiker.book.generalization.generalizability_ratings`: a method is poor where another beats
its test ELBO by more than the bound :math:`\max(z\,\mathrm{SE}, \mathrm{floor})`, fair where its own
inference gap exceeds the bound, good otherwise). Its evidence is that rating as a level (0 good, 1
fair, 2 poor), rated with the fixed cut-offs :data:`LEVEL_CUTS` = (0.5, 1.5), so the same
:func:`rate_value` gives back the rule's rating; the column's thresholds are the rule's
``(floor, z)`` (:class:`Thresholds`).

**Recommendation** (:func:`recommend`). Each method scores the mean of its measured ratings
(:func:`mean_scores`: good 2, fair 1, poor 0; ``n/a`` left out). The labels are then handed out in
this order, each to one method:

1. ``"Default choice"``: the highest score (ties: better fidelity rating, then the order of
   :data:`TABLE_METHODS`);
2. ``"Non-Poisson data"``: among the others, the one with the best generalizability rating, if it is
   better than the default choice's (a label earned by measurement: when every method rates the same,
   nobody gets it);
3. ``"Max smoothness"``: among the rest, a relaxation of the highest smoothness of all
   (:data:`SMOOTHNESS`: the sigmoid is :math:`C^\infty` with a nonzero gradient for every arrival,
   the cubic ramp only :math:`C^1`).

A method left without a label gets ``"-"``. What each relaxation can *represent* (an EAT sample is a
relaxed Poisson count, GSM any distribution on :math:`0, \dots, K-1`) is a fact about the samplers,
not a rating.

>>> rate_value(0.05, *Thresholds().bias), rate_value(0.5, *Thresholds().bias), rate_value(float("nan"), 1, 2)
('good', 'fair', 'n/a')
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import pandas as pd

from ...diagnostics import BIAS_THRESHOLDS, VARIANCE_THRESHOLDS
from ..common.rating import MISSING, RATING_LEVELS, rate_value
from ..generalization import GAP_FLOOR, GAP_Z
from .evidence import (
    GRADIENT_SETUP,
    POGLM_REGIME,
    RESULT_NAMES,
    TABLE_METHODS,
    bias_evidence,
    fidelity_evidence,
    generalizability_evidence,
    gradient_rows,
    robustness_evidence,
    variance_evidence,
)

#: The rated columns from the samplers' and models' measurements, in the paper's order; each method's
#: score is the mean of these ratings.
MEASURED_COLUMNS = ("distributional fidelity", "gradient bias", "gradient variance",
                    "temperature robustness")
GENERALIZABILITY = "generalizability"
RECOMMENDATION = "recommendation"
COLUMNS = MEASURED_COLUMNS + (GENERALIZABILITY, RECOMMENDATION)
LABELS = ("Default choice", "Non-Poisson data", "Max smoothness")
#: Differentiability class of the relaxed sample in the rate (``math.inf`` for smooth).
SMOOTHNESS = {"eat-cubic": 1, "eat-sigmoid": math.inf, "gsm": math.inf}
#: The cut-offs that rate the generalizability evidence, a rating level (0 good, 1 fair, 2 poor): they
#: give back the seed-spread rule's rating (:func:`rate_value`).
LEVEL_CUTS = (0.5, 1.5)


@dataclass(frozen=True)
class Thresholds:
    """The two cut-offs (``good`` at or below the first, ``fair`` at or below the second) per column
    (for generalizability: the seed-spread rule's two parameters), and the rule's three switches.

    * fidelity: worst relative moment error, or :math:`W_1` beyond its sampling floor on the same
      scale (``fidelity_w1``; :func:`~hitchhiker.book.table1.evidence.w1_on_moment_scale`); 0.2
      (within 20% everywhere) and 0.5.
    * bias: the paper's own scale for ``BiasEnergy``: 0.1 negligible, 1 dominates. For *squared*
      ratios only (``BiasEnergy``, the library's ``relative_bias``), never for the unsquared
      ``bias_ratio`` :math:`\\lVert b\\rVert/\\lVert g^*\\rVert`.
    * variance: median ``NoiseEnergy`` *relative to the quietest method* (``variance_relative``):
      within 1.5x and 3x, so the quietest is good by construction. A single sample's NoiseEnergy has
      no model-free scale (averaging :math:`N` samples divides it by :math:`N`); with
      ``variance_relative=False`` the median itself is rated (on the paper's scale: ``(0.1, 1.0)``).
    * robustness: relative spread of the task loss across temperatures, *absolute* (a fraction of the
      loss): within 1% and 3%. With ``robustness_relative`` (the former rule) it is divided by the most
      robust method's spread, at least ``negligible_spread``.
    * generalizability: *not* two cut-offs but the seed-spread rule's ``(floor, z)``
      (:func:`hitchhiker.book.generalization.generalizability_ratings`; default ``(GAP_FLOOR, GAP_Z)``
      = (0.05 nats per item, 3 standard errors)): the bound a test-ELBO gap (and an inference gap)
      must exceed to count is :math:`\\max(z\\,\\mathrm{SE}, \\mathrm{floor})`. Its evidence, the rule's
      rating as a level, is rated with the fixed :data:`LEVEL_CUTS`. Validated as ``floor >= 0`` and
      ``z > 0`` (the ``good <= fair`` order of the other pairs has no meaning for a floor in nats and a
      number of standard errors); :meth:`scaled` multiplies both, so a larger factor is more lenient, as
      for every other column (a larger bound: fewer gaps count, fewer poor and fair ratings).
    """

    fidelity: tuple = (0.2, 0.5)
    bias: tuple = BIAS_THRESHOLDS
    variance: tuple = VARIANCE_THRESHOLDS
    robustness: tuple = (0.01, 0.03)
    generalizability: tuple = (GAP_FLOOR, GAP_Z)
    negligible_spread: float = 0.0025
    fidelity_w1: bool = True
    variance_relative: bool = True
    robustness_relative: bool = False

    def __post_init__(self):
        for name in THRESHOLD_NAMES:
            pair = getattr(self, name)
            if name == COLUMN_THRESHOLDS[GENERALIZABILITY]:
                if not (len(pair) == 2 and all(isinstance(v, (int, float)) and math.isfinite(v) for v in pair)
                        and pair[0] >= 0 and pair[1] > 0):
                    raise ValueError(f"thresholds {name}={pair!r} must be the seed-spread rule's (floor, z) "
                                     "with floor >= 0 (nats per item) and z > 0 (standard errors)")
            elif len(pair) != 2 or not 0 <= pair[0] <= pair[1]:
                raise ValueError(f"thresholds {name}={pair!r} must be (good, fair) with 0 <= good <= fair")
        if not (isinstance(self.negligible_spread, (int, float)) and self.negligible_spread > 0):
            raise ValueError(f"negligible_spread must be > 0, got {self.negligible_spread!r}")
        for name in ("fidelity_w1", "variance_relative", "robustness_relative"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")

    def for_column(self, column: str) -> tuple:
        """The two cut-offs that rate ``column``'s evidence: its thresholds, and for generalizability
        :data:`LEVEL_CUTS` (its thresholds, the rule's ``(floor, z)``, act on the evidence itself)."""
        if column not in COLUMN_THRESHOLDS:
            raise ValueError(f"column={column!r} is not one of {MEASURED_COLUMNS + (GENERALIZABILITY,)}")
        return LEVEL_CUTS if column == GENERALIZABILITY else getattr(self, COLUMN_THRESHOLDS[column])

    def scaled(self, factor: float, columns=None) -> Thresholds:
        """These thresholds with both numbers of each of ``columns`` (default: every rated column)
        multiplied by ``factor`` (> 0): the two cut-offs, for generalizability the rule's floor and z."""
        if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0):
            raise ValueError(f"factor must be a finite number > 0, got {factor!r}")
        columns = list(COLUMN_THRESHOLDS) if columns is None else list(columns)
        changes = {}
        for column in columns:
            self.for_column(column)             # refuses an unknown column, naming it
            first, second = getattr(self, COLUMN_THRESHOLDS[column])
            changes[COLUMN_THRESHOLDS[column]] = (first * factor, second * factor)
        return replace(self, **changes)


#: The :class:`Thresholds` field of each rated column.
COLUMN_THRESHOLDS = {"distributional fidelity": "fidelity", "gradient bias": "bias",
                     "gradient variance": "variance", "temperature robustness": "robustness",
                     GENERALIZABILITY: "generalizability"}
THRESHOLD_NAMES = tuple(COLUMN_THRESHOLDS.values())


def _check_thresholds(thresholds) -> Thresholds:
    thresholds = Thresholds() if thresholds is None else thresholds
    if not isinstance(thresholds, Thresholds):
        raise ValueError(f"thresholds must be a Thresholds instance, got {type(thresholds).__name__}")
    return thresholds


def rate_column(evidence: pd.Series, column: str, thresholds: Thresholds | None = None) -> list:
    """The ratings of one ``column`` from its evidence (:func:`rate_value` with its cut-offs)."""
    good, fair = _check_thresholds(thresholds).for_column(column)
    return [rate_value(float(v), good, fair) for v in evidence]


def _empty() -> pd.Series:
    return pd.Series(math.nan, index=list(TABLE_METHODS), dtype=float)


def _fidelity_column(results: dict, thresholds: Thresholds) -> pd.Series:
    fidelity = results.get("fidelity")
    return _empty() if fidelity is None else fidelity_evidence(fidelity, w1=thresholds.fidelity_w1)


def _bias_column(results: dict, thresholds: Thresholds) -> pd.Series:
    gradients = results.get("gradients")
    return _empty() if gradients is None else bias_evidence(gradients)


def _variance_column(results: dict, thresholds: Thresholds) -> pd.Series:
    gradients = results.get("gradients")
    return _empty() if gradients is None else variance_evidence(gradients, thresholds.variance_relative)


def _robustness_column(results: dict, thresholds: Thresholds) -> pd.Series:
    poglm = results.get("poglm")
    if poglm is not None and "regime" in poglm.columns:
        poglm = poglm[poglm["regime"] == POGLM_REGIME]
    return robustness_evidence(results.get("pvae"), poglm, thresholds.negligible_spread,
                               relative=thresholds.robustness_relative)


def _generalizability_column(results: dict, thresholds: Thresholds) -> pd.Series:
    controls = results.get("generalization_controls")
    if controls is None:
        return _empty()
    floor, z = thresholds.generalizability
    return generalizability_evidence(controls, floor=floor, z=z)


#: One function per rated column: ``(results, thresholds) -> evidence per method`` (a Series
#: indexed like :data:`TABLE_METHODS`, NaN where missing). A new column is one more entry here.
EVIDENCE_FUNCTIONS = {
    "distributional fidelity": _fidelity_column,
    "gradient bias": _bias_column,
    "gradient variance": _variance_column,
    "temperature robustness": _robustness_column,
    GENERALIZABILITY: _generalizability_column,
}


def evidence_table(results: dict, thresholds: Thresholds | None = None,
                   gradient_setup: str | None = GRADIENT_SETUP) -> pd.DataFrame:
    """One number per (method, rated column): what :func:`recommendation_table` rates (NaN = missing).

    The gradient columns read the rows of ``gradient_setup``
    (:func:`~hitchhiker.book.table1.evidence.gradient_rows`).
    """
    unknown = set(results) - set(RESULT_NAMES)
    if unknown:
        raise ValueError(f"results has unknown tables {sorted(unknown)}; expected {RESULT_NAMES}")
    thresholds = _check_thresholds(thresholds)
    results = dict(results)
    if results.get("gradients") is not None:
        results["gradients"] = gradient_rows(results["gradients"], gradient_setup)
    table = pd.DataFrame({column: function(results, thresholds)
                          for column, function in EVIDENCE_FUNCTIONS.items()}, index=list(TABLE_METHODS))
    table.index.name = "method"
    return table


def mean_scores(ratings: pd.DataFrame) -> pd.Series:
    """Each method's score: the mean of its :data:`MEASURED_COLUMNS` ratings (good 2, fair 1, poor 0;
    ``n/a`` left out; 0 when none is measured)."""
    def score(row):
        levels = [RATING_LEVELS.index(r) for r in row if r in RATING_LEVELS]
        return sum(levels) / len(levels) if levels else 0.0
    return ratings[list(MEASURED_COLUMNS)].apply(score, axis=1).astype(float)


def recommend(ratings: pd.DataFrame) -> pd.Series:
    """The recommendation column from the ratings (rule in the module docstring)."""
    def level(m, column):
        r = ratings.loc[m, column] if column in ratings else MISSING
        return RATING_LEVELS.index(r) if r in RATING_LEVELS else -1

    score = mean_scores(ratings)
    order = {m: i for i, m in enumerate(TABLE_METHODS)}
    ranked = sorted(ratings.index, key=lambda m: (-score[m], -level(m, "distributional fidelity"),
                                                  order.get(m, len(order))))
    labels = {m: "-" for m in ratings.index}
    default = ranked[0]
    labels[default] = "Default choice"
    rest = [m for m in ranked if m != default]
    better = [m for m in rest if level(m, GENERALIZABILITY) > level(default, GENERALIZABILITY)]
    if better:
        best = max(better, key=lambda m: level(m, GENERALIZABILITY))   # ranked order breaks ties
        labels[best] = "Non-Poisson data"
        rest.remove(best)
    top = max(SMOOTHNESS.get(m, 0) for m in ratings.index)
    smoothest = [m for m in rest if SMOOTHNESS.get(m, 0) == top]
    if smoothest:
        labels[smoothest[0]] = "Max smoothness"
    return pd.Series(labels, name=RECOMMENDATION).reindex(ratings.index)


def recommendation_table(results: dict, thresholds: Thresholds | None = None,
                         gradient_setup: str | None = GRADIENT_SETUP) -> pd.DataFrame:
    """Table 1 from the results tables: ratings per method and column, and the recommendation.

    Args:
        results: ``{"fidelity": df, "gradients": df, "pvae": df, "poglm": df,
            "generalization_controls": df}`` (names of :data:`~.evidence.RESULT_NAMES`);
            a missing or ``None`` table gives ``"n/a"`` in the columns that need it
            (:func:`~hitchhiker.book.table1.evidence.load_available_results`).
        thresholds: the cut-offs (:class:`Thresholds`; defaults as documented there).
        gradient_setup: the ``setup`` of ``gradients.csv`` the gradient columns rate
            (:data:`~hitchhiker.book.table1.evidence.GRADIENT_SETUP`; ignored for a table without a
            ``setup`` column).

    Returns:
        A DataFrame indexed by method (:data:`TABLE_METHODS`) with the columns :data:`COLUMNS`.
    """
    thresholds = _check_thresholds(thresholds)
    evidence = evidence_table(results, thresholds, gradient_setup)
    ratings = pd.DataFrame(index=evidence.index)
    for column in EVIDENCE_FUNCTIONS:
        ratings[column] = rate_column(evidence[column], column, thresholds)
    ratings[RECOMMENDATION] = recommend(ratings)
    return ratings[list(COLUMNS)]
