"""compare_estimators against closed forms: L(z) = sum_k (z_k - a_k)^2.

E[L] = sum_k lambda_k + (lambda_k - a_k)^2, so g* = 1 + 2(lambda - a). EAT-cubic's expected gradient
follows from its Campbell moments (mean lambda, variance v lambda with v = 1 - 9 tau / 35 for
tau <= 1): E[g] = v + 2(lambda - a), a bias of (v - 1) in every coordinate.
"""
import math

import pytest
import torch

import hitchhiker as hh
from hitchhiker.diagnostics import (
    MIN_VARIANCE_RATIO,
    EstimatorComparison,
    Recommendation,
    compare_estimators,
    recommend_estimator,
)

D = 32


def _problem(seed=0):
    gen = torch.Generator().manual_seed(seed)
    lam = torch.rand(D, generator=gen) * 10 + 1
    a = lam + torch.randn(D, generator=gen) * 2
    return lam, a, (lambda z: ((z - a) ** 2).sum(-1)), 1 + 2 * (lam - a)


def _truth(g_star, tau):
    expected = g_star - 9 * tau / 35
    cos = float(expected @ g_star / (expected.norm() * g_star.norm()))
    bias = float(((expected - g_star) ** 2).sum() / (g_star**2).sum())
    return cos, bias


@pytest.mark.parametrize("reference", ["exact", "score"])
def test_eat_cubic_and_score_agree_with_the_closed_form(reference):
    lam, _, loss, g_star = _problem()
    tau = 0.5
    out = compare_estimators(loss, lam.clone().requires_grad_(), methods=("eat-cubic", "score"),
                             temperatures=(tau,), n_samples=1024, reference_samples=8192,
                             exact_gradient=g_star if reference == "exact" else None, seed=1)
    cubic, score = out
    cos, bias = _truth(g_star, tau)
    assert abs(cubic["cos_mean"] - cos) < 4 * cubic["cos_mean_se"] + 1e-6
    assert abs(cubic["relative_bias"] - bias) < 4 * cubic["relative_bias_se"]
    assert abs(score["relative_bias"]) < 4 * score["relative_bias_se"]   # unbiased
    assert abs(score["cos_mean"] - 1) < 4 * score["cos_mean_se"]
    assert score["relative_variance"] > 10 * cubic["relative_variance"]  # the score function is noisy
    assert out[0]["reference"] == ("exact" if reference == "exact" else "score (8192 draws)")
    assert cubic["loss_evaluations"] == 1024


def test_standard_errors_cover_the_truth_at_the_stated_rate():
    """Over repeated comparisons (estimated reference), |estimate - truth| < 2 SE about 95% of the time."""
    lam, _, loss, g_star = _problem(3)
    tau = 0.5
    cos, bias = _truth(g_star, tau)
    hits = {"cos_mean": 0, "relative_bias": 0}
    repeats = 40
    for r in range(repeats):
        (rec,) = compare_estimators(loss, lam.clone().requires_grad_(), methods=("eat-cubic",),
                                    temperatures=(tau,), n_samples=128, reference_samples=1024,
                                    seed=100 + r)
        hits["cos_mean"] += abs(rec["cos_mean"] - cos) < 2 * rec["cos_mean_se"]
        hits["relative_bias"] += abs(rec["relative_bias"] - bias) < 2 * rec["relative_bias_se"]
    # 2 SE of a jackknife over 16 groups covers ~94%; 40 draws: below 80% would be p < 0.001.
    for name, count in hits.items():
        assert count / repeats >= 0.8, (name, count)


def test_records_and_recommendation():
    lam, _, loss, g_star = _problem()
    out = compare_estimators(loss, lam.clone().requires_grad_(), methods=("eat-cubic", "gsm", "score"),
                             temperatures=(0.1, 0.5), n_samples=64, exact_gradient=g_star, seed=0)
    assert isinstance(out, EstimatorComparison) and len(out) == 5
    records = out.to_dict("records")
    assert [(r["method"], r["temperature"]) for r in records] == [
        ("eat-cubic", 0.1), ("eat-cubic", 0.5), ("gsm", 0.1), ("gsm", 0.5), ("score", None)]
    for r in records:
        for key in ("cos_mean", "cos_sample", "relative_bias", "relative_variance"):
            assert math.isfinite(r[key]) and r[f"{key}_se"] >= 0
        assert r["seconds"] >= 0
    assert out.record("gsm", 0.5) is out[3] and out.record("score") is out[4]
    with pytest.raises(KeyError, match="eat-sigmoid"):
        out.record("eat-sigmoid", 0.1)
    line = recommend_estimator(records)
    assert line.startswith("eat-cubic") and line == out.recommend()
    assert "score" in repr(out).splitlines()[-1]


