"""The partially observable GLM: the experiment of chapter 07.

``model`` (the model, a stack of members; its loss, evaluation and simulated data), ``grid`` (the runs,
the oracle and the posterior-only fits, the recovery attempts), ``recovery`` (weights, blocks and
likelihoods against the truth), ``heldout`` (likelihoods under a shared mixture proposal, Wilks),
``controls`` (the runs that isolate a cause), ``figures``, ``config`` (the chapter's grid at each scale).
"""
from .config import poglm_config
from .controls import (
    FROM_TRUTH_SETTINGS,
    OFFICIAL_RECIPE,
    adaptive_runs,
    adaptive_temperature_summary,
    drift_summary,
    likelihood_gaps,
    paired_difference,
    run_adaptive_and_truncation,
    run_controls,
    score_control_table,
    start_comparison,
    truth_versus_fits,
)
from .figures import draw_network, plot_block_recovery, plot_connectivity, plot_elbo_curves, plot_spike_counts
from .grid import fit_oracle, fit_posterior_only, run_poglm_grid, run_recovery_attempts
from .heldout import (
    TRUTH_PROPOSALS,
    deficit_table,
    mixture_log_likelihood,
    truth_proposals,
    wilks_expectation,
)
from .model import POGLM, POGLM_METHODS, POGLM_REGIMES, negative_elbo, regime_summary, simulate_poglm_data
from .recovery import (
    POGLM_BLOCKS,
    block_errors,
    compare_likelihoods,
    posterior_rate_summary,
    recovery_errors,
    recovery_table,
)

__all__ = [
    "FROM_TRUTH_SETTINGS",
    "OFFICIAL_RECIPE",
    "POGLM",
    "POGLM_BLOCKS",
    "POGLM_METHODS",
    "POGLM_REGIMES",
    "TRUTH_PROPOSALS",
    "adaptive_runs",
    "adaptive_temperature_summary",
    "block_errors",
    "deficit_table",
    "compare_likelihoods",
    "draw_network",
    "drift_summary",
    "fit_oracle",
    "fit_posterior_only",
    "likelihood_gaps",
    "mixture_log_likelihood",
    "negative_elbo",
    "paired_difference",
    "plot_block_recovery",
    "plot_connectivity",
    "plot_elbo_curves",
    "plot_spike_counts",
    "poglm_config",
    "posterior_rate_summary",
    "recovery_errors",
    "recovery_table",
    "regime_summary",
    "run_adaptive_and_truncation",
    "run_controls",
    "run_poglm_grid",
    "score_control_table",
    "run_recovery_attempts",
    "simulate_poglm_data",
    "start_comparison",
    "truth_proposals",
    "truth_versus_fits",
    "wilks_expectation",
]
