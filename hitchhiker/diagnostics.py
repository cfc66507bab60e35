r"""Which estimator for *your* model? Compare every estimator's gradient with an unbiased reference.

Give :func:`compare_estimators` the per-sample loss of your model and the Poisson rates it produces;
it measures, for each method of the registry and each temperature, how that method's gradient of
:math:`\mathbb E_{z \sim \mathrm{Pois}(\lambda)}[L(z)]` with respect to :math:`\lambda` compares with a
reference gradient :math:`g^*`: the exact one when you have it, otherwise the score function with many
exact samples (unbiased), whose own Monte Carlo error is carried into every standard error.

With :math:`N` single-draw estimates :math:`g_1, \dots, g_N` of a method (flattened over the rate's
elements), :math:`\bar g` their mean and :math:`\Sigma` their covariance:

* ``cos_mean`` :math:`= \cos(\mathbb E g, g^*)`, the direction of the method's *expected* gradient,
  estimated as :math:`\bar g\cdot\hat g^* / \sqrt{(\lVert\bar g\rVert^2 - \mathrm{tr}\,\Sigma/N)
  (\lVert\hat g^*\rVert^2 - \mathrm{tr}\,\Sigma^*/M)}` so that neither gradient's Monte Carlo noise
  pulls it below 1 (the paper's CosMean, :math:`\cos(\bar g, g^*)` at a finite :math:`N`, also
  contains the method's noise; it can be slightly above 1 by chance);
* ``cos_sample`` :math:`= \mathbb E\cos(g_n, g^*)`, the cosine of *one* draw (noise included), its
  denominator likewise freed of the reference's noise;
* ``relative_bias`` :math:`= \lVert \mathbb E g - g^*\rVert^2 / \lVert g^*\rVert^2`, estimated without
  the Monte Carlo floor: :math:`\lVert\bar g - \hat g^*\rVert^2 - \mathrm{tr}\,\Sigma/N -
  \mathrm{tr}\,\Sigma^*/M` over :math:`\lVert\hat g^*\rVert^2 - \mathrm{tr}\,\Sigma^*/M` (``M`` reference
  draws of covariance :math:`\Sigma^*`), so an unbiased method scores 0 up to its standard error
  (the estimate can be slightly negative);
* ``relative_variance`` :math:`= \mathrm{tr}\,\Sigma / \lVert g^*\rVert^2`, the noise of one draw;
  ``relative_bias + relative_variance`` is the relative mean squared error of a one-draw gradient.

Standard errors (``*_se``) are delete-a-group jackknife estimates over ``n_groups`` independent groups
of draws, each group holding ``N / n_groups`` of the method's draws and ``M / n_groups`` of the
reference's, so they include the reference's error.

The per-sample loss must treat its draws independently (the loss of draw ``s`` depends on ``z[s]``
only: no batch statistics across draws).

**Never a confident wrong answer.** Every record has a ``status``: ``"ok"``, or what went wrong,
with a ``UserWarning``:

* non-finite losses or gradients of a method are reported on that method's record, whose metrics
  are NaN (never averaged into numbers); on the score-function reference they raise ``ValueError``
  (nothing could be compared);
* a metric that comes out non-finite is named (e.g. ``cos_mean`` of a method whose mean gradient is
  within its own Monte Carlo noise, where the direction is undefined: NaN, not a huge number); the
  other metrics of that record are kept;
* a reference gradient within its own Monte Carlo noise (:math:`\lVert\hat g^*\rVert^2 -
  \mathrm{tr}\,\Sigma^*/M` not above :math:`\mathrm{tr}\,\Sigma^*/M`, or not two jackknife standard
  errors above 0; a model near its optimum) is reported as *too small to compare at this sample
  size* on every record, instead of metrics divided by noise.

**Fidelity at your rates.** Every record also carries ``variance_ratio``, the relaxed count's
:math:`\operatorname{Var}[\tilde z]/\lambda` at the rates compared (1 for the exact count): Campbell's
closed form for the EAT relaxations (:func:`hitchhiker.variance_ratio`, the same at every rate), a
Monte Carlo estimate with a jackknife ``variance_ratio_se`` for GSM (whose ratio depends on the rate:
the mean over the rate's positive elements of each element's sample variance over its rate), and 1
for the straight-through methods and the score function, whose forward value is the exact count. For
the compact EAT ramps ``window_arrivals`` is the median over the rate's elements of the expected
arrivals in the ramp's window, :math:`2\lambda\tau` for :math:`\tau \le 1`: below about 1 most
draws carry no gradient and the method's one-draw noise grows (the gradient chapter's regime map).

:func:`recommend_estimator` only considers records that are ``ok``, have finite metrics, point the
right way (``cos_mean`` :math:`\ge` :data:`MIN_COS_MEAN` = 0.9) and keep the Poisson's variance
(``variance_ratio`` :math:`\ge` :data:`MIN_VARIANCE_RATIO` = 0.85, the level below which the book's
downstream chapters saw training lose); it raises ``ValueError`` when none does, and otherwise returns
a :class:`Recommendation` that says why.
"""
from __future__ import annotations