def test_bad_inputs_name_the_argument():
    lam, _, loss, g_star = _problem()
    rate = lam.clone().requires_grad_()
    with pytest.raises(ValueError, match="rate must require grad"):
        compare_estimators(loss, lam)
    with pytest.raises(TypeError, match="rate"):
        compare_estimators(loss, [1.0, 2.0])
    with pytest.raises(ValueError, match="per_sample_loss"):
        compare_estimators(lambda z: z.sum(0), rate, methods=("eat-cubic",), n_samples=32)
    with pytest.raises(ValueError, match="per_sample_loss"):
        compare_estimators(lambda z: z.sum(-1), rate.reshape(4, 8), methods=("score",), n_samples=32,
                           reference_samples=32)
    with pytest.raises(ValueError, match="method="):
        compare_estimators(loss, rate, methods=("eat-cubc",))
    with pytest.raises(ValueError, match="n_samples"):
        compare_estimators(loss, rate, n_samples=100)
    with pytest.raises(ValueError, match="exact_gradient"):
        compare_estimators(loss, rate, exact_gradient=g_star[:3])
    with pytest.raises(ValueError, match="temperatures"):
        compare_estimators(loss, rate, temperatures=(0.0,))
    with pytest.raises(TypeError, match="per_sample_loss"):
        compare_estimators(None, rate)


# ----------------------------------------------------------------------------- never confidently wrong

def _record(method, bias, variance, cos, tau=0.1, status="ok", variance_ratio=None):
    out = {"method": method, "temperature": tau, "status": status}
    if variance_ratio is not None or method == "gsm":  # GSM's ratio depends on the rates: no default
        out["variance_ratio"] = 0.9 if variance_ratio is None else variance_ratio
    for name, value in (("cos_mean", cos), ("cos_sample", cos / 2), ("relative_bias", bias),
                        ("relative_variance", variance)):
        out[name], out[f"{name}_se"] = value, 0.01
    return out


def test_a_truncated_gsm_pointing_backwards_is_never_recommended():
    """Before: a GSM truncated at n_categories=2 (cos_mean about -1, low variance) won the rule."""
    lam, _, loss, g_star = _problem()
    with pytest.warns(UserWarning, match="n_categories=2"):
        out = compare_estimators(loss, lam.clone().requires_grad_(), methods=("eat-cubic", "gsm", "score"),
                                 temperatures=(0.5,), n_samples=64, exact_gradient=g_star, seed=0,
                                 n_categories=2)
    gsm = out.record("gsm", 0.5)
    assert gsm["status"] == "ok" and gsm["cos_mean"] < 0.9
    line = out.recommend()
    assert not line.startswith("gsm") and line.startswith("eat-cubic at temperature 0.5")
    with pytest.raises(ValueError, match="cos_mean"):
        recommend_estimator([gsm])


