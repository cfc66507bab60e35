r"""Metrics on samples: how close a relaxed Poisson sample is to the real thing.

* :func:`moment_ratios` -- empirical mean and variance divided by the Poisson's own (both equal
  :math:`\lambda`): :math:`\hat{\mathbb E}[\tilde z]/\lambda` and
  :math:`\widehat{\mathrm{Var}}[\tilde z]/\lambda`.
* :func:`wasserstein1` -- the Wasserstein-1 distance between two equal-size samples,
  :math:`W_1 = \frac1n \sum_i |x_{(i)} - y_{(i)}|` (sorted samples), optionally divided by
  :math:`\sqrt\lambda`, the Poisson's standard deviation, so that rates can be compared.

Both work along one dimension (``dim``, the last by default) of tensors of any shape, so a batch of
trials is one call.

* :func:`gradient_quality` -- how good ``N`` per-sample gradient estimates are against an exact
  gradient :math:`g^*` and Hessian :math:`H` (paper Figure 3): CosMean, CosSample, the
  curvature-weighted BiasEnergy and NoiseEnergy, raw relative bias and variance
  (:func:`gradient_quality_per_item` gives them per data item).
"""
from __future__ import annotations

import operator
from typing import NamedTuple

import torch

from ._validation import real_tensor


class MomentRatios(NamedTuple):
    """Empirical moments over the Poisson's: ``mean`` = mean/λ, ``variance`` = unbiased variance/λ."""

    mean: torch.Tensor
    variance: torch.Tensor


def _positive_rate(rate, like: torch.Tensor, name: str = "rate") -> torch.Tensor:
    """``rate`` as a tensor on ``like``'s device and dtype; ``ValueError`` unless finite and > 0."""
    try:
        rate = torch.as_tensor(rate, dtype=like.dtype, device=like.device)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{name} must be a number or a tensor, got {type(rate).__name__}") from err
    if not bool((torch.isfinite(rate) & (rate > 0)).all()):
        raise ValueError(f"{name} must be finite and > 0, got {rate.flatten()[:3].tolist()}")
    return rate


def _check_dim(samples: torch.Tensor, dim, name: str) -> int:
    """``dim`` as an index of ``samples``' dimensions, else ``IndexError`` naming both."""
    if isinstance(dim, bool) or not hasattr(type(dim), "__index__"):
        raise TypeError(f"dim must be an int, got {type(dim).__name__} {dim!r}")
    dim = operator.index(dim)
    if not -samples.dim() <= dim < samples.dim():
        raise IndexError(f"dim={dim} is out of range for {name} of shape {tuple(samples.shape)} "
                         f"({samples.dim()} dimensions)")
    return dim


def _float_samples(samples, name: str) -> torch.Tensor:
    samples = real_tensor(samples, name, expected="a tensor or a sequence of numbers")
    if not samples.is_floating_point():
        samples = samples.to(torch.get_default_dtype())
    if samples.dim() == 0:
        raise ValueError(f"{name} must have at least one dimension (the samples)")
    return samples


def moment_ratios(samples, rate, dim: int = -1) -> MomentRatios:
    r"""Empirical mean and variance of ``samples`` along ``dim``, divided by the Poisson rate.

    .. math:: \frac{\bar z}{\lambda}, \qquad \frac{1}{\lambda}\,\frac{1}{n-1}\sum_i (z_i - \bar z)^2.

    A faithful relaxation of Poisson(:math:`\lambda`) gives ratios of 1 for both.

    Args:
        samples: draws of the relaxed (or exact) count, ``n >= 2`` of them along ``dim``.
        rate: :math:`\lambda > 0`, broadcastable with the result (``samples`` without ``dim``).
        dim: the sample dimension.

    >>> moment_ratios(torch.tensor([1.0, 3.0]), 2.0)
    MomentRatios(mean=tensor(1.), variance=tensor(1.))
    """
    samples = _float_samples(samples, "samples")
    dim = _check_dim(samples, dim, "samples")
    if samples.shape[dim] < 2:
        raise ValueError(f"samples needs at least 2 draws along dim={dim} for a variance, "
                         f"got shape {tuple(samples.shape)}")
    rate = _positive_rate(rate, samples)
    return MomentRatios(samples.mean(dim) / rate, samples.var(dim) / rate)


