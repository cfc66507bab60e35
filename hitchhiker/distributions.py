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
element (:func:`eat_pathwise`). Window arrivals are processed in bounded slices (peak memory per
element does not grow with the rate), and the backward pass (:class:`EATGradient`) keeps one number per
element and parameter. The appendix *What each estimator costs* benchmarks it.

:class:`GumbelSoftmaxPoisson` -- Gumbel-softmax over the Poisson pmf truncated to ``K`` categories.
"""
from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable
from torch.distributions import Distribution, constraints

from ._validation import (
    as_float_tensor,
    broadcast_pair,
    check_n_categories,
    check_param,
    compute_dtype,
    finite_nonnegative,
    finite_positive,
)
from .indicators import Indicator, _TorchNS, get_indicator

#: Fewest window arrivals handled per vectorised step. A step handles ``max(ARRIVAL_CHUNK, n)`` arrivals
#: for a batch of ``n`` elements, so peak memory per element is bounded independently of the rate.
ARRIVAL_CHUNK = 1 << 16


def _segment_sum(values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Sums of consecutive runs of ``values`` of the given ``lengths`` (zero-length runs give 0)."""
    if values.device.type in ("cpu", "cuda"):
        return torch.segment_reduce(values, "sum", lengths=lengths, unsafe=True)
    owner = torch.repeat_interleave(torch.arange(lengths.numel(), device=values.device), lengths)
    return torch.zeros(lengths.numel(), dtype=values.dtype, device=values.device).index_add_(
        0, owner, values)


def _ramp_value_and_slope(indicator: Indicator, u: torch.Tensor, want_value: bool, want_slope: bool):
    """``f`` and ``f'`` of a compact ramp at ``x = 2u - 1`` (``u`` in [0, 1], so no clamping).

    The cubic (the default) is evaluated in place, :math:`u^2(3 - 2u)` and :math:`3u(1 - u)`; the
    other ramps use their definitions in :mod:`hitchhiker.indicators`.
    """
    value = slope = None
    if indicator.name == "cubic":
        if want_value:
            value = torch.mul(u, -2.0).add_(3.0).mul_(u).mul_(u)
        if want_slope:
            slope = torch.sub(1.0, u).mul_(u).mul_(3.0)
        return value, slope
    if want_value:
        value = indicator.ramp(u, _TorchNS)
    if want_slope:
        slope = 0.5 * indicator.d_ramp(u, _TorchNS)
    return value, slope


def _window_columns(indicator, u, x, columns, tau):
    """Per-arrival terms to be summed per element, for window arrivals at ``x = (1 - t)/tau``.

    ``x is None`` means the shared compact case ``x = 2u - 1``. ``columns`` names the terms:
    ``value`` f(x), ``hard`` 1[x > 0], ``slope`` f'(x), ``slope_x`` f'(x) x, and ``slope_t``
    f'(x) (1 - tau x) = f'(x) t for a scalar ``tau``.
    """
    want_slope = any(c in columns for c in ("slope", "slope_x", "slope_t"))
    if x is None:
        value, slope = _ramp_value_and_slope(indicator, u, "value" in columns, want_slope)
        positive = (u > 0.5) if "hard" in columns else None
    else:
        value = indicator(x) if "value" in columns else None
        slope = indicator.derivative(x) if want_slope else None
        positive = (x > 0) if "hard" in columns else None
    out = {}
    for name in columns:
        if name == "value":
            out[name] = value
        elif name == "hard":
            out[name] = positive.to(u.dtype)
        elif name == "slope":
            out[name] = slope
        elif name == "slope_x":
            out[name] = slope * (2 * u - 1) if x is None else slope * x
        else:  # slope_t: t = 1 - tau x
            t = torch.mul(u, -2 * tau).add_(1 + tau) if x is None else torch.mul(x, -tau).add_(1.0)
            out[name] = t.mul_(slope)
    return out


