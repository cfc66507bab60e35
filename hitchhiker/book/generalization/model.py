r"""When the counts are not Poisson: the paper's generalizability experiments and Table 1's last column.

**Model** (the paper's small latent-variable model). :math:`D = 8` latent counts :math:`z`, :math:`M = 32`
observed counts :math:`x`; a family :math:`\mathcal F(\mu, d)` of count distributions with mean
parameter :math:`\mu` and dispersion :math:`d` -- Conway-Maxwell-Poisson (``"com-poisson"``,
:math:`d = \nu`) or negative binomial (``"negative-binomial"``, :math:`d = r`):

.. math::
    z_j \sim \mathcal F(\mu^{prior}_j, d^{prior}_j), \qquad
    x_i \mid z \sim \mathcal F\big(10\,\sigma(g(z))_i,\; d^{lik}_i\big), \qquad
    q(z_j \mid x) = \mathcal F\big(10\,\sigma(h(x))_j,\; d^{post}_j\big),

with a decoder :math:`g` = Linear(8, 32), ReLU, Linear(32, 32), an encoder :math:`h` in reverse (of
:math:`\log(1 + x)`), learned prior means :math:`\mu^{prior} = 10\sigma(\theta)` and learned
dispersions, one per unit, each kept in :data:`DISPERSION_BOUNDS`. COM-Poisson is parameterised by its
approximate mean, :math:`\log\lambda = \nu\log(\mu + (\nu - 1)/(2\nu))` (the argument floored smoothly
by a sharp softplus, so that it stays positive for :math:`\nu < 1` and small :math:`\mu`), and
normalised by a truncated series whose dropped mass is bounded and checked
(:class:`hitchhiker.counts.ConwayMaxwellPoisson`); the negative binomial is torch's, with mean
:math:`\mu` and variance :math:`\mu + \mu^2/r`.

**Estimators** (:data:`GENERALIZATION_METHODS`), all maximising the ELBO
:math:`\mathbb E_q[\log p(z) + \log p(x \mid z) - \log q(z \mid x)]`:

* ``"score"``: exact draws from :math:`q` and :func:`hitchhiker.score_function_surrogate`
  (leave-one-out baseline);
* ``"gsm"``: the Gumbel-softmax over the categorical whose logits are :math:`q`'s own log-pmf on
  :math:`0..K-1` (:func:`hitchhiker.counts.gumbel_softmax_counts`), so it can represent :math:`q`
  exactly as :math:`\tau \to 0`;
* ``"eat-sigmoid"``, ``"eat-cubic"``: EAT can only draw Poisson counts, so their posterior is
  :math:`\mathrm{Poisson}(10\sigma(h(x)))` -- the same rate, no dispersion -- through
  :func:`hitchhiker.surrogate_loss`.

Relaxed counts are scored by each family's log-pmf extended to real values through
:math:`\log\Gamma`. Evaluation (:func:`evaluate_model`) uses exact draws from :math:`q`: the test ELBO and
the importance-sampled log-likelihood.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...counts import (
    ConwayMaxwellPoisson,
    gumbel_softmax_counts,
    negative_binomial,
    negative_binomial_logits,
    negative_binomial_tail_bound,
)
from ...distributions import poisson_log_prob
from ...estimators import check_method, score_function_surrogate, surrogate_loss
from ..common.runtime import seed_everything
from ..common.training import fit

FAMILIES = ("com-poisson", "negative-binomial")
#: The estimators compared, in the paper's order of Figure 4.
GENERALIZATION_METHODS = ("eat-sigmoid", "eat-cubic", "gsm", "score")
#: Methods whose posterior is the family itself (the others' is a Poisson).
FAMILY_POSTERIOR_METHODS = ("gsm", "score")
#: Every mean parameter is 10 sigmoid(.) (the paper's output rate).
MAX_MEAN = 10.0
#: Range of each learned dispersion: nu for COM-Poisson (1 = Poisson), r for the negative binomial.
DISPERSION_BOUNDS = {"com-poisson": (0.25, 4.0), "negative-binomial": (1.0, 100.0)}
#: The ground-truth dispersions of the data sets: ``{family: {regime: value}}``. COM-Poisson is
#: over-dispersed below nu = 1 and under-dispersed above; the negative binomial is always
#: over-dispersed, strongly at small r and mildly at large r.
TRUE_DISPERSIONS = {"com-poisson": {"over": 0.5, "under": 2.0},
                    "negative-binomial": {"strong": 2.0, "mild": 20.0}}
#: Sharpness of the softplus floor of the COM-Poisson mean parameterisation.
_FLOOR_SHARPNESS = 20.0


def check_family(family: str) -> str:
    if family not in FAMILIES:
        raise ValueError(f"family={family!r} is not one of {FAMILIES}")
    return family


def gsm_categories(family: str, tolerance: float = 1e-4) -> int:
    """The truncation ``K`` that keeps the dropped mass at most ``tolerance`` for every distribution
    the model can produce: means up to :data:`MAX_MEAN` and dispersions in :data:`DISPERSION_BOUNDS`.

    The tail beyond ``K`` grows with the mean at a fixed dispersion (both families are stochastically
    increasing in it), so it is checked at the largest mean for 401 dispersions spread geometrically
    over the whole range, with the library's bounds; the model then skips the per-call check.
    """
    low, high = DISPERSION_BOUNDS[check_family(family)]
    disp = torch.logspace(math.log10(low), math.log10(high), 401, dtype=torch.float64)
    mean = torch.full_like(disp, MAX_MEAN)
    if family == "com-poisson":
        return ConwayMaxwellPoisson(log_rate=_com_log_rate(mean, disp), dispersion=disp,
                                    tolerance=tolerance).n_categories
    dist = negative_binomial(mean, disp)
    k = 2
    while float(negative_binomial_tail_bound(dist, k).max()) > tolerance:
        k = int(math.ceil(1.25 * k))
    return k


def _com_log_rate(mean: torch.Tensor, dispersion: torch.Tensor) -> torch.Tensor:
    base = mean + (dispersion - 1) / (2 * dispersion)
    return dispersion * F.softplus(base, beta=_FLOOR_SHARPNESS).log()


class CountFamily:
    """One family's distributions from (mean, dispersion) tensors, with a fixed truncation ``K``.

    With the default ``K`` (:func:`gsm_categories`, checked over every mean and dispersion the model
    can produce) the per-call truncation checks are skipped (``validate=False``); an explicit
    ``n_categories`` is checked at every call instead.
    """

    def __init__(self, family: str, n_categories: Optional[int] = None):
        self.name = check_family(family)
        self.validate = n_categories is not None
        self.n_categories = gsm_categories(family) if n_categories is None else int(n_categories)

    def distribution(self, mean: torch.Tensor, dispersion: torch.Tensor, validate: Optional[bool] = None):
        validate = self.validate if validate is None else validate
        if self.name == "com-poisson":
            return ConwayMaxwellPoisson(log_rate=_com_log_rate(mean, dispersion), dispersion=dispersion,
                                        n_categories=self.n_categories, validate_args=validate)
        # validate_args=False lets torch's log_prob score relaxed (real) counts
        return negative_binomial(mean, dispersion, validate_args=False)

    def log_prob(self, value, mean, dispersion) -> torch.Tensor:
        return self.distribution(mean, dispersion).log_prob(value)

    def logits(self, mean, dispersion) -> torch.Tensor:
        dist = self.distribution(mean, dispersion)
        if self.name == "com-poisson":
            return dist.logits()
        return negative_binomial_logits(dist, self.n_categories, validate=self.validate)

    def sample(self, mean, dispersion, sample_shape=torch.Size()) -> torch.Tensor:
        return self.distribution(mean, dispersion).sample(torch.Size(sample_shape))


def _bounded(raw: torch.Tensor, bounds) -> torch.Tensor:
    low, high = bounds
    return low * (high / low) ** torch.sigmoid(raw)


def _unbounded(value: float, bounds) -> float:
    low, high = bounds
    u = math.log(value / low) / math.log(high / low)
    return math.log(u / (1 - u))


class LatentCountModel(nn.Module):
    """The generalizability model: prior, decoder (likelihood) and encoder (posterior) of one family.

    Args:
        family: ``"com-poisson"`` or ``"negative-binomial"``.
        n_latents, n_observed, n_hidden: 8, 32 and the width of the hidden layer (32).
        n_categories: truncation ``K`` (default :func:`gsm_categories`).
    """

    def __init__(self, family: str, n_latents: int = 8, n_observed: int = 32, n_hidden: int = 32,
                 n_categories: Optional[int] = None):
        super().__init__()
        self.family = CountFamily(family, n_categories)
        self.bounds = DISPERSION_BOUNDS[family]
        self.n_latents, self.n_observed = n_latents, n_observed
        self.decoder = nn.Sequential(nn.Linear(n_latents, n_hidden), nn.ReLU(),
                                     nn.Linear(n_hidden, n_observed))
        self.encoder = nn.Sequential(nn.Linear(n_observed, n_hidden), nn.ReLU(),
                                     nn.Linear(n_hidden, n_latents))
        self.prior_logit = nn.Parameter(torch.zeros(n_latents))
        start = _unbounded(math.sqrt(self.bounds[0] * self.bounds[1]), self.bounds)
        self.prior_raw = nn.Parameter(torch.full((n_latents,), start))
        self.posterior_raw = nn.Parameter(torch.full((n_latents,), start))
        self.likelihood_raw = nn.Parameter(torch.full((n_observed,), start))

    # the dispersions, each in DISPERSION_BOUNDS
    @property
    def prior_dispersion(self):
        return _bounded(self.prior_raw, self.bounds)

    @property
    def posterior_dispersion(self):
        return _bounded(self.posterior_raw, self.bounds)

    @property
    def likelihood_dispersion(self):
        return _bounded(self.likelihood_raw, self.bounds)

    def prior_mean(self):
        return MAX_MEAN * torch.sigmoid(self.prior_logit)

    def likelihood_mean(self, z: torch.Tensor) -> torch.Tensor:
        return MAX_MEAN * torch.sigmoid(self.decoder(z))

    def posterior_mean(self, x: torch.Tensor) -> torch.Tensor:
        return MAX_MEAN * torch.sigmoid(self.encoder(torch.log1p(x)))

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        r""":math:`\log p(z) + \log p(x \mid z)` summed over units; ``z``: ``(..., B, D)``, ``x``: ``(B, M)``."""
        prior = self.family.log_prob(z, self.prior_mean(), self.prior_dispersion).sum(-1)
        mean = self.likelihood_mean(z)
        lik = self.family.log_prob(x.expand(mean.shape), mean,
                                   self.likelihood_dispersion.expand(mean.shape)).sum(-1)
        return prior + lik

    def log_posterior(self, z, x_mean, method: str) -> torch.Tensor:
        r""":math:`\log q(z \mid x)` summed over latents, for ``method``'s posterior family."""
        if method in FAMILY_POSTERIOR_METHODS:
            return self.family.log_prob(z, x_mean, self.posterior_dispersion.expand(x_mean.shape)).sum(-1)
        return poisson_log_prob(z, x_mean).sum(-1)

    @torch.no_grad()
    def sample(self, n_items: int):
        """Ancestral samples ``(x, z)`` of shapes ``(n, M)`` and ``(n, D)`` (torch's global RNG)."""
        mean = self.prior_mean().expand(n_items, self.n_latents)
        z = self.family.sample(mean, self.prior_dispersion.expand(mean.shape))
        x_mean = self.likelihood_mean(z)
        x = self.family.sample(x_mean, self.likelihood_dispersion.expand(x_mean.shape))
        return x, z


