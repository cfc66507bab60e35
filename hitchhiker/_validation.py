"""Argument checks shared by every module: clear ``TypeError``/``ValueError``s naming the bad argument.

Conventions (one place, so every entry point refuses the same things the same way):

* a wrong *kind* of argument (a string where a bool is due, a complex or boolean tensor, a float
  ``n_categories``) raises ``TypeError``; a right kind with a wrong *value* (a negative rate, a shape
  or device mismatch, ``n_categories=0``) raises ``ValueError``; both name the argument;
* rates and temperatures are real numbers: Python numbers, numpy scalars/arrays and tensors are
  accepted; integer tensors are converted to the default float dtype (exactly, as Python ints are);
  boolean and complex inputs are refused (a complex rate would otherwise lose its imaginary part);
* flags such as ``hard`` must be ``bool`` (or ``numpy.bool_``); strings, ints and ``None`` are
  refused, since ``bool("no")`` is ``True``;
* counts such as ``n_categories`` accept any integral number (``int``, ``numpy.int64``, anything with
  ``__index__``), never ``bool`` or floats (``10.0`` is refused rather than silently truncated).
"""
from __future__ import annotations

import math
import numbers
import operator

import numpy as np
import torch
from torch.distributions import constraints


class _FiniteNonNegative(constraints.Constraint):
    """0 <= x < inf (NaN and inf are rejected, unlike ``constraints.nonnegative``)."""

    is_discrete = False
    event_dim = 0

    def check(self, value):
        return torch.isfinite(value) & (value >= 0)

    def __repr__(self):
        return "FiniteNonNegative()"


class _FinitePositive(constraints.Constraint):
    """0 < x < inf."""

    is_discrete = False
    event_dim = 0

    def check(self, value):
        return torch.isfinite(value) & (value > 0)

    def __repr__(self):
        return "FinitePositive()"


finite_nonnegative = _FiniteNonNegative()
finite_positive = _FinitePositive()

#: The largest rate any sampler accepts. ``torch.poisson`` returns its counts through int64, so a rate
#: of :math:`2^{63} \approx 9.22\times10^{18}` or more comes back as a negative count; 9.2e18 leaves room
#: for the fluctuations (:math:`\sqrt\lambda \approx 3\times10^9` there).
MAX_RATE = 9.2e18


def max_rate(dtype: torch.dtype) -> float:
    r"""The largest rate accepted in ``dtype``: :data:`MAX_RATE`, and for float16 the rate whose draws
    stay below float16's largest value 65504 with room to spare, :math:`\lambda + 10\sqrt\lambda + 10
    \le 65504`, i.e. about 62,960 (a larger rate is refused: its samples would overflow to ``inf``).
    """
    if dtype == torch.float16:
        top = torch.finfo(torch.float16).max
        root = (-10 + math.sqrt(100 + 4 * (top - 10))) / 2
        return root * root
    return MAX_RATE


def check_rate(rate: torch.Tensor, name: str = "rate") -> None:
    """``ValueError`` naming ``name`` unless every rate is finite, >= 0 and below :func:`max_rate`.

    One host read when the rates are fine; the message says which rule a bad value breaks.
    """
    value = rate.detach()
    limit = max_rate(value.dtype)
    valid = torch.isfinite(value) & (value >= 0)
    if bool((valid & (value < limit)).all()):
        return
    if not bool(valid.all()):
        bad = value[~valid].flatten()[:3].tolist()
        raise ValueError(f"{name} must be finite and >= 0; got invalid values such as {bad}")
    bad = value[value >= limit].flatten()[:3].tolist()
    why = ("its samples would overflow float16 (largest value 65504): pass the rate in float32"
           if value.dtype == torch.float16 else
           "torch.poisson draws counts through int64, which overflows at 2**63 ~ 9.22e18")
    raise ValueError(f"{name} must be below {limit:.6g} in {value.dtype} ({why}); got {bad}")


def check_sample_shape(sample_shape, name: str = "sample_shape") -> torch.Size:
    """``sample_shape`` as a ``torch.Size``; ``TypeError`` naming ``name`` for an int or anything else."""
    if isinstance(sample_shape, torch.Size):
        return sample_shape
    message = f"{name} must be a torch.Size or a tuple of ints, got {_kind(sample_shape)}"
    if isinstance(sample_shape, numbers.Integral) and not isinstance(sample_shape, bool):
        raise TypeError(f"{message} (pass ({sample_shape},))")
    if isinstance(sample_shape, (str, bytes, torch.Tensor)) or not hasattr(sample_shape, "__iter__"):
        raise TypeError(message)
    try:
        shape = torch.Size(sample_shape)
    except TypeError as err:
        raise TypeError(message) from err
    if any(size < 0 for size in shape):
        raise ValueError(f"{name} must not hold negative sizes, got {tuple(shape)}")
    return shape


_HALF = (torch.float16, torch.bfloat16)


