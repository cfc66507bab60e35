"""The Table 1 rule on synthetic results tables whose ratings are known by construction."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hitchhiker.book.table1 import rules as rec
from hitchhiker.book.table1.rules import (
    Thresholds,
    evidence_table,
    load_available_results,
    missing_evidence,
    rate_value,
    recommendation_table,
)

RATES = (2.0, 20.0, 100.0)
TAUS = (0.05, 0.1, 0.5)


def fidelity_table(worst_var_ratio: dict, worst_mean_ratio: dict | None = None) -> pd.DataFrame:
    """Moment ratios that are perfect except at (rate 100, tau 0.5), where they are the given values."""
    worst_mean_ratio = worst_mean_ratio or {}
    rows = []
    for method, var_ratio in worst_var_ratio.items():
        for rate in RATES:
            for tau in TAUS:
                corner = rate == 100.0 and tau == 0.5
                rows.append({"method": method, "rate": rate, "temperature": tau,
                             "mean_ratio": worst_mean_ratio.get(method, 1.0) if corner else 1.0,
                             "var_ratio": var_ratio if corner else 0.99, "w1": 0.1})
    return pd.DataFrame(rows)


def gradients_table(worst_bias: dict, noise: dict) -> pd.DataFrame:
    rows = []
    for method in worst_bias:
        for rate in RATES:
            for tau in TAUS:
                corner = rate == 100.0 and tau == 0.5
                rows.append({"method": method, "rate": rate, "temperature": tau,
                             "cos_mean": 1.0, "cos_sample": 0.9,
                             "bias_energy": worst_bias[method] if corner else 0.001,
                             "noise_energy": noise[method]})
    # the score function is in the CSVs too; it must not disturb the three rows
    rows.append({"method": "score", "rate": 2.0, "temperature": 0.1, "cos_mean": 0.1,
                 "cos_sample": 0.01, "bias_energy": 100.0, "noise_energy": 1e-6})
    return pd.DataFrame(rows)


def task_table(spread: dict, column: str, base: float, sign: float = 1.0) -> pd.DataFrame:
    """Loss ``base`` at every temperature except tau = 0.5, where it is ``base * (1 + spread)``."""
    rows = []
    for method, s in spread.items():
        for tau in TAUS:
            for seed in (0, 1):
                loss = base * (1 + s) if tau == 0.5 else base
                rows.append({"method": method, "temperature": tau, "n_samples": 1, "seed": seed,
                             column: sign * loss})
    rows.append({"method": "exact", "temperature": 0.0, "n_samples": 1, "seed": 0, column: sign * base})
    return pd.DataFrame(rows)


def generalization_table(relative_gaps: dict, elbo: float = -100.0) -> pd.DataFrame:
    """``generalization.csv``-shaped rows: on two data sets, each method's best test ELBO lies its
    relative gap below the best (score, at 0, is the best)."""
    rows = []
    for family, regime in (("com-poisson", "over"), ("negative-binomial", "strong")):
        for method, gap in {**relative_gaps, "score": 0.0}.items():
            for tau, worse in ((0.1, 0.0), (0.5, 0.05)):
                rows.append({"family": family, "regime": regime, "dispersion": 0.5, "method": method,
                             "temperature": None if method == "score" else tau, "n_samples": 1, "seed": 0,
                             "test_elbo": elbo * (1 + gap) * (1 + worse)})
    return pd.DataFrame(rows).drop_duplicates(subset=["family", "method", "temperature"])


def paper_like_results() -> dict:
    """Numbers shaped like the paper's findings (cubic best, sigmoid collapses at high rate and tau)."""
    return {
        "fidelity": fidelity_table({"eat-cubic": 1 - 9 * 0.5 / 35, "eat-sigmoid": 0.18, "gsm": 0.6}),
        "gradients": gradients_table({"eat-cubic": 0.01, "eat-sigmoid": 0.3, "gsm": 2.0},
                                     {"eat-cubic": 1.0, "eat-sigmoid": 1.1, "gsm": 2.5}),
        "pvae": task_table({"eat-cubic": 0.001, "eat-sigmoid": 0.005, "gsm": 0.02}, "val_nelbo", 120.0),
        "poglm": task_table({"eat-cubic": 0.0005, "eat-sigmoid": 0.001, "gsm": 0.001}, "test_elbo",
                            300.0, sign=-1.0),
        "generalization": generalization_table({"eat-cubic": 0.05, "eat-sigmoid": 0.04, "gsm": 0.001}),
    }


