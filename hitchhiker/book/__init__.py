"""The book's experiments: every sweep, model and table behind the chapters (needs the ``book`` extra).

``pip install "poisson-hitchhiker[book]"`` brings pandas, matplotlib, scipy, SymPy, scikit-image and
tqdm. The library (:mod:`hitchhiker`) never imports this subpackage; chapters import it as
``from hitchhiker import book as hb``.
"""
from .data import PatchData, natural_image_patches
from .fidelity import FIDELITY_METHODS, fidelity_grid, fixed_cap_eat, measure_fidelity
from .gradients import (
    GRADIENT_METHODS,
    expected_eat_gradient,
    gradient_quality_sweep,
    per_sample_gradients,
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
from .runtime import default_device, results_dir, seed_everything, setup_chapter
from .scale import by_scale, current_scale
from .training import fit
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

__all__ = [
    "by_scale", "current_scale", "setup_chapter", "seed_everything", "default_device", "results_dir",
    "fit", "save_results", "load_results",
    "FIDELITY_METHODS", "fidelity_grid", "measure_fidelity", "fixed_cap_eat",
    "linear_decoder_loss", "linear_decoder_grad_hessian", "overcomplete_dct_dictionary",
    "sample_linear_poisson_patches", "GRADIENT_METHODS", "per_sample_gradients",
    "expected_eat_gradient", "gradient_quality_sweep",
    "natural_image_patches", "PatchData", "PoissonVAE", "VAE_METHODS", "train_pvae",
    "validation_nelbo", "pvae_runs", "run_pvae_experiments", "summarize_pvae", "filter_mosaic",
    "POGLM", "POGLMData", "POGLM_METHODS", "POGLM_GSM_CATEGORIES", "simulate_poglm_data",
    "negative_elbo", "evaluate_poglm", "recovery_errors", "train_poglm", "run_poglm",
    "recommendation_table", "evidence_table", "load_available_results", "missing_evidence",
    "Thresholds", "temperature_tradeoff", "truncation_tail_mass",
]
