r"""TEACHING ONLY -- the official code's samplers, to show what the book's fidelity figures correct.

* :func:`fixed_cap_eat`: EAT with a fixed number of arrivals (:func:`fixed_cap_n_arrivals`, the
  :math:`1 - 10^{-3}` quantile of Poisson(:math:`\lambda_{\max}`)), as the official code draws it. The
  soft indicator is non-zero past :math:`t = 1`, so the arrivals the cap drops there are missing
  from the sample: biased at large :math:`\lambda\tau`.
* :func:`official_pipeline_eat` and :func:`official_pipeline_fidelity`: the official fidelity
  analysis, which in addition runs in bfloat16 (so :math:`\lambda = 100` is sampled at 99,
  :func:`official_pipeline_rate`); :func:`seven_fold_runs` separates the rate's rounding from the
  bfloat16 arithmetic.

Use :class:`~hitchhiker.RelaxedPoisson` (truncation-free) for real work.

>>> fixed_cap_n_arrivals(10.0)                 # arrivals the official code draws for rates up to 10
21
>>> official_pipeline_rate(100.0)              # bfloat16 rounds log(100) and exp: rate 100 becomes 99
99.0
"""
from __future__ import annotations

import math

import torch

from ...estimators import check_method
from ...indicators import get_indicator
from .sweep import (
    _MAX_ELEMENTS,
    _as_float,
    _check_rate_temperature,
    _check_sizes,
    fidelity_from_samples,
    forked_rng,
)


def fixed_cap_n_arrivals(rate_max: float, tail: float = 1e-3) -> int:
    r"""The official code's arrival budget: the :math:`(1 - \text{tail})` quantile of Poisson(λ_max)."""
    rate_max = _as_float(rate_max, "rate_max")
    if not (math.isfinite(rate_max) and rate_max > 0):
        raise ValueError(f"rate_max must be finite and > 0, got {rate_max}")
    if not 0 < tail < 1:
        raise ValueError(f"tail must be in (0, 1), got {tail}")
    from scipy import stats  # half a second to import: only the fixed cap needs it

    return max(1, int(stats.poisson.ppf(1 - tail, rate_max)))


def fixed_cap_eat(rate, temperature, sample_shape=torch.Size(), indicator="cubic",
                  rate_max: float | None = None, tail: float = 1e-3) -> torch.Tensor:
    r"""TEACHING ONLY -- EAT with a fixed number of arrivals, as in the official code. Biased.

    Draws :math:`n` = :func:`fixed_cap_n_arrivals` (``rate_max``) inter-arrival times
    :math:`\Delta t_i = E_i/\lambda`, :math:`E_i \sim \mathrm{Exp}(1)`, and returns
    :math:`\sum_{i \le n} f((1 - t_i)/\tau)`. The cap covers arrivals up to about :math:`t = 1`,
    but the soft indicator is non-zero up to :math:`t = 1 + \tau` (cubic) or beyond (sigmoid): the
    arrivals it drops there are silently missing from the sample, which deflates the mean and the
    variance at large :math:`\lambda\tau`. Use :class:`~hitchhiker.RelaxedPoisson` for real work.

    Args:
        rate: :math:`\lambda > 0` (tensor or number); gradients flow through :math:`t_i = S_i/\lambda`.
        temperature: :math:`\tau > 0`, broadcastable with ``rate``.
        sample_shape: leading sample dimensions.
        indicator: soft indicator name (``"cubic"``, ``"sigmoid"``, ...).
        rate_max: the rate the cap is sized for (default: the largest ``rate``).
        tail: the quantile's tail probability (the official code's ``1e-3``).
    """
    rate = torch.as_tensor(rate, dtype=torch.get_default_dtype()) if not torch.is_tensor(rate) else rate
    if not rate.is_floating_point():
        rate = rate.to(torch.get_default_dtype())
    if not bool((torch.isfinite(rate) & (rate > 0)).all()):
        raise ValueError("rate must be finite and > 0")
    temperature = torch.as_tensor(temperature, dtype=rate.dtype, device=rate.device)
    if not bool((torch.isfinite(temperature) & (temperature > 0)).all()):
        raise ValueError("temperature must be finite and > 0")
    f = get_indicator(indicator)
    n = fixed_cap_n_arrivals(float(rate.detach().max()) if rate_max is None else rate_max, tail)
    shape = torch.Size(sample_shape) + torch.broadcast_shapes(rate.shape, temperature.shape)
    waits = torch.empty(shape + (n,), dtype=rate.dtype, device=rate.device).exponential_()
    times = waits.cumsum(-1) / rate.unsqueeze(-1)
    return f((1 - times) / temperature.unsqueeze(-1)).sum(-1)


#: The float32 machine epsilon the official sampler adds to every rate (``exp(log_rate) + eps``).
_OFFICIAL_RATE_EPS = float(torch.finfo(torch.float32).eps)


