r"""Table 1's evidence: one number per method and measured column, read from the book's results tables.

Rows are the three relaxations of :data:`TABLE_METHODS`. Each column's *evidence* is one number per
method, smaller is better; :mod:`hitchhiker.book.table1.rules` rates it.

=======================  ===========================  ==================================================
column                   results table                evidence (smaller is better)
=======================  ===========================  ==================================================
distributional fidelity  ``fidelity.csv``             worst error over the grid: the moment error
                                                      :math:`\max(|m-1|, |v-1|)` of the mean and
                                                      variance ratios :math:`m, v`, or :math:`W_1` beyond
                                                      its sampling floor on the same scale
                                                      (:func:`w1_on_moment_scale`), whichever is larger
gradient bias            ``gradients.csv``            worst ``BiasEnergy`` over the grid beyond Monte
                                                      Carlo error: ``bias_energy_exact`` where the
                                                      closed form exists (EAT), else ``bias_energy``
                                                      minus its noise floor ``bias_energy_floor``
                                                      (a *squared* ratio
                                                      :math:`b^\top H b / g^{*\top} H g^*`;
                                                      :math:`\lesssim 0.1` negligible,
                                                      :math:`\gtrsim 1` dominates the true gradient)
gradient variance        ``gradients.csv``            median ``noise_energy`` over the grid, divided by
                                                      the lowest median among the three methods
                                                      (*relative*: the quietest is 1 by construction)
temperature robustness   ``pvae.csv``, ``poglm.csv``  relative spread of the seed-averaged loss over
                                                      :math:`\tau`, :math:`s = (\max_\tau L -
                                                      \min_\tau L) / |\min_\tau L|` (absolute: a
                                                      fraction of the task loss); the worse of the two tasks
                                                      (:math:`L` = ``val_nelbo``, resp. ``-test_elbo``;
                                                      POGLM rows with ``regime == "paper"`` when the
                                                      table has a ``regime`` column; the seeds run at
                                                      every :math:`\tau`; fixed-:math:`\tau` P-VAE
                                                      runs left out)
generalizability         ``generalization_controls``  the seed-spread rule's rating on the main
                         (``.csv``)                   experiment's rows (``experiment == "main"``: the
                                                      two most non-Poisson data sets, one setting fixed
                                                      per method, three training seeds) as a level, 0
                                                      good, 1 fair, 2 poor
                                                      (:func:`generalizability_evidence`,
                                                      :func:`hitchhiker.book.generalization.generalizability_ratings`)
=======================  ===========================  ==================================================

The gradient table's ``bias_ratio`` (the *unsquared* :math:`\lVert b\rVert/\lVert g^*\rVert`, stored
as ``rel_bias`` in older files) is not evidence for any column: the bias thresholds are for squared
ratios.

**Which gradient setup.** ``gradients.csv`` holds several setups (its ``setup`` and ``decoder``
columns); the gradient columns are rated on :data:`GRADIENT_SETUP` = ``"natural-patches"`` with the
decoder :data:`GRADIENT_DECODERS` names for it (the trained, localised exact P-VAE decoder,
``"pvae-exact-long-seed0"``): the paper's setup (external data and decoder, every latent at one rate).
:func:`hitchhiker.book.table1.guide.gradient_setup_sensitivity` shows the ratings on every setup and
decoder side by side. The energies of the current table are weighted by :math:`|H|` (column
``weighting``), never negative, so every rate counts; in a legacy table weighted by the indefinite
:math:`H`, rows with a non-positive signal energy for some item (its ``indefinite_fraction > 0``) are
left out. Fixed-cap rows (``fixed-cap-...``) and the rate-adaptive remedy (``adaptive-eat-cubic``) are
not among the rated methods.

>>> import pandas as pd
>>> fidelity = pd.DataFrame({"method": ["eat-cubic", "eat-cubic", "gsm"], "mean_ratio": [1.0, 1.0, 1.1],
...                          "var_ratio": [0.87, 0.9, 0.6]})
>>> fidelity_evidence(fidelity).round(2).to_dict()          # no W1 columns: the moments alone
{'eat-cubic': 0.13, 'eat-sigmoid': nan, 'gsm': 0.4}
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from ..common.results import load_results
from ..generalization import GAP_FLOOR, GAP_Z, generalizability_ratings
from ..generalization.evidence import GENERALIZABILITY_RATINGS
from ..gradients.decoders import MAIN_DECODER

#: The rows of Table 1, in the paper's order.
TABLE_METHODS = ("eat-cubic", "eat-sigmoid", "gsm")
#: The gradient setup Table 1 rates the gradient columns on (the paper's; see the module docstring).
GRADIENT_SETUP = "natural-patches"
#: The decoder each setup is rated with when ``gradients.csv`` has a ``decoder`` column.
GRADIENT_DECODERS = {GRADIENT_SETUP: MAIN_DECODER}
#: The POGLM regime the robustness column reads when poglm.csv has a ``regime`` column.
POGLM_REGIME = "paper"
#: Which results tables each column reads.
EVIDENCE_SOURCES = {
    "distributional fidelity": ("fidelity",),
    "gradient bias": ("gradients",),
    "gradient variance": ("gradients",),
    "temperature robustness": ("pvae", "poglm"),
    "generalizability": ("generalization_controls",),
}
#: The results tables Table 1 reads (:func:`load_available_results`). ``generalization`` (the
#: non-Poisson grid over temperatures) is read by no column since the seed-spread rule replaced the
#: relative-gap rule; it stays accepted so that callers passing every table keep working.
RESULT_NAMES = ("fidelity", "gradients", "pvae", "poglm", "generalization", "generalization_controls")
#: The ``experiment`` of ``generalization_controls.csv`` that the generalizability column rates (the
#: other values are the rule's positive and negative controls).
GENERALIZATION_EXPERIMENT = "main"


def _require(frame: pd.DataFrame, columns, name: str) -> pd.DataFrame:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks the columns {missing} (it has {list(frame.columns)})")
    return frame[frame["method"].isin(TABLE_METHODS)]


def _per_method(series: pd.Series) -> pd.Series:
    return series.reindex(list(TABLE_METHODS)).astype(float)


def w1_on_moment_scale(w1_normalised) -> np.ndarray:
    r""":math:`W_1/\sqrt\lambda` as the moment error it would be for a Gaussian: :math:`1 - (1 -
    \sqrt{\pi/2}\,w)^2`, capped at 1.

    :math:`W_1` between :math:`N(\mu, \sigma^2)` and :math:`N(\mu, \sigma^2 v)` is
    :math:`\sigma(1 - \sqrt v)\sqrt{2/\pi}`, so a :math:`W_1/\sigma` of :math:`w` is what a variance
    shortfall :math:`|v - 1| = 1 - (1 - \sqrt{\pi/2}\,w)^2` gives. On this scale the fidelity
    thresholds 0.2 and 0.5 are :math:`W_1/\sqrt\lambda` = 0.084 and 0.234.

    >>> [round(float(x), 3) for x in w1_on_moment_scale([0.0, 0.0843, 0.2337, 2.0])]
    [0.0, 0.2, 0.5, 1.0]
    """
    w = np.clip(np.asarray(w1_normalised, dtype=float), 0.0, None)
    return np.minimum(1.0, 1.0 - np.clip(1.0 - math.sqrt(math.pi / 2) * w, 0.0, None) ** 2)


@lru_cache(maxsize=512)
def _normalised_floor(rate: float, n_samples: int) -> float:
    from ..fidelity.floor import w1_floor

    return w1_floor(rate, n_samples) / math.sqrt(rate)


def w1_beyond_floor(fidelity: pd.DataFrame) -> pd.Series:
    r"""Each row's :math:`W_1/\sqrt\lambda` beyond its sampling floor: ``w1_normalised`` minus the
    expected :math:`W_1/\sqrt\lambda` of two exact Poisson samples of the row's ``n_samples``
    (:func:`hitchhiker.book.fidelity.w1_floor`), at least 0. NaN where the table lacks the columns."""
    if not {"w1_normalised", "n_samples", "rate"} <= set(fidelity.columns):
        return pd.Series(math.nan, index=fidelity.index)
    floor = [_normalised_floor(float(r), int(n)) for r, n in zip(fidelity["rate"], fidelity["n_samples"])]
    return (fidelity["w1_normalised"].astype(float) - np.asarray(floor)).clip(lower=0.0)


def fidelity_parts(fidelity: pd.DataFrame) -> pd.DataFrame:
    r"""Per method, the two parts of the fidelity evidence: the worst moment error and the worst
    :math:`W_1/\sqrt\lambda` beyond its sampling floor (raw and on the moment scale)."""
    frame = _require(fidelity, ("method", "mean_ratio", "var_ratio"), "fidelity")
    moments = pd.concat([(frame["mean_ratio"] - 1).abs(), (frame["var_ratio"] - 1).abs()], axis=1).max(axis=1)
    w1 = w1_beyond_floor(frame)
    return pd.DataFrame({
        "moment error": _per_method(moments.groupby(frame["method"]).max()),
        "W1/sqrt(rate) beyond floor": _per_method(w1.groupby(frame["method"]).max()),
        "W1 on the moment scale": _per_method(pd.Series(w1_on_moment_scale(w1), index=w1.index)
                                              .groupby(frame["method"]).max()),
    })


def fidelity_evidence(fidelity: pd.DataFrame, w1: bool = True) -> pd.Series:
    """Worst fidelity error over all rates and temperatures, per method: the moment error
    :math:`\\max(|m - 1|, |v - 1|)` or, with ``w1`` and the columns present, :math:`W_1` beyond its
    sampling floor on the moment scale (:func:`w1_beyond_floor`, :func:`w1_on_moment_scale`),
    whichever is larger."""
    parts = fidelity_parts(fidelity)
    if not w1:
        return parts["moment error"]
    worst = parts[["moment error", "W1 on the moment scale"]].max(axis=1, skipna=True)
    return worst.reindex(list(TABLE_METHODS))


def gradient_rows(gradients: pd.DataFrame, setup: str | None = GRADIENT_SETUP,
                  decoder: str | None = None) -> pd.DataFrame:
    """The rows of ``gradients`` that the gradient columns rate.

    Those of ``setup`` when the table has a ``setup`` column (``ValueError`` naming the setups it
    has if none match; ``setup=None`` keeps every setup) and, when it has a ``decoder`` column, of
    ``decoder`` (default: :data:`GRADIENT_DECODERS` ``[setup]``, none for other setups;
    ``ValueError`` naming the decoders it has if none match). In a legacy table with the column
    ``indefinite_fraction`` (energies weighted by the indefinite :math:`H`), rows where it is
    positive are left out.
    """
    frame = gradients
    if setup is not None and "setup" in frame.columns:
        frame = frame[frame["setup"] == setup]
        if frame.empty:
            raise ValueError(f"gradients has no rows of setup={setup!r} (it has "
                             f"{sorted(gradients['setup'].dropna().unique())})")
    decoder = GRADIENT_DECODERS.get(setup) if decoder is None else decoder
    if decoder is not None and "decoder" in frame.columns:
        chosen = frame[frame["decoder"] == decoder]
        if chosen.empty:
            raise ValueError(f"gradients has no rows of decoder={decoder!r} for setup={setup!r} (it has "
                             f"{sorted(frame['decoder'].dropna().unique())})")
        frame = chosen
    if "indefinite_fraction" in frame.columns:
        frame = frame[~(frame["indefinite_fraction"].astype(float) > 0)]
    return frame


def bias_evidence(gradients: pd.DataFrame) -> pd.Series:
    r"""Worst bias energy beyond Monte Carlo error over all rates and temperatures, per method.

    A measured ``bias_energy`` from :math:`N` gradient samples carries the noise floor
    ``bias_energy_floor`` :math:`= \mathrm{NoiseEnergy}/N` even for an unbiased estimator, so each row
    contributes ``bias_energy_exact`` (the closed-form bias, when the column has a value) or else
    :math:`\max(0, \text{bias\_energy} - \text{bias\_energy\_floor})` (or the raw ``bias_energy`` when
    the table has no floor column). All of these are squared ratios; ``bias_ratio`` is never read.
    """
    frame = _require(gradients, ("method", "bias_energy"), "gradients")
    bias = frame["bias_energy"].astype(float)
    if "bias_energy_floor" in frame.columns:
        bias = (bias - frame["bias_energy_floor"].astype(float)).clip(lower=0.0)
    if "bias_energy_exact" in frame.columns:
        exact = frame["bias_energy_exact"].astype(float)
        bias = exact.where(exact.notna(), bias)
    return _per_method(bias.groupby(frame["method"]).max())


def variance_evidence(gradients: pd.DataFrame, relative: bool = True) -> pd.Series:
    """Median ``noise_energy`` per method divided by the lowest such median among the methods (with
    ``relative=False``: the median itself, a single sample's noise energy on the paper's scale)."""
    frame = _require(gradients, ("method", "noise_energy"), "gradients")
    median = _per_method(frame.groupby("method")["noise_energy"].median())
    if not relative:
        return median
    best = median.min()
    if not best > 0:
        return median * math.nan
    return median / best


def pvae_rows(pvae: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``pvae`` that temperature robustness rates: the grid's runs (not the exact model
    trained longer, ``grid_part == "long"``, nor the runs beside the grid, ``"added"``: EAT-cubic at
    :math:`\\tau` = 1 and 2, GSM under a wider cap) with the official annealed temperature (not the
    ``tau_schedule == "fixed"`` comparison), where the table has those columns."""
    frame = pvae
    if "grid_part" in frame.columns:
        frame = frame[~frame["grid_part"].isin(("long", "added"))]
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
                        negligible_spread: float = 0.0025, relative: bool = False) -> pd.Series:
    """Per task, each method's relative spread of the loss across temperatures (:func:`loss_spread`, a
    fraction of the loss); the worse of the tasks given. With ``relative``, each spread is first
    divided by the most robust method's (:func:`relative_to_most_robust`; the book's former rule)."""
    def scaled(spread):
        return relative_to_most_robust(spread, negligible_spread) if relative else spread

    ratios = []
    if pvae is not None:
        frame = pvae_rows(_require(pvae, ("method", "temperature", "val_nelbo"), "pvae"))
        ratios.append(scaled(loss_spread(frame, frame["val_nelbo"])))
    if poglm is not None:
        frame = _require(poglm, ("method", "temperature", "test_elbo"), "poglm")
        ratios.append(scaled(loss_spread(frame, -frame["test_elbo"])))
    if not ratios:
        return _per_method(pd.Series(dtype=float))
    return pd.concat(ratios, axis=1).max(axis=1, skipna=True).reindex(list(TABLE_METHODS))


