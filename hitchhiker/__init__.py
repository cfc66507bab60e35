"""hitchhiker: differentiate through Poisson samples (EAT and Gumbel-softmax relaxations).

The companion package of the executable book reproducing *A Hitchhiker's Guide to Poisson Gradient
Estimation* (Ibrahim et al., 2026).

>>> import torch, hitchhiker
>>> rate = torch.tensor([0.5, 20.0], requires_grad=True)
>>> z = hitchhiker.RelaxedPoisson(rate, temperature=0.1).rsample()   # EAT-cubic
>>> z.sum().backward()
"""
from .estimators import (
    EAT_METHODS,
    METHODS,
    PAPER_METHODS,
    PATHWISE_METHODS,
    check_method,
    pathwise_distribution,
    relaxed_sample,
    score_function_surrogate,
)
from .indicators import INDICATORS, get_indicator
from .results import load_results, save_results
from .runtime import default_device, results_dir, seed_everything, setup_chapter
from .samplers import GumbelSoftmaxPoisson, RelaxedPoisson, default_n_categories
from .scale import by_scale, current_scale
from .training import fit

__version__ = "0.1.0"

__all__ = [
    "RelaxedPoisson", "GumbelSoftmaxPoisson", "default_n_categories",
    "score_function_surrogate", "pathwise_distribution", "relaxed_sample", "check_method",
    "METHODS", "PATHWISE_METHODS", "EAT_METHODS", "PAPER_METHODS",
    "INDICATORS", "get_indicator",
    "by_scale", "current_scale",
    "fit", "save_results", "load_results",
    "setup_chapter", "seed_everything", "default_device", "results_dir",
]
