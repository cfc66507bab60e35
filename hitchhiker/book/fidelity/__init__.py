"""Distributional fidelity: moments and Wasserstein-1 of each relaxation over rates and temperatures.

Chapters 02-04. :mod:`.sweep` measures; :mod:`.floor` gives W1's sampling floor; :mod:`.matched`
compares methods at equal variance ratio; :mod:`.official` holds the official code's fixed-cap and
bfloat16 samplers, for teaching only.
"""
from .floor import w1_floor, w1_floor_normal, w1_ratio_by_sample_size
from .matched import at_variance_ratio, campbell_temperature, matched_comparison, variance_ratio_axis
from .official import (
    fixed_cap_eat,
    fixed_cap_n_arrivals,
    official_pipeline_fidelity,
    seven_fold_runs,
    w1_ratio,
)
from .sweep import (
    FIDELITY_METHODS,
    PAPER_RATES,
    PAPER_TEMPERATURES,
    campbell_ratios,
    draw_relaxed,
    fidelity_from_samples,
    fidelity_grid,
    measure_fidelity,
    time_rsample,
    truncated_poisson_moments,
)

__all__ = [
    "FIDELITY_METHODS",
    "PAPER_RATES",
    "PAPER_TEMPERATURES",
    "at_variance_ratio",
    "campbell_ratios",
    "campbell_temperature",
    "draw_relaxed",
    "fidelity_from_samples",
    "fidelity_grid",
    "fixed_cap_eat",
    "fixed_cap_n_arrivals",
    "matched_comparison",
    "measure_fidelity",
    "official_pipeline_fidelity",
    "seven_fold_runs",
    "time_rsample",
    "truncated_poisson_moments",
    "variance_ratio_axis",
    "w1_floor",
    "w1_floor_normal",
    "w1_ratio",
    "w1_ratio_by_sample_size",
]
