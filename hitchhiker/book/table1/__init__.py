"""Table 1 and the decision guide (chapter 09): the evidence columns read from the results tables
(:mod:`.evidence`), their ratings and the book's rule (:mod:`.rules`), the guide's measurements
(:mod:`.guide`), the regime map (:mod:`.regime`) and the ratings' sensitivity (:mod:`.sensitivity`)."""
from . import regime, sensitivity
from .evidence import (
    GRADIENT_DECODERS,
    TABLE_METHODS,
    fidelity_parts,
    gradient_rows,
    load_available_results,
    missing_evidence,
    pvae_rows,
    w1_beyond_floor,
    w1_on_moment_scale,
)
from .guide import (
    FIXED_CAP_VARIANT,
    GRADIENT_COLUMNS,
    gradient_setup_sensitivity,
    temperature_tradeoff,
    truncation_tail_mass,
)
from .rules import (
    LABELS,
    MEASURED_COLUMNS,
    SMOOTHNESS,
    Thresholds,
    evidence_table,
    mean_scores,
    recommendation_table,
)

__all__ = [
    "FIXED_CAP_VARIANT",
    "GRADIENT_DECODERS",
    "GRADIENT_COLUMNS",
    "LABELS",
    "MEASURED_COLUMNS",
    "SMOOTHNESS",
    "TABLE_METHODS",
    "Thresholds",
    "evidence_table",
    "fidelity_parts",
    "gradient_rows",
    "gradient_setup_sensitivity",
    "load_available_results",
    "mean_scores",
    "missing_evidence",
    "pvae_rows",
    "recommendation_table",
    "regime",
    "sensitivity",
    "temperature_tradeoff",
    "truncation_tail_mass",
    "w1_beyond_floor",
    "w1_on_moment_scale",
]