import math
import operator
import sys
import time
import warnings
from typing import Callable, List, Optional, Sequence, Tuple

import torch

from ._validation import check_bool, check_param, check_positive_int, finite_nonnegative, real_tensor
from .estimators import (
    EAT_METHODS,
    PATHWISE_METHODS,
    STRAIGHT_THROUGH_METHODS,
    check_method,
    relaxed_sample,
    surrogate_loss,
)
from .matching import variance_ratio as campbell_variance_ratio

__all__ = ["compare_estimators", "EstimatorComparison", "Recommendation", "recommend_estimator"]

#: Metrics of one record, each reported with a standard error under ``<name>_se``.
METRICS = ("cos_mean", "cos_sample", "relative_bias", "relative_variance")
#: The book's Table 1 thresholds (good at or below the first, fair at or below the second): bias as
#: an energy relative to the gradient's, variance relative to the lowest-variance candidate.
BIAS_THRESHOLDS = (0.1, 1.0)
VARIANCE_THRESHOLDS = (1.5, 3.0)
#: The least ``cos_mean`` a recommended method may have: its expected gradient must point along the
#: reference (a truncated GSM can point backwards, cos_mean -1, with a small variance).
MIN_COS_MEAN = 0.9
#: The least ``variance_ratio`` (:math:`\operatorname{Var}[\tilde z]/\lambda` at the rates compared) a
#: recommended method may have. Gradient bias and variance on one minibatch do not show what a
#: relaxation does to training; the book's downstream chapters do, and their losses line up with this
#: ratio across methods and temperatures. Stored results (seed means) against EAT-cubic at its best
#: temperature, P-VAE validation NELBO (chapter 06) and POGLM test ELBO in the paper regime (chapter
#: 07); GSM's ratio from the fidelity chapter (04), averaged over rates 0.5 to 20. Losing more than 2%
#: or 2 nats: EAT-sigmoid at tau = 0.5 (ratio 0.623: +4.1% NELBO, -9.2 nats), GSM at 0.5 (0.56: +5.1%,
#: -9.4), EAT-cubic at 1 (0.743: +1.5%, -3.8), EAT-sigmoid at 0.2 (0.803: +0.8%, -2.3), GSM at 0.2
#: (0.81: +1.0%, -2.1). Holding: EAT-cubic at 0.1 to 0.5 (0.871 and above: within 0.3% and 0.7 nats),
#: EAT-sigmoid and GSM at 0.1 (0.90: within 0.6% and 0.5 nats). The floor lies between, 0.81 < 0.85 <=
#: 0.871: the cubic keeps it up to tau = 0.58, the sigmoid up to tau = 0.150
#: (:func:`hitchhiker.temperature_for_variance_ratio`). An empirical threshold from two models (chapter
#: 10 shows the table), not a theorem: a ratio above it is no guarantee.
MIN_VARIANCE_RATIO = 0.85
#: Below this median number of expected arrivals in a compact EAT ramp's window the recommendation
#: notes the low-rate regime: an arrival moves the relaxed count only inside the window, so a window
#: that is mostly empty gives mostly zero gradients and rare large ones (the gradient chapter: at
#: lambda = 0.1 and tau = 0.02, 2 lambda tau = 0.004, EAT-cubic is the noisiest of the relaxations).
LOW_WINDOW_ARRIVALS = 1.0
#: The ``status`` of a record whose metrics were computed.
OK = "ok"
DEFAULT_METHODS = ("eat-cubic", "eat-sigmoid", "st-cubic", "gsm", "score")
DEFAULT_TEMPERATURES = (0.05, 0.1, 0.2, 0.5)


class EstimatorComparison(list):
    """The records of :func:`compare_estimators`: a list of dicts, one per (method, temperature).

    ``to_dict("records")`` returns the plain list (so ``pandas.DataFrame(result)`` and
    ``result.to_dict("records")`` both work, as with a data frame); ``recommend()`` applies the
    book's rule (:func:`recommend_estimator`).
    """

    def to_dict(self, orient: str = "records") -> list:
        if orient != "records":
            raise ValueError(f"orient must be 'records', got {orient!r}")
        return [dict(r) for r in self]

    def to_pandas(self):
        """The records as a ``pandas.DataFrame`` (needs pandas)."""
        import pandas as pd

        return pd.DataFrame(self.to_dict("records"))

    def recommend(self) -> "Recommendation":
        """The book's rule on these records (:func:`recommend_estimator`): a line that says why."""
        return recommend_estimator(self)

    def record(self, method: str, temperature: Optional[float] = None) -> dict:
        """The record of ``method`` at ``temperature`` (``None`` for the score function)."""
        found = [r for r in self if r["method"] == method and r["temperature"] == temperature]
        if not found:
            have = sorted({(r["method"], r["temperature"]) for r in self}, key=str)
            raise KeyError(f"no record for method={method!r}, temperature={temperature!r}; "
                           f"the records hold {have}")
        return found[0]

    def __repr__(self) -> str:
        head = (f"{'method':<12} {'tau':>5} {'cos_mean':>16} {'cos_sample':>16} {'rel. bias':>17} "
                f"{'rel. variance':>17} {'var. ratio':>10}")
        lines = [head]
        notes: List[str] = []
        for r in self:
            tau = "-" if r["temperature"] is None else f"{r['temperature']:g}"
            cells = " ".join(f"{r[m]:>8.4f} ± {r[m + '_se']:<6.4f}" for m in METRICS)
            status = r.get("status", OK)
            mark = "" if status == OK else f" [{len(notes) + 1}]"
            if status != OK:
                notes.append(f"[{len(notes) + 1}] {_label(r)}: {status}")
            ratio = r.get("variance_ratio")
            ratio_cell = f"{ratio:>10.3f}" if isinstance(ratio, (int, float)) else f"{'-':>10}"
            lines.append(f"{r['method']:<12} {tau:>5} {cells} {ratio_cell}{mark}")
        return "\n".join(lines + notes)


