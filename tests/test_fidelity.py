"""Fidelity experiments: statistics, grid, Campbell agreement, the fixed-cap teaching sampler."""
import math

import pytest
import torch

from hitchhiker.book.fidelity.sweep import (
    PAPER_RATES,
    PAPER_TEMPERATURES,
    campbell_ratios,
    draw_relaxed,
    fidelity_from_samples,
    fidelity_grid,
    fixed_cap_eat,
    fixed_cap_n_arrivals,
    measure_fidelity,
    time_rsample,
    truncated_poisson_moments,
)


def test_paper_grid_is_13_by_11():
    assert len(PAPER_RATES) == 13 and len(PAPER_TEMPERATURES) == 11
    assert PAPER_TEMPERATURES[0] == 0.02 and PAPER_TEMPERATURES[-1] == 0.5


def test_fidelity_from_samples_of_exact_poisson():
    exact = torch.poisson(torch.full((20, 4000), 9.0, dtype=torch.float64))
    same = fidelity_from_samples(exact, exact, 9.0)
    assert same["w1"] == 0.0 and same["w1_se"] == 0.0
    other = torch.poisson(torch.full((20, 4000), 9.0, dtype=torch.float64))
    stats = fidelity_from_samples(other, exact, 9.0)
    for key in ("mean_ratio", "var_ratio"):
        assert abs(stats[key] - 1.0) < 4 * stats[f"{key}_se"]
    assert stats["w1_normalised"] == pytest.approx(stats["w1"] / 3.0)
    shifted = fidelity_from_samples(exact + 0.5, exact, 9.0)
    assert shifted["w1"] == pytest.approx(0.5)
    assert shifted["mean_ratio"] == pytest.approx(exact.mean().item() / 9.0 + 0.5 / 9.0)


def test_fidelity_from_samples_validates_shapes():
    with pytest.raises(ValueError, match="n_trials, n_samples"):
        fidelity_from_samples(torch.ones(10), torch.ones(10), 1.0)
    with pytest.raises(ValueError, match="n_trials"):
        fidelity_from_samples(torch.ones(1, 10), torch.ones(1, 10), 1.0)


@pytest.mark.parametrize("method", ["eat-cubic", "eat-sigmoid"])
@pytest.mark.parametrize("rate,tau", [(2.0, 0.5), (30.0, 0.2)])
def test_eat_moments_agree_with_campbell(method, rate, tau):
    stats = measure_fidelity(method, rate, tau, n_samples=2000, n_trials=20)
    mean_theory, var_theory = campbell_ratios(method, tau)
    assert abs(stats["mean_ratio"] - mean_theory) < 4 * stats["mean_ratio_se"]
    assert abs(stats["var_ratio"] - var_theory) < 4 * stats["var_ratio_se"]
    assert stats["var_ratio_se"] < 0.05  # the check has power: var_theory is < 0.95 here
    assert var_theory < 1 - 5 * stats["var_ratio_se"]


def test_relaxation_is_further_from_poisson_at_higher_temperature():
    cold = measure_fidelity("eat-sigmoid", 20.0, 0.05, n_samples=2000, n_trials=5)
    hot = measure_fidelity("eat-sigmoid", 20.0, 0.5, n_samples=2000, n_trials=5)
    assert hot["w1_normalised"] > cold["w1_normalised"] + 5 * (hot["w1_normalised_se"] + cold["w1_normalised_se"])


def test_campbell_ratios():
    assert campbell_ratios("eat-cubic", 0.35) == pytest.approx((1.0, 1 - 9 * 0.35 / 35))
    assert all(math.isnan(v) for v in campbell_ratios("gsm", 0.1))
    with pytest.raises(ValueError, match="method"):
        campbell_ratios("score", 0.1)


