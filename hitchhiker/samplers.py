r"""Reparameterisable relaxations of a Poisson sample, in the style of ``torch.distributions``.

:class:`RelaxedPoisson` -- exponential arrival times (EAT). A Poisson(:math:`\lambda`) count is the
number of arrivals of a rate-:math:`\lambda` Poisson process in :math:`[0, 1]`; EAT replaces the hard
indicator :math:`\mathbb 1[t_i < 1]` by a soft one,

.. math:: \tilde z = \sum_i f\!\left(\frac{1 - t_i}{\tau}\right), \qquad t_i = S_i/\lambda,
          \qquad \frac{\partial \tilde z}{\partial \lambda}
          = \sum_i f'\!\left(\frac{1 - t_i}{\tau}\right) \frac{t_i}{\tau\lambda}.

**Exact and truncation-free.** Only arrivals in the window :math:`[a, b] = [\max(0, 1 - h\tau),
1 + h\tau]` matter: before it :math:`f = 1` and :math:`f' = 0`, after it :math:`f = 0` (``h = 1`` for
the compact ramps; for the sigmoid ``h`` is chosen so that :math:`f` is within a quarter of the dtype's
epsilon of 0 or 1 outside). So we draw the number of arrivals before the window as one Poisson draw,
the number inside as another, and place the window arrivals uniformly (the order of a sum's terms does
not matter). The pair (sample, pathwise gradient) then has exactly the distribution of the full,
untruncated EAT -- whatever :math:`\lambda` and :math:`\tau` -- in :math:`O(1 + \lambda\tau)` work per
element. Window arrivals are processed in fixed-size chunks (peak memory does not grow with the rate)
and the backward pass keeps one number per element and parameter.

:class:`GumbelSoftmaxPoisson` -- Gumbel-softmax over the Poisson pmf truncated to ``K`` categories.
"""
from __future__ import annotations

import math

import torch
from torch.distributions import Distribution, constraints

from ._validation import (
    as_float_tensor,
    broadcast_pair,
    check_param,
    compute_dtype,
    finite_nonnegative,
    finite_positive,
)
from .indicators import Indicator, get_indicator

#: Window arrivals handled per vectorised step; bounds peak memory independently of the rate.
ARRIVAL_CHUNK = 1 << 20


def eat_pathwise(rate: torch.Tensor, temperature: torch.Tensor, indicator: Indicator,
                 with_temperature_grad: bool = False, chunk: int | None = None):
    """Draw EAT samples for flat ``rate``/``temperature`` tensors (no autograd involved).

    Returns ``(relaxed, hard, d_rate, d_temperature)``: the relaxed count, the exact count of the same
    arrivals, and the pathwise derivatives of the relaxed count (``d_temperature`` is ``None`` unless
    requested). All are flat tensors like ``rate``.
    """
    chunk = ARRIVAL_CHUNK if chunk is None else int(chunk)
    dtype, device, n = rate.dtype, rate.device, rate.numel()
    half_width = indicator.half_width(dtype)
    lo = (1 - half_width * temperature).clamp(min=0)
    width = 1 + half_width * temperature - lo
    relaxed = torch.poisson(rate * lo)  # every arrival before the window contributes exactly 1
    hard = relaxed.clone()
    counts = torch.poisson(rate * width).to(torch.long)
    d_rate = torch.zeros_like(rate)
    d_tau = torch.zeros_like(rate) if with_temperature_grad else None
    total = int(counts.sum())
    if total == 0:
        return relaxed, hard, d_rate, d_tau
    ends = counts.cumsum(0)
    for start in range(0, total, chunk):
        stop = min(start + chunk, total)
        if stop - start == total:
            owner = torch.repeat_interleave(torch.arange(n, device=device), counts)
        else:  # the element that owns each arrival in this slice of the flat arrival list
            owner = torch.searchsorted(ends, torch.arange(start, stop, device=device), right=True)
        tau = temperature[owner]
        t = lo[owner] + width[owner] * torch.rand(stop - start, dtype=dtype, device=device)
        x = (1 - t) / tau
        relaxed.index_add_(0, owner, indicator(x))
        hard.index_add_(0, owner, (t < 1).to(dtype))
        slope = indicator.derivative(x)
        d_rate.index_add_(0, owner, slope * t / (tau * rate[owner]))
        if d_tau is not None:
            d_tau.index_add_(0, owner, -slope * x / tau)
    return relaxed, hard, d_rate, d_tau


