r"""Per-sample gradients of every estimator on the linear-decoder objective, in one vectorised pass.

For :math:`N` Monte Carlo samples the log-rates :math:`\theta` (``(B, K)``) are expanded to a leaf
tensor of shape ``(N, B, K)``; each slice ``n`` draws its own sample, and a single backward pass of
the estimator's surrogate gives all :math:`N \times B` per-sample gradients at once (the slices do
not interact, except through the score function's leave-one-out baseline). The estimator is
:func:`~hitchhiker.surrogate_loss` with ``n_samples=None`` (the leading dimension is the sample one):

* pathwise methods (``"eat-sigmoid"``, ``"eat-cubic"``, ``"gsm"``, ``"st-cubic"``, ...): a relaxed
  sample :math:`\tilde z_n` (:func:`~hitchhiker.pathwise_distribution`), and
  :math:`g_n = \nabla_\theta \lVert x - \Phi\tilde z_n\rVert^2`;
* ``"score"``: exact counts :math:`z_n \sim \mathrm{Poisson}(e^\theta)` and, through the
  score-function surrogate (:func:`~hitchhiker.score_function_surrogate`),
  :math:`g_n = (\ell(z_n) - b_n)\,\nabla_\theta \log p(z_n;\theta)` with the leave-one-out baseline
  :math:`b_n = \frac{1}{N-1}\sum_{j\neq n}\ell(z_j)` -- unbiased, but the per-sample gradients share the
  baseline, so they need all :math:`N` samples of one call.

For the EAT relaxations the *expected* gradient is known exactly: a pathwise gradient is unbiased for
the gradient of the relaxed objective :math:`\lVert x - \Phi m\rVert^2 + \sum_k v_k \lVert\phi_k\rVert^2`,
with the Campbell mean :math:`m` and variance :math:`v` of :math:`\tilde z`
(:func:`expected_eat_gradient`), which separates the true bias from Monte Carlo error.

Two setups (the ``setup`` column of the results):

* ``"natural-patches"`` -- the paper's: external data (whitened natural-image patches) and an
  external decoder, every latent at the same rate :math:`\lambda`. The main decoder is the trained,
  localised exact-gradient P-VAE decoder (:func:`~.decoders.main_setup_decoder`, named
  :data:`~.decoders.MAIN_DECODER` in the ``decoder`` column); unit-norm random atoms
  (:func:`~.decoders.random_unit_atoms`) are a sensitivity case;
* ``"model-generated"`` -- data drawn from the linear Poisson model itself at the rate being
  evaluated (:func:`~hitchhiker.book.gradients.objectives.sample_linear_poisson_patches`).

The official code draws its EAT samples with a fixed number of arrivals; the methods
:data:`FIXED_CAP_METHODS` (``"fixed-cap-eat-sigmoid"``, ``"fixed-cap-eat-cubic"``) use that teaching
sampler (:func:`~hitchhiker.book.fidelity.fixed_cap_eat`) so its effect on the gradients can be seen.
The method :data:`ADAPTIVE_METHODS` (``"adaptive-eat-cubic"``) is EAT-cubic with the rate-adaptive
temperature of :mod:`~hitchhiker.book.gradients.remedy` (the row's ``temperature`` is the nominal one).

**Curvature weighting.** :math:`H` is indefinite on this objective (a sizeable fraction of negative
eigenvalues in every item, column ``negative_eigenvalue_fraction``), so the energies are weighted by
the positive semi-definite :math:`|H|` (:func:`~hitchhiker.book.gradients.curvature.absolute_hessian`;
column ``weighting`` = ``"abs-hessian"``): BiasEnergy :math:`= b^\top|H|b / g^{*\top}|H|g^*` and
NoiseEnergy :math:`= \mathrm{tr}(|H|\Sigma) / g^{*\top}|H|g^*` are never negative.
"""
from __future__ import annotations

import hashlib
import math
from typing import Callable, Iterable

import torch