def eat_pathwise(rate: torch.Tensor, temperature: torch.Tensor, indicator: Indicator,
                 with_temperature_grad: bool = False, chunk: int | None = None,
                 with_rate_grad: bool = True, with_relaxed: bool = True, with_hard: bool = True):
    r"""Draw EAT samples for flat ``rate``/``temperature`` tensors (no autograd involved).

    Returns ``(relaxed, hard, d_rate, d_temperature)``: the relaxed count, the exact count of the same
    arrivals, and the pathwise derivatives of the relaxed count. Each is a flat tensor like ``rate``,
    or ``None`` when its ``with_*`` flag is off (``with_temperature_grad`` is off by default).

    **Algorithm.** With window :math:`[a, b] = [\max(0, 1 - h\tau), 1 + h\tau]` (``h`` =
    ``indicator.half_width``), the arrivals of a rate-:math:`\lambda` Poisson process in disjoint
    intervals are independent Poisson counts, and given its count the arrivals inside an interval are
    i.i.d. uniform on it. Arrivals before :math:`a` add exactly 1 to the sample and 0 to its
    derivatives; arrivals after :math:`b` add 0 (to dtype resolution for the sigmoid). So

    .. math:: \tilde z = N_{<a} + \sum_{i \le N_{[a,b]}} f(x_i), \qquad
              N_{<a} \sim \mathrm{Poisson}(\lambda a),\; N_{[a,b]} \sim \mathrm{Poisson}(\lambda(b - a)),

    with :math:`x_i = (1 - t_i)/\tau`, :math:`t_i = a + (b - a) U_i`. Writing
    :math:`D = \sum_i f'(x_i)` and :math:`P = \sum_i f'(x_i)\,x_i`, the pathwise derivatives
    (:math:`t_i = S_i/\lambda` with :math:`S_i` a sum of standard exponentials, so
    :math:`\partial t_i/\partial\lambda = -t_i/\lambda`; and :math:`t_i = 1 - \tau x_i`) are

    .. math:: \frac{\partial\tilde z}{\partial\lambda} = \frac{D - \tau P}{\tau\lambda}, \qquad
              \frac{\partial\tilde z}{\partial\tau} = -\frac{P}{\tau}.

    When :math:`h\tau \le 1` for every element, :math:`x_i = h(1 - 2U_i)`, equal in law to
    :math:`h(2U_i - 1)`, does not depend on the element at all, so the arrivals are generated without
    any per-arrival gather. Arrivals are laid
    out element by element in one flat list and reduced with segment sums in slices of ``chunk``
    arrivals (default ``max(ARRIVAL_CHUNK, n)``): time :math:`O(n + \sum_j \lambda_j (b_j - a_j))`,
    extra memory :math:`O(n)` whatever the rates.
    """
    dtype, device, n = rate.dtype, rate.device, rate.numel()
    chunk = max(ARRIVAL_CHUNK, n) if chunk is None else int(chunk)
    if chunk < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk}")
    half_width = indicator.half_width(dtype)
    lo = (1 - half_width * temperature).clamp(min=0)
    width = 1 + half_width * temperature - lo
    counts = torch.poisson(rate * width).to(torch.long)
    before = torch.poisson(rate * lo) if (with_relaxed or with_hard) else None
    # One temperature for the whole batch (the usual case): sum f'(x) t directly, one column less.
    scalar_tau = None
    if with_rate_grad and not with_temperature_grad and n:
        first_tau = temperature[:1]
        if bool((temperature == first_tau).all()):
            scalar_tau = float(first_tau)
    columns = ["value"] * with_relaxed + ["hard"] * with_hard
    if scalar_tau is not None:
        columns.append("slope_t")
    elif with_rate_grad or with_temperature_grad:
        columns += ["slope", "slope_x"]
    sums = {c: torch.zeros_like(rate) for c in columns}
    ends = counts.cumsum(0)
    total = int(ends[-1]) if n else 0
    if total:
        # x = (1 - t)/tau runs from `left` down to -h over the window; left = h unless it is clipped
        # at t = 0, so when no window is clipped x = h(2u - 1) is the same for every element.
        left = torch.clamp(1 / temperature, max=half_width)
        shared = bool((left == half_width).all())
        span = None if shared else left + half_width
        starts = ends - counts
        slices = torch.arange(0, total, chunk, device=device)
        first = torch.searchsorted(ends, slices, right=True).tolist()
        last = torch.searchsorted(ends, (slices + chunk).clamp(max=total) - 1, right=True).tolist()
        uniform = torch.empty(min(chunk, total), dtype=dtype, device=device)
        for start, i0, i1 in zip(slices.tolist(), first, last):
            stop = min(start + chunk, total)
            if stop - start == total:
                owners, lengths = slice(0, n), counts
            else:  # this slice's share of each element's arrivals
                owners = slice(i0, i1 + 1)
                lengths = ends[owners].clamp(max=stop) - starts[owners].clamp(min=start)
            u = uniform[: stop - start].uniform_()
            if shared:
                x = None if indicator.compact else torch.mul(u, 2 * half_width).sub_(half_width)
            else:
                size = stop - start
                x = torch.repeat_interleave(span[owners], lengths, output_size=size).mul_(u).neg_()
                x += torch.repeat_interleave(left[owners], lengths, output_size=size)
            terms = _window_columns(indicator, u, x, columns, scalar_tau)
            for name, values in terms.items():
                sums[name][owners] += _segment_sum(values, lengths)
    relaxed = before + sums["value"] if with_relaxed else None
    hard = before + sums["hard"] if with_hard else None
    d_rate = d_tau = None
    if with_rate_grad:
        safe_rate = torch.where(rate > 0, rate, torch.ones_like(rate))
        numerator = (sums["slope_t"] if scalar_tau is not None
                     else sums["slope"] - temperature * sums["slope_x"])
        d_rate = numerator / (temperature * safe_rate)
    if with_temperature_grad:
        d_tau = -sums["slope_x"] / temperature
    return relaxed, hard, d_rate, d_tau