def _rating(value: float, good: float, fair: float) -> int:
    return 2 if value <= good else (1 if value <= fair else 0)


def _exclusion(record: dict) -> Optional[str]:
    """Why ``record`` cannot be recommended on its gradient metrics, or None."""
    status = record.get("status", OK)
    if status != OK:
        return status
    values = [record[name] for name in METRICS] + [record[f"{name}_se"] for name in METRICS]
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        return "non-finite metrics"
    if record["cos_mean"] < MIN_COS_MEAN:
        return (f"cos_mean {record['cos_mean']:.3f} < {MIN_COS_MEAN}: its expected gradient does not "
                "point along the reference")
    return None


def _variance_ratio(record: dict) -> float:
    """The record's ``variance_ratio``, or Campbell's for an EAT method; NaN when unknown."""
    value = record.get("variance_ratio")
    if value is not None:
        return float(value)
    method, tau = record.get("method"), record.get("temperature")
    if method in STRAIGHT_THROUGH_METHODS or method == "score":
        return 1.0
    if method in EAT_METHODS and isinstance(tau, (int, float)) and math.isfinite(tau) and tau > 0:
        return float(campbell_variance_ratio(method, float(tau), 1.0))
    return math.nan


def _low_fidelity(record: dict) -> Optional[str]:
    """Why ``record``'s relaxed count is too far from the Poisson's to recommend, or None."""
    ratio = _variance_ratio(record)
    if not math.isfinite(ratio):
        return ("no variance_ratio: its fidelity at your rates is unknown (records from "
                "compare_estimators carry it)")
    if ratio < MIN_VARIANCE_RATIO:
        return f"variance ratio {ratio:.3f}"
    return None


def _label(record: dict) -> str:
    tau = record.get("temperature")
    return record["method"] + ("" if tau is None else f" at temperature {tau:g}")


class Recommendation(str):
    """The line :func:`recommend_estimator` returns (a ``str``), with what it rests on.

    Attributes: ``method``, ``temperature`` (``None`` for the score function), ``record`` (the chosen
    record), ``reason`` (why it was chosen, in words, also the line's second part), ``set_aside``
    (``{label: why}`` for the records excluded on fidelity, ``variance_ratio`` below
    :data:`MIN_VARIANCE_RATIO`), ``excluded`` (``{label: why}`` for every other record that was not a
    candidate) and ``min_variance_ratio`` (the fidelity floor applied).
    """

    method: str
    min_variance_ratio: float
    temperature: Optional[float]
    record: dict
    reason: str
    set_aside: dict
    excluded: dict

    def __new__(cls, headline: str, reason: str, record: dict, set_aside: dict, excluded: dict):
        self = super().__new__(cls, f"{headline}\n  why: {reason}")
        self.method, self.temperature = record["method"], record.get("temperature")
        self.record, self.reason = record, reason
        self.set_aside, self.excluded = dict(set_aside), dict(excluded)
        self.min_variance_ratio = MIN_VARIANCE_RATIO
        return self


_RATING_WORDS = ("poor", "fair", "good")


def _ranked(candidates: List[dict]) -> List[Tuple[dict, int, int]]:
    """``(record, bias rating, variance rating)``, best first (Table 1's rule)."""
    positive = [r["relative_variance"] for r in candidates if r["relative_variance"] > 0]
    floor = min(positive) if positive else 1.0
    rated = [(r, _rating(r["relative_bias"], *BIAS_THRESHOLDS),
              _rating(max(r["relative_variance"], 0.0) / floor, *VARIANCE_THRESHOLDS)) for r in candidates]
    return sorted(rated, key=lambda x: (-(x[1] + x[2]), x[0]["relative_bias"] + x[0]["relative_variance"]))


