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
element (:func:`hitchhiker._eat.eat_pathwise`). Window arrivals are processed in bounded slices (peak
memory per element does not grow with the rate), and the backward pass
(:class:`hitchhiker._eat.EATSample`) keeps one number per element and parameter. The appendix *What
each estimator costs* benchmarks it.

:class:`GumbelSoftmaxPoisson` -- Gumbel-softmax over the Poisson pmf truncated to ``K`` categories.

Both share one base class (:class:`_PoissonRelaxation`): the arguments and their checks, ``expand``,
the Poisson ``log_prob`` and the exact ``sample``.
"""
from __future__ import annotations

import math
import warnings

import torch
from torch.distributions import Distribution, constraints

from ._eat import _functorch_wrappers, _is_compiling, check_rate_temperature, eat_rsample, poisson
from ._validation import (
    as_float_tensor,
    broadcast_pair,
    check_bool,
    check_n_categories,
    check_param,
    check_same_device,
    check_sample_shape,
    compute_dtype,
    finite_nonnegative,
    finite_positive,
    max_rate,
    real_tensor,
)
from .indicators import INDICATORS, get_indicator
from .moments import relaxed_mean, relaxed_variance

#: Largest Poisson mass beyond ``n_categories - 1`` that :class:`GumbelSoftmaxPoisson` drops silently.
TRUNCATION_TOLERANCE = 1e-4
#: :class:`GumbelSoftmaxPoisson` warns before a draw whose ``sample_shape + batch_shape + (K,)`` tensors
#: would exceed this many bytes each (several of that size are alive at once; ``K`` follows the
#: largest rate of the whole batch, so one large rate makes every element pay for it).
GSM_MEMORY_WARNING = 1 << 30


def _batched_by_vmap(tensor: torch.Tensor) -> bool:
    """Is ``tensor`` batched by ``torch.func.vmap`` (at any level)? Its values cannot be read then."""
    functorch = getattr(torch._C, "_functorch", None)
    if functorch is None or not hasattr(functorch, "is_batchedtensor"):
        return False
    return any(functorch.is_batchedtensor(t) for t in _functorch_wrappers(tensor))


def _score_dtype(value: torch.Tensor, rate: torch.Tensor) -> torch.dtype:
    """The dtype a log-pmf is computed in: the rate's floating dtype, promoted with a floating value.

    An integer count is cast to the rate's dtype (never the rate to the count's: an int64 count would
    otherwise truncate the rate, or push ``lgamma`` into the default dtype).
    """
    dtype = rate.dtype if rate.is_floating_point() else torch.get_default_dtype()
    return torch.promote_types(dtype, value.dtype) if value.is_floating_point() else dtype


def _log_pmf(value: torch.Tensor, rate: torch.Tensor) -> torch.Tensor:
    r"""The log-pmf without checks (``value`` and ``rate`` tensors on one device).

    :math:`z\log\lambda` is 0 where :math:`z = 0`, with derivative 0 in :math:`\lambda` there (the
    limit of :math:`z/\lambda`): ``xlogy``'s own backward gives 0/0 = NaN at :math:`z = \lambda = 0`, so
    the rate is replaced by 1 under ``xlogy`` wherever :math:`z = 0`. The score of :math:`z = 0` at
    :math:`\lambda = 0` is then :math:`-1`, its value for every :math:`\lambda`.
    """
    dtype = _score_dtype(value, rate)
    value, rate = value.to(dtype), rate.to(dtype)
    safe = torch.where(value == 0, torch.ones_like(rate), rate)
    return torch.xlogy(value, safe) - rate - torch.lgamma(value + 1)


def _log_pmf_log_rate(value: torch.Tensor, log_rate: torch.Tensor, rate: torch.Tensor) -> torch.Tensor:
    r"""The log-pmf from :math:`\log\lambda` itself: :math:`z\log\lambda - e^{\log\lambda} - \log\Gamma(z+1)`,
    exact where :math:`\lambda` underflows (and :math:`z\log\lambda = 0` at :math:`z = 0`, even for
    :math:`\log\lambda = -\infty`)."""
    dtype = _score_dtype(value, log_rate)
    value, log_rate, rate = value.to(dtype), log_rate.to(dtype), rate.to(dtype)
    safe = torch.where(value == 0, torch.zeros_like(log_rate), log_rate)
    return value * safe - rate - torch.lgamma(value + 1)


def poisson_log_prob(value, rate, *, validate_args=None, integer: bool = False) -> torch.Tensor:
    r"""Poisson log-pmf :math:`z\log\lambda - \lambda - \log\Gamma(z + 1)`, extended to real :math:`z \ge 0`.

    Through the gamma function it also scores relaxed (real-valued) counts, as the POGLM ELBO and the
    score-function surrogate need; it is a normalised density only on the integers. The result has
    the dtype ``promote(rate.dtype, value.dtype)`` for a floating ``value`` and ``rate.dtype`` for an
    integer one (counts are exact in any float dtype that can hold the rate).

    **At** :math:`\lambda = 0`: :math:`\log p(0; 0) = 0`, and the score
    :math:`\partial_\lambda \log p(z;\lambda) = z/\lambda - 1` of :math:`z = 0` is taken as its value
    at every :math:`\lambda`, :math:`-1` (not ``xlogy``'s 0/0 = NaN), so a rate of exactly 0, or one
    that underflowed from ``exp``, gives finite score-function gradients.

    Args:
        value: counts :math:`z \ge 0` (a tensor or numbers).
        rate: :math:`\lambda \ge 0`, broadcastable with ``value``.
        validate_args: refuse (``ValueError`` naming the argument) a negative or non-finite
            ``rate`` or ``value``, as the distributions do; default: torch.distributions' default
            (on). ``False`` skips the checks (they read the values: a host sync on a GPU, and
            impossible under ``torch.func.vmap``).
        integer: also refuse a non-integer ``value`` (exact counts only; the default accepts relaxed
            counts, as above).

    >>> poisson_log_prob(torch.tensor([0.0, 2.0]), torch.tensor([0.0, 2.0]))
    tensor([ 0.0000, -1.3069])
    >>> poisson_log_prob(torch.tensor([-1.0]), torch.tensor([2.0]))
    Traceback (most recent call last):
    ...
    ValueError: value must be finite and >= 0 (a count); got invalid values such as [-1.0]
    """
    rate = real_tensor(rate, "rate")
    value = real_tensor(value, "value", device=rate.device)
    value = check_same_device(value, "value", rate.device)
    validate = Distribution._validate_args if validate_args is None else validate_args
    if check_bool(validate, "validate_args"):
        check_param(finite_nonnegative, rate, "rate", "finite and >= 0")
        check_param(finite_nonnegative, value, "value", "finite and >= 0 (a count)")
    if check_bool(integer, "integer"):
        check_param(_integral, value, "value", "an integer count (integer=True)")
    return _log_pmf(value, rate)


class _Integral(constraints.Constraint):
    is_discrete = True
    event_dim = 0

    def check(self, value):
        return value == torch.round(value) if value.is_floating_point() else torch.ones_like(
            value, dtype=torch.bool)


_integral = _Integral()


def _check_log_rate(log_rate: torch.Tensor) -> None:
    r"""``ValueError`` unless every log rate is below :math:`\log` of the largest rate (and not NaN).

    :math:`-\infty` (a rate of 0) is accepted.
    """
    limit = math.log(max_rate(log_rate.dtype))
    value = log_rate.detach()
    ok = ~torch.isnan(value) & (value < limit)
    if not bool(ok.all()):
        bad = value[~ok].flatten()[:3].tolist()
        raise ValueError(
            f"log_rate must be below {limit:.6g} (log of the largest rate, {max_rate(value.dtype):.4g}, "
            f"in {value.dtype}: torch.poisson draws counts through int64"
            f"{', and float16 samples overflow above 65504' if value.dtype == torch.float16 else ''}) "
            f"and not NaN; got {bad}")


def _log_floor(dtype: torch.dtype) -> float:
    """The floor of a log rate inside GSM's logits (a rate of 0, or log_rate = -inf, gives finite logits)."""
    return math.log(torch.finfo(dtype).tiny)


class _PoissonRelaxation(Distribution):
    r"""What the two relaxations share: ``rate`` :math:`\lambda \ge 0` (or ``log_rate``),
    ``temperature`` :math:`\tau > 0`, ``hard``, their checks, one ``expand``, the Poisson
    ``log_prob`` and exact ``sample``.

    Subclasses list their extra (non-tensor) attributes in ``_extra_attributes`` so that ``expand``
    copies them, and implement ``rsample``.
    """

    arg_constraints = {"rate": finite_nonnegative, "temperature": finite_positive}
    support = constraints.nonnegative
    has_rsample = True
    _extra_attributes: tuple = ()
    #: Can rsample run the argument checks itself (inside an opaque operator) when they cannot run
    #: at construction (under torch.compile, or on a vmap-batched rate)?
    _checks_in_sampler = False

    def __init__(self, rate, temperature, hard=False, validate_args=None, log_rate=None):
        name = type(self).__name__
        if rate is None and log_rate is None:  # a missing argument, as Python reports it
            raise TypeError(f"{name} needs a rate (or log_rate=, keyword only): got neither")
        if rate is not None and log_rate is not None:
            raise ValueError(f"{name} takes exactly one of rate and log_rate, got both")
        if temperature is None:
            raise TypeError(f"{name} needs a temperature (a number or tensor > 0), got None")
        self.hard = check_bool(hard, "hard")
        validate = Distribution._validate_args if validate_args is None else validate_args
        validate = check_bool(validate, "validate_args")
        if log_rate is not None:
            log_rate = as_float_tensor(log_rate, "log_rate")
            temperature = as_float_tensor(temperature, "temperature", like=log_rate)
            log_rate, temperature = broadcast_pair(log_rate, temperature, rate_name="log_rate")
            rate = log_rate.exp()
        else:
            rate = as_float_tensor(rate, "rate")
            temperature = as_float_tensor(temperature, "temperature", like=rate)
            rate, temperature = broadcast_pair(rate, temperature)
        self._explicit_validation = validate_args is True
        self.rate, self.temperature, self._log_rate = rate, temperature, log_rate
        # Values cannot be read in Python under vmap, and reading them splits a torch.compile
        # graph: then the same checks run inside RelaxedPoisson's sampling operator, at rsample.
        compiling = _is_compiling()
        batched = not compiling and (_batched_by_vmap(rate) or _batched_by_vmap(temperature))
        self._deferred_checks = validate and (compiling or batched)
        if self._deferred_checks and not self._checks_in_sampler:
            if batched:
                raise RuntimeError(
                    f"{name} cannot check its arguments on a rate batched by vmap "
                    "(their values cannot be read there): check them outside vmap and pass "
                    "validate_args=False (and, for GumbelSoftmaxPoisson, an explicit n_categories)")
            self._deferred_checks = False  # compiling: check now, at the cost of a graph break
        if validate and not self._deferred_checks:
            if log_rate is not None:
                _check_log_rate(log_rate)
            check_rate_temperature(rate, temperature)
        # The checks above already raised clear errors; skip torch's generic re-check of the values.
        super().__init__(rate.shape, validate_args=False)
        self._validate_args = validate

    @property
    def log_rate(self) -> torch.Tensor:
        r""":math:`\log\lambda`: the ``log_rate`` given, else ``rate.log()``."""
        return self.rate.log() if self._log_rate is None else self._log_rate

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(type(self), _instance)
        batch_shape = check_sample_shape(batch_shape, "batch_shape")
        try:
            new.rate = self.rate.expand(batch_shape)
            new.temperature = self.temperature.expand(batch_shape)
            new._log_rate = None if self._log_rate is None else self._log_rate.expand(batch_shape)
        except RuntimeError as err:
            raise ValueError(f"batch_shape {tuple(batch_shape)} cannot be reached by expanding the "
                             f"batch shape {tuple(self.batch_shape)}") from err
        for name in ("hard", "_explicit_validation", "_deferred_checks") + self._extra_attributes:
            setattr(new, name, getattr(self, name))
        Distribution.__init__(new, batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value):
        r""":math:`\log p(z;\lambda) = z\log\lambda - \lambda - \log\Gamma(z + 1)`.

        Defined for real :math:`z \ge 0` through the gamma function, so it can score relaxed counts
        (as the POGLM ELBO does); it is a normalised density only on the integers, where it equals
        ``torch.distributions.Poisson(rate).log_prob``. Integer counts are scored in the rate's
        dtype; a floating ``value`` is promoted with it (:func:`poisson_log_prob`). Given
        ``log_rate``, :math:`z\log\lambda` uses it directly (exact where :math:`\lambda` underflows).
        """
        value = real_tensor(value, "value", device=self.rate.device)
        value = check_same_device(value, "value", self.rate.device)
        if self._validate_args:
            self._validate_sample(value)
        if self._log_rate is not None:
            return _log_pmf_log_rate(value, self._log_rate, self.rate)
        return _log_pmf(value, self.rate)

    def sample(self, sample_shape=torch.Size()):
        """Exact Poisson counts (no gradient), in the rate's dtype."""
        shape = self._extended_shape(check_sample_shape(sample_shape))
        with torch.no_grad():
            rate = self.rate.expand(shape)
            work = rate.to(compute_dtype(rate.dtype))
            return poisson(work).to(rate.dtype)


class RelaxedPoisson(_PoissonRelaxation):
    r"""EAT relaxation of Poisson(``rate``) at temperature ``temperature``.

    Args:
        rate: :math:`\lambda \ge 0`, any shape, any real dtype and device (integer tensors and Python
            numbers become the default float dtype; complex and boolean inputs are refused); below
            :data:`~hitchhiker._validation.MAX_RATE` (9.2e18: ``torch.poisson`` counts in int64), and
            for float16 below about 62,960 (the samples must fit in float16). EAT simulates the
            arrivals in its soft window (about :math:`2\lambda\tau` per element for a compact ramp):
            a draw that would need more than :data:`~hitchhiker._eat.MAX_WINDOW_ARRIVALS`
            (:math:`2^{40}`) of them is refused with ``ValueError`` rather than run for hours.
        log_rate: :math:`\log\lambda` instead of ``rate`` (keyword only; give exactly one of the two),
            as the official code takes it: ``rate = log_rate.exp()``, with the gradient flowing to
            ``log_rate``. :math:`-\infty` is a rate of 0; above :math:`\log 9.2\times10^{18}
            \approx 43.67` it is refused (no count that large can be drawn), so ``exp`` never
            overflows, even in float32 (:math:`e^{88.7}`).
        temperature: :math:`\tau > 0`, broadcastable with ``rate``, on its device (a 0-dim CPU
            tensor or a number is moved).
        indicator: ``"cubic"`` (default; exact mean for :math:`\tau \le 1`), ``"sigmoid"``,
            ``"linear"``, ``"quintic"`` or ``"cosine"``.
        hard: ``bool``; straight-through: the forward value is the exact count of the same arrivals,
            the gradient is the relaxed one.
        validate_args: check the arguments (on by default, as in ``torch.distributions``).

    ``rsample`` returns relaxed counts of shape ``sample_shape + batch_shape``; ``sample`` returns
    exact Poisson counts. ``mean`` and ``variance`` are the relaxed variable's own moments from
    Campbell's theorem (:mod:`hitchhiker.moments`); with ``hard=True`` they are Poisson's.
    Half-precision inputs are sampled in float32 and returned in their own dtype.

    **At a rate of 0** the sample is exactly 0 and so is its pathwise gradient (a rate-0 process has
    no arrivals). The derivative of :math:`\mathbb E[\tilde z]` there is the mean factor (1 for a
    compact ramp at :math:`\tau \le 1`); at a small :math:`\lambda > 0` the expected pathwise gradient
    still equals it, carried by rare draws (probability about :math:`2\lambda\tau`) with gradients of
    order :math:`1/(\lambda\tau)`, but at :math:`\lambda = 0` by none, so a rate of exactly 0 gets a
    zero gradient. The score function is finite there too (:func:`poisson_log_prob` takes the score
    of :math:`z = 0` at :math:`\lambda = 0` as :math:`-1`), and just as blind to the first arrival.
    Keep rates away from 0 (e.g. ``softplus(x) + eps``) if their gradient at 0 matters.

    >>> rate = torch.tensor([0.5, 3.0], requires_grad=True)
    >>> d = RelaxedPoisson(rate, temperature=0.1)
    >>> z = d.rsample((1000,))                # relaxed counts, shape (1000, 2)
    >>> z.mean(0).backward(torch.ones(2))     # E[dz/d rate] = 1 for the cubic ramp at tau <= 1
    >>> z.shape, rate.grad.shape
    (torch.Size([1000, 2]), torch.Size([2]))
    >>> RelaxedPoisson(log_rate=torch.tensor([50.0]), temperature=0.1)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: log_rate must be below 43.6657 (log of the largest rate, 9.2e+18, ...) and not NaN; got [50.0]

    **Derivatives.** First order in every mode: ``backward``/``torch.autograd.grad`` (also with
    ``create_graph=True``), ``torch.func.grad``/``jacrev``, forward mode (``torch.func.jvp``,
    ``torch.autograd.forward_ad``: the tangent is
    :math:`\partial_\lambda\tilde z\,\dot\lambda + \partial_\tau\tilde z\,\dot\tau` of the same
    sample). Second derivatives are not implemented and are refused with ``RuntimeError`` in every
    path (double backward, ``torch.autograd.functional.hessian``, ``torch.func.hessian``,
    forward-over-forward): the pathwise derivative depends on :math:`\lambda`, and a Hessian that
    ignored it would be wrong. (For the ``linear`` ramp, whose :math:`f'` jumps, a pathwise second
    derivative would be biased anyway.)

    **Transforms.** ``torch.func.vmap`` works with ``randomness="different"`` (independent draws per
    batch element; ``"same"`` only for an unbatched rate; the default ``"error"`` raises saying so).
    ``torch.compile`` sees the sampler as one opaque operator (torch >= 2.4), so it does not split
    the graph; under compile the argument checks run inside that operator, at ``rsample``.
    """

    _extra_attributes = ("indicator",)
    _checks_in_sampler = True

    def __init__(self, rate=None, temperature=None, indicator="cubic", hard=False, validate_args=None, *,
                 log_rate=None):
        self.indicator = get_indicator(indicator)
        if INDICATORS.get(self.indicator.name) is not self.indicator:
            raise ValueError(f"indicator must be one of {sorted(INDICATORS)} (or its Indicator "
                             f"object), got an unregistered Indicator {self.indicator.name!r}")
        super().__init__(rate, temperature, hard=hard, validate_args=validate_args, log_rate=log_rate)

    @property
    def mean(self):
        if self.hard:
            return self.rate
        return relaxed_mean(self.rate, self.temperature, self.indicator.name)

    @property
    def variance(self):
        if self.hard:
            return self.rate
        return relaxed_variance(self.rate, self.temperature, self.indicator.name)

    def rsample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(check_sample_shape(sample_shape))
        rate, temperature = self.rate.expand(shape), self.temperature.expand(shape)
        work = compute_dtype(rate.dtype)
        value = eat_rsample(rate.to(work), temperature.to(work), self.indicator, self.hard,
                            check=self._deferred_checks)
        return value.to(rate.dtype)


def _largest(rate: torch.Tensor) -> float:
    """The largest rate as a Python number (one host read), 0 for an empty rate."""
    return float(rate.detach().max()) if rate.numel() else 0.0


def _categories_for(top: float) -> int:
    return int(math.floor(top + 4 * math.sqrt(top) + 5))


def _tail_beyond(top: float, n_categories: int) -> float:
    """:math:`P(X \\ge K)` for :math:`X \\sim \\mathrm{Poisson}(top)` (the regularised lower incomplete
    gamma function)."""
    if top == 0:
        return 0.0
    k = torch.tensor(float(n_categories), dtype=torch.float64)
    return float(torch.special.gammainc(k, torch.tensor(top, dtype=torch.float64)))


def default_n_categories(rate: torch.Tensor) -> int:
    r"""The paper's truncation :math:`K = \lfloor \lambda_{max} + 4\sqrt{\lambda_{max}} + 5 \rfloor`."""
    return _categories_for(_largest(rate))


def truncation_tail_mass(rate: torch.Tensor, n_categories: int) -> float:
    r"""Poisson mass beyond the last category for the largest rate:
    :math:`P(X \ge K) = P(K, \lambda_{max})`, the regularised lower incomplete gamma function."""
    return _tail_beyond(_largest(rate), n_categories)


def gumbel_softmax_onehot(logits: torch.Tensor, temperature: torch.Tensor,
                          hard: bool = False) -> torch.Tensor:
    r"""Gumbel-softmax over arbitrary ``logits`` (last dimension: the ``K`` categories).

    :math:`y = \mathrm{softmax}((\ell + g)/\tau)` with i.i.d. Gumbel(0, 1) noise
    :math:`g = -\log(-\log u)`, :math:`u \sim U(0, 1)`, one draw per element of ``logits``;
    ``temperature`` broadcasts against ``logits.shape[:-1]``. ``hard=True`` is straight-through
    (forward: the one-hot argmax, an exact draw from the categorical of ``softmax(logits)``).
    The sampler behind :class:`GumbelSoftmaxPoisson`, and the hook for any other count
    distribution whose categorical logits are known (:mod:`hitchhiker.counts`). The caller checks
    its arguments.
    """
    tau = temperature.to(logits.dtype).unsqueeze(-1)
    u = torch.rand_like(logits).clamp(torch.finfo(logits.dtype).tiny, 1.0)
    y = torch.softmax((logits - torch.log(-torch.log(u))) / tau, dim=-1)
    if hard:
        onehot = torch.zeros_like(y).scatter_(-1, y.argmax(-1, keepdim=True), 1.0)
        y = onehot + (y - y.detach())
    return y


class GumbelSoftmaxPoisson(_PoissonRelaxation):
    r"""Gumbel-softmax relaxation of Poisson(``rate``) truncated to ``n_categories`` values.

    Categories :math:`k = 0, \dots, K-1` with logits :math:`\ell_k = k\log\lambda - \log k!`;
    :math:`y = \mathrm{softmax}((\ell + g)/\tau)` with Gumbel noise :math:`g`, and the relaxed count is
    :math:`\tilde z = \sum_k k\,y_k`. ``rsample_onehot`` returns :math:`y` itself (last dimension
    ``K``). ``hard=True`` is straight-through (forward: the one-hot argmax, an exact draw from the
    truncated Poisson). GSM has no closed-form moments, so ``mean``/``variance`` are not provided.

    **Truncation is never silent.** The default ``K`` (:func:`default_n_categories`) covers the tail
    of the largest rate. For any ``K``, the mass dropped, :math:`P(X \ge K)` at
    :math:`\lambda_{max}` (:func:`truncation_tail_mass`), is compared with
    :data:`TRUNCATION_TOLERANCE` (``1e-4``): above it a ``UserWarning`` names ``n_categories``, the
    largest rate and the mass lost, or, when ``validate_args=True`` is passed explicitly, a
    ``ValueError`` is raised. ``validate_args=False`` skips the check (as it skips every check).

    ``n_categories`` is any positive integral number (``int``, ``numpy.int64``; not ``bool`` or
    floats). A draw allocates several tensors of ``sample_shape + batch_shape + (K,)`` elements; above
    :data:`GSM_MEMORY_WARNING` bytes each (1 GiB) a ``UserWarning`` says so before allocating.
    ``log_rate=`` (keyword only, instead of ``rate``) gives the logits :math:`k\log\lambda - \log k!`
    from :math:`\log\lambda` itself, exact where :math:`\lambda` underflows; limits as for
    :class:`RelaxedPoisson`. At a rate of 0 the gradient is 0, as for EAT (the log rate is floored at
    the log of the smallest normal number, about -708 in float64), and category 0 leads every other
    by at least that much, so at any temperature well below 708 the sample is 0. Every derivative is
    autograd's own through the softmax, so second derivatives and forward mode are exact derivatives
    of the relaxation.

    >>> d = GumbelSoftmaxPoisson(torch.tensor([2.0, 8.0]), temperature=0.5)
    >>> d.n_categories                      # floor(8 + 4 sqrt(8) + 5)
    24
    >>> d.rsample((3,)).shape, d.rsample_onehot((3,)).shape
    (torch.Size([3, 2]), torch.Size([3, 2, 24]))

    The default ``K`` and the truncation check read the largest rate, which ``torch.compile`` and
    ``vmap`` cannot do inside the traced function: under ``torch.compile`` pass ``n_categories``
    (else the read splits the graph); under ``vmap`` pass ``n_categories`` and
    ``validate_args=False`` (else a clear error says so) and check the truncation outside.
    """

    _extra_attributes = ("n_categories",)

    def __init__(self, rate=None, temperature=None, n_categories=None, hard=False, validate_args=None,
                 *, log_rate=None):
        super().__init__(rate, temperature, hard=hard, validate_args=validate_args, log_rate=log_rate)
        if n_categories is None:
            if not _is_compiling() and _batched_by_vmap(self.rate):
                raise ValueError("GumbelSoftmaxPoisson under vmap needs an explicit n_categories "
                                 "(the default reads the largest rate, which vmap cannot)")
            top = _largest(self.rate)
            self.n_categories = check_n_categories(_categories_for(top))
        else:
            self.n_categories = check_n_categories(n_categories)
        if self._validate_args:
            # The default K and the truncation check both need the largest rate: read it once.
            self._check_truncation(top if n_categories is None else _largest(self.rate))

    def _check_truncation(self, top: float):
        lost = _tail_beyond(top, self.n_categories)
        if lost <= TRUNCATION_TOLERANCE:
            return
        message = (f"GumbelSoftmaxPoisson: n_categories={self.n_categories} drops Poisson mass "
                   f"{lost:.3g} beyond category {self.n_categories - 1} at the largest rate "
                   f"{top:.6g} (tolerance {TRUNCATION_TOLERANCE:g}); samples are biased towards "
                   f"small counts. Use n_categories >= {_categories_for(top)} (the "
                   "default) or leave it unset")
        if self._explicit_validation:
            raise ValueError(message)
        warnings.warn(message, UserWarning, stacklevel=3)

    def logits(self) -> torch.Tensor:
        """Unnormalised log-pmf of the truncated Poisson, shape ``batch_shape + (K,)``."""
        rate = self.rate
        # float64 for the logits: k log(lambda) and log k! are both ~1e5 at lambda = 1e4.
        wide = torch.float64 if rate.device.type != "mps" else torch.float32
        work = compute_dtype(rate.dtype)
        k = torch.arange(self.n_categories, dtype=wide, device=rate.device)
        if self._log_rate is None:
            log_wide = rate.detach().to(wide).clamp_min(torch.finfo(wide).tiny).log()
            log_work = rate.to(work).clamp_min(torch.finfo(work).tiny).log()
        else:  # the log rate itself: no exp/log round trip, exact where the rate underflows
            log_wide = self._log_rate.detach().to(wide).clamp_min(_log_floor(wide))
            log_work = self._log_rate.to(work).clamp_min(_log_floor(work))
        values = (k * log_wide.unsqueeze(-1) - torch.lgamma(k + 1)).to(work)  # log on B, not B x K
        # The derivatives come from a zero-valued term with the derivatives of k log(lambda) to every
        # order, in the working dtype: autograd then never runs through the wide K-fold tensor (the
        # float64 backward of the K-fold product used to be most of GSM's cost).
        log_work = log_work.unsqueeze(-1)
        return values + k.to(work) * (log_work - log_work.detach())

    def _onehot(self, sample_shape) -> torch.Tensor:
        """``rsample_onehot`` in the working dtype (float32 for half-precision rates)."""
        shape = self._extended_shape(check_sample_shape(sample_shape))
        work = compute_dtype(self.rate.dtype)
        nbytes = math.prod(shape) * self.n_categories * torch.finfo(work).bits // 8
        if nbytes > GSM_MEMORY_WARNING:
            warnings.warn(
                f"GumbelSoftmaxPoisson: this draw allocates several tensors of {nbytes / 2**30:.3g} GiB "
                f"each (sample and batch shape {tuple(shape)} x n_categories={self.n_categories}, "
                f"set by the largest rate {_largest(self.rate):.4g}); draw fewer samples, split the "
                f"batch by rate, or use RelaxedPoisson, whose memory does not grow with the rate",
                UserWarning, stacklevel=3)
        logits = self.logits().expand(shape + (self.n_categories,))
        tau = self.temperature.to(logits.dtype).expand(shape)
        return gumbel_softmax_onehot(logits, tau, self.hard)

    def rsample_onehot(self, sample_shape=torch.Size()) -> torch.Tensor:
        """Relaxed one-hot vectors ``y``, shape ``sample_shape + batch_shape + (K,)``."""
        return self._onehot(sample_shape).to(self.rate.dtype)

    def rsample(self, sample_shape=torch.Size()):
        y = self._onehot(sample_shape)
        k = torch.arange(self.n_categories, dtype=y.dtype, device=y.device)
        return (y * k).sum(-1).to(self.rate.dtype)  # summed in the working dtype: no float16 overflow
