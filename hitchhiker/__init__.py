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
from .fidelity import (
    FIDELITY_METHODS,
    fidelity_grid,
    fixed_cap_eat,
    measure_fidelity,
)
from .gradients import (
    GRADIENT_METHODS,
    expected_eat_gradient,
    gradient_quality_sweep,
    per_sample_gradients,
)
from .indicators import INDICATORS, get_indicator
from .metrics import MomentRatios, moment_ratios, wasserstein1
from .metrics import (  # gradient quality
    GRADIENT_QUALITY_METRICS,
    gradient_quality,
    gradient_quality_per_item,
)
from .objectives import (
    linear_decoder_grad_hessian,
    linear_decoder_loss,
    overcomplete_dct_dictionary,
    sample_linear_poisson_patches,
)
from .poglm import (
    POGLM,
    POGLM_GSM_CATEGORIES,
    POGLM_METHODS,
    POGLMData,
    evaluate_poglm,
    negative_elbo,
    recovery_errors,
    run_poglm,
    simulate_poglm_data,
    train_poglm,
)
from .recommendations import (
    Thresholds,
    evidence_table,
    load_available_results,
    missing_evidence,
    recommendation_table,
    temperature_tradeoff,
    truncation_tail_mass,
)
from .results import load_results, save_results
from .data import PatchData, natural_image_patches
from .vae import (
    VAE_METHODS,
    PoissonVAE,
    filter_mosaic,
    pvae_runs,
    run_pvae_experiments,
    summarize_pvae,
    train_pvae,
    validation_nelbo,
)
from .runtime import default_device, results_dir, seed_everything, setup_chapter
from .samplers import GumbelSoftmaxPoisson, RelaxedPoisson, default_n_categories, poisson_log_prob
from .scale import by_scale, current_scale
from .training import fit

__version__ = "0.1.0"

__all__ = [
    "RelaxedPoisson", "GumbelSoftmaxPoisson", "default_n_categories", "poisson_log_prob",
    "score_function_surrogate", "pathwise_distribution", "relaxed_sample", "check_method",
    "METHODS", "PATHWISE_METHODS", "EAT_METHODS", "PAPER_METHODS",
    "INDICATORS", "get_indicator",
    "moment_ratios", "wasserstein1", "MomentRatios",
    "FIDELITY_METHODS", "fidelity_grid", "measure_fidelity", "fixed_cap_eat",
    "POGLM", "POGLMData", "POGLM_METHODS", "POGLM_GSM_CATEGORIES", "simulate_poglm_data",
    "negative_elbo", "evaluate_poglm", "recovery_errors", "train_poglm", "run_poglm",
    "by_scale", "current_scale",
    "fit", "save_results", "load_results",
    "recommendation_table", "evidence_table", "load_available_results", "missing_evidence", "Thresholds",
    "temperature_tradeoff", "truncation_tail_mass",
    "setup_chapter", "seed_everything", "default_device", "results_dir",
    "natural_image_patches", "PatchData", "PoissonVAE", "VAE_METHODS", "train_pvae",
    "validation_nelbo", "pvae_runs", "run_pvae_experiments", "summarize_pvae", "filter_mosaic",
    "linear_decoder_loss", "linear_decoder_grad_hessian", "overcomplete_dct_dictionary",
    "sample_linear_poisson_patches", "GRADIENT_METHODS", "per_sample_gradients",
    "expected_eat_gradient", "gradient_quality_sweep", "gradient_quality",
    "gradient_quality_per_item", "GRADIENT_QUALITY_METRICS",
]