def test_rate_value_boundaries():
    assert rate_value(0.1, 0.1, 1.0) == "good"
    assert rate_value(0.1000001, 0.1, 1.0) == "fair"
    assert rate_value(1.0, 0.1, 1.0) == "fair"
    assert rate_value(1.5, 0.1, 1.0) == "poor"
    assert rate_value(math.nan, 0.1, 1.0) == "n/a"
    assert rate_value(math.inf, 0.1, 1.0) == "poor"


def test_paper_like_results_give_the_paper_recommendations():
    table = recommendation_table(paper_like_results())
    assert list(table.index) == list(rec.TABLE_METHODS)
    assert list(table.columns) == list(rec.COLUMNS)
    expected = {
        "eat-cubic": ["good", "good", "good", "good", "poor", "Default choice"],
        "eat-sigmoid": ["poor", "fair", "good", "fair", "poor", "Max smoothness"],
        "gsm": ["fair", "poor", "fair", "poor", "good", "Non-Poisson data"],
    }
    for method, row in expected.items():
        assert list(table.loc[method]) == row, (method, list(table.loc[method]))


def test_evidence_numbers():
    evidence = evidence_table(paper_like_results())
    assert evidence.loc["eat-cubic", "distributional fidelity"] == pytest.approx(9 * 0.5 / 35)
    assert evidence.loc["eat-sigmoid", "distributional fidelity"] == pytest.approx(0.82)
    assert evidence.loc["gsm", "gradient bias"] == pytest.approx(2.0)
    assert evidence.loc["eat-cubic", "gradient variance"] == pytest.approx(1.0)
    assert evidence.loc["gsm", "gradient variance"] == pytest.approx(2.5)
    # robustness: spread over the most robust method's (here below the 0.25% floor, so over 0.0025),
    # the worse of the two tasks: P-VAE's 2% / 0.25% = 8 for GSM, not the POGLM's 0.1% / 0.25% = 0.4
    assert evidence.loc["gsm", "temperature robustness"] == pytest.approx(8.0)
    assert evidence.loc["eat-sigmoid", "temperature robustness"] == pytest.approx(2.0)
    assert evidence.loc["eat-cubic", "temperature robustness"] == pytest.approx(0.4)


def test_bias_beyond_monte_carlo_error():
    rows = [  # eat-cubic: closed-form bias given; gsm: measured bias minus its noise floor
        {"method": "eat-cubic", "bias_energy": 0.12, "bias_energy_floor": 0.117, "bias_energy_exact": 0.001,
         "noise_energy": 11.7},
        {"method": "eat-sigmoid", "bias_energy": 8.7, "bias_energy_floor": 0.01, "bias_energy_exact": 8.68,
         "noise_energy": 1.0},
        {"method": "gsm", "bias_energy": 0.43, "bias_energy_floor": 0.51, "bias_energy_exact": math.nan,
         "noise_energy": 51.0},
        {"method": "gsm", "bias_energy": 0.30, "bias_energy_floor": 0.05, "bias_energy_exact": math.nan,
         "noise_energy": 5.0},
    ]
    evidence = evidence_table({"gradients": pd.DataFrame(rows)})["gradient bias"]
    assert evidence["eat-cubic"] == pytest.approx(0.001)
    assert evidence["eat-sigmoid"] == pytest.approx(8.68)
    assert evidence["gsm"] == pytest.approx(0.25)   # max(0, 0.43 - 0.51) = 0 and 0.30 - 0.05
    table = recommendation_table({"gradients": pd.DataFrame(rows)})
    assert list(table["gradient bias"]) == ["good", "poor", "fair"]


def test_mean_error_counts_for_fidelity():
    results = paper_like_results()
    results["fidelity"] = fidelity_table({"eat-cubic": 0.99, "eat-sigmoid": 0.99, "gsm": 0.99},
                                         worst_mean_ratio={"eat-sigmoid": 0.3})
    evidence = evidence_table(results)
    assert evidence.loc["eat-sigmoid", "distributional fidelity"] == pytest.approx(0.7)
    assert recommendation_table(results).loc["eat-sigmoid", "distributional fidelity"] == "poor"


