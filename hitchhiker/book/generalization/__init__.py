"""Latent COM-Poisson and negative-binomial models: the non-Poisson experiment (chapter 10).

``model`` (the latent count model, its loss and evaluation), ``data`` (ground truths and their counts),
``train`` (the grid), ``config`` (its size at each scale), ``evidence`` (Table 1's generalizability column).
"""
from .config import generalization_config
from .data import simulate_count_data
from .evidence import GENERALIZATION_THRESHOLDS, generalization_evidence, generalization_gaps
from .model import GENERALIZATION_METHODS
from .train import run_generalization_experiment

__all__ = [
    "GENERALIZATION_METHODS",
    "GENERALIZATION_THRESHOLDS",
    "generalization_config",
    "generalization_evidence",
    "generalization_gaps",
    "run_generalization_experiment",
    "simulate_count_data",
]
