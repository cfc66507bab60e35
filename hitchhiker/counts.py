r"""Count distributions beyond the Poisson: Conway-Maxwell-Poisson and negative binomial, as categoricals.

The Gumbel-softmax (GSM) relaxes any distribution on :math:`0, \dots, K-1` once its categorical logits
are known; this module provides those logits for two over- or under-dispersed count families, with
a proven bound on the probability mass the truncation at :math:`K` drops, checked against a tolerance
(never silent), and the relaxation itself through the library's one GSM sampler
(:func:`hitchhiker.distributions.gumbel_softmax_onehot`).

**Conway-Maxwell-Poisson** (:class:`ConwayMaxwellPoisson`), rate :math:`\lambda > 0`, dispersion
:math:`\nu > 0`:

.. math:: p(k) = \frac{\lambda^k}{(k!)^\nu\, Z(\lambda, \nu)}, \qquad
          Z(\lambda, \nu) = \sum_{j=0}^\infty \frac{\lambda^j}{(j!)^\nu}.

:math:`\nu = 1` is the Poisson, :math:`\nu < 1` over-dispersed (variance above the mean),
:math:`\nu > 1` under-dispersed; as :math:`\nu \to 0` (with :math:`\lambda < 1`) it tends to the
geometric :math:`p(k) = (1 - \lambda)\lambda^k`. :math:`Z` has no closed form: we sum its first
:math:`K` terms :math:`t_j`. For :math:`j \ge K` the term ratio is
:math:`t_{j+1}/t_j = \lambda/(j+1)^\nu \le \rho := \lambda/(K+1)^\nu`, so when :math:`\rho < 1`

.. math:: \frac{\sum_{j \ge K} t_j}{Z} \;\le\; \frac{t_K}{(1 - \rho)\sum_{j<K} t_j} =: \delta_K,

a geometric-series bound on the dropped mass (and on the relative error of :math:`Z`, so
:math:`|\log Z - \log Z_K| \le \log(1 + \delta_K) \le \delta_K`). :math:`\delta_K` must be at most
``tolerance`` (default :data:`~hitchhiker.distributions.TRUNCATION_TOLERANCE`, ``1e-4``). The paper's
approximate-mean parameterisation :math:`\log\lambda = \nu\log(\mu + (\nu - 1)/(2\nu))` is
:meth:`ConwayMaxwellPoisson.from_mean`.

**Negative binomial** (torch's :class:`~torch.distributions.NegativeBinomial`, made from a mean
:math:`\mu` and a dispersion :math:`r` by :func:`negative_binomial`): :math:`p(k) =
\binom{k + r - 1}{k} (1 - p)^r p^k`, mean :math:`\mu = rp/(1-p)`, variance :math:`\mu + \mu^2/r`
(over-dispersed; :math:`r \to \infty` is the Poisson). Its pmf is normalised in closed form; only the
categorical of GSM truncates it. For :math:`k \ge K`, :math:`p(k+1)/p(k) = p(k + r)/(k + 1) \le \rho :=
p\max(1, (K + r)/(K + 1))`, so the dropped mass is at most :math:`p(K)/(1 - \rho)`
(:func:`negative_binomial_tail_bound`).

>>> com = ConwayMaxwellPoisson.from_mean(torch.tensor([3.0]), torch.tensor([0.5]))
>>> z = gumbel_softmax_counts(com.logits(), 0.1)            # a relaxed COM-Poisson count
"""
from __future__ import annotations

import math

import torch
from torch.distributions import Categorical, Distribution, NegativeBinomial, constraints

from ._validation import (
    as_float_tensor,
    broadcast_pair,
    check_bool,
    check_param,
    check_positive_int,
    check_same_device,
    check_sample_shape,
    compute_dtype,
    finite_positive,
)
from .distributions import TRUNCATION_TOLERANCE, gumbel_softmax_onehot

#: The most categories a default truncation may grow to before it gives up (and raises).
MAX_CATEGORIES = 100_000

__all__ = ["ConwayMaxwellPoisson", "negative_binomial", "negative_binomial_tail_bound",
           "negative_binomial_logits", "gumbel_softmax_counts", "MAX_CATEGORIES"]


def _check_tolerance(tolerance) -> float:
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) \
            or not (0 < tolerance < 1):
        raise ValueError(f"tolerance must be a number in (0, 1), got {tolerance!r}")
    return float(tolerance)


def _broadcast(first: torch.Tensor, second: torch.Tensor, names: tuple):
    """``broadcast_pair`` with the error naming ``names`` (not rate and temperature)."""
    try:
        return broadcast_pair(first, second)
    except ValueError:
        raise ValueError(f"{names[0]} of shape {tuple(first.shape)} and {names[1]} of shape "
                         f"{tuple(second.shape)} cannot be broadcast together") from None


