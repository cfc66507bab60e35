"""Seeds, devices and the one-line chapter setup every notebook calls first."""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from .plotting import use_book_style
from .scale import current_scale


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def default_device() -> torch.device:
    """CUDA when available (``HITCHHIKER_DEVICE`` overrides), else CPU."""
    name = os.environ.get("HITCHHIKER_DEVICE")
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def results_dir() -> Path:
    """Where chapters store the numbers behind their figures.

    ``$HITCHHIKER_RESULTS`` when set; else, in a source checkout of the book, its ``book/results``
    (found from this package's location, so a command run from any directory reads and writes the
    book's files); else ``./results`` (an installed package, e.g. in Colab).
    """
    if os.environ.get("HITCHHIKER_RESULTS"):
        return Path(os.environ["HITCHHIKER_RESULTS"])
    checkout = Path(__file__).resolve().parents[3] / "book" / "results"
    return checkout if checkout.is_dir() else Path("results")


def setup_chapter(seed: int = 0, verbose: bool = True):
    """Seed everything, apply the figure style, and return ``(device, scale)``."""
    seed_everything(seed)
    use_book_style()
    device, scale = default_device(), current_scale()
    if verbose:
        print(f"hitchhiker: scale={scale}, device={device}, torch {torch.__version__}")
    return device, scale
