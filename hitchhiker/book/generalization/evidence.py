r"""Table 1's generalizability column from the non-Poisson results: how far each estimator's best test
ELBO falls behind the best method's, in the worst family and dispersion.

>>> import pandas as pd
>>> frame = pd.DataFrame({"family": "com-poisson", "regime": "over", "dispersion": 0.5, "seed": 0,
...                       "method": ["eat-cubic", "score"], "temperature": [0.1, None],
...                       "n_samples": [1, 4], "test_elbo": [-100.0, -102.0]})
>>> generalization_evidence(frame)["rating"].to_dict()
{'eat-cubic': 'good', 'score': 'fair'}
"""
from __future__ import annotations

import pandas as pd

from .model import GENERALIZATION_METHODS

#: Cut-offs on the generalizability evidence (the worst relative ELBO gap to the best method):
#: ``good`` within 1% of the best in every family and dispersion, ``fair`` within 3%, else ``poor``.
GENERALIZATION_THRESHOLDS = (0.01, 0.03)


def generalization_gaps(frame: pd.DataFrame) -> pd.DataFrame:
    r"""Each method's ELBO gap to the best method, per family and dispersion.

    For each (family, regime) and method, the seed-averaged test ELBO of the method's best setting
    (over temperatures, resp. sample counts): :math:`E_m`. With :math:`E^* = \max_m E_m`, the gap is
    :math:`E^* - E_m` (nats per item) and the relative gap :math:`(E^* - E_m)/|E^*|`. Columns
    ``family, regime, dispersion, method, best_temperature, best_n_samples, test_elbo, gap,
    relative_gap``.
    """
    needed = {"family", "regime", "dispersion", "method", "temperature", "n_samples", "seed", "test_elbo"}
    missing = needed - set(frame.columns)
    if missing:
        raise ValueError(f"frame lacks the columns {sorted(missing)}")
    cells = (frame.groupby(["family", "regime", "dispersion", "method", "temperature", "n_samples"],
                           dropna=False)["test_elbo"].mean().reset_index())
    best = cells.loc[cells.groupby(["family", "regime", "method"])["test_elbo"].idxmax()]
    best = best.rename(columns={"temperature": "best_temperature", "n_samples": "best_n_samples"})
    top = best.groupby(["family", "regime"])["test_elbo"].transform("max")
    best = best.assign(gap=top - best["test_elbo"], relative_gap=(top - best["test_elbo"]) / top.abs())
    return best.reset_index(drop=True)


def generalization_evidence(frame: pd.DataFrame, thresholds=GENERALIZATION_THRESHOLDS) -> pd.DataFrame:
    """Table 1's generalizability column from the results: per method, the worst relative ELBO gap to
    the best method over every family and dispersion (:func:`generalization_gaps`), where it was
    worst, and the rating (``good`` at most ``thresholds[0]``, ``fair`` at most ``thresholds[1]``,
    ``poor`` above). Indexed by method, columns ``evidence, worst_case, rating``."""
    good, fair = thresholds
    if not 0 <= good <= fair:
        raise ValueError(f"thresholds={thresholds!r} must be (good, fair) with 0 <= good <= fair")
    gaps = generalization_gaps(frame)
    worst = gaps.loc[gaps.groupby("method")["relative_gap"].idxmax()].set_index("method")
    rating = ["good" if v <= good else "fair" if v <= fair else "poor" for v in worst["relative_gap"]]
    out = pd.DataFrame({"evidence": worst["relative_gap"],
                        "worst_case": worst["family"] + " " + worst["regime"], "rating": rating},
                       index=worst.index)
    order = [m for m in GENERALIZATION_METHODS if m in out.index]
    return out.loc[order]