def _wide(device: torch.device) -> torch.dtype:
    """float64 where the device has it (the bounds are computed there)."""
    return torch.float32 if device.type == "mps" else torch.float64


def _com_log_terms(log_rate: torch.Tensor, dispersion: torch.Tensor, n_terms: int) -> torch.Tensor:
    r""":math:`\log t_k = k\log\lambda - \nu\log k!` for :math:`k = 0..n-1`, shape ``batch + (n,)``."""
    k = torch.arange(n_terms, dtype=log_rate.dtype, device=log_rate.device)
    return k * log_rate.unsqueeze(-1) - dispersion.unsqueeze(-1) * torch.lgamma(k + 1)


def _com_tail_bound(log_rate: torch.Tensor, dispersion: torch.Tensor, n_categories: int) -> torch.Tensor:
    r""":math:`\delta_K` of the module docstring, elementwise (``inf`` where :math:`\rho \ge 1`), float64."""
    wide = _wide(log_rate.device)
    log_rate, dispersion = log_rate.detach().to(wide), dispersion.detach().to(wide)
    log_kept = torch.logsumexp(_com_log_terms(log_rate, dispersion, n_categories), -1)
    log_next = n_categories * log_rate - dispersion * math.lgamma(n_categories + 1)
    log_rho = log_rate - dispersion * math.log(n_categories + 1)
    bound = torch.exp(log_next - log_kept - torch.log1p(-torch.exp(log_rho.clamp(max=0.0))))
    return torch.where(log_rho < 0, bound, torch.full_like(bound, math.inf))


