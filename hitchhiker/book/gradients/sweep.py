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
  external decoder (the trained P-VAE decoder, or unit-norm random atoms until it exists:
  :func:`main_setup_decoder`), every latent at the same rate :math:`\lambda`;
* ``"model-generated"`` -- data drawn from the linear Poisson model itself at the rate being
  evaluated (:func:`~hitchhiker.book.objectives.sample_linear_poisson_patches`).

The official code draws its EAT samples with a fixed number of arrivals; the methods
:data:`FIXED_CAP_METHODS` (``"fixed-cap-eat-sigmoid"``, ``"fixed-cap-eat-cubic"``) use that teaching
sampler (:func:`~hitchhiker.book.fidelity.fixed_cap_eat`) so its effect on the gradients can be seen.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch

from ...estimators import (
    EAT_METHODS,
    PATHWISE_METHODS,
    check_method,
    pathwise_distribution,
    surrogate_loss,
)
from ...metrics import gradient_quality
from ..fidelity.sweep import fixed_cap_eat
from ..gradients.objectives import (
    _check_shapes,
    expected_reconstruction_loss,
    linear_decoder_grad_hessian,
    reconstruction_loss,
    sample_linear_poisson_patches,
)

#: The estimators compared in the gradient-quality chapter, in the paper's order (+ straight-through).
GRADIENT_METHODS = ("eat-sigmoid", "eat-cubic", "gsm", "st-cubic", "score")
#: TEACHING ONLY: EAT with the official code's fixed number of arrivals (biased; see fixed_cap_eat).
FIXED_CAP_METHODS = ("fixed-cap-eat-sigmoid", "fixed-cap-eat-cubic")
#: The two data setups of the gradient study (the ``setup`` column).
SETUPS = ("natural-patches", "model-generated")
#: Name of the fallback decoder of the natural-patch setup.
RANDOM_ATOMS = "random-unit-atoms"

__all__ = ["GRADIENT_METHODS", "FIXED_CAP_METHODS", "SETUPS", "RANDOM_ATOMS", "per_sample_gradients",
           "expected_eat_gradient", "expected_eat_quality", "gradient_quality_sweep", "random_unit_atoms",
           "main_setup_decoder"]