def test_grid_columns_seeding_and_subgrid_reproducibility():
    grid = fidelity_grid(["eat-cubic", "gsm"], [1.0, 5.0], [0.1, 0.5], n_samples=200, n_trials=3)
    assert len(grid) == 8
    for column in ("method", "rate", "temperature", "mean_ratio", "var_ratio", "w1", "w1_normalised",
                   "mean_ratio_se", "var_ratio_se", "w1_se", "w1_normalised_se",
                   "mean_ratio_theory", "var_ratio_theory"):
        assert column in grid.columns
    assert grid.loc[grid.method == "gsm", "var_ratio_theory"].isna().all()
    assert grid.loc[grid.method == "eat-cubic", "mean_ratio_theory"].eq(1.0).all()
    single = fidelity_grid(["gsm"], [5.0], [0.5], n_samples=200, n_trials=3)
    row = grid[(grid.method == "gsm") & (grid.rate == 5.0) & (grid.temperature == 0.5)]
    assert row["w1"].item() == single["w1"].item()
    with pytest.raises(ValueError, match="method"):
        fidelity_grid(["eat-tanh"], [1.0], [0.1])


def test_gsm_draws_are_sliced_to_bound_memory(monkeypatch):
    import hitchhiker.book.fidelity.sweep as fid

    monkeypatch.setattr(fid, "_MAX_ELEMENTS", 1000)
    z = draw_relaxed("gsm", 20.0, 0.1, (7, 30))  # 30 samples x 42 categories > 1000 per slice
    assert z.shape == (7, 30) and torch.isfinite(z).all()


@pytest.mark.parametrize("kwargs,match", [
    ({"rate": 0.0}, "rate"), ({"rate": math.nan}, "rate"), ({"rate": "fast"}, "rate"), ({"temperature": -1.0}, "temperature"),
    ({"n_samples": 1}, "n_samples"), ({"n_trials": 1.5}, "n_trials"), ({"method": "score"}, "method"),
])
def test_measure_fidelity_validates(kwargs, match):
    args = {"method": "eat-cubic", "rate": 2.0, "temperature": 0.1, "n_samples": 10, "n_trials": 2}
    with pytest.raises(ValueError, match=match):
        measure_fidelity(**{**args, **kwargs})


def test_fixed_cap_budget_is_the_poisson_quantile():
    assert fixed_cap_n_arrivals(100.0) == 132  # scipy.stats.poisson.ppf(0.999, 100)
    assert fixed_cap_n_arrivals(1.0) == 5
    with pytest.raises(ValueError, match="rate_max"):
        fixed_cap_n_arrivals(0.0)
    with pytest.raises(ValueError, match="tail"):
        fixed_cap_n_arrivals(10.0, tail=0.0)


def test_fixed_cap_eat_is_biased_where_ours_is_not():
    """The teaching sampler drops arrivals in (1, 1 + tau]: its mean falls below Campbell's lambda."""
    z = fixed_cap_eat(torch.tensor(100.0, dtype=torch.float64), 0.5, (20_000,))
    mean, se = z.mean().item(), (z.std() / math.sqrt(z.numel())).item()
    assert mean < 100.0 - 10 * se  # Campbell (and RelaxedPoisson): exactly 100
    # with a generous cap it is the untruncated EAT again
    wide = fixed_cap_eat(torch.tensor(100.0, dtype=torch.float64), 0.5, (20_000,), rate_max=400.0)
    assert abs(wide.mean().item() - 100.0) < 4 * (wide.std() / math.sqrt(wide.numel())).item()


def test_fixed_cap_eat_shapes_gradient_and_validation():
    rate = torch.tensor([1.0, 3.0], requires_grad=True)
    z = fixed_cap_eat(rate, torch.tensor([0.1, 0.2]), (5,), indicator="sigmoid")
    assert z.shape == (5, 2)
    z.sum().backward()
    assert torch.isfinite(rate.grad).all()
    with pytest.raises(ValueError, match="rate"):
        fixed_cap_eat(torch.tensor([0.0]), 0.1)
    with pytest.raises(ValueError, match="temperature"):
        fixed_cap_eat(torch.tensor([1.0]), 0.0)
    with pytest.raises(ValueError, match="indicator"):
        fixed_cap_eat(torch.tensor([1.0]), 0.1, indicator="tanh")


def test_time_rsample_is_positive():
    assert 0 < time_rsample("eat-cubic", 5.0, 0.1, n_samples=100, repeats=2) < 10


