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

>>> data = simulate_poglm_data(seed=0)                      # 40 train / 20 test sequences, 100 bins
>>> model = POGLM()
>>> loss = negative_elbo(model, data.train[:8, :3], "eat-cubic", temperature=0.1, n_samples=5)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import permutations
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ...distributions import poisson_log_prob
from ...estimators import PATHWISE_METHODS, check_method, surrogate_loss
from ..common.runtime import seed_everything
from ..common.training import fit

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


class POGLM(nn.Module):
    r"""Generative spike-history GLM over visible + hidden neurons, with a Poisson posterior for the hidden.

    Args:
        n_visible: recorded neurons ``V`` (the first ``V`` rows of a spike tensor).
        n_hidden: unrecorded neurons ``H`` (the last ``H`` rows).
        history: bins of spike history ``L`` in the causal filter (a ``Conv1d(N, N, L)`` with bias).
        posterior_half_width: the posterior filter sees ``h`` bins before and after (kernel ``2h+1``).
        max_rate: rates are clamped at this value (spikes per bin).

    Spike tensors are ``(..., N, T)``: neurons along the second-to-last dimension, bins along the last.
    """

    def __init__(self, n_visible: int = 3, n_hidden: int = 2, history: int = 3,
                 posterior_half_width: int = 3, max_rate: float = 10.0):
        super().__init__()
        for name, value, low in (("n_visible", n_visible, 1), ("n_hidden", n_hidden, 1),
                                 ("history", history, 1), ("posterior_half_width", posterior_half_width, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if not (isinstance(max_rate, (int, float)) and math.isfinite(max_rate) and max_rate > 0):
            raise ValueError(f"max_rate must be a finite positive number, got {max_rate!r}")
        self.n_visible, self.n_hidden, self.history = n_visible, n_hidden, history
        self.n_neurons = n_visible + n_hidden
        self.max_rate = float(max_rate)
        self.generative = nn.Conv1d(self.n_neurons, self.n_neurons, history, bias=True)
        self.posterior = nn.Conv1d(n_visible, n_hidden, 2 * posterior_half_width + 1,
                                   padding=posterior_half_width, bias=True)

    @property
    def weight(self) -> torch.Tensor:
        """Generative spike-history weights ``W``, shape ``(N, N, L)``: target, source, kernel tap."""
        return self.generative.weight

    @property
    def bias(self) -> torch.Tensor:
        """Generative biases ``b``, shape ``(N,)``."""
        return self.generative.bias

    def _check_spikes(self, spikes: torch.Tensor, n_rows: int, name: str) -> None:
        if not torch.is_tensor(spikes) or spikes.dim() < 2 or spikes.shape[-2] != n_rows:
            shape = tuple(spikes.shape) if torch.is_tensor(spikes) else type(spikes).__name__
            raise ValueError(f"{name} must be a tensor of shape (..., {n_rows}, n_bins), got {shape}")

    def _conv(self, conv: nn.Conv1d, spikes: torch.Tensor, left: int) -> torch.Tensor:
        lead = spikes.shape[:-2]
        flat = spikes.reshape(-1, *spikes.shape[-2:]).to(conv.weight.dtype)
        out = conv(F.pad(flat, (left, 0)) if left else flat)
        return out.reshape(*lead, *out.shape[-2:])

    def firing_rate(self, spikes: torch.Tensor) -> torch.Tensor:
        r"""Generative rates :math:`\lambda_{n,t}` from the spikes of bins :math:`t-L, \dots, t-1`.

        ``spikes``: ``(..., N, T)`` (visible rows first). Returns ``(..., N, T)``.
        """
        self._check_spikes(spikes, self.n_neurons, "spikes")
        drive = self._conv(self.generative, spikes, self.history)[..., :-1]  # drop the rate of bin T
        return F.softplus(drive).clamp(max=self.max_rate)

    def posterior_rate(self, visible: torch.Tensor) -> torch.Tensor:
        r"""Posterior rates of the hidden spikes, :math:`\min(\mathrm{softplus}(V * x + c), \lambda_{max})`.

        ``visible``: ``(..., V, T)``. Returns ``(..., H, T)``.
        """
        self._check_spikes(visible, self.n_visible, "visible")
        return F.softplus(self._conv(self.posterior, visible, 0)).clamp(max=self.max_rate)

    def log_joint(self, visible: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        r""":math:`\log p(x, z)` summed over neurons and bins; ``hidden`` may carry extra leading sample dims.

        ``visible``: ``(B, V, T)``; ``hidden``: ``(..., B, H, T)``. Returns ``hidden.shape[:-2]``.
        """
        self._check_spikes(hidden, self.n_hidden, "hidden")
        spikes = torch.cat([visible.to(hidden.dtype).expand(*hidden.shape[:-2], *visible.shape[-2:]),
                            hidden], dim=-2)
        return poisson_log_prob(spikes, self.firing_rate(spikes)).sum((-2, -1))

    @torch.no_grad()
    def sample(self, n_sequences: int, n_bins: int, generator: Optional[torch.Generator] = None):
        """Ancestral sampling from zero history. Returns ``(spikes, rates)``, each ``(n_sequences, N, n_bins)``."""
        if n_sequences < 1 or n_bins < 1:
            raise ValueError(f"n_sequences and n_bins must be >= 1, got {n_sequences} and {n_bins}")
        weight = self.weight
        lag = self.history
        spikes = torch.zeros(n_sequences, self.n_neurons, n_bins + lag, dtype=weight.dtype,
                             device=weight.device)
        rates = torch.zeros(n_sequences, self.n_neurons, n_bins, dtype=weight.dtype, device=weight.device)
        for t in range(n_bins):
            drive = self.generative(spikes[:, :, t:t + lag])[..., 0]
            rates[:, :, t] = F.softplus(drive).clamp(max=self.max_rate)
            spikes[:, :, t + lag] = torch.poisson(rates[:, :, t], generator=generator)
        return spikes[:, :, lag:], rates


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
        """A :class:`POGLM` whose generative weights are the ground truth (posterior left at its init)."""
        kwargs.setdefault("max_rate", self.max_rate)
        model = POGLM(self.n_visible, self.n_hidden, self.weight.shape[-1], **kwargs)
        with torch.no_grad():
            model.generative.weight.copy_(self.weight)
            model.generative.bias.copy_(self.bias)
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
        model.generative.weight.copy_(weight)
        model.generative.bias.copy_(bias)
    train, train_rates = model.sample(n_train, n_bins, generator)
    test, test_rates = model.sample(n_test, n_bins, generator)
    return POGLMData(train, test, train_rates, test_rates, weight.clone(), bias.clone(),
                     n_visible, n_hidden, int(seed), regime, float(max_rate))


def _check_samples(n_samples) -> int:
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    return n_samples


def negative_elbo(model: POGLM, visible: torch.Tensor, method: str, temperature: Optional[float] = None,
                  n_samples: int = 1, n_categories: int = POGLM_GSM_CATEGORIES) -> torch.Tensor:
    r"""Training loss: minus the ELBO per sequence, averaged over the batch, with one gradient estimator.

    Args:
        visible: ``(B, V, T)`` visible spike counts.
        method: ``"score"``, or a pathwise registry name (``"eat-cubic"``, ``"eat-sigmoid"``, ``"gsm"``,
            ...), passed to :func:`hitchhiker.surrogate_loss`: pathwise methods draw relaxed
            :math:`\tilde z` and differentiate through them; ``"score"`` draws exact counts and uses
            the score-function surrogate (leave-one-out baseline when ``n_samples >= 2``, none for a
            single sample).
        temperature: :math:`\tau` of the relaxation (pathwise methods only; must be ``None`` for score).
        n_samples: Monte Carlo samples of :math:`z` per sequence.
        n_categories: ``K`` of the Gumbel-softmax (``"gsm"`` only).

    The value is the Monte Carlo estimate of :math:`-\mathcal L` (with relaxed counts for pathwise
    methods, exact for score).
    """
    check_method(method, PATHWISE_METHODS + ("score",))
    n_samples = _check_samples(n_samples)
    rate = model.posterior_rate(visible)
    extra = {"n_categories": n_categories} if method == "gsm" else {}

    def per_sample_loss(hidden, log_q):                  # hidden: (S, B, H, T) -> (S, B)
        return log_q.sum((-2, -1)) - model.log_joint(visible, hidden)   # -(log p - log q)

    return surrogate_loss(method, rate, per_sample_loss, temperature, n_samples,
                          with_log_prob=True, **extra).mean()


@torch.no_grad()
def evaluate_poglm(model: POGLM, spikes: torch.Tensor, n_samples: int = 256, seed: int = 0) -> dict:
    r"""Test ELBO and importance-sampled log-likelihood per sequence, with exact counts from :math:`q`.

    With :math:`w_s = p(x, z_s)/q(z_s \mid x)` for :math:`z_s \sim q`, ``elbo`` is
    :math:`\frac1S\sum_s \log w_s` and ``log_likelihood`` is :math:`\log\frac1S\sum_s w_s`, a
    stochastic lower bound of :math:`\log p(x)` that tightens as ``S`` grows and is never below the ELBO
    estimate from the same samples. Both are averaged over sequences (nats per sequence).
    ``spikes`` may hold visible rows only or all neurons (hidden rows are ignored).
    """
    n_samples = _check_samples(n_samples)
    visible = spikes[:, :model.n_visible]
    generator = torch.Generator(device=visible.device).manual_seed(int(seed))
    rate = model.posterior_rate(visible)
    hidden = torch.poisson(rate.expand(n_samples, *rate.shape).contiguous(), generator=generator)
    log_w = model.log_joint(visible, hidden) - poisson_log_prob(hidden, rate).sum((-2, -1))  # (S, B)
    log_likelihood = torch.logsumexp(log_w, 0) - math.log(n_samples)
    return {"elbo": float(log_w.mean()), "log_likelihood": float(log_likelihood.mean())}


def hidden_permutations(n_visible: int, n_hidden: int) -> list[tuple[int, ...]]:
    """All neuron orderings that keep the visible neurons in place and permute the hidden ones."""
    visible = tuple(range(n_visible))
    return [visible + tuple(n_visible + p for p in perm) for perm in permutations(range(n_hidden))]


def match_hidden_neurons(true_weight: torch.Tensor, learned_weight: torch.Tensor, n_visible: int):
    r"""The relabelling of learned neurons that best matches the truth (hidden neurons are exchangeable).

    Tries every permutation :math:`\pi` of the hidden neurons (``H!`` of them) and returns the one
    minimising :math:`\sum |W - W^{learned}_{\pi,\pi}|` as a list: learned neuron ``perm[n]`` plays true
    neuron ``n``.
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


def recovery_errors(model: POGLM, true_weight: torch.Tensor, true_bias: torch.Tensor) -> dict:
    """Mean absolute weight and bias errors after matching the hidden neurons' permutation.

    Returns ``{"weight_error", "bias_error", "permutation", "weight"}`` (``weight``: the learned weights
    relabelled to the true neurons' order, for plotting against the truth).
    """
    perm = match_hidden_neurons(true_weight, model.weight, model.n_visible)
    learned = model.weight.detach().cpu()[perm][:, perm]
    bias = model.bias.detach().cpu()[perm]
    return {"weight_error": float((learned - true_weight.cpu()).abs().mean()),
            "bias_error": float((bias - true_bias.cpu()).abs().mean()),
            "permutation": perm, "weight": learned}


#: The blocks of the connectivity that :func:`block_errors` reports, ``target<-source``.
POGLM_BLOCKS = ("vis<-vis", "vis<-hid", "hid<-vis", "hid<-hid", "all")


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


def train_poglm(data: POGLMData, method: str, temperature: Optional[float] = None, n_samples: int = 1, *,
                seed: int = 0, epochs: int = 100, batch_size: int = 8, lr: float = 1e-3,
                n_categories: int = POGLM_GSM_CATEGORIES, device=None, checkpoint=None,
                progress_bar: bool = False):
    """Fit a fresh :class:`POGLM` to ``data.train`` (visible rows only) with :func:`hitchhiker.fit`.

    The defaults are the official training setup: AdamW, learning rate 1e-3, batch 8, 100 epochs.
    Returns ``(model, history)``.
    """
    check_method(method, PATHWISE_METHODS + ("score",))
    seed_everything(seed)
    model = POGLM(data.n_visible, data.n_hidden, data.weight.shape[-1])
    if device is not None:
        model.to(device)
    visible = data.train[:, :data.n_visible]

    def loss_fn(net, batch, progress):
        return negative_elbo(net, batch, method, temperature, n_samples, n_categories)

    settings = {"model": "poglm", "method": method, "temperature": temperature, "n_samples": n_samples,
                "n_categories": n_categories if method == "gsm" else None, "data_seed": data.seed}
    history = fit(model, loss_fn, visible, epochs=epochs, batch_size=batch_size, lr=lr,
                  optimizer="adamw", seed=seed, device=device, checkpoint=checkpoint, settings=settings,
                  progress_bar=progress_bar, desc=f"poglm {method}")
    return model, history


def run_poglm(data: POGLMData, method: str, temperature: Optional[float] = None, n_samples: int = 1, *,
              seed: int = 0, epochs: int = 100, eval_samples: int = 256, **train_kwargs):
    """Train one POGLM and evaluate it on ``data.test``; returns ``(row, model)``.

    ``row`` has ``method, temperature, n_samples, seed, n_categories, epochs, test_elbo,
    test_log_likelihood, weight_error, bias_error, final_train_loss, train_loss_trend``. ``temperature`` is ``None`` for the score function, ``n_categories`` is ``None``
    except for ``"gsm"``, ``train_loss_trend`` is :func:`training_trend` of the training losses.
    """
    model, history = train_poglm(data, method, temperature, n_samples, seed=seed, epochs=epochs,
                                 **train_kwargs)
    model = model.cpu()
    scores = evaluate_poglm(model, data.test, eval_samples, seed=seed)
    errors = recovery_errors(model, data.weight, data.bias)
    n_categories = train_kwargs.get("n_categories", POGLM_GSM_CATEGORIES) if method == "gsm" else None
    row = {"method": method, "temperature": temperature, "n_samples": n_samples, "seed": seed,
           "n_categories": n_categories, "epochs": epochs, "test_elbo": scores["elbo"],
           "test_log_likelihood": scores["log_likelihood"],
           "weight_error": errors["weight_error"], "bias_error": errors["bias_error"],
           "final_train_loss": history["loss"][-1] if history["loss"] else math.nan,
           "train_loss_trend": training_trend(history["loss"])}
    return row, model


def training_trend(losses) -> float:
    """Mean loss of the last tenth of the epochs minus that of the tenth before (negative: still falling).

    ``nan`` with fewer than two epochs.
    """
    losses = list(losses)
    width = max(1, len(losses) // 10)
    if len(losses) < 2 * width or len(losses) < 2:
        return math.nan
    last, before = losses[-width:], losses[-2 * width:-width]
    return sum(last) / width - sum(before) / width


# ----------------------------------------------------------------------------------------- figures
def draw_network(ax, weight: torch.Tensor, n_visible: int, threshold: float = 0.0) -> None:
    """Draw the neurons as a graph: visible filled, hidden open; an arrow m -> n per summed weight.

    The arrow from neuron ``m`` to ``n`` carries :math:`\\sum_k W_{n,m,k}` (red excitatory, blue
    inhibitory, width proportional to its size); self-connections are left out. Arrows below
    ``threshold`` in absolute value are not drawn.
    """
    from matplotlib.patches import Circle, FancyArrowPatch

    net = weight.detach().cpu().sum(-1)
    n = net.shape[0]
    n_hidden = n - n_visible
    gap = 1.4
    pos = {i: (gap * (i - (n_visible - 1) / 2), 1.3) for i in range(n_visible)}
    pos.update({n_visible + j: (gap * (j - (n_hidden - 1) / 2), 0.0) for j in range(n_hidden)})
    top = float(net.abs().max()) or 1.0
    radius = 0.2
    for target in range(n):
        for source in range(n):
            w = float(net[target, source])
            if source == target or abs(w) <= threshold:
                continue
            arrow = FancyArrowPatch(pos[source], pos[target], connectionstyle="arc3,rad=0.15",
                                    arrowstyle="-|>", mutation_scale=9, shrinkA=12, shrinkB=12,
                                    color="#c0392b" if w > 0 else "#2e6fbf", alpha=0.8,
                                    linewidth=0.4 + 2.6 * abs(w) / top)
            ax.add_patch(arrow)
    for i, (x, y) in pos.items():
        hidden = i >= n_visible
        ax.add_patch(Circle((x, y), radius, facecolor="white" if hidden else "0.25",
                            edgecolor="0.25", linewidth=1.5, linestyle="--" if hidden else "-", zorder=3))
        ax.text(x, y, str(i + 1), ha="center", va="center", zorder=4, fontsize=9,
                color="0.1" if hidden else "white")
    half = gap * (max(n_visible, n_hidden) - 1) / 2 + 0.35
    ax.set_xlim(-half, half)
    ax.set_ylim(-0.4, 1.7)
    ax.set_aspect("equal")
    ax.axis("off")


def connectivity_matrix(weight: torch.Tensor):
    """``(N, N, L)`` weights laid out as an ``(N, N*L)`` NumPy image: row = target, column block = source.

    Within a source's block the taps run from the oldest bin (lag ``L``) to the newest (lag 1).
    """
    w = weight.detach().cpu()
    return w.reshape(w.shape[0], -1).numpy()


def plot_spike_counts(ax, spikes: torch.Tensor, n_visible: int, max_count: Optional[float] = None):
    """Spike counts of one sequence as an image (neurons x bins); a line separates visible from hidden.

    Returns the image (for a colour bar).
    """
    counts = spikes.detach().cpu().numpy()
    image = ax.imshow(counts, aspect="auto", interpolation="nearest", cmap="Greys",
                      vmin=0, vmax=max_count if max_count is not None else float(counts.max()))
    ax.axhline(n_visible - 0.5, color="#d62728", linewidth=1.2)
    ax.set_yticks(range(counts.shape[0]))
    ax.set_yticklabels([f"{i + 1}{' (hidden)' if i >= n_visible else ''}" for i in range(counts.shape[0])])
    ax.set_xlabel("time bin")
    ax.set_ylabel("neuron")
    ax.grid(False)
    return image