def _attach_gradient(value, params_and_slopes):
    """value + sum_j slope_j * (p_j - stop_grad(p_j)): same forward value, gradient slope_j per p_j."""
    out = value
    for param, slope in params_and_slopes:
        if param.requires_grad:
            out = out + slope * (param - param.detach())
    return out


class _PoissonLogProb:
    """Poisson log-pmf shared by the relaxations (lgamma-extended to real-valued counts)."""

    def log_prob(self, value):
        r""":math:`\log p(z;\lambda) = z\log\lambda - \lambda - \log\Gamma(z + 1)`.

        Defined for real :math:`z \ge 0` through the gamma function, so it can score relaxed counts
        (as the POGLM ELBO does); it is a normalised density only on the integers.
        """
        if self._validate_args:
            self._validate_sample(value)
        rate = self.rate.to(value.dtype) if torch.is_tensor(value) else self.rate
        value = torch.as_tensor(value, dtype=rate.dtype, device=rate.device)
        return torch.xlogy(value, rate) - rate - torch.lgamma(value + 1)

    def sample(self, sample_shape=torch.Size()):
        """Exact Poisson counts (no gradient)."""
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            rate = self.rate.expand(shape)
            work = rate.to(compute_dtype(rate.dtype))
            return torch.poisson(work).to(rate.dtype)


def _init_params(dist, rate, temperature, validate_args):
    rate = as_float_tensor(rate, "rate")
    temperature = as_float_tensor(temperature, "temperature", like=rate)
    rate, temperature = broadcast_pair(rate, temperature)
    validate = Distribution._validate_args if validate_args is None else validate_args
    if validate:
        check_param(finite_nonnegative, rate, "rate", "finite and >= 0")
        check_param(finite_positive, temperature, "temperature", "finite and > 0")
    dist.rate, dist.temperature = rate, temperature
    # The checks above already raised clear errors; skip torch's generic re-check of the same values.
    Distribution.__init__(dist, rate.shape, validate_args=False)
    dist._validate_args = bool(validate)


