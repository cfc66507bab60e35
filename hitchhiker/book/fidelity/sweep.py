r"""Distributional fidelity experiments: how Poisson-like are relaxed samples? (paper Figures 1, 2).

For a method (a registry name such as ``"eat-cubic"``), a rate :math:`\lambda` and a temperature
:math:`\tau`, :func:`measure_fidelity` draws ``n_trials`` independent batches of ``n_samples``
relaxed counts and as many exact Poisson counts, and reports per trial

* the moment ratios :math:`\hat{\mathbb E}[\tilde z]/\lambda` and :math:`\widehat{\mathrm{Var}}[\tilde z]/\lambda`
  (:func:`~hitchhiker.metrics.moment_ratios`),
* the Wasserstein-1 distance to the exact sample, raw and divided by :math:`\sqrt\lambda`
  (:func:`~hitchhiker.metrics.wasserstein1`),

averaged over trials with the standard error :math:`s/\sqrt{\text{trials}}` of each.
:func:`fidelity_grid` runs a (method, rate, temperature) grid and adds the Campbell predictions
(:mod:`hitchhiker.moments`) for the EAT methods. Every draw is vectorised over trials and samples
and runs on any device.

:func:`fixed_cap_eat` is a *teaching* function: EAT with a fixed number of arrivals, as the
official code draws it. It is biased; the book uses it to show why :class:`~hitchhiker.RelaxedPoisson`
is truncation-free.
"""
from __future__ import annotations

import math
import time

import torch

from ...estimators import PATHWISE_METHODS, check_method, pathwise_distribution
from ..._validation import check_n_categories
from ...indicators import get_indicator
from ...metrics import moment_ratios, wasserstein1

#: The three relaxations the paper's fidelity figures compare, in its order.
FIDELITY_METHODS = ("eat-sigmoid", "eat-cubic", "gsm")
#: The paper's grid (paper-notes section 5): 13 rates and 11 temperatures.
PAPER_RATES = (0.1, 0.5, 1.0, 2.0, 5.0, 8.0, 10.0, 15.0, 20.0, 30.0, 40.0, 70.0, 100.0)
PAPER_TEMPERATURES = (0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)

#: Largest number of float elements one vectorised draw may hold (bounds peak memory of GSM).
_MAX_ELEMENTS = 1 << 24

_STAT_NAMES = ("mean_ratio", "var_ratio", "w1", "w1_normalised")


