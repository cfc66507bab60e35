r"""The regime map: which estimator wins at which rate and temperature, and by how much.

For each criterion of :data:`CRITERIA` and each cell :math:`(\lambda, \tau)` of a results table,
:func:`regime_map` names the best method (smallest value), the runner-up and the margin
(runner-up / best). A cell is a *tie* when the two are not resolved: their difference is within
``n_se`` combined standard errors, or the runner-up is itself below the criterion's negligible level.

=====================  ================  ====================================================  ==========
criterion              table             value (smaller is better)                             methods
=====================  ================  ====================================================  ==========
``gradient noise``     ``gradients``     ``noise_energy`` (weighted by :math:`|H|`)            + score
``gradient bias``      ``gradients``     the first-order bias :math:`|g^{*\top}b| /
                                         \lVert g^*\rVert^2`: ``cross_term_exact`` (EAT) or
                                         the measured ``cross_term`` (GSM, with its standard
                                         error); negligible below :data:`NEGLIGIBLE_BIAS`
``fidelity W1``        ``fidelity``      ``w1_normalised`` :math:`= W_1/\sqrt\lambda`
``fidelity moments``   ``fidelity``      :math:`\max(|m - 1|, |v - 1|)` of the moment ratios
=====================  ================  ====================================================  ==========

The gradient criteria read the main setup (natural patches, the trained decoder:
:func:`~hitchhiker.book.table1.evidence.gradient_rows`). All comparisons are at equal *nominal*
:math:`\tau`, which is not the same quantity across methods.

**The boundary (Campbell).** Only arrivals inside EAT-cubic's window :math:`[1-\tau, 1+\tau]` carry
gradient; it holds :math:`2\lambda\tau` of them on average, and each carries a slope of order
:math:`1/\tau`. So the cubic's NoiseEnergy has a *starvation* part that grows like
:math:`1/(2\lambda\tau)` once the window holds well under one arrival:
:func:`starvation_constant` measures :math:`c` in NoiseEnergy :math:`\approx c/(2\lambda\tau)`.
The reader's rule: compute :math:`2\lambda\tau` for your rates; where it is below about one, the cubic
is starved (use a warmer, per-element temperature :math:`\tau_k = \min(1, \max(\tau, 1/2\lambda_k))`,
:func:`~hitchhiker.book.gradients.remedy.rate_adaptive_temperature`).

>>> import pandas as pd
>>> frame = pd.DataFrame({"method": ["a", "b", "a", "b"], "rate": [1.0, 1.0, 2.0, 2.0],
...                       "temperature": [0.1] * 4, "value": [1.0, 3.0, 1.0, 1.05]})
>>> regime_map(frame, "value")[["rate", "winner", "margin"]].round(2).to_dict("records")
[{'rate': 1.0, 'winner': 'a', 'margin': 3.0}, {'rate': 2.0, 'winner': 'a', 'margin': 1.05}]
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .evidence import TABLE_METHODS, gradient_rows

__all__ = ["CRITERIA", "NEGLIGIBLE_BIAS", "TIE", "regime_map", "regime_maps", "criterion_values",
           "method_vs_best", "starvation_constant", "window_arrivals_column", "plot_regime_maps"]

#: The criteria of the map, in the order the figure shows them.
CRITERIA = ("gradient noise", "gradient bias", "fidelity W1", "fidelity moments")
#: First-order bias (the step's first-order progress changed by this fraction) below which a bias
#: counts as negligible for the map: 1%. The map uses the first-order term because the second-order
#: BiasEnergy (a square) hides a bias along :math:`g^*` that lengthens or shortens every step.
NEGLIGIBLE_BIAS = 0.01
#: The ``winner`` of an unresolved cell.
TIE = "tie"
#: The methods compared per criterion.
CRITERION_METHODS = {"gradient noise": TABLE_METHODS + ("score",), "gradient bias": TABLE_METHODS,
                     "fidelity W1": TABLE_METHODS, "fidelity moments": TABLE_METHODS}


def regime_map(frame: pd.DataFrame, value: str, methods=None, se: str | None = None,
               negligible: float = 0.0, n_se: float = 2.0) -> pd.DataFrame:
    r"""The best method per (rate, temperature) cell of ``frame`` by its column ``value`` (smaller wins).

    Args:
        frame: one row per (method, rate, temperature) (``ValueError`` on duplicates).
        value: the column compared; rows with a missing value are left out.
        methods: the methods compared (default: all in ``frame``); at least two per cell are needed,
            cells with fewer are left out.
        se: a column with each value's standard error (``None``: exact values).
        negligible: a runner-up value below this makes the cell a tie (both negligible).
        n_se: the difference must exceed ``n_se`` combined standard errors to be resolved.

    Returns one row per cell: ``rate, temperature, best, best_value, runner_up, runner_up_value,
    margin`` (runner-up / best; ``inf`` for a best of 0), ``resolved`` and ``winner`` (``best`` when
    resolved, else :data:`TIE`).
    """
    needed = ["method", "rate", "temperature", value] + ([se] if se else [])
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks the columns {missing} (it has {list(frame.columns)})")
    if not (math.isfinite(negligible) and negligible >= 0 and math.isfinite(n_se) and n_se >= 0):
        raise ValueError(f"negligible and n_se must be finite and >= 0, got {negligible!r}, {n_se!r}")
    rows = frame[needed].copy()
    if methods is not None:
        rows = rows[rows["method"].isin(list(methods))]
    rows = rows[rows[value].notna()]
    duplicated = rows.duplicated(["method", "rate", "temperature"])
    if duplicated.any():
        first = rows[duplicated].iloc[0]
        raise ValueError(f"several rows for method={first['method']!r}, rate={first['rate']!r}, "
                         f"temperature={first['temperature']!r}: select one setup first")
    out = []
    for (rate, tau), cell in rows.groupby(["rate", "temperature"], sort=True):
        if len(cell) < 2:
            continue
        cell = cell.sort_values(value, kind="stable")
        best, runner = cell.iloc[0], cell.iloc[1]
        b, r = float(best[value]), float(runner[value])
        spread = math.hypot(float(best[se]), float(runner[se])) if se else 0.0
        resolved = (r - b) > n_se * spread and r >= negligible and r > b
        out.append({"rate": float(rate), "temperature": float(tau), "best": best["method"], "best_value": b,
                    "runner_up": runner["method"], "runner_up_value": r,
                    "margin": r / b if b > 0 else math.inf, "resolved": bool(resolved),
                    "winner": best["method"] if resolved else TIE})
    return pd.DataFrame(out, columns=["rate", "temperature", "best", "best_value", "runner_up",
                                      "runner_up_value", "margin", "resolved", "winner"])


def criterion_values(criterion: str, gradients: pd.DataFrame | None = None,
                     fidelity: pd.DataFrame | None = None) -> pd.DataFrame:
    """``method, rate, temperature, value, se`` of one criterion (see the module table)."""
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    if criterion.startswith("gradient"):
        if gradients is None:
            raise ValueError(f"{criterion!r} needs the gradients table")
        frame = gradient_rows(gradients)
        n = np.sqrt(frame["n_items"].astype(float)) if "n_items" in frame else 1.0
        if criterion == "gradient noise":
            value, se = frame["noise_energy"], frame["noise_energy_sd"] / n
        else:
            exact = frame["cross_term_exact"]
            value = exact.where(exact.notna(), frame["cross_term"]).abs()
            se = (frame["cross_term_sd"] / n).where(exact.isna(), 0.0)
    else:
        if fidelity is None:
            raise ValueError(f"{criterion!r} needs the fidelity table")
        frame = fidelity
        if criterion == "fidelity W1":
            value, se = frame["w1_normalised"], frame["w1_normalised_se"]
        else:
            mean_err, var_err = (frame["mean_ratio"] - 1).abs(), (frame["var_ratio"] - 1).abs()
            value = np.maximum(mean_err, var_err)
            se = frame["mean_ratio_se"].where(mean_err >= var_err, frame["var_ratio_se"])
    return pd.DataFrame({"method": frame["method"], "rate": frame["rate"].astype(float),
                         "temperature": frame["temperature"].astype(float), "value": value.astype(float),
                         "se": se.astype(float)})


def regime_maps(gradients: pd.DataFrame | None, fidelity: pd.DataFrame | None, temperatures=None,
                rates=None) -> dict:
    """``{criterion: regime_map(...)}`` for every criterion whose table is given, restricted to
    ``temperatures`` / ``rates`` when given (matched to 1e-9)."""
    out = {}
    for criterion in CRITERIA:
        source = gradients if criterion.startswith("gradient") else fidelity
        if source is None:
            continue
        values = criterion_values(criterion, gradients, fidelity)
        if temperatures is not None:
            values = values[np.isclose(values["temperature"].to_numpy()[:, None], list(temperatures),
                                       rtol=0, atol=1e-9).any(axis=1)]
        if rates is not None:
            values = values[np.isclose(values["rate"].to_numpy()[:, None], list(rates),
                                       rtol=0, atol=1e-9).any(axis=1)]
        negligible = NEGLIGIBLE_BIAS if criterion == "gradient bias" else 0.0
        out[criterion] = regime_map(values, "value", CRITERION_METHODS[criterion], "se", negligible)
    return out


def method_vs_best(values: pd.DataFrame, method: str, against) -> pd.Series:
    """Per (rate, temperature) cell of ``values`` (``method, rate, temperature, value``): ``method``'s
    value divided by the smallest value among ``against`` (which may include ``method``). Cells lacking
    ``method`` or every method of ``against`` are left out.

    >>> v = pd.DataFrame({"method": ["a", "b"], "rate": [1.0, 1.0], "temperature": [0.1, 0.1],
    ...                   "value": [3.0, 2.0]})
    >>> float(method_vs_best(v, "a", ["a", "b"]).iloc[0])
    1.5
    """
    table = values.pivot_table(index=["rate", "temperature"], columns="method", values="value")
    against = [m for m in against if m in table.columns]
    if method not in table.columns or not against:
        raise ValueError(f"values lack {method!r} or every method of {list(against)!r}")
    return (table[method] / table[against].min(axis=1)).dropna()


def window_arrivals_column(frame: pd.DataFrame) -> pd.Series:
    r"""Expected arrivals in EAT-cubic's window, :math:`2\lambda\tau`, for each row of ``frame``."""
    return 2 * frame["rate"].astype(float) * frame["temperature"].astype(float)


