"""Fidelity experiments: statistics, grid, Campbell agreement, the fixed-cap teaching sampler."""
import math

import pandas as pd
import pytest
import torch

from hitchhiker.book.fidelity.sweep import (
    PAPER_RATES,
    PAPER_TEMPERATURES,
    campbell_ratios,
    draw_relaxed,
    fidelity_from_samples,
    fidelity_grid,
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
    noise = hot["w1_normalised_se"] + cold["w1_normalised_se"]
    assert hot["w1_normalised"] > cold["w1_normalised"] + 5 * noise


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
    ({"rate": 0.0}, "rate"), ({"rate": math.nan}, "rate"), ({"rate": "fast"}, "rate"),
    ({"temperature": -1.0}, "temperature"),
    ({"n_samples": 1}, "n_samples"), ({"n_trials": 1.5}, "n_trials"), ({"method": "score"}, "method"),
])
def test_measure_fidelity_validates(kwargs, match):
    args = {"method": "eat-cubic", "rate": 2.0, "temperature": 0.1, "n_samples": 10, "n_trials": 2}
    with pytest.raises(ValueError, match=match):
        measure_fidelity(**{**args, **kwargs})


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


# --- the official code's samplers (teaching): the fixed cap and the bfloat16 pipeline ---------------

from hitchhiker.book.fidelity.official import (  # noqa: E402
    SEVEN_FOLD_PIPELINES,
    fixed_cap_eat,
    fixed_cap_n_arrivals,
    official_pipeline_eat,
    official_pipeline_fidelity,
    official_pipeline_rate,
    seven_fold_runs,
    w1_ratio,
)


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
    """Same seed, same arrivals: float64 official pipeline == fixed_cap_eat (cumsum(E/lam) vs
    cumsum(E)/lam)."""
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


def test_official_pipeline_separates_rate_rounding_from_arithmetic():
    runs = {}
    for name, rate_dtype, dtype in (("rate", torch.bfloat16, torch.float32),
                                    ("arithmetic", torch.float32, torch.bfloat16)):
        torch.manual_seed(0)
        runs[name] = official_pipeline_fidelity("eat-cubic", 100.0, 0.5, 4000, 5, dtype=dtype,
                                                rate_dtype=rate_dtype)
    assert runs["rate"]["rate_used"] == 99.0          # float32 arithmetic at the rounded rate
    assert runs["arithmetic"]["rate_used"] == 100.0   # bfloat16 holds 100 exactly
    # the rate alone moves the cubic's mean by 1%; the arithmetic alone does not move it
    torch.manual_seed(0)
    clean = official_pipeline_fidelity("eat-cubic", 100.0, 0.5, 4000, 5, dtype=torch.float32)
    assert abs(runs["rate"]["mean_ratio"] - 0.99 * clean["mean_ratio"]) < 0.003
    assert abs(runs["arithmetic"]["mean_ratio"] - clean["mean_ratio"]) < 0.003


def test_w1_ratio_and_its_delta_method_error():
    ratio, se = w1_ratio({"w1": 6.0, "w1_se": 0.06}, {"w1": 2.0, "w1_se": 0.04})
    assert ratio == 3.0 and se == pytest.approx(3.0 * math.hypot(0.01, 0.02))
    with pytest.raises(ValueError, match="W1"):
        w1_ratio({"w1": 0.0, "w1_se": 0.1}, {"w1": 2.0, "w1_se": 0.04})


def test_seven_fold_runs_table():
    runs, ratios = seven_fold_runs(n_samples=3000, n_trials=4, seed=2)
    assert list(ratios.index) == [name for name, _, _ in SEVEN_FOLD_PIPELINES] + [
        "truncation-free (hh.RelaxedPoisson), float32"]
    assert len(runs) == 10 and (ratios.n_samples == 3000).all() and (ratios.n_trials == 4).all()
    assert list(ratios.rate_used.round(4)) == [99.0, 99.0, 100.0, 100.0, 100.0]
    row = ratios.iloc[0]
    sigmoid, cubic = runs.loc[(ratios.index[0], "eat-sigmoid")], runs.loc[(ratios.index[0], "eat-cubic")]
    assert row.w1_ratio == pytest.approx(sigmoid.w1 / cubic.w1) and row.w1_ratio_se > 0
    free = ratios.iloc[-1]
    assert abs(free.cubic_mean_ratio - 1) < 0.005 and ratios.iloc[1].cubic_mean_ratio < 0.985
    assert (ratios.w1_ratio > 3).all()  # the sigmoid is several times further from Poisson everywhere


