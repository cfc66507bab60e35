r"""One registry of gradient-estimator names, used by every model, chapter, CSV file and legend.

* ``"eat-cubic"``, ``"eat-sigmoid"`` (and ``"eat-linear"``, ``"eat-quintic"``, ``"eat-cosine"``):
  pathwise EAT relaxations (:class:`~hitchhiker.RelaxedPoisson`).
* ``"st-cubic"``, ``"st-sigmoid"``: straight-through EAT (exact forward count, relaxed gradient).
* ``"gsm"``: Gumbel-softmax over a truncated Poisson (:class:`~hitchhiker.GumbelSoftmaxPoisson`).
* ``"score"``: the score-function (REINFORCE) estimator with a leave-one-out mean baseline
  (:func:`score_function_surrogate`).
* ``"exact"``: the closed-form gradient, where a model has one (the linear-decoder objectives).

:func:`surrogate_loss` is the one estimator function behind every name but ``"exact"``: given the
rates and a per-sample loss it draws, relaxes or scores, and returns a loss whose gradient is that
method's estimate. The book's models (Poisson VAE, POGLM, gradient sweeps) all call it.
"""
from __future__ import annotations

import math
import numbers

import torch
from torch.distributions import Distribution

from ._eat import poisson
from ._validation import as_float_tensor, check_bool, check_positive_int, check_rate
from .distributions import GumbelSoftmaxPoisson, RelaxedPoisson, _batched_by_vmap, _log_pmf

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


def score_function_surrogate(losses, log_probs, baseline: bool = True) -> torch.Tensor:
    r"""Surrogate whose gradient is the score-function (REINFORCE) estimator.

    For :math:`S` independent exact samples :math:`z_s \sim q(\cdot;\theta)`,

    .. math::
        \hat g = \frac1S \sum_{s=1}^S \Big[\nabla_\theta L(z_s) + \big(L(z_s) - b_s\big)\,
                 \nabla_\theta \log q(z_s;\theta)\Big],
        \qquad \mathbb E[\hat g] = \nabla_\theta\, \mathbb E_{q}[L(z)]

    whenever :math:`b_s` does not depend on :math:`z_s`.

    Args:
        losses: :math:`L(z_s)`, shape ``(S, ...)`` (samples along dimension 0): a tensor or a sequence
            of numbers. Gradients that flow through ``losses`` directly (not through :math:`z`) are
            kept, so decoder parameters train as usual.
        log_probs: :math:`\log q(z_s; \theta)`, same shape, differentiable in :math:`\theta`.
        baseline: subtract the mean loss of the *other* samples (leave-one-out),
            :math:`b_s = \frac{1}{S-1}\sum_{j \ne s} L(z_j)`, which reduces variance and keeps the
            estimator unbiased. (The plain mean including :math:`L(z_s)` itself would shrink the
            gradient by :math:`(S-1)/S`.) Needs ``S >= 2``. ``False``: :math:`b_s = 0`.

    Returns:
        A tensor of shape ``losses.shape[1:]`` whose *value* is the Monte Carlo mean loss and whose
        gradient is :math:`\hat g`.

    Raises:
        TypeError: ``losses`` or ``log_probs`` is neither a tensor nor a sequence of real numbers, or
            ``baseline`` is not a bool.
        ValueError: the shapes differ, there is no sample dimension, or the baseline has one sample.
    """
    losses = as_float_tensor(losses, "losses")
    log_probs = as_float_tensor(log_probs, "log_probs")
    if not isinstance(baseline, bool):
        # bool("no") is True: a string or a tensor here is a mistake, not a choice.
        raise TypeError(f"baseline must be True or False, got {baseline!r}")
    if losses.shape != log_probs.shape:
        raise ValueError(f"losses {tuple(losses.shape)} and log_probs {tuple(log_probs.shape)} "
                         "must have the same shape (samples along dimension 0)")
    if losses.dim() == 0:
        raise ValueError("losses and log_probs need a leading sample dimension, got 0-d tensors")
    n = losses.shape[0]
    weight = losses.detach()
    if baseline:
        if n < 2:
            raise ValueError("the leave-one-out baseline needs at least 2 samples along dimension 0 "
                             f"of losses, got {n}; pass baseline=False for a single sample")
        # L_s - mean_{j != s} L_j = (L_s - mean_j L_j) * S / (S - 1)
        weight = (weight - weight.mean(0, keepdim=True)) * (n / (n - 1))
    score_term = (weight * log_probs).mean(0)
    # value: the mean loss (score_term - score_term.detach() is exactly 0); gradient: g-hat.
    return losses.mean(0) + score_term - score_term.detach()


