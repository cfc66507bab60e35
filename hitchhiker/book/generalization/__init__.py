"""Latent COM-Poisson and negative-binomial models: the non-Poisson experiment (chapter 10).

``model`` (the latent count model, its loss and evaluation), ``data`` (ground truths and their counts),
``train`` (the grid), ``config`` (its size at each scale), ``evidence`` (Table 1's generalizability column:
the relative-gap rule, and the seed-spread rule checked by the positive and negative controls).
"""
from .config import controls_config, generalization_config
from .data import poisson_posterior_loss, simulate_control_data, simulate_count_data
from .evidence import (
    GAP_FLOOR,
    GAP_Z,
    GENERALIZATION_THRESHOLDS,
    generalizability_gaps,
    generalizability_ratings,
    generalization_evidence,
    generalization_gaps,
)
from .model import CONTROLS, GENERALIZATION_METHODS
from .train import run_generalization_controls, run_generalization_experiment

__all__ = [
    "CONTROLS",
    "GAP_FLOOR",
    "GAP_Z",
    "GENERALIZATION_METHODS",
    "GENERALIZATION_THRESHOLDS",
    "controls_config",
    "generalizability_gaps",
    "generalizability_ratings",
    "generalization_config",
    "generalization_evidence",
    "generalization_gaps",
    "poisson_posterior_loss",
    "run_generalization_controls",
    "run_generalization_experiment",
    "simulate_control_data",
    "simulate_count_data",
]
