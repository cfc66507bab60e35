"""compare_estimators against closed forms: L(z) = sum_k (z_k - a_k)^2.

E[L] = sum_k lambda_k + (lambda_k - a_k)^2, so g* = 1 + 2(lambda - a). EAT-cubic's expected gradient
follows from its Campbell moments (mean lambda, variance v lambda with v = 1 - 9 tau / 35 for
tau <= 1): E[g] = v + 2(lambda - a), a bias of (v - 1) in every coordinate.
"""
import math

import pytest
import torch

from hitchhiker.diagnostics import EstimatorComparison, compare_estimators, recommend_estimator

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