def wasserstein1(x, y, rate=None, dim: int = -1) -> torch.Tensor:
    r"""Wasserstein-1 distance between two equal-size samples along ``dim``.

    For one-dimensional samples of the same size :math:`n` the optimal transport plan matches order
    statistics, so

    .. math:: W_1(x, y) = \frac1n \sum_{i=1}^n |x_{(i)} - y_{(i)}|,

    the same number as ``scipy.stats.wasserstein_distance(x, y)``. With ``rate`` given the result is
    divided by :math:`\sqrt\lambda` (the Poisson standard deviation), which puts all rates on one
    scale.

    Args:
        x, y: samples with the same shape (``n >= 1`` draws along ``dim``; other dimensions are
            batch dimensions, e.g. trials).
        rate: optional :math:`\lambda > 0` for the normalisation, broadcastable with the result.
        dim: the sample dimension.

    >>> wasserstein1(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 3.0]))
    tensor(1.5000)
    """
    x, y = _float_samples(x, "x"), _float_samples(y, "y")
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape (equal-size samples), got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    dim = _check_dim(x, dim, "x")
    if x.shape[dim] == 0:
        raise ValueError("x and y must hold at least one sample")
    dtype = torch.promote_types(x.dtype, y.dtype)
    x, y = x.to(dtype), y.to(device=x.device, dtype=dtype)
    distance = (x.sort(dim).values - y.sort(dim).values).abs().mean(dim)
    if rate is not None:
        distance = distance / _positive_rate(rate, distance).sqrt()
    return distance


# --- Gradient quality (paper Figure 3) -------------------------------------------------------------