def negative_elbo(model: LatentCountModel, x: torch.Tensor, method: str,
                  temperature: Optional[float] = None, n_samples: int = 1) -> torch.Tensor:
    """Training loss: minus the ELBO per item (nats), averaged over the batch, for one estimator."""
    check_method(method, GENERALIZATION_METHODS)
    q_mean = model.posterior_mean(x)
    if method in ("eat-sigmoid", "eat-cubic"):
        def per_sample_loss(z, log_q):            # z: (S, B, D) -> (S, B)
            return log_q.sum(-1) - model.log_joint(x, z)
        return surrogate_loss(method, q_mean, per_sample_loss, temperature, n_samples,
                              with_log_prob=True, validate_args=False).mean()
    disp = model.posterior_dispersion.expand(q_mean.shape)
    if method == "gsm":
        if temperature is None or not temperature > 0:
            raise ValueError(f"method='gsm' needs a temperature > 0, got {temperature!r}")
        z = gumbel_softmax_counts(model.family.logits(q_mean, disp), temperature, (n_samples,))
        return (model.log_posterior(z, q_mean, method) - model.log_joint(x, z)).mean()
    if temperature is not None:
        raise ValueError("method='score' takes no temperature")
    if n_samples < 2:
        raise ValueError("method='score' needs n_samples >= 2 (leave-one-out baseline)")
    z = model.family.sample(q_mean.detach(), disp.detach(), (n_samples,))
    log_q = model.log_posterior(z, q_mean, method)
    losses = log_q - model.log_joint(x, z)
    return score_function_surrogate(losses, log_q).mean()