class ConwayMaxwellPoisson(Distribution):
    r"""Conway-Maxwell-Poisson(:math:`\lambda`, :math:`\nu`), normalised by a truncated series.

    .. math:: \log p(k) = k\log\lambda - \nu\log\Gamma(k + 1) - \log Z_K(\lambda, \nu), \qquad
              Z_K = \sum_{j=0}^{K-1} \lambda^j / (j!)^\nu,

    with :math:`K` = ``n_categories`` and the dropped mass :math:`\delta_K` (module docstring) at most
    ``tolerance``.

    Args:
        rate: :math:`\lambda > 0` (give ``rate`` or ``log_rate``, not both).
        dispersion: :math:`\nu > 0`, broadcastable with the rate, on its device.
        log_rate: :math:`\log\lambda`, any finite real (the natural parameter; a rate of
            :math:`10^{9}` is :math:`\log\lambda \approx 20.7`).
        n_categories: :math:`K`. Default: the paper's :math:`\lfloor\hat\mu + 10\sqrt{\hat\mu}\rfloor + 1`
            at the largest approximate mean :math:`\hat\mu = \lambda^{1/\nu} - (\nu - 1)/(2\nu)`,
            enlarged by half until :math:`\delta_K \le` ``tolerance`` everywhere (``ValueError``
            naming the rate and dispersion if even :data:`MAX_CATEGORIES` does not suffice). Given
            explicitly, a :math:`K` whose bound exceeds ``tolerance`` raises ``ValueError`` naming
            ``n_categories`` (when ``validate_args``).
        tolerance: the largest dropped mass accepted, in (0, 1).
        validate_args: check the arguments and the truncation (on by default, as in
            ``torch.distributions``); ``False`` skips both (then pass ``n_categories``).

    ``log_prob`` extends the pmf to real :math:`z \ge 0` through :math:`\log\Gamma` (so it scores
    relaxed counts, as an ELBO with relaxed samples does); it is normalised on the integers.
    ``logits()`` is the normalised log-pmf on :math:`0..K-1` (the categorical GSM relaxes); ``sample``
    draws exact counts from that categorical; ``mean``/``variance`` are its moments. Computations
    run in the parameters' dtype (half precision in float32), on their device; the truncation bound
    in float64.
    """

    arg_constraints = {"log_rate": constraints.real, "dispersion": finite_positive}
    support = constraints.nonnegative
    has_rsample = False

    def __init__(self, rate=None, dispersion=None, *, log_rate=None, n_categories=None,
                 tolerance: float = TRUNCATION_TOLERANCE, validate_args=None):
        if (rate is None) == (log_rate is None):
            raise ValueError("give exactly one of rate and log_rate")
        if dispersion is None:
            raise ValueError("dispersion is required (nu > 0; nu = 1 is the Poisson)")
        validate = Distribution._validate_args if validate_args is None else validate_args
        validate = check_bool(validate, "validate_args")
        self.tolerance = _check_tolerance(tolerance)
        if rate is not None:
            rate = as_float_tensor(rate, "rate")
            if validate:
                check_param(finite_positive, rate, "rate", "finite and > 0")
            log_rate = rate.log()
        else:
            log_rate = as_float_tensor(log_rate, "log_rate")
        dispersion = as_float_tensor(dispersion, "dispersion", like=log_rate)
        dispersion = check_same_device(dispersion, "dispersion", log_rate.device, other="rate")
        log_rate, dispersion = _broadcast(log_rate, dispersion, ("rate", "dispersion"))
        if validate:
            if not bool(torch.isfinite(log_rate.detach()).all()):
                raise ValueError("log_rate must be finite (rate finite and > 0)")
            check_param(finite_positive, dispersion, "dispersion", "finite and > 0")
        self.log_rate, self.dispersion = log_rate, dispersion
        if n_categories is None:
            if not validate:
                raise ValueError("ConwayMaxwellPoisson with validate_args=False needs an explicit "
                                 "n_categories (the default is chosen by the truncation check)")
            self.n_categories = self._default_categories()
        else:
            self.n_categories = check_positive_int(n_categories, "n_categories")
            if validate:
                self._check_truncation()
        super().__init__(log_rate.shape, validate_args=False)
        self._validate_args = validate

    @classmethod
    def from_mean(cls, mean, dispersion, **kwargs) -> "ConwayMaxwellPoisson":
        r"""The paper's parameterisation by an approximate mean :math:`\mu`:
        :math:`\log\lambda = \nu\log\big(\mu + \frac{\nu - 1}{2\nu}\big)`.

        (The mean of COM-Poisson is :math:`\approx \lambda^{1/\nu} - (\nu - 1)/(2\nu)` for large
        :math:`\lambda`.) Needs :math:`\mu + (\nu - 1)/(2\nu) > 0`; else ``ValueError`` naming ``mean``.
        """
        mean = as_float_tensor(mean, "mean")
        dispersion = as_float_tensor(dispersion, "dispersion", like=mean)
        mean, dispersion = _broadcast(mean, dispersion, ("mean", "dispersion"))
        check_param(finite_positive, dispersion, "dispersion", "finite and > 0")
        base = mean + (dispersion - 1) / (2 * dispersion)
        if not bool((base.detach() > 0).all()) or not bool(torch.isfinite(mean.detach()).all()):
            raise ValueError("mean must be finite with mean + (dispersion - 1) / (2 dispersion) > 0 "
                             "for the approximate-mean parameterisation")
        return cls(log_rate=dispersion * base.log(), dispersion=dispersion, **kwargs)

    @property
    def rate(self) -> torch.Tensor:
        return self.log_rate.exp()

    def truncation_bound(self, n_categories=None) -> torch.Tensor:
        r"""The bound :math:`\delta_K` on the mass beyond category :math:`K - 1`, elementwise (float64)."""
        k = self.n_categories if n_categories is None else check_positive_int(n_categories,
                                                                               "n_categories")
        return _com_tail_bound(self.log_rate, self.dispersion, k)

    def _default_categories(self) -> int:
        if self.log_rate.numel() == 0:
            return 1
        wide = _wide(self.log_rate.device)
        nu = self.dispersion.detach().to(wide)
        approx_mean = torch.exp(self.log_rate.detach().to(wide) / nu) - (nu - 1) / (2 * nu)
        top = max(float(approx_mean.max()), 0.0)
        k = int(math.floor(top + 10 * math.sqrt(top))) + 1 if math.isfinite(top) else MAX_CATEGORIES
        k = min(max(k, 2), MAX_CATEGORIES)
        while True:
            worst = float(_com_tail_bound(self.log_rate, self.dispersion, k).max())
            if worst <= self.tolerance:
                return k
            if k >= MAX_CATEGORIES:
                raise ValueError(
                    f"ConwayMaxwellPoisson: even n_categories={k} leaves a truncation bound "
                    f"{worst:.3g} > tolerance {self.tolerance:g}; the rate is too large (or the "
                    "dispersion too small) for a series normaliser")
            k = min(MAX_CATEGORIES, int(math.ceil(1.5 * k)))

    def _check_truncation(self) -> None:
        if self.log_rate.numel() == 0:
            return
        worst = float(self.truncation_bound().max())
        if worst > self.tolerance:
            raise ValueError(
                f"n_categories={self.n_categories} is too small for ConwayMaxwellPoisson: the mass "
                f"beyond category {self.n_categories - 1} may be up to {worst:.3g} (tolerance "
                f"{self.tolerance:g}); leave n_categories unset to choose one that meets it")

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(ConwayMaxwellPoisson, _instance)
        batch_shape = check_sample_shape(batch_shape, "batch_shape")
        new.log_rate = self.log_rate.expand(batch_shape)
        new.dispersion = self.dispersion.expand(batch_shape)
        new.n_categories, new.tolerance = self.n_categories, self.tolerance
        Distribution.__init__(new, batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def _work(self):
        work = compute_dtype(self.log_rate.dtype)
        return self.log_rate.to(work), self.dispersion.to(work)

    def log_normalizer(self) -> torch.Tensor:
        r""":math:`\log Z_K(\lambda, \nu)`, differentiable in both parameters, shape ``batch_shape``."""
        log_rate, nu = self._work()
        return torch.logsumexp(_com_log_terms(log_rate, nu, self.n_categories), -1)

    def logits(self) -> torch.Tensor:
        """Normalised log-pmf on ``0..K-1``, shape ``batch_shape + (K,)`` (the categorical GSM relaxes)."""
        log_rate, nu = self._work()
        terms = _com_log_terms(log_rate, nu, self.n_categories)
        return terms - torch.logsumexp(terms, -1, keepdim=True)

    def log_prob(self, value) -> torch.Tensor:
        if not torch.is_tensor(value):
            try:
                value = torch.as_tensor(value, device=self.log_rate.device)
            except (TypeError, ValueError, RuntimeError) as err:
                raise TypeError(f"value must be a real tensor or numbers, got "
                                f"{type(value).__name__}") from err
        if value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"value must be a real tensor, got {value.dtype}")
        check_same_device(value, "value", self.log_rate.device, other="log_rate")
        log_rate, nu = self._work()
        dtype = torch.promote_types(log_rate.dtype, value.dtype) if value.is_floating_point() \
            else log_rate.dtype
        value = value.to(dtype)
        if self._validate_args:
            check_param(constraints.nonnegative, value, "value", ">= 0")
        log_z = self.log_normalizer().to(dtype)
        return value * log_rate.to(dtype) - nu.to(dtype) * torch.lgamma(value + 1) - log_z

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        """Exact draws from the truncated categorical (dropped mass at most ``tolerance``)."""
        with torch.no_grad():
            counts = Categorical(logits=self.logits()).sample(check_sample_shape(sample_shape))
        return counts.to(self.log_rate.dtype)

    @property
    def mean(self) -> torch.Tensor:
        k = torch.arange(self.n_categories, dtype=compute_dtype(self.log_rate.dtype),
                         device=self.log_rate.device)
        return (self.logits().exp() * k).sum(-1).to(self.log_rate.dtype)

    @property
    def variance(self) -> torch.Tensor:
        k = torch.arange(self.n_categories, dtype=compute_dtype(self.log_rate.dtype),
                         device=self.log_rate.device)
        probs = self.logits().exp()
        mean = (probs * k).sum(-1, keepdim=True)
        return (probs * (k - mean) ** 2).sum(-1).to(self.log_rate.dtype)


