"""What every experiment shares: the scale switch (:mod:`.scale`), seeds and device (:mod:`.runtime`),
the results files (:mod:`.results`), the figure style (:mod:`.plotting`) and the one trainer
(:mod:`.training`).

Chapters reach the everyday helpers at the top (``hb.setup_chapter``, ``hb.by_scale``,
``hb.save_results``, ``hb.plotting``, ...); this package exports only what is not there.
"""
from .training import FLAT_GAIN

__all__ = ["FLAT_GAIN"]
