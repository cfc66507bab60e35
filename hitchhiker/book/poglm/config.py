"""The POGLM chapter's experiment at each scale, in one place (so that a pre-run and the chapter agree).

* ``default``: both regimes, three seeds, each relaxation at the paper's five temperatures (5 draws) and
  the score function at 1, 2, 5 and 10 samples (and the controls: EAT-cubic at tau = 1, 2, the official
  recipe, rate-adaptive EAT-cubic at tau = 0.02, 0.05, 0.1, GSM with K = 27 at tau = 0.02 and 0.5),
  400 epochs of batch 8 under AdamW with a cosine decay from 1e-2 to 1e-4, the test ELBO every 10
  epochs; likelihoods compared with 4096 importance samples;
* ``paper``: as default (the paper's grid; it fits a CPU);
* ``smoke``: two temperatures, score at 1 and 5 samples, one seed, 20 epochs (not converged: its
  flat-curve bar is ``flat_gain = 0.05`` instead of :data:`~hitchhiker.book.common.training.FLAT_GAIN`).

>>> config = poglm_config("smoke")
>>> len(config["runs"]), config["schedule"]["epochs"], config["flat_gain"]
(16, 20, 0.05)
"""
from __future__ import annotations

from typing import Optional

from ..common.scale import SCALES, current_scale
from ..common.training import FLAT_GAIN
from .controls import ADAPTIVE_TEMPERATURES, OFFICIAL_RECIPE, WIDE_GSM_CATEGORIES, WIDE_GSM_TEMPERATURES
from .grid import poglm_grid_runs
from .model import POGLM_REGIMES


def poglm_config(scale: Optional[str] = None) -> dict:
    """The grid, schedule and sample sizes of the POGLM chapter at ``scale`` (default: the active one).

    Keys: ``temperatures``, ``score_samples``, ``seeds``, ``schedule`` (the keyword arguments of
    :func:`~.grid.run_poglm_grid` and :func:`~.grid.fit_oracle`), ``flat_gain``, ``likelihood_samples``
    (importance-sampling draws of the held-out numbers), ``runs`` (:func:`~.grid.poglm_grid_runs` over
    both regimes), and for the controls (:func:`~.controls.run_controls`) ``wide_temperatures``
    (EAT-cubic above tau = 1) and ``official_schedule`` (:data:`~.controls.OFFICIAL_RECIPE`).
    """
    scale = current_scale() if scale is None else scale
    if scale not in SCALES:
        raise ValueError(f"scale={scale!r} is not one of {SCALES}")
    full = dict(temperatures=[0.02, 0.05, 0.1, 0.2, 0.5], score_samples=[1, 2, 5, 10], seeds=[0, 1, 2],
                epochs=400, eval_every=10, flat_gain=FLAT_GAIN, likelihood_samples=4096)
    config = dict(
        smoke=dict(temperatures=[0.1, 0.5], score_samples=[1, 5], seeds=[0], epochs=20, eval_every=5,
                   flat_gain=0.05, likelihood_samples=256),
        default=full,
        paper=full,
    )[scale]
    config = dict(config)
    # the controls: EAT-cubic above tau = 1, and the official recipe (at smoke, a quarter of the
    # smoke run's epochs, as the official 100 epochs are a quarter of the book's 400)
    config["wide_temperatures"] = [1.0, 2.0]
    # the temperature controls: rate-adaptive EAT-cubic (paper regime), GSM with K = 27 (stress)
    # (at smoke: one base temperature, and the smoke grid's two temperatures)
    config["adaptive_temperatures"] = [0.1] if scale == "smoke" else list(ADAPTIVE_TEMPERATURES)
    config["gsm_wide_categories"] = WIDE_GSM_CATEGORIES
    config["gsm_wide_temperatures"] = (list(config["temperatures"]) if scale == "smoke"
                                       else list(WIDE_GSM_TEMPERATURES))
    official_epochs = OFFICIAL_RECIPE["epochs"] if scale != "smoke" else config["epochs"] // 4
    config["official_schedule"] = {**OFFICIAL_RECIPE, "epochs": official_epochs,
                                   "eval_every": config["eval_every"]}
    config["schedule"] = {"epochs": config.pop("epochs"), "batch_size": 8, "lr": 1e-2, "final_lr": 1e-4,
                          "eval_every": config.pop("eval_every")}
    config["runs"] = poglm_grid_runs(POGLM_REGIMES, config["temperatures"], config["score_samples"],
                                     config["seeds"])
    return config