def negative_binomial(mean, dispersion, validate_args=None) -> NegativeBinomial:
    r"""Torch's negative binomial with mean :math:`\mu` and dispersion :math:`r` (``total_count``).

    ``logits`` :math:`= \log(\mu / r)`, so :math:`p = \mu/(\mu + r)`, the mean is :math:`\mu` and the
    variance :math:`\mu + \mu^2/r`. Both must be finite and > 0 (``ValueError`` naming them).
    ``validate_args=False`` lets its ``log_prob`` score real (relaxed) counts through
    :math:`\log\Gamma`, as the ELBO of a relaxed sample needs.
    """
    mean = as_float_tensor(mean, "mean")
    dispersion = as_float_tensor(dispersion, "dispersion", like=mean)
    mean, dispersion = _broadcast(mean, dispersion, ("mean", "dispersion"))
    validate = Distribution._validate_args if validate_args is None else validate_args
    if check_bool(validate, "validate_args"):
        check_param(finite_positive, mean, "mean", "finite and > 0")
        check_param(finite_positive, dispersion, "dispersion", "finite and > 0")
    return NegativeBinomial(total_count=dispersion, logits=mean.log() - dispersion.log(),
                            validate_args=validate_args)


def _check_negative_binomial(distribution) -> None:
    if not isinstance(distribution, NegativeBinomial):
        raise TypeError("distribution must be a torch.distributions.NegativeBinomial, got "
                        f"{type(distribution).__name__}")


