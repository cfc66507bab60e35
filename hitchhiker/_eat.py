r"""The truncation-free EAT kernel and the autograd machinery that attaches its pathwise derivatives.

A Poisson(:math:`\lambda`) count is the number of arrivals :math:`t_i = S_i/\lambda` (``S_i`` sums of
standard exponentials) in :math:`[0, 1]`; EAT replaces :math:`\mathbb 1[t_i < 1]` by a soft indicator,

.. math:: \tilde z = \sum_i f(x_i), \quad x_i = \frac{1 - t_i}{\tau}, \qquad
          \frac{\partial \tilde z}{\partial \lambda} = \sum_i f'(x_i)\,\frac{t_i}{\tau\lambda}, \qquad
          \frac{\partial \tilde z}{\partial \tau} = -\sum_i f'(x_i)\,\frac{x_i}{\tau}.

:func:`eat_pathwise` draws (sample, derivatives) exactly, without truncation, in
:math:`O(1 + \lambda\tau)` work per element. Around it:

* ``_eat_sample``: the kernel as one opaque operator (a ``torch.library.custom_op`` with a fake
  implementation on torch >= 2.4, so ``torch.compile`` keeps it in one graph instead of tracing the
  data-dependent arrival loop; on older torch a ``torch.compiler.disable``-d function).
* :class:`EATSample`: the autograd function (``setup_context`` style, so ``torch.func`` transforms
  work). Backward multiplies the incoming gradient by the per-element derivative, forward mode
  (``jvp``) gives :math:`\dot{\tilde z} = \partial_\lambda\tilde z\,\dot\lambda +
  \partial_\tau\tilde z\,\dot\tau` for the same sample, and ``vmap`` samples the batched tensor
  directly (the sampler is elementwise).
* :func:`poisson`: exact Poisson counts, ``torch.poisson`` or, on a device without it (Apple's MPS),
  drawn on the CPU and moved back. Every exact draw of the library goes through it.
* :class:`NoSecondOrder`: the second pathwise derivative is not computed, and the derivative
  :math:`\partial\tilde z/\partial\lambda` itself depends on :math:`\lambda` and :math:`\tau`. Every
  derivative that leaves :class:`EATSample` under a graph (``create_graph=True``, ``torch.func``) or
  in forward mode passes through this identity function whose backward and ``jvp`` raise, so every
  second-order path (double backward, ``torch.autograd.functional.hessian``, ``torch.func.hessian``,
  forward-over-forward) stops with a ``RuntimeError`` instead of returning a derivative that misses
  :math:`\partial^2\tilde z/\partial\lambda^2`. First-order use under ``create_graph=True`` (as
  ``torch.func.grad`` does internally) is unaffected as long as nobody differentiates the gradient.
"""
from __future__ import annotations

import warnings
from typing import Optional

import torch
import torch.autograd.forward_ad as fwAD

from ._validation import check_param, check_rate, finite_positive
from .indicators import INDICATORS, Indicator, _TorchNS

#: Fewest window arrivals handled per vectorised step. A step handles ``max(ARRIVAL_CHUNK, n)`` arrivals
#: for a batch of ``n`` elements, so peak memory per element is bounded independently of the rate.
ARRIVAL_CHUNK = 1 << 16
#: Most window arrivals one draw may simulate (the work is :math:`O(\sum_j \lambda_j \tau_j)`): beyond
#: it (hours of work) the kernel refuses with ``ValueError`` instead of running for ever.
MAX_WINDOW_ARRIVALS = 1 << 40


# ----------------------------------------------------------------------------- exact counts

#: The CPU kernel, which always exists (kept under its own name: tests make ``torch.poisson``
#: unavailable to exercise the fallback).
_cpu_poisson = torch.poisson
_warned: set = set()