def _check_temperature(method: str, temperature) -> None:
    """A missing temperature, or a bad Python number, is refused here even under
    ``validate_args=False`` (it costs nothing); a tensor is the distribution's to check."""
    if temperature is None:
        raise ValueError(f"method={method!r} needs a temperature > 0, got None")
    if torch.is_tensor(temperature):
        return
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise TypeError(f"temperature must be a number or a tensor, got {type(temperature).__name__}")
    if not (math.isfinite(temperature) and float(temperature) > 0):
        raise ValueError(f"temperature must be finite and > 0, got {temperature!r}")


def _call_loss(per_sample_loss, z, log_q, with_log_prob, n_draws, rate_shape):
    losses = per_sample_loss(z, log_q) if with_log_prob else per_sample_loss(z)
    expected = f"(S,) + a prefix of rate.shape with S = {n_draws}, rate.shape = {tuple(rate_shape)}"
    if not torch.is_tensor(losses):
        raise TypeError(f"per_sample_loss must return a tensor of shape {expected}; "
                        f"got {type(losses).__name__}")
    if (losses.dim() == 0 or losses.shape[0] != n_draws
            or losses.shape[1:] != tuple(rate_shape)[: losses.dim() - 1]):
        raise ValueError(f"per_sample_loss must return shape {expected}; got {tuple(losses.shape)}")
    if losses.is_complex() or not losses.is_floating_point():
        raise TypeError(f"per_sample_loss must return a real floating tensor, got dtype {losses.dtype}")
    return losses