# --- the W1 sampling floor ---------------------------------------------------------------------------

from hitchhiker.book.fidelity.floor import w1_floor, w1_floor_normal  # noqa: E402


def test_w1_floor_for_one_draw_is_the_mean_absolute_difference():
    from scipy import stats

    k = range(80)
    brute = sum(stats.poisson.pmf(i, 3.0) * stats.poisson.pmf(j, 3.0) * abs(i - j) for i in k for j in k)
    assert w1_floor(3.0, 1) == pytest.approx(brute, rel=1e-10)
    # two draws each: W1 = mean |sorted(a) - sorted(b)|, enumerated over all four counts
    pmf = stats.poisson.pmf(range(25), 0.7)
    two = 0.0
    for a1 in range(25):
        for a2 in range(25):
            for b1 in range(12):
                for b2 in range(12):
                    pa, pb = pmf[a1] * pmf[a2], pmf[b1] * pmf[b2]
                    xs, ys = sorted((a1, a2)), sorted((b1, b2))
                    two += pa * pb * (abs(xs[0] - ys[0]) + abs(xs[1] - ys[1])) / 2
    assert w1_floor(0.7, 2) == pytest.approx(two, rel=1e-6)


@pytest.mark.parametrize("rate,n", [(3.0, 50), (0.2, 200), (40.0, 400)])
def test_w1_floor_agrees_with_two_exact_samples(rate, n):
    torch.manual_seed(1)
    a = torch.poisson(torch.full((2000, n), rate, dtype=torch.float64))
    b = torch.poisson(torch.full((2000, n), rate, dtype=torch.float64))
    stats = fidelity_from_samples(a, b, rate)
    assert abs(stats["w1"] - w1_floor(rate, n)) < 4 * stats["w1_se"]