def recommend_estimator(records: Sequence[dict]) -> Recommendation:
    r"""The estimator the book's rule picks from :func:`compare_estimators` records, and why.

    **Candidates** are the records that can be trusted and keep the Poisson's variance: ``status``
    ``"ok"``, every metric and standard error finite, ``cos_mean`` :math:`\ge` :data:`MIN_COS_MEAN`
    (0.9; the expected gradient points along the reference), and ``variance_ratio`` :math:`\ge`
    :data:`MIN_VARIANCE_RATIO` (0.85; the fidelity floor below which the book's P-VAE and POGLM
    chapters lost more than 2% NELBO or 2 nats of test ELBO: the constant's comment gives the
    numbers). A record without ``variance_ratio`` gets Campbell's closed form for an EAT method and 1
    for the straight-through methods and the score function; a GSM record without it is not a
    candidate (its ratio depends on the rates).

    **Rule** (the book's Table 1): each candidate is rated on bias (``relative_bias`` good
    :math:`\le 0.1`, fair :math:`\le 1`) and on variance (``relative_variance`` relative to the lowest
    positive one among the candidates: good :math:`\le 1.5\times`, fair :math:`\le 3\times`; a zero
    variance is good and does not set the scale), good = 2, fair = 1, poor = 0; the highest total wins,
    ties going to the lower relative mean squared error (bias + variance).

    Returns a :class:`Recommendation`: a ``str`` whose first line names the choice and its numbers,
    the second (``reason``) why, including which records the fidelity floor set aside and what would
    have won without it, and, for a compact EAT ramp whose window holds fewer than
    :data:`LOW_WINDOW_ARRIVALS` expected arrivals at the median rate, that its noise comes from the
    low-rate regime. ``ValueError`` when no record is a candidate, saying why for each (and, when the
    floor excluded them, the temperature that keeps it: :func:`hitchhiker.temperature_for_variance_ratio`).

    >>> def rec(method, tau, bias, variance):
    ...     return {"method": method, "temperature": tau, "status": "ok", "cos_mean": 0.99,
    ...             "cos_mean_se": 0.01, "cos_sample": 0.5, "cos_sample_se": 0.01,
    ...             "relative_bias": bias, "relative_bias_se": 0.01,
    ...             "relative_variance": variance, "relative_variance_se": 0.01}
    >>> choice = recommend_estimator([rec("eat-sigmoid", 0.5, 0.01, 0.5), rec("eat-cubic", 0.5, 0.0, 1.2)])
    >>> choice.method, choice.temperature, list(choice.set_aside)
    ('eat-cubic', 0.5, ['eat-sigmoid at temperature 0.5'])
    """
    records = list(records)
    if not records:
        raise ValueError("records is empty: nothing to recommend")
    candidates, trusted, excluded, set_aside = [], [], {}, {}
    for r in records:
        why = _exclusion(r)
        if why is not None:
            excluded[_label(r)] = why
            continue
        trusted.append(r)
        low = _low_fidelity(r)
        if low is None:
            candidates.append(r)
        else:
            set_aside[_label(r)] = low
    if not candidates:
        reasons = [f"{k}: {v}" for k, v in {**excluded, **set_aside}.items()]
        hint = ""
        if set_aside:
            hint = (f". Below a variance ratio of {MIN_VARIANCE_RATIO} the book's downstream chapters lost "
                    "training quality; compare at lower temperatures (hitchhiker.temperature_for_variance_"
                    f"ratio(method, {MIN_VARIANCE_RATIO}, rate) gives the largest that keeps it for an EAT "
                    "method)")
        raise ValueError("no estimator can be recommended from these records: " + "; ".join(reasons) + hint)
    ranked = _ranked(candidates)
    best, bias_rating, variance_rating = ranked[0]
    ratio = _variance_ratio(best)
    headline = (f"{_label(best)}: relative bias {best['relative_bias']:.3g} "
                f"± {best['relative_bias_se']:.2g}, relative variance {best['relative_variance']:.3g} "
                f"± {best['relative_variance_se']:.2g}, cos_mean {best['cos_mean']:.3f} "
                f"± {best['cos_mean_se']:.3f}, variance ratio {ratio:.3f}")
    reason = (f"bias {_RATING_WORDS[bias_rating]} and variance {_RATING_WORDS[variance_rating]} on Table 1's "
              f"scale, the best of {len(candidates)} candidate"
              f"{'s' if len(candidates) != 1 else ''} keeping variance ratio >= {MIN_VARIANCE_RATIO}")
    if len(ranked) > 1 and -(ranked[1][1] + ranked[1][2]) == -(bias_rating + variance_rating):
        reason += f" (tied with {_label(ranked[1][0])} on rating; lower bias + variance)"
    if set_aside:
        unfloored = _ranked(trusted)[0][0]
        reason += (f"; set aside for fidelity (below variance ratio {MIN_VARIANCE_RATIO} the book's "
                   "P-VAE and POGLM lost more than 2% / 2 nats): "
                   + ", ".join(f"{k} ({v})" for k, v in set_aside.items()))
        if unfloored is not best:
            reason += f"; without that floor the rule would pick {_label(unfloored)}"
    arrivals = best.get("window_arrivals")
    if isinstance(arrivals, (int, float)) and math.isfinite(arrivals) and arrivals < LOW_WINDOW_ARRIVALS:
        reason += (f"; low-rate regime: its window holds {arrivals:.2g} expected arrivals at the median "
                   "rate, and its noise grows as the window empties (the variance above is measured at "
                   "your rates)")
    return Recommendation(headline, reason, best, set_aside, excluded)


