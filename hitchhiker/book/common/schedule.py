r"""The book's training schedules, one implementation: learning-rate warm-up and cosine decay, the KL
weight and temperature anneals, gradient clipping.

The learning rate at optimiser step :math:`s` (0-based) of a run of :math:`S` steps with
:math:`W` warm-up steps is

.. math::
    \eta_s = \eta\,\frac{s + 1}{W} \quad (s < W), \qquad
    \eta_s = \eta_{end} + \tfrac12(\eta - \eta_{end})\big(1 + \cos(\pi\,\min(1, (s - W) / D))\big),

with :math:`D` = ``decay_steps`` (default :math:`S - 1 - W`, so that the last step uses
:math:`\eta_{end}`). ``lr_final=None`` keeps :math:`\eta` constant.

>>> s = Schedule(steps=100, warmup_steps=10, lr=1e-2, lr_final=1e-4)
>>> s.learning_rate(0), s.learning_rate(9), s.learning_rate(99)
(0.001, 0.01, 0.0001)
>>> Schedule(steps=5, lr=0.1).learning_rate(3)
0.1
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

#: How a pathwise run's temperature evolves: a linear anneal from ``temperature_start``, or fixed.
TEMPERATURE_SCHEDULES = ("anneal", "fixed")

#: The two floating-point forms of the one cosine: ``"direct"`` (the P-VAE's) and ``"lambdalr"``
#: (``lr * (value / lr)`` with ``pi * s / D``, as :class:`torch.optim.lr_scheduler.LambdaLR` evaluated
#: the POGLM's; kept so that stored results reproduce bit for bit).
COSINE_FORMS = ("direct", "lambdalr")


@dataclass(frozen=True)
class Schedule:
    """A training run of ``steps`` optimiser steps: learning rate, KL weight, temperature, clipping.

    Args:
        steps: optimiser steps.
        warmup_steps: linear learning-rate warm-up from ``lr / warmup_steps`` to ``lr``.
        lr: peak learning rate.
        lr_final: end of the cosine decay (``None``: constant ``lr`` after the warm-up).
        decay_steps: the cosine's length (default ``steps - 1 - warmup_steps``).
        cosine_form: one of :data:`COSINE_FORMS`.
        anneal_fraction: the share of training over which beta and the temperature are annealed.
        temperature_start: the temperature at step 0 of an annealed run.
        beta_start: the KL weight at step 0 (1: no KL warm-up).
        clip_norm: gradient-norm clip (per member of a stacked model); ``None`` for none.
    """

    steps: int
    warmup_steps: int = 0
    lr: float = 1e-3
    lr_final: Optional[float] = None
    decay_steps: Optional[int] = None
    cosine_form: str = "direct"
    anneal_fraction: float = 1.0
    temperature_start: float = 1.0
    beta_start: float = 1.0
    clip_norm: Optional[float] = None

    def __post_init__(self):
        if isinstance(self.steps, bool) or int(self.steps) != self.steps or self.steps < 1:
            raise ValueError(f"steps must be a positive integer, got {self.steps!r}")
        if not 0 <= self.warmup_steps < self.steps:
            raise ValueError(f"warmup_steps must be in [0, steps), got {self.warmup_steps}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        if self.lr_final is not None and not 0 < self.lr_final <= self.lr:
            raise ValueError(f"need 0 < lr_final <= lr, got {self.lr_final} and {self.lr}")
        if self.decay_steps is not None and not (int(self.decay_steps) == self.decay_steps >= 1):
            raise ValueError(f"decay_steps must be a positive integer or None, got {self.decay_steps!r}")
        if self.cosine_form not in COSINE_FORMS:
            raise ValueError(f"cosine_form={self.cosine_form!r} is not one of {COSINE_FORMS}")
        if not 0 < self.anneal_fraction <= 1:
            raise ValueError(f"anneal_fraction must be in (0, 1], got {self.anneal_fraction}")
        if not (self.temperature_start > 0 and 0 <= self.beta_start <= 1):
            raise ValueError("need temperature_start > 0 and beta_start in [0, 1]")
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ValueError(f"clip_norm must be > 0 or None, got {self.clip_norm}")

    def learning_rate(self, step: int) -> float:
        """Linear warm-up to ``lr``, then cosine decay to ``lr_final`` (or constant ``lr``)."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.lr_final is None:
            return self.lr
        lr, final = self.lr, self.lr_final
        span = self.decay_steps
        if span is None:
            span = max(1, self.steps - 1 - self.warmup_steps)
        if self.cosine_form == "lambdalr":
            return lr * ((final + 0.5 * (lr - final) * (1 + math.cos(math.pi * (step - self.warmup_steps)
                                                                    / span))) / lr)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return final + 0.5 * (lr - final) * (1 + math.cos(math.pi * progress))

    def _annealed(self, step: int) -> float:
        return min(1.0, step / (self.anneal_fraction * self.steps))

    def beta(self, step: int) -> float:
        """KL weight: ``beta_start`` to 1, linearly over the first ``anneal_fraction``."""
        return self.beta_start + (1 - self.beta_start) * self._annealed(step)

    def temperature(self, step: int, final: float, schedule: str = "anneal") -> float:
        """The temperature at ``step`` of a run that ends at ``final``."""
        if schedule not in TEMPERATURE_SCHEDULES:
            raise ValueError(f"schedule={schedule!r} is not one of {TEMPERATURE_SCHEDULES}")
        if schedule == "fixed":
            return final
        return self.temperature_start + (final - self.temperature_start) * self._annealed(step)

    def same_start(self, steps: int, annealed_temperature: bool = True) -> bool:
        """Whether a run of ``steps`` (fewer) steps under this recipe took exactly the steps this
        one takes first (learning rate, beta and, with ``annealed_temperature``, the temperature
        anneal at every step): only then can a
        finished shorter run be extended into this one. A cosine or an anneal whose length follows
        ``steps`` changes with it, so a longer run of such a schedule starts anew.

        >>> Schedule(steps=20, lr=0.1).same_start(10, annealed_temperature=False)
        True
        >>> Schedule(steps=20, lr=0.1, lr_final=0.01).same_start(10)
        False
        """
        from dataclasses import replace

        if not 1 <= steps <= self.steps:
            return False
        shorter = replace(self, steps=steps)
        return all(shorter.learning_rate(s) == self.learning_rate(s) and shorter.beta(s) == self.beta(s)
                   and (not annealed_temperature or shorter._annealed(s) == self._annealed(s))
                   for s in range(steps))
