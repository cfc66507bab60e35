"""The non-Poisson chapter's experiment at each scale, in one place (so that a pre-run and the chapter
agree).

* ``default``: both families at both dispersions, one data set (seed 0) and one training seed, every
  estimator, the paper's five temperatures, 1000 training and 500 test items, batch 100, AdamW at lr
  2e-3 for 150 epochs;
* ``paper``: the paper's 3 data sets x 5 seeds, 300 epochs at lr 1e-3 (otherwise as default);
* ``smoke``: two temperatures, 200 items, 20 epochs at lr 1e-2 (not converged: its flat-curve bar is
  ``flat_gain = 0.05`` instead of :data:`~hitchhiker.book.common.training.FLAT_GAIN`).

>>> config = generalization_config("smoke")
>>> config["epochs"], config["temperatures"], len(config["datasets"])
(20, [0.1, 0.5], 4)
"""
from __future__ import annotations

from typing import Optional

from ..common.scale import SCALES, current_scale
from ..common.training import FLAT_GAIN
from .model import FAMILIES, TRUE_DISPERSIONS


def generalization_config(scale: Optional[str] = None) -> dict:
    """The grid, sizes and schedule of the non-Poisson experiment at ``scale`` (default: the active one),
    as :func:`~.train.run_generalization_experiment` reads them, plus the chapter's ``flat_gain``."""
    scale = current_scale() if scale is None else scale
    if scale not in SCALES:
        raise ValueError(f"scale={scale!r} is not one of {SCALES}")
    paper_temperatures = [0.02, 0.05, 0.1, 0.2, 0.5]
    config = dict(
        smoke=dict(data_seeds=[0], seeds=[0], temperatures=[0.1, 0.5], n_train=200, n_test=100, epochs=20,
                   lr=1e-2, eval_every=5, eval_samples=16, flat_gain=0.05),
        default=dict(data_seeds=[0], seeds=[0], temperatures=paper_temperatures, n_train=1000, n_test=500,
                     epochs=150, lr=2e-3, eval_every=15, eval_samples=64, flat_gain=FLAT_GAIN),
        paper=dict(data_seeds=[0, 1, 2], seeds=[0, 1, 2, 3, 4], temperatures=paper_temperatures,
                   n_train=1000, n_test=500, epochs=300, lr=1e-3, eval_every=30, eval_samples=128,
                   flat_gain=FLAT_GAIN),
    )[scale]
    return {"datasets": [(f, r) for f in FAMILIES for r in TRUE_DISPERSIONS[f]], "score_samples": [4],
            "pathwise_samples": 1, **config}


def controls_config(scale: Optional[str] = None) -> dict:
    """The generalizability controls and the seeded main comparison at ``scale`` (default: the active
    one), as :func:`~.train.run_generalization_controls` reads them.

    Each method runs at one setting fixed before the runs (every relaxation at ``temperature``, the
    score function with ``score_samples`` draws) with three training seeds at every scale (the sizes are
    cut, never the seeds):

    * ``controls``: the positive and negative control (:func:`~.data.simulate_control_data`), fitting the
      posterior alone (``n_train``, ``epochs``, ``lr``);
    * ``datasets``: the main experiment's two strongly non-Poisson data sets (COM-Poisson nu = 2, negative
      binomial r = 2), trained as :func:`generalization_config` trains them (so that its seed-0 runs are
      reused), at three seeds; at smoke scale the first of them only.

    >>> config = controls_config("default")
    >>> config["seeds"], config["temperature"], config["controls"]
    ([0, 1, 2], 0.05, ['positive', 'negative'])
    """
    scale = current_scale() if scale is None else scale
    main = generalization_config(scale)
    strong = [("com-poisson", "under"), ("negative-binomial", "strong")]
    sizes = dict(
        smoke=dict(n_train=100, n_test=100, epochs=10, lr=2e-2, eval_every=5, eval_samples=16,
                   datasets=[("com-poisson", "under")], temperature=0.1),
        default=dict(n_train=500, n_test=500, epochs=150, lr=5e-3, eval_every=15, eval_samples=64,
                     datasets=strong, temperature=0.05),
        paper=dict(n_train=500, n_test=500, epochs=150, lr=5e-3, eval_every=15, eval_samples=64,
                   datasets=strong, temperature=0.05),
    )[scale]
    return {"controls": ["positive", "negative"], "seeds": [0, 1, 2], "score_samples": 4,
            "main": {k: main[k] for k in ("n_train", "n_test", "epochs", "lr", "eval_every", "eval_samples",
                                          "pathwise_samples", "flat_gain")},
            "flat_gain": main["flat_gain"], **sizes}