def poisson(rate: torch.Tensor) -> torch.Tensor:
    """``torch.poisson(rate)``; on a device without it, drawn on the CPU and moved back.

    Used by every exact draw of the library (the EAT kernel's counts, ``sample()``, the score
    function). Where ``torch.poisson`` raises ``NotImplementedError`` for the rate's device (Apple's
    MPS has no kernel for it), the counts are drawn on the CPU, from the CPU's random stream (which
    ``torch.manual_seed`` seeds), and copied back; a ``UserWarning`` says so once per device type.
    """
    try:
        return torch.poisson(rate)
    except NotImplementedError as err:
        device = rate.device
        if device.type not in _warned:
            _warned.add(device.type)
            warnings.warn(
                f"torch.poisson is not available for a rate on {device} ({str(err).partition(chr(10))[0]}); "
                "hitchhiker draws the Poisson counts on the CPU and moves them back (one copy each "
                "way per draw). This warning is shown once.", UserWarning, stacklevel=2)
        return _cpu_poisson(rate.detach().to("cpu")).to(device)


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
    ramp, d_ramp = indicator.ramp, indicator.d_ramp
    if ramp is None or d_ramp is None:
        raise TypeError(f"indicator {indicator.name!r} is not a compact ramp")
    if want_value:
        value = ramp(u, _TorchNS)
    if want_slope:
        slope = 0.5 * d_ramp(u, _TorchNS)
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
    else:
        value = indicator(x) if "value" in columns else None
        slope = indicator.derivative(x) if want_slope else None
    out = {}
    for name in columns:
        if name == "value":
            out[name] = value
        elif name == "hard":
            out[name] = ((u > 0.5) if x is None else (x > 0)).to(u.dtype)
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
    window_counts = poisson(rate * width)
    counts = window_counts.to(torch.long)
    before = poisson(rate * lo) if (with_relaxed or with_hard) else None
    ends = counts.cumsum(0)
    # x = (1 - t)/tau runs from `left` down to -h over the window; left = h unless it is clipped at
    # t = 0, so when no window is clipped x = h(2u - 1) is the same for every element.
    left = torch.clamp(1 / temperature, max=half_width)
    total, same_tau, first_tau, shared = 0, False, None, True
    if n:
        # Everything the host needs to know, read in ONE transfer (on a GPU each read is a sync):
        # the number of window arrivals (also summed in float64, which cannot wrap round), whether
        # the batch has one temperature, and whether any window is clipped at t = 0.
        total, wide_total, same_tau, first_tau, shared = torch.stack([
            ends[-1].to(torch.float64), window_counts.to(torch.float64).sum(),
            (temperature == temperature[0]).all().to(torch.float64),
            temperature[0].to(torch.float64), (left == half_width).all().to(torch.float64),
        ]).tolist()
        if not 0 <= wide_total <= MAX_WINDOW_ARRIVALS:  # negative: torch.poisson's int64 overflowed
            raise ValueError(
                f"rate and temperature too large for EAT: this draw has "
                f"{'more than 2**63' if wide_total < 0 else f'{wide_total:.3g}'} arrivals in the "
                f"soft window (about rate x (1 + {half_width:g} temperature) per element), more than "
                f"the {MAX_WINDOW_ARRIVALS:.3g} the sampler simulates (its work grows like rate x "
                "temperature); lower the temperature or the rate")
        total, same_tau, shared = int(total), bool(same_tau), bool(shared)
    # One temperature for the whole batch (the usual case): sum f'(x) t directly, one column less.
    scalar_tau = first_tau if (with_rate_grad and not with_temperature_grad and same_tau) else None
    columns = ["value"] * with_relaxed + ["hard"] * with_hard
    if scalar_tau is not None:
        columns.append("slope_t")
    elif with_rate_grad or with_temperature_grad:
        columns += ["slope", "slope_x"]
    sums = {c: torch.zeros_like(rate) for c in columns}
    if total:
        span = None if shared else left + half_width
        starts = ends - counts
        if total <= chunk:  # one slice holds every arrival: no slice bookkeeping, no further sync
            plan = [(0, 0, n - 1)]
        else:
            slices = torch.arange(0, total, chunk, device=device)
            first = torch.searchsorted(ends, slices, right=True)
            last = torch.searchsorted(ends, (slices + chunk).clamp(max=total) - 1, right=True)
            plan = torch.stack([slices, first, last], 1).tolist()
        uniform = torch.empty(min(chunk, total), dtype=dtype, device=device)
        for start, i0, i1 in plan:
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
                assert span is not None  # set whenever some window is clipped (not shared)
                size = stop - start
                x = torch.repeat_interleave(span[owners], lengths, output_size=size).mul_(u).neg_()
                x += torch.repeat_interleave(left[owners], lengths, output_size=size)
            terms = _window_columns(indicator, u, x, columns, scalar_tau)
            for name, values in terms.items():
                sums[name][owners] += _segment_sum(values, lengths)
    relaxed: Optional[torch.Tensor] = None
    hard: Optional[torch.Tensor] = None
    if before is not None:  # drawn exactly when a value (relaxed or hard) is wanted
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