def test_better_sigmoid_becomes_the_default_and_cubic_gets_no_label():
    results = paper_like_results()
    results["fidelity"] = fidelity_table({"eat-cubic": 0.3, "eat-sigmoid": 0.95, "gsm": 0.6})
    results["gradients"] = gradients_table({"eat-cubic": 0.5, "eat-sigmoid": 0.01, "gsm": 2.0},
                                           {"eat-cubic": 1.0, "eat-sigmoid": 1.0, "gsm": 2.5})
    results["pvae"] = task_table({"eat-cubic": 0.05, "eat-sigmoid": 0.001, "gsm": 0.15}, "val_nelbo", 120.0)
    table = recommendation_table(results)
    assert table.loc["eat-sigmoid", "recommendation"] == "Default choice"
    assert table.loc["gsm", "recommendation"] == "Non-Poisson data"
    assert table.loc["eat-cubic", "recommendation"] == "-"   # C^1: not the smoothest


def test_best_gsm_is_the_default_and_sigmoid_stays_max_smoothness():
    results = paper_like_results()
    results["fidelity"] = fidelity_table({"eat-cubic": 0.6, "eat-sigmoid": 0.18, "gsm": 0.99})
    results["gradients"] = gradients_table({"eat-cubic": 0.5, "eat-sigmoid": 0.3, "gsm": 0.01},
                                           {"eat-cubic": 2.0, "eat-sigmoid": 2.0, "gsm": 1.0})
    results["pvae"] = task_table({"eat-cubic": 0.05, "eat-sigmoid": 0.08, "gsm": 0.001}, "val_nelbo", 120.0)
    table = recommendation_table(results)
    assert list(table["recommendation"]) == ["-", "Max smoothness", "Default choice"]


def test_missing_tables_give_na_and_are_reported():
    results = paper_like_results()
    results["gradients"] = None
    del results["poglm"]
    table = recommendation_table(results)
    assert (table["gradient bias"] == "n/a").all() and (table["gradient variance"] == "n/a").all()
    assert table.loc["eat-cubic", "temperature robustness"] == "good"   # P-VAE alone still rates it
    assert missing_evidence(results) == {"gradient bias": ["gradients"], "gradient variance": ["gradients"],
                                         "temperature robustness": ["poglm"]}
    assert table.loc["eat-cubic", "recommendation"] == "Default choice"


def test_no_results_at_all_still_gives_a_table():
    table = recommendation_table({})
    assert (table[list(rec.MEASURED_COLUMNS)] == "n/a").all().all()
    assert (table["generalizability"] == "n/a").all()
    # nothing measured: the default by the tie-break, no "Non-Poisson data" without evidence
    assert list(table["recommendation"]) == ["Default choice", "Max smoothness", "-"]


def test_non_poisson_label_is_earned_by_measurement_only():
    results = paper_like_results()
    table = recommendation_table(results)
    evidence = evidence_table(results)
    np.testing.assert_allclose(evidence["generalizability"], [0.05, 0.04, 0.001], rtol=1e-9)
    assert list(table["generalizability"]) == ["poor", "poor", "good"]
    # every method as good as the best on non-Poisson data: nobody earns the label
    results["generalization"] = generalization_table({"eat-cubic": 0.001, "eat-sigmoid": 0.002, "gsm": 0.001})
    table = recommendation_table(results)
    assert (table["generalizability"] == "good").all()
    assert list(table["recommendation"]) == ["Default choice", "Max smoothness", "-"]
    assert missing_evidence({k: v for k, v in results.items() if k != "generalization"}) == {
        "generalizability": ["generalization"]}


def test_a_method_absent_from_a_table_is_na_for_that_column():
    results = paper_like_results()
    results["fidelity"] = results["fidelity"][results["fidelity"]["method"] != "gsm"]
    assert recommendation_table(results).loc["gsm", "distributional fidelity"] == "n/a"


def test_robustness_is_relative_to_the_most_robust_method():
    spread = pd.Series({"eat-cubic": 0.03, "eat-sigmoid": 0.069, "gsm": 0.075})
    ratio = rec.relative_to_most_robust(spread)
    assert list(ratio.round(3)) == [1.0, 2.3, 2.5]
    # spreads that are all negligible are divided by the floor, not by the smallest of them
    tiny = pd.Series({"eat-cubic": 0.0001, "eat-sigmoid": 0.0004, "gsm": 0.002})
    assert list(rec.relative_to_most_robust(tiny, 0.0025).round(3)) == [0.04, 0.16, 0.8]
    pvae = task_table({"eat-cubic": 0.03, "eat-sigmoid": 0.069, "gsm": 0.075}, "val_nelbo", 190.0)
    assert list(recommendation_table({"pvae": pvae})["temperature robustness"]) == ["good", "fair", "fair"]
    with pytest.raises(ValueError, match="negligible_spread"):
        Thresholds(negligible_spread=0.0)