def test_w1_floor_normal_form_and_scaling():
    assert w1_floor(100.0, 20_000) == pytest.approx(w1_floor_normal(100.0, 20_000), rel=0.005)
    assert w1_floor_normal(9.0, 400) == pytest.approx(2 * w1_floor_normal(9.0, 1600))
    assert w1_floor(9.0, 400) > w1_floor(9.0, 1600)
    for bad in ({"rate": 0.0}, {"rate": "x"}, {"n_samples": 0}, {"n_samples": 2.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            w1_floor(**{"rate": 2.0, "n_samples": 10, **bad})


# --- matched fidelity ----------------------------------------------------------------------------------

from hitchhiker.book.fidelity.matched import (  # noqa: E402
    at_variance_ratio,
    matched_comparison,
    variance_ratio_axis,
)


def _campbell_grid(temperatures, rate=10.0):
    """A grid with the EAT methods' exact moments (no sampling) and a made-up GSM column."""
    rows = []
    for method in ("eat-cubic", "eat-sigmoid", "gsm"):
        for tau in temperatures:
            mean, var = campbell_ratios(method, tau)
            measured = var if method != "gsm" else 1 - 1.05 * tau
            rows.append({"method": method, "rate": rate, "temperature": tau, "mean_ratio": mean,
                         "mean_ratio_se": 0.0, "var_ratio": measured + 0.01, "var_ratio_theory": var,
                         "w1_normalised": tau, "w1_normalised_se": 0.01})
    return pd.DataFrame(rows)


def test_variance_ratio_axis_is_campbell_for_eat_and_measured_for_gsm():
    grid = _campbell_grid([0.1, 0.5])
    axis = variance_ratio_axis(grid)
    eat = grid.method != "gsm"
    assert (axis[eat] == grid.var_ratio_theory[eat]).all() and (axis[~eat] == grid.var_ratio[~eat]).all()
    with pytest.raises(ValueError, match="var_ratio_theory"):
        variance_ratio_axis(grid.drop(columns="var_ratio_theory"))


def test_matched_temperature_agrees_with_campbell():
    """The sigmoid's temperature with the cubic's variance ratio at tau = 0.5, against a bisection."""
    from hitchhiker.moments import relaxed_variance

    grid = _campbell_grid([round(0.01 * i, 2) for i in range(1, 61)])
    target = 1 - 9 * 0.5 / 35
    lo, hi = 0.01, 0.6
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if relaxed_variance(1.0, mid, "sigmoid").item() > target else (lo, mid)
    matched = at_variance_ratio(grid, "eat-sigmoid", 10.0, target)
    assert matched["temperature"] == pytest.approx(lo, abs=2e-4)
    assert 0.12 < matched["temperature"] < 0.14          # the cubic at 0.5 ~ the sigmoid at 0.13
    assert matched["w1_normalised_se"] < 0.01            # interpolation averages two cells
    table = matched_comparison(grid, rates=[10.0])
    at_half = table[table.reference_temperature == 0.5].set_index("method")
    assert at_half.loc["eat-cubic", "temperature"] == 0.5
    assert at_half.loc["eat-sigmoid", "temperature"] == pytest.approx(matched["temperature"])
    assert at_half.loc["gsm", "variance_ratio"] == pytest.approx(target)


def test_at_variance_ratio_refuses():
    grid = _campbell_grid([0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="target"):
        at_variance_ratio(grid, "eat-cubic", 10.0, 0.99)
    with pytest.raises(ValueError, match="fewer than two"):
        at_variance_ratio(grid, "eat-cubic", 3.0, 0.95)
    with pytest.raises(ValueError, match="method"):
        at_variance_ratio(grid, "score", 10.0, 0.95)
    with pytest.raises(ValueError, match="statistics"):
        at_variance_ratio(grid, "eat-cubic", 10.0, 0.95, statistics=["w1"])
    bumpy = grid.copy()
    bumpy.loc[(bumpy.method == "gsm") & (bumpy.temperature == 0.2), "var_ratio"] = 0.99
    with pytest.raises(ValueError, match="strictly"):
        at_variance_ratio(bumpy, "gsm", 10.0, 0.8)
    # endpoints are matched exactly, not refused
    top = at_variance_ratio(grid, "eat-cubic", 10.0, 1 - 9 * 0.1 / 35)
    assert top["temperature"] == pytest.approx(0.1) and top["w1_normalised"] == pytest.approx(0.1)


def test_w1_ratio_grows_with_the_sample_size_as_the_floor_falls():
    from hitchhiker.book.fidelity.floor import w1_ratio_by_sample_size

    table = w1_ratio_by_sample_size([200, 3200], n_trials=6, seed=4)
    assert list(table.index) == [200, 3200]
    small, large = table.loc[200], table.loc[3200]
    assert small.w1_ratio == pytest.approx(small["w1 eat-sigmoid"] / small["w1 eat-cubic"])
    assert large.w1_floor == pytest.approx(small.w1_floor / 4, rel=0.02)   # 1/sqrt(n)
    assert large.w1_ratio > small.w1_ratio + 3 * math.hypot(large.w1_ratio_se, small.w1_ratio_se)
    with pytest.raises(ValueError, match="n_samples"):
        w1_ratio_by_sample_size([0])


def test_campbell_temperature_inverts_the_closed_form():
    from hitchhiker.book.fidelity.matched import campbell_temperature
    from hitchhiker.moments import relaxed_variance

    for v in (0.99, 0.9, 1 - 9 / 70, 26 / 35):   # tau <= 1: the cubic's 1 - 9 tau / 35
        assert campbell_temperature("eat-cubic", v) == pytest.approx(35 * (1 - v) / 9, abs=1e-9)
    def ratio(tau, indicator):
        return relaxed_variance(1.0, torch.tensor(tau, dtype=torch.float64), indicator).item()

    tau = campbell_temperature("eat-cubic", 0.6)    # the wide branch (tau > 1)
    assert 1 < tau < 2.83 and ratio(tau, "cubic") == pytest.approx(0.6, abs=1e-9)
    tau = campbell_temperature("eat-sigmoid", 1 - 9 / 70)
    assert ratio(tau, "sigmoid") == pytest.approx(1 - 9 / 70, abs=1e-9)
    assert 0.12 < tau < 0.14
    assert campbell_temperature("eat-sigmoid", 1.0) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="target"):
        campbell_temperature("eat-sigmoid", 0.5)   # below the sigmoid's minimum 0.579
    with pytest.raises(ValueError, match="target"):
        campbell_temperature("eat-cubic", 1.01)
    with pytest.raises(ValueError, match="method"):
        campbell_temperature("gsm", 0.9)


def test_seeded_runs_leave_the_global_random_state_alone():
    from hitchhiker.book.fidelity.floor import w1_ratio_by_sample_size

    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    w1_ratio_by_sample_size([100], n_trials=2, seed=5)
    seven_fold_runs(n_samples=100, n_trials=2, truncation_free=False)
    assert torch.equal(torch.rand(3), expected)