from ...estimators import (
    EAT_METHODS,
    PATHWISE_METHODS,
    check_method,
    pathwise_distribution,
    surrogate_loss,
)
from ...metrics import gradient_quality
from ..fidelity.official import fixed_cap_eat, fixed_cap_n_arrivals
from .curvature import absolute_hessian, first_order_cross_term, negative_eigenvalue_fraction
from .objectives import (
    _check_shapes,
    expected_reconstruction_loss,
    linear_decoder_grad_hessian,
    reconstruction_loss,
    sample_linear_poisson_patches,
)
from .remedy import rate_adaptive_temperature

#: The estimators compared in the gradient-quality chapter, in the paper's order (+ straight-through).
GRADIENT_METHODS = ("eat-sigmoid", "eat-cubic", "gsm", "st-cubic", "score")
#: TEACHING ONLY: EAT with the official code's fixed number of arrivals (biased; see fixed_cap_eat).
FIXED_CAP_METHODS = ("fixed-cap-eat-sigmoid", "fixed-cap-eat-cubic")
#: The two data setups of the gradient study (the ``setup`` column).
SETUPS = ("natural-patches", "model-generated")
#: EAT-cubic with the rate-adaptive temperature (:mod:`.remedy`): the low-rate remedy.
ADAPTIVE_METHODS = ("adaptive-eat-cubic",)
#: Expected arrivals the adaptive temperature keeps in the cubic's window (:math:`A` of :mod:`.remedy`).
ADAPTIVE_ARRIVALS = 1.0
#: The curvature weighting of the energies (the ``weighting`` column).
WEIGHTING = "abs-hessian"

__all__ = ["GRADIENT_METHODS", "FIXED_CAP_METHODS", "ADAPTIVE_METHODS", "ADAPTIVE_ARRIVALS", "SETUPS",
           "WEIGHTING", "per_sample_gradients", "expected_eat_gradient", "expected_eat_quality",
           "gradient_quality_sweep", "exact_quality_cases"]

#: Largest number of arrival times one fixed-cap draw may hold (bounds its peak memory).
_MAX_FIXED_CAP_ELEMENTS = 1 << 24


