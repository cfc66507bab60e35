r"""A partially observable generalized linear model (POGLM) of spiking neurons, fit by variational inference.

**Generative model.** :math:`N = V + H` neurons (``V`` visible, ``H`` hidden) emit spike counts
:math:`y_{n,t}` in bins :math:`t = 0, \dots, T-1`. Each neuron's rate is a causal filter of the last
``L`` bins of every neuron's spikes (a ``Conv1d(N, N, L)`` with bias), passed through a softplus and
clamped at ``max_rate``:

.. math:: \lambda_{n,t} = \min\Big(\mathrm{softplus}\big(b_n + \sum_{m}\sum_{\ell=1}^{L}
          W_{n,m,L-\ell}\, y_{m,t-\ell}\big),\ \lambda_{max}\Big), \qquad
          y_{n,t} \sim \mathrm{Poisson}(\lambda_{n,t}),

with zero history before :math:`t = 0` (``W[n, m, k]`` multiplies the spike ``L - k`` bins back, as a
``Conv1d`` kernel does). We observe :math:`x = y_{1:V}` and not the hidden trains :math:`z = y_{V+1:N}`.

**Variational posterior.** Independent Poisson counts for the hidden spikes, with rates a
*non-causal* filter of the visible spikes (a ``Conv1d(V, H, 2h + 1)`` looking ``h`` bins both ways):
:math:`q(z \mid x) = \prod_{n,t} \mathrm{Poisson}(z_{n,t};\ \min(\mathrm{softplus}(V * x + c),
\lambda_{max}))`.

**ELBO.** :math:`\mathcal L = \mathbb E_{q}[\log p(x, \tilde z) - \log q(\tilde z)]`, where
:math:`\log p(x, z) = \sum_{n,t} \log \mathrm{Poisson}(y_{n,t}; \lambda_{n,t}(y))`. Pathwise methods
plug a relaxed :math:`\tilde z` (real-valued) into both terms, with the Poisson log-pmf extended to real
counts through :math:`\log\Gamma` (:meth:`hitchhiker.RelaxedPoisson.log_prob`); the score function
uses exact counts. Evaluation always uses exact counts (:math:`\tau = 0`).

**Members.** The model is tiny (5 neurons, 3 taps), so one run is dominated by Python overhead: a
:class:`POGLM` holds ``n_members`` independent models (as :class:`~hitchhiker.book.pvae.PoissonVAE`
does) with a leading member dimension, evaluated with grouped convolutions. Its losses are one per
member, so the sum of them gives each member its own gradient; ``POGLM()`` is the one-member model.

>>> data = simulate_poglm_data(seed=0)                      # 40 train / 20 test sequences, 100 bins
>>> model = POGLM(n_members=2, seeds=[0, 1])
>>> negative_elbo(model, data.train[:8, :3], "eat-cubic", temperature=0.1, n_samples=5).shape
torch.Size([2])
>>> evaluate(model, data.test, n_samples=16)["elbo"].shape
torch.Size([2])
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...distributions import poisson_log_prob
from ...estimators import PATHWISE_METHODS, check_method, surrogate_loss

#: The estimators the POGLM chapter compares (registry names of :mod:`hitchhiker.estimators`);
#: :func:`negative_elbo` also accepts every other pathwise name (``"st-cubic"``, ``"eat-linear"``, ...).
POGLM_METHODS = ("eat-sigmoid", "eat-cubic", "gsm", "score")
#: The Gumbel-softmax truncation the POGLM uses: a small fixed number of categories (counts 0..7),
#: the official code's default ``upperbound``. Rates are clamped at 10, so mass above 7 is dropped.
POGLM_GSM_CATEGORIES = 8
#: The two ground-truth regimes. ``"paper"``: what the paper's data were actually generated from --
#: the official generator meant to draw Gaussian weights but assigned them to an unused attribute, so
#: the ``Conv1d`` layer's default initialisation generated the data, :math:`W, b \sim U(\pm 1/\sqrt{NL})`
#: (:math:`1/\sqrt{15} \approx 0.258` for 5 neurons and 3 taps). ``"stress"``: the Gaussian
#: :math:`W, b \sim \mathcal N(0, 0.5^2)` the generator intended, whose rates often sit at the clamp.
POGLM_REGIMES = ("paper", "stress")
#: Standard deviation of the ground-truth weights and biases in the ``"stress"`` regime.
TRUE_WEIGHT_SCALE = 0.5
TRUE_BIAS_SCALE = 0.5


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


class POGLM(nn.Module):
    r"""``n_members`` independent spike-history GLMs over visible + hidden neurons, each with a Poisson
    posterior for its hidden neurons.

    Args:
        n_visible: recorded neurons ``V`` (the first ``V`` rows of a spike tensor).
        n_hidden: unrecorded neurons ``H`` (the last ``H`` rows).
        history: bins of spike history ``L`` in the causal filter (a ``Conv1d(N, N, L)`` with bias).
        posterior_half_width: the posterior filter sees ``h`` bins before and after (kernel ``2h+1``).
        max_rate: rates are clamped at this value (spikes per bin).
        n_members: independent models stored in one set of tensors (leading dimension ``M``).
        seeds: one initialisation seed per member: member ``m`` starts from the ``Conv1d`` default
            initialisation that ``torch.manual_seed(seeds[m])`` gives, so it equals the one-member model
            built with ``seeds=[seeds[m]]`` whatever stack it is in. Default: draw from torch's global
            generator, as any ``nn.Module`` does.

    Parameters: ``gen_weight`` ``(M, N, N, L)`` and ``gen_bias`` ``(M, N)`` (the generative filter),
    ``post_weight`` ``(M, H, V, 2h+1)`` and ``post_bias`` ``(M, H)`` (the posterior's). Spike tensors are
    ``(..., M, B, N, T)``: any leading sample dimensions, then members, sequences, neurons and bins; a
    ``(B, N, T)`` tensor goes to every member.
    """

    def __init__(self, n_visible: int = 3, n_hidden: int = 2, history: int = 3,
                 posterior_half_width: int = 3, max_rate: float = 10.0, n_members: int = 1, *,
                 seeds: Optional[Sequence[int]] = None):
        super().__init__()
        for name, value, low in (("n_visible", n_visible, 1), ("n_hidden", n_hidden, 1),
                                 ("history", history, 1), ("posterior_half_width", posterior_half_width, 0),
                                 ("n_members", n_members, 1)):
            _check_int(name, value, low)
        if not (isinstance(max_rate, (int, float)) and math.isfinite(max_rate) and max_rate > 0):
            raise ValueError(f"max_rate must be a finite positive number, got {max_rate!r}")
        if seeds is not None and len(seeds) != n_members:
            raise ValueError(f"seeds must have n_members = {n_members} entries, got {len(seeds)}")
        self.n_visible, self.n_hidden, self.history = n_visible, n_hidden, history
        self.n_neurons = n_visible + n_hidden
        self.posterior_half_width = posterior_half_width
        self.max_rate = float(max_rate)
        members = []
        for m in range(n_members):
            if seeds is not None:
                torch.manual_seed(int(seeds[m]))
            generative = nn.Conv1d(self.n_neurons, self.n_neurons, history, bias=True)
            posterior = nn.Conv1d(n_visible, n_hidden, 2 * posterior_half_width + 1, bias=True)
            members.append((generative.weight, generative.bias, posterior.weight, posterior.bias))
        gen_weight, gen_bias, post_weight, post_bias = (torch.stack([p.detach() for p in params])
                                                         for params in zip(*members))
        self.gen_weight = nn.Parameter(gen_weight)         # (M, N, N, L)
        self.gen_bias = nn.Parameter(gen_bias)             # (M, N)
        self.post_weight = nn.Parameter(post_weight)       # (M, H, V, 2h+1)
        self.post_bias = nn.Parameter(post_bias)           # (M, H)

    @property
    def n_members(self) -> int:
        return self.gen_weight.shape[0]

    @property
    def weight(self) -> torch.Tensor:
        """Generative spike-history weights ``W``, shape ``(M, N, N, L)``: member, target, source, tap."""
        return self.gen_weight

    @property
    def bias(self) -> torch.Tensor:
        """Generative biases ``b``, shape ``(M, N)``."""
        return self.gen_bias

    def _sizes(self) -> tuple:
        return self.n_visible, self.n_hidden, self.history, self.posterior_half_width, self.max_rate

    @classmethod
    def from_members(cls, models: Sequence["POGLM"]) -> "POGLM":
        """One model holding every member of ``models`` (copies), in order; sizes must agree."""
        models = list(models)
        if not models or not all(isinstance(m, POGLM) for m in models):
            raise ValueError("models must be a non-empty sequence of POGLM")
        if any(m._sizes() != models[0]._sizes() for m in models):
            raise ValueError("every POGLM of from_members must have the same sizes and max_rate")
        n_visible, n_hidden, history, half_width, max_rate = models[0]._sizes()
        out = cls(n_visible, n_hidden, history, half_width, max_rate,
                  n_members=sum(m.n_members for m in models))
        with torch.no_grad():
            for name, param in out.named_parameters():
                param.copy_(torch.cat([getattr(m, name).detach() for m in models]))
        return out

    def member(self, index: int) -> "POGLM":
        """Member ``index`` as a one-member model (a copy, on the CPU)."""
        if not -self.n_members <= index < self.n_members:
            raise IndexError(f"member {index} of a {self.n_members}-member POGLM")
        out = POGLM(*self._sizes())
        with torch.no_grad():
            for name, param in out.named_parameters():
                param.copy_(getattr(self, name)[index].detach().cpu())
        return out

    def per_member(self, spikes: torch.Tensor, n_rows: int, name: str) -> torch.Tensor:
        """``spikes`` as ``(..., M, B, n_rows, T)``: a ``(B, n_rows, T)`` tensor goes to every member."""
        if torch.is_tensor(spikes) and spikes.dim() == 3 and spikes.shape[-2] == n_rows:
            return spikes.unsqueeze(0).expand(self.n_members, *spikes.shape)
        if (not torch.is_tensor(spikes) or spikes.dim() < 4 or spikes.shape[-2] != n_rows
                or spikes.shape[-4] != self.n_members):
            shape = tuple(spikes.shape) if torch.is_tensor(spikes) else type(spikes).__name__
            raise ValueError(f"{name} must be a tensor of shape (n_sequences, {n_rows}, n_bins) or (..., "
                             f"{self.n_members}, n_sequences, {n_rows}, n_bins), got {shape}")
        return spikes

    def _grouped_conv(self, spikes, weight, bias, left: int, right: int) -> torch.Tensor:
        """Each member's Conv1d on its own slice: ``(..., M, B, C, T)`` -> ``(..., M, B, O, T')``."""
        *lead, members, batch, channels, bins = spikes.shape
        x = spikes.to(weight.dtype).reshape(-1, members, batch, channels, bins).transpose(1, 2)
        x = F.pad(x.reshape(-1, members * channels, bins), (left, right))
        out_channels = weight.shape[1]
        out = F.conv1d(x, weight.reshape(members * out_channels, *weight.shape[2:]),
                       bias.reshape(-1), groups=members)
        out = out.reshape(-1, batch, members, out_channels, out.shape[-1]).transpose(1, 2)
        return out.reshape(*lead, members, batch, out_channels, out.shape[-1])

    def firing_rate(self, spikes: torch.Tensor) -> torch.Tensor:
        r"""Generative rates :math:`\lambda_{n,t}` from the spikes of bins :math:`t-L, \dots, t-1`.

        ``spikes``: ``(..., M, B, N, T)`` or ``(B, N, T)`` (visible rows first). Returns
        ``(..., M, B, N, T)``.
        """
        spikes = self.per_member(spikes, self.n_neurons, "spikes")
        drive = self._grouped_conv(spikes, self.gen_weight, self.gen_bias, self.history, 0)[..., :-1]
        return F.softplus(drive).clamp(max=self.max_rate)

    def posterior_rate(self, visible: torch.Tensor) -> torch.Tensor:
        r"""Posterior rates of the hidden spikes, :math:`\min(\mathrm{softplus}(V * x + c), \lambda_{max})`.

        ``visible``: ``(..., M, B, V, T)`` or ``(B, V, T)``. Returns ``(..., M, B, H, T)``.
        """
        visible = self.per_member(visible, self.n_visible, "visible")
        h = self.posterior_half_width
        return F.softplus(self._grouped_conv(visible, self.post_weight, self.post_bias, h, h)
                          ).clamp(max=self.max_rate)

    def log_joint(self, visible: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        r""":math:`\log p(x, z)` summed over neurons and bins, per member and sequence.

        ``visible``: ``(M, B, V, T)`` or ``(B, V, T)``; ``hidden``: ``(..., M, B, H, T)`` (extra leading
        sample dimensions allowed). Returns ``hidden.shape[:-2]``.
        """
        visible = self.per_member(visible, self.n_visible, "visible")
        hidden = self.per_member(hidden, self.n_hidden, "hidden")
        spikes = torch.cat([visible.to(hidden.dtype).expand(*hidden.shape[:-2], *visible.shape[-2:]),
                            hidden], dim=-2)
        return poisson_log_prob(spikes, self.firing_rate(spikes)).sum((-2, -1))

    @torch.no_grad()
    def sample(self, n_sequences: int, n_bins: int, generator: Optional[torch.Generator] = None):
        """Ancestral sampling from zero history. Returns ``(spikes, rates)``, each
        ``(M, n_sequences, N, n_bins)``."""
        if n_sequences < 1 or n_bins < 1:
            raise ValueError(f"n_sequences and n_bins must be >= 1, got {n_sequences} and {n_bins}")
        weight, lag = self.gen_weight, self.history
        shape = (self.n_members, n_sequences, self.n_neurons)
        spikes = torch.zeros(*shape, n_bins + lag, dtype=weight.dtype, device=weight.device)
        rates = torch.zeros(*shape, n_bins, dtype=weight.dtype, device=weight.device)
        for t in range(n_bins):
            drive = self._grouped_conv(spikes[..., t:t + lag], self.gen_weight, self.gen_bias, 0, 0)[..., 0]
            rates[..., t] = F.softplus(drive).clamp(max=self.max_rate)
            spikes[..., t + lag] = torch.poisson(rates[..., t], generator=generator)
        return spikes[..., lag:], rates


@dataclass
class POGLMData:
    """Synthetic POGLM spike trains with the ground truth that generated them.

    ``train``/``test``: ``(n_sequences, N, n_bins)`` spike counts (visible rows first, then hidden);
    ``train_rates``/``test_rates``: the true rates behind them; ``weight`` ``(N, N, L)`` and ``bias``
    ``(N,)``: the ground-truth generative parameters; ``seed``: the generator's seed; ``regime``: which
    ground truth (:data:`POGLM_REGIMES`); ``max_rate``: the clamp.
    """

    train: torch.Tensor
    test: torch.Tensor
    train_rates: torch.Tensor
    test_rates: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor
    n_visible: int
    n_hidden: int
    seed: int
    regime: str = "paper"
    max_rate: float = 10.0

    def clamp_share(self) -> float:
        """Share of all bins (train and test, every neuron) whose true rate sits at the clamp."""
        rates = torch.cat([self.train_rates.flatten(), self.test_rates.flatten()])
        return float((rates >= self.max_rate).double().mean())

    def true_model(self, **kwargs) -> POGLM:
        """A one-member :class:`POGLM` whose generative weights are the ground truth (posterior left at
        its initialisation)."""
        kwargs.setdefault("max_rate", self.max_rate)
        model = POGLM(self.n_visible, self.n_hidden, self.weight.shape[-1], **kwargs)
        with torch.no_grad():
            model.gen_weight.copy_(self.weight.expand_as(model.gen_weight))
            model.gen_bias.copy_(self.bias.expand_as(model.gen_bias))
        return model


def simulate_poglm_data(seed: int = 0, n_visible: int = 3, n_hidden: int = 2, history: int = 3,
                        n_bins: int = 100, n_train: int = 40, n_test: int = 20, *, regime: str = "paper",
                        weight_scale: Optional[float] = None, bias_scale: Optional[float] = None,
                        max_rate: float = 10.0) -> POGLMData:
    r"""Draw ground-truth parameters and sample spike trains ancestrally (the paper's Figure 4 setup).

    Ground truth, drawn from a ``torch.Generator`` seeded with ``seed`` and actually written into the
    model that samples:

    * ``regime="paper"``: :math:`W_{n,m,k} \sim U(-a_W, a_W)`, :math:`b_n \sim U(-a_b, a_b)`, with
      :math:`a_W = a_b = 1/\sqrt{NL}` unless ``weight_scale``/``bias_scale`` (the half-widths) are given:
      the ``Conv1d`` default initialisation that generated the paper's data;
    * ``regime="stress"``: :math:`W_{n,m,k} \sim \mathcal N(0, \sigma_W^2)`, :math:`b_n \sim
      \mathcal N(0, \sigma_b^2)` with standard deviations ``weight_scale``/``bias_scale`` (0.5 unless
      given), the generator's intended Gaussian.

    Each sequence starts from zero history.
    """
    if regime not in POGLM_REGIMES:
        raise ValueError(f"regime must be one of {POGLM_REGIMES}, got {regime!r}")
    for name, value in (("weight_scale", weight_scale), ("bias_scale", bias_scale)):
        if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool)
                                      and math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if n_train < 1 or n_test < 1:
        raise ValueError(f"n_train and n_test must be >= 1, got {n_train} and {n_test}")
    generator = torch.Generator().manual_seed(int(seed))
    model = POGLM(n_visible, n_hidden, history, max_rate=max_rate)
    n = model.n_neurons
    if regime == "paper":
        default = 1.0 / math.sqrt(n * history)          # Conv1d's default bound, 1/sqrt(fan_in)
        a_w = default if weight_scale is None else weight_scale
        a_b = default if bias_scale is None else bias_scale
        weight = a_w * (2 * torch.rand(n, n, history, generator=generator) - 1)
        bias = a_b * (2 * torch.rand(n, generator=generator) - 1)
    else:
        s_w = TRUE_WEIGHT_SCALE if weight_scale is None else weight_scale
        s_b = TRUE_BIAS_SCALE if bias_scale is None else bias_scale
        weight = s_w * torch.randn(n, n, history, generator=generator)
        bias = s_b * torch.randn(n, generator=generator)
    with torch.no_grad():
        model.gen_weight.copy_(weight[None])
        model.gen_bias.copy_(bias[None])
    train, train_rates = (t[0] for t in model.sample(n_train, n_bins, generator))
    test, test_rates = (t[0] for t in model.sample(n_test, n_bins, generator))
    return POGLMData(train, test, train_rates, test_rates, weight.clone(), bias.clone(),
                     n_visible, n_hidden, int(seed), regime, float(max_rate))


def _check_samples(n_samples) -> int:
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    return n_samples


def _member_temperatures(temperature, n_members: int, like: torch.Tensor):
    """A scalar, or one temperature per member shaped to broadcast against ``(M, B, H, T)`` rates."""
    if temperature is None or isinstance(temperature, (int, float)):
        return temperature
    values = torch.as_tensor(temperature, dtype=like.dtype, device=like.device).reshape(-1)
    if values.numel() != n_members:
        raise ValueError(f"temperature needs one value per member ({n_members}), got {values.numel()}")
    return values.reshape(n_members, 1, 1, 1)


#: The temperature rules a run may name (``run["temperature_rule"]``): ``"rate-adaptive"`` is EAT-cubic
#: with the per-element temperature :math:`\min(1, \max(\tau, 1/(2\lambda_k)))` of the posterior rates
#: (:func:`adaptive_temperatures`); without a rule the temperature is :math:`\tau` everywhere.
TEMPERATURE_RULES = ("rate-adaptive",)


def adaptive_temperatures(rate: torch.Tensor, temperature) -> torch.Tensor:
    r"""The rate-adaptive temperature of every element of ``rate`` (``(M, B, H, T)`` posterior rates),
    member ``m`` at its own base :math:`\tau_m` (``temperature``: a number or one per member):
    :math:`\tau_k = \min(1, \max(\tau_m, 1/(2\lambda_k)))`, so the cubic's window holds at least one
    expected arrival where :math:`\tau_m` allows it and the relaxed mean stays exact (:math:`\tau_k \le 1`).
    Computed from the detached rates (a hyper-parameter, no gradient flows through it) by
    :func:`~hitchhiker.book.gradients.remedy.rate_adaptive_temperature`."""
    from ..gradients.remedy import rate_adaptive_temperature

    values = torch.as_tensor(temperature, dtype=rate.dtype).reshape(-1)
    if values.numel() == 1:
        values = values.expand(rate.shape[0])
    if values.numel() != rate.shape[0]:
        raise ValueError(f"temperature needs one value per member ({rate.shape[0]}), got {values.numel()}")
    return torch.stack([rate_adaptive_temperature(rate[m], float(values[m])) for m in range(rate.shape[0])])


def negative_elbo(model: POGLM, visible: torch.Tensor, method: str, temperature=None,
                  n_samples: int = 1, n_categories: int = POGLM_GSM_CATEGORIES, *,
                  baseline: Optional[bool] = None, temperature_rule: Optional[str] = None) -> torch.Tensor:
    r"""Training loss: minus the ELBO per sequence, averaged over each member's sequences, shape ``(M,)``.

    Args:
        visible: ``(M, B, V, T)`` visible spike counts, or ``(B, V, T)`` for every member.
        method: ``"score"``, or a pathwise registry name (``"eat-cubic"``, ``"eat-sigmoid"``, ``"gsm"``,
            ...), passed to :func:`hitchhiker.surrogate_loss` (one call for all members): pathwise methods
            draw relaxed :math:`\tilde z` and differentiate through them; ``"score"`` draws exact counts
            and uses the score-function surrogate (leave-one-out baseline when ``n_samples >= 2``, none
            for a single sample, unless ``baseline`` says otherwise).
        temperature: :math:`\tau` of the relaxation, a number or one per member (pathwise methods only;
            must be ``None`` for score).
        n_samples: Monte Carlo samples of :math:`z` per sequence.
        n_categories: ``K`` of the Gumbel-softmax (``"gsm"`` only).
        baseline: ``"score"`` only: ``False`` drops the leave-one-out baseline at any ``n_samples``
            (the official POGLM code has none), ``True`` requires it, ``None`` uses it when
            ``n_samples >= 2`` (:func:`hitchhiker.surrogate_loss`).
        temperature_rule: ``None`` (``temperature`` everywhere) or ``"rate-adaptive"`` (``"eat-cubic"``
            only): each element's temperature from its posterior rate, :func:`adaptive_temperatures`
            with ``temperature`` as the base :math:`\tau`.

    The value is the Monte Carlo estimate of :math:`-\mathcal L` (with relaxed counts for pathwise
    methods, exact for score).
    """
    check_method(method, PATHWISE_METHODS + ("score",))
    n_samples = _check_samples(n_samples)
    visible = model.per_member(visible, model.n_visible, "visible")
    rate = model.posterior_rate(visible)                          # (M, B, H, T)
    extra = {"n_categories": n_categories} if method == "gsm" else {}
    if baseline is not None:
        extra["baseline"] = baseline
    if temperature_rule is not None:
        if temperature_rule not in TEMPERATURE_RULES or method != "eat-cubic":
            raise ValueError(f"temperature_rule must be None or one of {TEMPERATURE_RULES} (method "
                             f"'eat-cubic' only), got {temperature_rule!r} for {method!r}")
        if temperature is None:
            raise ValueError("temperature_rule='rate-adaptive' needs a base temperature")
        tau = adaptive_temperatures(rate, temperature)
    else:
        tau = _member_temperatures(temperature, model.n_members, rate)

    def per_sample_loss(hidden, log_q):                           # (S, M, B, H, T) -> (S, M, B)
        return log_q.sum((-2, -1)) - model.log_joint(visible, hidden)   # -(log p - log q)

    return surrogate_loss(method, rate, per_sample_loss, tau, n_samples, with_log_prob=True,
                          **extra).mean(-1)


def negative_log_joint(model: POGLM, spikes: torch.Tensor) -> torch.Tensor:
    r"""The oracle's loss: :math:`-\log p(x, z)` with the hidden spikes *observed*, per member ``(M,)``."""
    spikes = model.per_member(spikes, model.n_neurons, "spikes")
    v = model.n_visible
    return -model.log_joint(spikes[..., :v, :], spikes[..., v:, :]).mean(-1)


@torch.no_grad()
def evaluate(model: POGLM, spikes: torch.Tensor, n_samples: int = 256, seed: int = 0,
             chunk: int = 64) -> dict:
    r"""Test ELBO and importance-sampled log-likelihood per sequence, per member, with exact counts from
    :math:`q`.

    With :math:`w_s = p(x, z_s)/q(z_s \mid x)` for :math:`z_s \sim q`, ``elbo`` is
    :math:`\frac1S\sum_s \log w_s` and ``log_likelihood`` is :math:`\log\frac1S\sum_s w_s`, a
    stochastic lower bound of :math:`\log p(x)` that tightens as ``S`` grows and is never below the ELBO
    estimate from the same samples. Both are averaged over sequences (nats per sequence). ``spikes``:
    ``(M, B, N or V, T)`` or ``(B, N or V, T)`` (hidden rows are ignored); the draws come from a generator
    seeded with ``seed``, ``chunk`` samples at a time.

    Returns ``{"elbo": (M,), "log_likelihood": (M,), "log_weights": (S, M, B)}`` (double tensors).
    """
    n_samples = _check_samples(n_samples)
    if torch.is_tensor(spikes) and spikes.dim() == 3:
        spikes = spikes.unsqueeze(0).expand(model.n_members, *spikes.shape)
    visible = spikes[..., :model.n_visible, :]
    generator = torch.Generator(device=visible.device).manual_seed(int(seed))
    rate = model.posterior_rate(visible)
    log_w = []
    for start in range(0, n_samples, chunk):
        size = min(chunk, n_samples - start)
        hidden = torch.poisson(rate.expand(size, *rate.shape).contiguous(), generator=generator)
        log_w.append((model.log_joint(visible, hidden)
                      - poisson_log_prob(hidden, rate).sum((-2, -1))).double())
    log_w = torch.cat(log_w)                                               # (S, M, B)
    log_likelihood = torch.logsumexp(log_w, 0) - math.log(n_samples)
    return {"elbo": log_w.mean(0).mean(-1), "log_likelihood": log_likelihood.mean(-1),
            "log_weights": log_w}


def regime_summary(datasets: dict, n_categories: int = POGLM_GSM_CATEGORIES) -> list:
    r"""Per regime, the true rates that an estimator must cover: mean and largest rate, the share of
    bins at the clamp, and the Poisson mass a GSM truncated to ``n_categories`` drops,
    :math:`P(z \ge K)`, averaged over all bins and at the largest rate."""
    out = []
    counts = torch.arange(n_categories, dtype=torch.float64)
    for regime, data in datasets.items():
        rates = torch.cat([data.train_rates.flatten(), data.test_rates.flatten()]).double()
        tail = 1 - poisson_log_prob(counts, rates[:, None]).exp().sum(-1)           # P(z >= K)
        at_max = 1 - poisson_log_prob(counts, rates.max()[..., None]).exp().sum(-1)
        out.append({"regime": regime, "mean_rate": float(rates.mean()), "max_rate": float(rates.max()),
                    "clamp_share": data.clamp_share(), "tail_mass_mean": float(tail.mean()),
                    "tail_mass_at_max": float(at_max)})
    return out