@torch.no_grad()
def evaluate_model(model: LatentCountModel, x: torch.Tensor, method: str, n_samples: int = 128,
                   seed: int = 0, chunk: int = 32) -> dict:
    r"""Test ELBO and importance-sampled log-likelihood per item, with exact draws from ``method``'s :math:`q`.

    :math:`\log w_s = \log p(x, z_s) - \log q(z_s \mid x)`, :math:`z_s \sim q`: ``elbo`` is the mean of
    :math:`\log w_s`, ``log_likelihood`` the mean over items of :math:`\log\frac1S\sum_s w_s` (never
    below the ELBO from the same draws). Nats per item (32 observed counts).
    """
    check_method(method, GENERALIZATION_METHODS)
    q_mean = model.posterior_mean(x)
    disp = model.posterior_dispersion.expand(q_mean.shape)
    log_w = []
    with torch.random.fork_rng(devices=[]):   # seeded draws that leave training's RNG stream alone
        torch.manual_seed(int(seed))
        for start in range(0, n_samples, chunk):
            size = min(chunk, n_samples - start)
            if method in FAMILY_POSTERIOR_METHODS:
                z = model.family.sample(q_mean, disp, (size,))
            else:
                z = torch.poisson(q_mean.expand(size, *q_mean.shape).contiguous())
            log_w.append(model.log_joint(x, z) - model.log_posterior(z, q_mean, method))
    log_w = torch.cat(log_w)
    log_likelihood = torch.logsumexp(log_w, 0) - math.log(n_samples)
    return {"elbo": float(log_w.mean()), "log_likelihood": float(log_likelihood.mean())}


