"""Matched fidelity (hitchhiker.matching): the temperature for a target variance ratio, against Campbell.

Library-only: torch and numpy. The closed forms used as references here are written out independently
(the ramps' 1 - c tau, the linear ramp's wide branch, the sigmoid with math.exp), not taken from the module.
"""
import doctest
import math
import warnings

import pytest
import torch

import hitchhiker.matching
from hitchhiker import (
    RelaxedPoisson,
    relaxed_mean,
    relaxed_variance,
    temperature_for_variance_ratio,
    variance_ratio,
)
from hitchhiker.estimators import EAT_METHODS
from hitchhiker.matching import turning_point

F64 = torch.float64
#: Var/lambda = 1 - c tau for tau <= 1.
DEFICIT = {"eat-linear": 1 / 3, "eat-cubic": 9 / 35, "eat-quintic": 50 / 231, "eat-cosine": 1 / 4}
RATES = torch.logspace(-1, 2, 7, dtype=F64)  # 0.1 ... 100


def solve(method, r, rate=1.0, **kwargs):
    r = torch.as_tensor(r, dtype=F64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return temperature_for_variance_ratio(method, r, torch.as_tensor(rate, dtype=F64), **kwargs)


def sigmoid_ratio(tau):
    """Var/lambda of the sigmoid, 1 + tau softplus(-1/tau) - tau sigma(1/tau), with math only."""
    return 1 + tau * math.log1p(math.exp(-1 / tau)) - tau / (1 + math.exp(-1 / tau))


def test_doctests_run():
    result = doctest.testmod(hitchhiker.matching, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 6 and result.failed == 0


@pytest.mark.parametrize("method", EAT_METHODS)
def test_round_trip_against_campbell_over_rates_and_targets(method):
    tau_star, r_min = turning_point(method)
    targets = torch.cat([torch.linspace(r_min, 0.999, 41, dtype=F64),
                         torch.tensor([r_min + 1e-12, 1 - 1e-6, 1 - 1e-12], dtype=F64)])
    tau = solve(method, targets[:, None], RATES[None, :], biased_mean="ignore")
    assert tau.shape == (targets.numel(), RATES.numel()) and tau.dtype == F64
    achieved = relaxed_variance(RATES[None, :], tau, method[4:]) / RATES[None, :]
    assert (achieved - targets[:, None]).abs().max().item() < 1e-10
    # On the decreasing branch, and the same at every rate (Campbell's ratio does not depend on it).
    assert (tau > 0).all() and (tau <= tau_star * (1 + 1e-12)).all()
    assert (tau == tau[:, :1]).all()


@pytest.mark.parametrize("method", EAT_METHODS)
def test_variance_ratio_decreases_up_to_the_turning_point_and_rises_after(method):
    """The monotonicity the solve relies on, by finite differences of relaxed_variance (no autograd)."""
    tau_star, r_min = turning_point(method)
    grid = torch.logspace(-6, math.log10(tau_star), 20001, dtype=F64)
    r = relaxed_variance(1.0, grid, method[4:])
    assert (r.diff() < 0).all()
    after = relaxed_variance(1.0, torch.linspace(tau_star, 50 * tau_star, 2001, dtype=F64), method[4:])
    assert (after.diff() > 0).all()
    assert r.min().item() == pytest.approx(r_min, abs=1e-12) and after.min().item() >= r_min - 1e-15
    assert 0.55 < r_min < 0.6


def test_smallest_root_is_returned():
    """A ratio in (r_min, 1) is reached twice; the smaller temperature is the answer."""
    tau_star, _ = turning_point("eat-cubic")
    r = relaxed_variance(1.0, torch.tensor(3 * tau_star, dtype=F64), "cubic")
    assert r < 1
    tau = solve("eat-cubic", r)
    assert tau < tau_star and relaxed_variance(1.0, tau, "cubic").item() == pytest.approx(r.item(), abs=1e-14)


def test_linear_turning_point_in_closed_form():
    """For tau > 1 the linear ramp has r = (tau + 1)^3 / (12 tau^2): minimum 9/16 at tau = 2."""
    tau_star, r_min = turning_point("eat-linear")
    assert tau_star == pytest.approx(2.0, rel=1e-12) and r_min == pytest.approx(9 / 16, rel=1e-15)


def test_wide_branch_against_the_linear_closed_form():
    taus = torch.linspace(1.0, 2.0, 21, dtype=F64)[1:-1]
    targets = (taus + 1) ** 3 / (12 * taus**2)
    assert torch.allclose(solve("eat-linear", targets), taus, rtol=1e-12, atol=0)


@pytest.mark.parametrize("method", sorted(DEFICIT))
def test_closed_form_inverse_on_the_narrow_branch(method):
    """tau = (1 - r) / c for r >= 1 - c; for the cubic tau = 35 (1 - r) / 9."""
    c = DEFICIT[method]
    targets = torch.linspace(1 - c, 1 - 1e-9, 101, dtype=F64)
    tau = solve(method, targets)
    assert torch.allclose(tau, (1 - targets) / c, rtol=1e-13, atol=0)
    assert (tau <= 1).all()


def test_cubic_closed_form_values():
    r = torch.tensor([1 - 9 * 0.1 / 35, 1 - 9 * 0.5 / 35, 26 / 35], dtype=F64)
    assert torch.allclose(solve("eat-cubic", r), 35 * (1 - r) / 9, rtol=1e-14, atol=0)
    assert torch.allclose(solve("eat-cubic", r), torch.tensor([0.1, 0.5, 1.0], dtype=F64), rtol=1e-14)


def test_the_sigmoid_against_an_independent_formula():
    for r in (0.6, 0.75, 0.9, 0.99, 1 - 1e-8):
        tau = solve("eat-sigmoid", r).item()
        assert sigmoid_ratio(tau) == pytest.approx(r, abs=1e-13)
        assert tau >= 1 - r  # r(tau) >= 1 - tau


def test_matched_fidelity_example_of_issue_28():
    """The cubic at tau = 0.5 has ratio 61/70 = 0.8714; the temperatures that match it are the same at
    every rate: sigmoid 0.1287 (at the issue's 0.15 the sigmoid's ratio is 0.8504, not 0.86), linear 27/70,
    quintic 0.594, cosine 18/35."""
    rates = torch.tensor([2.0, 20.0, 100.0], dtype=F64)
    r = variance_ratio("eat-cubic", torch.tensor(0.5, dtype=F64), rates)
    assert torch.allclose(r, torch.full_like(rates, 61 / 70), rtol=1e-15)
    expected = {"eat-cubic": 0.5, "eat-linear": 27 / 70, "eat-quintic": 0.594, "eat-cosine": 18 / 35}
    for method, tau in expected.items():
        assert torch.allclose(solve(method, r, rates), torch.full_like(rates, tau), rtol=1e-13)
    tau_sigmoid = solve("eat-sigmoid", r, rates)
    assert torch.allclose(tau_sigmoid, tau_sigmoid[:1], rtol=1e-14) and 0.1286 < tau_sigmoid[0] < 0.1288
    assert sigmoid_ratio(tau_sigmoid[0].item()) == pytest.approx(61 / 70, abs=1e-13)
    assert sigmoid_ratio(0.15) == pytest.approx(0.85038, abs=1e-5)
    # "The cubic at tau = 2 has mean 1.055 lambda and variance 0.590 lambda" (Campbell): v = 1/tau = 1/2,
    # tau P_2(v) = 2 (1 + v)^5 (5 v^2 - 25 v + 33) / 560, mean 135/128.
    two = torch.tensor(2.0, dtype=F64)
    assert relaxed_mean(1.0, two, "cubic").item() == pytest.approx(135 / 128, rel=1e-15)
    wide = 2 * 1.5**5 * (5 * 0.25 - 12.5 + 33) / 560
    assert variance_ratio("eat-cubic", two, 1.0).item() == pytest.approx(wide, rel=1e-14)
    assert solve("eat-cubic", wide).item() == pytest.approx(2.0, rel=1e-12)


def test_dtype_shape_and_device_follow_the_inputs():
    tau = temperature_for_variance_ratio("eat-cubic", 0.9, torch.ones(3, 1))
    assert tau.shape == (3, 1) and tau.dtype == torch.float32
    assert temperature_for_variance_ratio("eat-cubic", 0.9, 5.0).shape == ()
    tau = temperature_for_variance_ratio("eat-sigmoid", torch.tensor([0.7, 0.8]), torch.ones(3, 1))
    assert tau.shape == (3, 2)
    assert temperature_for_variance_ratio("eat-cubic", torch.tensor(0.9, dtype=F64), 2).dtype == F64
    assert temperature_for_variance_ratio("eat-cubic", 0.9, torch.tensor(2.0, dtype=F64)).dtype == F64


def test_biased_mean_flag():
    r = torch.tensor(0.65, dtype=F64)  # below the cubic's 1 - 9/35: tau > 1
    with pytest.warns(UserWarning, match=r"mean is no longer the rate: up to 1\.0"):
        tau = temperature_for_variance_ratio("eat-cubic", r, 3.0)
    assert tau > 1
    with pytest.raises(ValueError, match="biased_mean"):
        temperature_for_variance_ratio("eat-cubic", r, 3.0, biased_mean="error")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert temperature_for_variance_ratio("eat-cubic", r, 3.0, biased_mean="ignore") == tau
        temperature_for_variance_ratio("eat-cubic", 0.8, 3.0)  # tau <= 1: exact mean, no warning
        temperature_for_variance_ratio("eat-sigmoid", r, 3.0)  # the sigmoid is not warned about
        temperature_for_variance_ratio("eat-cubic", 0.8, 3.0, biased_mean="error")
    with pytest.raises(ValueError, match="biased_mean must be one of"):
        temperature_for_variance_ratio("eat-cubic", 0.8, 3.0, biased_mean="raise")
    with pytest.raises(TypeError, match="biased_mean"):
        temperature_for_variance_ratio("eat-cubic", 0.8, 3.0, biased_mean=False)


@pytest.mark.parametrize("function", [temperature_for_variance_ratio, variance_ratio])
def test_methods_without_a_closed_form_ratio_are_refused(function):
    with pytest.raises(ValueError, match=r"method='gsm'.*Monte Carlo"):
        function("gsm", 0.8, 2.0)
    for method in ("st-cubic", "st-sigmoid", "score"):
        with pytest.raises(ValueError, match=rf"method='{method}' has no temperature-dependent.*exact"):
            function(method, 0.8, 2.0)
    with pytest.raises(ValueError, match="method='exact' draws no sample"):
        function("exact", 0.8, 2.0)
    for method in ("cubic", "EAT-cubic", "eat_cubic", ""):
        with pytest.raises(ValueError, match=rf"method={method!r} is not one of"):
            function(method, 0.8, 2.0)
    for method in (None, 3, ["eat-cubic"]):
        with pytest.raises(TypeError, match="method must be a method name"):
            function(method, 0.8, 2.0)
    with pytest.raises(TypeError, match="method must be"):
        turning_point(["eat-cubic"])


@pytest.mark.parametrize("method", EAT_METHODS)
def test_ratio_outside_the_achievable_range_names_the_range(method):
    _, r_min = turning_point(method)
    for bad in (1.0, 1.2, r_min - 1e-6, 0.3, 0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match=rf"variance_ratio must lie in \[{r_min:.6g}, 1\) for method"):
            temperature_for_variance_ratio(method, torch.tensor(bad, dtype=F64), 2.0)
    with pytest.raises(ValueError, match=r"such as \[0\.3\]"):
        temperature_for_variance_ratio(method, torch.tensor([0.8, 0.3], dtype=F64), 2.0)


@pytest.mark.parametrize("rate", [0.0, -1.0, math.nan, math.inf, torch.tensor([1.0, 0.0])])
def test_bad_rate_values(rate):
    with pytest.raises(ValueError, match="rate must be finite and > 0"):
        temperature_for_variance_ratio("eat-cubic", 0.8, rate)
    with pytest.raises(ValueError, match="rate must be finite and > 0"):
        variance_ratio("eat-cubic", 0.5, rate)


def test_wrong_types_and_shapes():
    for bad in ("0.8", True, None, 0.8 + 0j, torch.tensor([True])):
        with pytest.raises(TypeError, match="variance_ratio must be"):
            temperature_for_variance_ratio("eat-cubic", bad, 2.0)
        with pytest.raises(TypeError, match="rate must be"):
            temperature_for_variance_ratio("eat-cubic", 0.8, bad)
        with pytest.raises(TypeError, match="temperature must be"):
            variance_ratio("eat-cubic", bad, 2.0)
    with pytest.raises(ValueError, match="variance_ratio of shape"):
        temperature_for_variance_ratio("eat-cubic", torch.full((2,), 0.8), torch.ones(3))
    with pytest.raises(ValueError, match="temperature of shape"):
        variance_ratio("eat-cubic", torch.full((2,), 0.5), torch.ones(3))
    with pytest.raises(ValueError, match="temperature must be"):
        variance_ratio("eat-cubic", -0.5, 2.0)


def variance_z_scores(method, tau, rates, target, n=100_000):
    """(sample Var/lambda - target) / its Monte Carlo standard error, for RelaxedPoisson draws at tau."""
    z = RelaxedPoisson(rates, tau, indicator=method[4:]).rsample((n,))
    centred = z - z.mean(0)
    s2 = centred.pow(2).mean(0) * n / (n - 1)
    se = ((centred.pow(4).mean(0) - s2**2) / n).sqrt()
    return (s2 - target * rates) / se


@pytest.mark.parametrize("method", EAT_METHODS)
def test_samples_at_the_returned_temperature_have_the_target_variance(method):
    """RelaxedPoisson draws at the matched tau: Var/lambda within 4 Monte Carlo standard errors, on both
    branches (0.9: tau < 1; 0.65: tau > 1 for the ramps)."""
    torch.manual_seed(28)
    rates = torch.tensor([0.5, 5.0, 50.0], dtype=F64)
    for target in (0.9, 0.65):
        z_scores = variance_z_scores(method, solve(method, target, rates), rates, target)
        assert z_scores.abs().max().item() < 4, (method, target, z_scores.tolist())


@pytest.mark.parametrize("method", ["eat-cubic", "eat-sigmoid"])
def test_the_monte_carlo_check_sees_a_temperature_20_percent_off(method):
    torch.manual_seed(28)
    rates = torch.tensor([0.5, 5.0, 50.0], dtype=F64)
    z_scores = variance_z_scores(method, 1.2 * solve(method, 0.9, rates), rates, 0.9)
    assert z_scores.abs().max().item() > 4, z_scores.tolist()
