"""Argument checks shared by the samplers: clear ``ValueError``s that name the bad argument."""
from __future__ import annotations

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

_HALF = (torch.float16, torch.bfloat16)


def as_float_tensor(value, name: str, like: torch.Tensor | None = None) -> torch.Tensor:
    """Convert to a floating tensor (on ``like``'s device) or raise ``ValueError`` naming ``name``."""
    if isinstance(value, torch.Tensor):
        if not (value.is_floating_point()):
            value = value.to(torch.get_default_dtype() if like is None else like.dtype)
        return value
    try:
        kwargs = {} if like is None else {"dtype": like.dtype, "device": like.device}
        out = torch.as_tensor(value, **kwargs)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{name} must be a number or a tensor, got {type(value).__name__}") from err
    return out if out.is_floating_point() else out.to(torch.get_default_dtype())


def broadcast_pair(rate: torch.Tensor, temperature: torch.Tensor):
    """Broadcast rate and temperature, raising ``ValueError`` (not RuntimeError) on a mismatch."""
    try:
        shape = torch.broadcast_shapes(rate.shape, temperature.shape)
    except RuntimeError:
        raise ValueError(
            f"rate of shape {tuple(rate.shape)} and temperature of shape "
            f"{tuple(temperature.shape)} cannot be broadcast together"
        ) from None
    if rate.device != temperature.device:
        temperature = temperature.to(rate.device)
    dtype = torch.promote_types(rate.dtype, temperature.dtype)
    return rate.to(dtype).expand(shape), temperature.to(dtype).expand(shape)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Half-precision inputs are sampled in float32 (counts and arrival times need the mantissa)."""
    return torch.float32 if dtype in _HALF else dtype


def check_n_categories(n_categories) -> int:
    """A GSM truncation ``K``: a positive Python integer, else ``ValueError`` naming ``n_categories``."""
    if isinstance(n_categories, bool) or not isinstance(n_categories, int) or n_categories < 1:
        raise ValueError(f"n_categories must be a positive integer, got {n_categories!r}")
    return n_categories


def check_param(constraint, value: torch.Tensor, name: str, requirement: str) -> None:
    """Raise ``ValueError`` naming the argument when ``value`` violates ``constraint``."""
    ok = constraint.check(value.detach())
    if not bool(ok.all()):
        bad = value.detach()[~ok].flatten()[:3].tolist()
        raise ValueError(f"{name} must be {requirement}; got invalid values such as {bad}")
