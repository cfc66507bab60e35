r"""Synthetic data of the non-Poisson experiment: a ground-truth :class:`~.model.LatentCountModel` of one
family and dispersion (:data:`~.model.TRUE_DISPERSIONS`), and the counts it draws.

>>> data = simulate_count_data("com-poisson", "under", n_train=20, n_test=5)
>>> tuple(data.train.shape), data.dispersion
((20, 32), 2.0)
>>> simulate_control_data("positive", n_train=20, n_test=5).regime
'positive-control'
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ...counts import ConwayMaxwellPoisson
from .model import (
    CONTROLS,
    DISPERSION_BOUNDS,
    MAX_MEAN,
    TRUE_DISPERSIONS,
    LatentCountModel,
    _com_log_rate,
    _unbounded,
    check_family,
)


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
    return _draw(truth, family, regime, dispersion, seed, n_train, n_test)


def simulate_control_data(control: str, seed: int = 0, n_train: int = 500, n_test: int = 500) -> CountData:
    r"""The data of a generalizability control (:data:`~.model.CONTROLS`): a COM-Poisson ground truth
    whose decoder weights are zero (``weight_scale=0``), so that the counts carry no information about
    the latents and the true posterior :math:`p(z \mid x)` *is* the prior, exactly:

    * ``"positive"``: every dispersion :math:`\nu = 2`, a strongly under-dispersed posterior that a
      Poisson :math:`q` cannot represent (a COM-Poisson :math:`q` can);
    * ``"negative"``: :math:`\nu = 1`, Poisson counts and a Poisson posterior that every :math:`q` can
      represent.

    The regime is ``"<control>-control"``; trained with ``fit="posterior"`` (:func:`~.train.train_model`)
    the generative model is the truth and only :math:`q` is learned.
    """
    if control not in CONTROLS:
        raise ValueError(f"control={control!r} is not one of {tuple(CONTROLS)}")
    if n_train < 1 or n_test < 1:
        raise ValueError(f"n_train and n_test must be >= 1, got {n_train} and {n_test}")
    family, dispersion = CONTROLS[control]
    truth = make_truth(family, dispersion, seed, weight_scale=0.0)
    return _draw(truth, family, f"{control}-control", dispersion, seed, n_train, n_test)


def poisson_posterior_loss(dispersion: float, seed: int = 0) -> float:
    r"""The nats per item that the best Poisson :math:`q` must lose on control data of COM-Poisson
    dispersion ``dispersion`` (:func:`simulate_control_data`'s truth, seed ``seed``), where the true
    posterior is the prior: :math:`\sum_j \min_\lambda \mathrm{KL}(\mathrm{Poisson}(\lambda) \,\|\,
    \mathcal F(\mu_j, \nu))` over the 8 latents, each minimised over a grid of 4001 rates (log-spaced,
    0.01 to 40) and then by a golden-section search between the grid minimum's neighbours (the count axis
    is cut at 200, where both pmfs are below 1e-30). A COM-Poisson :math:`q` loses nothing: at
    ``dispersion=1`` this is 0.

    >>> round(poisson_posterior_loss(1.0), 6)
    0.0
    """
    low, high = DISPERSION_BOUNDS["com-poisson"]
    if not low < dispersion < high:
        raise ValueError(f"dispersion={dispersion!r} must lie inside {DISPERSION_BOUNDS['com-poisson']}")
    truth = make_truth("com-poisson", dispersion, seed, weight_scale=0.0)
    counts = torch.arange(200, dtype=torch.float64)
    log_rates = torch.linspace(math.log(0.01), math.log(40.0), 4001, dtype=torch.float64)
    nu = torch.tensor(float(dispersion), dtype=torch.float64)
    total = 0.0
    for mean in truth.prior_mean().detach().double():
        target = ConwayMaxwellPoisson(log_rate=_com_log_rate(mean, nu), dispersion=nu, n_categories=200)
        log_p = target.log_prob(counts)

        def kl(log_rate):
            log_q = torch.distributions.Poisson(log_rate.exp()[..., None]).log_prob(counts)
            return (log_q.exp() * (log_q - log_p)).sum(-1)

        i = int(kl(log_rates).argmin())
        low, high = log_rates[max(i - 1, 0)], log_rates[min(i + 1, len(log_rates) - 1)]
        golden = (math.sqrt(5) - 1) / 2
        for _ in range(60):
            a, b = high - golden * (high - low), low + golden * (high - low)
            low, high = (low, b) if kl(a) < kl(b) else (a, high)
        total += float(kl((low + high) / 2).clamp(min=0.0))
    return total


def _draw(truth, family, regime, dispersion, seed, n_train, n_test) -> CountData:
    state = torch.random.get_rng_state()
    torch.manual_seed(10_000 + int(seed))
    x, _ = truth.sample(n_train + n_test)
    torch.random.set_rng_state(state)
    return CountData(family, regime, dispersion, x[:n_train], x[n_train:], truth, int(seed))
