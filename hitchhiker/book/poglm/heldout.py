r"""Held-out likelihoods of several networks under one shared proposal, and what Wilks' theorem expects.

**A shared mixture proposal.** The importance-sampled likelihood of a network is only as tight as its
proposal. A network's own factorised posterior can be far from its exact posterior (the truth's, trained
with generative weights frozen, is), so :func:`mixture_log_likelihood` draws the hidden spikes from an
equal-weight mixture of ``C`` posteriors :math:`q_c(z \mid x)` -- e.g. several posteriors refitted to the
truth and the posteriors of learned fits -- and weighs every draw against the whole mixture,

.. math:: \hat p(x) = \frac1C \sum_{c=1}^{C} \frac1n \sum_{s=1}^{n} \frac{p(x, z_{c,s})}
          {\bar q(z_{c,s} \mid x)}, \qquad z_{c,s} \sim q_c, \qquad
          \bar q = \frac1C \sum_c q_c,

``n`` draws from each component (stratified; the estimate of :math:`p(x)` has expectation
:math:`p(x)`, so its log has expectation at most :math:`\log p(x)`). Every network is scored on the same
draws, so differences between networks carry common random numbers.

**Wilks.** A maximum-likelihood fit of ``d`` free parameters beats the parameters that generated the
data on the training data by :math:`\tfrac12\chi^2_d` nats in total -- :math:`d/2` in expectation, with
standard deviation :math:`\sqrt{d/2}` -- and, by the same expansion, trails them by about :math:`d/2`
per training-set size on fresh data of the same size (:func:`wilks_expectation`). That needs regular,
identifiable parameters, which is what is in question for the hidden neurons.

>>> wilks_expectation(POGLM(), n_sequences=40)["free_parameters"]
80
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import pandas as pd
import torch

from ...distributions import poisson_log_prob
from .model import POGLM, _check_samples


def generative_parameter_count(model: POGLM) -> int:
    """Free parameters of one member's generative model: the weights ``N * N * L`` and biases ``N``
    (the posterior's parameters are not part of the model of the data)."""
    return int(model.gen_weight[0].numel() + model.gen_bias[0].numel())


def wilks_expectation(model: POGLM, n_sequences: int) -> dict:
    r"""What Wilks' theorem expects of the likelihood gap between a fit and the truth on ``n_sequences``
    training sequences, from the model's own parameter count ``d``
    (:func:`generative_parameter_count`).

    Returns ``{"free_parameters": d, "train_gap_total": d/2, "train_gap_sd_total": sqrt(d/2),
    "train_gap_per_sequence": d/(2n), "train_gap_sd_per_sequence": sqrt(d/2)/n,
    "heldout_gap_per_sequence": -d/(2n)}``: the fit's expected advantage (nats) on the training
    sequences, and on fresh sequences (negative: the truth is ahead), per sequence.
    """
    if isinstance(n_sequences, bool) or not isinstance(n_sequences, int) or n_sequences < 1:
        raise ValueError(f"n_sequences must be a positive integer, got {n_sequences!r}")
    d = generative_parameter_count(model)
    return {"free_parameters": d, "train_gap_total": d / 2, "train_gap_sd_total": math.sqrt(d / 2),
            "train_gap_per_sequence": d / (2 * n_sequences),
            "train_gap_sd_per_sequence": math.sqrt(d / 2) / n_sequences,
            "heldout_gap_per_sequence": -d / (2 * n_sequences)}


def stratified_log_likelihood(log_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The mixture estimate :math:`\log \hat p(x)` per sequence and its Monte Carlo standard error.

    ``log_weights``: ``(C, n, M, B)``, :math:`\log p(x, z) - \log \bar q(z)` of ``n`` draws from each of
    ``C`` components, for ``M`` networks and ``B`` sequences. The estimate is the mean over components of
    each component's mean weight; its variance, by the delta method, is
    :math:`\sum_c \mathrm{Var}_c(w)/(C^2 n)` over :math:`\hat p^2`. Returns the mean over sequences of
    :math:`\log \hat p` and its standard error (the root of the summed per-sequence variances over
    ``B``), each ``(M,)``.
    """
    n_components, n = log_weights.shape[:2]
    if n < 2:
        raise ValueError(f"need at least 2 draws per component, got {n}")
    shift = log_weights.amax((0, 1))                                   # (M, B)
    w = torch.exp(log_weights - shift)
    mean = w.mean(1).mean(0)                                           # (M, B)
    variance = w.var(1).sum(0) / (n_components ** 2 * n)              # (M, B)
    log_p = mean.log() + shift
    se = (variance / mean ** 2).sum(-1).sqrt() / log_weights.shape[-1]
    return log_p.mean(-1), se


@torch.no_grad()
def mixture_log_likelihood(networks: POGLM, proposals: POGLM, spikes: torch.Tensor, n_samples: int = 4096,
                           seed: int = 0, chunk: int = 32, inflations: Sequence[tuple] = ((1.0, 0.0),)
                           ) -> dict:
    r"""Importance-sampled log-likelihood of every member of ``networks`` on ``spikes`` with the
    equal-weight mixture of the posteriors of ``proposals``' members as the proposal (module docstring).

    Args:
        networks: ``M`` generative models (their posteriors are not used).
        proposals: ``C`` members whose posteriors form the mixture (their generative weights are not
            used); sizes must match ``networks``.
        spikes: ``(B, N or V, T)`` (hidden rows are ignored).
        n_samples: at least this many draws in all: ``ceil(n_samples / C)`` from each component.
        seed: seeds the generator of the draws; ``chunk``: draws per component at a time.
        inflations: ``(scale, floor)`` pairs: each posterior of ``proposals`` enters the mixture once per
            pair, with rates :math:`a\lambda + f` (so ``C`` is the number of members times the number of
            pairs). The default ``((1.0, 0.0),)`` is the posteriors as they are; a pair with ``a > 1`` or
            ``f > 0`` is an over-dispersed, mass-covering component (a defensive mixture: it covers hidden
            spikes the posteriors make unlikely, at the price of a factor ``1/C`` in their density).

    Returns ``{"log_likelihood": (M,), "log_likelihood_se": (M,), "n_draws": C * n}`` (nats per
    sequence, mean over the ``B`` sequences; double).
    """
    n_samples = _check_samples(n_samples)
    if networks._sizes() != proposals._sizes():
        raise ValueError("networks and proposals must have the same sizes and max_rate")
    if not torch.is_tensor(spikes) or spikes.dim() != 3:
        raise ValueError(f"spikes must be a (n_sequences, neurons, n_bins) tensor, got "
                         f"{tuple(spikes.shape) if torch.is_tensor(spikes) else type(spikes).__name__}")
    pairs = [tuple(p) for p in inflations]
    if not pairs or any(len(p) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                and math.isfinite(v) for v in p)
                        or p[0] <= 0 or p[1] < 0 for p in pairs):
        raise ValueError(f"inflations must be a non-empty sequence of (scale > 0, floor >= 0) pairs of "
                         f"finite numbers, got {inflations!r}")
    visible = spikes[:, :networks.n_visible]
    base = proposals.posterior_rate(visible)                             # (P, B, H, T)
    rates = torch.cat([scale * base + floor for scale, floor in pairs])  # (C, B, H, T)
    n_components = rates.shape[0]
    per_component = max(2, math.ceil(n_samples / n_components))
    generator = torch.Generator(device=visible.device).manual_seed(int(seed))
    log_w = []
    for c in range(n_components):
        component = []
        for start in range(0, per_component, chunk):
            size = min(chunk, per_component - start)
            hidden = torch.poisson(rates[c].expand(size, *rates.shape[1:]).contiguous(), generator=generator)
            # the mixture density of every draw: each component's log q, then logsumexp over them
            log_q = poisson_log_prob(hidden.unsqueeze(1), rates).sum((-2, -1)).double()   # (n, C, B)
            log_mix = torch.logsumexp(log_q, 1) - math.log(n_components)                  # (n, B)
            drawn = hidden.unsqueeze(1).expand(size, networks.n_members, *hidden.shape[1:])
            log_p = networks.log_joint(visible, drawn).double()                           # (n, M, B)
            component.append(log_p - log_mix.unsqueeze(1))
        log_w.append(torch.cat(component))
    log_likelihood, se = stratified_log_likelihood(torch.stack(log_w))
    return {"log_likelihood": log_likelihood, "log_likelihood_se": se,
            "n_draws": n_components * per_component}


def heldout_comparison(data, networks: dict, proposals: POGLM, n_samples: int = 4096, seed: int = 0,
                       splits: Optional[dict] = None, cache_dir=None,
                       inflations: Sequence[tuple] = ((1.0, 0.0),)) -> list:
    """:func:`mixture_log_likelihood` of several labelled one-member networks on the training and test
    sequences of ``data`` (a :class:`~.model.POGLMData`), all under the one mixture ``proposals``.
    With ``cache_dir`` the numbers are stored there once
    (:func:`~hitchhiker.book.poglm.grid.cached_evaluation`, keyed by every weight and the spikes).
    ``inflations``: the mixture's components per posterior (:func:`mixture_log_likelihood`).

    Rows ``{"model", "split", "log_likelihood", "log_likelihood_se", "n_draws"}``.
    """
    from .grid import cached_evaluation

    labels = list(networks)
    stack = POGLM.from_members([networks[k] for k in labels])
    both = POGLM.from_members([stack, proposals])          # the key: every weight of both
    splits = {"train": data.train, "test": data.test} if splits is None else splits
    out = []
    for split, spikes in splits.items():
        def compute(spikes=spikes):
            scores = mixture_log_likelihood(stack, proposals, spikes, n_samples, seed, inflations=inflations)
            return {**scores, "n_draws": torch.tensor(scores["n_draws"])}

        settings = {"mixture": [n_samples, seed, stack.n_members]}
        if [tuple(p) for p in inflations] != [(1.0, 0.0)]:
            settings["inflations"] = [[float(v) for v in p] for p in inflations]
        scores = cached_evaluation(cache_dir, both, spikes, settings, compute)
        out += [{"model": label, "split": split, "log_likelihood": float(scores["log_likelihood"][k]),
                 "log_likelihood_se": float(scores["log_likelihood_se"][k]),
                 "n_draws": int(scores["n_draws"])} for k, label in enumerate(labels)]
    return out


#: The proposals tried for the truth's importance-sampled likelihood (:func:`truth_proposals`): the
#: mixture of its refitted posteriors as they are, and defensive mixtures that add over-dispersed
#: components (rates times 1.5; rates plus 0.05 spikes per bin) to cover hidden spikes they make unlikely.
TRUTH_PROPOSALS = {
    "its posteriors": ((1.0, 0.0),),
    "its posteriors + rates x1.5": ((1.0, 0.0), (1.5, 0.0)),
    "its posteriors + rates x1.5 + rates +0.05": ((1.0, 0.0), (1.5, 0.0), (1.0, 0.05)),
}


def truth_proposals(data, posteriors: POGLM, proposals: Optional[dict] = None, n_samples: int = 4096,
                    seed: int = 0, cache_dir=None) -> list:
    """The truth's importance-sampled log-likelihood on the training and test sequences of ``data``
    under each proposal of ``proposals`` (name -> ``inflations`` of :func:`mixture_log_likelihood`;
    default :data:`TRUTH_PROPOSALS`), each a mixture built from ``posteriors`` (posteriors refitted to
    the true weights, one per member). Rows ``{"proposal", "split", "log_likelihood",
    "log_likelihood_se", "n_draws", "n_components"}``."""
    proposals = TRUTH_PROPOSALS if proposals is None else proposals
    out = []
    for name, inflations in proposals.items():
        for row in heldout_comparison(data, {"truth": data.true_model()}, posteriors, n_samples, seed,
                                      cache_dir=cache_dir, inflations=inflations):
            out.append({"proposal": name, **{k: v for k, v in row.items() if k != "model"},
                        "n_components": posteriors.n_members * len(inflations)})
    return out


def deficit_table(rows, reference: tuple = ("eat-cubic", 0.02, 5)):
    r"""Each setting's held-out deficit against a reference setting, in test ELBO and in
    importance-sampled log-likelihood, side by side.

    ``rows``: grid rows with the ``heldout_*`` columns (:func:`~.grid.run_poglm_grid` with
    ``heldout_samples``). ``reference``: ``(method, temperature, n_samples)``. Per regime and setting
    (``method``, ``temperature``, ``n_samples``), over the seeds both have: the seed means of
    ``heldout_elbo`` and ``heldout_log_likelihood`` with their Monte Carlo standard errors, and the
    reference minus the setting (positive: the setting is behind) in each metric, ``elbo_deficit`` and
    ``likelihood_deficit``, with standard errors (independent draws; the seed mean of differences has
    :math:`\sqrt{\sum_s (se_a^2 + se_b^2)}/n`). The ELBO's deficit is the model's (the likelihood's)
    plus the posterior's: ``elbo_deficit - likelihood_deficit`` is the part that lies in the
    posterior (up to the importance-sampling estimate's own gap). Returns a DataFrame.
    """
    frame = pd.DataFrame(list(rows))
    method, tau, n = reference
    is_ref = (frame["method"] == method) & (frame["n_samples"] == n)
    is_ref &= frame["temperature"].isna() if tau is None else (frame["temperature"] == tau)
    ref = frame[is_ref].set_index(["regime", "seed"])
    if ref.empty:
        raise ValueError(f"no rows of the reference setting {reference!r}")
    out = []
    for key, group in frame.groupby(["regime", "method", "temperature", "n_samples"], dropna=False):
        group = group.set_index(["regime", "seed"])
        common = group.index.intersection(ref.index)
        g, r = group.loc[common], ref.loc[common]
        k = len(common)
        if k == 0:
            continue
        row = dict(zip(["regime", "method", "temperature", "n_samples"], key), seeds=k)
        for metric in ("elbo", "log_likelihood"):
            value, se = g[f"heldout_{metric}"], g[f"heldout_{metric}_se"]
            row[metric] = float(value.mean())
            row[f"{metric}_se"] = float((se ** 2).sum() ** 0.5 / k)
            name = "elbo_deficit" if metric == "elbo" else "likelihood_deficit"
            row[name] = float((r[f"heldout_{metric}"] - value).mean())
            row[f"{name}_se"] = float(((se ** 2 + r[f"heldout_{metric}_se"] ** 2).sum()) ** 0.5 / k)
        out.append(row)
    return pd.DataFrame(out)