#: Largest number of arrival times one fixed-cap draw may hold (bounds its peak memory).
_MAX_FIXED_CAP_ELEMENTS = 1 << 24


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
    ``method`` may also be one of :data:`FIXED_CAP_METHODS` (teaching only: the official fixed-cap
    sampler, with the cap sized for the largest rate of ``log_rate``, as the official code does).
    """
    check_method(method, PATHWISE_METHODS + ("score",) + FIXED_CAP_METHODS)
    _check_shapes(log_rate, x, phi)
    _check_temperature(method, temperature)
    minimum = 2 if method == "score" else 1
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < minimum:
        raise ValueError(f"n_samples must be an integer >= {minimum} for {method!r}, got {n_samples!r}")
    if method in FIXED_CAP_METHODS:
        return _fixed_cap_gradients(method, log_rate, x, phi, temperature, n_samples)
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
    from ..fidelity.sweep import fixed_cap_n_arrivals

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


def random_unit_atoms(n_pixels: int = 256, n_latents: int = 512, seed: int = 0,
                      dtype=torch.float64, device=None) -> torch.Tensor:
    r"""A decoder of ``n_latents`` unit-norm random atoms: Gaussian columns divided by their norms.

    Returns ``phi`` of shape ``(n_pixels, n_latents)``, seeded by ``seed`` (drawn in float64 on the
    CPU, so the same on every machine, then moved to ``dtype`` and ``device``).
    """
    for name, value in (("n_pixels", n_pixels), ("n_latents", n_latents)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    generator = torch.Generator().manual_seed(int(seed))
    phi = torch.randn(n_pixels, n_latents, generator=generator, dtype=torch.float64)
    return (phi / phi.norm(dim=0, keepdim=True)).to(dtype=dtype, device=device)


def main_setup_decoder(path=None, label: str = "exact-long-seed0", n_pixels: int = 256,
                       n_latents: int = 512, seed: int = 0, dtype=torch.float64, device=None,
                       use_trained: bool = True):
    r"""The decoder of the natural-patch setup and its name: ``(phi, name)``, ``phi`` ``(M, K)``.

    The trained exact-gradient P-VAE decoder (by default the chapter's longest-trained exact model,
    whose dictionary is localised) when ``path`` (default
    ``<results>/pvae_decoders.pt``, a dict label -> ``(n_latents, n_pixels)`` tensor) exists:
    ``phi`` is the transpose of ``dict[label]`` and the name is ``"pvae-<label>"``. Otherwise
    :func:`random_unit_atoms` and the name :data:`RANDOM_ATOMS`. A file that exists but lacks
    ``label`` or holds a tensor of the wrong shape raises ``ValueError`` (never a silent fallback).
    ``use_trained=False`` asks for the random atoms whatever the file.
    """
    from pathlib import Path

    from ..common.runtime import results_dir

    path = Path(path) if path is not None else results_dir() / "pvae_decoders.pt"
    if not use_trained or not path.is_file():
        return random_unit_atoms(n_pixels, n_latents, seed, dtype, device), RANDOM_ATOMS
    decoders = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(decoders, dict) or label not in decoders:
        found = sorted(decoders) if isinstance(decoders, dict) else type(decoders).__name__
        raise ValueError(f"{path} has no decoder labelled {label!r} (it has {found})")
    weight = torch.as_tensor(decoders[label])
    if weight.shape != (n_latents, n_pixels):
        raise ValueError(f"decoder {label!r} in {path} has shape {tuple(weight.shape)}, expected "
                         f"(n_latents, n_pixels) = {(n_latents, n_pixels)}")
    if not bool(torch.isfinite(weight).all()):
        raise ValueError(f"decoder {label!r} in {path} is not finite")
    return weight.T.contiguous().to(dtype=dtype, device=device), f"pvae-{label}"


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


def expected_eat_quality(method: str, log_rate: torch.Tensor, x: torch.Tensor, phi: torch.Tensor,
                         temperature: float, g_star: torch.Tensor | None = None,
                         hessian: torch.Tensor | None = None) -> dict:
    r"""Gradient quality of an EAT method's *expected* gradient: no Monte Carlo error at all.

    With :math:`\bar g = \mathbb E g` from :func:`expected_eat_gradient` and :math:`b = \bar g - g^*`,
    returns the means over data items of ``cos_mean`` :math:`= \cos(\bar g, g^*)` (CosMean as
    :math:`N \to \infty`), ``bias_energy`` :math:`= b^\top H b / g^{*\top} H g^*` and ``rel_bias``
    :math:`= \lVert b\rVert / \lVert g^*\rVert`. ``g_star`` and ``hessian`` (from
    :func:`~hitchhiker.book.objectives.linear_decoder_grad_hessian`) are computed when not given.
    Inputs ``(B, K)``, ``(B, M)``, ``(M, K)``; computed in their dtype (use float64).
    """
    if g_star is None or hessian is None:
        g_star, hessian = linear_decoder_grad_hessian(log_rate, x, phi)
    expected = expected_eat_gradient(method, log_rate, x, phi, temperature)
    bias = expected - g_star
    signal = torch.einsum("bi,bij,bj->b", g_star, hessian, g_star)
    energy = torch.einsum("bi,bij,bj->b", bias, hessian, bias) / signal
    return {"cos_mean": float(torch.nn.functional.cosine_similarity(expected, g_star, dim=-1).mean()),
            "bias_energy": float(energy.mean()),
            "rel_bias": float((bias.norm(dim=-1) / g_star.norm(dim=-1)).mean())}


def gradient_quality_sweep(phi: torch.Tensor, rates: Iterable[float], temperatures: Iterable[float],
                           methods: Iterable[str] = GRADIENT_METHODS, n_samples: int = 100,
                           n_items: int = 32, seed: int = 0, progress: bool = False,
                           data: torch.Tensor | None = None, decoder: str = "custom") -> list:
    r"""Gradient quality of every method over a grid of rates and temperatures (paper Figure 3).

    The data items depend on ``data``:

    * ``None`` (setup ``"model-generated"``): for each rate :math:`\lambda`, ``n_items`` items drawn
      from the linear Poisson model at that rate
      (:func:`~hitchhiker.book.objectives.sample_linear_poisson_patches`);
    * a tensor ``(n, M)`` (setup ``"natural-patches"``): its first ``n_items`` rows, the same items at
      every rate (the paper's sweep: external data, every latent at the same rate).

    The log-rates are :math:`\log\lambda` for every latent, :math:`g^*` and :math:`H` come from the
    closed form, and each method's ``n_samples`` per-sample gradients are scored by
    :func:`~hitchhiker.metrics.gradient_quality` (per item, then mean and sd over items). The score
    function does not depend on :math:`\tau`; it is still drawn afresh at every temperature, so its
    rows are independent replicates. ``methods`` may include :data:`FIXED_CAP_METHODS`.

    For the EAT methods (not straight-through, not fixed-cap) the row also holds the *exact* expected
    gradient's quality, without Monte Carlo error: ``bias_energy_exact``, ``rel_bias_exact`` and
    ``cos_mean_exact`` :math:`= \cos(\mathbb E g, g^*)` (NaN for the other methods).
    ``indefinite_fraction`` is the fraction of items whose signal energy :math:`g^{*\top}Hg^*` is
    not positive (this happens at rates :math:`\lambda \lesssim 1`, where :math:`H` is strongly
    indefinite); the energy ratios of those items are not meaningful.

    Returns a list of row dicts with ``setup, decoder, method, rate, temperature, n_samples, n_items``
    and the metrics in snake case (``cos_mean``, ``cos_sample``, ``bias_energy``, ``noise_energy``,
    ``rel_bias``, ``rel_variance``, ``bias_energy_floor``, ``bias_chi2``), each with a ``_sd``
    column. ``decoder`` is a name for ``phi`` stored in every row. Samples and per-sample gradients
    use ``phi``'s device and dtype (float32 is several times faster than float64 for the sigmoid's
    long window); data, :math:`g^*`, :math:`H` and the metrics are always float64. Seeded by ``seed``.
    """
    methods = [check_method(m, PATHWISE_METHODS + ("score",) + FIXED_CAP_METHODS) for m in methods]
    rates, temperatures = [float(r) for r in rates], [float(t) for t in temperatures]
    if not rates or not temperatures or not methods:
        raise ValueError("rates, temperatures and methods must each be non-empty")
    for rate in rates:
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"rates must be finite and > 0, got {rate!r}")
    for tau in temperatures:
        _check_temperature("eat-cubic", tau)
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
    generator = torch.Generator(device=phi.device).manual_seed(seed)
    torch.manual_seed(seed)
    rows = []
    grid = [(rate, tau) for rate in rates for tau in temperatures]
    if progress:
        from tqdm.auto import tqdm
        grid = tqdm(grid, desc="gradient quality")
    cache = {}
    for rate, tau in grid:
        if rate not in cache:
            if data is None:
                x, _ = sample_linear_poisson_patches(exact_phi, rate, n_items, generator=generator)
            else:
                x = fixed_x
            log_rate = torch.full((n_items, phi.shape[1]), math.log(rate), dtype=torch.float64,
                                  device=phi.device)
            cache[rate] = (x, log_rate) + linear_decoder_grad_hessian(log_rate, x, exact_phi)
        x, log_rate, g_star, hessian = cache[rate]
        signal = torch.einsum("bi,bij,bj->b", g_star, hessian, g_star)
        for method in methods:
            grads = per_sample_gradients(method, log_rate.to(phi.dtype), x.to(phi.dtype), phi, tau,
                                         n_samples)
            quality = gradient_quality(grads.double(), g_star, hessian)
            row = {"setup": setup, "decoder": decoder, "method": method, "rate": rate,
                   "temperature": tau, "n_samples": n_samples, "n_items": n_items}
            row.update({_snake(k): v for k, v in quality.items()})
            row["indefinite_fraction"] = float((signal <= 0).double().mean())
            row["bias_energy_exact"] = row["rel_bias_exact"] = row["cos_mean_exact"] = float("nan")
            if method in EAT_METHODS:
                exact = expected_eat_quality(method, log_rate, x, exact_phi, tau, g_star, hessian)
                row.update({f"{key}_exact": value for key, value in exact.items()})
            rows.append(row)
    return rows


_SNAKE = {"CosMean": "cos_mean", "CosSample": "cos_sample", "BiasEnergy": "bias_energy",
          "NoiseEnergy": "noise_energy", "RelBias": "rel_bias", "RelVariance": "rel_variance",
          "BiasEnergyFloor": "bias_energy_floor", "BiasChi2": "bias_chi2"}


def _snake(key: str) -> str:
    base, sd = (key[:-3], "_sd") if key.endswith("_sd") else (key, "")
    return _SNAKE[base] + sd