# ------------------------------------------------------------------------------------------- data
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


# ----------------------------------------------------------------------------------------- training
def generalization_runs(temperatures: Sequence[float], score_samples: Sequence[int],
                        seeds: Sequence[int], pathwise_samples: int = 1) -> list[dict]:
    """The grid of one data set: each relaxation at each temperature, the score function at each
    sample count, for every seed. Rows are ``{"method", "temperature", "n_samples", "seed"}``."""
    runs = []
    for seed in seeds:
        for method in ("eat-sigmoid", "eat-cubic", "gsm"):
            for tau in temperatures:
                runs.append({"method": method, "temperature": float(tau),
                             "n_samples": int(pathwise_samples), "seed": int(seed)})
        for s in score_samples:
            runs.append({"method": "score", "temperature": None, "n_samples": int(s), "seed": int(seed)})
    return runs


def checkpoint_name(data: CountData, run: dict, epochs: int) -> str:
    """``<family>-<regime>-data<seed>-<method>[-tau<τ>]-S<n>-seed<seed>-epochs<e>.pt``."""
    tau = "" if run["temperature"] is None else f"-tau{run['temperature']:g}"
    return (f"{data.family}-{data.regime}-data{data.seed}-{run['method']}{tau}-S{run['n_samples']}"
            f"-seed{run['seed']}-epochs{epochs}.pt")


