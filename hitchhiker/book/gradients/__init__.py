"""Gradient quality on linear-decoder objectives with exact gradients (chapter 05): the objectives and
their closed-form gradient and Hessian (:mod:`.objectives`), the positive semi-definite curvature
weighting and the cross term (:mod:`.curvature`), the low-rate remedy (:mod:`.remedy`), the
matched-fidelity axis (:mod:`.matched`), the sweep over estimators, rates and temperatures
(:mod:`.sweep`) and the stored grid (:mod:`.grid`)."""
from . import grid
from .curvature import (
    absolute_hessian,
    first_order_cross_term,
    gauss_newton_hessian,
    negative_eigenvalue_fraction,
)
from .decoders import MAIN_DECODER, RANDOM_ATOMS, main_setup_decoder, random_unit_atoms
from .matched import matched_sweep, matched_temperature, variance_ratio_axis
from .objectives import (
    linear_decoder_grad_hessian,
    linear_decoder_loss,
    overcomplete_dct_dictionary,
    reconstruction_loss,
    sample_linear_poisson_patches,
)
from .remedy import rate_adaptive_temperature, window_arrivals
from .sweep import (
    ADAPTIVE_ARRIVALS,
    ADAPTIVE_METHODS,
    FIXED_CAP_METHODS,
    GRADIENT_METHODS,
    WEIGHTING,
    exact_quality_cases,
    expected_eat_gradient,
    expected_eat_quality,
    gradient_quality_sweep,
)

__all__ = [
    "ADAPTIVE_ARRIVALS",
    "ADAPTIVE_METHODS",
    "FIXED_CAP_METHODS",
    "GRADIENT_METHODS",
    "MAIN_DECODER",
    "RANDOM_ATOMS",
    "WEIGHTING",
    "absolute_hessian",
    "exact_quality_cases",
    "expected_eat_gradient",
    "expected_eat_quality",
    "first_order_cross_term",
    "gauss_newton_hessian",
    "gradient_quality_sweep",
    "grid",
    "linear_decoder_grad_hessian",
    "linear_decoder_loss",
    "main_setup_decoder",
    "matched_sweep",
    "matched_temperature",
    "negative_eigenvalue_fraction",
    "overcomplete_dct_dictionary",
    "random_unit_atoms",
    "rate_adaptive_temperature",
    "reconstruction_loss",
    "sample_linear_poisson_patches",
    "variance_ratio_axis",
    "window_arrivals",
]
