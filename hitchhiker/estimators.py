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

from .distributions import GumbelSoftmaxPoisson, RelaxedPoisson, poisson_log_prob

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


def surrogate_loss(method: str, rate: torch.Tensor, per_sample_loss, temperature=None,
                   n_samples: int = 1, *, baseline=None, validate_args=None, **dist_kwargs):
    r"""A loss whose value is the Monte Carlo mean of :math:`L(z)`, :math:`z \sim \mathrm{Pois}(\lambda)`,
    and whose gradient is ``method``'s estimate of :math:`\nabla\,\mathbb E[L(z)]`.

    The one estimator branch every model in the book calls (Poisson VAE, POGLM, gradient sweeps).

    Args:
        method: a registry name: a pathwise method (``"eat-cubic"``, ``"gsm"``, ...) or ``"score"``.
        rate: Poisson rates :math:`\lambda`, any shape; gradients flow to whatever produced them.
        per_sample_loss: maps counts of shape ``(S,) + rate.shape`` to losses of shape ``(S,) + B``,
            where ``B`` is a prefix of ``rate.shape`` (often empty). The dimensions of ``rate`` that it
            reduces are the latents of one draw; for the score function their log-probabilities are
            summed.
        temperature: the relaxation's :math:`\tau` (pathwise methods only).
        n_samples: ``S``, the number of draws.
        baseline: score function only: the leave-one-out baseline; ``None`` uses it when ``S >= 2``.
        validate_args: passed to the distribution.
        dist_kwargs: passed to the distribution (``n_categories`` for ``"gsm"``).

    Returns:
        A tensor of shape ``B``: the mean over the ``S`` draws.
    """
    check_method(method, PATHWISE_METHODS + ("score",))
    n_samples = int(n_samples)
    if n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples}")
    if method == "score":
        if temperature is not None or dist_kwargs:
            raise ValueError("method='score' takes no temperature or distribution arguments")
        with torch.no_grad():
            counts = torch.poisson(rate.detach().expand((n_samples,) + rate.shape))
        losses = per_sample_loss(counts)
        log_probs = poisson_log_prob(counts, rate)
        if not torch.is_tensor(losses) or losses.shape != log_probs.shape[: losses.dim()] or losses.dim() == 0:
            got = tuple(losses.shape) if torch.is_tensor(losses) else type(losses).__name__
            raise ValueError(f"per_sample_loss must return shape (S,) + a prefix of rate.shape "
                             f"= {(n_samples,) + tuple(rate.shape)}; got {got}")
        log_probs = log_probs.sum(tuple(range(losses.dim(), log_probs.dim())))
        use_baseline = n_samples >= 2 if baseline is None else bool(baseline)
        return score_function_surrogate(losses, log_probs, baseline=use_baseline)
    if temperature is None:
        raise ValueError(f"method={method!r} needs a temperature > 0")
    dist = pathwise_distribution(method, rate, temperature, validate_args=validate_args, **dist_kwargs)
    losses = per_sample_loss(dist.rsample((n_samples,)))
    if not torch.is_tensor(losses) or losses.dim() == 0 or losses.shape[0] != n_samples:
        got = tuple(losses.shape) if torch.is_tensor(losses) else type(losses).__name__
        raise ValueError(f"per_sample_loss must return shape (S,) + a prefix of rate.shape with "
                         f"S = {n_samples}; got {got}")
    return losses.mean(0)