def curve_gain(losses, fraction: float = 0.25, window: float = 0.05) -> float:
    r"""Relative improvement of a loss curve over its last ``fraction`` of epochs:
    :math:`(\bar L_{start} - \bar L_{end}) / |\bar L_{end}|`, each :math:`\bar L` the mean over
    ``window`` of the epochs (at least one) ending at the start of the last quarter, resp. at the end.
    Positive: still improving; "flat" in this book means below 0.005 (0.5%). ``nan`` if too short."""
    losses = np.asarray(list(losses), dtype=float)
    n = len(losses)
    width = max(1, int(round(window * n)))
    cut = n - int(round(fraction * n))
    if cut < width or n - cut < 1:
        return math.nan
    before, end = losses[cut - width:cut].mean(), losses[-width:].mean()
    return float((before - end) / abs(end))


def train_model(data: CountData, method: str, temperature: Optional[float] = None, n_samples: int = 1,
                *, seed: int = 0, epochs: int = 300, batch_size: int = 100, lr: float = 1e-3,
                eval_every: int = 0, eval_samples: int = 16, device=None, checkpoint=None,
                progress_bar: Optional[bool] = None):
    """Fit a fresh :class:`LatentCountModel` to ``data.train`` with :func:`hitchhiker.book.fit`
    (the paper's AdamW, lr 1e-3, batch 100). ``eval_every`` > 0 records the test ELBO (exact draws,
    ``eval_samples`` per item) along the way. Returns ``(model, history)``."""
    check_method(method, GENERALIZATION_METHODS)
    seed_everything(seed)
    model = LatentCountModel(data.family)

    def loss_fn(net, batch, progress):
        return negative_elbo(net, batch, method, temperature, n_samples)

    def eval_fn(net):
        return evaluate_model(net, data.test, method, eval_samples, seed=seed)["elbo"]

    settings = {"model": "latent-count", "family": data.family, "regime": data.regime,
                "method": method, "temperature": temperature, "n_samples": n_samples,
                "data_seed": data.seed, "eval_every": eval_every,
                "data_checksum": float(data.train[:64].double().sum())}
    history = fit(model, loss_fn, data.train, epochs=epochs, batch_size=batch_size, lr=lr,
                  optimizer="adamw", seed=seed, device=device, checkpoint=checkpoint, settings=settings,
                  eval_fn=eval_fn if eval_every else None, eval_every=eval_every,
                  progress_bar=progress_bar, desc=f"{data.family} {data.regime} {method}")
    return model, history