def test_a_single_temperature_says_nothing_about_robustness():
    pvae = task_table({"eat-cubic": 0.5}, "val_nelbo", 100.0)
    pvae = pvae[pvae["temperature"] == 0.1]
    assert math.isnan(evidence_table({"pvae": pvae}).loc["eat-cubic", "temperature robustness"])


def test_worse_evidence_never_improves_a_rating():
    levels = rec.RATING_LEVELS
    for good, fair in [(0.1, 1.0), (0.2, 0.5), (0.0, 0.0)]:
        values = [0.0, 0.05, 0.1, 0.3, 0.5, 0.9, 1.0, 2.0, 1e9]
        ranks = [levels.index(rate_value(v, good, fair)) for v in values]
        assert ranks == sorted(ranks, reverse=True)


def test_bad_input_raises_value_error_naming_it():
    with pytest.raises(ValueError, match="fidelity"):
        Thresholds(fidelity=(0.5, 0.2))
    with pytest.raises(ValueError, match="var_ratio"):
        evidence_table({"fidelity": pd.DataFrame({"method": ["gsm"], "mean_ratio": [1.0]})})
    with pytest.raises(ValueError, match="unknown tables"):
        evidence_table({"fidelty": None})
    with pytest.raises(ValueError, match="thresholds"):
        recommendation_table({}, thresholds=(0.1, 1.0))
    with pytest.raises(ValueError, match="column"):
        Thresholds().for_column("speed")


def test_thresholds_change_the_ratings():
    strict = Thresholds(fidelity=(0.01, 0.05))
    table = recommendation_table(paper_like_results(), thresholds=strict)
    assert table.loc["eat-cubic", "distributional fidelity"] == "poor"


def test_load_available_results(tmp_path):
    paper_like_results()["pvae"].to_csv(tmp_path / "pvae.csv", index=False)
    tables = load_available_results(tmp_path)
    assert set(tables) == set(rec.RESULT_NAMES)
    assert tables["pvae"] is not None and tables["fidelity"] is None
    assert recommendation_table(tables).loc["eat-cubic", "temperature robustness"] == "good"


# --- the decision guide's measurements ------------------------------------------------------------

def test_temperature_tradeoff_matches_campbell_for_cubic():
    import torch

    torch.manual_seed(0)
    table = rec.temperature_tradeoff(("eat-cubic", "eat-sigmoid"), rate=10.0, temperatures=(0.1, 0.5),
                                     n_samples=10_000)
    cubic = table[table["method"] == "eat-cubic"].set_index("temperature")
    for tau in (0.1, 0.5):
        row = cubic.loc[tau]
        assert abs(row["mean_ratio"] - 1) < 4 * row["mean_ratio_se"]
        assert abs(row["var_ratio"] - (1 - 9 * tau / 35)) < 4 * row["var_ratio_se"]
        assert abs(row["grad_mean"] - 1) < 4 * row["grad_mean_se"]   # unbiased for d E[z]/d lambda = 1
    # a colder ramp is steeper: the derivative is noisier
    assert cubic.loc[0.1, "grad_var"] > 2 * cubic.loc[0.5, "grad_var"]
    # the sigmoid inflates the mean at tau = 0.5: tau log(1 + e^{1/tau}) = 1.0635
    sigmoid = table[table["method"] == "eat-sigmoid"].set_index("temperature").loc[0.5]
    assert abs(sigmoid["mean_ratio"] - 0.5 * math.log1p(math.exp(2.0))) < 4 * sigmoid["mean_ratio_se"]


def test_temperature_tradeoff_rejects_bad_input():
    with pytest.raises(ValueError, match="rate"):
        rec.temperature_tradeoff(rate=-1.0)
    with pytest.raises(ValueError, match="n_samples"):
        rec.temperature_tradeoff(n_samples=1)
    with pytest.raises(ValueError, match="temperatures"):
        rec.temperature_tradeoff(temperatures=(0.0,), n_samples=10)
    with pytest.raises(ValueError, match="method"):
        rec.temperature_tradeoff(methods=("score",), n_samples=10)


def test_truncation_tail_mass_is_the_poisson_survival_function():
    from scipy import stats

    for rate, k in [(1.0, 10), (20.0, 42), (100.0, 100), (3.0, 1)]:
        assert rec.truncation_tail_mass(rate, k) == pytest.approx(stats.poisson.sf(k - 1, rate), rel=1e-9)
    masses = [rec.truncation_tail_mass(20.0, k) for k in range(5, 60, 5)]
    assert masses == sorted(masses, reverse=True)
    with pytest.raises(ValueError, match="n_categories"):
        rec.truncation_tail_mass(5.0, 0)
    with pytest.raises(ValueError, match="rate"):
        rec.truncation_tail_mass(float("nan"), 5)


