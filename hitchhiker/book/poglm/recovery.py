r"""What a trained POGLM recovered: its weights against the truth (up to the hidden neurons' labels), per
block of the connectivity, and its likelihood against other networks on the same sequences.

Hidden neurons are exchangeable, so a learned network is compared with the truth after the relabelling
of its hidden neurons that fits best (:func:`match_hidden_neurons`).

>>> hidden_permutations(3, 2)
[(0, 1, 2, 3, 4), (0, 1, 2, 4, 3)]
"""
from __future__ import annotations

import math
from itertools import permutations
from typing import Sequence

import torch

from ...distributions import poisson_log_prob
from .model import POGLM, POGLM_GSM_CATEGORIES, evaluate

#: The blocks of the connectivity that :func:`block_errors` reports, ``target<-source``.
POGLM_BLOCKS = ("vis<-vis", "vis<-hid", "hid<-vis", "hid<-hid", "all")


def hidden_permutations(n_visible: int, n_hidden: int) -> list[tuple[int, ...]]:
    """All neuron orderings that keep the visible neurons in place and permute the hidden ones."""
    visible = tuple(range(n_visible))
    return [visible + tuple(n_visible + p for p in perm) for perm in permutations(range(n_hidden))]


def match_hidden_neurons(true_weight: torch.Tensor, learned_weight: torch.Tensor, n_visible: int):
    r"""The relabelling of learned neurons that best matches the truth (hidden neurons are exchangeable).

    Tries every permutation :math:`\pi` of the hidden neurons (``H!`` of them) and returns the one
    minimising :math:`\sum |W - W^{learned}_{\pi,\pi}|` as a list: learned neuron ``perm[n]`` plays true
    neuron ``n``. Both weights are ``(N, N, L)``.
    """
    if true_weight.shape != learned_weight.shape or true_weight.dim() != 3:
        raise ValueError(f"true_weight {tuple(true_weight.shape)} and learned_weight "
                         f"{tuple(learned_weight.shape)} must both be (N, N, L)")
    n = true_weight.shape[0]
    learned = learned_weight.detach().to(true_weight)
    best, best_error = None, math.inf
    for perm in hidden_permutations(n_visible, n - n_visible):
        index = list(perm)
        error = float((true_weight - learned[index][:, index]).abs().sum())
        if error < best_error:
            best, best_error = index, error
    return best


def _one_member(model: POGLM) -> POGLM:
    if model.n_members != 1:
        raise ValueError(f"model must be a one-member POGLM (pick one with .member(k)), got "
                         f"{model.n_members} members")
    return model


def recovery_errors(model: POGLM, true_weight: torch.Tensor, true_bias: torch.Tensor) -> dict:
    """Mean absolute weight and bias errors of a one-member model after matching the hidden neurons.

    Returns ``{"weight_error", "bias_error", "permutation", "weight"}`` (``weight``: the learned weights
    ``(N, N, L)`` relabelled to the true neurons' order, for plotting against the truth).
    """
    weight, bias = _one_member(model).weight[0], model.bias[0]
    perm = match_hidden_neurons(true_weight, weight, model.n_visible)
    learned = weight.detach().cpu()[perm][:, perm]
    bias = bias.detach().cpu()[perm]
    return {"weight_error": float((learned - true_weight.cpu()).abs().mean()),
            "bias_error": float((bias - true_bias.cpu()).abs().mean()),
            "permutation": perm, "weight": learned}


def block_errors(true_weight: torch.Tensor, learned_weight: torch.Tensor, n_visible: int) -> dict:
    r"""Mean absolute weight error per block of the connectivity, after matching the hidden neurons.

    The hidden relabelling is the one :func:`match_hidden_neurons` picks on the whole matrix. Blocks
    (rows are targets, columns sources): ``"vis<-vis"`` = :math:`W_{1:V,1:V}`, ``"vis<-hid"`` (hidden
    drive the visible), ``"hid<-vis"``, ``"hid<-hid"``, and ``"all"``. Every tap counts once, so
    ``"all"`` is the tap-weighted mean of the four blocks. ``learned_weight = 0`` gives the error of
    guessing :math:`W = 0`.
    """
    perm = match_hidden_neurons(true_weight, learned_weight, n_visible)
    learned = learned_weight.detach().to(true_weight)[perm][:, perm]
    error = (learned - true_weight).abs()
    v = n_visible
    blocks = {"vis<-vis": error[:v, :v], "vis<-hid": error[:v, v:], "hid<-vis": error[v:, :v],
              "hid<-hid": error[v:, v:], "all": error}
    return {name: float(block.mean()) for name, block in blocks.items()}