def test_a_zero_variance_record_cannot_switch_the_variance_criterion_off():
    """Before: min variance 0 made every variance 'good', so a noisy low-bias method won."""
    noisy = _record("eat-sigmoid", bias=0.05, variance=50.0, cos=0.99)
    quiet = _record("eat-cubic", bias=0.2, variance=1.0, cos=0.99)
    still = _record("st-cubic", bias=1.5, variance=0.0, cos=0.95)
    assert recommend_estimator([noisy, quiet, still]).startswith("eat-cubic at temperature 0.1")
    # the zero-variance record itself is rated good on variance
    assert recommend_estimator([_record("gsm", 0.05, 0.0, 0.99), quiet]).startswith("gsm")
    # a zero-variance record whose direction is undefined is not a candidate at all
    dead = _record("gsm", bias=1.0, variance=0.0, cos=float("nan"))
    assert recommend_estimator([dead, noisy]).startswith("eat-sigmoid")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_losses_are_reported_per_method_never_recommended(bad):
    """Before: NaN losses gave NaN metrics and still a recommendation."""
    lam, a, _, g_star = _problem()

    def loss(z):  # NaN (or inf) whenever a count is not an integer: every relaxed draw
        value = ((z - a) ** 2).sum(-1)
        return torch.where((z == z.round()).all(-1), value, torch.full_like(value, bad))

    with pytest.warns(UserWarning, match="eat-cubic at temperature 0.5: non-finite losses"):
        out = compare_estimators(loss, lam.clone().requires_grad_(), methods=("eat-cubic", "st-cubic"),
                                 temperatures=(0.5,), n_samples=64, exact_gradient=g_star, seed=0)
    cubic, straight = out          # straight-through: exact (integer) counts forward, finite losses
    assert cubic["status"].startswith("non-finite losses") and math.isnan(cubic["cos_mean"])
    assert straight["status"] == "ok" and math.isfinite(straight["cos_mean"])
    assert out.recommend().startswith("st-cubic")
    assert repr(out).splitlines()[1].endswith("[1]") and "non-finite losses" in repr(out).splitlines()[-1]
    with pytest.raises(ValueError, match="non-finite"):
        recommend_estimator([cubic])
    # on the score-function reference nothing can be compared: a clear error
    with pytest.raises(ValueError, match="reference"):
        compare_estimators(lambda z: loss(z + 0.5), lam.clone().requires_grad_(), methods=("eat-cubic",),
                           temperatures=(0.5,), n_samples=32, reference_samples=64, seed=0)


def test_a_true_gradient_below_the_noise_floor_is_too_small_to_compare():
    """Before: g* = 0 gave metrics of noise over noise (huge or NaN) and a recommendation."""
    lam, _, _, _ = _problem()
    a = lam + 0.5                                  # g* = 1 + 2 (lam - a) = 0 exactly
    with pytest.warns(UserWarning, match="too small to compare at this sample size"):
        out = compare_estimators(lambda z: ((z - a) ** 2).sum(-1), lam.clone().requires_grad_(),
                                 methods=("eat-cubic", "score"), temperatures=(0.5,), n_samples=64,
                                 reference_samples=1024, seed=0)
    for r in out:
        assert r["status"].startswith("too small to compare at this sample size")
        assert all(math.isnan(r[m]) for m in ("cos_mean", "relative_bias", "relative_variance"))
        assert r["loss_evaluations"] == 0
    with pytest.raises(ValueError, match="too small to compare"):
        out.recommend()


def test_a_reference_well_above_its_floor_is_compared():
    """The too-small rule does not fire on an ordinary comparison (the coverage test's settings)."""
    lam, _, loss, _ = _problem(3)
    out = compare_estimators(loss, lam.clone().requires_grad_(), methods=("eat-cubic",), temperatures=(0.5,),
                             n_samples=128, reference_samples=1024, seed=100)
    assert out[0]["status"] == "ok"


def test_a_rate_of_zero_gives_finite_records():
    """Before: a rate of exactly 0 made the score reference NaN and every record all-NaN."""
    lam, a, loss, _ = _problem()
    lam[:4] = 0.0
    out = compare_estimators(loss, lam.clone().requires_grad_(), methods=("eat-cubic", "score"),
                             temperatures=(0.5,), n_samples=64, reference_samples=2048, seed=0)
    cubic, score = out
    assert cubic["status"] == "ok" and all(math.isfinite(cubic[k]) for k in cubic if k.startswith("cos"))
    assert math.isfinite(score["relative_bias"]) and math.isfinite(score["relative_variance"])


def test_a_record_with_an_unresolved_metric_keeps_its_numbers_but_is_never_recommended():
    """32 score-function draws cannot resolve the direction of their mean (its squared norm is within
    the noise floor in some jackknife groups). Before: cos_mean 1.6e155 with an infinite error. Now
    that metric is NaN, the others stay (bias and variance are fine), the status says why, and the
    rule skips the record."""
    lam, _, loss, g_star = _problem()
    with pytest.warns(UserWarning, match="score: non-finite cos_mean"):
        (score,) = compare_estimators(loss, lam.clone().requires_grad_(), methods=("score",),
                                      n_samples=32, exact_gradient=g_star, seed=2)
    assert score["status"].startswith("non-finite cos_mean") and not score["cos_mean"] < 2
    assert math.isfinite(score["relative_bias"]) and math.isfinite(score["relative_variance"])
    with pytest.raises(ValueError, match="score: non-finite cos_mean"):
        recommend_estimator([score])


# ----------------------------------------------------------------------------- fidelity at your rates