class _Groups:
    """Per-group sums of gradient draws (what the jackknife needs), and the draws themselves if kept."""

    def __init__(self, n_groups: int, dim: int, keep: bool, dtype, device):
        self.sum = torch.zeros(n_groups, dim, dtype=dtype, device=device)
        self.sum_sq = torch.zeros(n_groups, dtype=dtype, device=device)
        self.count = torch.zeros(n_groups, dtype=dtype, device=device)
        self.keep = keep
        self._draws: List[torch.Tensor] = []
        self._owners: List[torch.Tensor] = []

    def add(self, group: int, grads: torch.Tensor):
        self.sum[group] += grads.sum(0)
        self.sum_sq[group] += (grads * grads).sum()
        self.count[group] += grads.shape[0]
        if self.keep:
            self._draws.append(grads)
            self._owners.append(torch.full((grads.shape[0],), group, device=grads.device))

    @property
    def draws(self):
        """``(all draws, the group of each)``, concatenated once."""
        if len(self._draws) > 1:
            self._draws, self._owners = [torch.cat(self._draws)], [torch.cat(self._owners)]
        return self._draws[0], self._owners[0]


def _trace_cov(total, total_sq, count):
    """tr of the unbiased covariance from the sum and the sum of squared norms of ``count`` draws."""
    mean = total / count
    return (total_sq - count * (mean * mean).sum(-1)) / (count - 1)


def _kept(groups: _Groups, drop: Optional[int]) -> torch.Tensor:
    keep = torch.ones(groups.count.shape[0], dtype=torch.bool, device=groups.count.device)
    if drop is not None:
        keep[drop] = False
    return keep