def negative_binomial_tail_bound(distribution: NegativeBinomial, n_categories) -> torch.Tensor:
    r"""Bound on :math:`P(X \ge K)`: :math:`p(K)/(1 - \rho)`, :math:`\rho = p\max(1, (K+r)/(K+1))`,
    elementwise in float64 (``inf`` where :math:`\rho \ge 1`)."""
    _check_negative_binomial(distribution)
    k = check_positive_int(n_categories, "n_categories")
    wide = _wide(distribution.logits.device)
    logits = distribution.logits.detach().to(wide)
    total = distribution.total_count.detach().to(wide)
    log_p = torch.nn.functional.logsigmoid(logits)
    log_pmf_k = (torch.lgamma(total + k) - torch.lgamma(total) - math.lgamma(k + 1)
                 + total * torch.nn.functional.logsigmoid(-logits) + k * log_p)
    log_rho = log_p + torch.log(torch.clamp((k + total) / (k + 1), min=1.0))
    bound = torch.exp(log_pmf_k - torch.log1p(-torch.exp(log_rho.clamp(max=0.0))))
    return torch.where(log_rho < 0, bound, torch.full_like(bound, math.inf))


def negative_binomial_logits(distribution: NegativeBinomial, n_categories,
                             tolerance: float = TRUNCATION_TOLERANCE, validate: bool = True) -> torch.Tensor:
    """Log-pmf of ``distribution`` on ``0..K-1``, shape ``batch_shape + (K,)`` (differentiable).

    With ``validate`` (default), ``ValueError`` naming ``n_categories`` when
    :func:`negative_binomial_tail_bound` exceeds ``tolerance`` anywhere.
    """
    _check_negative_binomial(distribution)
    k = check_positive_int(n_categories, "n_categories")
    tolerance = _check_tolerance(tolerance)
    if check_bool(validate, "validate") and distribution.logits.numel():
        worst = float(negative_binomial_tail_bound(distribution, k).max())
        if worst > tolerance:
            raise ValueError(f"n_categories={k} is too small for this negative binomial: the mass "
                             f"beyond category {k - 1} may be up to {worst:.3g} (tolerance "
                             f"{tolerance:g})")
    logits, total = distribution.logits, distribution.total_count
    work = compute_dtype(logits.dtype)
    logits, total = logits.to(work).unsqueeze(-1), total.to(work).unsqueeze(-1)
    counts = torch.arange(k, dtype=work, device=logits.device)
    return (torch.lgamma(total + counts) - torch.lgamma(total) - torch.lgamma(counts + 1)
            + total * torch.nn.functional.logsigmoid(-logits)
            + counts * torch.nn.functional.logsigmoid(logits))


def gumbel_softmax_counts(logits: torch.Tensor, temperature, sample_shape=torch.Size(),
                          hard: bool = False) -> torch.Tensor:
    r"""Relaxed counts :math:`\tilde z = \sum_k k\,y_k`, :math:`y` the Gumbel-softmax of ``logits``.

    ``logits``: ``batch + (K,)``, the categorical's log-probabilities over counts ``0..K-1`` (e.g.
    :meth:`ConwayMaxwellPoisson.logits`, :func:`negative_binomial_logits`); ``temperature``:
    :math:`\tau > 0`, a number or a tensor broadcastable to ``batch``. Returns ``sample_shape + batch``,
    differentiable in ``logits`` (and ``temperature``). ``hard=True``: straight-through (exact
    draws forward). The sampler is :func:`hitchhiker.distributions.gumbel_softmax_onehot`, the same
    one :class:`hitchhiker.GumbelSoftmaxPoisson` uses.
    """
    if not torch.is_tensor(logits) or not logits.is_floating_point() or logits.dim() < 1:
        raise TypeError("logits must be a floating tensor with the categories in its last dimension")
    hard = check_bool(hard, "hard")
    temperature = as_float_tensor(temperature, "temperature", like=logits)
    temperature = check_same_device(temperature, "temperature", logits.device, other="logits")
    check_param(finite_positive, temperature, "temperature", "finite and > 0")
    shape = check_sample_shape(sample_shape) + logits.shape[:-1]
    work = compute_dtype(logits.dtype)
    try:
        tau = temperature.to(work).expand(shape)
    except RuntimeError as err:
        raise ValueError(f"temperature of shape {tuple(temperature.shape)} does not broadcast to "
                         f"the batch shape {tuple(logits.shape[:-1])} of logits") from err
    y = gumbel_softmax_onehot(logits.to(work).expand(shape + logits.shape[-1:]), tau, hard)
    k = torch.arange(logits.shape[-1], dtype=work, device=logits.device)
    return (y * k).sum(-1).to(logits.dtype)