def generalizability_rows(controls: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``generalization_controls.csv`` that the generalizability column rates: those of
    :data:`GENERALIZATION_EXPERIMENT` (``ValueError`` naming the experiments the table has if there
    are none, or if it has no ``experiment`` column)."""
    if "experiment" not in controls.columns:
        raise ValueError(f"generalization_controls lacks the column 'experiment' (it has "
                         f"{list(controls.columns)})")
    rows = controls[controls["experiment"] == GENERALIZATION_EXPERIMENT]
    if rows.empty:
        raise ValueError(f"generalization_controls has no rows of experiment={GENERALIZATION_EXPERIMENT!r} "
                         f"(it has {sorted(controls['experiment'].dropna().unique())})")
    return rows


def generalizability_details(controls: pd.DataFrame, floor: float = GAP_FLOOR,
                             z: float = GAP_Z) -> pd.DataFrame:
    """Per Table 1 method, the seed-spread rule's rating on the main experiment and the numbers of the
    data set where it was worst (:func:`hitchhiker.book.generalization.generalizability_ratings` with
    the bound :math:`\\max(z \\cdot` ``gap_se``, ``floor``); nats per item). The gaps are to the best
    of *every* method run (the score function included). A method without rows is left out."""
    ratings = generalizability_ratings(generalizability_rows(controls), z=z, floor=floor)
    return ratings.loc[[m for m in TABLE_METHODS if m in ratings.index]]


def generalizability_evidence(controls: pd.DataFrame, floor: float = GAP_FLOOR,
                              z: float = GAP_Z) -> pd.Series:
    """The generalizability column's evidence: the seed-spread rule's rating
    (:func:`generalizability_details`) as a level, 0 good, 1 fair, 2 poor (smaller is better, as
    every column's evidence), NaN for a method without rows."""
    rating = generalizability_details(controls, floor, z)["rating"]
    return _per_method(rating.map(GENERALIZABILITY_RATINGS.index))


def load_available_results(directory: str | Path | None = None, names=RESULT_NAMES) -> dict:
    """``{name: DataFrame or None}``: every results table Table 1 uses, ``None`` where it is missing.

    A damaged file is an error (:func:`hitchhiker.book.load_results`), never read as missing.
    """
    tables = {}
    for name in names:
        try:
            tables[name] = load_results(name, directory)
        except FileNotFoundError:
            tables[name] = None
    return tables


def missing_evidence(results: dict) -> dict:
    """``{column: [missing table names]}`` for the columns that lack (some of) their tables."""
    out = {}
    for column, names in EVIDENCE_SOURCES.items():
        absent = [n for n in names if results.get(n) is None]
        if absent:
            out[column] = absent
    return out