def run_generalization(data: CountData, runs, *, epochs: int = 300, eval_samples: int = 128,
                       checkpoint_dir=None, **train_kwargs):
    """Train and evaluate every run of :func:`generalization_runs` on ``data``.

    Returns ``(rows, curves)``: one row per run with ``family, regime, dispersion, method,
    temperature, n_samples, seed, data_seed, epochs, test_elbo, log_likelihood,
    dispersion_error`` (mean :math:`|\\log\\hat d - \\log d|` of the 32 learned likelihood
    dispersions), ``learned_dispersion`` (their geometric mean), ``posterior_dispersion`` (geometric
    mean of the 8 posterior dispersions; NaN for the Poisson posteriors of EAT), ``curve_gain``
    (:func:`curve_gain` of the training loss), ``seconds``; and the learning curves as rows ``family, regime, method,
    temperature, n_samples, seed, epoch, train_loss`` (plus ``test_elbo`` where evaluated).
    """
    rows, curves = [], []
    for run in runs:
        start = time.perf_counter()
        checkpoint = None
        if checkpoint_dir is not None:
            checkpoint = f"{checkpoint_dir}/{checkpoint_name(data, run, epochs)}"
        model, history = train_model(data, run["method"], run["temperature"], run["n_samples"],
                                     seed=run["seed"], epochs=epochs, checkpoint=checkpoint,
                                     **train_kwargs)
        seconds = time.perf_counter() - start
        model = model.cpu().eval()
        scores = evaluate_model(model, data.test, run["method"], eval_samples, seed=run["seed"])
        learned = model.likelihood_dispersion.detach().double()
        keys = {"family": data.family, "regime": data.regime, "dispersion": data.dispersion, **run}
        rows.append({**keys, "data_seed": data.seed, "epochs": epochs,
                     "test_elbo": scores["elbo"], "log_likelihood": scores["log_likelihood"],
                     "dispersion_error": float((learned.log() - math.log(data.dispersion)).abs().mean()),
                     "learned_dispersion": float(learned.log().mean().exp()),
                     "posterior_dispersion": (float(model.posterior_dispersion.detach().double().log()
                                                    .mean().exp())
                                              if run["method"] in FAMILY_POSTERIOR_METHODS else math.nan),
                     "final_train_loss": history["loss"][-1] if history["loss"] else math.nan,
                     "curve_gain": curve_gain(history["loss"]),
                     "n_categories": model.family.n_categories if run["method"] == "gsm" else None,
                     "seconds": seconds})
        evals = dict(history["eval"])
        for epoch, loss in enumerate(history["loss"], start=1):
            curves.append({**keys, "data_seed": data.seed, "epoch": epoch, "train_loss": loss,
                           "test_elbo": evals.get(epoch, math.nan)})
    return rows, curves


def generalization_settings() -> dict:
    """The chapter's grid at the active scale (one place, so that a pre-run and the notebook agree).

    * default: both families at both dispersions, one data set (seed 0) and one training seed, every
      estimator, the paper's five temperatures, 1000 training and 500 test items, batch 100, AdamW at
      lr 2e-3 for 150 epochs;
    * paper: the paper's 3 data sets x 5 seeds, 300 epochs at lr 1e-3 (otherwise as default);
    * smoke: two temperatures, 200 items, 20 epochs at lr 1e-2.
    """
    from ..common.scale import by_scale

    return {
        "datasets": [(f, r) for f in FAMILIES for r in TRUE_DISPERSIONS[f]],
        "data_seeds": by_scale(smoke=[0], default=[0], paper=[0, 1, 2]),
        "seeds": by_scale(smoke=[0], default=[0], paper=[0, 1, 2, 3, 4]),
        "temperatures": by_scale(smoke=[0.1, 0.5], default=[0.02, 0.05, 0.1, 0.2, 0.5]),
        "score_samples": by_scale(smoke=[4], default=[4]),
        "pathwise_samples": 1,
        "n_train": by_scale(smoke=200, default=1000),
        "n_test": by_scale(smoke=100, default=500),
        "epochs": by_scale(smoke=20, default=150, paper=300),
        "lr": by_scale(smoke=1e-2, default=2e-3, paper=1e-3),
        "eval_every": by_scale(smoke=5, default=15, paper=30),
        "eval_samples": by_scale(smoke=16, default=64, paper=128),
    }