# ----------------------------------------------------------------------------- the opaque operator

def check_rate_temperature(rate: torch.Tensor, temperature: torch.Tensor) -> None:
    """``ValueError`` naming the argument unless rate is finite, >= 0 and below
    :func:`~hitchhiker._validation.max_rate` and temperature finite and > 0."""
    check_rate(rate)
    check_param(finite_positive, temperature, "temperature", "finite and > 0")


def _eat_sample_impl(rate, temperature, indicator: str, hard: bool, want_rate: bool,
                     want_tau: bool, check: bool):
    """(value, d_rate, d_tau) of the shape of ``rate``; an unwanted derivative is an empty tensor.

    ``check`` runs :func:`check_rate_temperature` first: the distribution's argument checks, when
    they could not run at construction (under ``torch.compile`` or on a ``vmap``-batched rate).
    """
    if check:
        check_rate_temperature(rate, temperature)
    shape = rate.shape
    relaxed, counts, d_rate, d_tau = eat_pathwise(
        rate.reshape(-1), temperature.reshape(-1), INDICATORS[indicator],
        with_temperature_grad=want_tau, with_rate_grad=want_rate,
        with_relaxed=not hard, with_hard=hard,
    )
    value = (counts if hard else relaxed).reshape(shape)
    # Distinct empty tensors: a custom op's outputs may not alias each other.
    return (value, rate.new_empty((0,)) if d_rate is None else d_rate.reshape(shape),
            rate.new_empty((0,)) if d_tau is None else d_tau.reshape(shape))


_SCHEMA = ("(Tensor rate, Tensor temperature, str indicator, bool hard, bool want_rate, "
           "bool want_tau, bool check) -> (Tensor, Tensor, Tensor)")

if hasattr(torch.library, "custom_op") and hasattr(torch.library, "register_fake"):  # torch >= 2.4
    _eat_sample = torch.library.custom_op("hitchhiker::eat_sample", _eat_sample_impl,
                                          mutates_args=(), schema=_SCHEMA)

    @_eat_sample.register_fake
    def _(rate, temperature, indicator, hard, want_rate, want_tau, check):
        # Shapes only (for torch.compile): everything is elementwise in the rate's shape.
        def like(wanted):
            return torch.empty_like(rate) if wanted else rate.new_empty((0,))
        return torch.empty_like(rate), like(want_rate), like(want_tau)
else:  # torch 2.2 / 2.3: keep dynamo out of the data-dependent loop (one graph break)
    _eat_sample = torch.compiler.disable(_eat_sample_impl)


# ----------------------------------------------------------------------------- autograd

_SECOND_ORDER = (
    "RelaxedPoisson: second derivatives of an EAT sample are not implemented (the pathwise "
    "derivative dz/d{name} depends on rate and temperature, and its own derivative is not "
    "computed), so {how} is refused rather than silently wrong. First-order gradients "
    "(backward, torch.autograd.grad, torch.func.grad/jacrev, jvp) work; for a Hessian of a "
    "loss, use finite differences of first-order gradients with a fixed seed, or the "
    "score-function estimator."
)


class NoSecondOrder(torch.autograd.Function):
    r"""Identity on a pathwise derivative :math:`D(\lambda, \tau)` whose own derivatives are refused.

    ``NoSecondOrder.apply(d, rate, temperature, name)`` returns a copy of ``d`` (``name``, the
    parameter ``d`` is a derivative with respect to, goes into the message). ``rate`` and
    ``temperature`` are inputs only to record the dependence :math:`D = D(\lambda, \tau)`: any
    reverse- or forward-mode derivative through it (a second derivative of the sample) raises
    ``RuntimeError``. It is only on the graph when one is being built (``create_graph=True``,
    ``torch.func``) or in forward mode, so plain ``backward()`` pays nothing for it.
    """

    generate_vmap_rule = True  # torch.func.jacrev vmaps the backward pass through this function

    @staticmethod
    def forward(d, rate, temperature, name):
        return d.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.name = inputs[3]

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError(_SECOND_ORDER.format(name=ctx.name, how="differentiating a gradient "
                                                "of the sample (double backward / hessian)"))

    @staticmethod
    def jvp(ctx, *tangents):
        raise RuntimeError(_SECOND_ORDER.format(name=ctx.name, how="forward mode through a "
                                                "derivative of the sample (forward-over-reverse "
                                                "or forward-over-forward, e.g. torch.func.hessian)"))