def _kind(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor"
    return f"{type(value).__name__} {value!r}"


def as_float_tensor(value, name: str, like: torch.Tensor | None = None) -> torch.Tensor:
    """A real floating tensor from ``value``, else ``TypeError`` naming ``name``.

    Tensors and numpy arrays keep their float dtype (integers become the default float dtype);
    Python numbers take ``like``'s dtype (the default dtype when ``like`` is None); non-tensors go
    to ``like``'s device.
    Complex and boolean inputs are refused.
    """
    if isinstance(value, torch.Tensor):
        tensor = value
    else:
        if isinstance(value, (bool, str, bytes)) or value is None:
            raise TypeError(f"{name} must be a real number or a floating tensor, got {_kind(value)}")
        try:
            tensor = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"{name} must be a real number or a floating tensor, got "
                            f"{_kind(value)}") from err
        # A scalar (Python or numpy) takes ``like``'s dtype, as in torch.distributions; arrays keep theirs.
        if isinstance(value, numbers.Real) and like is not None:
            tensor = tensor.to(like.dtype)
        if like is not None:
            tensor = tensor.to(like.device)
    if tensor.is_complex():
        raise TypeError(f"{name} must be real, got {_kind(tensor)} (the imaginary part would be "
                        "dropped)")
    if tensor.dtype == torch.bool:
        raise TypeError(f"{name} must be a real number or a floating tensor, got {_kind(tensor)}")
    if not tensor.is_floating_point():  # integer tensor: exact conversion, as for Python ints
        tensor = tensor.to(torch.get_default_dtype())
    return tensor


def check_bool(value, name: str) -> bool:
    """``value`` as a Python bool if it is a ``bool`` or ``numpy.bool_``, else ``TypeError``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    raise TypeError(f"{name} must be a bool (True or False), got {_kind(value)}")


def check_same_device(tensor: torch.Tensor, name: str, device: torch.device,
                      other: str = "rate") -> torch.Tensor:
    """``tensor`` on ``device``: a 0-dim CPU tensor (a scalar) is moved, anything else must match."""
    if tensor.device == device:
        return tensor
    if tensor.dim() == 0 and tensor.device.type == "cpu":
        return tensor.to(device)
    raise ValueError(f"{name} is on {tensor.device} but {other} is on {device}; put both on the "
                     "same device")


def _broadcast_shapes(a, b):
    """NumPy broadcasting of two shapes, or None. (``torch.broadcast_shapes`` imports SymPy, ~1 s.)"""
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if x != y and x != 1 and y != 1:
            return None
        out.append(y if x == 1 else x)
    return torch.Size(reversed(out))


def broadcast_pair(rate: torch.Tensor, temperature: torch.Tensor, rate_name: str = "rate"):
    """Broadcast rate and temperature, raising ``ValueError`` (not RuntimeError) on a mismatch."""
    shape = _broadcast_shapes(rate.shape, temperature.shape)
    if shape is None:
        raise ValueError(
            f"{rate_name} of shape {tuple(rate.shape)} and temperature of shape "
            f"{tuple(temperature.shape)} cannot be broadcast together"
        ) from None
    temperature = check_same_device(temperature, "temperature", rate.device, other=rate_name)
    dtype = torch.promote_types(rate.dtype, temperature.dtype)
    return rate.to(dtype).expand(shape), temperature.to(dtype).expand(shape)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Half-precision inputs are sampled in float32 (counts and arrival times need the mantissa)."""
    return torch.float32 if dtype in _HALF else dtype


def check_positive_int(value, name: str) -> int:
    """A positive integer from any integral number (``operator.index``); ``bool`` and floats refused.

    ``TypeError`` for a non-integral type, ``ValueError`` for ``value < 1``; both name ``name``.
    """
    if isinstance(value, (bool, np.bool_)) or not (isinstance(value, numbers.Integral)
                                       or hasattr(type(value), "__index__")):
        raise TypeError(f"{name} must be a positive integer, got {_kind(value)}")
    try:
        out = operator.index(value)
    except TypeError as err:  # e.g. a tensor with more than one element
        raise TypeError(f"{name} must be a positive integer, got {_kind(value)}") from err
    if isinstance(value, torch.Tensor) and value.dtype == torch.bool:
        raise TypeError(f"{name} must be a positive integer, got {_kind(value)}")
    if out < 1:
        raise ValueError(f"{name} must be a positive integer, got {out}")
    return out


def check_n_categories(n_categories) -> int:
    """A GSM truncation ``K``: a positive integer (see :func:`check_positive_int`)."""
    return check_positive_int(n_categories, "n_categories")


def check_param(constraint, value: torch.Tensor, name: str, requirement: str) -> None:
    """Raise ``ValueError`` naming the argument when ``value`` violates ``constraint``."""
    ok = constraint.check(value.detach())
    if not bool(ok.all()):
        bad = value.detach()[~ok].flatten()[:3].tolist()
        raise ValueError(f"{name} must be {requirement}; got invalid values such as {bad}")


def real_tensor(value, name: str, device=None, expected: str = "a real tensor or numbers") -> torch.Tensor:
    """``value`` as a real (not complex or boolean) tensor, or ``TypeError`` naming ``name``.

    A tensor passes through as it is; anything else goes through :func:`torch.as_tensor` (on ``device``),
    and what cannot be converted is refused as not ``expected``.
    """
    if not torch.is_tensor(value):
        try:
            value = torch.as_tensor(value, device=device)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"{name} must be {expected}, got {type(value).__name__}") from err
    if value.is_complex() or value.dtype == torch.bool:
        raise TypeError(f"{name} must be real, got a {value.dtype} tensor")
    return value