def _check_sizes(n_samples, n_trials):
    for name, value, low in (("n_samples", n_samples, 2), ("n_trials", n_trials, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def _as_float(value, name: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None


def _check_rate_temperature(rate, temperature):
    rate, temperature = _as_float(rate, "rate"), _as_float(temperature, "temperature")
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"rate must be finite and > 0, got {rate}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be finite and > 0, got {temperature}")
    return rate, temperature


def fidelity_from_samples(relaxed: torch.Tensor, exact: torch.Tensor, rate: float) -> dict:
    r"""Fidelity statistics of ``relaxed`` against ``exact`` Poisson(``rate``) samples.

    Both have shape ``(n_trials, n_samples)``. Returns a dict with, for each of ``mean_ratio``,
    ``var_ratio``, ``w1`` and ``w1_normalised`` (:math:`W_1/\sqrt\lambda`), the mean over trials and
    its standard error (key suffix ``_se``, the trial standard deviation over
    :math:`\sqrt{\text{trials}}`).
    """
    if relaxed.dim() != 2 or relaxed.shape != exact.shape:
        raise ValueError(f"relaxed and exact must both have shape (n_trials, n_samples), got "
                         f"{tuple(relaxed.shape)} and {tuple(exact.shape)}")
    _check_sizes(relaxed.shape[1], relaxed.shape[0])
    relaxed, exact = relaxed.detach().double(), exact.detach().to(relaxed.device).double()
    ratios = moment_ratios(relaxed, rate)
    w1 = wasserstein1(relaxed, exact)
    per_trial = {"mean_ratio": ratios.mean, "var_ratio": ratios.variance, "w1": w1,
                 "w1_normalised": w1 / math.sqrt(rate)}
    out = {}
    n_trials = relaxed.shape[0]
    for name in _STAT_NAMES:
        values = per_trial[name]
        out[name] = values.mean().item()
        out[f"{name}_se"] = (values.std() / math.sqrt(n_trials)).item()
    return out


def draw_relaxed(method: str, rate: float, temperature: float, shape, device=None,
                 dtype=torch.float32, **kwargs) -> torch.Tensor:
    """``shape`` relaxed counts of Poisson(``rate``) at ``temperature`` with a pathwise method.

    Drawn in slices along the first dimension so that GSM's ``K`` categories per sample never hold
    more than a few million numbers at once. ``kwargs`` go to the distribution (``n_categories``).
    """
    check_method(method, PATHWISE_METHODS)
    rate, temperature = _check_rate_temperature(rate, temperature)
    shape = tuple(shape)
    rate_t = torch.tensor(rate, dtype=dtype, device=device)
    dist = pathwise_distribution(method, rate_t, temperature, **kwargs)
    per_row = math.prod(shape[1:]) * getattr(dist, "n_categories", 1)
    rows = max(1, _MAX_ELEMENTS // max(1, per_row))
    with torch.no_grad():
        parts = [dist.rsample((min(rows, shape[0] - start),) + shape[1:])
                 for start in range(0, shape[0], rows)]
    return torch.cat(parts)


def measure_fidelity(method: str, rate: float, temperature: float, n_samples: int = 50_000,
                     n_trials: int = 100, device=None, dtype=torch.float32, **kwargs) -> dict:
    """Moment ratios and W1 of one method at one (rate, temperature), over ``n_trials`` trials.

    Each trial compares ``n_samples`` relaxed counts with ``n_samples`` fresh exact Poisson counts.
    Returns the dict of :func:`fidelity_from_samples` (means over trials and standard errors).
    """
    _check_sizes(n_samples, n_trials)
    rate, temperature = _check_rate_temperature(rate, temperature)
    relaxed = draw_relaxed(method, rate, temperature, (n_trials, n_samples), device, dtype, **kwargs)
    exact = torch.poisson(torch.full((n_trials, n_samples), rate, dtype=dtype, device=relaxed.device))
    return fidelity_from_samples(relaxed, exact, rate)


def campbell_ratios(method: str, temperature) -> tuple[float, float]:
    """Campbell-theorem (mean/λ, variance/λ) of an EAT method; ``(nan, nan)`` for GSM (no closed form)."""
    check_method(method, PATHWISE_METHODS)
    if method == "gsm":
        return math.nan, math.nan
    from ...moments import relaxed_mean, relaxed_variance

    indicator = method.split("-", 1)[1]
    tau = torch.tensor(float(temperature), dtype=torch.float64)
    return (relaxed_mean(1.0, tau, indicator).item(), relaxed_variance(1.0, tau, indicator).item())


def fidelity_grid(methods=FIDELITY_METHODS, rates=PAPER_RATES, temperatures=PAPER_TEMPERATURES,
                  n_samples: int = 50_000, n_trials: int = 100, device=None, dtype=torch.float32,
                  seed: int | None = 0, progress: bool = False):
    """:func:`measure_fidelity` over every (method, rate, temperature), as a ``pandas.DataFrame``.

    Columns: ``method, rate, temperature``, the statistics and their ``_se``, and the Campbell
    predictions ``mean_ratio_theory, var_ratio_theory`` (NaN for GSM). ``seed`` (if not ``None``)
    seeds torch once per (method, rate, temperature) from its position, so any sub-grid reproduces
    the same numbers as the full grid.
    """
    import pandas as pd

    methods, rates, temperatures = list(methods), list(rates), list(temperatures)
    for method in methods:
        check_method(method, PATHWISE_METHODS)
    cells = [(m, r, t) for m in methods for r in rates for t in temperatures]
    if progress:
        from tqdm.auto import tqdm

        cells = tqdm(cells, desc="fidelity grid")
    rows = []
    for method, rate, temperature in cells:
        if seed is not None:
            torch.manual_seed(_cell_seed(seed, method, rate, temperature))
        stats_ = measure_fidelity(method, rate, temperature, n_samples, n_trials, device, dtype)
        mean_theory, var_theory = campbell_ratios(method, temperature)
        rows.append({"method": method, "rate": float(rate), "temperature": float(temperature),
                     **stats_, "mean_ratio_theory": mean_theory, "var_ratio_theory": var_theory,
                     "n_samples": n_samples, "n_trials": n_trials})
    return pd.DataFrame(rows)


def _cell_seed(seed: int, method: str, rate: float, temperature: float) -> int:
    """A deterministic seed per grid cell (independent of Python's hash randomisation)."""
    text = f"{seed}|{method}|{float(rate)!r}|{float(temperature)!r}"
    return int.from_bytes(text.encode(), "little") % (2**31 - 1)


def truncated_poisson_moments(rate: float, n_categories: int) -> tuple[float, float]:
    r"""Mean and variance of Poisson(``rate``) conditioned on :math:`z < K` (``K = n_categories``).

    This is the distribution GSM relaxes: its hard (argmax) sample is an exact draw from it, and its
    relaxed sample tends to it as :math:`\tau \to 0`. With :math:`p_k \propto \lambda^k/k!` on
    :math:`k = 0, \dots, K-1`: mean :math:`\sum_k k p_k`, variance :math:`\sum_k k^2 p_k - (\sum_k k p_k)^2`.
    """
    rate = _as_float(rate, "rate")
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"rate must be finite and > 0, got {rate}")
    check_n_categories(n_categories)
    k = torch.arange(n_categories, dtype=torch.float64)
    log_p = k * math.log(rate) - torch.lgamma(k + 1)
    p = torch.softmax(log_p, 0)
    mean = float((k * p).sum())
    return mean, float((k**2 * p).sum()) - mean**2


def fixed_cap_n_arrivals(rate_max: float, tail: float = 1e-3) -> int:
    r"""The official code's arrival budget: the :math:`(1 - \text{tail})` quantile of Poisson(λ_max)."""
    rate_max = _as_float(rate_max, "rate_max")
    if not (math.isfinite(rate_max) and rate_max > 0):
        raise ValueError(f"rate_max must be finite and > 0, got {rate_max}")
    if not 0 < tail < 1:
        raise ValueError(f"tail must be in (0, 1), got {tail}")
    from scipy import stats

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


def time_rsample(method: str, rate: float, temperature: float, n_samples: int,
                 repeats: int = 3, device=None, dtype=torch.float32, cpu_threads: int | None = 1,
                 **kwargs) -> float:
    """Best-of-``repeats`` time (seconds) of one ``rsample`` of ``n_samples`` counts, with backward.

    Times what training pays per step: drawing the relaxed sample and back-propagating through it.
    On a CPU this is the process's CPU time with ``cpu_threads`` threads (default one: the work
    itself, robust to other programs sharing the machine; ``None`` keeps torch's setting); on a GPU
    it is synchronised wall-clock time. One untimed warm-up call comes first.
    """
    check_method(method, PATHWISE_METHODS)
    rate, temperature = _check_rate_temperature(rate, temperature)
    probe = torch.empty(0, device=device)
    on_gpu = probe.device.type != "cpu"
    clock = time.perf_counter if on_gpu else time.process_time

    def step():
        rate_t = torch.full((n_samples,), rate, dtype=dtype, device=probe.device, requires_grad=True)
        pathwise_distribution(method, rate_t, temperature, **kwargs).rsample().sum().backward()
        if probe.device.type == "cuda":
            torch.cuda.synchronize(probe.device)

    threads = torch.get_num_threads()
    if not on_gpu and cpu_threads is not None:
        torch.set_num_threads(int(cpu_threads))
    try:
        step()
        best = math.inf
        for _ in range(max(1, int(repeats))):
            start = clock()
            step()
            best = min(best, clock() - start)
    finally:
        torch.set_num_threads(threads)
    return best


# ---------------------------------------------------------------------------------------------------
# The official analysis pipeline, for teaching: reduced precision, rate rounding and the fixed cap.
# ---------------------------------------------------------------------------------------------------

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
                          dtype=torch.bfloat16, device=None, tail: float = 1e-3) -> torch.Tensor:
    r"""TEACHING ONLY -- relaxed EAT samples as the official fidelity analysis draws them. Biased.

    Every step runs in ``dtype`` (bfloat16 in the official analysis): the rate is
    :func:`official_pipeline_rate` (so :math:`\lambda = 100` becomes 99 in bfloat16), the number of
    arrivals is the fixed cap :func:`fixed_cap_n_arrivals` of that rate, the inter-arrival times
    :math:`E_i/\lambda`, their cumulative sum, :math:`f((1 - t_i)/\tau)` and the sum over arrivals are
    all rounded to ``dtype``. Returns the samples converted to float32, shape ``sample_shape``.
    With ``dtype=torch.float32`` this is the fixed-cap sampler without the precision loss
    (the same law as :func:`fixed_cap_eat`). Use :class:`~hitchhiker.RelaxedPoisson` for real work.
    """
    rate, temperature = _check_rate_temperature(rate, temperature)
    f = get_indicator(indicator)
    used = official_pipeline_rate(rate, dtype)
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
                               n_trials: int = 100, dtype=torch.bfloat16, device=None) -> dict:
    """TEACHING ONLY -- the fidelity statistics of :func:`official_pipeline_eat` samples.

    ``method`` is ``"eat-cubic"`` or ``"eat-sigmoid"``. The exact reference is drawn at the *requested*
    ``rate`` (as the official analysis does; its counts are exact integers in bfloat16 up to 256) and
    the statistics are those of :func:`fidelity_from_samples` (computed in float64, so only the
    sampling carries the reduced precision). Adds ``rate_used``, the rate the relaxed samples were
    actually drawn at.
    """
    check_method(method, ("eat-cubic", "eat-sigmoid"))
    _check_sizes(n_samples, n_trials)
    rate, temperature = _check_rate_temperature(rate, temperature)
    relaxed = official_pipeline_eat(rate, temperature, (n_trials, n_samples), method.split("-", 1)[1],
                                    dtype, device)
    exact = torch.poisson(torch.full((n_trials, n_samples), rate, dtype=torch.float32,
                                     device=relaxed.device))
    return {**fidelity_from_samples(relaxed, exact, rate), "rate_used": official_pipeline_rate(rate, dtype)}
