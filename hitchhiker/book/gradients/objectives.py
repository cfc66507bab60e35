r"""The linear-decoder test objective of the gradient-quality study (paper Figure 3).

A data item :math:`x \in \mathbb R^M` is explained by a linear decoder :math:`\Phi \in \mathbb R^{M\times K}`
acting on independent Poisson counts :math:`z_k \sim \mathrm{Poisson}(\lambda_k)` with log-rates
:math:`\theta = \log\lambda`. The per-sample loss is :math:`\ell(z) = \lVert x - \Phi z\rVert^2` and, because
:math:`\mathrm{Var}\,z_k = \lambda_k`, its expectation has a closed form:

.. math::  L(\theta) = \mathbb E\,\lVert x - \Phi z\rVert^2
           = \lVert x - \Phi\lambda\rVert^2 + \sum_k \lambda_k \lVert\phi_k\rVert^2 .

With :math:`G = \Phi^\top\Phi`, :math:`d = \mathrm{diag}(G)` and :math:`\Lambda = \mathrm{diag}(\lambda)`,

.. math::  g^* = \nabla_\theta L = \lambda \odot (2G\lambda - 2\Phi^\top x + d), \qquad
           H = \nabla^2_\theta L = \mathrm{diag}(g^*) + 2\Lambda G \Lambda .

Everything is batched over data items: ``log_rate`` ``(B, K)``, ``x`` ``(B, M)``, ``phi`` ``(M, K)``
(unbatched ``(K,)`` / ``(M,)`` inputs work too and give unbatched outputs).

The module also builds the data the book uses for this study: an overcomplete 2-D DCT dictionary
(the classical starting dictionary of sparse coding on image patches) and patches synthesised from the
linear Poisson model itself, so that the log-rates :math:`\theta` sit at the rates that generated the
data -- the regime of a well-fitted Poisson VAE.
"""
from __future__ import annotations

import math

import torch

__all__ = [
    "reconstruction_loss",
    "expected_reconstruction_loss",
    "linear_decoder_loss",
    "linear_decoder_grad_hessian",
    "overcomplete_dct_dictionary",
    "sample_linear_poisson_patches",
]


def _check_shapes(log_rate: torch.Tensor, x: torch.Tensor, phi: torch.Tensor) -> None:
    for name, value in (("log_rate", log_rate), ("x", x), ("phi", phi)):
        if not torch.is_tensor(value) or not value.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor")
    if phi.dim() != 2:
        raise ValueError(f"phi must be a (M, K) matrix, got shape {tuple(phi.shape)}")
    m, k = phi.shape
    if log_rate.dim() not in (1, 2) or log_rate.shape[-1] != k:
        raise ValueError(f"log_rate must have shape (K,) or (B, K) with K = {k}, "
                         f"got {tuple(log_rate.shape)}")
    if x.dim() != log_rate.dim() or x.shape[-1] != m or x.shape[:-1] != log_rate.shape[:-1]:
        raise ValueError(f"x must have shape {tuple(log_rate.shape[:-1]) + (m,)} to match log_rate "
                         f"{tuple(log_rate.shape)} and phi {tuple(phi.shape)}, got {tuple(x.shape)}")
    if not bool(torch.isfinite(log_rate).all()):
        raise ValueError("log_rate must be finite")