# --- the gradient setup, its sensitivity, the POGLM regime --------------------------------------------

def two_setup_gradients() -> pd.DataFrame:
    """Natural patches: the sigmoid is fine; model-generated: its bias dominates. Plus fixed-cap rows,
    an indefinite low-rate row that must be ignored, and the score function."""
    natural = gradients_table({"eat-cubic": 0.001, "eat-sigmoid": 0.02, "gsm": 0.01},
                              {"eat-cubic": 1.0, "eat-sigmoid": 0.5, "gsm": 4.0})
    natural["setup"] = "natural-patches"
    model = gradients_table({"eat-cubic": 0.001, "eat-sigmoid": 8.0, "gsm": 0.01},
                            {"eat-cubic": 1.0, "eat-sigmoid": 0.9, "gsm": 5.0})
    model["setup"] = "model-generated"
    capped = gradients_table({"eat-cubic": 0.003, "eat-sigmoid": 0.4}, {"eat-cubic": 0.9, "eat-sigmoid": 0.05})
    capped = capped[capped["method"] != "score"]
    capped["method"] = "fixed-cap-" + capped["method"]
    capped["setup"] = "natural-patches"
    indefinite = pd.DataFrame([{"method": "eat-cubic", "rate": 0.1, "temperature": 0.1, "cos_mean": 0.2,
                                "cos_sample": 0.1, "bias_energy": 50.0, "noise_energy": 1e3,
                                "setup": "natural-patches", "indefinite_fraction": 0.25}])
    table = pd.concat([natural, model, capped, indefinite], ignore_index=True)
    table["indefinite_fraction"] = table["indefinite_fraction"].fillna(0.0)
    return table


def test_gradient_columns_rate_the_chosen_setup():
    results = {"gradients": two_setup_gradients()}
    assert rec.GRADIENT_SETUP == "natural-patches"
    main = evidence_table(results)
    assert main.loc["eat-sigmoid", "gradient bias"] == pytest.approx(0.02)
    assert main.loc["eat-cubic", "gradient bias"] == pytest.approx(0.001)   # the indefinite row is ignored
    assert main.loc["eat-sigmoid", "gradient variance"] == pytest.approx(1.0)
    assert main.loc["gsm", "gradient variance"] == pytest.approx(8.0)
    other = evidence_table(results, gradient_setup="model-generated")
    assert other.loc["eat-sigmoid", "gradient bias"] == pytest.approx(8.0)
    assert recommendation_table(results).loc["eat-sigmoid", "gradient bias"] == "good"
    assert recommendation_table(results, gradient_setup="model-generated").loc["eat-sigmoid",
                                                                               "gradient bias"] == "poor"
    with pytest.raises(ValueError, match="setup='paper-figure'"):
        evidence_table(results, gradient_setup="paper-figure")
    # a table from before the setup column: every row counts
    legacy = gradients_table({"eat-cubic": 0.001, "eat-sigmoid": 8.0, "gsm": 0.01},
                             {"eat-cubic": 1.0, "eat-sigmoid": 0.9, "gsm": 5.0})
    assert evidence_table({"gradients": legacy}).loc["eat-sigmoid", "gradient bias"] == pytest.approx(8.0)


def test_gradient_setup_sensitivity_lists_every_setup_and_the_fixed_cap():
    sensitivity = rec.gradient_setup_sensitivity(two_setup_gradients())
    setups = list(dict.fromkeys(sensitivity.index.get_level_values("setup")))
    assert setups == ["natural-patches", "model-generated", rec.FIXED_CAP_VARIANT]
    assert sensitivity.loc[("natural-patches", "eat-sigmoid"), "gradient bias"] == "good"
    assert sensitivity.loc[("model-generated", "eat-sigmoid"), "gradient bias"] == "poor"
    # fixed cap: the EAT rows are the fixed-cap ones (measured bias, no closed form), GSM unchanged
    capped = sensitivity.loc[rec.FIXED_CAP_VARIANT]
    assert capped.loc["eat-sigmoid", "bias evidence"] == pytest.approx(0.4)
    assert capped.loc["eat-sigmoid", "gradient bias"] == "fair"
    assert capped.loc["gsm", "bias evidence"] == pytest.approx(0.01)
    assert capped.loc["gsm", "variance evidence"] == pytest.approx(4.0 / 0.05)
    # consistent with the table itself on the main setup
    main = evidence_table({"gradients": two_setup_gradients()})
    for method in rec.TABLE_METHODS:
        assert sensitivity.loc[("natural-patches", method), "bias evidence"] == main.loc[method, "gradient bias"]
    assert len(rec.gradient_setup_sensitivity(two_setup_gradients(), with_fixed_cap=False)) == 6
    with pytest.raises(ValueError, match="setup"):
        rec.gradient_setup_sensitivity(gradients_table({"gsm": 0.1}, {"gsm": 1.0}))


