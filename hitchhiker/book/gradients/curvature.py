r"""Curvature weightings for the gradient-quality energies when the Hessian is indefinite.

The paper weights a gradient error :math:`e` by the Hessian, :math:`e^\top H e / g^{*\top} H g^*`: the
second-order change of the loss that the error causes in a step, relative to the exact step's. On the
linear-decoder objective :math:`H = \mathrm{diag}(g^*) + 2\Lambda G\Lambda` is *indefinite* (every
coordinate with :math:`g^*_k < 0` can give a negative eigenvalue), and an indefinite weighting can make
an "energy" negative. The book therefore weights by the spectral absolute value

.. math::  |H| = U\,|D|\,U^\top \qquad (H = U D U^\top),

which is positive semi-definite, equals :math:`H` wherever :math:`H` is positive semi-definite, and keeps
the size of the curvature in every direction (the "saddle-free" weighting). The Gauss--Newton part
:math:`2\Lambda G\Lambda` is the other common choice (:func:`gauss_newton_hessian`).

>>> h = torch.tensor([[2.0, 0.0], [0.0, -1.0]])
>>> absolute_hessian(h)
tensor([[2., 0.],
        [0., 1.]])
>>> negative_eigenvalue_fraction(h)
tensor(0.5000)
"""
from __future__ import annotations

import torch

__all__ = [
    "absolute_hessian",
    "first_order_cross_term",
    "gauss_newton_hessian",
    "negative_eigenvalue_fraction",
]


def _square(hessian: torch.Tensor) -> torch.Tensor:
    if not torch.is_tensor(hessian) or not hessian.is_floating_point():
        raise ValueError("hessian must be a floating-point tensor")
    if hessian.dim() < 2 or hessian.shape[-1] != hessian.shape[-2]:
        raise ValueError(f"hessian must have shape (..., K, K), got {tuple(hessian.shape)}")
    if not bool(torch.isfinite(hessian).all()):
        raise ValueError("hessian must be finite")
    return hessian


def absolute_hessian(hessian: torch.Tensor) -> torch.Tensor:
    r""":math:`|H| = U|D|U^\top` for symmetric ``hessian`` ``(..., K, K)`` (batched); positive
    semi-definite, and equal to ``hessian`` when that is positive semi-definite."""
    hessian = _square(hessian)
    eigenvalues, vectors = torch.linalg.eigh((hessian + hessian.transpose(-1, -2)) / 2)
    return (vectors * eigenvalues.abs().unsqueeze(-2)) @ vectors.transpose(-1, -2)


def negative_eigenvalue_fraction(hessian: torch.Tensor) -> torch.Tensor:
    r"""Fraction of the eigenvalues of each symmetric ``(K, K)`` block that are negative
    (below :math:`-10^{-12}\max|\text{eigenvalue}|`): shape ``hessian.shape[:-2]``."""
    hessian = _square(hessian)
    eigenvalues = torch.linalg.eigvalsh((hessian + hessian.transpose(-1, -2)) / 2)
    tolerance = 1e-12 * eigenvalues.abs().amax(-1, keepdim=True)
    return (eigenvalues < -tolerance).to(hessian.dtype).mean(-1)


def gauss_newton_hessian(log_rate: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    r"""The Gauss--Newton part :math:`2\Lambda G\Lambda` of the linear-decoder Hessian
    (:math:`G = \Phi^\top\Phi`, :math:`\Lambda = \mathrm{diag}\,e^\theta`): ``(B, K, K)`` for
    ``log_rate`` ``(B, K)``; positive semi-definite.

    >>> gauss_newton_hessian(torch.zeros(1, 2), torch.eye(2))
    tensor([[[2., 0.],
             [0., 2.]]])
    """
    if not torch.is_tensor(phi) or phi.dim() != 2 or log_rate.shape[-1] != phi.shape[1]:
        raise ValueError(f"log_rate (..., K) and phi (M, K) must agree, got {tuple(log_rate.shape)} "
                         f"and {tuple(phi.shape) if torch.is_tensor(phi) else type(phi).__name__}")
    rate = log_rate.exp()
    return 2 * rate.unsqueeze(-1) * (phi.T @ phi) * rate.unsqueeze(-2)


def first_order_cross_term(bias: torch.Tensor, g_star: torch.Tensor) -> torch.Tensor:
    r"""The first-order effect of a gradient bias :math:`b` on a step, relative to the exact step's:
    :math:`g^{*\top} b / \lVert g^*\rVert^2` (one value per item, last dimension reduced).

    A step :math:`\theta - \eta(g^* + b)` changes the loss by
    :math:`-\eta\lVert g^*\rVert^2 - \eta\,g^{*\top}b + O(\eta^2)`, so the step's first-order decrease is
    :math:`1 + ` this value times the exact one (negative: the bias costs progress). It scales like
    :math:`\lVert b\rVert/\lVert g^*\rVert`, i.e. like :math:`\sqrt{\text{BiasEnergy}}`, so it can
    dominate a "negligible" BiasEnergy, which is second order.

    >>> first_order_cross_term(torch.tensor([-0.1, 0.0]), torch.tensor([1.0, 0.0]))
    tensor(-0.1000)
    """
    if bias.shape != g_star.shape:
        raise ValueError(f"bias and g_star must have the same shape, got {tuple(bias.shape)} and "
                         f"{tuple(g_star.shape)}")
    norm_sq = (g_star * g_star).sum(-1)
    if not bool((norm_sq > 0).all()):
        raise ValueError("g_star must be non-zero for every item")
    return (g_star * bias).sum(-1) / norm_sq
