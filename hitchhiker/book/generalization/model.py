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

>>> model = LatentCountModel("negative-binomial")
>>> x = torch.poisson(torch.full((4, 32), 3.0))
>>> negative_elbo(model, x, "eat-cubic", temperature=0.1).shape
torch.Size([])
>>> sorted(evaluate_model(model, x, "gsm", n_samples=8))
['elbo', 'log_likelihood']
"""
from __future__ import annotations

import math
from typing import Optional

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
#: The generalizability controls: ``{control: (family, dispersion)}`` of a ground truth whose posterior
#: is its prior (:func:`~.data.simulate_control_data`): non-Poisson by design (``"positive"``, COM-Poisson
#: nu = 2) or Poisson (``"negative"``, nu = 1).
CONTROLS = {"positive": ("com-poisson", 2.0), "negative": ("com-poisson", 1.0)}
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
        r""":math:`\log p(z) + \log p(x \mid z)` summed over units; ``z``: ``(..., B, D)``, ``x``:
        ``(B, M)``."""
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
    r"""Test ELBO and importance-sampled log-likelihood per item, with exact draws from ``method``'s
    :math:`q`.

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
