r"""How the P-VAE grid did: each run's convergence and the gap of each method to the exact gradient.

>>> rows = [{"method": "exact", "temperature": None, "n_samples": 1, "seed": 0, "val_nelbo": 100.0},
...         {"method": "gsm", "temperature": 0.5, "n_samples": 1, "seed": 0, "val_nelbo": 103.0}]
>>> summarize_pvae(rows).set_index("method")["gap_pct"].round(1).tolist()
[0.0, 3.0]
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..common.training import last_quarter_gain

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["convergence", "summarize_pvae"]


def convergence(curves, column: str = "val_nelbo_closed_form"):
    """Each run's relative improvement of ``column`` (a loss) over its last quarter of training,
    :func:`~hitchhiker.book.common.training.last_quarter_gain` of the negated curve (positive: still
    improving); the book calls a run converged below :data:`~hitchhiker.book.common.training.FLAT_GAIN`."""
    import pandas as pd

    frame = curves if isinstance(curves, pd.DataFrame) else pd.DataFrame(list(curves))
    keys = ["method", "temperature", "n_samples", "seed", "tau_schedule"]
    keys += ["grid_part"] if "grid_part" in frame else []
    out = []
    for key, run in frame.groupby(keys, dropna=False, sort=False):
        run = run.sort_values("step")
        out.append({**dict(zip(keys, key)), "improvement": last_quarter_gain(-run[column], run["step"])})
    return pd.DataFrame(out)


def summarize_pvae(rows, column: str = "val_nelbo") -> "pd.DataFrame":
    r"""Mean validation NELBO (``column``: ``"val_nelbo"``, with exact samples, or
    ``"val_nelbo_closed_form"``, without Monte Carlo noise) per (method, temperature, n_samples,
    tau_schedule) over seeds, and the gap to exact.

    The gap is paired by seed: :math:`\Delta_s = \mathrm{NELBO}_s(\text{method}) -
    \mathrm{NELBO}_s(\text{exact})`, so that what a seed does to both runs cancels. Columns:
    ``val_nelbo`` (mean), ``val_nelbo_sd``, ``gap`` (mean of :math:`\Delta_s`), ``gap_se``
    (its standard error over seeds; NaN with one seed), ``gap_pct`` (gap relative to the mean of
    exact over the same seeds), ``n_seeds``.
    """
    import pandas as pd

    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if "exact" not in set(frame["method"]):
        raise ValueError("rows must include the 'exact' runs (the reference of the gap)")
    if "tau_schedule" not in frame:
        frame = frame.assign(tau_schedule="none")
    frame = frame.assign(val_nelbo=frame[column])
    exact = frame[frame["method"] == "exact"].set_index("seed")["val_nelbo"]
    if exact.index.has_duplicates:
        raise ValueError("rows hold more than one exact run per seed (e.g. the 'long' part): pass one "
                         "grid, whose runs share a schedule")
    missing = set(frame["seed"]) - set(exact.index)
    if missing:
        raise ValueError(f"no exact run for seed(s) {sorted(missing)}: gaps are paired by seed")
    frame = frame.assign(gap=frame["val_nelbo"] - frame["seed"].map(exact),
                         exact_nelbo=frame["seed"].map(exact))
    keys = ["method", "temperature", "n_samples", "tau_schedule"]
    grouped = frame.groupby(keys, dropna=False, sort=False)
    out = grouped.agg(val_nelbo=("val_nelbo", "mean"), val_nelbo_sd=("val_nelbo", "std"),
                      gap=("gap", "mean"), gap_sd=("gap", "std"), exact_nelbo=("exact_nelbo", "mean"),
                      n_seeds=("seed", "nunique"))
    out["gap_se"] = out["gap_sd"] / np.sqrt(out["n_seeds"])
    out["gap_pct"] = 100 * out["gap"] / out["exact_nelbo"]
    return out.drop(columns=["gap_sd", "exact_nelbo"]).reset_index()
