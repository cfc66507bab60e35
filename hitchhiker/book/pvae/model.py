r"""The Poisson VAE of the paper's Figure 4 (top): a stack of independent linear P-VAEs.

Model (Vafaii, Galor & Yates, 2024), for a whitened image patch :math:`x \in \mathbb R^{256}` and
:math:`K = 512` latent counts, as in the official code:

.. math::
    \log\lambda = \mathrm{softclamp}_5\big(\log r + W_{enc}\, x\big), \qquad
    q(z \mid x) = \prod_k \mathrm{Poisson}(z_k; \lambda_k), \qquad
    p(z) = \prod_k \mathrm{Poisson}(z_k; r_k), \qquad \hat x = \Phi z,

with a linear encoder :math:`W_{enc}` (256 :math:`\to` 512, no bias, giving :math:`\log\delta r`), a
linear decoder :math:`\Phi` (512 :math:`\to` 256, no bias, rows :math:`\phi_k`), learned prior
log-rates :math:`\log r` initialised :math:`U(-6, -4)`, and the smooth upper clamp
:math:`\mathrm{softclamp}_c(u) = c - \mathrm{softplus}(c - u)` (:func:`soft_clamp_upper`; rates stay
below :math:`e^5 \approx 148`).

Loss (the negative ELBO with a summed-squared-error reconstruction; :math:`\beta` is warmed up to 1):

.. math::
    \mathcal L(x) = \mathbb E_{q}\,\|x - \Phi z\|^2
      + \beta\, \sum_k \big(\lambda_k \log(\lambda_k / r_k) - \lambda_k + r_k\big),

the second term being :math:`\mathrm{KL}(\mathrm{Pois}(\lambda) \,\|\, \mathrm{Pois}(r))`. Because the
decoder is linear, the expectation is exact too:
:math:`\mathbb E_q \|x - \Phi z\|^2 = \|x - \Phi\lambda\|^2 + \sum_k \lambda_k \|\phi_k\|^2`.
Training on it (``method="exact"``) gives the exact gradient, the reference every estimator is compared
to. The other methods go through :func:`hitchhiker.surrogate_loss`: a relaxed sample (``"eat-sigmoid"``,
``"eat-cubic"``, ``"gsm"``) in place of :math:`z`, or exact samples and the score-function surrogate
(``"score"``).

:class:`PoissonVAE` holds ``n_members`` such models with stacked weights (leading dimension ``E``), so
that one batched matrix product and one optimiser step advance every run of an experiment grid; the
members share nothing but the tensors they are stored in (each has its own initialisation, data order,
temperature and gradient clipping). Training is in :mod:`hitchhiker.book.pvae.train`.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ...distributions import default_n_categories
from ...estimators import check_method, surrogate_loss

if TYPE_CHECKING:
    import pandas as pd

#: The methods a Poisson VAE can be trained with.
VAE_METHODS = ("exact", "eat-sigmoid", "eat-cubic", "gsm", "score")

#: Default cap on the Gumbel-softmax truncation K (see :meth:`PoissonVAE.gsm_categories`).
GSM_MAX_CATEGORIES = 32


def soft_clamp_upper(x: torch.Tensor, high: float) -> torch.Tensor:
    r"""Smooth upper clamp :math:`c - \mathrm{softplus}(c - x)`: close to :math:`x` well below
    :math:`c`, tends to :math:`c` above it, gradient in (0, 1)."""
    if not math.isfinite(high):
        raise ValueError(f"soft_clamp_upper needs a finite bound, got {high}")
    return high - nn.functional.softplus(high - x)


def poisson_kl(prior_log_rate: torch.Tensor, log_rate: torch.Tensor) -> torch.Tensor:
    r""":math:`\mathrm{KL}(\mathrm{Pois}(\lambda)\,\|\,\mathrm{Pois}(r)) =
    \lambda(\log\lambda - \log r) - \lambda + r`, elementwise, from the log-rates."""
    rate = log_rate.exp()
    return rate * (log_rate - prior_log_rate) - rate + prior_log_rate.exp()


def _check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class PoissonVAE(nn.Module):
    r"""``n_members`` independent linear Poisson VAEs: ``n_inputs`` pixels, ``n_latents`` counts each.

    Parameters (``E = n_members``): ``encoder`` (``E x n_inputs x n_latents``), ``decoder``
    (``E x n_latents x n_inputs``, member ``e``'s dictionary is ``decoder[e]``, one row per
    :math:`\phi_k`) and ``prior_log_rate`` (``E x n_latents``).

    Args:
        seeds: one initialisation seed per member (default ``0, 1, ...``); member ``e`` equals the
            one-member model built with ``seeds=[seeds[e]]``.
        prior_log_rate_range: :math:`\log r` is initialised uniformly in this range (the official
            ``U(-6, -4)``).
        max_log_rate: the soft upper clamp of :math:`\log\lambda`.
    """

    def __init__(self, n_inputs: int = 256, n_latents: int = 512, n_members: int = 1, *,
                 seeds: Optional[Sequence[int]] = None,
                 prior_log_rate_range: tuple[float, float] = (-6.0, -4.0),
                 max_log_rate: float = 5.0):
        super().__init__()
        n_inputs = _check_positive_int(n_inputs, "n_inputs")
        n_latents = _check_positive_int(n_latents, "n_latents")
        n_members = _check_positive_int(n_members, "n_members")
        seeds = list(range(n_members)) if seeds is None else [int(s) for s in seeds]
        if len(seeds) != n_members:
            raise ValueError(f"seeds must have n_members = {n_members} entries, got {len(seeds)}")
        low, high = (float(v) for v in prior_log_rate_range)
        if not low <= high:
            raise ValueError(f"prior_log_rate_range must be (low, high) with low <= high, got "
                             f"{prior_log_rate_range}")
        self.max_log_rate = float(max_log_rate)
        self.seeds = seeds
        encoder, decoder, prior = [], [], []
        for seed in seeds:  # each member from its own generator: independent of the stack it is in
            g = torch.Generator().manual_seed(seed)
            # small encoder weights: the first posteriors are close to the prior
            encoder.append(torch.randn(n_inputs, n_latents, generator=g) * (0.1 / math.sqrt(n_inputs)))
            decoder.append(torch.randn(n_latents, n_inputs, generator=g) / math.sqrt(n_latents))
            prior.append(low + (high - low) * torch.rand(n_latents, generator=g))
        self.encoder = nn.Parameter(torch.stack(encoder))
        self.decoder = nn.Parameter(torch.stack(decoder))
        self.prior_log_rate = nn.Parameter(torch.stack(prior))

    @property
    def n_members(self) -> int:
        return self.encoder.shape[0]

    @property
    def n_inputs(self) -> int:
        return self.encoder.shape[1]

    @property
    def filters(self) -> torch.Tensor:
        r"""The dictionaries :math:`\Phi`, shape ``(n_members, n_latents, n_inputs)`` (detached)."""
        return self.decoder.detach()

    def _per_member(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` as ``(E, batch, n_inputs)``: a 2-D batch goes to every member."""
        if x.dim() == 2 and x.shape[1] == self.n_inputs:
            return x.unsqueeze(0).expand(self.n_members, -1, -1)
        if x.dim() == 3 and x.shape[0] == self.n_members and x.shape[2] == self.n_inputs:
            return x
        raise ValueError(f"x must have shape (batch, {self.n_inputs}) or ({self.n_members}, batch, "
                         f"{self.n_inputs}), got {tuple(x.shape)}")

    def log_rates(self, x: torch.Tensor):
        r"""``(log r, log λ)``: prior log-rates ``(E, 1, n_latents)`` and posterior log-rates
        ``(E, batch, n_latents)``."""
        x = self._per_member(x)
        prior = self.prior_log_rate.unsqueeze(1)
        return prior, soft_clamp_upper(prior + torch.bmm(x, self.encoder), self.max_log_rate)

    def rates(self, x: torch.Tensor) -> torch.Tensor:
        r"""Posterior rates :math:`\lambda`, shape ``(E, batch, n_latents)``."""
        return self.log_rates(x)[1].exp()

    def kl(self, x: torch.Tensor) -> torch.Tensor:
        """Per-item KL divergence to the prior, shape ``(E, batch)``."""
        return poisson_kl(*self.log_rates(x)).sum(-1)

    def reconstruction_error(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        r""":math:`\|x - \Phi z\|^2` summed over pixels: ``z`` is ``(..., E, batch, n_latents)``,
        the result ``(..., E, batch)``."""
        return (self._per_member(x) - torch.matmul(z, self.decoder)).pow(2).sum(-1)

    def expected_reconstruction_error(self, x: torch.Tensor, rate: torch.Tensor) -> torch.Tensor:
        r"""Closed form of :math:`\mathbb E_{z\sim\mathrm{Pois}(\lambda)}\|x - \Phi z\|^2 =
        \|x - \Phi\lambda\|^2 + \sum_k \lambda_k\|\phi_k\|^2`, shape ``(E, batch)``."""
        norms = self.decoder.pow(2).sum(-1).unsqueeze(1)          # (E, 1, n_latents)
        return self.reconstruction_error(x, rate) + (rate * norms).sum(-1)

    @staticmethod
    def gsm_categories(rate: torch.Tensor, max_categories: int = GSM_MAX_CATEGORIES) -> int:
        r"""Gumbel-softmax truncation: the paper's rule :math:`K = \lfloor \lambda_{max} +
        4\sqrt{\lambda_{max}} + 5 \rfloor` on the largest rate of the batch (of every member),
        capped at ``max_categories``.

        The cap keeps memory (``E x batch x 512 x K``) bounded: the rule is driven by the single
        largest rate. At the cap of 32, every rate up to about 12.7 still gets the paper's full
        coverage; counts beyond ``K - 1`` are dropped for the few larger ones.
        """
        return max(2, min(default_n_categories(rate), int(max_categories)))

    def loss(self, x: torch.Tensor, method: str, temperature=None, n_samples: int = 1,
             beta: float = 1.0, gsm_max_categories: int = GSM_MAX_CATEGORIES) -> torch.Tensor:
        """Per-member mean over the batch of ``reconstruction + beta * KL``, shape ``(E,)``.

        Args:
            x: ``(batch, n_inputs)`` for every member, or ``(E, batch, n_inputs)``.
            method: ``"exact"`` (closed form, no sampling), ``"eat-sigmoid"``, ``"eat-cubic"``,
                ``"gsm"`` (relaxed samples at ``temperature``) or ``"score"`` (``n_samples >= 2``
                exact samples and the leave-one-out baseline), all but ``"exact"`` through
                :func:`hitchhiker.surrogate_loss`.
            temperature: pathwise methods: a number, or one per member (a tensor of shape ``(E,)``).
            n_samples: Monte Carlo samples per item (pathwise methods average them).
        """
        check_method(method, VAE_METHODS)
        n_samples = _check_positive_int(n_samples, "n_samples")
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        x = self._per_member(x)
        prior, log_rate = self.log_rates(x)
        rate = log_rate.exp()
        kl = poisson_kl(prior, log_rate).sum(-1)
        if method == "exact":
            recon = self.expected_reconstruction_error(x, rate)
        elif method == "score":
            if n_samples < 2:
                raise ValueError("n_samples must be >= 2 for method='score' (leave-one-out baseline)")
            recon = surrogate_loss("score", rate, lambda z: self.reconstruction_error(x, z),
                                   None, n_samples, validate_args=False)
        else:
            tau = self._member_temperature(method, temperature, rate)
            kwargs = {}
            if method == "gsm":
                kwargs["n_categories"] = self.gsm_categories(rate, gsm_max_categories)
            recon = surrogate_loss(method, rate, lambda z: self.reconstruction_error(x, z), tau,
                                   n_samples, validate_args=False, **kwargs)
        return (recon + beta * kl).mean(-1)

    def _member_temperature(self, method, temperature, rate):
        if temperature is None:
            raise ValueError(f"method={method!r} needs a temperature > 0, got None")
        tau = torch.as_tensor(temperature, dtype=rate.dtype, device=rate.device)
        if tau.dim() == 1 and tau.shape[0] == self.n_members:
            tau = tau.view(-1, 1, 1)
        elif tau.dim() != 0:
            raise ValueError(f"temperature must be a number or one per member, shape "
                             f"({self.n_members},), got shape {tuple(tau.shape)}")
        if not bool(torch.isfinite(tau).all() and (tau > 0).all()):
            raise ValueError(f"temperature must be finite and > 0, got {temperature!r}")
        return tau

    def member(self, index: int) -> "PoissonVAE":
        """Member ``index`` as a one-member model (a copy)."""
        if not -self.n_members <= index < self.n_members:
            raise IndexError(f"member {index} of a {self.n_members}-member PoissonVAE")
        one = PoissonVAE(self.n_inputs, self.decoder.shape[1], 1, seeds=[self.seeds[index]],
                         max_log_rate=self.max_log_rate)
        with torch.no_grad():
            for name, p in one.named_parameters():
                p.copy_(getattr(self, name)[index:index + 1])
        return one.to(self.encoder.device)


@torch.no_grad()
def validation_nelbo(model: PoissonVAE, x: torch.Tensor, n_samples: int = 4, batch_size: int = 1000,
                     exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
    r"""Negative ELBO per patch on ``x`` (:math:`\beta = 1`) with *exact* Poisson samples, per member.

    Returns ``(mean, standard_error)``, arrays of shape ``(E,)`` (over patches); each patch's
    reconstruction error is averaged over ``n_samples`` draws :math:`z \sim \mathrm{Pois}(\lambda)`.
    ``exact=True`` uses the closed-form expectation instead (the standard error then reflects the
    patches only): the value the sampled estimate is unbiased for, without its Monte Carlo noise.
    """
    n_samples = _check_positive_int(n_samples, "n_samples")
    device = model.encoder.device
    values = []
    for start in range(0, x.shape[0], batch_size):
        xb = x[start:start + batch_size].to(device)
        prior, log_rate = model.log_rates(xb)
        rate = log_rate.exp()
        if exact:
            recon = model.expected_reconstruction_error(xb, rate)
        else:
            z = torch.poisson(rate.expand((n_samples,) + rate.shape))
            recon = model.reconstruction_error(xb, z).mean(0)
        values.append((recon + poisson_kl(prior, log_rate).sum(-1)).double().cpu())
    values = torch.cat(values, dim=1)                                   # (E, n)
    mean = values.mean(1).numpy()
    se = (values.std(1) / math.sqrt(values.shape[1])).numpy()
    return mean, se


def filter_localisation(filters: torch.Tensor, top_fraction: float = 0.1) -> torch.Tensor:
    r"""Share of each filter's energy :math:`\sum_p \phi_{kp}^2` in its ``top_fraction`` largest
    pixels (by :math:`\phi_{kp}^2`), shape ``filters.shape[:-1]``.

    A localised filter (an edge or a blob) concentrates its energy in a few pixels; a random filter
    of 256 Gaussian pixels keeps about 0.4 of it in its largest 10% (see the tests).
    """
    if not 0 < top_fraction <= 1:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}")
    energy = filters.detach().double().pow(2)
    n_top = max(1, int(round(top_fraction * energy.shape[-1])))
    top = energy.topk(n_top, dim=-1).values.sum(-1)
    return top / energy.sum(-1).clamp_min(torch.finfo(torch.float64).tiny)


def filter_low_frequency_share(filters: torch.Tensor, cutoff: float = 0.25) -> torch.Tensor:
    r"""Share of each square filter's power at spatial frequencies :math:`|f| <` ``cutoff`` (cycles
    per pixel, at most 0.5 on each axis), shape ``filters.shape[:-1]``.

    White noise spreads its power evenly over the frequency grid, so a random filter scores the
    share of grid points inside the cutoff (about 0.19 at 0.25 on a 16 x 16 grid); a smooth, oriented
    element (what sparse coding of whitened images learns) concentrates its power at low frequencies.
    """
    if not 0 < cutoff <= 0.5 * math.sqrt(2):
        raise ValueError(f"cutoff must be in (0, 0.707] cycles per pixel, got {cutoff}")
    side = int(round(math.sqrt(filters.shape[-1])))
    if side * side != filters.shape[-1]:
        raise ValueError(f"filters of {filters.shape[-1]} pixels are not square patches")
    images = filters.detach().double().reshape(filters.shape[:-1] + (side, side))
    power = torch.fft.fft2(images).abs().pow(2)
    f = torch.fft.fftfreq(side, dtype=torch.float64)
    low = (f.view(-1, 1).pow(2) + f.view(1, -1).pow(2)).sqrt() < cutoff
    return (power * low).sum((-2, -1)) / power.sum((-2, -1)).clamp_min(torch.finfo(torch.float64).tiny)


def dictionary_measures(dictionaries: dict, initial: torch.Tensor) -> "pd.DataFrame":
    """One row per dictionary (``{label: filters}``, each ``(n_filters, pixels)``): the medians over its
    elements of :func:`filter_low_frequency_share`, :func:`filter_localisation`, and the cosine
    similarity of each element to the same element of ``initial`` (the dictionary it started from)."""
    import pandas as pd

    rows = {}
    for label, filters in dictionaries.items():
        filters = filters.detach().cpu()
        rows[label] = {
            "low-frequency share": float(filter_low_frequency_share(filters).median()),
            "localisation": float(filter_localisation(filters).median()),
            "cosine to start": float(nn.functional.cosine_similarity(
                filters.double(), initial.detach().cpu().double(), dim=1).median()),
        }
    return pd.DataFrame(rows).T


def filter_mosaic(filters: torch.Tensor, n_show: int = 64, order: Optional[torch.Tensor] = None,
                  pad: int = 1) -> np.ndarray:
    """Tile the first ``n_show`` filters (rows of ``filters``, each a square patch) into one image.

    Each filter is scaled to [-1, 1] by its own largest absolute value; padding is NaN (drawn as
    background by ``imshow``). ``order`` picks which filters come first (e.g. by norm).
    """
    filters = filters.detach().cpu().double()
    if filters.dim() != 2:
        raise ValueError(f"filters must be 2-D (n_filters, pixels), got shape {tuple(filters.shape)}")
    side = int(round(math.sqrt(filters.shape[1])))
    if side * side != filters.shape[1]:
        raise ValueError(f"filters of {filters.shape[1]} pixels are not square patches")
    if order is not None:
        filters = filters[order]
    n_show = min(int(n_show), filters.shape[0])
    cols = int(math.ceil(math.sqrt(n_show)))
    rows = int(math.ceil(n_show / cols))
    mosaic = np.full((rows * (side + pad) + pad, cols * (side + pad) + pad), np.nan)
    for i in range(n_show):
        f = filters[i].numpy().reshape(side, side)
        f = f / max(np.abs(f).max(), 1e-12)
        r, c = divmod(i, cols)
        mosaic[pad + r * (side + pad):pad + r * (side + pad) + side,
               pad + c * (side + pad):pad + c * (side + pad) + side] = f
    return mosaic
