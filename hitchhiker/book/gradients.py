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
"""
from __future__ import annotations

import math
from typing import Iterable

import torch

from ..estimators import (
    EAT_METHODS,
    PATHWISE_METHODS,
    check_method,
    pathwise_distribution,
    surrogate_loss,
)
from ..metrics import gradient_quality
from .objectives import (
    _check_shapes,
    expected_reconstruction_loss,
    linear_decoder_grad_hessian,
    reconstruction_loss,
    sample_linear_poisson_patches,
)

#: The estimators compared in the gradient-quality chapter, in the paper's order (+ straight-through).
GRADIENT_METHODS = ("eat-sigmoid", "eat-cubic", "gsm", "st-cubic", "score")

__all__ = ["GRADIENT_METHODS", "per_sample_gradients", "expected_eat_gradient",
           "gradient_quality_sweep"]


def _check_temperature(method: str, temperature) -> None:
    if method == "score":
        return
    if temperature is None:
        raise ValueError(f"temperature is required for the pathwise method {method!r}")
    if not (isinstance(temperature, (int, float)) and not isinstance(temperature, bool)
            and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")


def per_sample_gradients(method: str, log_rate: torch.Tensor, x: torch.Tensor, phi: torch.Tensor,
                         temperature: float | None = None, n_samples: int = 100,
                         **kwargs) -> torch.Tensor:
    r"""``n_samples`` gradient estimates of :math:`\nabla_\theta L` by ``method``, shape ``(N,) + log_rate.shape``.

    Args:
        method: a registry name: a pathwise method (:data:`~hitchhiker.PATHWISE_METHODS`) or ``"score"``.
        log_rate: :math:`\theta = \log\lambda`, ``(B, K)`` or ``(K,)``.
        x: data items ``(B, M)`` (or ``(M,)``).
        phi: decoder ``(M, K)``.
        temperature: :math:`\tau` for pathwise methods (ignored by ``"score"``).
        n_samples: :math:`N` (``>= 2`` for the score function's leave-one-out baseline).
        kwargs: passed to the relaxed distribution (``n_categories`` for ``"gsm"``).

    Runs on ``log_rate``'s device and dtype; one backward pass for all samples.
    """
    check_method(method, PATHWISE_METHODS + ("score",))
    _check_shapes(log_rate, x, phi)
    _check_temperature(method, temperature)
    minimum = 2 if method == "score" else 1
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < minimum:
        raise ValueError(f"n_samples must be an integer >= {minimum} for {method!r}, got {n_samples!r}")
    theta = log_rate.detach().unsqueeze(0).expand((n_samples,) + log_rate.shape).clone()
    theta.requires_grad_(True)
    # n_samples=None: dimension 0 of the expanded leaf is the sample dimension, one draw per slice,
    # so one backward pass gives every slice's own gradient. (score: no temperature, as documented.)
    surrogate = surrogate_loss(method, theta.exp(), lambda z: reconstruction_loss(z, x, phi),
                               None if method == "score" else temperature, None, **kwargs)
    (grad,) = torch.autograd.grad(surrogate.sum(), theta)
    return grad * n_samples  # the surrogate averages over the N slices


def expected_eat_gradient(method: str, log_rate: torch.Tensor, x: torch.Tensor, phi: torch.Tensor,
                          temperature: float) -> torch.Tensor:
    r"""Exact expectation of an EAT method's pathwise gradient (same shape as ``log_rate``).

    .. math::  \mathbb E[g] = \nabla_\theta\Big(\lVert x - \Phi m(\lambda,\tau)\rVert^2
               + \sum_k v(\lambda_k,\tau)\lVert\phi_k\rVert^2\Big),

    with the relaxed count's Campbell moments :math:`m, v` (``RelaxedPoisson.mean``/``variance``).
    For EAT-cubic with :math:`\tau \le 1`, :math:`m = \lambda` and :math:`v = \lambda(1 - 9\tau/35)`, so
    the bias is :math:`-\tfrac{9\tau}{35}\,\lambda\odot d`. Only the non-straight-through EAT methods
    (:data:`~hitchhiker.EAT_METHODS`) have this closed form.
    """
    check_method(method, EAT_METHODS)
    _check_shapes(log_rate, x, phi)
    _check_temperature(method, temperature)
    with torch.enable_grad():
        theta = log_rate.detach().clone().requires_grad_(True)
        dist = pathwise_distribution(method, theta.exp(), temperature)
        loss = expected_reconstruction_loss(dist.mean, dist.variance, x, phi)
        (grad,) = torch.autograd.grad(loss.sum(), theta)
    return grad


def gradient_quality_sweep(phi: torch.Tensor, rates: Iterable[float], temperatures: Iterable[float],
                           methods: Iterable[str] = GRADIENT_METHODS, n_samples: int = 100,
                           n_items: int = 32, seed: int = 0, progress: bool = False) -> list:
    r"""Gradient quality of every method over a grid of rates and temperatures (paper Figure 3).

    For each rate :math:`\lambda`, ``n_items`` data items are drawn from the linear Poisson model
    (:func:`~hitchhiker.book.objectives.sample_linear_poisson_patches`), the log-rates are set to
    :math:`\log\lambda` for every latent, :math:`g^*` and :math:`H` come from the closed form, and each
    method's ``n_samples`` per-sample gradients are scored by :func:`~hitchhiker.metrics.gradient_quality`
    (per item, then mean and sd over items). The score function does not depend on :math:`\tau`; it is
    still drawn afresh at every temperature, so its rows are independent replicates.

    For the EAT methods (not straight-through) the row also holds the *exact* expected gradient's
    bias: ``bias_energy_exact`` and ``rel_bias_exact`` (NaN for the other methods).
    ``indefinite_fraction`` is the fraction of items whose signal energy :math:`g^{*\top}Hg^*` is
    not positive (this happens at rates :math:`\lambda \lesssim 1`, where :math:`H` is strongly
    indefinite); the energy ratios of those items are not meaningful.

    Returns a list of row dicts with ``method, rate, temperature, n_samples, n_items`` and the metrics
    in snake case (``cos_mean``, ``cos_sample``, ``bias_energy``, ``noise_energy``, ``rel_bias``,
    ``rel_variance``, ``bias_energy_floor``, ``bias_chi2``), each with a ``_sd`` column. Samples and
    per-sample gradients use ``phi``'s device and dtype (float32 is several times faster than float64
    for the sigmoid's long window); data, :math:`g^*`, :math:`H` and the metrics are always float64.
    Seeded by ``seed``.
    """
    methods = [check_method(m, PATHWISE_METHODS + ("score",)) for m in methods]
    rates, temperatures = [float(r) for r in rates], [float(t) for t in temperatures]
    if not rates or not temperatures or not methods:
        raise ValueError("rates, temperatures and methods must each be non-empty")
    for tau in temperatures:
        _check_temperature("eat-cubic", tau)
    exact_phi = phi.detach().double()
    generator = torch.Generator(device=phi.device).manual_seed(seed)
    torch.manual_seed(seed)
    rows = []
    grid = [(rate, tau) for rate in rates for tau in temperatures]
    if progress:
        from tqdm.auto import tqdm
        grid = tqdm(grid, desc="gradient quality")
    data = {}
    for rate, tau in grid:
        if rate not in data:
            x, _ = sample_linear_poisson_patches(exact_phi, rate, n_items, generator=generator)
            log_rate = torch.full((n_items, phi.shape[1]), math.log(rate), dtype=torch.float64,
                                  device=phi.device)
            data[rate] = (x, log_rate) + linear_decoder_grad_hessian(log_rate, x, exact_phi)
        x, log_rate, g_star, hessian = data[rate]
        signal = torch.einsum("bi,bij,bj->b", g_star, hessian, g_star)
        for method in methods:
            grads = per_sample_gradients(method, log_rate.to(phi.dtype), x.to(phi.dtype), phi, tau,
                                         n_samples)
            quality = gradient_quality(grads.double(), g_star, hessian)
            row = {"method": method, "rate": rate, "temperature": tau, "n_samples": n_samples,
                   "n_items": n_items}
            row.update({_snake(k): v for k, v in quality.items()})
            row["indefinite_fraction"] = float((signal <= 0).double().mean())
            row["bias_energy_exact"] = row["rel_bias_exact"] = float("nan")
            if method in EAT_METHODS:
                bias = expected_eat_gradient(method, log_rate, x, exact_phi, tau) - g_star
                energy = torch.einsum("bi,bij,bj->b", bias, hessian, bias) / signal
                row["bias_energy_exact"] = float(energy.mean())
                row["rel_bias_exact"] = float((bias.norm(dim=-1) / g_star.norm(dim=-1)).mean())
            rows.append(row)
    return rows


_SNAKE = {"CosMean": "cos_mean", "CosSample": "cos_sample", "BiasEnergy": "bias_energy",
          "NoiseEnergy": "noise_energy", "RelBias": "rel_bias", "RelVariance": "rel_variance",
          "BiasEnergyFloor": "bias_energy_floor", "BiasChi2": "bias_chi2"}


def _snake(key: str) -> str:
    base, sd = (key[:-3], "_sd") if key.endswith("_sd") else (key, "")
    return _SNAKE[base] + sd