class RelaxedPoisson(_PoissonLogProb, Distribution):
    r"""EAT relaxation of Poisson(``rate``) at temperature ``temperature``.

    Args:
        rate: :math:`\lambda \ge 0`, any shape, any float dtype and device.
        temperature: :math:`\tau > 0`, broadcastable with ``rate``.
        indicator: ``"cubic"`` (default; exact mean for :math:`\tau \le 1`), ``"sigmoid"``,
            ``"linear"``, ``"quintic"`` or ``"cosine"``.
        hard: straight-through: the forward value is the exact count of the same arrivals, the
            gradient is the relaxed one.
        validate_args: check the arguments (on by default, as in ``torch.distributions``).

    ``rsample`` returns relaxed counts of shape ``sample_shape + batch_shape``; ``sample`` returns
    exact Poisson counts. ``mean`` and ``variance`` are the relaxed variable's own moments from
    Campbell's theorem (:mod:`hitchhiker.moments`); with ``hard=True`` they are Poisson's.
    Half-precision inputs are sampled in float32 and returned in their own dtype.
    """

    arg_constraints = {"rate": finite_nonnegative, "temperature": finite_positive}
    support = constraints.nonnegative
    has_rsample = True

    def __init__(self, rate, temperature, indicator="cubic", hard=False, validate_args=None):
        self.indicator = get_indicator(indicator)
        self.hard = bool(hard)
        _init_params(self, rate, temperature, validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(RelaxedPoisson, _instance)
        batch_shape = torch.Size(batch_shape)
        new.rate = self.rate.expand(batch_shape)
        new.temperature = self.temperature.expand(batch_shape)
        new.indicator, new.hard = self.indicator, self.hard
        Distribution.__init__(new, batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self):
        if self.hard:
            return self.rate
        from .moments import relaxed_mean  # SymPy is only loaded when the moments are asked for

        return relaxed_mean(self.rate, self.temperature, self.indicator.name)

    @property
    def variance(self):
        if self.hard:
            return self.rate
        from .moments import relaxed_variance

        return relaxed_variance(self.rate, self.temperature, self.indicator.name)

    def rsample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        rate, temperature = self.rate.expand(shape), self.temperature.expand(shape)
        work = compute_dtype(rate.dtype)
        rate_w, tau_w = rate.to(work), temperature.to(work)
        relaxed, hard, d_rate, d_tau = eat_pathwise(
            rate_w.detach().reshape(-1), tau_w.detach().reshape(-1), self.indicator,
            with_temperature_grad=temperature.requires_grad,
        )
        value = (hard if self.hard else relaxed).reshape(shape)
        slopes = [(rate_w, d_rate.reshape(shape))]
        if d_tau is not None:
            slopes.append((tau_w, d_tau.reshape(shape)))
        return _attach_gradient(value, slopes).to(rate.dtype)


def default_n_categories(rate: torch.Tensor) -> int:
    r"""The paper's truncation :math:`K = \lfloor \lambda_{max} + 4\sqrt{\lambda_{max}} + 5 \rfloor`."""
    top = float(rate.detach().max()) if rate.numel() else 0.0
    return int(math.floor(top + 4 * math.sqrt(top) + 5))


class GumbelSoftmaxPoisson(_PoissonLogProb, Distribution):
    r"""Gumbel-softmax relaxation of Poisson(``rate``) truncated to ``n_categories`` values.

    Categories :math:`k = 0, \dots, K-1` with logits :math:`\ell_k = k\log\lambda - \log k!`;
    :math:`y = \mathrm{softmax}((\ell + g)/\tau)` with Gumbel noise :math:`g`, and the relaxed count is
    :math:`\tilde z = \sum_k k\,y_k`. ``rsample_onehot`` returns :math:`y` itself (last dimension
    ``K``). The default ``K`` covers the tail of the largest rate
    (:func:`default_n_categories`); mass beyond ``K - 1`` is dropped, which biases the sample when
    ``K`` is too small. ``hard=True`` is straight-through (forward: the one-hot argmax, an exact draw
    from the truncated Poisson). GSM has no closed-form moments, so ``mean``/``variance`` are not
    provided.
    """

    arg_constraints = {"rate": finite_nonnegative, "temperature": finite_positive}
    support = constraints.nonnegative
    has_rsample = True

    def __init__(self, rate, temperature, n_categories=None, hard=False, validate_args=None):
        _init_params(self, rate, temperature, validate_args)
        if n_categories is None:
            n_categories = default_n_categories(self.rate)
        if isinstance(n_categories, bool) or not isinstance(n_categories, int) or n_categories < 1:
            raise ValueError(f"n_categories must be a positive integer, got {n_categories!r}")
        self.n_categories = n_categories
        self.hard = bool(hard)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(GumbelSoftmaxPoisson, _instance)
        batch_shape = torch.Size(batch_shape)
        new.rate = self.rate.expand(batch_shape)
        new.temperature = self.temperature.expand(batch_shape)
        new.n_categories, new.hard = self.n_categories, self.hard
        Distribution.__init__(new, batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def logits(self) -> torch.Tensor:
        """Unnormalised log-pmf of the truncated Poisson, shape ``batch_shape + (K,)``."""
        rate = self.rate
        # float64 for the logits: k log(lambda) and log k! are both ~1e5 at lambda = 1e4.
        wide = torch.float64 if rate.device.type != "mps" else torch.float32
        k = torch.arange(self.n_categories, dtype=wide, device=rate.device)
        safe = rate.to(wide).clamp_min(torch.finfo(wide).tiny).unsqueeze(-1)
        return (torch.xlogy(k, safe) - torch.lgamma(k + 1)).to(compute_dtype(rate.dtype))

    def rsample_onehot(self, sample_shape=torch.Size()) -> torch.Tensor:
        """Relaxed one-hot vectors ``y``, shape ``sample_shape + batch_shape + (K,)``."""
        shape = self._extended_shape(sample_shape)
        logits = self.logits().expand(shape + (self.n_categories,))
        tau = self.temperature.to(logits.dtype).expand(shape).unsqueeze(-1)
        u = torch.rand_like(logits).clamp(torch.finfo(logits.dtype).tiny, 1.0)
        y = torch.softmax((logits - torch.log(-torch.log(u))) / tau, dim=-1)
        if self.hard:
            onehot = torch.zeros_like(y).scatter_(-1, y.argmax(-1, keepdim=True), 1.0)
            y = onehot + (y - y.detach())
        return y.to(self.rate.dtype)

    def rsample(self, sample_shape=torch.Size()):
        y = self.rsample_onehot(sample_shape)
        k = torch.arange(self.n_categories, dtype=y.dtype, device=y.device)
        return (y * k).sum(-1)