class EATGradient(torch.autograd.Function):
    r"""Attach precomputed pathwise derivatives to a sample: O(1) numbers per element in backward.

    ``EATGradient.apply(rate, temperature, value, d_rate, d_temperature)`` returns ``value``; its
    backward multiplies the incoming gradient by ``d_rate`` (and ``d_temperature``, which may be
    ``None``). Nothing of the arrivals is kept for backward: :math:`\partial\tilde z/\partial\lambda`
    is one number per element.

    Double backward is not supported: the second pathwise derivative is not computed, so the
    backward is ``once_differentiable`` and differentiating a gradient of the sample raises a
    ``RuntimeError`` instead of silently returning zero. (First-order use under
    ``create_graph=True`` works.)
    """

    @staticmethod
    def forward(ctx, rate, temperature, value, d_rate, d_temperature):
        ctx.save_for_backward(d_rate, d_temperature)
        return value.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        d_rate, d_temperature = ctx.saved_tensors
        grad_rate = grad * d_rate if ctx.needs_input_grad[0] else None
        grad_tau = grad * d_temperature if ctx.needs_input_grad[1] else None
        return grad_rate, grad_tau, None, None, None


def poisson_log_prob(value, rate) -> torch.Tensor:
    r"""Poisson log-pmf :math:`z\log\lambda - \lambda - \log\Gamma(z + 1)`, extended to real :math:`z \ge 0`.

    Through the gamma function it also scores relaxed (real-valued) counts, as the POGLM ELBO and the
    score-function surrogate need; it is a normalised density only on the integers. ``xlogy`` makes
    :math:`z = 0, \lambda = 0` give 0.
    """
    return torch.xlogy(value, rate) - rate - torch.lgamma(value + 1)


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
        return poisson_log_prob(value, rate)

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

    Gradients flow to ``rate`` and ``temperature`` when they require grad (first order only: the
    second pathwise derivative is not implemented, and differentiating a gradient of the sample raises
    ``RuntimeError``; see :class:`EATGradient`).

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
        grad_on = torch.is_grad_enabled()
        rate_grad = grad_on and rate_w.requires_grad
        tau_grad = grad_on and tau_w.requires_grad
        relaxed, hard, d_rate, d_tau = eat_pathwise(
            rate_w.detach().reshape(-1), tau_w.detach().reshape(-1), self.indicator,
            with_temperature_grad=tau_grad, with_rate_grad=rate_grad,
            with_relaxed=not self.hard, with_hard=self.hard,
        )
        value = (hard if self.hard else relaxed).reshape(shape)
        if rate_grad or tau_grad:
            value = EATGradient.apply(
                rate_w, tau_w, value,
                d_rate.reshape(shape) if rate_grad else None,
                d_tau.reshape(shape) if tau_grad else None,
            )
        return value.to(rate.dtype)


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
        self.n_categories = check_n_categories(n_categories)
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
