"""Gradient quality on linear-decoder objectives with exact gradients (chapter 05)."""
from .objectives import (  # noqa: F401
    expected_reconstruction_loss,
    linear_decoder_grad_hessian,
    linear_decoder_loss,
    overcomplete_dct_dictionary,
    reconstruction_loss,
    sample_linear_poisson_patches,
)
from .sweep import (  # noqa: F401
    FIXED_CAP_METHODS,
    GRADIENT_METHODS,
    RANDOM_ATOMS,
    SETUPS,
    expected_eat_gradient,
    expected_eat_quality,
    gradient_quality_sweep,
    main_setup_decoder,
    per_sample_gradients,
    random_unit_atoms,
)