def _check_temperature(method: str, temperature) -> None:
    if method == "score":
        return
    if method in ADAPTIVE_METHODS and isinstance(temperature, (int, float)) and temperature > 1:
        raise ValueError(f"temperature must be <= 1 for {method!r} (the cubic's mean is exact only "
                         f"for tau <= 1), got {temperature!r}")
    if temperature is None:
        raise ValueError(f"temperature is required for the pathwise method {method!r}")
    if not (isinstance(temperature, (int, float)) and not isinstance(temperature, bool)
            and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")


def per_sample_gradients(method: str, log_rate: torch.Tensor, x: torch.Tensor, phi: torch.Tensor,
                         temperature: float | None = None, n_samples: int = 100,
                         **kwargs) -> torch.Tensor:
    r"""``n_samples`` gradient estimates of :math:`\nabla_\theta L` by ``method``: ``(N,) + log_rate.shape``.

    Args:
        method: a registry name: a pathwise method (:data:`~hitchhiker.PATHWISE_METHODS`) or ``"score"``.
        log_rate: :math:`\theta = \log\lambda`, ``(B, K)`` or ``(K,)``.
        x: data items ``(B, M)`` (or ``(M,)``).
        phi: decoder ``(M, K)``.
        temperature: :math:`\tau` for pathwise methods (ignored by ``"score"``).
        n_samples: :math:`N` (``>= 2`` for the score function's leave-one-out baseline).
        kwargs: passed to the relaxed distribution (``n_categories`` for ``"gsm"``).

    Runs on ``log_rate``'s device and dtype; one backward pass for all samples.
    ``method`` may also be one of :data:`FIXED_CAP_METHODS` (teaching only: the official fixed-cap
    sampler, with the cap sized for the largest rate of ``log_rate``, as the official code does) or
    :data:`ADAPTIVE_METHODS` (EAT-cubic at the per-element temperature
    :func:`~hitchhiker.book.gradients.remedy.rate_adaptive_temperature` of ``temperature``).
    """
    check_method(method, PATHWISE_METHODS + ("score",) + FIXED_CAP_METHODS + ADAPTIVE_METHODS)
    _check_shapes(log_rate, x, phi)
    _check_temperature(method, temperature)
    minimum = 2 if method == "score" else 1
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < minimum:
        raise ValueError(f"n_samples must be an integer >= {minimum} for {method!r}, got {n_samples!r}")
    if method in FIXED_CAP_METHODS:
        return _fixed_cap_gradients(method, log_rate, x, phi, temperature, n_samples)
    if method in ADAPTIVE_METHODS:
        method, temperature = "eat-cubic", rate_adaptive_temperature(log_rate.detach().exp(), temperature,
                                                                      ADAPTIVE_ARRIVALS)
    theta = log_rate.detach().unsqueeze(0).expand((n_samples,) + log_rate.shape).clone()
    theta.requires_grad_(True)
    # n_samples=None: dimension 0 of the expanded leaf is the sample dimension, one draw per slice,
    # so one backward pass gives every slice's own gradient. (score: no temperature, as documented.)
    surrogate = surrogate_loss(method, theta.exp(), lambda z: reconstruction_loss(z, x, phi),
                               None if method == "score" else temperature, None, **kwargs)
    (grad,) = torch.autograd.grad(surrogate.sum(), theta)
    return grad * n_samples  # the surrogate averages over the N slices


def _fixed_cap_gradients(method, log_rate, x, phi, temperature, n_samples):
    """Per-sample pathwise gradients through :func:`~hitchhiker.book.fidelity.fixed_cap_eat`,
    drawn in slices of samples so that the arrival times never exceed a few million numbers."""
    indicator = method.split("-")[-1]
    rate_max = float(log_rate.detach().max().exp())
    per_sample = log_rate.numel() * fixed_cap_n_arrivals(rate_max)
    step = max(1, _MAX_FIXED_CAP_ELEMENTS // per_sample)
    parts = []
    for start in range(0, n_samples, step):
        size = min(step, n_samples - start)
        theta = log_rate.detach().unsqueeze(0).expand((size,) + log_rate.shape).clone()
        theta.requires_grad_(True)
        z = fixed_cap_eat(theta.exp(), temperature, (), indicator, rate_max=rate_max)
        (grad,) = torch.autograd.grad(reconstruction_loss(z, x, phi).sum(), theta)
        parts.append(grad)
    return torch.cat(parts)


def _distribution_temperature(method: str, log_rate: torch.Tensor, temperature):
    """The library method and its temperature (a tensor for the adaptive method)."""
    if method in ADAPTIVE_METHODS:
        return "eat-cubic", rate_adaptive_temperature(log_rate.detach().exp(), temperature, ADAPTIVE_ARRIVALS)
    return method, temperature


def expected_eat_gradient(method: str, log_rate: torch.Tensor, x: torch.Tensor, phi: torch.Tensor,
                          temperature: float) -> torch.Tensor:
    r"""Exact expectation of an EAT method's pathwise gradient (same shape as ``log_rate``).

    .. math::  \mathbb E[g] = \nabla_\theta\Big(\lVert x - \Phi m(\lambda,\tau)\rVert^2
               + \sum_k v(\lambda_k,\tau)\lVert\phi_k\rVert^2\Big),

    with the relaxed count's Campbell moments :math:`m, v` (``RelaxedPoisson.mean``/``variance``).
    For EAT-cubic with :math:`\tau \le 1`, :math:`m = \lambda` and :math:`v = \lambda(1 - 9\tau/35)`, so
    the bias is :math:`-\tfrac{9\tau}{35}\,\lambda\odot d`. Only the non-straight-through EAT methods
    (:data:`~hitchhiker.EAT_METHODS`) and :data:`ADAPTIVE_METHODS` (per-element :math:`\tau_k`, held
    fixed: no gradient through the temperature) have this closed form.
    """
    check_method(method, EAT_METHODS + ADAPTIVE_METHODS)
    _check_shapes(log_rate, x, phi)
    _check_temperature(method, temperature)
    with torch.enable_grad():
        theta = log_rate.detach().clone().requires_grad_(True)
        base, tau = _distribution_temperature(method, log_rate, temperature)
        dist = pathwise_distribution(base, theta.exp(), tau)
        loss = expected_reconstruction_loss(dist.mean, dist.variance, x, phi)
        (grad,) = torch.autograd.grad(loss.sum(), theta)
    return grad


def _quad(u: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return torch.einsum("bi,bij,bj->b", u, weight, u)


def expected_eat_quality(method: str, log_rate: torch.Tensor, x: torch.Tensor, phi: torch.Tensor,
                         temperature: float, g_star: torch.Tensor | None = None,
                         weight: torch.Tensor | None = None) -> dict:
    r"""Gradient quality of an EAT method's *expected* gradient: no Monte Carlo error at all.

    With :math:`\bar g = \mathbb E g` from :func:`expected_eat_gradient` and :math:`b = \bar g - g^*`,
    returns the means over data items of ``cos_mean`` :math:`= \cos(\bar g, g^*)` (CosMean as
    :math:`N \to \infty`), ``bias_energy`` :math:`= b^\top W b / g^{*\top} W g^*` (a squared ratio),
    ``bias_ratio`` :math:`= \lVert b\rVert / \lVert g^*\rVert` (unsquared) and ``cross_term``
    :math:`= g^{*\top} b / \lVert g^*\rVert^2` (the first-order effect of the bias on a step,
    :func:`~hitchhiker.book.gradients.curvature.first_order_cross_term`). The weighting :math:`W` is
    ``weight`` (default :math:`|H|`, :func:`~hitchhiker.book.gradients.curvature.absolute_hessian`).
    ``g_star`` is computed when not given. Inputs ``(B, K)``, ``(B, M)``, ``(M, K)``; use float64.
    """
    if g_star is None or weight is None:
        g_star, hessian = linear_decoder_grad_hessian(log_rate, x, phi)
        weight = absolute_hessian(hessian) if weight is None else weight
    expected = expected_eat_gradient(method, log_rate, x, phi, temperature)
    bias = expected - g_star
    energy = _quad(bias, weight) / _quad(g_star, weight)
    return {"cos_mean": float(torch.nn.functional.cosine_similarity(expected, g_star, dim=-1).mean()),
            "bias_energy": float(energy.mean()),
            "bias_ratio": float((bias.norm(dim=-1) / g_star.norm(dim=-1)).mean()),
            "cross_term": float(first_order_cross_term(bias, g_star).mean())}


def exact_quality_cases(cases, rate: float, temperatures, methods=("eat-sigmoid", "eat-cubic")) -> list:
    r"""Exact (Monte-Carlo-free) EAT gradient quality for several data/decoder cases at one rate.

    ``cases`` is a sequence of ``(name, x, phi)`` (``x`` ``(B, M)``, ``phi`` ``(M, K)``); the names must
    be distinct (``ValueError`` otherwise: two cases under one name would silently merge in a table).
    Returns one row dict per (case, method, temperature) with :func:`expected_eat_quality`'s values
    (weighted by :math:`|H|`) and ``negative_eigenvalue_fraction`` of :math:`H`, computed in float64.
    """
    cases = list(cases)
    names = [case[0] for case in cases]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"case names must be distinct; repeated: {duplicates}")
    rows = []
    for name, x, phi in cases:
        x, phi = x.detach().double(), phi.detach().double()
        theta = torch.full((x.shape[0], phi.shape[1]), math.log(rate), dtype=torch.float64, device=phi.device)
        g_star, hessian = linear_decoder_grad_hessian(theta, x, phi)
        weight = absolute_hessian(hessian)
        negative = float(negative_eigenvalue_fraction(hessian).mean())
        for tau in temperatures:
            for method in methods:
                quality = expected_eat_quality(method, theta, x, phi, tau, g_star, weight)
                rows.append({"case": name, "method": method, "temperature": float(tau), **quality,
                             "negative_eigenvalue_fraction": negative})
    return rows


def _cell_seed(seed: int, *values: float) -> int:
    """A seed for one grid cell that depends only on ``seed`` and the cell (so a resumed grid draws
    what an uninterrupted one would)."""
    text = ",".join([str(int(seed))] + [repr(float(v)) for v in values])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:6], "big")