def test_truncated_poisson_moments():
    from scipy import stats

    mean, var = truncated_poisson_moments(20.0, 15)
    k = range(15)
    p = stats.poisson.pmf(k, 20.0) / stats.poisson.cdf(14, 20.0)
    ref_mean = sum(i * q for i, q in zip(k, p))
    assert mean == pytest.approx(ref_mean, rel=1e-10)
    assert var == pytest.approx(sum(i * i * q for i, q in zip(k, p)) - ref_mean**2, rel=1e-8)
    assert mean < 14 and var < 20.0
    assert truncated_poisson_moments(20.0, 200) == pytest.approx((20.0, 20.0), rel=1e-9)
    assert truncated_poisson_moments(3.0, 1) == (0.0, 0.0)
    with pytest.raises(ValueError, match="n_categories"):
        truncated_poisson_moments(3.0, 0)
    with pytest.raises(ValueError, match="rate"):
        truncated_poisson_moments(-3.0, 5)


# --- the official bfloat16 pipeline (teaching) -------------------------------------------------------

from hitchhiker.book.fidelity.sweep import (  # noqa: E402
    official_pipeline_eat,
    official_pipeline_fidelity,
    official_pipeline_rate,
)


def test_official_pipeline_rate_rounds_log_100_to_the_log_of_99_in_bfloat16():
    # independent: round log(100) to 8 significant bits by hand, exponentiate, round again
    log_rate = math.log(100.0)
    exponent = math.floor(math.log2(log_rate))
    step = 2.0 ** (exponent - 7)                       # bfloat16: 7 stored mantissa bits
    rounded = round(log_rate / step) * step            # 4.59375
    value = math.exp(rounded)                          # 98.87...
    step_value = 2.0 ** (math.floor(math.log2(value)) - 7)
    assert official_pipeline_rate(100.0) == round(value / step_value) * step_value == 99.0
    assert abs(official_pipeline_rate(100.0, torch.float32) - 100.0) < 1e-4
    assert official_pipeline_rate(2.0, torch.float64) == pytest.approx(2.0, abs=1e-6)
    with pytest.raises(ValueError, match="rate"):
        official_pipeline_rate(-1.0)
    with pytest.raises(ValueError, match="dtype"):
        official_pipeline_rate(1.0, torch.int64)


def test_official_pipeline_in_float64_is_the_fixed_cap_sampler():
    """Same seed, same arrivals: float64 official pipeline == fixed_cap_eat (cumsum(E/lam) vs cumsum(E)/lam)."""
    torch.manual_seed(3)
    ours = official_pipeline_eat(7.0, 0.3, (50, 4), "sigmoid", dtype=torch.float64)
    torch.manual_seed(3)
    reference = fixed_cap_eat(torch.tensor(7.0 + float(torch.finfo(torch.float32).eps),
                                           dtype=torch.float64), 0.3, (50, 4), "sigmoid")
    assert ours.shape == (50, 4) and ours.dtype == torch.float32
    torch.testing.assert_close(ours, reference.float(), rtol=1e-6, atol=1e-5)


def test_official_bfloat16_pipeline_moves_the_cubic_mean_to_99():
    torch.manual_seed(0)
    stats_bf16 = official_pipeline_fidelity("eat-cubic", 100.0, 0.5, 4000, 5, dtype=torch.bfloat16)
    torch.manual_seed(0)
    stats_f32 = official_pipeline_fidelity("eat-cubic", 100.0, 0.5, 4000, 5, dtype=torch.float32)
    assert stats_bf16["rate_used"] == 99.0 and abs(stats_f32["rate_used"] - 100.0) < 1e-4
    # float32 fixed cap: its mean loses ~1% (dropped arrivals); bfloat16 loses ~1% more (rate 99)
    cap_mean = stats_f32["mean_ratio"]
    assert 0.98 < cap_mean < 0.995
    assert abs(stats_bf16["mean_ratio"] - 0.99 * cap_mean) < 0.004
    assert stats_bf16["w1"] > stats_f32["w1"] + 5 * math.hypot(stats_bf16["w1_se"], stats_f32["w1_se"])
    with pytest.raises(ValueError, match="method"):
        official_pipeline_fidelity("gsm", 100.0, 0.5, 10, 2)