def reconstruction_loss(z: torch.Tensor, x: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    r"""Per-sample loss :math:`\ell(z) = \lVert x - \Phi z\rVert^2` for counts ``z`` of shape ``(..., K)``.

    ``x`` (``(..., M)``) broadcasts against ``z``'s leading dimensions; the result has shape
    ``broadcast(z.shape[:-1], x.shape[:-1])``.
    """
    if phi.dim() != 2 or z.shape[-1] != phi.shape[1] or x.shape[-1] != phi.shape[0]:
        raise ValueError(f"z (..., K) and x (..., M) must match phi (M, K) = {tuple(phi.shape)}; "
                         f"got z {tuple(z.shape)}, x {tuple(x.shape)}")
    residual = x - z @ phi.T
    return (residual * residual).sum(-1)


def expected_reconstruction_loss(mean: torch.Tensor, variance: torch.Tensor, x: torch.Tensor,
                                 phi: torch.Tensor) -> torch.Tensor:
    r""":math:`\mathbb E\lVert x - \Phi z\rVert^2
    = \lVert x - \Phi m\rVert^2 + \sum_k v_k\lVert\phi_k\rVert^2`
    for independent latents with means ``mean`` and variances ``variance`` (shape ``(..., K)``).

    With Poisson moments (:math:`m = v = \lambda`) this is :func:`linear_decoder_loss`; with the Campbell
    moments of a relaxation it is the objective whose gradient a pathwise estimator is unbiased for.
    """
    return reconstruction_loss(mean, x, phi) + (variance * (phi * phi).sum(0)).sum(-1)


def linear_decoder_loss(log_rate: torch.Tensor, x: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    r"""Exact objective
    :math:`L(\theta) = \lVert x - \Phi\lambda\rVert^2 + \sum_k\lambda_k\lVert\phi_k\rVert^2`,
    :math:`\lambda = e^\theta`; one value per data item (shape ``log_rate.shape[:-1]``).

    >>> phi = torch.eye(2, dtype=torch.float64)
    >>> linear_decoder_loss(torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64), phi)
    tensor(2., dtype=torch.float64)
    """
    _check_shapes(log_rate, x, phi)
    rate = log_rate.exp()
    return expected_reconstruction_loss(rate, rate, x, phi)


def linear_decoder_grad_hessian(log_rate: torch.Tensor, x: torch.Tensor, phi: torch.Tensor):
    r"""Closed-form gradient and Hessian of :func:`linear_decoder_loss` with respect to ``log_rate``.

    Returns ``(g_star, hessian)`` with shapes ``(B, K)`` and ``(B, K, K)`` (``(K,)`` and ``(K, K)`` for
    unbatched input):

    .. math::  g^* = \lambda \odot (2G\lambda - 2\Phi^\top x + d), \qquad
               H = \mathrm{diag}(g^*) + 2\Lambda G\Lambda .

    Each data item's loss depends only on its own log-rates, so the Hessian of the batch is block
    diagonal; only the blocks are returned.
    """
    _check_shapes(log_rate, x, phi)
    rate = log_rate.exp()
    gram = phi.T @ phi
    g_star = rate * (2 * rate @ gram - 2 * x @ phi + torch.diagonal(gram))
    hessian = torch.diag_embed(g_star) + 2 * rate.unsqueeze(-1) * gram * rate.unsqueeze(-2)
    return g_star, hessian


def overcomplete_dct_dictionary(patch_size: int = 6, atoms_per_axis: int = 8, dtype=torch.float64,
                                device=None) -> torch.Tensor:
    r"""Overcomplete 2-D DCT dictionary for ``patch_size`` x ``patch_size`` patches.

    One axis has ``atoms_per_axis`` cosines :math:`a_j(i) = \cos(\pi i j / n)`, :math:`i = 0..p-1`,
    :math:`j = 0..n-1` (``n = atoms_per_axis`` >= ``p``, so frequencies are sampled more finely than the
    orthogonal DCT); the 2-D atoms are their outer products (``n**2`` of them), every non-constant atom
    is made zero-mean, and all atoms are normalised to unit length. This is the standard initial
    dictionary of patch-based sparse coding (e.g. K-SVD). Returns ``phi`` of shape ``(p**2, n**2)``.
    """
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 2:
        raise ValueError(f"patch_size must be an integer >= 2, got {patch_size!r}")
    if (isinstance(atoms_per_axis, bool) or not isinstance(atoms_per_axis, int)
            or atoms_per_axis < patch_size):
        raise ValueError(f"atoms_per_axis must be an integer >= patch_size = {patch_size}, "
                         f"got {atoms_per_axis!r}")
    i = torch.arange(patch_size, dtype=dtype, device=device).unsqueeze(1)
    j = torch.arange(atoms_per_axis, dtype=dtype, device=device).unsqueeze(0)
    one_d = torch.cos(math.pi * i * j / atoms_per_axis)            # (p, n)
    one_d[:, 1:] -= one_d[:, 1:].mean(0, keepdim=True)
    atoms = torch.einsum("ia,jb->ijab", one_d, one_d).reshape(patch_size**2, atoms_per_axis**2)
    return atoms / atoms.norm(dim=0, keepdim=True)


def sample_linear_poisson_patches(phi: torch.Tensor, rate: float, n_items: int,
                                  generator: torch.Generator | None = None):
    r"""Data items drawn from the linear Poisson model itself: :math:`x = \Phi z`,
    :math:`z_k \sim \mathrm{Poisson}(\lambda)` i.i.d.

    Returns ``(x, z)`` of shapes ``(n_items, M)`` and ``(n_items, K)``. Evaluating the objective at
    :math:`\theta = \log\lambda` then asks how well an estimator recovers the gradient that pulls the
    rates towards each item's own code, as in a Poisson VAE whose posterior rates match the data.
    """
    if not torch.is_tensor(phi) or phi.dim() != 2:
        raise ValueError("phi must be a (M, K) tensor")
    if not (isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0):
        raise ValueError(f"rate must be a finite number > 0, got {rate!r}")
    if isinstance(n_items, bool) or not isinstance(n_items, int) or n_items < 1:
        raise ValueError(f"n_items must be a positive integer, got {n_items!r}")
    rates = torch.full((n_items, phi.shape[1]), float(rate), dtype=phi.dtype, device=phi.device)
    z = torch.poisson(rates, generator=generator)
    return z @ phi.T, z