def _mlp_like():
    """Records modelled on chapter 10's MLP decoder: the sigmoid at tau = 0.5 has the least variance
    and a small bias, so the gradient rule alone picks it."""
    return [_record("eat-cubic", 0.003, 1.10, 0.999, tau=0.5),
            _record("eat-cubic", 0.001, 1.9, 0.999, tau=0.2),
            _record("eat-sigmoid", 0.0145, 0.536, 0.995, tau=0.5),
            _record("eat-sigmoid", 0.002, 0.95, 0.999, tau=0.2),
            _record("eat-sigmoid", 0.001, 1.5, 0.999, tau=0.1),
            _record("gsm", 0.01, 0.9, 0.998, tau=0.5, variance_ratio=0.55),
            _record("score", 0.0, 900.0, 0.99, tau=None)]


def test_the_fidelity_floor_sets_aside_the_sigmoid_at_half():
    """Before: the MLP-like records gave 'eat-sigmoid at temperature 0.5', the setting that loses 4.1%
    NELBO (chapter 06) and 9.2 nats (chapter 07) against EAT-cubic at its best temperature. Now
    the floor sets it aside and says so."""
    records = _mlp_like()
    choice = recommend_estimator(records)
    assert isinstance(choice, Recommendation) and isinstance(choice, str)
    assert not choice.startswith("eat-sigmoid at temperature 0.5")
    assert (choice.method, choice.temperature) != ("eat-sigmoid", 0.5)
    assert set(choice.set_aside) == {"eat-sigmoid at temperature 0.5", "eat-sigmoid at temperature 0.2",
                                     "gsm at temperature 0.5"}
    assert "without that floor the rule would pick eat-sigmoid at temperature 0.5" in choice.reason
    assert choice.reason in choice and "variance ratio 0.623" in choice.reason
    assert choice.min_variance_ratio == MIN_VARIANCE_RATIO == 0.85
    # with the floor, the cubic at 0.5 is the least noisy candidate left (the sigmoid at 0.1 is also
    # good on both, at a larger bias + variance) and wins
    assert (choice.method, choice.temperature) == ("eat-cubic", 0.5) and choice.record is records[0]
    assert "tied with eat-sigmoid at temperature 0.1" in choice.reason


def test_the_sigmoid_at_a_small_temperature_is_still_recommended():
    """The floor is about fidelity, not the method: at tau = 0.1 (ratio 0.900) the sigmoid keeps it and,
    least noisy there, wins, with nothing set aside."""
    records = [_record("eat-cubic", 0.001, 2.0, 0.999, tau=0.1),
               _record("eat-sigmoid", 0.001, 1.0, 0.999, tau=0.1)]
    choice = recommend_estimator(records)
    assert (choice.method, choice.temperature) == ("eat-sigmoid", 0.1)
    assert choice.set_aside == {} and "set aside" not in choice.reason
    assert "bias good and variance good" in choice.reason
    assert math.isclose(float(hh.variance_ratio("eat-sigmoid", 0.1, 1.0)), 0.9, abs_tol=1e-3)


def test_the_floor_sits_between_the_book_settings_that_lost_and_those_that_held():
    """The constant's comment, checked against Campbell's closed forms it quotes."""
    ratio = {(m, t): float(hh.variance_ratio(m, t, 1.0))
             for m, t in [("eat-sigmoid", 0.5), ("eat-sigmoid", 0.2), ("eat-cubic", 1.0),
                          ("eat-cubic", 0.5), ("eat-sigmoid", 0.1)]}
    lost = [ratio["eat-sigmoid", 0.5], ratio["eat-sigmoid", 0.2], ratio["eat-cubic", 1.0]]
    held = [ratio["eat-cubic", 0.5], ratio["eat-sigmoid", 0.1]]
    assert max(lost) < MIN_VARIANCE_RATIO <= min(held)
    assert abs(ratio["eat-sigmoid", 0.2] - 0.803) < 1e-3 and abs(ratio["eat-cubic", 0.5] - 0.871) < 1e-3
    tau_cubic = float(hh.temperature_for_variance_ratio("eat-cubic", MIN_VARIANCE_RATIO, 1.0))
    tau_sigmoid = float(hh.temperature_for_variance_ratio("eat-sigmoid", MIN_VARIANCE_RATIO, 1.0))
    assert abs(tau_cubic - 0.583) < 1e-3 and abs(tau_sigmoid - 0.150) < 1e-3