def recovery_table(rows: Sequence[dict], models: Sequence[POGLM], datasets: dict,
                   oracles: dict) -> list[dict]:
    """Per run and block (:data:`POGLM_BLOCKS`): ``error`` of the trained model, ``null_error`` of
    :math:`W = 0` and ``oracle_error`` of the hidden-spikes-observed fit for the same regime and seed
    (``oracles`` from :func:`~hitchhiker.book.poglm.grid.fit_oracle`)."""
    out = []
    for row, model in zip(rows, models):
        data = datasets[row["regime"]]
        v = data.n_visible
        learned = block_errors(data.weight, _one_member(model).weight[0], v)
        null = block_errors(data.weight, torch.zeros_like(data.weight), v)
        oracle = block_errors(data.weight, _one_member(oracles[row["regime"], row["seed"]][0]).weight[0], v)
        for block in POGLM_BLOCKS:
            out.append({"regime": row["regime"], "method": row["method"],
                        "temperature": row["temperature"], "n_samples": row["n_samples"],
                        "seed": row["seed"], "block": block, "error": learned[block],
                        "null_error": null[block], "oracle_error": oracle[block]})
    return out


def log_likelihood_se(log_weights: torch.Tensor) -> torch.Tensor:
    r"""Monte Carlo standard error of the importance-sampled log-likelihood per sequence, per member.

    ``log_weights``: ``(S, M, B)`` from :func:`~hitchhiker.book.poglm.model.evaluate`. For sequence
    ``b`` the estimate :math:`\log \bar w_b` has, by the delta method, variance
    :math:`\mathrm{Var}(w_b) / (S\,\bar w_b^2)`; the mean over the ``B`` sequences has the square root of
    the summed variances over ``B``. Returns ``(M,)``.
    """
    n = log_weights.shape[0]
    w = torch.exp(log_weights - log_weights.max(0).values)          # rescaled per sequence
    relative_var = w.var(0) / (n * w.mean(0) ** 2)                   # (M, B)
    return relative_var.sum(-1).sqrt() / log_weights.shape[-1]


def elbo_se(log_weights: torch.Tensor) -> torch.Tensor:
    r"""Monte Carlo standard error of the ELBO estimate per sequence, per member: the ELBO of sequence
    ``b`` is the mean of its ``S`` log-weights, with variance :math:`\mathrm{Var}(\log w_b)/S`; the mean
    over the ``B`` sequences has the square root of the summed variances over ``B``. ``log_weights``:
    ``(S, M, B)``; returns ``(M,)``."""
    n = log_weights.shape[0]
    return (log_weights.var(0) / n).sum(-1).sqrt() / log_weights.shape[-1]


def compare_likelihoods(data, models: dict, n_samples: int = 4096, seed: int = 0, cache_dir=None) -> list:
    """Importance-sampled log-likelihood (with its Monte Carlo standard error) and ELBO of several
    networks on the same training and test sequences, e.g. the truth against learned fits.

    ``models`` maps a label to a one-member :class:`POGLM` (its own posterior is the proposal). Returns
    rows ``{"model", "split", "elbo", "log_likelihood", "log_likelihood_se"}`` (nats per sequence).
    With ``cache_dir`` the numbers are stored there once
    (:func:`~hitchhiker.book.poglm.grid.cached_evaluation`, keyed by every weight and the spikes).
    """
    from .grid import cached_evaluation

    labels = list(models)
    stack = POGLM.from_members([_one_member(models[k]) for k in labels])
    out = []
    for split, spikes in (("train", data.train), ("test", data.test)):
        def compute(spikes=spikes):
            scores = evaluate(stack, spikes.expand(len(labels), *spikes.shape).contiguous(), n_samples, seed)
            return {"elbo": scores["elbo"], "log_likelihood": scores["log_likelihood"],
                    "log_likelihood_se": log_likelihood_se(scores["log_weights"])}

        scores = cached_evaluation(cache_dir, stack, spikes, {"compare_likelihoods": [n_samples, seed]},
                                   compute)
        out += [{"model": label, "split": split, "elbo": float(scores["elbo"][k]),
                 "log_likelihood": float(scores["log_likelihood"][k]),
                 "log_likelihood_se": float(scores["log_likelihood_se"][k])}
                for k, label in enumerate(labels)]
    return out


@torch.no_grad()
def posterior_rate_summary(rows: Sequence[dict], models: Sequence[POGLM], datasets: dict,
                           method: str = "gsm", n_categories: int = POGLM_GSM_CATEGORIES) -> list:
    r"""Per regime, the posterior rates that ``method``'s trained models put on the hidden spikes of
    the test sequences: the largest, and the Poisson mass :math:`P(z \ge K)` a GSM with
    ``n_categories`` drops at it and on average over bins."""
    counts = torch.arange(n_categories, dtype=torch.float64)
    rates: dict = {}
    for row, model in zip(rows, models):
        if row["method"] == method:
            data = datasets[row["regime"]]
            rates.setdefault(row["regime"], []).append(
                model.posterior_rate(data.test[:, :data.n_visible]).double().flatten())
    out = []
    for regime, values in rates.items():
        values = torch.cat(values)
        tail = 1 - poisson_log_prob(counts, values[:, None]).exp().sum(-1)
        out.append({"regime": regime, "max_posterior_rate": float(values.max()),
                    "tail_mass_mean": float(tail.mean()), "tail_mass_at_max": float(tail.max())})
    return out