def _reference_mean(reference: _Groups, keep: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The reference's mean gradient and its Monte Carlo floor tr(cov)/M over the ``keep`` groups."""
    m = reference.count[keep].sum()
    g_star = reference.sum[keep].sum(0) / m
    return g_star, _trace_cov(reference.sum[keep].sum(0), reference.sum_sq[keep].sum(), m) / m


def _reference_too_small(reference: _Groups, n_groups: int) -> Optional[str]:
    r"""Why the reference gradient cannot be compared at this sample size, or None.

    :math:`\lVert\hat g^*\rVert^2 - \mathrm{tr}\,\Sigma^*/M` estimates :math:`\lVert g^*\rVert^2`; it
    must exceed the floor :math:`\mathrm{tr}\,\Sigma^*/M` and two of its jackknife standard errors.
    """
    def signal(drop):
        g_star, floor = _reference_mean(reference, _kept(reference, drop))
        return torch.stack([(g_star * g_star).sum() - floor, floor])

    full = signal(None)
    leave_out = torch.stack([signal(g)[0] for g in range(n_groups)])
    spread = ((n_groups - 1) / n_groups * ((leave_out - leave_out.mean()) ** 2).sum()).sqrt()
    norm_sq, floor, se = float(full[0]), float(full[1]), float(spread)
    if norm_sq > max(floor, 2 * se):
        return None
    return (f"too small to compare at this sample size: the reference gradient's squared norm, "
            f"{norm_sq:.3g} ± {se:.2g} with its noise removed, is within its Monte Carlo noise floor "
            f"{floor:.3g} (a model near its optimum?); raise reference_samples or pass exact_gradient")


def _statistics(method: _Groups, reference: Optional[_Groups], exact: Optional[torch.Tensor],
                drop: Optional[int]) -> torch.Tensor:
    """The four metrics on every group but ``drop`` (``None``: all groups)."""
    keep = _kept(method, drop)
    n = method.count[keep].sum()
    g_bar = method.sum[keep].sum(0) / n
    tr_cov = _trace_cov(method.sum[keep].sum(0), method.sum_sq[keep].sum(), n)
    if exact is not None:
        g_star, ref_floor = exact, torch.zeros((), dtype=g_bar.dtype, device=g_bar.device)
    else:
        assert reference is not None  # one of exact and reference is given
        g_star, ref_floor = _reference_mean(reference, keep)
    tiny = torch.finfo(g_bar.dtype).tiny
    # Squared norms with their Monte Carlo floors removed: E|mean of n draws|^2 = |E g|^2 + tr(cov)/n.
    signal = ((g_star * g_star).sum() - ref_floor).clamp_min(tiny)
    method_norm_sq = (g_bar * g_bar).sum() - tr_cov / n
    bias = ((g_bar - g_star) ** 2).sum() - tr_cov / n - ref_floor
    draws, owners = method.draws
    kept = draws[keep[owners]]
    # The direction of a mean gradient within its own noise is undefined: NaN, not 1/sqrt(tiny).
    cos_mean = torch.where(method_norm_sq > 0,
                           (g_bar * g_star).sum() / (method_norm_sq.clamp_min(tiny) * signal).sqrt(),
                           torch.full_like(signal, math.nan))
    cos_sample = ((kept @ g_star) / kept.norm(dim=-1).clamp_min(tiny)).mean() / signal.sqrt()
    return torch.stack([cos_mean, cos_sample, bias / signal, tr_cov / signal])


def _jackknife(method, reference, exact, n_groups):
    full = _statistics(method, reference, exact, None)
    leave_out = torch.stack([_statistics(method, reference, exact, g) for g in range(n_groups)])
    se = ((n_groups - 1) / n_groups * ((leave_out - leave_out.mean(0)) ** 2).sum(0)).sqrt()
    return full, se


def _draw_gradients(method: str, rate: torch.Tensor, temperature, per_sample_loss, count: int,
                    dist_kwargs: dict) -> Tuple[torch.Tensor, int, bool]:
    """``count`` single-draw gradient estimates, shape ``(count, rate.numel())``, float64; the number of
    those with a non-finite entry; whether every loss was finite.

    The rate is expanded to ``(count,) + rate.shape`` as a fresh leaf, so that one backward pass of
    :func:`~hitchhiker.surrogate_loss` (the estimator every model calls) gives each draw's own gradient;
    the score function's leave-one-out baseline runs over these ``count`` draws.
    """
    leaf = rate.detach().expand((count,) + rate.shape).clone().requires_grad_(True)
    surrogate = surrogate_loss(method, leaf, per_sample_loss, temperature, n_samples=None,
                               **dist_kwargs)
    if surrogate.shape != ():
        raise ValueError(f"per_sample_loss must map counts of shape (S, *rate.shape) to losses of "
                         f"shape (S,); got losses of shape (S,) + {tuple(surrogate.shape)}")
    (grad,) = torch.autograd.grad(surrogate * count, leaf, allow_unused=True)
    if grad is None:
        raise ValueError("per_sample_loss(z) does not depend on z: its gradient is None")
    grad = grad.reshape(count, -1).to(torch.float64)
    bad, finite_losses = torch.stack([(~torch.isfinite(grad)).any(1).sum().to(torch.float64),
                                      torch.isfinite(surrogate.detach()).to(torch.float64)]).tolist()
    return grad, int(bad), bool(finite_losses)


def _non_finite(bad: int, count: int, finite_losses: bool) -> str:
    what = [] if finite_losses else ["losses"]
    if bad:
        what.append(f"gradients ({bad} of {count} draws)")
    return "non-finite " + " and ".join(what)


def _fidelity(method: str, tau: Optional[float], rate: torch.Tensor, count: int, n_groups: int,
              dist_kwargs: dict) -> Tuple[float, float, Optional[float]]:
    r"""``(variance_ratio, its standard error, window_arrivals)`` of ``method`` at the rates compared.

    EAT: Campbell's closed form (rate-free, no error) and, for a compact ramp, the median expected
    number of arrivals in its window :math:`[\max(0, 1 - \tau), 1 + \tau]`; straight-through and score:
    the exact count (1); GSM: ``count`` draws at the rate's positive elements, the mean of each
    element's sample variance over its rate, with a delete-a-group jackknife error (NaN, NaN when no
    rate is positive).
    """
    if method in STRAIGHT_THROUGH_METHODS or method == "score":
        return 1.0, 0.0, None
    assert tau is not None  # a relaxed method has a temperature
    flat = rate.detach().reshape(-1)
    if method in EAT_METHODS:
        ratio = float(campbell_variance_ratio(method, tau, 1.0))
        if method == "eat-sigmoid":  # no compact window
            return ratio, 0.0, None
        width = (1 + tau) - max(0.0, 1 - tau)
        return ratio, 0.0, float((flat.to(torch.float64) * width).median())
    positive = flat[flat > 0]
    if positive.numel() == 0:
        return math.nan, math.nan, None
    per_group = count // n_groups
    sums = torch.zeros(n_groups, positive.numel(), dtype=torch.float64, device=rate.device)
    squares = torch.zeros_like(sums)
    with torch.no_grad():
        for group in range(n_groups):
            z = relaxed_sample(method, positive, tau, (per_group,), **dist_kwargs).to(torch.float64)
            sums[group], squares[group] = z.sum(0), (z * z).sum(0)
    lam = positive.to(torch.float64)

    def ratio_without(drop: Optional[int]) -> torch.Tensor:
        keep = torch.ones(n_groups, dtype=torch.bool, device=rate.device)
        if drop is not None:
            keep[drop] = False
        m = per_group * int(keep.sum())
        total, total_sq = sums[keep].sum(0), squares[keep].sum(0)
        return ((total_sq - total * total / m) / (m - 1) / lam).mean()

    leave_out = torch.stack([ratio_without(g) for g in range(n_groups)])
    se = ((n_groups - 1) / n_groups * ((leave_out - leave_out.mean()) ** 2).sum()).sqrt()
    return float(ratio_without(None)), float(se), None


class _Progress:
    """A one-line progress report on stderr (the library carries no tqdm)."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.done, self.enabled, self.start = total, 0, enabled, time.perf_counter()

    def step(self, label: str):
        self.done += 1
        if self.enabled:
            elapsed = time.perf_counter() - self.start
            sys.stderr.write(f"\rcompare_estimators: {self.done}/{self.total} {label:<24} "
                             f"{elapsed:6.1f} s")
            if self.done == self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


def compare_estimators(per_sample_loss: Callable[[torch.Tensor], torch.Tensor], rate: torch.Tensor, *,
                       methods: Sequence[str] = DEFAULT_METHODS,
                       temperatures: Sequence[float] = DEFAULT_TEMPERATURES,
                       n_samples: int = 512, exact_gradient: Optional[torch.Tensor] = None,
                       reference_samples: int = 16_384, n_groups: int = 16,
                       progress: Optional[bool] = None, seed: Optional[int] = None,
                       **dist_kwargs) -> EstimatorComparison:
    r"""How each estimator's gradient with respect to ``rate`` compares with an unbiased reference.

    Args:
        per_sample_loss: maps counts of shape ``(S,) + rate.shape`` to losses of shape ``(S,)``,
            each draw independently (see the module docstring).
        rate: the Poisson rates :math:`\lambda` (a floating tensor that requires grad: the gradient is
            taken with respect to it, at its current value).
        methods: registry names (:data:`hitchhiker.METHODS`): pathwise methods and ``"score"``.
        temperatures: for the relaxed methods; the score function has none.
        n_samples: single-draw gradient estimates per (method, temperature), ``N``.
        exact_gradient: :math:`\nabla_\lambda\,\mathbb E[L]`, shape ``rate.shape``, when known; else the
            reference is the score function with ``reference_samples`` draws.
        reference_samples: ``M``, draws of the score-function reference.
        n_groups: independent groups for the jackknife standard errors (divides ``n_samples`` and
            ``reference_samples``).
        progress: a progress line on stderr (default: when stderr is a terminal).
        seed: seed torch's generator first, for a reproducible comparison.
        dist_kwargs: passed to the distributions (``n_categories`` for ``"gsm"``).

    Returns:
        :class:`EstimatorComparison`: records with ``method``, ``temperature`` (``None`` for the score
        function), the metrics ``cos_mean``, ``cos_sample``, ``relative_bias``,
        ``relative_variance`` and their ``*_se``, the fidelity at these rates ``variance_ratio``,
        ``variance_ratio_se`` and ``window_arrivals`` (module docstring; ``None`` where it does not
        apply), ``status`` (``"ok"``; or why the metrics are NaN:
        non-finite losses or gradients of that method, a reference too small to compare; or which
        metrics came out non-finite, e.g. the standard error of ``cos_mean`` of a method too noisy
        for ``n_samples``: module docstring), ``n_samples``, ``reference`` (``"exact"`` or
        ``"score (M draws)"``), ``seconds`` and ``loss_evaluations``.

    Raises:
        ValueError: a bad argument (named), or non-finite losses or gradients on the score-function
            reference's exact draws.

    >>> rate = torch.full((8,), 3.0, requires_grad=True)
    >>> loss = lambda z: ((z - 2.0) ** 2).sum(-1)
    >>> out = compare_estimators(loss, rate, methods=("eat-cubic",), temperatures=(0.5,),
    ...                          n_samples=64, exact_gradient=1 + 2 * (rate.detach() - 2.0), seed=0)
    >>> out[0]["method"], out[0]["cos_mean"] > 0.9
    ('eat-cubic', True)
    """
    if not callable(per_sample_loss):
        raise TypeError(f"per_sample_loss must be callable, got {type(per_sample_loss).__name__}")
    if not torch.is_tensor(rate) or not rate.is_floating_point():
        raise TypeError("rate must be a floating-point tensor")
    if not rate.requires_grad:
        raise ValueError("rate must require grad: the gradients compared are with respect to it "
                         "(call rate.requires_grad_() or pass the tensor your model produced)")
    if rate.numel() == 0:
        raise ValueError("rate is empty")
    check_param(finite_nonnegative, rate, "rate", "finite and >= 0")
    if isinstance(methods, str) or not hasattr(methods, "__iter__"):
        raise TypeError(f"methods must be a sequence of method names such as ('eat-cubic', 'score'), "
                        f"got {type(methods).__name__} {methods!r}")
    methods = tuple(methods)
    if not methods:
        raise ValueError("methods is empty")
    for method in methods:
        check_method(method, PATHWISE_METHODS + ("score",))
    try:
        temperatures = tuple(float(t) for t in temperatures)
    except (TypeError, ValueError):
        raise TypeError(f"temperatures must be a sequence of numbers, got {temperatures!r}") from None
    if any(not (t > 0 and math.isfinite(t)) for t in temperatures):
        raise ValueError(f"temperatures must be finite and > 0, got {temperatures}")
    if any(m != "score" for m in methods) and not temperatures:
        raise ValueError("temperatures is empty but relaxed methods were asked for")
    n_groups = check_positive_int(n_groups, "n_groups")
    if n_groups < 2:
        raise ValueError(f"n_groups must be at least 2, got {n_groups}")
    for name, value in (("n_samples", n_samples), ("reference_samples", reference_samples)):
        value = check_positive_int(value, name)
        if value < 2 * n_groups or value % n_groups:
            raise ValueError(f"{name} must be a multiple of n_groups={n_groups} and at least "
                             f"{2 * n_groups}, got {value!r}")
    exact = None
    if exact_gradient is not None:
        exact = real_tensor(exact_gradient, "exact_gradient", expected="a tensor of rate's shape")
        if exact.shape != rate.shape:
            raise ValueError(f"exact_gradient must have rate's shape {tuple(rate.shape)}, "
                             f"got {tuple(exact.shape)}")
        exact = exact.detach().reshape(-1).to(device=rate.device, dtype=torch.float64)
        if not bool(torch.isfinite(exact).all()) or not bool((exact != 0).any()):
            raise ValueError("exact_gradient must be finite and not all zero")
    if seed is not None:
        if isinstance(seed, bool) or not hasattr(type(seed), "__index__"):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__} {seed!r}")
        torch.manual_seed(operator.index(seed))
    configs = [(m, None) if m == "score" else (m, t) for m in methods
               for t in ((None,) if m == "score" else temperatures)]
    show = sys.stderr.isatty() if progress is None else check_bool(progress, "progress")
    bar = _Progress(len(configs) + (exact is None), show)
    dim, per_group = rate.numel(), int(n_samples) // n_groups

    reference = None
    if exact is None:
        reference = _Groups(n_groups, dim, False, torch.float64, rate.device)
        ref_per_group = int(reference_samples) // n_groups
        chunk = max(2, min(ref_per_group, (1 << 22) // dim))
        for group in range(n_groups):
            for start in range(0, ref_per_group, chunk):
                size = min(chunk, ref_per_group - start)
                size = size if size >= 2 else 2
                grads, bad, finite_losses = _draw_gradients("score", rate, None, per_sample_loss, size, {})
                if bad or not finite_losses:
                    raise ValueError(
                        f"per_sample_loss gave {_non_finite(bad, size, finite_losses)} on exact Poisson "
                        "counts, so the score-function reference cannot be computed: make the loss "
                        "finite at every count the rates can produce (e.g. at z = 0), or pass "
                        "exact_gradient")
                reference.add(group, grads)
        bar.step("reference (score)")
        reference_name = f"score ({int(reference.count.sum())} draws)"
        too_small = _reference_too_small(reference, n_groups)
    else:
        reference_name, too_small = "exact", None
    if too_small is not None:
        warnings.warn(f"compare_estimators: {too_small}", UserWarning, stacklevel=2)

    records = EstimatorComparison()
    for method, tau in configs:
        started = time.perf_counter()
        kwargs = dist_kwargs if method == "gsm" else {}
        status, evaluations = too_small, 0
        if status is None:
            draws = _Groups(n_groups, dim, True, torch.float64, rate.device)
            for group in range(n_groups):
                grads, bad, finite_losses = _draw_gradients(method, rate, tau, per_sample_loss, per_group,
                                                            kwargs)
                evaluations += per_group
                if bad or not finite_losses:  # reported on this record, never averaged into metrics
                    status = _non_finite(bad, per_group, finite_losses)
                    break
                draws.add(group, grads)
        record: dict = {"method": method, "temperature": tau}
        if status is None:
            values, errors = _jackknife(draws, reference, exact, n_groups)
            for name, value, error in zip(METRICS, values.tolist(), errors.tolist()):
                record[name], record[f"{name}_se"] = value, error
            unresolved = [k for k in record if k not in ("method", "temperature")
                          and not math.isfinite(record[k])]
            status = OK
            if unresolved:  # kept as computed, but never recommended
                status = (f"non-finite {', '.join(unresolved)} (a method whose mean gradient is within "
                          f"its own Monte Carlo noise has no resolvable direction: raise n_samples)")
                warnings.warn(f"compare_estimators: {_label(record)}: {status}; it is never recommended",
                              UserWarning, stacklevel=2)
        else:
            for name in METRICS:
                record[name] = record[f"{name}_se"] = math.nan
            if status != too_small:
                warnings.warn(f"compare_estimators: {_label(record)}: {status}; its metrics are NaN and "
                              "it is never recommended", UserWarning, stacklevel=2)
        ratio, ratio_se, arrivals = _fidelity(method, tau, rate, int(n_samples), n_groups, kwargs)
        record.update(variance_ratio=ratio, variance_ratio_se=ratio_se, window_arrivals=arrivals)
        record.update(status=status, n_samples=int(n_samples), reference=reference_name,
                      seconds=time.perf_counter() - started, loss_evaluations=evaluations,
                      reference_loss_evaluations=0 if reference is None else int(reference.count.sum()))
        records.append(record)
        bar.step(method if tau is None else f"{method} tau={tau:g}")
    return records