def _guard(d, rate, temperature, name):
    """``d`` with its dependence on (rate, temperature) recorded, so that differentiating it raises."""
    return NoSecondOrder.apply(d, rate, temperature, name)


class _EATSampleBase(torch.autograd.Function):
    """Forward, context and backward of :class:`EATSample` (what ``torch.compile`` traces)."""

    @staticmethod
    def forward(rate, temperature, indicator, hard, want_rate, want_tau, check):
        # The operator only matters to dynamo; eagerly, calling it would import torch._dynamo
        # (and SymPy) on first use, ~1.3 s, so eager code calls the kernel itself.
        kernel = _eat_sample if _is_compiling() else _eat_sample_impl
        return kernel(rate, temperature, indicator, hard, want_rate, want_tau, check)

    @staticmethod
    def setup_context(ctx, inputs, output):
        rate, temperature, _, _, want_rate, want_tau, _ = inputs
        _, d_rate, d_tau = output
        ctx.mark_non_differentiable(d_rate, d_tau)
        ctx.want = (want_rate, want_tau)
        ctx.save_for_backward(rate, temperature, d_rate, d_tau)
        ctx.save_for_forward(rate, temperature, d_rate, d_tau)

    @staticmethod
    def backward(ctx, grad, _grad_d_rate, _grad_d_tau):
        rate, temperature, d_rate, d_tau = ctx.saved_tensors
        # Under create_graph (and torch.func), the product below is itself differentiable: route
        # the derivative through NoSecondOrder so that differentiating it raises.
        guard = torch.is_grad_enabled()
        grad_rate = grad_tau = None
        if ctx.needs_input_grad[0]:
            if not ctx.want[0]:
                raise RuntimeError("EATSample: the rate derivative was not computed in forward")
            grad_rate = grad * (_guard(d_rate, rate, temperature, "rate") if guard else d_rate)
        if ctx.needs_input_grad[1]:
            if not ctx.want[1]:
                raise RuntimeError("EATSample: the temperature derivative was not computed in "
                                   "forward")
            grad_tau = grad * (_guard(d_tau, rate, temperature, "temperature") if guard else d_tau)
        return grad_rate, grad_tau, None, None, None, None, None


class EATSample(_EATSampleBase):
    r"""An EAT sample with its pathwise derivatives: O(1) numbers per element kept for backward.

    ``EATSample.apply(rate, temperature, indicator, hard, want_rate, want_tau, check)`` returns
    ``(value, d_rate, d_tau)``; only ``value`` is differentiable. Nothing of the arrivals is kept:
    backward returns :math:`g\,\partial\tilde z/\partial\lambda` and
    :math:`g\,\partial\tilde z/\partial\tau`, ``jvp`` returns
    :math:`\partial_\lambda\tilde z\,\dot\lambda + \partial_\tau\tilde z\,\dot\tau`, both for the
    very sample drawn in forward. Second derivatives are refused (:class:`NoSecondOrder`).
    """

    @staticmethod
    def jvp(ctx, rate_tangent, tau_tangent, *_):
        rate, temperature, d_rate, d_tau = ctx.saved_tensors
        tangent = None
        for wanted, d, t, name in ((ctx.want[0], d_rate, rate_tangent, "rate"),
                                   (ctx.want[1], d_tau, tau_tangent, "temperature")):
            # An argument without a tangent of its own gets None (forward_ad) or zeros (torch.func:
            # `_differentiated` saw no tangent, so it is structurally zero): it contributes nothing.
            if t is None or not wanted:
                continue
            term = _guard(d, rate, temperature, name) * t
            tangent = term if tangent is None else tangent + term
        return tangent, None, None

    @staticmethod
    def vmap(info, in_dims, rate, temperature, indicator, hard, want_rate, want_tau, check):
        # Elementwise sampler: draw the whole physical (batched) tensor at once.
        rate_dim, tau_dim = in_dims[0], in_dims[1]
        batched = rate_dim is not None or tau_dim is not None
        if info.randomness == "error":
            raise RuntimeError(
                "RelaxedPoisson.rsample draws random numbers, which vmap refuses by default: call "
                "torch.func.vmap(..., randomness='different') for independent draws per batch "
                "element (or randomness='same' for one draw shared by all, unbatched rate only)")
        if info.randomness == "same":
            if batched:
                raise RuntimeError(
                    "RelaxedPoisson.rsample under vmap(randomness='same') with a batched rate or "
                    "temperature: one shared draw cannot serve different rates; use "
                    "randomness='different'")
            return (EATSample.apply(rate, temperature, indicator, hard, want_rate, want_tau, check),
                    (None, None, None))
        size = info.batch_size
        rate = rate.movedim(rate_dim, 0) if rate_dim is not None else rate.expand(size, *rate.shape)
        temperature = (temperature.movedim(tau_dim, 0) if tau_dim is not None
                       else temperature.expand(size, *temperature.shape))
        rate, temperature = torch.broadcast_tensors(rate, temperature)
        out = EATSample.apply(rate, temperature, indicator, hard, want_rate, want_tau, check)
        return out, (0, 0 if want_rate else None, 0 if want_tau else None)