def starvation_constant(gradients: pd.DataFrame, method: str = "eat-cubic",
                        max_arrivals: float = 0.1) -> float:
    r"""The constant :math:`c` of NoiseEnergy :math:`\approx c / (2\lambda\tau)` in the starved regime:
    the median of NoiseEnergy :math:`\times\, 2\lambda\tau` over the main setup's rows of ``method``
    whose window holds at most ``max_arrivals`` expected arrivals (``ValueError`` if there are none)."""
    frame = gradient_rows(gradients)
    frame = frame[frame["method"] == method]
    arrivals = window_arrivals_column(frame)
    starved = frame[arrivals <= max_arrivals]
    if starved.empty:
        raise ValueError(f"no rows of {method!r} with 2 * rate * temperature <= {max_arrivals}")
    return float((starved["noise_energy"] * window_arrivals_column(starved)).median())


def plot_regime_maps(maps: dict, axes=None):
    """One panel per criterion: rate (x) by temperature (y), each cell coloured by its winner and
    labelled with the margin (grey ``=``: a tie). Returns the figure."""
    import matplotlib.pyplot as plt

    from ..common.plotting import BOOK_WIDTH, method_color, method_label

    if axes is None:  # two panels a row: at the book's width a panel of 7 rates keeps 8 pt labels legible
        rows = -(-len(maps) // 2)
        _, grid = plt.subplots(rows, 2, figsize=(BOOK_WIDTH, 2.9 * rows), squeeze=False,
                               layout="constrained")
        axes = grid.ravel()
        for extra in axes[len(maps):]:
            extra.set_visible(False)
    seen = set()
    for ax, (criterion, frame) in zip(axes, maps.items()):
        rates, taus = sorted(frame["rate"].unique()), sorted(frame["temperature"].unique())
        for row in frame.itertuples(index=False):
            i, j = rates.index(row.rate), taus.index(row.temperature)
            colour = "0.85" if row.winner == TIE else method_color(row.winner)
            ax.add_patch(plt.Rectangle((i - 0.5, j - 0.5), 1, 1, color=colour, alpha=0.8, lw=0))
            text = "=" if row.winner == TIE else (f"{row.margin:.1f}" if row.margin < 100 else ">99")
            ax.text(i, j, text, ha="center", va="center", fontsize=8)
            seen.add(row.winner)
        ax.set_xlim(-0.5, len(rates) - 0.5)
        ax.set_ylim(-0.5, len(taus) - 0.5)
        ax.set_xticks(range(len(rates)), [f"{r:g}" for r in rates], fontsize=8)
        ax.set_yticks(range(len(taus)), [f"{t:g}" for t in taus], fontsize=8)
        ax.set(title=criterion, xlabel=r"rate $\lambda$")
        ax.grid(False)
    for ax in axes[:len(maps)]:
        ax.set_ylabel(r"temperature $\tau$")
    handles = [plt.Rectangle((0, 0), 1, 1, color="0.85" if m == TIE else method_color(m))
               for m in sorted(seen)]
    labels = ["tie (unresolved or negligible)" if m == TIE else method_label(m) for m in sorted(seen)]
    fig = axes[0].figure
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    outside = isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine)
    fig.legend(handles, labels, loc="outside lower center" if outside else "lower center", ncol=len(handles),
               fontsize=8, frameon=False)
    return fig
