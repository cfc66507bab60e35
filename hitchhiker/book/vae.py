r"""The Poisson VAE of the paper's Figure 4 (top), with one training loss per gradient estimator.

Model (Vafaii, Galor & Yates, 2024), for a whitened image patch :math:`x \in \mathbb R^{256}` and
:math:`K = 512` latent counts:

.. math::
    \log \delta r = W_{enc}\, x, \qquad \lambda = r \odot \delta r, \qquad
    q(z \mid x) = \prod_k \mathrm{Poisson}(z_k; \lambda_k), \qquad
    p(z) = \prod_k \mathrm{Poisson}(z_k; r_k), \qquad \hat x = \Phi z,

with a linear encoder :math:`W_{enc}` (256 :math:`\to` 512, no bias), a linear decoder
:math:`\Phi` (512 :math:`\to` 256, no bias, columns :math:`\phi_k`) and learned prior log-rates
:math:`\log r`. Both :math:`\log r` and :math:`\log \delta r` pass through a smooth clamp
(:func:`soft_clamp`) so that the rates stay in a range where the samplers and the Gumbel-softmax
truncation remain cheap and finite.

Loss (the negative ELBO with a summed-squared-error reconstruction, :math:`\beta = 1` at the end of
a KL warm-up):

.. math::
    \mathcal L(x) = \mathbb E_{q}\,\|x - \Phi z\|^2
      + \beta\, \sum_k r_k\,(1 - \delta r_k + \delta r_k \log \delta r_k),

the second term being :math:`\mathrm{KL}(\mathrm{Pois}(r\,\delta r) \,\|\, \mathrm{Pois}(r))` in
closed form. Because the decoder is linear, the expectation is exact too:

.. math::
    \mathbb E_q \|x - \Phi z\|^2 = \|x - \Phi\lambda\|^2 + \sum_k \lambda_k \|\phi_k\|^2

(mean :math:`\lambda`, independent coordinates with variance :math:`\lambda_k`). Training on it
(``method="exact"``) gives the exact gradient, the reference every estimator is compared to.
The other methods go through :func:`hitchhiker.surrogate_loss`: a relaxed sample (``"eat-sigmoid"``,
``"eat-cubic"``, ``"gsm"``) in place of :math:`z`, or exact samples and the score-function surrogate
(``"score"``). Validation always uses exact Poisson samples (:func:`validation_nelbo`).
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..distributions import default_n_categories
from ..estimators import check_method, surrogate_loss
from .training import fit, geometric_anneal, linear_warmup

#: The methods a Poisson VAE can be trained with.
VAE_METHODS = ("exact", "eat-sigmoid", "eat-cubic", "gsm", "score")

#: Default cap on the Gumbel-softmax truncation K (see :meth:`PoissonVAE.gsm_categories`).
GSM_MAX_CATEGORIES = 32


def soft_clamp(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    r"""Smooth clamp to :math:`(\mathrm{low}, \mathrm{high})`:
    :math:`\mathrm{low} + \mathrm{softplus}(x - \mathrm{low}) - \mathrm{softplus}(x - \mathrm{high})`.

    Close to the identity well inside the interval, tends to the bounds outside, gradient in (0, 1).
    """
    if not low < high:
        raise ValueError(f"soft_clamp needs low < high, got {low} and {high}")
    return low + nn.functional.softplus(x - low) - nn.functional.softplus(x - high)


def poisson_kl(prior_rate: torch.Tensor, delta_rate: torch.Tensor) -> torch.Tensor:
    r""":math:`\mathrm{KL}(\mathrm{Pois}(r\,\delta r)\,\|\,\mathrm{Pois}(r)) =
    r\,(1 - \delta r + \delta r \log \delta r)`, elementwise."""
    return prior_rate * (1 - delta_rate + torch.xlogy(delta_rate, delta_rate))


class PoissonVAE(nn.Module):
    r"""Linear Poisson VAE: ``n_inputs`` pixels, ``n_latents`` Poisson counts.

    Args:
        n_inputs: pixels per patch (256 for 16 x 16).
        n_latents: number of latent counts (512 in the paper: twice overcomplete).
        prior_rate: initial prior rate :math:`r` of every latent.
        log_rate_bounds: soft bounds on :math:`\log r`.
        log_delta_bounds: soft bounds on :math:`\log \delta r`; the posterior rate is at most
            about :math:`\exp(\text{sum of the upper bounds})`.
    """

    def __init__(self, n_inputs: int = 256, n_latents: int = 512, prior_rate: float = 0.5,
                 log_rate_bounds: tuple[float, float] = (-8.0, 3.0),
                 log_delta_bounds: tuple[float, float] = (-8.0, 3.0)):
        super().__init__()
        for name, value in (("n_inputs", n_inputs), ("n_latents", n_latents)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not prior_rate > 0:
            raise ValueError(f"prior_rate must be > 0, got {prior_rate}")
        self.encoder = nn.Linear(n_inputs, n_latents, bias=False)
        self.decoder = nn.Linear(n_latents, n_inputs, bias=False)
        self.prior_log_rate = nn.Parameter(torch.full((n_latents,), math.log(prior_rate)))
        self.log_rate_bounds = tuple(log_rate_bounds)
        self.log_delta_bounds = tuple(log_delta_bounds)
        with torch.no_grad():  # small weights: the first posteriors are close to the prior
            self.encoder.weight.normal_(0.0, 0.1 / math.sqrt(n_inputs))
            self.decoder.weight.normal_(0.0, 1.0 / math.sqrt(n_latents))

    @property
    def filters(self) -> torch.Tensor:
        r"""The decoder's dictionary :math:`\Phi`, shape ``(n_latents, n_inputs)`` (one row per :math:`\phi_k`)."""
        return self.decoder.weight.detach().T

    def rates(self, x: torch.Tensor):
        r"""``(r, delta_r, lam)``: prior rates (``n_latents``), :math:`\delta r` and posterior
        rates :math:`\lambda = r\,\delta r` (both ``batch x n_latents``)."""
        if x.dim() != 2 or x.shape[1] != self.encoder.in_features:
            raise ValueError(f"x must have shape (batch, {self.encoder.in_features}), got {tuple(x.shape)}")
        log_r = soft_clamp(self.prior_log_rate, *self.log_rate_bounds)
        log_dr = soft_clamp(self.encoder(x), *self.log_delta_bounds)
        return log_r.exp(), log_dr.exp(), (log_r + log_dr).exp()

    def kl(self, x: torch.Tensor) -> torch.Tensor:
        """Per-item KL divergence to the prior, shape ``(batch,)``."""
        r, dr, _ = self.rates(x)
        return poisson_kl(r, dr).sum(-1)

    def reconstruction_error(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        r""":math:`\|x - \Phi z\|^2` summed over pixels; ``z`` may carry leading sample dimensions."""
        return (x - self.decoder(z)).pow(2).sum(-1)

    def expected_reconstruction_error(self, x: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        r"""Closed form of :math:`\mathbb E_{z\sim\mathrm{Pois}(\lambda)}\|x - \Phi z\|^2 =
        \|x - \Phi\lambda\|^2 + \sum_k \lambda_k\|\phi_k\|^2`, shape ``(batch,)``."""
        column_norms = self.decoder.weight.pow(2).sum(0)
        return self.reconstruction_error(x, lam) + lam @ column_norms

    def gsm_categories(self, lam: torch.Tensor, max_categories: int = GSM_MAX_CATEGORIES) -> int:
        r"""Gumbel-softmax truncation: the paper's rule :math:`K = \lfloor \lambda_{max} +
        4\sqrt{\lambda_{max}} + 5 \rfloor` on the largest rate in the batch, capped at
        ``max_categories``.

        The cap keeps memory (``batch x 512 x K``) bounded: the rule is driven by the single
        largest of ``batch x 512`` rates. At the cap of 32, every rate up to about 12.7 still gets
        the paper's full coverage; counts beyond ``K - 1`` are dropped for the few larger ones.
        """
        return max(2, min(default_n_categories(lam), int(max_categories)))

    def loss(self, x: torch.Tensor, method: str, temperature: Optional[float] = None,
             n_samples: int = 1, beta: float = 1.0,
             gsm_max_categories: int = GSM_MAX_CATEGORIES) -> torch.Tensor:
        """Mean over the batch of ``reconstruction + beta * KL`` for one gradient estimator.

        Args:
            method: ``"exact"`` (closed form, no sampling), ``"eat-sigmoid"``, ``"eat-cubic"``,
                ``"gsm"`` (relaxed samples at ``temperature``) or ``"score"`` (``n_samples >= 2``
                exact samples and the leave-one-out baseline; ``temperature`` is ignored), all but
                ``"exact"`` through :func:`hitchhiker.surrogate_loss`.
            n_samples: Monte Carlo samples per item (pathwise methods average them too).
        """
        check_method(method, VAE_METHODS)
        if int(n_samples) != n_samples or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        r, dr, lam = self.rates(x)
        kl = poisson_kl(r, dr).sum(-1)
        if method == "exact":
            recon = self.expected_reconstruction_error(x, lam)
        else:
            if method == "score" and n_samples < 2:
                raise ValueError("n_samples must be >= 2 for method='score' (leave-one-out baseline)")
            if method != "score" and (temperature is None or not temperature > 0):
                raise ValueError(f"method={method!r} needs a temperature > 0, got {temperature!r}")
            kwargs = {}
            if method == "gsm":
                kwargs["n_categories"] = self.gsm_categories(lam, gsm_max_categories)
            # The score function has no temperature: ignored here, as documented, so that one loop
            # over methods and temperatures can call every method.
            recon = surrogate_loss(method, lam, lambda z: self.reconstruction_error(x, z),
                                   None if method == "score" else temperature, int(n_samples),
                                   validate_args=False, **kwargs)          # (batch,)
        return (recon + beta * kl).mean()


@torch.no_grad()
def validation_nelbo(model: PoissonVAE, x: torch.Tensor, n_samples: int = 4,
                     batch_size: int = 2048, exact: bool = False) -> tuple[float, float]:
    r"""Negative ELBO per patch on ``x`` (:math:`\beta = 1`) with *exact* Poisson samples.

    Returns ``(mean, standard_error)`` over patches; each patch's reconstruction error is averaged
    over ``n_samples`` draws :math:`z \sim \mathrm{Pois}(\lambda)`. ``exact=True`` uses the
    closed-form expectation instead (standard error then reflects patches only).
    """
    if int(n_samples) != n_samples or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    device = next(model.parameters()).device
    values = []
    for start in range(0, x.shape[0], batch_size):
        xb = x[start:start + batch_size].to(device)
        r, dr, lam = model.rates(xb)
        if exact:
            recon = model.expected_reconstruction_error(xb, lam)
        else:
            z = torch.poisson(lam.expand((int(n_samples),) + lam.shape))
            recon = model.reconstruction_error(xb, z).mean(0)
        values.append((recon + poisson_kl(r, dr).sum(-1)).double().cpu())
    values = torch.cat(values)
    return float(values.mean()), float(values.std() / math.sqrt(len(values)))


def _label(method: str, temperature: Optional[float], n_samples: int) -> str:
    if method in ("exact", "score"):
        return f"{method}-S{n_samples}" if method == "score" else method
    return f"{method}-tau{temperature:g}"


def train_pvae(train: torch.Tensor, method: str, *, temperature: Optional[float] = None,
               n_samples: int = 1, seed: int = 0, epochs: int = 20, batch_size: int = 500,
               lr: float = 5e-3, kl_warmup: float = 0.25, temperature_start: Optional[float] = None,
               n_latents: int = 512, gsm_max_categories: int = GSM_MAX_CATEGORIES,
               device=None, checkpoint_dir: str | Path | None = None,
               progress_bar: Optional[bool] = None):
    """Train a :class:`PoissonVAE` with one estimator (Adamax, as the paper); returns ``(model, history)``.

    Args:
        train: patches, shape ``(n, n_inputs)``.
        kl_warmup: fraction of training over which :math:`\\beta` rises linearly from 0 to 1.
        temperature_start: if given, the temperature is annealed geometrically from it to
            ``temperature`` over training; otherwise it is ``temperature`` throughout.
        checkpoint_dir: save the trained model there and reuse it when the same run is asked for
            again (same data size, method, temperature, samples, seed and schedule).
    """
    check_method(method, VAE_METHODS)
    if method in ("exact", "score"):
        temperature = None
    torch.manual_seed(seed)
    model = PoissonVAE(n_inputs=train.shape[1], n_latents=n_latents)
    settings = {"model": "PoissonVAE", "method": method, "temperature": temperature,
                "n_samples": int(n_samples), "kl_warmup": kl_warmup,
                "temperature_start": temperature_start, "n_latents": n_latents,
                "gsm_max_categories": gsm_max_categories if method == "gsm" else None,
                "data_checksum": float(train[:64].double().sum())}

    def loss_fn(model, batch, progress):
        tau = temperature
        if tau is not None and temperature_start is not None:
            tau = geometric_anneal(progress, temperature_start, temperature)
        beta = linear_warmup(progress, kl_warmup)
        return model.loss(batch, method, tau, n_samples=n_samples, beta=beta,
                          gsm_max_categories=gsm_max_categories)

    checkpoint = None
    if checkpoint_dir is not None:
        checkpoint = Path(checkpoint_dir) / f"pvae-{_label(method, temperature, n_samples)}-seed{seed}.pt"
    history = fit(model, loss_fn, train, epochs=epochs, batch_size=batch_size, lr=lr,
                  optimizer="adamax", seed=seed, device=device, checkpoint=checkpoint,
                  settings=settings, progress_bar=progress_bar,
                  desc=f"{_label(method, temperature, n_samples)} seed {seed}")
    return model, history


def pvae_runs(temperatures: Sequence[float], score_samples: Sequence[int], seeds: Sequence[int],
              relaxations: Sequence[str] = ("eat-sigmoid", "eat-cubic", "gsm")) -> list[dict]:
    """The Figure-4 grid: ``exact``, each relaxation at each temperature, ``score`` at each sample
    count, for every seed. Rows are ``{"method", "temperature", "n_samples", "seed"}``."""
    runs = []
    for seed in seeds:
        runs.append({"method": "exact", "temperature": None, "n_samples": 1, "seed": seed})
        for method in relaxations:
            for tau in temperatures:
                runs.append({"method": method, "temperature": float(tau), "n_samples": 1, "seed": seed})
        for s in score_samples:
            runs.append({"method": "score", "temperature": None, "n_samples": int(s), "seed": seed})
    return runs


def run_pvae_experiments(train: torch.Tensor, val: torch.Tensor, runs: Iterable[dict], *,
                         val_samples: int = 4, **train_kwargs) -> list[dict]:
    """Train every run of :func:`pvae_runs` and measure its validation NELBO with exact samples.

    Returns one row per run: the run's keys plus ``val_nelbo``, ``val_nelbo_se`` (over patches),
    ``val_nelbo_closed_form`` (the same model's exact expected NELBO), ``train_loss`` (last
    epoch) and ``seconds`` (training time; ~0 when reloaded from a checkpoint).
    """
    rows = []
    for run in runs:
        start = time.perf_counter()
        model, history = train_pvae(train, run["method"], temperature=run["temperature"],
                                    n_samples=run["n_samples"], seed=run["seed"], **train_kwargs)
        seconds = time.perf_counter() - start
        model.eval()
        torch.manual_seed(10_000 + run["seed"])
        nelbo, se = validation_nelbo(model, val, n_samples=val_samples)
        closed, _ = validation_nelbo(model, val, exact=True)
        rows.append({**run, "val_nelbo": nelbo, "val_nelbo_se": se, "val_nelbo_closed_form": closed,
                     "train_loss": history["loss"][-1] if history["loss"] else float("nan"),
                     "seconds": seconds})
    return rows


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


def summarize_pvae(rows) -> "pd.DataFrame":
    r"""Mean validation NELBO per (method, temperature, n_samples) over seeds, and the gap to exact.

    The gap is paired by seed: :math:`\Delta_s = \mathrm{NELBO}_s(\text{method}) -
    \mathrm{NELBO}_s(\text{exact})`, so that what a seed does to both runs cancels. Columns:
    ``val_nelbo`` (mean), ``val_nelbo_sd``, ``gap`` (mean of :math:`\Delta_s`), ``gap_se``
    (its standard error over seeds; NaN with one seed), ``gap_pct`` (gap relative to exact's mean),
    ``n_seeds``.
    """
    import pandas as pd

    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if "exact" not in set(frame["method"]):
        raise ValueError("rows must include the 'exact' runs (the reference of the gap)")
    exact = frame[frame["method"] == "exact"].set_index("seed")["val_nelbo"]
    frame = frame.assign(gap=frame["val_nelbo"] - frame["seed"].map(exact))
    keys = ["method", "temperature", "n_samples"]
    grouped = frame.groupby(keys, dropna=False, sort=False)
    out = grouped.agg(val_nelbo=("val_nelbo", "mean"), val_nelbo_sd=("val_nelbo", "std"),
                      gap=("gap", "mean"), gap_sd=("gap", "std"), n_seeds=("seed", "nunique"))
    out["gap_se"] = out["gap_sd"] / np.sqrt(out["n_seeds"])
    out["gap_pct"] = 100 * out["gap"] / exact.mean()
    return out.drop(columns="gap_sd").reset_index()