def surrogate_loss(method: str, rate: torch.Tensor, per_sample_loss, temperature=None,
                   n_samples: int | None = 1, *, baseline=None, with_log_prob: bool = False,
                   validate_args=None, **dist_kwargs) -> torch.Tensor:
    r"""A loss whose value is the Monte Carlo mean of :math:`L(z)` and whose gradient is ``method``'s
    estimate of :math:`\nabla\,\mathbb E_{z\sim\mathrm{Pois}(\lambda)}[L(z)]`.

    The one estimator branch every model calls (the book's Poisson VAE, POGLM and gradient sweeps).
    With :math:`S` draws :math:`z_s`,

    * pathwise methods (``"eat-cubic"``, ``"st-sigmoid"``, ``"gsm"``, ...): :math:`z_s = \tilde z_s`, a
      relaxed sample of :func:`pathwise_distribution` at ``temperature``, and the result is
      :math:`\frac1S\sum_s L(\tilde z_s)`, differentiated through :math:`\tilde z_s`;
    * ``"score"``: exact counts :math:`z_s \sim \mathrm{Pois}(\lambda)` (no gradient through them) and
      :func:`score_function_surrogate`, whose gradient is
      :math:`\frac1S\sum_s[\nabla L(z_s) + (L(z_s) - b_s)\nabla\log p(z_s;\lambda)]`, with
      :math:`\log p` summed over the dimensions of ``rate`` that ``per_sample_loss`` reduces.

    >>> rate = torch.tensor([2.0, 5.0], requires_grad=True)
    >>> loss = surrogate_loss("eat-cubic", rate, lambda z: z.sum(-1), temperature=0.1, n_samples=4)
    >>> loss.backward()          # E[sum z] = sum(rate): every gradient is 1 in expectation

    Args:
        method: a registry name: a pathwise method (:data:`PATHWISE_METHODS`) or ``"score"``.
        rate: Poisson rates :math:`\lambda` (a floating tensor), any shape; gradients flow to whatever
            produced them.
        per_sample_loss: maps the draws, shape ``(S,) + rate.shape``, to losses of shape ``(S,) + B``,
            where ``B`` is a prefix of ``rate.shape`` (often empty). The dimensions of ``rate`` that it
            reduces are the latents of one draw.
        temperature: the relaxation's :math:`\tau > 0` (pathwise methods only; ``None`` for score).
        n_samples: ``S``, the number of draws, stacked along a new leading dimension. ``None``:
            ``rate`` already carries the sample dimension as its dimension 0 (one draw per slice,
            ``S = rate.shape[0]``, and ``per_sample_loss`` gets draws of ``rate.shape``). Expanding a
            leaf to ``(S,) + shape`` this way gives every draw's own gradient in one backward pass.
        baseline: score function only: the leave-one-out baseline; ``None`` uses it when ``S >= 2``.
        with_log_prob: call ``per_sample_loss(z, log_q)`` with the draws' elementwise log-density
            :math:`\log q(z;\lambda)` (shape of ``z``, differentiable in ``rate``): the Poisson log-pmf
            of the counts for ``"score"``, the relaxation's :meth:`log_prob` of :math:`\tilde z` for
            pathwise methods. For losses that contain the sampling density itself, such as a negative
            ELBO :math:`\mathbb E_q[\log q(z) - \log p(x, z)]`.
        validate_args: passed to the distribution; for ``"score"``, whether to check the rate (finite,
            >= 0, below :func:`~hitchhiker._validation.max_rate`; default: torch.distributions'
            default, on; skipped under ``torch.func.vmap``, which cannot read values).
        dist_kwargs: passed to the distribution (``n_categories`` for ``"gsm"``).

    Returns:
        A tensor of shape ``B``: the mean over the ``S`` draws.

    Raises:
        ValueError: unknown ``method``; ``temperature`` missing or not > 0 for a pathwise method, or
            given for ``"score"``; ``n_samples < 1``; ``per_sample_loss`` returned the wrong shape;
            a baseline with one sample.
        TypeError: ``per_sample_loss`` is not callable or returned no floating tensor; ``n_samples``
            is not an integer.
    """
    check_method(method, PATHWISE_METHODS + ("score",))
    if not callable(per_sample_loss):
        raise TypeError(f"per_sample_loss must be callable, got {type(per_sample_loss).__name__}")
    if not torch.is_tensor(rate):
        raise TypeError(f"rate must be a tensor, got {type(rate).__name__}")
    if not rate.is_floating_point():
        raise TypeError(f"rate must be a floating tensor, got dtype {rate.dtype}")
    n_samples = None if n_samples is None else check_positive_int(n_samples, "n_samples")
    if n_samples is None:
        if rate.dim() == 0:
            raise ValueError("n_samples=None needs a rate whose dimension 0 is the sample dimension; "
                             "got a 0-d rate")
        sample_shape, n_draws, event_shape = torch.Size(), rate.shape[0], rate.shape[1:]
    else:
        sample_shape, n_draws, event_shape = torch.Size((n_samples,)), n_samples, rate.shape
    if not isinstance(with_log_prob, bool):
        raise TypeError(f"with_log_prob must be True or False, got {with_log_prob!r}")
    if method == "score":
        if temperature is not None or dist_kwargs:
            given = ["temperature"] * (temperature is not None) + sorted(dist_kwargs)
            raise ValueError(f"method='score' samples exact counts and takes no temperature or "
                             f"distribution arguments; got {', '.join(given)}")
        if baseline is not None and not isinstance(baseline, bool):
            raise TypeError(f"baseline must be None, True or False, got {baseline!r}")
        validate = Distribution._validate_args if validate_args is None else validate_args
        # (Under torch.func.vmap the values cannot be read: the check is skipped there.)
        if check_bool(validate, "validate_args") and not _batched_by_vmap(rate):
            check_rate(rate)
        with torch.no_grad():
            counts = poisson(rate.detach().expand(sample_shape + rate.shape))
        log_probs = _log_pmf(counts, rate)  # finite score at rate 0: d/d rate log p(0) = -1
        losses = _call_loss(per_sample_loss, counts, log_probs, with_log_prob, n_draws, event_shape)
        # The latents of one draw are the dimensions of rate that the loss reduced. (Summing over an
        # empty tuple of dimensions would reduce everything, hence the guard.)
        latent_dims = tuple(range(losses.dim(), log_probs.dim()))
        if latent_dims:
            log_probs = log_probs.sum(latent_dims)
        use_baseline = n_draws >= 2 if baseline is None else baseline
        return score_function_surrogate(losses, log_probs, baseline=use_baseline)
    if baseline is not None:
        raise ValueError(f"baseline applies to method='score' only, got baseline={baseline!r} "
                         f"for method={method!r}")
    _check_temperature(method, temperature)
    dist = pathwise_distribution(method, rate, temperature, validate_args=validate_args, **dist_kwargs)
    z = dist.rsample(sample_shape)
    log_q = dist.log_prob(z) if with_log_prob else None
    losses = _call_loss(per_sample_loss, z, log_q, with_log_prob, n_draws, event_shape)
    return losses.mean(0)
