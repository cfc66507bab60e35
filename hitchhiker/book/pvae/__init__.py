"""The Poisson VAE on natural image patches: model, data, the run grid and its training (chapter 06)."""
from .config import PVAESchedule, pvae_config, run_label
from .data import natural_image_patches
from .grid import missing_runs, pvae_experiment, update_pvae_results, write_pvae_results
from .model import PoissonVAE, dictionary_measures, filter_mosaic
from .summary import convergence, summarize_pvae
from .train import run_pvae_config, train_pvae_ensemble

__all__ = [
    "PVAESchedule",
    "PoissonVAE",
    "convergence",
    "dictionary_measures",
    "filter_mosaic",
    "missing_runs",
    "natural_image_patches",
    "pvae_config",
    "pvae_experiment",
    "run_label",
    "run_pvae_config",
    "summarize_pvae",
    "train_pvae_ensemble",
    "update_pvae_results",
    "write_pvae_results",
]
