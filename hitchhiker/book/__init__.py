"""The book's experiments: every sweep, model and table behind the chapters (needs the ``book`` extra).

``pip install "poisson-hitchhiker[book]"`` brings pandas, matplotlib, scipy, SymPy, scikit-image and
tqdm. The library (:mod:`hitchhiker`) never imports this subpackage; chapters import it as
``from hitchhiker import book as hb`` and reach each experiment through its subpackage
(``hb.fidelity``, ``hb.gradients``, ``hb.pvae``, ``hb.poglm``, ``hb.generalization``, ``hb.table1``,
``hb.scorecard``),
the derivation through ``hb.campbell`` and the figure style through ``hb.plotting``.
"""
import importlib

from . import common, fidelity, generalization, gradients, poglm, pvae, scorecard, table1
from .common import plotting
from .common.results import load_results, save_results
from .common.runtime import default_device, results_dir, seed_everything, setup_chapter
from .common.scale import by_scale, current_scale

__all__ = [
    "by_scale",
    "campbell",
    "common",
    "current_scale",
    "default_device",
    "fidelity",
    "generalization",
    "gradients",
    "load_results",
    "plotting",
    "poglm",
    "pvae",
    "results_dir",
    "save_results",
    "scorecard",
    "seed_everything",
    "setup_chapter",
    "table1",
]


def __getattr__(name):
    # The SymPy derivation loads SymPy, which only chapter 02 needs: imported on first use.
    if name == "campbell":
        return importlib.import_module(".campbell", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