def test_every_candidate_below_the_floor_is_refused_with_the_way_out():
    records = [_record("eat-sigmoid", 0.01, 0.5, 0.99, tau=0.5),
               _record("eat-cubic", 0.0, 1.0, 0.99, tau=1.0)]
    with pytest.raises(ValueError, match=r"variance ratio 0\.623.*temperature_for_variance_ratio"):
        recommend_estimator(records)
    # a GSM record without its (rate-dependent) ratio is not a candidate
    gsm = _record("gsm", 0.0, 1.0, 0.99)
    del gsm["variance_ratio"]
    with pytest.raises(ValueError, match="gsm at temperature 0.1: no variance_ratio"):
        recommend_estimator([gsm])
    # a NaN ratio (no positive rate) is not a candidate either
    with pytest.raises(ValueError, match="no variance_ratio"):
        recommend_estimator([_record("gsm", 0.0, 1.0, 0.99, variance_ratio=float("nan"))])


def test_non_finite_and_backwards_records_still_refuse_before_fidelity():
    """The floor is an extra condition: a NaN status or a backwards gradient is excluded as before,
    and listed in ``excluded``, not ``set_aside``."""
    bad = _record("eat-cubic", 0.0, 1.0, 0.99, tau=0.1, status="non-finite losses")
    back = _record("gsm", 0.0, 0.1, -0.9, tau=0.1)
    with pytest.raises(ValueError, match="non-finite losses.*cos_mean -0.900"):
        recommend_estimator([bad, back])
    choice = recommend_estimator([bad, back, _record("score", 0.0, 100.0, 0.99, tau=None)])
    assert choice.method == "score" and choice.temperature is None
    assert set(choice.excluded) == {"eat-cubic at temperature 0.1", "gsm at temperature 0.1"}
    assert choice.set_aside == {}


def test_compare_estimators_records_the_fidelity_at_the_rates():
    """EAT: Campbell's ratio; ST and score: 1; GSM: a Monte Carlo estimate that agrees with an
    independent one; window_arrivals = median 2 lambda tau for the cubic."""
    lam, _, loss, g_star = _problem()
    out = compare_estimators(loss, lam.clone().requires_grad_(),
                             methods=("eat-cubic", "eat-sigmoid", "st-cubic", "gsm", "score"),
                             temperatures=(0.2,), n_samples=256, exact_gradient=g_star, seed=0)
    cubic, sigmoid, st, gsm, score = out
    assert cubic["variance_ratio"] == pytest.approx(1 - 9 * 0.2 / 35) and cubic["variance_ratio_se"] == 0
    assert cubic["window_arrivals"] == pytest.approx(float((2 * 0.2 * lam).median()))
    assert sigmoid["variance_ratio"] == pytest.approx(float(hh.variance_ratio("eat-sigmoid", 0.2, 1.0)))
    assert sigmoid["window_arrivals"] is None
    assert st["variance_ratio"] == score["variance_ratio"] == 1.0
    torch.manual_seed(5)
    z = hh.relaxed_sample("gsm", lam, 0.2, (8192,))
    independent = float(hh.moment_ratios(z, lam, dim=0).variance.mean())
    assert 0 < gsm["variance_ratio_se"] < 0.05
    assert abs(gsm["variance_ratio"] - independent) < 4 * gsm["variance_ratio_se"] + 0.01
    assert 0.75 < gsm["variance_ratio"] < 0.85  # about the sigmoid's 0.803 at rates 1-11 (chapter 04)
    assert "var. ratio" in repr(out)
    choice = out.recommend()
    assert choice.method not in ("eat-sigmoid", "gsm")  # both below the floor at tau = 0.2


def test_a_low_rate_window_is_named_in_the_reason():
    lam = torch.full((16,), 0.2)
    a = torch.linspace(-1, 1, 16)

    def loss(z):
        return ((z - a) ** 2).sum(-1)

    out = compare_estimators(loss, lam.clone().requires_grad_(), methods=("eat-cubic",), temperatures=(0.1,),
                             n_samples=256, exact_gradient=1 + 2 * (lam - a), seed=0)
    assert out[0]["window_arrivals"] == pytest.approx(0.04)
    assert "low-rate regime" in out.recommend().reason
    high = [dict(out[0], window_arrivals=4.0)]
    assert "low-rate" not in recommend_estimator(high).reason
