"""hitchhiker: differentiate through Poisson samples (EAT and Gumbel-softmax relaxations).

The library of the executable book reproducing *A Hitchhiker's Guide to Poisson Gradient
Estimation* (Ibrahim et al., 2026). It needs only torch (and numpy); the book's experiments live in
:mod:`hitchhiker.book` and need the ``book`` extra.

>>> import torch, hitchhiker
>>> rate = torch.tensor([0.5, 20.0], requires_grad=True)
>>> z = hitchhiker.RelaxedPoisson(rate, temperature=0.1).rsample()   # EAT-cubic
>>> z.sum().backward()
"""
from .diagnostics import compare_estimators
from .distributions import GumbelSoftmaxPoisson, RelaxedPoisson, poisson_log_prob
from .estimators import (
    METHODS,
    check_method,
    pathwise_distribution,
    relaxed_sample,
    score_function_surrogate,
    surrogate_loss,
)
from .indicators import INDICATORS
from .matching import temperature_for_variance_ratio, variance_ratio
from .metrics import gradient_quality, moment_ratios, wasserstein1
from .moments import relaxed_mean, relaxed_variance

__version__ = "0.2.0"

__all__ = [
    "RelaxedPoisson", "GumbelSoftmaxPoisson", "poisson_log_prob",
    "surrogate_loss", "score_function_surrogate", "pathwise_distribution", "relaxed_sample",
    "METHODS", "check_method", "INDICATORS",
    "relaxed_mean", "relaxed_variance",
    "temperature_for_variance_ratio", "variance_ratio",
    "moment_ratios", "wasserstein1", "gradient_quality",
    "compare_estimators",
]
