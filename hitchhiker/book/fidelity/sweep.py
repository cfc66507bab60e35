r"""Distributional fidelity experiments: how Poisson-like are relaxed samples? (paper Figures 1, 2).

For a method (a registry name such as ``"eat-cubic"``), a rate :math:`\lambda` and a temperature
:math:`\tau`, :func:`measure_fidelity` draws ``n_trials`` independent batches of ``n_samples``
relaxed counts and as many exact Poisson counts, and reports per trial

* the moment ratios :math:`\hat{\mathbb E}[\tilde z]/\lambda` and
  :math:`\widehat{\mathrm{Var}}[\tilde z]/\lambda` (:func:`~hitchhiker.metrics.moment_ratios`),
* the Wasserstein-1 distance to the exact sample, raw and divided by :math:`\sqrt\lambda`
  (:func:`~hitchhiker.metrics.wasserstein1`),

averaged over trials with the standard error :math:`s/\sqrt{\text{trials}}` of each.
:func:`fidelity_grid` runs a (method, rate, temperature) grid and adds the Campbell predictions
(:mod:`hitchhiker.moments`) for the EAT methods. Every draw is vectorised over trials and samples
and runs on any device. The official code's fixed-cap and bfloat16 samplers, for teaching, are in
:mod:`hitchhiker.book.fidelity.official`.

>>> import torch
>>> _ = torch.manual_seed(0)
>>> stats = measure_fidelity("eat-cubic", rate=5.0, temperature=0.1, n_samples=2_000, n_trials=4)
>>> abs(stats["mean_ratio"] - 1) < 0.05                  # the cubic EAT keeps the Poisson mean
True
>>> [round(r, 4) for r in campbell_ratios("eat-cubic", 0.35)]   # 1 - 9 tau / 35 for the variance
[1.0, 0.91]
"""
from __future__ import annotations

import math
import time

import pandas as pd
import torch

from ..._validation import check_n_categories
from ...estimators import PATHWISE_METHODS, check_method, pathwise_distribution
from ...metrics import moment_ratios, wasserstein1
from ...moments import relaxed_mean, relaxed_variance

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


def forked_rng(device=None):
    """A context in which reseeding torch leaves the caller's random state (CPU and ``device``) untouched."""
    device = torch.empty(0, device=device).device
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


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
