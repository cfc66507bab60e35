r"""One registry of gradient-estimator names, used by every model, chapter, CSV file and legend.

* ``"eat-cubic"``, ``"eat-sigmoid"`` (and ``"eat-linear"``, ``"eat-quintic"``, ``"eat-cosine"``):
  pathwise EAT relaxations (:class:`~hitchhiker.RelaxedPoisson`).
* ``"st-cubic"``, ``"st-sigmoid"``: straight-through EAT (exact forward count, relaxed gradient).
* ``"gsm"``: Gumbel-softmax over a truncated Poisson (:class:`~hitchhiker.GumbelSoftmaxPoisson`).
* ``"score"``: the score-function (REINFORCE) estimator with a leave-one-out mean baseline
  (:func:`score_function_surrogate`).
* ``"exact"``: the closed-form gradient, where a model has one (the linear-decoder objectives).
"""
from __future__ import annotations

import torch

from .samplers import GumbelSoftmaxPoisson, RelaxedPoisson

EAT_METHODS = ("eat-cubic", "eat-sigmoid", "eat-linear", "eat-quintic", "eat-cosine")
STRAIGHT_THROUGH_METHODS = ("st-cubic", "st-sigmoid")
PATHWISE_METHODS = EAT_METHODS + STRAIGHT_THROUGH_METHODS + ("gsm",)
METHODS = PATHWISE_METHODS + ("score", "exact")
#: The methods the paper compares, in the order its figures list them.
PAPER_METHODS = ("eat-sigmoid", "eat-cubic", "gsm", "score")


def check_method(method: str, allowed=METHODS) -> str:
    """Return ``method`` if it is one of ``allowed``, else raise ``ValueError`` listing them."""
    if method not in allowed:
        raise ValueError(f"method={method!r} is not one of {tuple(allowed)}")
    return method


def pathwise_distribution(method: str, rate, temperature, validate_args=None, **kwargs):
    """The relaxed distribution behind a pathwise method name.

    ``kwargs`` go to the distribution (``n_categories`` for ``"gsm"``).

    >>> pathwise_distribution("eat-cubic", torch.tensor([3.0]), 0.1).rsample().shape
    torch.Size([1])
    """
    check_method(method, PATHWISE_METHODS)
    if method == "gsm":
        return GumbelSoftmaxPoisson(rate, temperature, validate_args=validate_args, **kwargs)
    family, indicator = method.split("-", 1)
    return RelaxedPoisson(rate, temperature, indicator=indicator, hard=(family == "st"),
                          validate_args=validate_args, **kwargs)


def relaxed_sample(method: str, rate, temperature, sample_shape=torch.Size(), **kwargs):
    """A differentiable relaxed Poisson sample of ``sample_shape + rate.shape`` for a pathwise method."""
    return pathwise_distribution(method, rate, temperature, **kwargs).rsample(sample_shape)


def score_function_surrogate(losses: torch.Tensor, log_probs: torch.Tensor,
                             baseline: bool = True) -> torch.Tensor:
    r"""Surrogate whose gradient is the score-function (REINFORCE) estimator.

    Args:
        losses: :math:`L(z_s)` for ``S`` independent exact samples along dimension 0 (shape
            ``(S, ...)``). Gradients that flow through ``losses`` directly (not through
            :math:`z`) are kept, so decoder parameters train as usual.
        log_probs: :math:`\log q(z_s; \theta)`, same shape, differentiable in :math:`\theta`.
        baseline: subtract the mean loss of the *other* samples (leave-one-out),
            :math:`b_s = \frac{1}{S-1}\sum_{j \ne s} L(z_j)`, which reduces variance and keeps the
            estimator unbiased. (The plain mean including :math:`L(z_s)` itself would shrink the
            gradient by :math:`(S-1)/S`.) Needs ``S >= 2``.

    Returns:
        A tensor of shape ``losses.shape[1:]`` whose *value* is the Monte Carlo mean loss and whose
        gradient is :math:`\frac1S\sum_s [\nabla L(z_s) + (L(z_s) - b_s)\nabla\log q(z_s;\theta)]`.
    """
    if losses.shape != log_probs.shape:
        raise ValueError(f"losses {tuple(losses.shape)} and log_probs {tuple(log_probs.shape)} "
                         "must have the same shape (samples along dimension 0)")
    if losses.dim() == 0:
        raise ValueError("losses needs a leading sample dimension")
    n = losses.shape[0]
    weight = losses.detach()
    if baseline:
        if n < 2:
            raise ValueError("the leave-one-out baseline needs at least 2 samples along dimension 0")
        weight = (weight - weight.mean(0, keepdim=True)) * (n / (n - 1))
    score_term = (weight * log_probs).mean(0)
    return losses.mean(0) + score_term - score_term.detach()
