"""The one switch between problem sizes: ``HITCHHIKER_SCALE`` = smoke | default | paper.

* ``smoke``   -- continuous integration: every notebook runs in well under two minutes on 2 CPU cores.
* ``default`` -- what the rendered book shows: clean figures in minutes on a laptop CPU.
* ``paper``   -- the paper's full grids; meant for a GPU.

Chapters read the scale once and size their experiments with :func:`by_scale`::

    n_samples = by_scale(smoke=2_000, default=50_000, paper=50_000)
"""
from __future__ import annotations

import os

ENV_VAR = "HITCHHIKER_SCALE"
SCALES = ("smoke", "default", "paper")


def current_scale() -> str:
    """Return the active scale, read from the environment each time (so tests can change it)."""
    scale = os.environ.get(ENV_VAR, "default").strip().lower() or "default"
    if scale not in SCALES:
        raise ValueError(f"{ENV_VAR}={scale!r} is not a known scale; choose one of {SCALES}")
    return scale


def by_scale(smoke, default, paper=None):
    """Pick the value for the active scale (``paper`` falls back to ``default`` when omitted).

    >>> import os
    >>> saved = os.environ.get(ENV_VAR)
    >>> os.environ[ENV_VAR] = "paper"
    >>> by_scale(smoke=100, default=2_000, paper=50_000), by_scale(smoke=100, default=2_000)
    (50000, 2000)
    >>> _ = os.environ.pop(ENV_VAR) if saved is None else os.environ.update({ENV_VAR: saved})
    """
    scale = current_scale()
    if scale == "smoke":
        return smoke
    if scale == "paper" and paper is not None:
        return paper
    return default


def writes_results() -> bool:
    """Results CSVs are regenerated at default or paper scale only, never overwritten by a smoke run."""
    return current_scale() != "smoke"