def gradient_quality_sweep(phi: torch.Tensor, rates: Iterable[float], temperatures: Iterable[float],
                           methods: Iterable[str] = GRADIENT_METHODS, n_samples: int = 100,
                           n_items: int = 32, seed: int = 0, progress: bool = False,
                           data: torch.Tensor | None = None, decoder: str = "custom",
                           on_cell: Callable[[list], None] | None = None) -> list:
    r"""Gradient quality of every method over a grid of rates and temperatures (paper Figure 3).

    The data items depend on ``data``:

    * ``None`` (setup ``"model-generated"``): for each rate :math:`\lambda`, ``n_items`` items drawn
      from the linear Poisson model at that rate
      (:func:`~hitchhiker.book.gradients.objectives.sample_linear_poisson_patches`);
    * a tensor ``(n, M)`` (setup ``"natural-patches"``): its first ``n_items`` rows, the same items at
      every rate (the paper's sweep: external data, every latent at the same rate).

    The log-rates are :math:`\log\lambda` for every latent, :math:`g^*` and :math:`H` come from the
    closed form, and each method's ``n_samples`` per-sample gradients are scored by
    :func:`~hitchhiker.metrics.gradient_quality` (per item, then mean and sd over items) with the
    weighting :math:`|H|` (column ``weighting``; see the module docstring), so no energy is negative.
    The score function does not depend on :math:`\tau`; it is still drawn afresh at every
    temperature, so its rows are independent replicates. ``methods`` may include
    :data:`FIXED_CAP_METHODS` and :data:`ADAPTIVE_METHODS`. Every (rate, temperature) cell is seeded
    from ``seed`` and the cell alone, so a grid computed cell by cell gives the same numbers.

    Besides the metrics of :func:`~hitchhiker.metrics.gradient_quality` (in snake case: ``cos_mean``,
    ``cos_sample``, ``bias_energy``, ``noise_energy``, ``bias_ratio``, ``rel_variance``,
    ``bias_energy_floor``, ``bias_chi2``, each with ``_sd``) a row holds

    * ``cross_term`` (and ``_sd``): :math:`g^{*\top}b/\lVert g^*\rVert^2` of the measured bias, the
      first-order effect of the bias on a step (includes Monte Carlo error);
    * for the EAT methods (not straight-through, not fixed-cap) the *exact* expected gradient's
      ``bias_energy_exact``, ``bias_ratio_exact``, ``cos_mean_exact`` and ``cross_term_exact``
      (NaN for the other methods);
    * ``effective_temperature``: the mean temperature the samples used (the adaptive method's
      :math:`\tau_k`; the nominal :math:`\tau` otherwise; NaN for the score function);
    * ``negative_eigenvalue_fraction``: the mean over items of the fraction of :math:`H`'s eigenvalues
      that are negative, and ``nonpositive_signal_fraction``: the fraction of items with
      :math:`g^{*\top}Hg^* \le 0` (where the unweighted-by-:math:`|H|` ratios would be meaningless).

    Returns a list of row dicts starting ``setup, decoder, method, rate, temperature, n_samples,
    n_items, weighting``. ``decoder`` is a name for ``phi`` stored in every row. ``on_cell``, if given,
    is called with the rows of each (rate, temperature) cell as soon as it is done (a checkpoint hook).
    Samples and per-sample gradients use ``phi``'s device and dtype (float32 is several times faster
    than float64 for the sigmoid's long window); data, :math:`g^*`, :math:`H` and the metrics are always
    float64.
    """
    methods = [check_method(m, PATHWISE_METHODS + ("score",) + FIXED_CAP_METHODS + ADAPTIVE_METHODS)
               for m in methods]
    rates, temperatures = [float(r) for r in rates], [float(t) for t in temperatures]
    if not rates or not temperatures or not methods:
        raise ValueError("rates, temperatures and methods must each be non-empty")
    for rate in rates:
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"rates must be finite and > 0, got {rate!r}")
    for tau in temperatures:
        _check_temperature("eat-cubic", tau)
        if ADAPTIVE_METHODS[0] in methods and tau > 1:
            raise ValueError(f"{ADAPTIVE_METHODS[0]!r} needs temperatures <= 1, got {tau!r}")
    if isinstance(n_items, bool) or not isinstance(n_items, int) or n_items < 1:
        raise ValueError(f"n_items must be a positive integer, got {n_items!r}")
    exact_phi = phi.detach().double()
    setup = "model-generated" if data is None else "natural-patches"
    if data is not None:
        if not torch.is_tensor(data) or data.dim() != 2 or data.shape[1] != phi.shape[0]:
            raise ValueError(f"data must be a (n, M) tensor with M = {phi.shape[0]} pixels, got "
                             f"{tuple(data.shape) if torch.is_tensor(data) else type(data).__name__}")
        if data.shape[0] < n_items:
            raise ValueError(f"data holds {data.shape[0]} items, fewer than n_items = {n_items}")
        fixed_x = data[:n_items].detach().to(dtype=torch.float64, device=phi.device)
    rows = []
    grid = [(rate, tau) for rate in rates for tau in temperatures]
    if progress:
        from tqdm.auto import tqdm
        grid = tqdm(grid, desc="gradient quality")
    cache = {}
    for rate, tau in grid:
        if rate not in cache:
            cache.clear()   # one rate at a time: |H| is (n_items, K, K)
            if data is None:
                generator = torch.Generator(device=phi.device).manual_seed(_cell_seed(seed, rate))
                x, _ = sample_linear_poisson_patches(exact_phi, rate, n_items, generator=generator)
            else:
                x = fixed_x
            log_rate = torch.full((n_items, phi.shape[1]), math.log(rate), dtype=torch.float64,
                                  device=phi.device)
            g_star, hessian = linear_decoder_grad_hessian(log_rate, x, exact_phi)
            signal = _quad(g_star, hessian)
            cache[rate] = (x, log_rate, g_star, absolute_hessian(hessian),
                           float((signal <= 0).double().mean()),
                           float(negative_eigenvalue_fraction(hessian).mean()))
        x, log_rate, g_star, weight, nonpositive, negative = cache[rate]
        torch.manual_seed(_cell_seed(seed, rate, tau))
        cell_rows = []
        for method in methods:
            grads = per_sample_gradients(method, log_rate.to(phi.dtype), x.to(phi.dtype), phi, tau,
                                         n_samples).double()
            quality = gradient_quality(grads, g_star, weight)
            cross = first_order_cross_term(grads.mean(0) - g_star, g_star)
            row = {"setup": setup, "decoder": decoder, "method": method, "rate": rate,
                   "temperature": tau, "n_samples": n_samples, "n_items": n_items, "weighting": WEIGHTING}
            row.update({_snake(k): v for k, v in quality.items()})
            row["cross_term"] = float(cross.mean())
            row["cross_term_sd"] = float(cross.std()) if cross.numel() > 1 else 0.0
            if method == "score":
                row["effective_temperature"] = float("nan")
            else:
                _, used = _distribution_temperature(method, log_rate, tau)
                row["effective_temperature"] = float(torch.as_tensor(used, dtype=torch.float64).mean())
            row["negative_eigenvalue_fraction"] = negative
            row["nonpositive_signal_fraction"] = nonpositive
            for key in ("bias_energy", "bias_ratio", "cos_mean", "cross_term"):
                row[f"{key}_exact"] = float("nan")
            if method in EAT_METHODS + ADAPTIVE_METHODS:
                exact = expected_eat_quality(method, log_rate, x, exact_phi, tau, g_star, weight)
                row.update({f"{key}_exact": value for key, value in exact.items()})
            cell_rows.append(row)
        rows.extend(cell_rows)
        if on_cell is not None:
            on_cell(cell_rows)
    return rows


_SNAKE = {"CosMean": "cos_mean", "CosSample": "cos_sample", "BiasEnergy": "bias_energy",
          "NoiseEnergy": "noise_energy", "RelBias": "bias_ratio", "RelVariance": "rel_variance",
          "BiasEnergyFloor": "bias_energy_floor", "BiasChi2": "bias_chi2"}


def _snake(key: str) -> str:
    base, sd = (key[:-3], "_sd") if key.endswith("_sd") else (key, "")
    return _SNAKE[base] + sd