class _EATSampleCompiled(_EATSampleBase):
    """:class:`EATSample` as ``torch.compile`` sees it: no ``jvp``/``vmap`` (dynamo refuses a custom jvp)."""


def _is_compiling() -> bool:
    check = getattr(torch.compiler, "is_compiling", None)  # torch >= 2.3
    if check is None:
        check = torch._dynamo.is_compiling
    return bool(check())


def _functorch_wrappers(t: torch.Tensor):
    """``t`` and the tensors it wraps, outermost first (torch.func transforms wrap one per level)."""
    functorch = getattr(torch._C, "_functorch", None)
    yield t
    while functorch is not None and functorch.is_functorch_wrapped_tensor(t):
        t = functorch.get_unwrapped(t)
        yield t


def _differentiated(t: torch.Tensor) -> bool:
    """Will anything ask for d(sample)/d``t``: reverse mode (incl. torch.func.grad) or forward mode?"""
    if not torch.is_grad_enabled() and fwAD._current_level < 0:
        return False
    if _is_compiling():  # dynamo cannot trace the functorch queries; no transforms inside anyway
        return t.requires_grad
    # Under torch.func.grad inside vmap, only the grad level's wrapper (below the batching wrapper)
    # says requires_grad; under torch.func.jvp / forward_ad, a tangent at the current level.
    for wrapper in _functorch_wrappers(t):
        if torch.is_grad_enabled() and wrapper.requires_grad:
            return True
    return fwAD._current_level >= 0 and fwAD.unpack_dual(t).tangent is not None


def _under_vmap() -> bool:
    """Is a torch.func.vmap transform active (at any level)?"""
    functorch = getattr(torch._C, "_functorch", None)
    if functorch is None or not hasattr(functorch, "get_interpreter_stack") or _is_compiling():
        return False
    stack = functorch.get_interpreter_stack() or ()
    return any(level.key() == functorch.TransformType.Vmap for level in stack)


def eat_rsample(rate: torch.Tensor, temperature: torch.Tensor, indicator: Indicator,
                hard: bool = False, check: bool = False) -> torch.Tensor:
    """A differentiable EAT sample of ``rate``'s shape (``rate``, ``temperature`` of equal shape).

    Derivatives are computed in the kernel only for the arguments something differentiates.
    ``hard=True`` returns the exact count of the same arrivals with the relaxed derivatives
    (straight-through). ``check=True`` validates rate and temperature inside the operator.
    """
    want_rate, want_tau = _differentiated(rate), _differentiated(temperature)
    if _under_vmap():
        # vmap calls EATSample.vmap only for batched inputs; an unbatched rate would otherwise give
        # every batch element the same draw. Adding 0 * (a random scalar) makes the rate batched
        # exactly when vmap's randomness is 'different' ('same': one shared draw, as asked;
        # 'error': vmap refuses the random call, saying which flag to pass).
        rate = rate + 0 * torch.rand((), dtype=rate.dtype, device=rate.device)
    # Dynamo cannot trace an autograd.Function with a custom jvp (it would split the graph there);
    # forward mode does not exist inside a compiled region anyway, so trace the jvp-less base.
    function = _EATSampleCompiled if _is_compiling() else EATSample
    value, _, _ = function.apply(rate, temperature, indicator.name, bool(hard), want_rate, want_tau,
                                 bool(check))
    return value