def run_generalization_experiment(settings: Optional[dict] = None, checkpoint_dir=None, device=None):
    """Every data set and run of ``settings`` (default :func:`generalization_settings`).

    Returns ``(results, curves, seconds)``: DataFrames of :func:`run_generalization`'s rows and curves
    over all data sets, and the wall time.
    """
    import pandas as pd

    settings = generalization_settings() if settings is None else settings
    start = time.perf_counter()
    rows, curves = [], []
    for family, regime in settings["datasets"]:
        for data_seed in settings["data_seeds"]:
            data = simulate_count_data(family, regime, seed=data_seed, n_train=settings["n_train"],
                                       n_test=settings["n_test"])
            runs = generalization_runs(settings["temperatures"], settings["score_samples"],
                                       settings["seeds"], settings["pathwise_samples"])
            more_rows, more_curves = run_generalization(
                data, runs, epochs=settings["epochs"], lr=settings["lr"],
                eval_every=settings["eval_every"], eval_samples=settings["eval_samples"],
                checkpoint_dir=checkpoint_dir, device=device)
            rows += more_rows
            curves += more_curves
    return pd.DataFrame(rows), pd.DataFrame(curves), time.perf_counter() - start


# ---------------------------------------------------------------------------------- Table 1 column
#: Cut-offs on the generalizability evidence (the worst relative ELBO gap to the best method):
#: ``good`` within 1% of the best in every family and dispersion, ``fair`` within 3%, else ``poor``.
GENERALIZATION_THRESHOLDS = (0.01, 0.03)


def generalization_gaps(frame) -> "pd.DataFrame":
    r"""Each method's ELBO gap to the best method, per family and dispersion.

    For each (family, regime) and method, the seed-averaged test ELBO of the method's best setting
    (over temperatures, resp. sample counts): :math:`E_m`. With :math:`E^* = \max_m E_m`, the gap is
    :math:`E^* - E_m` (nats per item) and the relative gap :math:`(E^* - E_m)/|E^*|`. Columns
    ``family, regime, dispersion, method, best_temperature, best_n_samples, test_elbo, gap,
    relative_gap``.
    """
    import pandas as pd

    needed = {"family", "regime", "dispersion", "method", "temperature", "n_samples", "seed", "test_elbo"}
    missing = needed - set(frame.columns)
    if missing:
        raise ValueError(f"frame lacks the columns {sorted(missing)}")
    cells = (frame.groupby(["family", "regime", "dispersion", "method", "temperature", "n_samples"],
                           dropna=False)["test_elbo"].mean().reset_index())
    best = cells.loc[cells.groupby(["family", "regime", "method"])["test_elbo"].idxmax()]
    best = best.rename(columns={"temperature": "best_temperature", "n_samples": "best_n_samples"})
    top = best.groupby(["family", "regime"])["test_elbo"].transform("max")
    best = best.assign(gap=top - best["test_elbo"], relative_gap=(top - best["test_elbo"]) / top.abs())
    return best.reset_index(drop=True)


def generalization_evidence(frame, thresholds=GENERALIZATION_THRESHOLDS) -> "pd.DataFrame":
    """Table 1's generalizability column from the results: per method, the worst relative ELBO gap to
    the best method over every family and dispersion (:func:`generalization_gaps`), where it was
    worst, and the rating (``good`` at most ``thresholds[0]``, ``fair`` at most ``thresholds[1]``,
    ``poor`` above). Indexed by method, columns ``evidence, worst_case, rating``."""
    import pandas as pd

    good, fair = thresholds
    if not 0 <= good <= fair:
        raise ValueError(f"thresholds={thresholds!r} must be (good, fair) with 0 <= good <= fair")
    gaps = generalization_gaps(frame)
    worst = gaps.loc[gaps.groupby("method")["relative_gap"].idxmax()].set_index("method")
    rating = ["good" if v <= good else "fair" if v <= fair else "poor" for v in worst["relative_gap"]]
    out = pd.DataFrame({"evidence": worst["relative_gap"],
                        "worst_case": worst["family"] + " " + worst["regime"], "rating": rating},
                       index=worst.index)
    order = [m for m in GENERALIZATION_METHODS if m in out.index]
    return out.loc[order]
