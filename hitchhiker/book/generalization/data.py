r"""Synthetic data of the non-Poisson experiment: a ground-truth :class:`~.model.LatentCountModel` of one
family and dispersion (:data:`~.model.TRUE_DISPERSIONS`), and the counts it draws.

>>> data = simulate_count_data("com-poisson", "under", n_train=20, n_test=5)
>>> tuple(data.train.shape), data.dispersion
((20, 32), 2.0)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .model import DISPERSION_BOUNDS, MAX_MEAN, TRUE_DISPERSIONS, LatentCountModel, _unbounded, check_family


@dataclass
class CountData:
    """A synthetic data set from a ground-truth :class:`LatentCountModel`."""

    family: str
    regime: str
    dispersion: float
    train: torch.Tensor
    test: torch.Tensor
    truth: LatentCountModel
    seed: int


def make_truth(family: str, dispersion: float, seed: int = 0, weight_scale: float = 1.0):
    r"""A ground-truth model: every dispersion (prior and likelihood) equal to ``dispersion``, prior
    means :math:`10\sigma(\mathcal N(0, 1))`, decoder weights :math:`\mathcal N(0, s^2/\text{fan-in})`
    times ``weight_scale`` :math:`s` (and biases :math:`\mathcal N(0, 1)`) from a seeded generator."""
    low, high = DISPERSION_BOUNDS[check_family(family)]
    if not low < dispersion < high:
        raise ValueError(f"dispersion={dispersion!r} must lie inside {DISPERSION_BOUNDS[family]}")
    generator = torch.Generator().manual_seed(int(seed))
    truth = LatentCountModel(family)
    raw = _unbounded(float(dispersion), truth.bounds)
    with torch.no_grad():
        for p in (truth.prior_raw, truth.posterior_raw, truth.likelihood_raw):
            p.fill_(raw)
        truth.prior_logit.copy_(torch.randn(truth.n_latents, generator=generator))
        for layer in truth.decoder:
            if isinstance(layer, nn.Linear):
                fan_in = layer.weight.shape[1]
                layer.weight.copy_(weight_scale * torch.randn(layer.weight.shape, generator=generator)
                                   * (2.0 / fan_in) ** 0.5 / MAX_MEAN ** 0.5)
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=generator))
    return truth


def simulate_count_data(family: str, regime: str, seed: int = 0, n_train: int = 2000,
                        n_test: int = 500, weight_scale: float = 1.0) -> CountData:
    """Draw ``n_train`` + ``n_test`` items from the ground truth of ``(family, regime)``
    (:data:`TRUE_DISPERSIONS`), seeded by ``seed``."""
    if regime not in TRUE_DISPERSIONS[check_family(family)]:
        raise ValueError(f"regime={regime!r} is not one of {tuple(TRUE_DISPERSIONS[family])} for "
                         f"family={family!r}")
    if n_train < 1 or n_test < 1:
        raise ValueError(f"n_train and n_test must be >= 1, got {n_train} and {n_test}")
    dispersion = TRUE_DISPERSIONS[family][regime]
    truth = make_truth(family, dispersion, seed, weight_scale)
    state = torch.random.get_rng_state()
    torch.manual_seed(10_000 + int(seed))
    x, _ = truth.sample(n_train + n_test)
    torch.random.set_rng_state(state)
    return CountData(family, regime, dispersion, x[:n_train], x[n_train:], truth, int(seed))
