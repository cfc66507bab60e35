"""The book's experiments: every sweep, model and table behind the chapters (needs the ``book`` extra).

``pip install "poisson-hitchhiker[book]"`` brings pandas, matplotlib, scipy, SymPy, scikit-image and
tqdm. The library (:mod:`hitchhiker`) never imports this subpackage; chapters import it as
``from hitchhiker import book as hb``.
"""
from .data import PatchData, natural_image_patches
from .fidelity import FIDELITY_METHODS, fidelity_grid, fixed_cap_eat, measure_fidelity
from .generalization import (
    GENERALIZATION_METHODS,
    GENERALIZATION_THRESHOLDS,
    LatentCountModel,
    curve_gain,
    generalization_evidence,
    generalization_gaps,
    generalization_settings,
    run_generalization_experiment,
    simulate_count_data,
)
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
from .poglm import POGLM_BLOCKS, POGLM_REGIMES, block_errors
from .poglm_plots import plot_block_recovery, plot_connectivity, plot_elbo_curves
from .poglm_stack import (
    RECOVERY_ATTEMPTS,
    StackedPOGLM,
    compare_likelihoods,
    evaluate_stacked,
    fit_oracle,
    fit_posterior_only,
    poglm_grid_runs,
    recovery_table,
    posterior_rate_summary,
    regime_summary,
    run_poglm_grid,
    run_recovery_attempts,
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
from .training import FLAT_GAIN, fit, last_quarter_gain
from .pvae_training import (
    PVAESchedule,
    convergence,
    pvae_config,
    pvae_runs,
    run_label,
    run_pvae_config,
    run_pvae_grid,
    save_decoders,
    summarize_pvae,
    train_pvae_ensemble,
)
from .vae import (
    VAE_METHODS,
    PoissonVAE,
    dictionary_measures,
    filter_localisation,
    filter_low_frequency_share,
    filter_mosaic,
    validation_nelbo,
)

__all__ = [
    "by_scale", "current_scale", "setup_chapter", "seed_everything", "default_device", "results_dir",
    "fit", "save_results", "load_results",
    "FIDELITY_METHODS", "fidelity_grid", "measure_fidelity", "fixed_cap_eat",
    "linear_decoder_loss", "linear_decoder_grad_hessian", "overcomplete_dct_dictionary",
    "sample_linear_poisson_patches", "GRADIENT_METHODS", "per_sample_gradients",
    "expected_eat_gradient", "gradient_quality_sweep",
    "natural_image_patches", "PatchData", "PoissonVAE", "VAE_METHODS", "PVAESchedule",
    "train_pvae_ensemble", "run_pvae_grid", "run_pvae_config", "run_label", "save_decoders",
    "pvae_config", "convergence",
    "validation_nelbo", "pvae_runs", "summarize_pvae", "filter_mosaic", "filter_localisation",
    "filter_low_frequency_share", "dictionary_measures",
    "POGLM", "POGLMData", "POGLM_METHODS", "POGLM_GSM_CATEGORIES", "simulate_poglm_data",
    "negative_elbo", "evaluate_poglm", "recovery_errors", "train_poglm", "run_poglm",
    "POGLM_BLOCKS", "POGLM_REGIMES", "block_errors", "plot_block_recovery", "plot_connectivity",
    "plot_elbo_curves", "FLAT_GAIN", "RECOVERY_ATTEMPTS", "StackedPOGLM", "compare_likelihoods",
    "evaluate_stacked", "fit_oracle", "fit_posterior_only", "last_quarter_gain", "poglm_grid_runs",
    "recovery_table", "regime_summary", "run_poglm_grid", "run_recovery_attempts",
    "posterior_rate_summary",
    "recommendation_table", "evidence_table", "load_available_results", "missing_evidence",
    "Thresholds", "temperature_tradeoff", "truncation_tail_mass",
    "GENERALIZATION_METHODS", "GENERALIZATION_THRESHOLDS", "LatentCountModel", "curve_gain",
    "generalization_evidence", "generalization_gaps", "generalization_settings",
    "run_generalization_experiment", "simulate_count_data",
]
from .gradients import (FIXED_CAP_METHODS, RANDOM_ATOMS, expected_eat_quality, main_setup_decoder,
                        random_unit_atoms)
from .fidelity import official_pipeline_eat, official_pipeline_fidelity, official_pipeline_rate
from .recommendations import gradient_setup_sensitivity

__all__ += ["FIXED_CAP_METHODS", "RANDOM_ATOMS", "expected_eat_quality", "main_setup_decoder", "random_unit_atoms", "official_pipeline_eat",
            "official_pipeline_fidelity", "official_pipeline_rate", "gradient_setup_sensitivity"]
