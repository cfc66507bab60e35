"""gradient_quality on synthetic gradients whose bias and covariance are known."""
import math

import pytest
import torch

from hitchhiker.metrics import GRADIENT_QUALITY_METRICS, gradient_quality, gradient_quality_per_item

F64 = torch.float64


def synthetic(n, batch=4, k=3, bias_scale=0.3, seed=0):
    """g_n = g* + beta + L eps_n with known beta and Sigma = L L^T, and a positive-definite H."""
    gen = torch.Generator().manual_seed(seed)
    g_star = torch.randn(batch, k, generator=gen, dtype=F64) + 2.0
    a = torch.randn(batch, k, k, generator=gen, dtype=F64)
    hessian = a @ a.transpose(-1, -2) + 0.5 * torch.eye(k, dtype=F64)
    chol = 0.8 * torch.tril(torch.randn(batch, k, k, generator=gen, dtype=F64))
    chol.diagonal(dim1=-2, dim2=-1).abs_().add_(0.2)
    beta = bias_scale * torch.randn(batch, k, generator=gen, dtype=F64)
    eps = torch.randn(n, batch, k, 1, generator=gen, dtype=F64)
    grads = g_star + beta + (chol @ eps).squeeze(-1)
    return grads, g_star, hessian, beta, chol @ chol.transpose(-1, -2)


def quad(u, h, v=None):
    return torch.einsum("bi,bij,bj->b", u, h, u if v is None else v)


def test_energies_and_raw_metrics_recover_known_bias_and_covariance():
    n = 20_000
    grads, g_star, hessian, beta, sigma = synthetic(n)
    per_item = gradient_quality_per_item(grads, g_star, hessian)
    signal = quad(g_star, hessian)
    noise = torch.einsum("bij,bji->b", hessian, sigma) / signal
    # NoiseEnergy: the covariance estimate has relative error ~ sqrt(2/N) per entry; allow 6 sd.
    torch.testing.assert_close(per_item["NoiseEnergy"], noise, rtol=6 * math.sqrt(2 / n) * 3, atol=0)
    # BiasEnergy: E = beta'H beta/S + NoiseEnergy/N, with MC sd ~ 2 sqrt(beta'H Sigma H beta / N)/S.
    expected = quad(beta, hessian) / signal + noise / n
    sd = 2 * torch.sqrt(torch.einsum("bi,bij,bjk,bkl,bl->b", beta, hessian, sigma, hessian, beta) / n)
    assert ((per_item["BiasEnergy"] - expected).abs() < 5 * sd / signal + 3 * noise / n).all()
    rel_bias = beta.norm(dim=-1) / g_star.norm(dim=-1)
    se_bias = torch.sqrt(torch.diagonal(sigma, dim1=-2, dim2=-1).sum(-1) / n) / g_star.norm(dim=-1)
    assert ((per_item["RelBias"] - rel_bias).abs() < 5 * se_bias).all()
    rel_var = torch.diagonal(sigma, dim1=-2, dim2=-1).sum(-1) / g_star.norm(dim=-1) ** 2
    torch.testing.assert_close(per_item["RelVariance"], rel_var, rtol=0.05, atol=0)
    cos_mean = (g_star + beta).mul(g_star).sum(-1) / ((g_star + beta).norm(dim=-1) * g_star.norm(dim=-1))
    torch.testing.assert_close(per_item["CosMean"], cos_mean, rtol=0, atol=0.01)
    # CosSample against an independent, much larger Monte Carlo estimate of E cos(g_n, g*).
    big, *_ = synthetic(200_000, seed=0)
    reference = torch.nn.functional.cosine_similarity(big, g_star.unsqueeze(0), dim=-1).mean(0)
    torch.testing.assert_close(per_item["CosSample"], reference, rtol=0, atol=0.01)


def test_unbiased_estimator_sits_at_the_monte_carlo_floor():
    n, batch = 100, 400
    grads, g_star, hessian, _, _ = synthetic(n, batch=batch, bias_scale=0.0, seed=1)
    q = gradient_quality(grads, g_star, hessian)
    # BiasChi2 is about (N-1)/(N-3) for an unbiased estimator; its sd over items is ~ sqrt(2/K).
    assert abs(q["BiasChi2"] - (n - 1) / (n - 3)) < 4 * q["BiasChi2_sd"] / math.sqrt(batch)
    assert abs(q["BiasEnergy"] - q["BiasEnergyFloor"]) < 4 * q["BiasEnergy_sd"] / math.sqrt(batch)
    biased, *_ = synthetic(n, batch=batch, bias_scale=1.0, seed=1)
    q_biased = gradient_quality(biased, g_star, hessian)
    assert q_biased["BiasChi2"] > 5 and q_biased["BiasEnergy"] > 5 * q_biased["BiasEnergyFloor"]


def test_aggregate_is_mean_and_sd_over_items():
    grads, g_star, hessian, _, _ = synthetic(50, batch=6)
    per_item = gradient_quality_per_item(grads, g_star, hessian)
    q = gradient_quality(grads, g_star, hessian)
    assert set(GRADIENT_QUALITY_METRICS) == set(per_item)
    for key in GRADIENT_QUALITY_METRICS:
        assert q[key] == pytest.approx(per_item[key].mean().item())
        assert q[key + "_sd"] == pytest.approx(per_item[key].std().item())


def test_exact_gradients_give_perfect_scores_and_unbatched_input_works():
    _, g_star, hessian, _, _ = synthetic(2, batch=1)
    grads = g_star.expand(5, -1, -1).clone()
    grads[:, 0, 0] += torch.tensor([1.0, -1.0, 0.0, 0.5, -0.5], dtype=F64)  # zero-mean noise
    q = gradient_quality(grads[:, 0], g_star[0], hessian[0])
    assert q["CosMean"] == pytest.approx(1.0) and q["BiasEnergy"] == pytest.approx(0.0, abs=1e-12)
    assert q["NoiseEnergy"] > 0 and q["CosSample"] < 1 and q["NoiseEnergy_sd"] == 0.0
    assert q["RelVariance"] == pytest.approx(0.625 / g_star[0].norm().item() ** 2)


def test_zero_gradient_samples_have_cosine_zero_not_nan():
    _, g_star, hessian, _, _ = synthetic(2, batch=2)
    grads = torch.zeros(4, 2, 3, dtype=F64)
    grads[0] = 4 * g_star
    q = gradient_quality_per_item(grads, g_star, hessian)
    torch.testing.assert_close(q["CosSample"], torch.full((2,), 0.25, dtype=F64))
    torch.testing.assert_close(q["CosMean"], torch.ones(2, dtype=F64))


def test_bad_input_raises_value_error():
    grads, g_star, hessian, _, _ = synthetic(10, batch=2)
    with pytest.raises(ValueError, match="at least 2 samples"):
        gradient_quality(grads[:1], g_star, hessian)
    with pytest.raises(ValueError, match="grads must have shape"):
        gradient_quality(grads[:, :1], g_star, hessian)
    with pytest.raises(ValueError, match="hessian"):
        gradient_quality(grads, g_star, hessian[:, :2])
    bad = grads.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="grads must be finite"):
        gradient_quality(bad, g_star, hessian)