def official_pipeline_rate(rate: float, dtype=torch.bfloat16) -> float:
    r"""The rate the official analysis actually samples at when asked for ``rate`` in ``dtype``.

    The official sweep stores :math:`\log\lambda` in ``dtype`` and the sampler uses
    :math:`\exp(\log\lambda) + \epsilon_{32}`, evaluated in ``dtype``. In bfloat16 (8 significant
    bits) :math:`\log 100 = 4.6052` rounds to :math:`4.59375` and its exponential to **99.0**, so the
    relaxed samples are drawn at rate 99 while the exact Poisson reference (drawn from the rate
    itself, which bfloat16 holds exactly) stays at 100. In float32 the shift is below :math:`10^{-5}`.
    """
    rate = _as_float(rate, "rate")
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"rate must be finite and > 0, got {rate}")
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    log_rate = torch.tensor(math.log(rate), dtype=dtype)
    return float(torch.exp(log_rate) + torch.tensor(_OFFICIAL_RATE_EPS, dtype=dtype))


def official_pipeline_eat(rate: float, temperature: float, sample_shape, indicator: str = "cubic",
                          dtype=torch.bfloat16, device=None, tail: float = 1e-3,
                          rate_dtype=None) -> torch.Tensor:
    r"""TEACHING ONLY -- relaxed EAT samples as the official fidelity analysis draws them. Biased.

    Every step runs in ``dtype`` (bfloat16 in the official analysis): the rate is
    :func:`official_pipeline_rate` (so :math:`\lambda = 100` becomes 99 in bfloat16), the number of
    arrivals is the fixed cap :func:`fixed_cap_n_arrivals` of that rate, the inter-arrival times
    :math:`E_i/\lambda`, their cumulative sum, :math:`f((1 - t_i)/\tau)` and the sum over arrivals are
    all rounded to ``dtype``. Returns the samples converted to float32, shape ``sample_shape``.
    With ``dtype=torch.float32`` this is the fixed-cap sampler without the precision loss
    (the same law as :func:`fixed_cap_eat`). Use :class:`~hitchhiker.RelaxedPoisson` for real work.

    ``rate_dtype`` (default ``dtype``) is the precision the rate is rounded in, separately from the
    arithmetic's ``dtype``: ``rate_dtype=torch.bfloat16, dtype=torch.float32`` changes only the rate
    (99 for 100), ``rate_dtype=torch.float32, dtype=torch.bfloat16`` only the arithmetic (100 is
    exact in bfloat16). The cap always follows the rate actually used, as in the pipeline.
    """
    rate, temperature = _check_rate_temperature(rate, temperature)
    f = get_indicator(indicator)
    used = official_pipeline_rate(rate, dtype if rate_dtype is None else rate_dtype)
    n = fixed_cap_n_arrivals(used, tail)
    rate_t = torch.tensor(used, dtype=dtype, device=device)
    shape = torch.Size(sample_shape)
    per_row = max(1, math.prod(shape[1:]) * n)
    rows = max(1, _MAX_ELEMENTS // per_row)
    parts = []
    with torch.no_grad():
        for start in range(0, shape[0] if len(shape) else 1, rows):
            size = (min(rows, shape[0] - start),) + shape[1:] if len(shape) else ()
            waits = torch.empty(tuple(size) + (n,), dtype=dtype, device=device).exponential_() / rate_t
            times = waits.cumsum(-1)
            parts.append(f((1 - times) / temperature).sum(-1).to(torch.float32))
    return torch.cat(parts) if len(shape) else parts[0]


def official_pipeline_fidelity(method: str, rate: float, temperature: float, n_samples: int = 50_000,
                               n_trials: int = 100, dtype=torch.bfloat16, device=None,
                               rate_dtype=None) -> dict:
    """TEACHING ONLY -- the fidelity statistics of :func:`official_pipeline_eat` samples.

    ``method`` is ``"eat-cubic"`` or ``"eat-sigmoid"``. The exact reference is drawn at the *requested*
    ``rate`` (as the official analysis does; its counts are exact integers in bfloat16 up to 256) and
    the statistics are those of :func:`fidelity_from_samples` (computed in float64, so only the
    sampling carries the reduced precision). Adds ``rate_used``, the rate the relaxed samples were
    actually drawn at (as ``dtype`` holds it). ``rate_dtype`` as in :func:`official_pipeline_eat`.
    """
    check_method(method, ("eat-cubic", "eat-sigmoid"))
    _check_sizes(n_samples, n_trials)
    rate, temperature = _check_rate_temperature(rate, temperature)
    rate_dtype = dtype if rate_dtype is None else rate_dtype
    relaxed = official_pipeline_eat(rate, temperature, (n_trials, n_samples), method.split("-", 1)[1],
                                    dtype, device, rate_dtype=rate_dtype)
    exact = torch.poisson(torch.full((n_trials, n_samples), rate, dtype=torch.float32,
                                     device=relaxed.device))
    used = float(torch.tensor(official_pipeline_rate(rate, rate_dtype), dtype=dtype))  # as the sampler has it
    return {**fidelity_from_samples(relaxed, exact, rate), "rate_used": used}


#: The four pipelines that split the official analysis into its two precision effects (all with the
#: fixed cap): (name, rate rounded in, arithmetic in).
SEVEN_FOLD_PIPELINES = (
    ("official: rate 99 + bfloat16 arithmetic", torch.bfloat16, torch.bfloat16),
    ("rate rounding only: rate 99, float32", torch.bfloat16, torch.float32),
    ("arithmetic only: rate 100, bfloat16", torch.float32, torch.bfloat16),
    ("neither: rate 100, float32", torch.float32, torch.float32),
)


def w1_ratio(numerator: dict, denominator: dict) -> tuple[float, float]:
    r"""``numerator["w1"] / denominator["w1"]`` and its Monte Carlo standard error.

    The two are independent trial means (dicts of :func:`fidelity_from_samples`), so to first order
    :math:`\mathrm{se}(r)/r = \sqrt{(s_a/a)^2 + (s_b/b)^2}` (the delta method).
    """
    a, b = numerator["w1"], denominator["w1"]
    if not (a > 0 and b > 0):
        raise ValueError(f"both W1 values must be > 0, got {a!r} and {b!r}")
    ratio = a / b
    return ratio, ratio * math.hypot(numerator["w1_se"] / a, denominator["w1_se"] / b)


def seven_fold_runs(rate: float = 100.0, temperature: float = 0.5, n_samples: int = 50_000,
                    n_trials: int = 100, device=None, seed: int = 1, truncation_free: bool = True):
    r"""TEACHING ONLY -- the official pipeline's W1 ratio (sigmoid over cubic) split into its causes.

    Runs :func:`official_pipeline_fidelity` for ``eat-sigmoid`` and ``eat-cubic`` in each of the
    :data:`SEVEN_FOLD_PIPELINES`: the rate rounded in bfloat16 (100 becomes 99) or not, crossed with
    bfloat16 or float32 arithmetic, all with the fixed cap and an exact Poisson(``rate``) reference;
    with ``truncation_free`` also the package's :class:`~hitchhiker.RelaxedPoisson` in float32
    (:func:`~hitchhiker.book.fidelity.sweep.measure_fidelity`). Each (pipeline, method) is seeded
    from ``seed`` alone, so each run reproduces on its own; torch's global random state is left as it was.

    Returns ``(runs, ratios)``: ``runs`` one row per (pipeline, method) with the statistics of
    :func:`fidelity_from_samples` and ``rate_used``; ``ratios`` one row per pipeline with
    ``rate_used``, the cubic's mean ratio, both W1, their ratio and its standard error (:func:`w1_ratio`),
    ``n_samples`` and ``n_trials``.
    """
    import pandas as pd

    from .sweep import measure_fidelity

    rows = []
    with forked_rng(device):
        for name, rate_dtype, dtype in SEVEN_FOLD_PIPELINES:
            for method in ("eat-sigmoid", "eat-cubic"):
                torch.manual_seed(seed)
                stats = official_pipeline_fidelity(method, rate, temperature, n_samples, n_trials,
                                                   dtype=dtype, device=device, rate_dtype=rate_dtype)
                rows.append({"pipeline": name, "method": method, **stats})
        if truncation_free:
            for method in ("eat-sigmoid", "eat-cubic"):
                torch.manual_seed(seed)
                stats = measure_fidelity(method, rate, temperature, n_samples, n_trials, device)
                rows.append({"pipeline": "truncation-free (hh.RelaxedPoisson), float32", "method": method,
                             **stats, "rate_used": float(rate)})
    runs = pd.DataFrame(rows).set_index(["pipeline", "method"])
    ratio_rows = []
    for name in dict.fromkeys(runs.index.get_level_values(0)):
        sigmoid, cubic = runs.loc[(name, "eat-sigmoid")], runs.loc[(name, "eat-cubic")]
        ratio, ratio_se = w1_ratio(sigmoid, cubic)
        ratio_rows.append({"pipeline": name, "rate_used": cubic.rate_used,
                           "cubic_mean_ratio": cubic.mean_ratio, "w1_sigmoid": sigmoid.w1,
                           "w1_cubic": cubic.w1, "w1_ratio": ratio,
                           "w1_ratio_se": ratio_se, "n_samples": n_samples, "n_trials": n_trials})
    return runs, pd.DataFrame(ratio_rows).set_index("pipeline")