def test_robustness_reads_the_paper_regime_of_the_poglm():
    paper = task_table({"eat-cubic": 0.001, "eat-sigmoid": 0.01, "gsm": 0.02}, "test_elbo", 300.0, sign=-1.0)
    paper["regime"] = "paper"
    other = task_table({"eat-cubic": 0.5, "eat-sigmoid": 0.001, "gsm": 0.001}, "test_elbo", 300.0, sign=-1.0)
    other["regime"] = "intended"
    poglm = pd.concat([paper, other], ignore_index=True)
    evidence = evidence_table({"poglm": poglm})["temperature robustness"]
    expected = evidence_table({"poglm": paper.drop(columns="regime")})["temperature robustness"]
    pd.testing.assert_series_equal(evidence, expected)
    assert evidence["eat-cubic"] == pytest.approx(0.4)


def test_every_measured_column_has_one_evidence_function():
    assert set(rec.EVIDENCE_FUNCTIONS) == set(rec.MEASURED_COLUMNS)
    results = paper_like_results()
    for column, function in rec.EVIDENCE_FUNCTIONS.items():
        pd.testing.assert_series_equal(function(results, Thresholds()), evidence_table(results)[column],
                                       check_names=False)


def test_robustness_uses_the_seeds_common_to_every_temperature_and_annealed_runs():
    import pandas as pd

    from hitchhiker.book.table1.rules import loss_spread, robustness_evidence

    rows = pd.DataFrame([
        # seed 0 at both temperatures; seeds 1 and 2 only at 0.1, much worse: they must not count
        {"method": "eat-cubic", "temperature": 0.1, "seed": 0, "val_nelbo": 100.0},
        {"method": "eat-cubic", "temperature": 0.1, "seed": 1, "val_nelbo": 130.0},
        {"method": "eat-cubic", "temperature": 0.1, "seed": 2, "val_nelbo": 130.0},
        {"method": "eat-cubic", "temperature": 0.5, "seed": 0, "val_nelbo": 101.0},
    ])
    assert loss_spread(rows, rows["val_nelbo"])["eat-cubic"] == pytest.approx(0.01)
    # without seeds the plain mean over runs is all there is
    assert loss_spread(rows.drop(columns="seed"), rows["val_nelbo"])["eat-cubic"] == pytest.approx(19 / 101)
    fixed = {"method": "eat-cubic", "temperature": 0.02, "seed": 0, "val_nelbo": 500.0,
             "tau_schedule": "fixed"}
    sigmoid = [{"method": "eat-sigmoid", "temperature": t, "seed": 0, "val_nelbo": v,
                "tau_schedule": "anneal"} for t, v in ((0.1, 100.0), (0.5, 104.0))]
    pvae = pd.DataFrame([*rows.assign(tau_schedule="anneal").to_dict("records"), fixed, *sigmoid])
    evidence = robustness_evidence(pvae)
    assert evidence["eat-cubic"] == pytest.approx(1.0) and evidence["eat-sigmoid"] == pytest.approx(4.0)


def test_pvae_rows_keep_the_grid_with_annealed_temperatures():
    from hitchhiker.book.table1.rules import pvae_rows

    frame = pd.DataFrame([
        {"method": "exact", "grid_part": "main", "tau_schedule": "none"},
        {"method": "exact", "grid_part": "long", "tau_schedule": "none"},
        {"method": "eat-cubic", "grid_part": "main", "tau_schedule": "anneal"},
        {"method": "eat-cubic", "grid_part": "extra", "tau_schedule": "anneal"},
        {"method": "eat-cubic", "grid_part": "extra", "tau_schedule": "fixed"},
    ])
    assert pvae_rows(frame).index.tolist() == [0, 2, 3]
    # an older table without the columns is taken whole
    assert pvae_rows(frame[["method"]]).index.tolist() == [0, 1, 2, 3, 4]