#: The per-item statistics of :func:`gradient_quality_per_item`, in the order the book reports them.
GRADIENT_QUALITY_METRICS = ("CosMean", "CosSample", "BiasEnergy", "NoiseEnergy", "RelBias",
                            "RelVariance", "BiasEnergyFloor", "BiasChi2")


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine along the last dimension; 0 where either vector is exactly zero (never NaN)."""
    denominator = (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(torch.finfo(a.dtype).tiny)
    return (a * b).sum(-1) / denominator


def gradient_quality_per_item(grads, g_star, hessian) -> dict:
    r"""Gradient-quality statistics of ``N`` per-sample gradients, one value per data item.

    Args:
        grads: per-sample gradient estimates :math:`g_1, \dots, g_N`, shape ``(N, B, K)`` (or
            ``(N, K)`` for one data item), ``N >= 2``.
        g_star: the exact gradient :math:`g^*`, shape ``(B, K)`` (or ``(K,)``).
        hessian: the exact Hessian :math:`H`, shape ``(B, K, K)`` (or ``(K, K)``).

    With :math:`\bar g = \frac1N\sum_n g_n`, bias :math:`b = \bar g - g^*`, unbiased covariance
    :math:`\Sigma = \frac{1}{N-1}\sum_n (g_n - \bar g)(g_n - \bar g)^\top` and signal energy
    :math:`S = g^{*\top} H g^*`, returns a dict of ``(B,)`` tensors (scalars for one item):

    * ``CosMean`` :math:`= \cos(\bar g, g^*)`; ``CosSample`` :math:`= \frac1N\sum_n \cos(g_n, g^*)`
      (a zero vector has cosine 0);
    * ``BiasEnergy`` :math:`= b^\top H b / S`; ``NoiseEnergy`` :math:`= \mathrm{tr}(H\Sigma) / S` -- the
      second-order change of the loss caused by the error of a gradient step, relative to the change
      the exact gradient causes (:math:`\lesssim 0.1` negligible, :math:`\gtrsim 1` the error dominates);
    * ``RelBias`` :math:`= \lVert b\rVert / \lVert g^*\rVert` and ``RelVariance``
      :math:`= \mathrm{tr}\,\Sigma / \lVert g^*\rVert^2`: the same without curvature weighting;
    * ``BiasEnergyFloor`` :math:`= \mathrm{NoiseEnergy}/N`: what ``BiasEnergy`` is expected to be for an
      *unbiased* estimator, because :math:`\mathbb E[b^\top H b] = \beta^\top H\beta + \mathrm{tr}(H\Sigma)/N`
      for a true bias :math:`\beta`; a measured ``BiasEnergy`` near this floor is Monte Carlo error;
    * ``BiasChi2`` :math:`= \frac1K\sum_k N b_k^2 / \Sigma_{kk}`: the mean squared t-statistic of the
      bias coordinates, about 1 (precisely :math:`(N-1)/(N-3)`) for an unbiased estimator and growing
      like :math:`N\beta_k^2/\Sigma_{kk}` otherwise. Coordinates with :math:`\Sigma_{kk} = 0` are skipped.

    The Hessian of a non-convex objective can be indefinite; the energies are then still the
    second-order loss changes (and can be negative), and :math:`S \le 0` makes the ratios meaningless
    for that item -- the linear-decoder objective has :math:`S > 0` at the rates of the book's Figure 3.
    """
    grads, g_star, hessian = (_float_samples(t, name) for t, name in
                              ((grads, "grads"), (g_star, "g_star"), (hessian, "hessian")))
    single = g_star.dim() == 1
    if single:
        grads, g_star, hessian = grads.unsqueeze(1), g_star.unsqueeze(0), hessian.unsqueeze(0)
    if grads.dim() != 3 or g_star.dim() != 2 or grads.shape[1:] != g_star.shape:
        raise ValueError(f"grads must have shape (N, B, K) = (N,) + g_star.shape; got grads "
                         f"{tuple(grads.shape)} and g_star {tuple(g_star.shape)}")
    n, b, k = grads.shape
    if hessian.shape != (b, k, k):
        raise ValueError(f"hessian must have shape {(b, k, k)} (one K x K block per item), "
                         f"got {tuple(hessian.shape)}")
    if n < 2:
        raise ValueError(f"grads needs at least 2 samples along dimension 0 for a covariance, got {n}")
    for name, t in (("grads", grads), ("g_star", g_star), ("hessian", hessian)):
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} must be finite")
    dtype = torch.promote_types(torch.promote_types(grads.dtype, g_star.dtype), hessian.dtype)
    grads, g_star, hessian = grads.to(dtype), g_star.to(dtype), hessian.to(dtype)

    mean = grads.mean(0)
    bias = mean - g_star
    centred = grads - mean
    covariance = torch.einsum("nbi,nbj->bij", centred, centred) / (n - 1)
    variance = torch.diagonal(covariance, dim1=-2, dim2=-1)

    def quad(u):
        return torch.einsum("bi,bij,bj->b", u, hessian, u)

    signal = quad(g_star)
    norm_sq = (g_star * g_star).sum(-1)
    noise_energy = torch.einsum("bij,bji->b", hessian, covariance) / signal
    defined = variance > 0
    t_squared = torch.where(defined, n * bias**2 / variance.where(defined, torch.ones_like(variance)),
                            torch.zeros_like(variance))
    out = {
        "CosMean": _cosine(mean, g_star),
        "CosSample": _cosine(grads, g_star.unsqueeze(0)).mean(0),
        "BiasEnergy": quad(bias) / signal,
        "NoiseEnergy": noise_energy,
        "RelBias": bias.norm(dim=-1) / norm_sq.sqrt(),
        "RelVariance": variance.sum(-1) / norm_sq,
        "BiasEnergyFloor": noise_energy / n,
        "BiasChi2": t_squared.sum(-1) / defined.sum(-1).clamp_min(1),
    }
    return {key: (value[0] if single else value) for key, value in out.items()}


def gradient_quality(grads, g_star, hessian) -> dict:
    r"""Gradient-quality metrics (paper Figure 3): per data item, then mean and standard deviation.

    Takes the arguments of :func:`gradient_quality_per_item` and returns a dict of floats: for every
    name in :data:`GRADIENT_QUALITY_METRICS` (``CosMean``, ``CosSample``, ``BiasEnergy``,
    ``NoiseEnergy``, ``RelBias``, ``RelVariance``, ``BiasEnergyFloor``, ``BiasChi2``) the mean over data
    items, and under ``"<name>_sd"`` the standard deviation over items (0 for a single item).

    >>> g_star = torch.tensor([[1.0, 0.0]]); hessian = torch.eye(2).expand(1, 2, 2)
    >>> grads = torch.tensor([[[1.0, 1.0]], [[1.0, -1.0]]])
    >>> q = gradient_quality(grads, g_star, hessian)
    >>> q["CosMean"], q["BiasEnergy"], q["NoiseEnergy"]
    (1.0, 0.0, 2.0)
    """
    per_item = gradient_quality_per_item(grads, g_star, hessian)
    out = {}
    for key, value in per_item.items():
        value = value.reshape(-1)
        out[key] = float(value.mean())
        out[f"{key}_sd"] = float(value.std()) if value.numel() > 1 else 0.0
    return out
