"""Distributional fidelity: moments and Wasserstein-1 of each relaxation over rates and temperatures (chapters 02-04)."""
from .sweep import (  # noqa: F401
    FIDELITY_METHODS,
    PAPER_RATES,
    PAPER_TEMPERATURES,
    campbell_ratios,
    draw_relaxed,
    fidelity_from_samples,
    fidelity_grid,
    fixed_cap_eat,
    fixed_cap_n_arrivals,
    measure_fidelity,
    official_pipeline_eat,
    official_pipeline_fidelity,
    official_pipeline_rate,
    time_rsample,
    truncated_poisson_moments,
)
